//! Child processes and scratch directories that are always cleaned up.
//!
//! Every child runs in its own process group and is registered here; a
//! [`Proc`] kills its group when dropped (success, error or panic), and
//! [`install_signal_cleanup`] makes SIGINT / SIGTERM / SIGHUP of the bench
//! kill every registered group and remove every registered directory
//! before exiting. A [`WorkDir`] is removed when dropped.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Errors are messages for the report.
pub type Res<T> = Result<T, String>;

struct Registry {
    pids: BTreeSet<u32>,
    dirs: BTreeSet<PathBuf>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    pids: BTreeSet::new(),
    dirs: BTreeSet::new(),
});

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends `sig` to the process group led by `pid`.
pub fn kill_group(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg("--")
        .arg(format!("-{pid}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Kills every registered process group and removes every registered
/// directory (what a signal does before the bench exits).
pub fn cleanup_all() {
    let reg = registry();
    for &pid in &reg.pids {
        kill_group(pid, "KILL");
    }
    for d in &reg.dirs {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// On SIGINT, SIGTERM or SIGHUP: clean up everything, then exit 128+sig.
pub fn install_signal_cleanup() -> Res<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| format!("cannot catch signals: {e}"))?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                eprintln!(
                    "p2p-bench: signal {sig}: stopping every process it started and removing its files"
                );
                cleanup_all();
                std::process::exit(128 + sig);
            }
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    Ok(())
}

/// A scratch directory, removed (with everything in it) when dropped.
pub struct WorkDir {
    path: PathBuf,
}

static NEXT_DIR: AtomicU64 = AtomicU64::new(1);

impl WorkDir {
    /// A fresh directory `<base>/run-<pid>-<n>-<what>`.
    pub fn new(base: &Path, what: &str) -> Res<WorkDir> {
        let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
        let path = base.join(format!("run-{}-{n}-{what}", std::process::id()));
        std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        registry().dirs.insert(path.clone());
        Ok(WorkDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
        registry().dirs.remove(&self.path);
    }
}

/// Removes `run-<pid>-*` directories under `base` left by a bench that was
/// killed with SIGKILL (its pid is gone).
pub fn remove_stale_dirs(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("run-") else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// One line of a child's output, stamped when it was read.
#[derive(Debug, Clone)]
pub struct Line {
    pub at: Instant,
    /// stderr lines start with `stderr: `.
    pub text: String,
}

/// A child process in its own process group, killed (group and all) on drop.
pub struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Line>,
    seen: Vec<String>,
    /// Lines containing [`Proc::watch`]'s text, whoever read them (the
    /// first [`WATCHED_MAX`]).
    watch: Option<String>,
    watched: Vec<String>,
    pub name: String,
}

/// Watched lines kept ([`Proc::watch`]).
const WATCHED_MAX: usize = 16;

/// Lines of context kept for error messages.
const SEEN_MAX: usize = 40;

impl Proc {
    /// Starts `program args` in `dir`, stdout and stderr read line by line;
    /// stdin piped if `stdin`, else `/dev/null`.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        dir: &Path,
        stdin: bool,
    ) -> Res<Proc> {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .current_dir(dir)
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("{name}: cannot start {}: {e}", program.display()))?;
        registry().pids.insert(child.id());
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().expect("piped stdout");
        let err = child.stderr.take().expect("piped stderr");
        for (stream, tag) in [
            (Box::new(out) as Box<dyn std::io::Read + Send>, ""),
            (Box::new(err), "stderr: "),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let l = Line {
                        at: Instant::now(),
                        text: format!("{tag}{line}"),
                    };
                    if tx.send(l).is_err() {
                        return;
                    }
                }
            });
        }
        let stdin = child.stdin.take();
        Ok(Proc {
            child,
            stdin,
            lines: rx,
            seen: Vec::new(),
            watch: None,
            watched: Vec::new(),
            name: name.into(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Writes one command line to the child's stdin.
    pub fn send(&mut self, line: &str) -> Res<()> {
        let name = &self.name;
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| format!("{name}: stdin is closed"))?;
        writeln!(stdin, "{line}")
            .and_then(|_| stdin.flush())
            .map_err(|e| format!("{name}: cannot write {line:?}: {e}"))
    }

    /// Keeps every line from now on that contains `text`, whether a
    /// wait consumed it or not ([`Proc::watched`]).
    pub fn watch(&mut self, text: &str) {
        self.watch = Some(text.into());
    }

    /// The watched lines read so far (lines still queued are read first).
    pub fn watched(&mut self) -> &[String] {
        self.drain();
        &self.watched
    }

    fn remember(&mut self, l: &str) {
        if let Some(w) = &self.watch
            && l.contains(w.as_str())
            && self.watched.len() < WATCHED_MAX
        {
            self.watched.push(l.to_string());
        }
        if self.seen.len() == SEEN_MAX {
            self.seen.remove(0);
        }
        self.seen.push(l.to_string());
    }

    fn context(&self) -> String {
        if self.seen.is_empty() {
            "(no output)".into()
        } else {
            self.seen.join("\n    ")
        }
    }

    /// Waits for a line containing `want`. A line starting `error:` (the
    /// client's and tracker's error lines), the process ending, or the
    /// deadline is an error carrying the last lines seen.
    pub fn expect(&mut self, want: &str, timeout: Duration) -> Res<Line> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let l = self.expect_line(want, left)?;
            if l.text.contains(want) {
                return Ok(l);
            }
            if l.text.starts_with("stderr: error:") || l.text.starts_with("error:") {
                return Err(format!(
                    "{}: {} (while waiting for {want:?}); last lines:\n    {}",
                    self.name,
                    l.text,
                    self.context()
                ));
            }
        }
    }

    /// The next line, whatever it says, within `timeout` (`want`: what the
    /// caller waits for, for the error message).
    fn expect_line(&mut self, want: &str, timeout: Duration) -> Res<Line> {
        match self.lines.recv_timeout(timeout) {
            Ok(l) => {
                self.remember(&l.text);
                Ok(l)
            }
            Err(RecvTimeoutError::Timeout) => Err(format!(
                "{}: no line with {want:?} within {:.0} s; last lines:\n    {}",
                self.name,
                timeout.as_secs_f64(),
                self.context()
            )),
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.wait_exit(Duration::from_secs(2)).ok();
                Err(format!(
                    "{}: exited ({}) while waiting for {want:?}; last lines:\n    {}",
                    self.name,
                    status.map_or("status unknown".into(), |s| s.to_string()),
                    self.context()
                ))
            }
        }
    }

    /// Waits for a line containing each of `wants`, in whatever order
    /// they come (stdout and stderr are read by separate threads, so a
    /// note on stderr and an answer on stdout may arrive either way
    /// round): the lines, in the order of `wants`.
    pub fn expect_each(&mut self, wants: &[&str], timeout: Duration) -> Res<Vec<Line>> {
        let deadline = Instant::now() + timeout;
        let mut got: Vec<Option<Line>> = vec![None; wants.len()];
        while let Some(first) = got.iter().position(Option::is_none) {
            let left = deadline.saturating_duration_since(Instant::now());
            let l = self.expect_line(wants[first], left)?;
            match wants
                .iter()
                .zip(&got)
                .position(|(w, g)| g.is_none() && l.text.contains(w))
            {
                Some(i) => got[i] = Some(l),
                None if l.text.starts_with("stderr: error:") || l.text.starts_with("error:") => {
                    return Err(format!(
                        "{}: {} (while waiting for {wants:?}); last lines:\n    {}",
                        self.name,
                        l.text,
                        self.context()
                    ));
                }
                None => {}
            }
        }
        Ok(got.into_iter().flatten().collect())
    }

    /// Sends a command and waits for its answer line.
    pub fn run(&mut self, line: &str, want: &str) -> Res<Line> {
        self.send(line)?;
        self.expect(want, Duration::from_secs(120))
    }

    /// Every line received since the last call (or since the start).
    pub fn drain(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(l) = self.lines.try_recv() {
            self.remember(&l.text);
            out.push(l.text);
        }
        out
    }

    /// The first `error:` line seen so far (or still queued), if any.
    pub fn first_error(&mut self) -> Option<String> {
        while let Ok(l) = self.lines.try_recv() {
            self.remember(&l.text);
        }
        self.seen
            .iter()
            .find(|l| l.contains("error:"))
            .map(|l| l.trim_start_matches("stderr: ").to_string())
    }

    /// SIGTERM to the process.
    pub fn term(&self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Waits for the process to end, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Res<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(s)) => return Ok(s),
                Ok(None) if Instant::now() >= deadline => {
                    return Err(format!(
                        "{}: still running after {:.0} s",
                        self.name,
                        timeout.as_secs_f64()
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => return Err(format!("{}: {e}", self.name)),
            }
        }
    }

    /// CPU time the process has used so far ([`cpu_secs_of`]).
    pub fn cpu_secs(&self) -> Option<f64> {
        cpu_secs_of(self.pid())
    }

    /// The page faults the process has taken so far that needed no disk
    /// read (`minflt` in `/proc/<pid>/stat`, every thread): each is a page
    /// of the process's memory touched for the first time (a fresh
    /// buffer; not the page cache a `write` fills), which on a VM whose
    /// memory the host has reclaimed also costs the host a fault. A few
    /// thousand per GiB say the buffers are reused.
    pub fn minor_faults(&self) -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).ok()?;
        // Fields after the parenthesised name: state is field 3, minflt 10.
        let rest = stat.get(stat.rfind(')')? + 2..)?;
        rest.split(' ').nth(7)?.parse().ok()
    }

    /// The context switches of the process's live threads (voluntary +
    /// involuntary, summed over `/proc/<pid>/task/*/status`): how often
    /// its threads slept and were woken, or were preempted.
    pub fn context_switches(&self) -> Option<u64> {
        let mut switches = 0;
        for task in std::fs::read_dir(format!("/proc/{}/task", self.pid())).ok()? {
            let Ok(status) = std::fs::read_to_string(task.ok()?.path().join("status")) else {
                continue; // the thread ended meanwhile
            };
            switches += status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        }
        Some(switches)
    }

    /// Peak resident set size (VmHWM) in KiB, while the process lives.
    pub fn peak_rss_kib(&self) -> Res<u64> {
        let path = format!("/proc/{}/status", self.pid());
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        text.lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{path}: no VmHWM line"))
    }
}

/// CPU time process `pid` has used so far (user + system, every thread),
/// from `/proc/<pid>/stat` (in clock ticks of 1/100 s, the Linux
/// `USER_HZ`); an exited process not yet reaped still has its final
/// figure there.
pub fn cpu_secs_of(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised name: state is field 3, utime 14.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// Waits until `child` has exited, without reaping it, and returns the
/// CPU seconds it used (user + system, [`cpu_secs_of`] of the exited
/// process); `None` where the wait or the reading failed. Reap it
/// afterwards (`wait`, `wait_with_output`).
pub fn exited_cpu_secs(child: &std::process::Child) -> Option<f64> {
    use rustix::process::{Pid, WaitId, WaitIdOptions, waitid};
    let pid = Pid::from_raw(i32::try_from(child.id()).ok()?)?;
    loop {
        match waitid(
            WaitId::Pid(pid),
            WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
        ) {
            // A signal to the bench only interrupts the wait.
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return None,
            Ok(_) => return cpu_secs_of(child.id()),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stdin = None;
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            kill_group(self.child.id(), "KILL");
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        registry().pids.remove(&self.child.id());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An exited child's CPU seconds are read before it is reaped: a
    /// shell busy for a while shows some, and it can still be reaped
    /// (with its exit status) afterwards.
    #[test]
    fn an_exited_child_keeps_its_cpu_seconds_until_reaped() {
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; exit 3",
            ])
            .spawn()
            .expect("sh");
        let cpu = exited_cpu_secs(&child).expect("CPU seconds of the exited shell");
        assert!(cpu >= 0.05, "a busy shell used {cpu} CPU s");
        let status = child.wait().expect("reaped");
        assert_eq!(status.code(), Some(3));
        assert_eq!(cpu_secs_of(child.id()), None, "gone once reaped");
    }
}
