//! `tracker <tracker_info.txt> <n>`: tracker number n of the replicated
//! group (line n of the file, counted from 1).
//!
//! It listens on line n's address when that is an address of this host,
//! else (behind a 1:1 NAT) on every interface at that line's port;
//! `--listen ADDR` chooses exactly. The line stays the address clients and
//! peer trackers dial. It connects to the other trackers (printing
//! `Connected to peer tracker <id>` on stdout for each, as the seed did),
//! keeps its op log and snapshots in `--data-dir` and recovers from them on
//! restart. Every connection is TLS 1.3: the tracker's key is
//! `identity.key` in its data directory (made on first start); it prints
//! `fingerprint: <hex>` at start, and `--fingerprint` prints the
//! fingerprint alone and exits (what to put on its line of everyone's
//! tracker_info.txt). Peer trackers whose line has no fingerprint are
//! pinned on first contact in the data directory's `known_trackers`. Console on stdin: `quit`, `status`, `conflicts`; end of input
//! does not stop it (run it with `</dev/null` or under a service manager).
//! SIGINT / SIGTERM shut it down cleanly (a second one exits at once).
//!
//! Logs go to stderr through `tracing`: `--log-level LEVEL` (or a full
//! filter such as `info,runtime_common=debug`), else `RUST_LOG`, else `info`.
//! The hidden `--argon2 test` option selects the cheapest password-hash
//! cost, for tests only (default `production`).

use std::io::{BufRead, IsTerminal, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;
use std::thread;

use clap::{Parser, ValueEnum};
use p2p_state::Duration;
use p2p_state::tracker::node::{ConsoleCmd, NodeConfig, TrackerEvent};
use p2p_state::tracker::state::TrackerConfig;
use runtime::Runtime;
use runtime_common::TrackerInfo;
use runtime_common::known_trackers::{KnownTrackers, tracker_keys};
use runtime_common::listen::{ListenChoice, tracker_listen};
use runtime_common::present;
use runtime_common::tls::Identity;
use runtime_common::tracker::{EventSink, TrackerControl, TrackerOptions};
use signal_hook::consts::{SIGINT, SIGTERM};
use tracing_subscriber::EnvFilter;

use bins::runtime;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Argon2Cost {
    /// The cheapest cost argon2 accepts (tests only).
    Test,
    /// The OWASP-recommended cost.
    Production,
}

#[derive(Parser)]
#[command(version, about = "A tracker of the p2p group file-sharing system")]
struct Args {
    /// File listing every tracker, one ip:port a line.
    tracker_info: PathBuf,
    /// Which line of tracker_info is this tracker (counted from 1).
    n: usize,
    /// Where the op log and snapshots live [default: ./tracker-<n>-data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Where to listen, when the address clients dial (this tracker's line)
    /// is not an address of this host, or to pin it [default: the line's
    /// address if local, else all interfaces at its port].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Which driver runs the tracker.
    #[arg(long, value_enum, default_value = "std")]
    runtime: Runtime,
    /// Log filter for stderr (e.g. info, debug, warn,runtime_common=debug);
    /// overrides RUST_LOG [default: RUST_LOG, else info].
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
    /// Send to every other tracker this often (the primary's heartbeat, a
    /// backup's alive message).
    #[arg(long, value_name = "MS", default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
    heartbeat_ms: u64,
    /// A tracker not heard from this long counts as gone (its connection is
    /// closed and redialled); a backup whose primary went silent this long
    /// takes over if it is the lowest id it still hears. Must be above the
    /// heartbeat.
    #[arg(long, value_name = "MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    peer_timeout_ms: u64,
    /// Print this tracker's key fingerprint (making the key if needed)
    /// and exit.
    #[arg(long)]
    fingerprint: bool,
    /// Password-hash cost (`test` is for tests only).
    #[arg(long, value_enum, default_value = "production", hide = true)]
    argon2: Argon2Cost,
    /// A session whose client has been connected to no tracker this long
    /// is over (the user logs in again).
    #[arg(long, value_name = "SECS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..))]
    session_idle_secs: u64,
    /// A session this old (since its login) is over, online or not.
    #[arg(long, value_name = "SECS", default_value_t = 7 * 24 * 3600, value_parser = clap::value_parser!(u64).range(1..))]
    session_max_secs: u64,
    /// A client connection that sends nothing this long is closed
    /// (CLIENT_IDLE_TIMEOUT; clients ping every second when idle, so keep
    /// it well above that).
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(2..))]
    idle_timeout_secs: u64,
    /// A frame whose first byte has come must be whole this soon, or the
    /// connection is cut (FRAME_TIMEOUT; a 516 KiB frame needs a link of
    /// 516 KiB / SECS).
    #[arg(long, value_name = "SECS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    frame_timeout_secs: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = init_logging(args.log_level.as_deref()) {
        eprintln!("error: bad --log-level / RUST_LOG filter: {e}");
        return ExitCode::from(2);
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(level: Option<&str>) -> Result<(), tracing_subscriber::filter::ParseError> {
    let filter = match level {
        Some(l) => EnvFilter::try_new(l)?,
        None => match std::env::var("RUST_LOG") {
            Ok(v) if !v.trim().is_empty() => EnvFilter::try_new(v)?,
            _ => EnvFilter::new("info"),
        },
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    Ok(())
}

fn run(args: Args) -> Result<(), String> {
    if args.peer_timeout_ms <= args.heartbeat_ms {
        return Err(format!(
            "--peer-timeout-ms {} must be above --heartbeat-ms {} (else a tracker is given up \
             between two of its messages); raise the timeout or lower the heartbeat",
            args.peer_timeout_ms, args.heartbeat_ms
        ));
    }
    let info = TrackerInfo::read(&args.tracker_info)
        .map_err(|e| format!("{}: {e}", args.tracker_info.display()))?;
    let (id, addr) = info
        .get(args.n)
        .map_err(|e| format!("{}: {e}", args.tracker_info.display()))?;
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("tracker-{}-data", args.n)));
    let identity = Identity::load_or_create(&data_dir).map_err(|e| e.to_string())?;
    if args.fingerprint {
        println!("{}", identity.key_id());
        return Ok(());
    }
    println!("{}", present::fingerprint(&identity.key_id()));
    let known = KnownTrackers::load(&data_dir).map_err(|e| e.to_string())?;
    let keys = tracker_keys(&info, &args.tracker_info, &known).map_err(|e| e.to_string())?;
    let (listener, how) = tracker_listen(addr, args.listen, TcpListener::bind)
        .map_err(|e| format!("tracker {id}: {e}"))?;
    if how == ListenChoice::AllInterfaces {
        tracing::info!(
            "{addr} (line {}) is not an address of this host: listening on every \
             interface at port {}; clients keep dialing {addr} (--listen ADDR to choose)",
            args.n,
            addr.port()
        );
    }
    let mut state = match args.argon2 {
        Argon2Cost::Test => TrackerConfig::test(),
        Argon2Cost::Production => TrackerConfig::production(),
    };
    state.session_idle_ms = args.session_idle_secs.saturating_mul(1000);
    state.session_max_ms = args.session_max_secs.saturating_mul(1000);
    let mut node = NodeConfig::new(id, info.trackers(), state);
    node.tracker_keys = keys;
    node.client_idle_timeout = Duration::from_secs(args.idle_timeout_secs);
    node.frame_timeout = Duration::from_secs(args.frame_timeout_secs);
    node.repl.heartbeat = Duration::from_millis(args.heartbeat_ms);
    node.repl.peer_timeout = Duration::from_millis(args.peer_timeout_ms);
    node.repl.primary_timeout = Duration::from_millis(args.peer_timeout_ms);
    let opts = TrackerOptions {
        node,
        data_dir,
        listener,
        seed: None,
    };
    let handle = args
        .runtime
        .start_tracker(opts, stdout_sink())
        .map_err(|e| e.to_string())?;
    spawn_console(handle.control());
    spawn_signals(handle.control()).map_err(|e| format!("cannot handle signals: {e}"))?;
    handle.join().map_err(|e| e.to_string())
}

/// Prints the seed's line and console answers on stdout.
fn stdout_sink() -> EventSink {
    Box::new(|e| {
        let mut out = std::io::stdout().lock();
        // A closed stdout must not stop the tracker: write errors are ignored.
        match e {
            TrackerEvent::ConnectedToTracker { tracker } => {
                let _ = writeln!(out, "{}", present::connected_to_tracker(*tracker));
            }
            TrackerEvent::Console(answer) => {
                for l in present::console_lines(answer) {
                    let _ = writeln!(out, "{l}");
                }
            }
            _ => {}
        }
        let _ = out.flush();
    })
}

/// Reads console commands from stdin; end of input leaves the tracker running.
fn spawn_console(ctl: TrackerControl) {
    let spawned = thread::Builder::new()
        .name("console".into())
        .spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                match line.trim() {
                    "" => {}
                    "quit" => {
                        ctl.stop();
                        return;
                    }
                    "status" => {
                        ctl.console(ConsoleCmd::Status);
                    }
                    "conflicts" => {
                        ctl.console(ConsoleCmd::Conflicts);
                    }
                    other => eprintln!("error: {}", present::unknown_console_command(other)),
                }
            }
            tracing::debug!("console input ended; the tracker keeps running");
        });
    if let Err(e) = spawned {
        tracing::warn!("no console: {e}");
    }
}

/// SIGINT / SIGTERM: a clean shutdown; a second signal exits at once.
fn spawn_signals(ctl: TrackerControl) -> std::io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut seen = 0;
            for sig in signals.forever() {
                seen += 1;
                if seen > 1 {
                    eprintln!("error: second signal {sig}, exiting now");
                    std::process::exit(130);
                }
                tracing::info!("signal {sig}: shutting down");
                ctl.stop();
            }
        })?;
    Ok(())
}
