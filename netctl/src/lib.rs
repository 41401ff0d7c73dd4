//! netctl: the host CLI for Matryoshka's control API. `run` is the whole program, with its
//! output streams passed in so tests drive it in-process.

pub mod client;
mod output;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use matryoshka_control::model::{CreateGuest, GuestInfo, GuestList, GuestState, GuestStats, HostInfo, NestedState};
use serde::de::DeserializeOwned;

use client::{Client, ClientError, HttpResponse};

/// Exit codes, documented in README.md; scripts rely on them.
pub mod exit {
    pub const OK: i32 = 0;
    /// The server refused the request for a reason not listed below (400, 413, 507, 5xx, ...).
    pub const REFUSED: i32 = 1;
    /// Wrong command line, or a local file could not be read.
    pub const USAGE: i32 = 2;
    /// The server could not be reached, or its answer was not HTTP.
    pub const UNREACHABLE: i32 = 3;
    /// Missing or wrong token (401), not allowed (403), or locked out after failures (429).
    pub const AUTH: i32 = 4;
    /// No such guest, or not one of this token's (404).
    pub const NOT_FOUND: i32 = 5;
    /// The guest's state does not allow this, or the name is taken (409).
    pub const CONFLICT: i32 = 6;
    /// `shutdown --wait`: the guest had not stopped when the time was up.
    pub const TIMED_OUT: i32 = 7;
}

#[derive(Parser, Debug)]
#[command(name = "netctl", version, about = "Manage a Matryoshka host over its control API")]
pub struct Cli {
    /// Control server address.
    #[arg(long, env = "MATRYOSHKA_HOST", default_value = "127.0.0.1:7000", global = true)]
    pub host: String,
    /// File holding the bearer token (surrounding whitespace is ignored).
    #[arg(long, env = "MATRYOSHKA_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// Print the server's JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Further connection attempts when the server refuses, with exponential backoff from 100 ms.
    #[arg(long, default_value_t = 5, global = true)]
    pub retries: u32,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List the guests this token may manage.
    List,
    /// Show a guest's state, resources, configuration and why it stopped.
    Info {
        name: String,
    },
    /// Define a guest from an xl.cfg-style file; optionally upload its images and start it.
    Create {
        config: PathBuf,
        #[arg(long)]
        kernel: Option<PathBuf>,
        #[arg(long)]
        initrd: Option<PathBuf>,
        /// For the admin: the tenant the guest belongs to.
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        start: bool,
    },
    Start {
        name: String,
    },
    Pause {
        name: String,
    },
    Resume {
        name: String,
    },
    /// Ask the guest to power off (its ACPI power button).
    Shutdown {
        name: String,
        /// Wait up to this many seconds for the guest to stop (exit code 7 if it has not).
        #[arg(long, value_name = "SECONDS")]
        wait: Option<u64>,
    },
    /// Stop the guest at once.
    Destroy {
        name: String,
    },
    Reset {
        name: String,
    },
    /// Forget a stopped guest, freeing all of its memory.
    #[command(alias = "remove")]
    Delete {
        name: String,
    },
    /// Print the guest's console output.
    Console {
        name: String,
        /// Keep printing new output until the guest stops (or Ctrl-C).
        #[arg(long, short)]
        follow: bool,
        /// Start at this byte offset.
        #[arg(long, default_value_t = 0)]
        offset: u64,
    },
    /// Exit counts by reason and level, monitor memory, EPT02 pages, uptime (all guests without NAME).
    Stats {
        name: Option<String>,
    },
    /// Prometheus metrics.
    Metrics,
    /// The guest's vmcs12 summary per vCPU.
    NestedState {
        name: String,
    },
    /// The host's CPU, VMX features and memory.
    Host,
}

struct Failure {
    code: i32,
    message: String,
}

impl Failure {
    fn usage(message: String) -> Failure {
        Failure { code: exit::USAGE, message }
    }

    fn from_response(response: &HttpResponse) -> Failure {
        let code = match response.status {
            401 | 403 | 429 => exit::AUTH,
            404 => exit::NOT_FOUND,
            409 => exit::CONFLICT,
            _ => exit::REFUSED,
        };
        let reason = if response.reason.is_empty() { "" } else { response.reason.as_str() };
        Failure { code, message: format!("{} {}: {}", response.status, reason, response.error_text()) }
    }
}

impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Failure {
        let message = match error {
            ClientError::Connect { attempts, error } => {
                format!("cannot connect: {error} (after {attempts} attempt{})", if attempts == 1 { "" } else { "s" })
            }
            ClientError::Exchange(why) => why,
        };
        Failure { code: exit::UNREACHABLE, message }
    }
}

/// Runs netctl with `args` (the first is the program name) and returns its exit code.
pub fn run(args: Vec<String>, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            let _ = write!(err, "{}", error.render());
            return if error.use_stderr() { exit::USAGE } else { exit::OK };
        }
    };
    match execute(&cli, out) {
        Ok(()) => exit::OK,
        Err(failure) => {
            let _ = writeln!(err, "netctl: {}", failure.message);
            failure.code
        }
    }
}

fn token(cli: &Cli) -> Result<Option<String>, Failure> {
    if let Some(path) = &cli.token_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Failure::usage(format!("cannot read token file {}: {e}", path.display())))?;
        return Ok(Some(text.trim().to_string()));
    }
    Ok(std::env::var("MATRYOSHKA_TOKEN").ok().map(|t| t.trim().to_string()))
}

fn expect_success(response: HttpResponse) -> Result<HttpResponse, Failure> {
    if (200..300).contains(&response.status) {
        Ok(response)
    } else {
        Err(Failure::from_response(&response))
    }
}

fn decode<T: DeserializeOwned>(response: &HttpResponse) -> Result<T, Failure> {
    serde_json::from_slice(&response.body)
        .map_err(|e| Failure { code: exit::UNREACHABLE, message: format!("unexpected answer from the server: {e}") })
}

fn read_file(path: &PathBuf) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))
}

fn guest_path(name: &str, rest: &str) -> String {
    // Names are plain, but nothing a user types may add path segments or a query.
    let escaped: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"_.-".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("/v1/guests/{escaped}{rest}")
}

fn execute(cli: &Cli, out: &mut dyn Write) -> Result<(), Failure> {
    let client = Client::new(cli.host.clone(), token(cli)?, cli.retries);
    let write_error = |e: std::io::Error| Failure { code: exit::REFUSED, message: format!("cannot write output: {e}") };
    let print_json = |out: &mut dyn Write, response: &HttpResponse| {
        out.write_all(&response.body).and_then(|_| if response.body.ends_with(b"\n") { Ok(()) } else { writeln!(out) })
    };
    match &cli.command {
        Command::List => {
            let response = expect_success(client.get("/v1/guests")?)?;
            if cli.json {
                return print_json(out, &response).map_err(write_error);
            }
            output::guest_table(out, &decode::<GuestList>(&response)?).map_err(write_error)
        }
        Command::Info { name } => {
            let response = expect_success(client.get(&guest_path(name, ""))?)?;
            if cli.json {
                return print_json(out, &response).map_err(write_error);
            }
            output::guest_info(out, &decode::<GuestInfo>(&response)?).map_err(write_error)
        }
        Command::Create { config, kernel, initrd, tenant, start } => {
            let text = String::from_utf8(read_file(config)?)
                .map_err(|_| Failure::usage(format!("{} is not UTF-8 text", config.display())))?;
            let body = serde_json::to_vec(&CreateGuest { config: text, tenant: tenant.clone() })
                .map_err(|e| Failure::usage(e.to_string()))?;
            // The images are read before anything is defined on the server.
            let images: Vec<(&str, Vec<u8>)> = [("kernel", kernel), ("initrd", initrd)]
                .into_iter()
                .filter_map(|(image, path)| path.as_ref().map(|path| read_file(path).map(|bytes| (image, bytes))))
                .collect::<Result<_, _>>()?;
            let created = expect_success(client.post_json("/v1/guests", &body)?)?;
            let info: GuestInfo = decode(&created)?;
            // A create that fails half-way removes what it defined: it leaves nothing behind.
            let last = match upload_and_start(&client, &info.name, &images, *start, created) {
                Ok(last) => last,
                Err(mut failure) => {
                    let removed = client.request("DELETE", &guest_path(&info.name, ""), None);
                    failure.message += match removed {
                        Ok(response) if response.status == 204 => " (the guest was removed again)",
                        _ => " (removing the half-created guest failed too: see `netctl list`)",
                    };
                    return Err(failure);
                }
            };
            if cli.json {
                return print_json(out, &last).map_err(write_error);
            }
            let info: GuestInfo = decode(&last)?;
            writeln!(out, "{}: {}", info.name, info.state).map_err(write_error)
        }
        Command::Start { name }
        | Command::Pause { name }
        | Command::Resume { name }
        | Command::Shutdown { name, wait: None }
        | Command::Destroy { name }
        | Command::Reset { name } => {
            let action = match &cli.command {
                Command::Start { .. } => "start",
                Command::Pause { .. } => "pause",
                Command::Resume { .. } => "resume",
                Command::Shutdown { .. } => "shutdown",
                Command::Destroy { .. } => "destroy",
                _ => "reset",
            };
            let response = expect_success(client.request("POST", &guest_path(name, &format!("/{action}")), None)?)?;
            if cli.json {
                return print_json(out, &response).map_err(write_error);
            }
            let info: GuestInfo = decode(&response)?;
            let note = if info.state == GuestState::ShuttingDown { " (asked to power off)" } else { "" };
            writeln!(out, "{}: {}{note}", info.name, info.state).map_err(write_error)
        }
        Command::Shutdown { name, wait: Some(seconds) } => {
            expect_success(client.request("POST", &guest_path(name, "/shutdown"), None)?)?;
            let deadline = std::time::Instant::now() + Duration::from_secs(*seconds);
            let info = loop {
                let response = expect_success(client.get(&guest_path(name, ""))?)?;
                let info: GuestInfo = decode(&response)?;
                if info.state == GuestState::Stopped {
                    if cli.json {
                        return print_json(out, &response).map_err(write_error);
                    }
                    break info;
                }
                if std::time::Instant::now() >= deadline {
                    return Err(Failure {
                        code: exit::TIMED_OUT,
                        message: format!(
                            "guest '{name}' is still {} after {seconds} s: it may not listen to the power \
                             button (`netctl destroy {name}` stops it at once)",
                            info.state
                        ),
                    });
                }
                std::thread::sleep(SHUTDOWN_POLL);
            };
            let reason = info.stop_reason.unwrap_or_default();
            writeln!(out, "{}: {} ({reason})", info.name, info.state).map_err(write_error)
        }
        Command::Delete { name } => {
            expect_success(client.request("DELETE", &guest_path(name, ""), None)?)?;
            if !cli.json {
                writeln!(out, "{name}: deleted").map_err(write_error)?;
            }
            Ok(())
        }
        Command::Console { name, follow, offset } => console(&client, cli.json, name, *follow, *offset, out),
        Command::Stats { name: Some(name) } => {
            let response = expect_success(client.get(&guest_path(name, "/stats"))?)?;
            if cli.json {
                return print_json(out, &response).map_err(write_error);
            }
            output::guest_stats(out, &decode::<GuestStats>(&response)?).map_err(write_error)
        }
        Command::Stats { name: None } => {
            let list: GuestList = decode(&expect_success(client.get("/v1/guests")?)?)?;
            let mut all = Vec::new();
            for guest in &list.guests {
                all.push(decode::<GuestStats>(&expect_success(client.get(&guest_path(&guest.name, "/stats"))?)?)?);
            }
            if cli.json {
                let text = serde_json::to_string(&all).map_err(|e| Failure::usage(e.to_string()))?;
                return writeln!(out, "{text}").map_err(write_error);
            }
            output::stats_table(out, &all).map_err(write_error)
        }
        Command::Metrics => {
            let response = expect_success(client.get("/metrics")?)?;
            out.write_all(&response.body).map_err(write_error)
        }
        Command::NestedState { name } => {
            let response = expect_success(client.get(&guest_path(name, "/nested"))?)?;
            if cli.json {
                return print_json(out, &response).map_err(write_error);
            }
            output::nested_state(out, &decode::<NestedState>(&response)?).map_err(write_error)
        }
        Command::Host => {
            let response = expect_success(client.get("/v1/host")?)?;
            if cli.json {
                return print_json(out, &response).map_err(write_error);
            }
            output::host_info(out, &decode::<HostInfo>(&response)?).map_err(write_error)
        }
    }
}

/// The rest of `create` once the guest is defined: its uploads, then its start. Returns the
/// last answer (the guest's info).
fn upload_and_start(
    client: &Client,
    name: &str,
    images: &[(&str, Vec<u8>)],
    start: bool,
    created: HttpResponse,
) -> Result<HttpResponse, Failure> {
    let mut last = created;
    for (image, bytes) in images {
        let path = guest_path(name, &format!("/{image}"));
        let uploaded = client.request("PUT", &path, Some(("application/octet-stream", bytes)))?;
        last = expect_success(uploaded)
            .map_err(|failure| Failure { message: format!("uploading the {image}: {}", failure.message), ..failure })?;
    }
    if start {
        last = expect_success(client.request("POST", &guest_path(name, "/start"), None)?)?;
    }
    Ok(last)
}

/// How often `shutdown --wait` looks at the guest's state.
const SHUTDOWN_POLL: Duration = Duration::from_millis(250);

/// How long one console read may wait on the server for new output.
const FOLLOW_WAIT_MS: u64 = 20_000;

fn console(
    client: &Client,
    json: bool,
    name: &str,
    follow: bool,
    mut offset: u64,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let mut client = client.clone();
    client.read_timeout = Duration::from_millis(FOLLOW_WAIT_MS + 10_000);
    let write_error = |e: std::io::Error| Failure { code: exit::REFUSED, message: format!("cannot write output: {e}") };
    let wait = if follow { FOLLOW_WAIT_MS } else { 0 };
    loop {
        let path = guest_path(name, &format!("/console?offset={offset}&wait_ms={wait}"));
        let response = expect_success(client.get(&path)?)?;
        let header_number = |name: &str| response.header(name).and_then(|v| v.parse::<u64>().ok());
        let (Some(start), Some(next)) = (header_number("Console-Offset"), header_number("Console-Next-Offset")) else {
            return Err(Failure { code: exit::UNREACHABLE, message: "console answer without offsets".into() });
        };
        if json {
            let line = serde_json::json!({
                "offset": start,
                "next_offset": next,
                "skipped": start.saturating_sub(offset),
                "state": response.header("Guest-State"),
                "data": String::from_utf8_lossy(&response.body),
            });
            writeln!(out, "{line}").map_err(write_error)?;
        } else {
            out.write_all(&response.body).map_err(write_error)?;
        }
        out.flush().map_err(write_error)?;
        offset = next;
        // Without --follow, read until the ring is drained; with it, until a stopped guest has nothing left.
        let guest_done = matches!(response.header("Guest-State"), Some("stopped" | "created"));
        if response.body.is_empty() && (!follow || guest_done) {
            return Ok(());
        }
    }
}
