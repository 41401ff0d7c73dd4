//! netctl against the real router and sessions, served over a host TCP socket by
//! `matryoshka_control::std_server`, with the fake back end.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use matryoshka_control::auth::{Principal, RateLimitPolicy, TokenTable};
use matryoshka_control::fake::FakeBackend;
use matryoshka_control::model::{GuestList, GuestState};
use matryoshka_control::std_server::StdServer;
use netctl::exit;

const ADMIN: &str = "admin-token-0123456789abcdef";
const ACME: &str = "acme-token-0123456789abcdef";

struct Host {
    address: String,
    backend: Arc<Mutex<FakeBackend>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Host {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn tokens() -> TokenTable {
    let mut tokens = TokenTable::new();
    tokens.add(Principal::Admin, ADMIN.as_bytes());
    tokens.add(Principal::Tenant("acme".into()), ACME.as_bytes());
    tokens
}

fn serve_on(address: &str) -> Host {
    let mut server = StdServer::bind(address, tokens(), RateLimitPolicy::default()).expect("bind");
    let backend = Arc::new(Mutex::new(
        FakeBackend::new(4096).with_guest("acme-web", Some("acme")).with_guest("globex-db", Some("globex")),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let (shared, stopping) = (backend.clone(), stop.clone());
    let address = server.local_addr().to_string();
    thread::spawn(move || {
        while !stopping.load(Ordering::Relaxed) {
            server.poll(&mut *shared.lock().unwrap());
            thread::sleep(Duration::from_millis(1));
        }
    });
    Host { address, backend, stop }
}

fn serve() -> Host {
    serve_on("127.0.0.1:0")
}

fn token_file(token: &str) -> PathBuf {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "netctl-test-{}-{}.token",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, format!("{token}\n")).unwrap();
    path
}

struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

fn netctl(host: &str, token: &str, args: &[&str]) -> Outcome {
    let token_path = token_file(token);
    let mut argv: Vec<String> =
        vec!["netctl".into(), "--host".into(), host.into(), "--token-file".into(), token_path.display().to_string()];
    argv.extend(args.iter().map(|a| a.to_string()));
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let code = netctl::run(argv, &mut stdout, &mut stderr);
    let _ = std::fs::remove_file(token_path);
    Outcome { code, stdout: String::from_utf8_lossy(&stdout).into(), stderr: String::from_utf8_lossy(&stderr).into() }
}

#[test]
fn list_shows_a_table_of_own_guests_or_json() {
    let host = serve();
    let table = netctl(&host.address, ACME, &["list"]);
    assert_eq!(table.code, exit::OK, "{}", table.stderr);
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", table.stdout);
    assert!(lines[0].starts_with("NAME") && lines[1].starts_with("acme-web") && lines[1].contains("running"));
    assert!(!table.stdout.contains("globex-db"));

    let json = netctl(&host.address, ADMIN, &["list", "--json"]);
    let list: GuestList = serde_json::from_str(&json.stdout).expect("the API's JSON");
    assert_eq!(list.guests.len(), 2);
}

#[test]
fn another_tenants_guest_is_not_found_for_every_command() {
    let host = serve();
    host.backend.lock().unwrap().write_console("globex-db", b"globex secret");
    for args in [
        &["info", "globex-db"][..],
        &["pause", "globex-db"],
        &["destroy", "globex-db"],
        &["console", "globex-db"],
        &["stats", "globex-db"],
        &["nested-state", "globex-db"],
        &["delete", "globex-db"],
    ] {
        let outcome = netctl(&host.address, ACME, args);
        assert_eq!(outcome.code, exit::NOT_FOUND, "{args:?}: {}", outcome.stderr);
        assert_eq!(outcome.stderr, "netctl: 404 Not Found: no guest named 'globex-db'\n");
        assert!(outcome.stdout.is_empty());
    }
    assert_eq!(host.backend.lock().unwrap().state("globex-db"), Some(GuestState::Running));
}

#[test]
fn lifecycle_commands_report_the_new_state_and_conflicts() {
    let host = serve();
    let pause = netctl(&host.address, ACME, &["pause", "acme-web"]);
    assert_eq!((pause.code, pause.stdout.as_str()), (exit::OK, "acme-web: paused\n"));
    let again = netctl(&host.address, ACME, &["pause", "acme-web"]);
    assert_eq!(again.code, exit::CONFLICT);
    assert!(again.stderr.starts_with("netctl: 409 Conflict: guest 'acme-web' is paused"), "{}", again.stderr);
    assert_eq!(netctl(&host.address, ACME, &["resume", "acme-web"]).stdout, "acme-web: running\n");
    assert_eq!(
        netctl(&host.address, ACME, &["shutdown", "acme-web"]).stdout,
        "acme-web: shutting_down (asked to power off)\n"
    );
    assert_eq!(netctl(&host.address, ACME, &["destroy", "acme-web"]).code, exit::OK);
    let info = netctl(&host.address, ACME, &["info", "acme-web"]);
    assert!(info.stdout.contains("state:       stopped") && info.stdout.contains("stopped by:  destroyed"));
}

#[test]
fn shutdown_wait_returns_once_the_guest_stops_or_says_it_timed_out() {
    let host = serve();
    let ignored = netctl(&host.address, ACME, &["shutdown", "acme-web", "--wait", "1"]);
    assert_eq!(ignored.code, exit::TIMED_OUT, "{}", ignored.stderr);
    assert!(
        ignored.stderr.starts_with("netctl: guest 'acme-web' is still shutting_down after 1 s"),
        "{}",
        ignored.stderr
    );
    let backend = host.backend.clone();
    let stopper = thread::spawn(move || {
        thread::sleep(Duration::from_millis(500));
        backend.lock().unwrap().stop("acme-web", "powered off: ACPI S5");
    });
    let obeyed = netctl(&host.address, ACME, &["shutdown", "acme-web", "--wait", "30"]);
    stopper.join().unwrap();
    assert_eq!(
        (obeyed.code, obeyed.stdout.as_str()),
        (exit::OK, "acme-web: stopped (powered off: ACPI S5)\n"),
        "{}",
        obeyed.stderr
    );
    let again = netctl(&host.address, ACME, &["shutdown", "acme-web", "--wait", "5"]);
    assert_eq!(again.code, exit::CONFLICT, "a stopped guest: {}", again.stderr);
}

#[test]
fn create_uploads_the_kernel_and_starts_the_guest() {
    let host = serve();
    let dir = std::env::temp_dir().join(format!("netctl-create-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (config, kernel) = (dir.join("guest.cfg"), dir.join("bzImage"));
    std::fs::write(&config, "name = \"acme-new\"\nmemory = 128\n").unwrap();
    let image: Vec<u8> = (0..200_000u32).map(|i| (i * 7) as u8).collect();
    std::fs::write(&kernel, &image).unwrap();
    let outcome = netctl(
        &host.address,
        ACME,
        &["create", config.to_str().unwrap(), "--kernel", kernel.to_str().unwrap(), "--start"],
    );
    assert_eq!((outcome.code, outcome.stdout.as_str()), (exit::OK, "acme-new: running\n"), "{}", outcome.stderr);
    assert_eq!(host.backend.lock().unwrap().kernel_bytes("acme-new"), Some(&image[..]));

    std::fs::write(&config, "name = \"bad\"\nmemory = lots\n").unwrap();
    let bad = netctl(&host.address, ACME, &["create", config.to_str().unwrap()]);
    assert_eq!(bad.code, exit::REFUSED);
    assert!(bad.stderr.contains("400") && bad.stderr.contains("key 'memory'"), "{}", bad.stderr);

    // Too large an image: 413 before the body is sent, and nothing is left defined.
    std::fs::write(&config, "name = \"acme-huge\"\nmemory = 128\n").unwrap();
    std::fs::write(&kernel, vec![0u8; matryoshka_control::fake::FAKE_MAX_IMAGE_BYTES + 1]).unwrap();
    let huge = netctl(&host.address, ACME, &["create", config.to_str().unwrap(), "--kernel", kernel.to_str().unwrap()]);
    assert_eq!(huge.code, exit::REFUSED, "{}", huge.stderr);
    assert!(
        huge.stderr.starts_with("netctl: uploading the kernel: 413 Content Too Large: images are at most")
            && huge.stderr.contains("(the guest was removed again)"),
        "{}",
        huge.stderr
    );
    assert_eq!(host.backend.lock().unwrap().state("acme-huge"), None);

    // Too little memory: 507 with the numbers, and nothing is left defined.
    std::fs::write(&config, "name = \"acme-fat\"\nmemory = 4096\n").unwrap();
    std::fs::write(&kernel, b"kernel").unwrap();
    let args = ["create", config.to_str().unwrap(), "--kernel", kernel.to_str().unwrap(), "--start"];
    let fat = netctl(&host.address, ACME, &args);
    assert_eq!(fat.code, exit::REFUSED, "{}", fat.stderr);
    assert!(fat.stderr.starts_with("netctl: 507 Insufficient Storage: not enough free memory"), "{}", fat.stderr);
    assert_eq!(host.backend.lock().unwrap().state("acme-fat"), None);
    assert_eq!(netctl(&host.address, ACME, &["remove", "acme-new"]).code, exit::CONFLICT, "running: destroy first");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn console_prints_the_ring_and_follow_waits_for_more_until_the_guest_stops() {
    let host = serve();
    host.backend.lock().unwrap().write_console("acme-web", b"booting\n");
    let outcome = netctl(&host.address, ACME, &["console", "acme-web"]);
    assert_eq!((outcome.code, outcome.stdout.as_str()), (exit::OK, "booting\n"));

    let backend = host.backend.clone();
    let writer = thread::spawn(move || {
        thread::sleep(Duration::from_millis(300));
        backend.lock().unwrap().write_console("acme-web", b"login: ");
        thread::sleep(Duration::from_millis(300));
        backend.lock().unwrap().stop("acme-web", "powered off");
    });
    let started = Instant::now();
    let follow = netctl(&host.address, ACME, &["console", "acme-web", "--follow", "--offset", "3"]);
    writer.join().unwrap();
    assert_eq!((follow.code, follow.stdout.as_str()), (exit::OK, "ting\nlogin: "));
    assert!(started.elapsed() >= Duration::from_millis(550), "follow waited for the guest to stop");

    let json = netctl(&host.address, ACME, &["console", "acme-web", "--json"]);
    let first: serde_json::Value = serde_json::from_str(json.stdout.lines().next().unwrap()).unwrap();
    assert_eq!((first["offset"].as_u64(), first["next_offset"].as_u64()), (Some(0), Some(15)));
    assert_eq!(first["data"], "booting\nlogin: ");
}

#[test]
fn stats_metrics_nested_state_and_host_are_shown() {
    let host = serve();
    {
        let mut backend = host.backend.lock().unwrap();
        backend.count_exit("acme-web", "cpuid", false);
        backend.count_exit("acme-web", "vmread", true);
    }
    let stats = netctl(&host.address, ACME, &["stats", "acme-web"]);
    assert!(stats.stdout.contains("exits:           1 at L1, 1 at L2"), "{}", stats.stdout);
    assert!(stats.stdout.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["vmread", "0", "1"]));
    let all = netctl(&host.address, ADMIN, &["stats"]);
    assert_eq!(all.stdout.lines().count(), 3, "{}", all.stdout);
    let metrics = netctl(&host.address, ACME, &["metrics"]);
    assert!(metrics
        .stdout
        .contains("matryoshka_guest_exits_total{guest=\"acme-web\",reason=\"vmread\",level=\"l2\"} 1"));
    assert!(!metrics.stdout.contains("globex-db"));
    let nested = netctl(&host.address, ACME, &["nested-state", "acme-web"]);
    assert!(nested.stdout.contains("guest_rip") && nested.stdout.contains("0x000000000000fff0"), "{}", nested.stdout);
    let host_info = netctl(&host.address, ACME, &["host"]);
    assert!(host_info.stdout.contains("vmx features:  ept vpid unrestricted_guest"), "{}", host_info.stdout);
}

#[test]
fn wrong_or_missing_tokens_exit_with_the_auth_code() {
    let host = serve();
    let wrong = netctl(&host.address, "wrong-token-0123456789", &["list"]);
    assert_eq!((wrong.code, wrong.stderr.as_str()), (exit::AUTH, "netctl: 401 Unauthorized: invalid token\n"));
    let missing = netctl::run(
        vec![
            "netctl".into(),
            "--host".into(),
            host.address.clone(),
            "--token-file".into(),
            "/nonexistent/token".into(),
            "list".into(),
        ],
        &mut Vec::new(),
        &mut Vec::new(),
    );
    assert_eq!(missing, exit::USAGE);
    assert_eq!(netctl(&host.address, ACME, &["frobnicate"]).code, exit::USAGE);
}

/// A port that refuses connections and that no one else can take: bound but not listening.
/// A port merely found free and released could be taken by a parallel test, and a
/// connection to a released port in the ephemeral range can even connect to itself (TCP
/// simultaneous open); a bound port is never chosen as a source port.
fn refusing_port() -> (socket2::Socket, String) {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
    let address = socket.local_addr().unwrap().as_socket().unwrap().to_string();
    (socket, address)
}

#[test]
fn a_refused_connection_is_retried_with_backoff_then_reported() {
    let (held, address) = refusing_port();
    let started = Instant::now();
    let outcome = netctl(&address, ACME, &["--retries", "2", "list"]);
    assert_eq!(outcome.code, exit::UNREACHABLE, "{}", outcome.stderr);
    assert!(
        outcome.stderr.contains("cannot connect") && outcome.stderr.contains("after 3 attempts"),
        "{}",
        outcome.stderr
    );
    assert!(started.elapsed() >= Duration::from_millis(300), "waited 100 ms, then 200 ms");

    // A server that comes up while netctl is retrying is reached.
    let late = address.clone();
    let server = thread::spawn(move || {
        thread::sleep(Duration::from_millis(250));
        drop(held);
        serve_on(&late)
    });
    let outcome = netctl(&address, ACME, &["--retries", "6", "list"]);
    let _host = server.join().unwrap();
    assert_eq!(outcome.code, exit::OK, "{}", outcome.stderr);
}

#[test]
fn the_binary_exits_with_the_documented_codes() {
    let host = serve();
    let token = token_file(ACME);
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_netctl"))
            .args(args)
            .env("MATRYOSHKA_HOST", &host.address)
            .env("MATRYOSHKA_TOKEN_FILE", &token)
            .output()
            .expect("netctl runs")
    };
    let info = run(&["info", "acme-web"]);
    assert_eq!(info.status.code(), Some(exit::OK));
    assert!(String::from_utf8_lossy(&info.stdout).contains("tenant:      acme"));
    let missing = run(&["info", "nope"]);
    assert_eq!(missing.status.code(), Some(exit::NOT_FOUND));
    assert_eq!(String::from_utf8_lossy(&missing.stderr), "netctl: 404 Not Found: no guest named 'nope'\n");
    assert_eq!(run(&[]).status.code(), Some(exit::USAGE));
    assert_eq!(run(&["--help"]).status.code(), Some(exit::OK));
    let _ = std::fs::remove_file(token);
}
