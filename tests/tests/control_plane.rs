//! The shim's control plane end to end: the shim finds the emulator's e1000, brings it up,
//! gets an address, and netctl on the host reaches the control server through the
//! emulator's user-mode network. QEMU needs no VMX for this, so the shim serves without
//! guests (`idle=serve`).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{boot, boot_with, Booted};
use matryoshka_tests::{Emulator, Exit, HostForward, ImageBuilder, MachineConfig, NicModel};
use netctl::exit;

const ADMIN: &str = "admin-secret-for-the-e2e-test";
const ACME: &str = "acme-secret-for-the-e2e-test";
const OTHER: &str = "other-secret-for-the-e2e-test";
const CONTROL_PORT: u16 = 7000;

fn boot_config(ip_keys: &str) -> String {
    format!("[shim]\n{ip_keys}\ntokens = ['role=admin,secret={ADMIN}', 'tenant=acme,secret={ACME}']\n")
}

fn token_file(dir: &Path, name: &str, secret: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{secret}\n")).expect("writing a token file");
    path
}

/// Runs netctl as a user would, returning its exit code, stdout and stderr.
fn netctl(host: &str, token: &Path, words: &[&str]) -> (i32, String, String) {
    let mut args = vec!["netctl".to_string(), "--host".into(), host.into(), "--token-file".into()];
    args.push(token.display().to_string());
    args.extend(words.iter().map(|word| word.to_string()));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = netctl::run(args, &mut out, &mut err);
    (code, String::from_utf8_lossy(&out).into_owned(), String::from_utf8_lossy(&err).into_owned())
}

/// Boots a shim with a NIC whose control port the host reaches at the returned address.
fn boot_serving(emulator: Emulator, nic: NicModel, ip_keys: &str) -> (Booted, String) {
    let forward = HostForward::from_free_port(CONTROL_PORT).unwrap_or_else(|e| panic!("{e}")).with_nic(nic);
    let config = MachineConfig { network: Some(forward), ..MachineConfig::new(emulator) };
    let builder = ImageBuilder::new().config("control.cfg", &boot_config(ip_keys)).command_line("idle=serve");
    (boot_with(builder, config), forward.address())
}

/// What every emulator must get right: admin and tenant tokens work, a wrong token is
/// refused with 401, and the metrics answer. Returns the mean round trip of `netctl host`.
fn exercise_the_api(machine: &mut Booted, host: &str, vmx: bool) -> Duration {
    let dir = machine.dir.path().to_path_buf();
    let admin = token_file(&dir, "admin-token", ADMIN);
    let acme = token_file(&dir, "acme-token", ACME);
    let wrong = token_file(&dir, "wrong-token", "not-a-token-of-this-shim");

    // The first request may still meet the port before the shim listens: netctl retries.
    let (code, out, err) = netctl(host, &admin, &["--retries", "20", "--json", "host"]);
    assert_eq!(code, exit::OK, "netctl host: {err}\n{}", machine.machine.failure("netctl host failed"));
    assert!(out.contains(&format!("\"version\":\"{}\"", env!("CARGO_PKG_VERSION"))), "{out}");
    assert!(out.contains("\"free_memory_bytes\""), "{out}");

    let (code, out, err) = netctl(host, &admin, &["list"]);
    assert_eq!(code, exit::OK, "netctl list: {err}");
    assert!(!out.contains("acme"), "a shim without guests listed one:\n{out}");
    let (code, _, err) = netctl(host, &acme, &["--json", "list"]);
    assert_eq!(code, exit::OK, "netctl list as a tenant: {err}");

    let (code, _, err) = netctl(host, &wrong, &["list"]);
    assert_eq!(code, exit::AUTH, "a wrong token: {err}");
    assert!(err.contains("401"), "{err}");

    let (code, out, err) = netctl(host, &admin, &["metrics"]);
    assert_eq!(code, exit::OK, "netctl metrics: {err}");
    assert!(out.contains("matryoshka_host_memory_free_bytes"), "{out}");

    // Without VMX the shim cannot run guests, and says so; with it, a guest is defined.
    let cfg = dir.join("guest.cfg");
    std::fs::write(&cfg, "name = 'web'\nmemory = 16\nkernel = 'none'\n").unwrap();
    let (code, out, err) = netctl(host, &admin, &["create", cfg.to_str().unwrap()]);
    if vmx {
        assert_eq!((code, out.as_str()), (exit::OK, "web: created\n"), "{err}");
        let (code, _, err) = netctl(host, &admin, &["start", "web"]);
        assert_eq!(code, exit::CONFLICT, "no boot module 'none', nothing uploaded: {err}");
        assert!(err.contains("has no kernel"), "{err}");
        assert_eq!(netctl(host, &admin, &["remove", "web"]).0, exit::OK);
    } else {
        assert_eq!(code, exit::REFUSED, "{err}");
        assert!(err.contains("501") && err.contains("runs no guests"), "{err}");
    }

    const ROUND_TRIPS: u32 = 20;
    let started = Instant::now();
    for _ in 0..ROUND_TRIPS {
        let (code, _, err) = netctl(host, &admin, &["host"]);
        assert_eq!(code, exit::OK, "{err}");
    }
    started.elapsed() / ROUND_TRIPS
}

#[test]
fn netctl_reaches_the_control_server_over_the_e1000_on_qemu() {
    let (mut machine, host) = boot_serving(Emulator::Qemu, NicModel::E1000, "ip = 'dhcp'");
    let nic = machine.expect("control_plane: Intel 82540EM at");
    assert!(nic.ends_with("MAC 52:54:00:12:34:56, link up"), "{nic}");
    machine.expect("control_plane: port 7000, address by DHCP, 1 admin and 1 tenant token(s)");
    machine.expect("control_plane: listening on 10.0.2.15:7000");
    let round_trip = exercise_the_api(&mut machine, &host, false);
    println!("QEMU: netctl host round trip {:.2} ms (mean of 20, new connection each)", round_trip.as_secs_f64() * 1e3);
    // The shim logs the refused attempt, without the token.
    machine.expect("control: refused a request from 10.0.2.2");
    assert!(!machine.machine.console().contains("not-a-token-of-this-shim"));
    assert!(!machine.machine.console().contains(ADMIN));
}

#[test]
fn the_control_server_takes_a_static_address_on_bochs() {
    let (mut machine, host) =
        boot_serving(Emulator::bochs(), NicModel::E1000, "ip = '10.0.2.15/24'\ngateway = '10.0.2.2'");
    machine.expect("control_plane: Intel 82540EM at");
    machine.expect("control_plane: port 7000, address by 10.0.2.15/24, gateway 10.0.2.2");
    machine.expect("control_plane: listening on 10.0.2.15:7000");
    let round_trip = exercise_the_api(&mut machine, &host, true);
    println!(
        "Bochs: netctl host round trip {:.2} ms (mean of 20, new connection each)",
        round_trip.as_secs_f64() * 1e3
    );
}

#[test]
fn the_82574l_works_the_same_on_qemu() {
    let (mut machine, host) = boot_serving(Emulator::Qemu, NicModel::E1000e, "ip = 'dhcp'");
    machine.expect("control_plane: Intel 82574L at");
    machine.expect("control_plane: listening on 10.0.2.15:7000");
    exercise_the_api(&mut machine, &host, false);
}

#[test]
fn without_a_nic_the_shim_says_so_and_does_not_serve() {
    let builder = ImageBuilder::new().config("control.cfg", &boot_config("")).command_line("idle=serve");
    let mut machine = boot(builder, Emulator::Qemu);
    machine.expect("control_plane: off: no supported NIC among");
    machine.expect("idle=serve: there is no control plane to serve");
    // No VMX under QEMU: the shim reports a failure.
    machine.expect_exit(Exit::Failure);
}

#[test]
fn without_tokens_the_control_plane_stays_off() {
    let forward = HostForward::from_free_port(CONTROL_PORT).unwrap();
    let config = MachineConfig { network: Some(forward), ..MachineConfig::new(Emulator::Qemu) };
    let mut machine = boot_with(ImageBuilder::new().config("control.cfg", "[shim]\nip = 'dhcp'\n"), config);
    machine.expect("control_plane: off: no [shim] tokens are configured");
    machine.expect_exit(Exit::Failure);
}

/// With VMX the control plane is up while a guest runs (its registers mapped before the
/// guest's monitor copies the shim's address space) and serves once the guest has ended.
#[test]
fn on_bochs_with_vmx_the_shim_serves_once_its_guest_has_ended() {
    let scenario = matryoshka_tests::workspace::scenarios_dir().join("l1-test");
    let text = std::fs::read_to_string(&scenario).expect("the l1-test scenario");
    let shim_keys = format!("[shim]\nip = '10.0.2.15/24'\ntokens = ['role=admin,secret={ADMIN}']\n");
    let text = text.replacen("[shim]\n", &shim_keys, 1);
    let builder = ImageBuilder::scenario("l1-test").unwrap_or_else(|e| panic!("{e}"));
    let builder = builder.config("scenarios/l1-test", &text).command_line("idle=serve");
    let forward = HostForward::from_free_port(CONTROL_PORT).unwrap_or_else(|e| panic!("{e}"));
    let mut machine =
        boot_with(builder, MachineConfig { network: Some(forward), ..MachineConfig::new(Emulator::bochs()) });
    machine.expect("control_plane: Intel 82540EM at");
    machine.expect("guest l1-test: created");
    machine.expect("[l1-test] l1-test: done: 6 passed, 0 failed");
    machine.expect("guest l1-test: stopped (debug exit, status 1)");
    machine.expect("control_plane: serving until a guest is started or the machine is switched off");
    let admin = token_file(machine.dir.path(), "admin-token", ADMIN);
    let (code, out, err) = netctl(&forward.address(), &admin, &["--retries", "20", "--json", "host"]);
    assert_eq!(code, exit::OK, "{err}");
    for feature in ["\"ept\"", "\"vpid\"", "\"unrestricted_guest\"", "\"preemption_timer\""] {
        assert!(out.contains(feature), "no {feature} in {out}");
    }
}

/// The `next_offset` of the last chunk `netctl --json console` printed.
fn console_end(host: &str, token: &Path, guest: &str) -> u64 {
    let (code, out, err) = netctl(host, token, &["--json", "console", guest]);
    assert_eq!(code, exit::OK, "netctl console {guest}: {err}");
    let last = out.lines().last().unwrap_or_else(|| panic!("no console chunk for {guest}"));
    let chunk: serde_json::Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {last}"));
    chunk["next_offset"].as_u64().unwrap_or_else(|| panic!("no next_offset in {last}"))
}

#[test]
fn netctl_manages_running_guests_on_bochs() {
    // Two tenants' guests run long computations; the API is served between
    // their time slices.
    let guests = "\n[guest]\nname = 'web'\nmemory = 16\nkernel = 'l1-test'\ntenant = 'acme'\ncmdline = 'work=1000'\n\
                  \n[guest]\nname = 'db'\nmemory = 16\nkernel = 'l1-test'\ntenant = 'other'\ncmdline = 'work=1000'\n";
    let config_text = format!(
        "[shim]\nip = '10.0.2.15/24'\ntokens = ['role=admin,secret={ADMIN}', 'tenant=acme,secret={ACME}', \
         'tenant=other,secret={OTHER}']\n{guests}"
    );
    let forward = HostForward::from_free_port(CONTROL_PORT).unwrap_or_else(|e| panic!("{e}")).with_nic(NicModel::E1000);
    let config = MachineConfig {
        network: Some(forward),
        timeout: Duration::from_secs(240),
        ..MachineConfig::new(Emulator::bochs())
    };
    matryoshka_tests::workspace::ensure_module_built("l1-test").unwrap_or_else(|e| panic!("{e}"));
    let kernel = matryoshka_tests::workspace::guest_build_dir().join("l1-test");
    let builder = ImageBuilder::new().config("lab.cfg", &config_text).module("l1-test", kernel);
    let mut machine = boot_with(builder, config);
    let host = forward.address();
    machine.expect("control_plane: listening on 10.0.2.15:7000");
    machine.expect("[web] l1-test: work 1/1000");
    let dir = machine.dir.path().to_path_buf();
    let admin = token_file(&dir, "admin-token", ADMIN);
    let acme = token_file(&dir, "acme-token", ACME);

    let (code, out, err) = netctl(&host, &admin, &["--retries", "20", "list"]);
    assert_eq!(code, exit::OK, "netctl list: {err}\n{}", machine.machine.failure("list failed"));
    assert!(out.contains("web") && out.contains("db") && out.contains("running"), "{out}");

    // A tenant sees its own guest only; the other's answers 404.
    let (code, out, err) = netctl(&host, &acme, &["list"]);
    assert_eq!(code, exit::OK, "{err}");
    assert!(out.contains("web") && !out.contains("db"), "{out}");
    for words in [&["info", "db"][..], &["console", "db"], &["pause", "db"], &["stats", "db"]] {
        let (code, _, err) = netctl(&host, &acme, words);
        assert_eq!(code, exit::NOT_FOUND, "acme {words:?}: {err}");
    }

    // Paused, its console stands still; resumed, it goes on.
    let (code, out, err) = netctl(&host, &acme, &["pause", "web"]);
    assert_eq!(code, exit::OK, "pause: {err}");
    assert!(out.contains("paused"), "{out}");
    let paused_at = console_end(&host, &acme, "web");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(console_end(&host, &acme, "web"), paused_at, "the console of a paused guest advanced");
    let (code, _, err) = netctl(&host, &acme, &["pause", "web"]);
    assert_eq!(code, exit::CONFLICT, "pausing twice: {err}");
    let (code, _, err) = netctl(&host, &acme, &["resume", "web"]);
    assert_eq!(code, exit::OK, "resume: {err}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while console_end(&host, &acme, "web") == paused_at {
        assert!(Instant::now() < deadline, "the console did not advance after resume");
        std::thread::sleep(Duration::from_millis(500));
    }

    let (code, out, err) = netctl(&host, &acme, &["--json", "stats", "web"]);
    assert_eq!(code, exit::OK, "stats: {err}");
    assert!(out.contains("\"reason\":\"io_instruction\""), "{out}");
    let (code, out, err) = netctl(&host, &admin, &["metrics"]);
    assert_eq!(code, exit::OK, "metrics: {err}");
    assert!(out.contains("guest=\"web\""), "{out}");

    // Destroyed, both end with the reason, and the shim stops.
    for guest in ["web", "db"] {
        let (code, _, err) = netctl(&host, &admin, &["destroy", guest]);
        assert_eq!(code, exit::OK, "destroy {guest}: {err}");
    }
    machine.expect("guest web: stopped (destroyed over the control API)");
    machine.expect("guest db: stopped (destroyed over the control API)");
    machine.expect_exit(Exit::Success);
}

/// The `free_memory_bytes` of `netctl --json host`.
fn free_memory(host: &str, token: &Path) -> u64 {
    let (code, out, err) = netctl(host, token, &["--json", "host"]);
    assert_eq!(code, exit::OK, "netctl host: {err}");
    let info: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    info["free_memory_bytes"].as_u64().unwrap_or_else(|| panic!("no free_memory_bytes in {out}"))
}

/// Reads the guest's console until it holds `needle`.
fn wait_for_console(host: &str, token: &Path, guest: &str, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (code, out, err) = netctl(host, token, &["console", guest]);
        assert_eq!(code, exit::OK, "netctl console {guest}: {err}");
        if out.contains(needle) {
            return out;
        }
        assert!(Instant::now() < deadline, "no '{needle}' on {guest}'s console:\n{out}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Guests created over the API from uploaded images: the acceptance of the control-plane
/// issue (create, start, console, destroy), repeated to show that removing a guest gives all
/// of its memory back, and every way a create can be refused.
#[test]
fn netctl_creates_guests_from_uploaded_images_and_removes_them_on_bochs() {
    let config_text = format!(
        "[shim]\nip = '10.0.2.15/24'\ntokens = ['role=admin,secret={ADMIN}', 'tenant=acme,secret={ACME}', \
         'tenant=other,secret={OTHER}']\n"
    );
    let forward = HostForward::from_free_port(CONTROL_PORT).unwrap_or_else(|e| panic!("{e}")).with_nic(NicModel::E1000);
    let config = MachineConfig {
        network: Some(forward),
        timeout: Duration::from_secs(300),
        ..MachineConfig::new(Emulator::bochs())
    };
    matryoshka_tests::workspace::ensure_module_built("l1-test").unwrap_or_else(|e| panic!("{e}"));
    let kernel = matryoshka_tests::workspace::guest_build_dir().join("l1-test");
    let builder = ImageBuilder::new().config("empty.cfg", &config_text).command_line("idle=serve");
    let mut machine = boot_with(builder, config);
    let host = forward.address();
    machine.expect("control_plane: serving until a guest is started");
    let dir = machine.dir.path().to_path_buf();
    let admin = token_file(&dir, "admin-token", ADMIN);
    let acme = token_file(&dir, "acme-token", ACME);
    let other = token_file(&dir, "other-token", OTHER);
    let guest_cfg = dir.join("acme-up.cfg");
    std::fs::write(&guest_cfg, "name = 'acme-up'\nmemory = 32\ncmdline = 'work=100000'\n").unwrap();
    let (cfg, kernel) = (guest_cfg.to_str().unwrap(), kernel.to_str().unwrap());

    let (code, _, err) = netctl(&host, &admin, &["--retries", "20", "list"]);
    assert_eq!(code, exit::OK, "netctl list: {err}");
    let free_before = free_memory(&host, &admin);
    for round in 1..=3 {
        let started = Instant::now();
        let (code, out, err) = netctl(&host, &acme, &["create", cfg, "--kernel", kernel, "--start"]);
        assert_eq!((code, out.as_str()), (exit::OK, "acme-up: running\n"), "round {round}: {err}");
        eprintln!("round {round}: create, upload and start took {:?}", started.elapsed());
        assert!(free_memory(&host, &admin) < free_before - (32 << 20), "the guest's RAM is not counted as used");
        wait_for_console(&host, &acme, "acme-up", "l1-test: work 1/100000");
        let (code, out, _) = netctl(&host, &acme, &["info", "acme-up"]);
        assert_eq!(code, exit::OK);
        assert!(out.contains("uploaded,") && out.contains("tenant:      acme"), "{out}");
        // Another tenant does not see it.
        assert_eq!(netctl(&host, &other, &["info", "acme-up"]).0, exit::NOT_FOUND);
        if round == 1 {
            // A guest that does not listen to the power button keeps running (like
            // `virsh shutdown` of a guest without ACPI): the request is accepted, no more.
            let (code, out, err) = netctl(&host, &acme, &["shutdown", "acme-up"]);
            assert_eq!((code, out.as_str()), (exit::OK, "acme-up: shutting_down (asked to power off)\n"), "{err}");
            let at = console_end(&host, &acme, "acme-up");
            let deadline = Instant::now() + Duration::from_secs(60);
            while console_end(&host, &acme, "acme-up") == at {
                assert!(Instant::now() < deadline, "the guest stopped working after the power button");
                std::thread::sleep(Duration::from_millis(500));
            }
            machine.expect("guest acme-up: power button pressed: the guest has not enabled it");
            assert_eq!(netctl(&host, &acme, &["remove", "acme-up"]).0, exit::CONFLICT, "running: destroy first");
        }
        // `console --follow` streams until the guest stops.
        let follower = (round == 3).then(|| {
            let (host, acme) = (host.clone(), acme.clone());
            let (sender, receiver) = std::sync::mpsc::channel();
            std::thread::spawn(move || sender.send(netctl(&host, &acme, &["console", "--follow", "acme-up"])));
            receiver
        });
        if follower.is_some() {
            std::thread::sleep(Duration::from_secs(2));
        }
        let destroying = Instant::now();
        let (code, out, err) = netctl(&host, &acme, &["destroy", "acme-up"]);
        assert_eq!((code, out.as_str()), (exit::OK, "acme-up: stopped\n"), "{err}");
        eprintln!("round {round}: destroy took {:?}", destroying.elapsed());
        if round == 2 {
            // Destroyed, it keeps its images: started again, it runs from them.
            let at = console_end(&host, &acme, "acme-up");
            let (code, out, err) = netctl(&host, &acme, &["start", "acme-up"]);
            assert_eq!((code, out.as_str()), (exit::OK, "acme-up: running\n"), "{err}");
            let deadline = Instant::now() + Duration::from_secs(60);
            while console_end(&host, &acme, "acme-up") == at {
                assert!(Instant::now() < deadline, "the restarted guest wrote nothing");
                std::thread::sleep(Duration::from_millis(500));
            }
            let (code, _, err) = netctl(&host, &acme, &["destroy", "acme-up"]);
            assert_eq!(code, exit::OK, "{err}");
        }
        if let Some(follower) = follower {
            let (code, out, err) = follower.recv_timeout(Duration::from_secs(60)).expect("follow ends with the guest");
            assert_eq!(code, exit::OK, "{err}");
            assert!(out.contains("l1-test: work 1/100000"), "{out}");
            assert_eq!(out.len() as u64, console_end(&host, &acme, "acme-up"), "followed to the last byte");
            eprintln!("round {round}: follow ended {:?} after the destroy", destroying.elapsed());
        }
        let (code, out, err) = netctl(&host, &acme, &["remove", "acme-up"]);
        assert_eq!((code, out.as_str()), (exit::OK, "acme-up: deleted\n"), "{err}");
        assert_eq!(netctl(&host, &acme, &["info", "acme-up"]).0, exit::NOT_FOUND);
        assert_eq!(free_memory(&host, &admin), free_before, "round {round}: memory not given back");
    }

    // Refusals, each with its reason, and nothing left behind.
    let bad_cfg = dir.join("bad.cfg");
    std::fs::write(&bad_cfg, "name = 'acme-bad'\nmemory = lots\n").unwrap();
    let (code, _, err) = netctl(&host, &acme, &["create", bad_cfg.to_str().unwrap(), "--kernel", kernel]);
    assert_eq!(code, exit::REFUSED);
    assert!(err.contains("400 Bad Request: invalid configuration: config:2: key 'memory'"), "{err}");
    std::fs::write(&bad_cfg, "name = 'acme-bad'\nmemory = 32\ntenant = 'other'\n").unwrap();
    let (code, _, err) = netctl(&host, &acme, &["create", bad_cfg.to_str().unwrap()]);
    assert_eq!(code, exit::REFUSED);
    assert!(err.contains("400") && err.contains("key 'tenant'"), "{err}");
    std::fs::write(&bad_cfg, "name = 'acme-bad'\nmemory = 100000\n").unwrap();
    let (code, _, err) = netctl(&host, &acme, &["create", bad_cfg.to_str().unwrap(), "--kernel", kernel]);
    assert_eq!(code, exit::REFUSED);
    assert!(err.contains("507 Insufficient Storage: not enough free memory for guest 'acme-bad'"), "{err}");
    std::fs::write(&bad_cfg, "name = 'acme-bad'\nmemory = 32\n").unwrap();
    let huge = dir.join("huge");
    std::fs::write(&huge, vec![0u8; 9 << 20]).unwrap();
    let (code, _, err) =
        netctl(&host, &acme, &["create", bad_cfg.to_str().unwrap(), "--kernel", huge.to_str().unwrap()]);
    assert_eq!(code, exit::REFUSED);
    assert!(err.contains("uploading the kernel: 413") && err.contains("removed again"), "{err}");
    let junk = common::scratch_module(&dir, "junk", 100_000);
    let (code, _, err) =
        netctl(&host, &acme, &["create", bad_cfg.to_str().unwrap(), "--kernel", junk.to_str().unwrap(), "--start"]);
    assert_eq!(code, exit::REFUSED);
    assert!(err.contains("400 Bad Request: cannot start guest 'acme-bad'") && err.contains("removed again"), "{err}");
    let (code, out, _) = netctl(&host, &admin, &["list"]);
    assert_eq!(code, exit::OK);
    assert!(!out.contains("acme-"), "refused guests were left behind: {out}");
    assert_eq!(free_memory(&host, &admin), free_before, "a refused create kept memory");

    // Upload throughput: a 4 MiB initrd (the guest ignores it) through the slirp network.
    let initrd = common::scratch_module(&dir, "initrd", 4 << 20);
    let started = Instant::now();
    let (code, _, err) =
        netctl(&host, &acme, &["create", cfg, "--kernel", kernel, "--initrd", initrd.to_str().unwrap()]);
    assert_eq!(code, exit::OK, "{err}");
    let seconds = started.elapsed().as_secs_f64();
    eprintln!("create with a 4 MiB initrd: {seconds:.2} s, {:.2} MiB/s", 4.0 / seconds);
    let (code, out, _) = netctl(&host, &acme, &["info", "acme-up"]);
    assert_eq!(code, exit::OK);
    assert!(out.contains("created") && out.contains(&format!("uploaded, {} bytes", 4 << 20)), "{out}");
    // Not started: an empty console and no exits, not an error.
    assert_eq!(netctl(&host, &acme, &["console", "acme-up"]), (exit::OK, String::new(), String::new()));
    let (code, out, err) = netctl(&host, &acme, &["--json", "stats", "acme-up"]);
    assert!(code == exit::OK && out.contains("\"exits\":[]"), "{out}{err}");
    assert_eq!(netctl(&host, &acme, &["remove", "acme-up"]).0, exit::OK);
    assert_eq!(free_memory(&host, &admin), free_before, "a removed draft kept its uploads");
}
