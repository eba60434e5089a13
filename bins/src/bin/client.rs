//! `client <tracker ip:port> <tracker_info.txt>`: a user's client.
//!
//! It talks to that tracker first and fails over to the others in the file.
//! Its seeder listens on `--listen` (default: every interface, a free port);
//! peers dial the IP the tracker sees it connect from, with that port (or
//! `--advertise-port`), which it prints after each login. Commands are the seed's (`help` lists
//! them), plus `wait_downloads [seconds]` and `serve` for scripts.
//!
//! Interactive (stdin is a terminal): a prompt with line editing and
//! history; background news (failover, a finished download) is printed
//! above the prompt. `login <user>` and `create_user <user>` typed without
//! the password ask for it without echo; a line carrying a password never
//! enters the history, in memory or in its file (`DATA_DIR/history`,
//! 0600). Non-interactive (a file or a pipe): each line runs as soon as it
//! arrives, in order, no prompt; results on stdout, errors on stderr as one
//! line starting `error:` (a login without its password is one); at `exit`
//! or end of input the exit status is 1 if any command failed, else 0.
//! Nothing is waited for at exit: use `wait_downloads` or `serve`.
//!
//! Every connection is TLS 1.3: the client's key is `identity.key` in its
//! data directory (made on first start); it prints `fingerprint: <hex>`
//! at start (on stderr when not interactive), and `--fingerprint` prints
//! the fingerprint alone and exits. A tracker whose tracker_info.txt line
//! has no fingerprint is pinned on first contact in the data directory's
//! `known_trackers`.

use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use p2p_proto::Request;
use p2p_proto::limits::PIECE_LEN;
use p2p_state::client::node::{ClientEvent, Command, Rates};
use runtime::Runtime;
use runtime_common::TrackerInfo;
use runtime_common::cli::{self, CliCommand};
use runtime_common::client::{self, ClientHandle, ClientOptions, WriteMode, command};
use runtime_common::present;
use runtime_common::tls::Identity;
use runtime_common::web::{
    self,
    watch::{Mode, Watch},
};
use signal_hook::consts::{SIGINT, SIGTERM};
use tracing_subscriber::EnvFilter;

/// A rate limit in bytes per second, `None` for none (an alias, so clap
/// does not read `Option` as "the flag may be left out").
type Rate = Option<u64>;

use bins::runtime;
use bins::{history, progress};

#[derive(Parser)]
#[command(version, about = "A client of the p2p group file-sharing system")]
struct Args {
    /// The tracker to talk to first, ip:port.
    tracker: SocketAddr,
    /// File listing every tracker, one ip:port a line (for failover).
    tracker_info: PathBuf,
    /// Where this client's seeder listens [default: every interface, a free
    /// port]. Peers dial the IP the tracker sees this client connect from,
    /// with this port.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// The port peers should dial when a router forwards another port to
    /// the seeder's listening port.
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    advertise_port: Option<u16>,
    /// Most piece requests in flight per download.
    #[arg(long, value_name = "N")]
    max_parallel: Option<usize>,
    /// Where the table of shared files is kept [default: a per-user
    /// directory under $XDG_DATA_HOME or ~/.local/share].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Always write downloads with O_DIRECT where the file system allows
    /// it, even on a device slower than the network (each write waits for
    /// the device). By default a download writes with O_DIRECT while the
    /// device keeps up and moves to the page cache when it falls behind
    /// (README, "Writing pieces to disk").
    #[arg(long)]
    direct_writes: bool,
    /// Write the data path's counters (bytes received, requests sent,
    /// pieces hashed, queued for and written to disk) to FILE every
    /// 10 ms, as CSV (what `p2p-bench --trace` plots).
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Always write downloads through the page cache (with early
    /// writeback and dropped pages), never with O_DIRECT.
    #[arg(long, conflicts_with = "direct_writes")]
    buffered_writes: bool,
    /// A tracker request unanswered this long (or a connection to it not
    /// made) counts as the tracker lost: the client moves to the next one
    /// in tracker_info, still logged in.
    #[arg(long, value_name = "MS", default_value_t = 3000, value_parser = clap::value_parser!(u64).range(1..))]
    request_timeout_ms: u64,
    /// With no command running, ping the tracker this often, so a tracker
    /// that went silent is noticed within ping + request timeout.
    #[arg(long, value_name = "MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    ping_interval_ms: u64,
    /// Limit what this client's seeder uploads, over all peers, to RATE
    /// bytes per second: a whole number with an optional K, M or G
    /// (x1024), e.g. 500K or 10M; `off` (the default) for no limit.
    /// `set_rate up RATE` changes it while the client runs.
    #[arg(long, value_name = "RATE", default_value = "off", value_parser = cli::parse_rate)]
    max_upload_rate: Rate,
    /// Limit what all of this client's downloads receive together to RATE
    /// bytes per second (same form as --max-upload-rate; `off` by
    /// default): a piece is asked for only when the limit allows.
    /// `set_rate down RATE` changes it while the client runs.
    #[arg(long, value_name = "RATE", default_value = "off", value_parser = cli::parse_rate)]
    max_download_rate: Rate,
    /// Limit what this client's seeder uploads on each connection to RATE
    /// bytes per second (`off` by default); `set_rate up-per-peer RATE`
    /// changes it while the client runs.
    #[arg(long, value_name = "RATE", default_value = "off", value_parser = cli::parse_rate)]
    max_upload_rate_per_peer: Rate,
    /// Limit what a download receives from each seeder connection to RATE
    /// bytes per second (`off` by default); `set_rate down-per-peer RATE`
    /// changes it while the client runs.
    #[arg(long, value_name = "RATE", default_value = "off", value_parser = cli::parse_rate)]
    max_download_rate_per_peer: Rate,
    /// Which driver runs the client.
    #[arg(long, value_enum, default_value = "std")]
    runtime: Runtime,
    /// Print this client's key fingerprint (making the key if needed) and
    /// exit.
    #[arg(long)]
    fingerprint: bool,
    /// Serve the web dashboard and its HTTP API on ADDR (ip:port, or an
    /// ip alone for a free port) [default with no ADDR: 127.0.0.1 and a
    /// free port]. A random token is made per start; the one-click URL
    /// that carries it is printed at start. Only loopback unless an
    /// address is given explicitly.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1")]
    web: Option<String>,
    /// Log filter for stderr; overrides RUST_LOG [default: RUST_LOG, else warn].
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = match args.log_level.as_deref().map(EnvFilter::try_new) {
        Some(Ok(f)) => f,
        Some(Err(e)) => {
            eprintln!("error: bad --log-level: {e}");
            return ExitCode::from(2);
        }
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn default_data_dir() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("p2p-share").join("client")
}

fn run(args: Args) -> Result<bool, String> {
    let info = TrackerInfo::read(&args.tracker_info)
        .map_err(|e| format!("{}: {e}", args.tracker_info.display()))?;
    let data_dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
    let identity = Identity::load_or_create(&data_dir).map_err(|e| e.to_string())?;
    if args.fingerprint {
        println!("{}", identity.key_id());
        return Ok(true);
    }
    let mut trackers = info.addrs().to_vec();
    let mut tracker_keys = info.keys().to_vec();
    let first = match trackers.iter().position(|a| *a == args.tracker) {
        Some(i) => i,
        None => {
            trackers.insert(0, args.tracker);
            tracker_keys.insert(0, None);
            0
        }
    };
    let listen = args
        .listen
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    let opts = ClientOptions {
        trackers,
        tracker_keys,
        first,
        listen,
        advertise_port: args.advertise_port,
        max_parallel: args.max_parallel,
        data_dir,
        write_mode: if args.direct_writes {
            WriteMode::Direct
        } else if args.buffered_writes {
            WriteMode::PageCache
        } else {
            WriteMode::Auto
        },
        request_timeout: Some(p2p_state::Duration::from_millis(args.request_timeout_ms)),
        ping_interval: Some(p2p_state::Duration::from_millis(args.ping_interval_ms)),
        rates: Rates {
            up: args.max_upload_rate,
            down: args.max_download_rate,
            up_per_peer: args.max_upload_rate_per_peer,
            down_per_peer: args.max_download_rate_per_peer,
        },
    };
    if let Some(path) = &args.trace {
        runtime_common::trace::start(path)
            .map_err(|e| format!("cannot write the trace {}: {e}", path.display()))?;
    }
    let web_addr = args.web.as_deref().map(web_addr).transpose()?;
    let history = opts.data_dir.join("history");
    let mut handle = args
        .runtime
        .start_client(opts)
        .map_err(|e| format!("cannot start the client: {e}"))?;
    let interactive = std::io::stdin().is_terminal();
    // Background news, one line each: the client's events and the
    // watcher's notices (a join request for a group this user owns), with
    // or without the dashboard, interactive or scripted.
    let (lines_tx, lines) = mpsc::channel::<String>();
    let mode = match web_addr {
        Some(_) => Mode::Dashboard,
        None => Mode::Notices,
    };
    let tx = Mutex::new(lines_tx.clone());
    let notice: web::watch::Notice = Box::new(move |l| {
        let _ = tx.lock().map(|t| t.send(l));
    });
    let watch = Watch::start(handle.commander(), mode, Some(notice));
    forward_events(handle.take_events(), watch.clone(), lines_tx);
    let web = match web_addr {
        Some(addr) => Some(
            web::server::start(
                addr,
                handle.commander(),
                watch.clone(),
                handle.seeder_addr(),
            )
            .map_err(|e| format!("cannot serve the web dashboard on {addr}: {e}"))?,
        ),
        None => None,
    };
    let ok = if interactive {
        println!("{}", present::fingerprint(&identity.key_id()));
        println!("{}", present::client_banner(handle.seeder_addr()));
        if let Some(w) = &web {
            println!("{}", present::web_dashboard(&w.url()));
        }
        interactive_loop(&handle, &watch, lines, &history)?
    } else {
        // Not on stdout: scripts read command results there.
        eprintln!("{}", present::fingerprint(&identity.key_id()));
        if let Some(w) = &web {
            eprintln!("{}", present::web_dashboard(&w.url()));
        }
        print_lines(lines, |line| eprintln!("{line}"));
        command_loop(&handle, &watch)
    };
    handle.stop();
    Ok(ok)
}

/// `--web`'s address: `ip:port`, or an ip alone (a free port). Anything
/// but loopback is served only because the user asked for it.
fn web_addr(s: &str) -> Result<SocketAddr, String> {
    let addr = match (s.parse::<SocketAddr>(), s.parse::<std::net::IpAddr>()) {
        (Ok(a), _) => a,
        (_, Ok(ip)) => SocketAddr::new(ip, 0),
        _ => {
            return Err(format!(
                "--web {s:?}: not an address; give ip:port or an ip (127.0.0.1 by default)"
            ));
        }
    };
    if !addr.ip().is_loopback() {
        eprintln!("{}", present::web_beyond_host(addr));
    }
    Ok(addr)
}

/// Turns the client's events into lines (and the watcher's events), on
/// its own thread.
fn forward_events(
    events: mpsc::Receiver<ClientEvent>,
    watch: Arc<Watch>,
    lines: mpsc::Sender<String>,
) {
    std::thread::spawn(move || {
        for e in events {
            watch.on_client_event(&e);
            if let Some(line) = present::event_line(&e) {
                let _ = lines.send(line);
            }
        }
    });
}

/// Prints background lines on their own thread.
fn print_lines(lines: mpsc::Receiver<String>, mut print: impl FnMut(String) + Send + 'static) {
    std::thread::spawn(move || {
        for line in lines {
            print(present::terminal_safe(&line).into_owned());
        }
    });
}

/// A prompt with line editing and history; background news is printed
/// above the prompt, never through it.
fn interactive_loop(
    handle: &ClientHandle,
    watch: &Watch,
    lines: mpsc::Receiver<String>,
    history_path: &Path,
) -> Result<bool, String> {
    use rustyline::ExternalPrinter;
    use rustyline::error::ReadlineError;
    let mut rl =
        rustyline::DefaultEditor::new().map_err(|e| format!("cannot open the terminal: {e}"))?;
    history::load(rl.history_mut(), history_path);
    match rl.create_external_printer() {
        Ok(mut printer) => print_lines(lines, move |line| {
            let _ = printer.print(line);
        }),
        Err(_) => print_lines(lines, |line| eprintln!("{line}")),
    }
    let mut all_ok = true;
    loop {
        match rl.readline("> ") {
            Ok(line) => {
                history::remember(rl.history_mut(), &line);
                match execute(handle, watch, &line, true) {
                    Ok(Flow::Exit) => break,
                    Ok(Flow::Continue) => {}
                    Err(e) => {
                        all_ok = false;
                        eprintln!("error: {}", present::terminal_safe(&e.to_string()));
                    }
                }
            }
            Err(ReadlineError::Interrupted) => println!("{}", present::INTERRUPTED),
            Err(_) => break,
        }
    }
    history::save(rl.history_mut(), history_path);
    Ok(all_ok)
}

/// Asks for a password on the terminal without echo; a new user's twice.
fn ask_password(user: &p2p_proto::UserName, create: bool) -> Result<String, String> {
    let err = |e: std::io::Error| format!("cannot read the password from the terminal: {e}");
    let pw = rpassword::prompt_password(present::password_prompt(user)).map_err(err)?;
    if create {
        let again = rpassword::prompt_password(present::PASSWORD_AGAIN).map_err(err)?;
        if again != pw {
            return Err(present::PASSWORDS_DIFFER.into());
        }
    }
    Ok(pw)
}

/// Reads and runs commands from a pipe or file until `exit` or end of
/// input, each as soon as its line arrives. True if all succeeded.
fn command_loop(handle: &ClientHandle, watch: &Watch) -> bool {
    let stdin = std::io::stdin();
    let mut all_ok = true;
    let mut line = String::new();
    loop {
        line.clear();
        match stdin.lock().read_line(&mut line) {
            Ok(0) | Err(_) => return all_ok,
            Ok(_) => {}
        }
        match execute(handle, watch, &line, false) {
            Ok(Flow::Exit) => return all_ok,
            Ok(Flow::Continue) => {}
            Err(e) => {
                all_ok = false;
                eprintln!("error: {}", present::terminal_safe(&e.to_string()));
            }
        }
    }
}

enum Flow {
    Continue,
    Exit,
}

/// Runs one line; `interactive`: a missing password may be asked for.
fn execute(
    handle: &ClientHandle,
    watch: &Watch,
    line: &str,
    interactive: bool,
) -> Result<Flow, String> {
    let cmd = match cli::parse_line(line)? {
        CliCommand::AskPassword { user, create } if interactive => {
            let pw = ask_password(&user, create)?;
            cli::with_password(user, create, &pw)?
        }
        cmd => cmd,
    };
    match &cmd {
        CliCommand::AskPassword { create, .. } => return Err(cli::no_password_error(*create)),
        CliCommand::Nothing => return Ok(Flow::Continue),
        CliCommand::Exit => return Ok(Flow::Exit),
        CliCommand::Help => {
            print!("{}", present::help());
            return Ok(Flow::Continue);
        }
        CliCommand::WaitDownloads { seconds } => {
            return wait_downloads(handle, *seconds).map(|_| Flow::Continue);
        }
        CliCommand::Serve => return serve(handle).map(|_| Flow::Exit),
        _ => {}
    }
    // What this user owns may change: the watcher asks list_groups again.
    let owning = matches!(
        &cmd,
        CliCommand::Tracker(Request::CreateGroup { .. } | Request::LeaveGroup { .. })
    );
    let ran = command::run(&handle.commander(), cmd, &hash_with_progress);
    if owning {
        watch.poke();
    }
    println!("{}", present::terminal_safe(&ran?.text));
    Ok(Flow::Continue)
}

/// Hashes a file for `upload_file`, with a progress bar for large files
/// when a person is watching.
fn hash_with_progress(path: &Path) -> std::io::Result<p2p_proto::FileMeta> {
    let size = std::fs::metadata(path)?.len();
    if !std::io::stderr().is_terminal() || size < 64 << 20 {
        return client::hash_file(path, PIECE_LEN);
    }
    let bar = indicatif::ProgressBar::new(size).with_style(
        indicatif::ProgressStyle::with_template(present::HASH_BAR_TEMPLATE)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let meta = client::hash_file_with_progress(path, PIECE_LEN, &|n| bar.set_position(n));
    bar.finish_and_clear();
    meta
}

fn wait_downloads(handle: &ClientHandle, seconds: Option<u64>) -> Result<(), String> {
    let deadline = seconds.map(|s| Instant::now() + Duration::from_secs(s));
    let mut shown = progress::Progress::new(progress::Out::Stderr);
    loop {
        let st = handle.status().ok_or("the client stopped")?;
        if let Some(s) = handle.commander().snapshot() {
            shown.update(&s.downloads);
        }
        if st.downloads_ended {
            shown.finish();
            let ended = present::downloads_ended(&st.failed)?;
            println!("{}", present::terminal_safe(&ended));
            return Ok(());
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(present::downloads_still_running(seconds.unwrap_or(0)));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Stays online as a seeder until SIGINT/SIGTERM, then logs out.
fn serve(handle: &ClientHandle) -> Result<(), String> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())
            .map_err(|e| format!("cannot catch signals: {e}"))?;
    }
    println!("{}", present::SERVING);
    let _ = std::io::stdout().flush();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = handle.status();
    if let Some(s) = &status {
        println!("{}", present::served(s.served_pieces, s.served_bytes));
    }
    if status.is_some_and(|s| s.logged_in) {
        let _ = handle.run(Command::Tracker(Request::Logout));
    }
    Ok(())
}
