//! The real `tracker` and `client` binaries as processes on 127.0.0.1,
//! driven through the client's non-interactive mode (commands on stdin,
//! answers on stdout, errors and news on stderr).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::baseline::free_port;
use super::machine::{self, Cores};
use super::proc::{Proc, Res, WorkDir};

/// Where the binaries are, and which runtime they run.
#[derive(Clone, Debug)]
pub struct Bins {
    pub tracker: PathBuf,
    pub client: PathBuf,
    pub runtime: String,
}

impl Bins {
    /// The `tracker` and `client` in directory `bin`, running `runtime`.
    pub fn beside(bin: &Path, runtime: &str) -> Bins {
        Bins {
            tracker: bin.join("tracker"),
            client: bin.join("client"),
            runtime: runtime.into(),
        }
    }
}

/// Two (or more) replicating trackers.
pub struct Trackers {
    pub addrs: Vec<String>,
    pub info: PathBuf,
    pub procs: Vec<Proc>,
}

impl Trackers {
    pub fn start(bins: &Bins, dir: &Path, n: usize) -> Res<Trackers> {
        let addrs = (0..n)
            .map(|_| free_port().map(|p| format!("127.0.0.1:{p}")))
            .collect::<Res<Vec<_>>>()?;
        let info = dir.join("tracker_info.txt");
        std::fs::write(&info, addrs.join("\n") + "\n").map_err(|e| e.to_string())?;
        let mut procs = Vec::new();
        for i in 1..=n {
            let args = vec![
                info.display().to_string(),
                i.to_string(),
                "--argon2".into(),
                "test".into(),
                "--runtime".into(),
                bins.runtime.clone(),
                "--data-dir".into(),
                dir.join(format!("tracker-{i}")).display().to_string(),
            ];
            procs.push(Proc::spawn(
                &format!("tracker {i} ({})", bins.runtime),
                &bins.tracker,
                &args,
                dir,
                false,
            )?);
        }
        if n > 1 {
            for p in &mut procs {
                p.expect("Connected to peer tracker", Duration::from_secs(30))?;
            }
        }
        Ok(Trackers { addrs, info, procs })
    }
}

/// Starts a client on tracker `which` with its own data directory.
pub fn client(bins: &Bins, t: &Trackers, which: usize, name: &str, dir: &Path) -> Res<Proc> {
    client_with(bins, t, which, name, dir, &[])
}

/// [`client`] with more arguments.
pub fn client_with(
    bins: &Bins,
    t: &Trackers,
    which: usize,
    name: &str,
    dir: &Path,
    extra: &[String],
) -> Res<Proc> {
    let mut args = vec![
        t.addrs[which % t.addrs.len()].clone(),
        t.info.display().to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--runtime".into(),
        bins.runtime.clone(),
        "--data-dir".into(),
        dir.join(format!("data-{name}")).display().to_string(),
    ];
    args.extend_from_slice(extra);
    Proc::spawn(
        &format!("client {name} ({})", bins.runtime),
        &bins.client,
        &args,
        dir,
        true,
    )
}

/// Whether the binaries accept this runtime: `Err(reason)` if the tracker
/// or the client refuses it (exits at once).
pub fn probe_runtime(bins: &Bins, base: &Path) -> Res<()> {
    let dir = WorkDir::new(base, &format!("probe-{}", bins.runtime))?;
    let mut t = Trackers::start(bins, dir.path(), 1)?;
    if let Ok(status) = t.procs[0].wait_exit(Duration::from_millis(1500)) {
        let why = t.procs[0].first_error().unwrap_or_default();
        return Err(format!("the tracker exits ({status}) {why}"));
    }
    let mut c = client(bins, &t, 0, "probe", dir.path())?;
    c.send("exit")?;
    match c.wait_exit(Duration::from_secs(10)) {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!(
            "the client exits ({s}) {}",
            c.first_error().unwrap_or_default()
        )),
        Err(e) => Err(e),
    }
}

/// A group `g` with S seeders that share the file and a leecher account.
pub struct Swarm {
    pub bins: Bins,
    pub trackers: Trackers,
    pub dir: WorkDir,
    pub seeders: usize,
}

/// One p2p download.
#[derive(Clone, Debug)]
pub struct DlRun {
    /// From `download_file` sent to the completion note.
    pub secs: f64,
    /// From `download_file` sent to `wait_downloads` answering.
    pub wait_secs: f64,
    pub served: Vec<u64>,
    pub rss_kib: u64,
    /// Where the time went, from the leecher's `/proc/<pid>/io`.
    pub phases: Option<Phases>,
    /// CPU seconds used from `download_file` to the completion note by
    /// the leecher and by all seeders together (little affected by other
    /// load on the machine, unlike the times).
    pub cpu: Option<(f64, f64)>,
    /// The context switches of the leecher's threads over the same span
    /// ([`Proc::context_switches`]).
    pub switches: Option<u64>,
    /// Minor page faults over the same span, the leecher's and all
    /// seeders' together ([`Proc::minor_faults`]).
    pub faults: Option<(u64, u64)>,
    /// Why the download left `O_DIRECT` for the page cache, if it did
    /// ([`left_direct`]).
    pub left_direct: Option<String>,
    /// What the machine's cores did over the same span.
    pub machine: Option<Cores>,
}

/// A download's time split by what the leecher's I/O counters show.
#[derive(Clone, Copy, Debug)]
pub struct Phases {
    /// From `download_file` to the first piece written.
    pub start: f64,
    /// From the first to the last piece written (all bytes in place).
    pub transfer: f64,
    /// From the last piece written to the completion note: the rename into
    /// place (every piece was verified as it came; nothing is re-read).
    pub finish: f64,
}

/// Samples `/proc/<pid>/io` (`wchar`: bytes written by write calls) every
/// few milliseconds until stopped; returns `(seconds since t0, wchar)`.
struct IoSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    path: String,
    /// `wchar` when sampling started (before the download command).
    base: Option<u64>,
    thread: std::thread::JoinHandle<Vec<(f64, u64)>>,
}

fn wchar(path: &str) -> Option<u64> {
    let t = std::fs::read_to_string(path).ok()?;
    t.lines()
        .find_map(|l| l.strip_prefix("wchar:"))
        .and_then(|n| n.trim().parse().ok())
}

impl IoSampler {
    fn start(pid: u32, t0: Instant) -> IoSampler {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let path = format!("/proc/{pid}/io");
        let base = wchar(&path);
        let p = path.clone();
        let thread = std::thread::spawn(move || {
            let path = p;
            let mut v = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                if let Some(w) = wchar(&path) {
                    v.push((t0.elapsed().as_secs_f64(), w));
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            v
        });
        IoSampler {
            stop,
            path,
            base,
            thread,
        }
    }

    /// Phases of a download of `size` bytes that ended at `end` seconds.
    fn finish(self, size: u64, end: f64) -> Option<Phases> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut v = self.thread.join().ok()?;
        // The last write may have come after the last sample: one more,
        // counted at the end (the download is complete by now).
        v.extend(wchar(&self.path).map(|w| (end, w)));
        let base = self.base?;
        // The first piece written: wchar up by half a piece at least.
        let first = v.iter().find(|(_, w)| w - base >= 256 * 1024)?.0;
        let last = v.iter().find(|(_, w)| w - base >= size)?.0.min(end);
        Some(Phases {
            start: first,
            transfer: last - first,
            finish: end - last,
        })
    }
}

const T_CMD: Duration = Duration::from_secs(120);

impl Swarm {
    /// Trackers, then users: seeder 1 owns group `g`; seeders 2..S and
    /// the leecher are members.
    pub fn start(bins: &Bins, base: &Path, seeders: usize) -> Res<Swarm> {
        let dir = WorkDir::new(base, &format!("swarm-{}", bins.runtime))?;
        let trackers = Trackers::start(bins, dir.path(), 2)?;
        let s = Swarm {
            bins: bins.clone(),
            trackers,
            dir,
            seeders,
        };
        let mut owner = s.seeder_proc(1)?;
        owner.run("create_user seed1 pw", "created")?;
        owner.run("login seed1 pw", "logged in")?;
        owner.run("create_group g", "created")?;
        let mut members: Vec<String> = (2..=seeders).map(|i| format!("seed{i}")).collect();
        members.push("leech".into());
        for (k, user) in members.iter().enumerate() {
            let mut p = client(bins, &s.trackers, k + 1, user, s.dir.path())?;
            p.run(&format!("create_user {user} pw"), "created")?;
            p.run(&format!("login {user} pw"), "logged in")?;
            p.run("join_group g", "join request sent")?;
            owner.run(&format!("accept_request g {user}"), "now a member")?;
            p.run("logout", "logged out")?;
            p.send("exit")?;
            p.wait_exit(Duration::from_secs(10))?;
        }
        owner.run("logout", "logged out")?;
        owner.send("exit")?;
        owner.wait_exit(Duration::from_secs(10))?;
        Ok(s)
    }

    fn seeder_proc(&self, i: usize) -> Res<Proc> {
        client(
            &self.bins,
            &self.trackers,
            i - 1,
            &format!("seed{i}"),
            self.dir.path(),
        )
    }

    /// A logged-in client of seeder `i` (its data directory keeps its shares).
    pub fn seeder(&self, i: usize) -> Res<Proc> {
        let mut p = self.seeder_proc(i)?;
        p.run(&format!("login seed{i} pw"), "logged in")?;
        Ok(p)
    }

    /// Seeder `i` shares `path` (hashing it): seconds from the command to
    /// its answer.
    pub fn upload(p: &mut Proc, path: &Path) -> Res<f64> {
        let t0 = Instant::now();
        p.send(&format!("upload_file g {}", path.display()))?;
        let l = p.expect("sharing ", T_CMD)?;
        Ok(l.at.duration_since(t0).as_secs_f64())
    }

    /// Every seeder shares `path` once (seeder 1's upload is not timed
    /// here; see [`Swarm::upload`]).
    pub fn share_everywhere(&self, path: &Path, skip_first: bool) -> Res<()> {
        for i in 1..=self.seeders {
            if skip_first && i == 1 {
                continue;
            }
            let mut p = self.seeder(i)?;
            Self::upload(&mut p, path)?;
            p.run("logout", "logged out")?;
            p.send("exit")?;
            p.wait_exit(Duration::from_secs(10))?;
        }
        Ok(())
    }

    /// One download of `name` (size `size`) from every seeder at once, into
    /// `dest`, by a fresh leecher process. The seeders are started for the
    /// run and stopped after it, which gives pieces served per run. With
    /// `trace`, the leecher writes its counters there (`client --trace`).
    pub fn download(&self, name: &str, size: u64, dest: &Path, trace: Option<&Path>) -> Res<DlRun> {
        let mut seeders = Vec::new();
        for i in 1..=self.seeders {
            let mut p = self.seeder(i)?;
            p.run("serve", "serving until interrupted")?;
            seeders.push(p);
        }
        // The write gate's decision (info) is kept; the rest logs at warn.
        let mut extra: Vec<String> = vec!["--log-level".into(), format!("warn,{GATE_LOG}=info")];
        if let Some(t) = trace {
            extra.extend(["--trace".into(), t.display().to_string()]);
        }
        let mut l = client_with(
            &self.bins,
            &self.trackers,
            0,
            "leech",
            self.dir.path(),
            &extra,
        )?;
        l.watch(GATE_MOVED);
        l.run("login leech pw", "logged in")?;
        // Every seeder must be listed online before the clock starts.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            l.send("list_files g")?;
            let line = l.expect(&format!("{name}  "), T_CMD)?;
            let words: Vec<&str> = line.text.split_whitespace().collect();
            let online: usize = words
                .iter()
                .position(|w| *w == "seeder(s)")
                .and_then(|i| words.get(i.wrapping_sub(1)))
                .and_then(|w| w.parse().ok())
                .unwrap_or(0);
            if online >= self.seeders {
                break;
            }
            if Instant::now() > deadline {
                // What each seeder said last, to tell a seeder that is not
                // serving from a tracker that does not show it.
                let said: Vec<String> = seeders
                    .iter_mut()
                    .enumerate()
                    .map(|(k, p)| {
                        let lines = p.drain();
                        let last = lines.len().saturating_sub(3);
                        format!("seeder {}: [{}]", k + 1, lines[last..].join(" | "))
                    })
                    .collect();
                return Err(format!(
                    "only {online} of {} seeders online after 20 s: {}; {}",
                    self.seeders,
                    line.text,
                    said.join("; ")
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let timeout = Duration::from_secs(120 + size / (20 * 1_000_000));
        let cpu = |l: &Proc, seeders: &[Proc]| {
            let s: Option<f64> = seeders.iter().map(Proc::cpu_secs).sum();
            Some((l.cpu_secs()?, s?))
        };
        let faults = |l: &Proc, seeders: &[Proc]| {
            let s: Option<u64> = seeders.iter().map(Proc::minor_faults).sum();
            Some((l.minor_faults()?, s?))
        };
        let cpu0 = cpu(&l, &seeders);
        let faults0 = faults(&l, &seeders);
        let switches0 = l.context_switches();
        let machine0 = machine::Snapshot::now();
        let t0 = Instant::now();
        let sampler = IoSampler::start(l.pid(), t0);
        l.send(&format!("download_file g {name} {}", dest.display()))?;
        l.send(&format!("wait_downloads {}", timeout.as_secs()))?;
        // The note (stderr) and the answer to `wait_downloads` (stdout)
        // are read by two threads: either may come first.
        let lines = l.expect_each(&["note: download of", "all downloads ended"], timeout)?;
        let (note, waited) = (&lines[0], &lines[1]);
        if !note.text.contains("complete") {
            return Err(format!("{}: {}", l.name, note.text));
        }
        let secs = note.at.duration_since(t0).as_secs_f64();
        let machine = machine0.and_then(|m| m.until_now());
        let cpu = cpu(&l, &seeders)
            .zip(cpu0)
            .map(|((l1, s1), (l0, s0))| (l1 - l0, s1 - s0));
        let faults = faults(&l, &seeders)
            .zip(faults0)
            .map(|((l1, s1), (l0, s0))| (l1.saturating_sub(l0), s1.saturating_sub(s0)));
        // Threads that ended meanwhile take their switches with them:
        // a count that went down says nothing.
        let switches = l
            .context_switches()
            .zip(switches0)
            .and_then(|(s1, s0)| s1.checked_sub(s0));
        let phases = sampler.finish(size, secs);
        let wait_secs = waited.at.duration_since(t0).as_secs_f64();
        let rss_kib = l.peak_rss_kib()?;
        let left_direct = l.watched().iter().find_map(|t| left_direct(t));
        l.run("logout", "logged out")?;
        l.send("exit")?;
        l.wait_exit(Duration::from_secs(10))?;
        let mut served = Vec::new();
        for p in &mut seeders {
            p.term();
            let line = p.expect("served ", Duration::from_secs(20))?;
            served.push(
                line.text
                    .split_whitespace()
                    .nth(1)
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0),
            );
            p.wait_exit(Duration::from_secs(10))?;
        }
        let got = std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0);
        if got != size {
            return Err(format!(
                "{} has {got} bytes, expected {size}",
                dest.display()
            ));
        }
        Ok(DlRun {
            secs,
            wait_secs,
            served,
            rss_kib,
            phases,
            cpu,
            switches,
            faults,
            left_direct,
            machine,
        })
    }
}

/// Where the client logs its write gate's decision
/// (`runtime_common::client::disk::write`, `DirectGate::end`).
const GATE_LOG: &str = "runtime_common::client::disk::write";

/// The end of the gate's log line when it moves a download.
const GATE_MOVED: &str = "through the page cache from now on";

/// The reason in the leecher's log line saying its download moved from
/// `O_DIRECT` to the page cache ("the device stalled (...)", "... slower
/// than the network (...)"), shortened to what is in the parentheses.
pub fn left_direct(line: &str) -> Option<String> {
    if !line.contains(GATE_MOVED) {
        return None;
    }
    let (why, rest) = if line.contains("stalled") {
        ("stalled", line.split_once("stalled (")?.1)
    } else {
        ("lagged", line.split_once("network (")?.1)
    };
    Some(format!("{why}: {}", rest.split_once(')')?.0))
}

#[cfg(test)]
mod tests {
    use super::left_direct;

    /// The gate's two log lines (`DirectGate::end`) are recognised and
    /// shortened; other lines are not.
    #[test]
    fn the_gate_log_lines_are_recognised() {
        let stalled = "2026-12-03T21:00:00Z  INFO runtime_common::client::disk::write: the device \
            stalled (one write of a piece took 52 ms): the download is written through the \
            page cache from now on";
        assert_eq!(
            left_direct(stalled).as_deref(),
            Some("stalled: one write of a piece took 52 ms")
        );
        let lagged = "INFO x: the device is slower than the network (13.1 of this download's 16 \
            pieces in flight waited for it on average): the download is written through the \
            page cache from now on";
        assert_eq!(
            left_direct(lagged).as_deref(),
            Some("lagged: 13.1 of this download's 16 pieces in flight waited for it on average")
        );
        assert_eq!(left_direct("stderr: note: download of f complete"), None);
    }
}
