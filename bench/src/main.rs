//! `p2p-bench`: measures the real `tracker` and `client` binaries as
//! processes on 127.0.0.1, each figure against a baseline measured in the
//! same run, and prints a table (plus JSON with `--json`).
//!
//! 1. Download: a cached file of random bytes shared by S seeders,
//!    downloaded to disk by one leecher; against nginx → curl over HTTPS
//!    (TLS 1.3, AES-GCM, a self-signed certificate made in the run with
//!    `openssl req`) and over plain HTTP, and a bare single-stream
//!    loopback copy.
//! 2. Hashing: `upload_file` against `openssl dgst -sha1` and `sha1sum`.
//! 3. Memory: the leecher's peak RSS for the file and a 4 GiB one.
//! 4. Tracker: rate and latency of reads and writes from C raw-protocol
//!    clients against two replicating trackers.
//! 5. All of it per runtime (`--runtime std|smol|both`); a runtime the
//!    binaries refuse is reported as not available.
//!
//! A benchmark is not a test: it never fails on a number. It exits 1 only
//! when something it measures did not work (a download failed, a process
//! did not answer). Every process it starts runs in its own process group
//! and is killed when the bench ends, fails or is interrupted; every
//! scratch file is removed. The test files stay cached under
//! `<target>/p2p-bench/cache`.

mod baseline;
mod disk;
mod proc;
mod report;
mod swarm;
mod trace;
mod tracker_load;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};

use crate::baseline::{MIB, Memory, Nginx};
use crate::proc::{Res, WorkDir};
use crate::report::{Download, Fig, Hashing, Report, RuntimeReport, Tracker};
use crate::swarm::{Bins, Swarm};

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
enum RuntimeArg {
    Std,
    Smol,
    Both,
}

#[derive(Parser, Debug)]
#[command(
    about = "Benchmarks the tracker and client binaries on loopback against baselines measured in the same run"
)]
struct Args {
    /// Size of the test file, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 1024)]
    size: u64,
    /// Seeders sharing the file.
    #[arg(long, value_name = "S", default_value_t = 2)]
    seeders: usize,
    /// Concurrent clients in the tracker figures.
    #[arg(long, value_name = "C", default_value_t = 64)]
    clients: usize,
    /// Which runtime(s) the binaries run.
    #[arg(long, value_enum, default_value = "both")]
    runtime: RuntimeArg,
    /// Also print the figures as JSON on stdout (the table then goes to stderr).
    #[arg(long)]
    json: bool,
    /// One run of each figure, no large-file memory point, 1 s tracker
    /// phases: what CI runs to keep the bench working.
    #[arg(long)]
    quick: bool,
    /// Warm runs after the first one (their median is reported) [default:
    /// 3; 0 with --quick].
    #[arg(long, value_name = "N")]
    warm_runs: Option<usize>,
    /// Size of the large file of the memory figure, in MiB (skipped with --quick).
    #[arg(long, value_name = "MIB", default_value_t = 4096)]
    big_size: u64,
    /// Seconds each tracker phase runs [default: 5; 1 with --quick].
    #[arg(long, value_name = "SECS")]
    tracker_secs: Option<f64>,
    /// Never install nginx / curl / openssl with apt-get; their baselines
    /// are skipped when missing.
    #[arg(long)]
    no_install: bool,
    /// Instead of everything else: time the ways the client can write a
    /// download's pieces (O_DIRECT, page cache, page cache with early
    /// writeback and dropped pages) on the device under DIR, --size MiB
    /// each.
    #[arg(long, value_name = "DIR")]
    disk_test: Option<PathBuf>,
    /// The leecher of the first download run (of each runtime) records
    /// bytes received, requests in flight, pieces hashed and pieces
    /// waiting for the disk every 10 ms: plotted into FILE (SVG; with
    /// both runtimes, FILE-std.svg and FILE-smol.svg), the counters kept
    /// beside it as CSV, a summary in the notes.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Only the download figure (the file is shared untimed; no hashing,
    /// large-file or tracker figures): for iterating on the data path.
    #[arg(long)]
    download_only: bool,
    /// Use the tracker and client beside this binary as they are (by
    /// default they are built first, with the profile of this binary).
    #[arg(long)]
    no_build: bool,
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Where things are: the binaries beside this one, the target directory
/// above them, and the bench's own directory in it.
struct Dirs {
    bin: PathBuf,
    target: PathBuf,
    bench: PathBuf,
    cache: PathBuf,
    profile: String,
}

fn dirs() -> Res<Dirs> {
    let exe = std::env::current_exe().map_err(|e| format!("where am I: {e}"))?;
    let bin = exe
        .parent()
        .ok_or("the executable has no directory")?
        .to_path_buf();
    let profile = bin
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let target = bin.parent().unwrap_or(&bin).to_path_buf();
    let bench = target.join("p2p-bench");
    let cache = bench.join("cache");
    Ok(Dirs {
        bin,
        target,
        bench,
        cache,
        profile,
    })
}

/// Builds `tracker` and `client` with this binary's profile into its
/// target directory, so that the processes measured match the source.
fn build_bins(d: &Dirs) -> Res<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("no workspace directory")?;
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args(["build", "-p", "bins", "--bin", "tracker", "--bin", "client"])
        .arg("--target-dir")
        .arg(&d.target);
    match d.profile.as_str() {
        "release" => {
            cmd.arg("--release");
        }
        "debug" => {}
        other => {
            cmd.args(["--profile", other]);
        }
    }
    eprintln!("p2p-bench: building tracker and client ({})", d.profile);
    let status = cmd.status().map_err(|e| format!("cargo: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build failed ({status})"));
    }
    Ok(())
}

/// Tools for the baselines: found, or installed, or the reason they are not.
struct Tools {
    nginx: Fig<PathBuf>,
    curl: Fig<PathBuf>,
    openssl: Fig<PathBuf>,
    sha1sum: Fig<PathBuf>,
}

fn tools(no_install: bool, log: &Path) -> Tools {
    let want = [("nginx", "nginx"), ("curl", "curl"), ("openssl", "openssl")];
    let missing: Vec<&str> = want
        .iter()
        .filter(|(prog, _)| baseline::find_program(prog).is_none())
        .map(|(_, pkg)| *pkg)
        .collect();
    let installed = if missing.is_empty() {
        Ok(())
    } else if no_install {
        Err("not installed (--no-install)".to_string())
    } else {
        baseline::apt_install(&missing, log)
    };
    let find = |prog: &str| -> Fig<PathBuf> {
        baseline::find_program(prog).ok_or_else(|| match &installed {
            Err(e) => format!("{prog} missing and could not be installed: {e}"),
            Ok(()) => format!("{prog} not found"),
        })
    };
    Tools {
        nginx: find("nginx"),
        curl: find("curl"),
        openssl: find("openssl"),
        sha1sum: find("sha1sum"),
    }
}

/// Everything one runtime section needs.
struct Ctx<'a> {
    args: &'a Args,
    dirs: &'a Dirs,
    tools: &'a Tools,
    nginx: &'a Fig<Nginx>,
    file: &'a Path,
    size: u64,
    runs: usize,
    errors: &'a mut Vec<String>,
    /// Where this runtime's trace goes (`--trace`).
    trace: Option<PathBuf>,
    notes: &'a mut Vec<String>,
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Runs `f` into a figure; a failure is also recorded as an error.
fn fig<T>(errors: &mut Vec<String>, what: &str, r: Res<T>) -> Fig<T> {
    r.map_err(|e| {
        errors.push(format!("{what}: {e}"));
        e
    })
}

/// Pushes one more run onto a figure still alive; the first error ends it.
fn push_run(f: &mut Fig<Vec<f64>>, r: Res<f64>) {
    if let Ok(v) = f {
        match r {
            Ok(x) => v.push(x),
            Err(e) => *f = Err(e),
        }
    }
}

fn hashing(cx: &mut Ctx, sw: &Swarm) -> Res<Hashing> {
    baseline::warm_page_cache(cx.file)?;
    let mut upload: Fig<Vec<f64>> = Ok(Vec::new());
    let mut openssl = cx.tools.openssl.clone().map(|_| Vec::new());
    let mut sha1sum = cx.tools.sha1sum.clone().map(|_| Vec::new());
    let mut seed1 = sw.seeder(1)?;
    let mut hexes = Vec::new();
    for k in 0..cx.runs {
        eprintln!("p2p-bench: [{}] hashing, run {}", sw.bins.runtime, k + 1);
        push_run(&mut upload, Swarm::upload(&mut seed1, cx.file));
        if let Ok(p) = &cx.tools.openssl {
            let r = baseline::hash_tool(p, &["dgst", "-sha1"], cx.file);
            push_run(
                &mut openssl,
                r.map(|(s, h)| {
                    hexes.push(h);
                    s
                }),
            );
        }
        if let Ok(p) = &cx.tools.sha1sum {
            let r = baseline::hash_tool(p, &[], cx.file);
            push_run(
                &mut sha1sum,
                r.map(|(s, h)| {
                    hexes.push(h);
                    s
                }),
            );
        }
    }
    hexes.sort();
    hexes.dedup();
    if hexes.len() > 1 {
        cx.errors.push(format!(
            "the hashing tools disagree: {}",
            hexes.join(" vs ")
        ));
    }
    seed1.run("logout", "logged out")?;
    seed1.send("exit")?;
    seed1.wait_exit(Duration::from_secs(10))?;
    if let Err(e) = &upload {
        cx.errors.push(format!("upload_file: {e}"));
    }
    Ok(Hashing {
        size: cx.size,
        upload,
        openssl,
        sha1sum,
    })
}

fn download(cx: &mut Ctx, sw: &Swarm) -> Res<Download> {
    let dir = WorkDir::new(&cx.dirs.bench, "dl")?;
    let name = file_name(cx.file);
    let dest = dir.path().join(&name);
    let mut p2p = Ok(Vec::new());
    let mut curl: Fig<Vec<f64>> = match (&cx.tools.curl, cx.nginx) {
        (Ok(_), Ok(_)) => Ok(Vec::new()),
        (Err(e), _) | (_, Err(e)) => Err(format!("skipped: {e}")),
    };
    let mut https: Fig<Vec<f64>> = match (&curl, cx.nginx) {
        (Ok(_), Ok(n)) => match &n.https {
            Ok(_) => Ok(Vec::new()),
            Err(e) => Err(format!("skipped: {e}")),
        },
        (Err(e), _) => Err(e.clone()),
        (_, Err(e)) => Err(format!("skipped: {e}")),
    };
    let mut bare = Ok(Vec::new());
    for k in 0..cx.runs {
        eprintln!("p2p-bench: [{}] download, run {}", sw.bins.runtime, k + 1);
        // The first run of each contender starts on cold memory, the
        // others on warm memory (see `baseline::Memory`).
        let state = if k == 0 { Memory::Cold } else { Memory::Warm };
        let prepare = || baseline::prepare_memory(state, dir.path(), cx.size);
        if let (Ok(c), Ok(n)) = (&cx.tools.curl, cx.nginx) {
            for (fig, tls) in [(&mut https, n.https.as_ref().ok()), (&mut curl, None)] {
                if fig.is_err() {
                    continue;
                }
                prepare()?;
                let r = baseline::curl(c, n.port, tls, &name, &dest);
                let r = r.and_then(|s| match std::fs::metadata(&dest).map(|m| m.len()) {
                    Ok(len) if len == cx.size => Ok(s),
                    other => Err(format!("curl wrote {other:?} bytes, expected {}", cx.size)),
                });
                let _ = std::fs::remove_file(&dest);
                push_run(fig, r);
            }
        }
        prepare()?;
        push_run(&mut bare, baseline::bare_copy(cx.file, &dest));
        let _ = std::fs::remove_file(&dest);
        if let Ok(v) = &mut p2p {
            prepare()?;
            let csv = dir.path().join("trace.csv");
            let trace = (k == 0 && cx.trace.is_some()).then_some(csv.as_path());
            match sw.download(&name, cx.size, &dest, trace) {
                Ok(r) => v.push(r),
                Err(e) => p2p = Err(e),
            }
            if let (Some(out), Some(csv)) = (&cx.trace, trace) {
                let title = format!(
                    "p2p download of {} MiB ({}, first run)",
                    cx.size / MIB,
                    sw.bins.runtime
                );
                match trace::render(csv, out, &title) {
                    Ok(s) => cx.notes.push(format!("[{}] trace: {s}", sw.bins.runtime)),
                    Err(e) => cx.errors.push(format!("trace: {e}")),
                }
            }
        }
        let _ = std::fs::remove_file(&dest);
    }
    for (what, f) in [
        ("curl", &curl),
        ("https curl", &https),
        ("bare copy", &bare),
    ] {
        if let Err(e) = f
            && !e.starts_with("skipped")
        {
            cx.errors.push(format!("{what}: {e}"));
        }
    }
    if let Err(e) = &p2p {
        cx.errors.push(format!("p2p download: {e}"));
    }
    Ok(Download {
        size: cx.size,
        seeders: cx.args.seeders,
        p2p,
        curl,
        https,
        bare,
    })
}

/// The large-file memory point: one download of a `big` MiB file.
fn big_file(cx: &mut Ctx, sw: &Swarm, big: u64) -> Res<swarm::DlRun> {
    let path = baseline::cached_file(&cx.dirs.cache, big)?;
    baseline::warm_page_cache(&path)?;
    eprintln!(
        "p2p-bench: [{}] memory: sharing the {big} MiB file",
        sw.bins.runtime
    );
    sw.share_everywhere(&path, false)?;
    let dir = WorkDir::new(&cx.dirs.bench, "big")?;
    let dest = dir.path().join(file_name(&path));
    eprintln!(
        "p2p-bench: [{}] memory: downloading the {big} MiB file",
        sw.bins.runtime
    );
    let r = sw.download(&file_name(&path), big * MIB, &dest, None);
    let _ = std::fs::remove_file(&dest);
    r
}

fn tracker_fig(cx: &mut Ctx, bins: &Bins) -> Res<Tracker> {
    let dir = WorkDir::new(&cx.dirs.bench, &format!("trackers-{}", bins.runtime))?;
    let mut t = swarm::Trackers::start(bins, dir.path(), 2)?;
    let secs = cx
        .args
        .tracker_secs
        .unwrap_or(if cx.args.quick { 1.0 } else { 5.0 });
    let dur = Duration::from_secs_f64(secs.max(0.1));
    eprintln!(
        "p2p-bench: [{}] tracker reads, {} clients, {secs} s",
        bins.runtime, cx.args.clients
    );
    let reads = tracker_load::reads(&t.addrs, cx.args.clients, dur);
    let reads = fig(cx.errors, "tracker reads", reads);
    let mut events = tracker_events(&mut t, "reads");
    eprintln!(
        "p2p-bench: [{}] tracker writes, {} clients, {secs} s",
        bins.runtime, cx.args.clients
    );
    let writes = tracker_load::writes(&t.addrs, cx.args.clients, dur);
    let writes = fig(cx.errors, "tracker writes", writes);
    events.extend(tracker_events(&mut t, "writes"));
    Ok(Tracker {
        clients: cx.args.clients,
        trackers: 2,
        reads,
        writes,
        events,
    })
}

/// What the trackers logged about replication during a phase (setup
/// included), counted: e.g. a backup falling out of sync under load.
fn tracker_events(t: &mut swarm::Trackers, phase: &str) -> Vec<String> {
    const KEYS: [&str; 8] = [
        "primary", "sync", "WARN", "ERROR", "snapshot", "diverg", "conflict", "error",
    ];
    let mut out = Vec::new();
    for (i, p) in t.procs.iter_mut().enumerate() {
        let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
        for line in p.drain() {
            if !KEYS.iter().any(|k| line.contains(k)) || line.contains("Connected to peer") {
                continue;
            }
            let msg = match line.find("tracker: ") {
                Some(at) => line[at + "tracker: ".len()..].to_string(),
                None => line.trim_start_matches("stderr: ").to_string(),
            };
            *counts.entry(msg).or_default() += 1;
        }
        for (msg, n) in counts {
            out.push(format!("tracker {} ({phase}): {msg} (x{n})", i + 1));
        }
    }
    out
}

fn runtime_section(cx: &mut Ctx, runtime: &str) -> RuntimeReport {
    let started = Instant::now();
    let mut r = RuntimeReport {
        runtime: runtime.into(),
        unavailable: None,
        download: None,
        hashing: None,
        big: None,
        tracker: None,
        load_before: loadavg(),
        load_after: String::new(),
        secs: 0.0,
    };
    let bins = Bins {
        tracker: cx.dirs.bin.join("tracker"),
        client: cx.dirs.bin.join("client"),
        runtime: runtime.into(),
    };
    if let Err(why) = swarm::probe_runtime(&bins, &cx.dirs.bench) {
        eprintln!("p2p-bench: runtime {runtime} is not available: {why}");
        r.unavailable = Some(why);
        return r;
    }
    eprintln!("p2p-bench: [{runtime}] starting trackers and seeders");
    match Swarm::start(&bins, &cx.dirs.bench, cx.args.seeders) {
        Ok(sw) => {
            let h = if cx.args.download_only {
                sw.share_everywhere(cx.file, false).map(|()| None)
            } else {
                hashing(cx, &sw).and_then(|h| {
                    sw.share_everywhere(cx.file, true)?;
                    Ok(Some(h))
                })
            };
            match h {
                Ok(h) => {
                    r.hashing = h;
                    match download(cx, &sw) {
                        Ok(d) => r.download = Some(d),
                        Err(e) => cx.errors.push(format!("[{runtime}] download: {e}")),
                    }
                    let big = cx.args.big_size;
                    if !cx.args.quick && !cx.args.download_only && big != cx.args.size {
                        let run = big_file(cx, &sw, big);
                        if let Err(e) = &run {
                            cx.errors
                                .push(format!("[{runtime}] {big} MiB download: {e}"));
                        }
                        r.big = Some((big * MIB, run));
                    }
                }
                Err(e) => cx.errors.push(format!("[{runtime}] sharing the file: {e}")),
            }
        }
        Err(e) => cx
            .errors
            .push(format!("[{runtime}] starting the swarm: {e}")),
    }
    if !cx.args.download_only {
        match tracker_fig(cx, &bins) {
            Ok(t) => r.tracker = Some(t),
            Err(e) => cx.errors.push(format!("[{runtime}] tracker: {e}")),
        }
    }
    r.load_after = loadavg();
    r.secs = started.elapsed().as_secs_f64();
    r
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.size == 0 || args.seeders == 0 || args.clients < 2 {
        eprintln!("error: --size and --seeders must be at least 1, --clients at least 2");
        return ExitCode::from(2);
    }
    if let Err(e) = proc::install_signal_cleanup() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    if let Some(dir) = &args.disk_test {
        return match disk::run(dir, args.size * MIB) {
            Ok(runs) => {
                print!("{}", disk::table(dir, args.size * MIB, &runs));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(1)
            }
        };
    }
    match run(&args) {
        Ok(report) => {
            let table = report.table();
            if args.json {
                eprint!("{table}");
                println!("{}", report.json());
            } else {
                print!("{table}");
            }
            if report.errors.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> Res<Report> {
    let dirs = dirs()?;
    std::fs::create_dir_all(&dirs.bench).map_err(|e| format!("{}: {e}", dirs.bench.display()))?;
    proc::remove_stale_dirs(&dirs.bench);
    let mut notes = Vec::new();
    if dirs.profile != "release" {
        notes.push(format!(
            "built with the {} profile: run with --release for meaningful numbers",
            dirs.profile
        ));
    }
    if !args.no_build {
        build_bins(&dirs)?;
    }
    for b in ["tracker", "client"] {
        if !dirs.bin.join(b).is_file() {
            return Err(format!(
                "{} not found (cargo build --release -p bins)",
                dirs.bin.join(b).display()
            ));
        }
    }
    let load_start = loadavg();
    let setup = WorkDir::new(&dirs.bench, "setup")?;
    let tools = tools(args.no_install, &setup.path().join("apt.log"));
    let file = baseline::cached_file(&dirs.cache, args.size)?;
    let nginx = match &tools.nginx {
        Ok(p) => {
            let openssl = tools.openssl.as_deref().map_err(Clone::clone);
            Nginx::start(p, &dirs.cache, &dirs.bench, openssl)
        }
        Err(e) => Err(e.clone()),
    };
    if let Ok(Err(e)) = nginx.as_ref().map(|n| &n.https) {
        eprintln!("p2p-bench: nginx https: {e}; the https baseline is skipped");
        notes.push(format!("nginx -> curl https baseline skipped: {e}"));
    }
    for (what, r) in [
        ("nginx", nginx.as_ref().map(|_| ())),
        ("curl", tools.curl.as_ref().map(|_| ())),
    ] {
        if let Err(e) = r {
            eprintln!("p2p-bench: {what}: {e}; the nginx -> curl baseline is skipped");
            notes.push(format!("nginx -> curl baseline skipped: {e}"));
        }
    }
    let runtimes: &[&str] = match args.runtime {
        RuntimeArg::Std => &["std"],
        RuntimeArg::Smol => &["smol"],
        RuntimeArg::Both => &["std", "smol"],
    };
    let warm_runs = args.warm_runs.unwrap_or(if args.quick { 0 } else { 3 });
    let mut errors = Vec::new();
    let mut reports = Vec::new();
    for rt in runtimes {
        let mut cx = Ctx {
            args,
            dirs: &dirs,
            tools: &tools,
            nginx: &nginx,
            file: &file,
            size: args.size * MIB,
            runs: 1 + warm_runs,
            errors: &mut errors,
            trace: args.trace.as_ref().map(|t| {
                if runtimes.len() > 1 {
                    let stem = t.file_stem().unwrap_or_default().to_string_lossy();
                    t.with_file_name(format!("{stem}-{rt}.svg"))
                } else {
                    t.clone()
                }
            }),
            notes: &mut notes,
        };
        reports.push(runtime_section(&mut cx, rt));
    }
    drop(nginx);
    Ok(Report {
        size: args.size * MIB,
        seeders: args.seeders,
        clients: args.clients,
        warm_runs,
        quick: args.quick,
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_start,
        runtimes: reports,
        notes,
        errors,
    })
}
