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
//! 6. With both runtimes, the runtimes level: std and smol downloads
//!    alternated round by round (`level.rs`), the fair comparison of two
//!    contenders on a machine whose state drifts over minutes.
//!
//! A benchmark is not a test: it never fails on a number. It exits 1 only
//! when something it measures did not work (a download failed, a process
//! did not answer). Every process it starts runs in its own process group
//! and is killed when the bench ends, fails or is interrupted; every
//! scratch file is removed. The test files stay cached under
//! `<target>/p2p-bench/cache`.

mod baseline;
mod disk;
mod figures;
mod level;
mod machine;
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
use figures::{Ctx, runtime_section};

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
    /// Download runs on cold memory, each contender's first (their median
    /// is the first column: one draw of a VM's fresh-memory cost can be
    /// 20x another) [default: 3; 1 with --quick].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    cold_runs: Option<u64>,
    /// Warm runs after the first one (the cold runs, for the download);
    /// their median is reported [default: 3; 0 with --quick].
    #[arg(long, value_name = "N")]
    warm_runs: Option<usize>,
    /// Rounds of the runtimes level (one download per runtime each; their
    /// medians are compared) [default: 7; 1 with --quick].
    #[arg(long, value_name = "N")]
    level_rounds: Option<usize>,
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
    /// Where the download figure's contenders (p2p, curl, the bare copy)
    /// write the file: a directory on the device to measure, e.g. the
    /// slow one `bench/slow-device` makes [default: the bench's directory
    /// under the target directory].
    #[arg(long, value_name = "DIR")]
    dest_dir: Option<PathBuf>,
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
    if let Some(d) = &args.dest_dir {
        notes.push(format!(
            "downloads written under {} ({})",
            d.display(),
            disk::device_of(d)
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
    let cold_runs = args
        .cold_runs
        .map_or(if args.quick { 1 } else { 3 }, |n| n as usize);
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
            cold_runs,
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
    let level = (runtimes.len() > 1).then(|| {
        let rounds = args
            .level_rounds
            .unwrap_or(if args.quick { 1 } else { level::ROUNDS });
        level::run(args, &dirs, &file, &reports, rounds, &mut errors)
    });
    Ok(Report {
        size: args.size * MIB,
        seeders: args.seeders,
        clients: args.clients,
        warm_runs,
        cold_runs,
        quick: args.quick,
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_start,
        runtimes: reports,
        level,
        notes,
        errors,
    })
}
