//! The figures, the table a person reads and the JSON a script reads.
//!
//! Every timed figure keeps all its runs: the first run is reported on its
//! own (fresh processes), then the median of the warm runs after it. The
//! download's first column is the median of its runs on cold memory
//! (`--cold-runs`, see `baseline::Memory`), and each run's ratio to the
//! HTTPS baseline is shown beside it: on a VM the cost of fresh memory
//! moves by 20x from one moment to the next, so one cold run is one draw.
//! The runtimes level (both runtimes' downloads in alternated rounds) is
//! its own figure in `level.rs`; the JSON is written in `json.rs`.

use std::fmt::Write as _;

use super::machine::Cores;
use super::swarm::DlRun;
use super::tracker_load::Load;

mod json;
mod level;

pub use level::{Level, level_ready};

/// A figure that could not be measured says why.
pub type Fig<T> = Result<T, String>;

#[derive(Clone, Debug)]
pub struct Download {
    pub size: u64,
    pub seeders: usize,
    /// Runs on cold memory, at the front of every contender's runs.
    pub cold: usize,
    pub p2p: Fig<Vec<DlRun>>,
    /// nginx -> curl over plain HTTP.
    pub curl: Fig<Vec<f64>>,
    /// nginx -> curl over HTTPS (TLS 1.3, AES-GCM).
    pub https: Fig<Vec<f64>>,
    /// What each HTTPS run that worked used besides its time.
    pub https_use: Vec<HttpsUse>,
    pub bare: Fig<Vec<f64>>,
}

/// What an HTTPS curl run used besides its time.
#[derive(Clone, Copy, Debug, Default)]
pub struct HttpsUse {
    /// CPU seconds of curl and of nginx over the run.
    pub cpu: Option<(f64, f64)>,
    /// What the machine's cores did.
    pub machine: Option<Cores>,
}

#[derive(Clone, Debug)]
pub struct Hashing {
    pub size: u64,
    pub upload: Fig<Vec<f64>>,
    pub openssl: Fig<Vec<f64>>,
    pub sha1sum: Fig<Vec<f64>>,
}

#[derive(Clone, Debug)]
pub struct Tracker {
    pub clients: usize,
    pub trackers: usize,
    pub reads: Fig<Load>,
    pub writes: Fig<Load>,
    /// Replication events the trackers logged during the phases.
    pub events: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct RuntimeReport {
    pub runtime: String,
    /// `Some(reason)` when the binaries refuse this runtime.
    pub unavailable: Option<String>,
    pub download: Option<Download>,
    pub hashing: Option<Hashing>,
    /// Large-file memory point: (size in bytes, the one run).
    pub big: Option<(u64, Fig<DlRun>)>,
    pub tracker: Option<Tracker>,
    pub load_before: String,
    pub load_after: String,
    pub secs: f64,
}

#[derive(Clone, Debug)]
pub struct Report {
    pub size: u64,
    pub seeders: usize,
    pub clients: usize,
    pub warm_runs: usize,
    /// Download runs on cold memory before the warm ones.
    pub cold_runs: usize,
    pub quick: bool,
    pub cores: usize,
    pub load_start: String,
    pub runtimes: Vec<RuntimeReport>,
    /// The runtimes level (`--runtime both` only): both downloads in
    /// alternated rounds, or why they were not measured.
    pub level: Option<Fig<Level>>,
    pub notes: Vec<String>,
    pub errors: Vec<String>,
}

pub fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    })
}

/// The median of the first `cold` runs, and the median of the runs
/// after them.
pub fn cold_warm(v: &[f64], cold: usize) -> (Option<f64>, Option<f64>) {
    let (a, b) = v.split_at(cold.min(v.len()));
    (median(a), median(b))
}

/// First run, and the median of the runs after it.
pub fn first_warm(v: &[f64]) -> (Option<f64>, Option<f64>) {
    cold_warm(v, 1)
}

/// The run whose time is the median of `runs` (for its other numbers).
fn median_run(runs: &[DlRun]) -> Option<&DlRun> {
    let m = median(&runs.iter().map(|r| r.secs).collect::<Vec<_>>())?;
    runs.iter()
        .min_by(|a, b| (a.secs - m).abs().total_cmp(&(b.secs - m).abs()))
}

/// A download's cold runs and its warm runs.
fn cold_and_warm(runs: &[DlRun], cold: usize) -> (&[DlRun], &[DlRun]) {
    runs.split_at(cold.min(runs.len()))
}

/// Each run's ratio `a[i] / b[i]`, for the runs both figures have.
pub fn run_ratios(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x / y).collect()
}

fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes / (1024 * 1024))
}

fn secs(s: Option<f64>) -> String {
    s.map_or("-".into(), |s| format!("{s:.3} s"))
}

fn rate(bytes: u64, s: Option<f64>) -> String {
    s.map_or(String::new(), |s| {
        format!("{:.0} MB/s", bytes as f64 / s / 1e6)
    })
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? / b?)
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or("-".into(), |r| format!("{r:.2}x"))
}

fn rss(kib: Option<u64>) -> String {
    kib.map_or("-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

fn ms(s: f64) -> String {
    if s.is_nan() {
        "-".into()
    } else {
        format!("{:.2} ms", s * 1e3)
    }
}

/// `(first, warm)` of a timed figure, or its error twice.
fn fw(f: &Fig<Vec<f64>>) -> (Option<f64>, Option<f64>) {
    cw(f, 1)
}

/// `(cold median, warm median)` of a download figure, or its error twice.
fn cw(f: &Fig<Vec<f64>>, cold: usize) -> (Option<f64>, Option<f64>) {
    match f {
        Ok(v) => cold_warm(v, cold),
        Err(_) => (None, None),
    }
}

struct Table {
    out: String,
}

impl Table {
    fn head(&mut self, s: &str) {
        let _ = writeln!(self.out, "  {s}");
    }
    fn row(&mut self, label: &str, first: &str, warm: &str, note: &str) {
        let line = format!("    {label:<32} {first:<22} {warm:<22} {note}");
        self.out.push_str(line.trim_end());
        self.out.push('\n');
    }
    fn skip(&mut self, label: &str, why: &str) {
        let _ = writeln!(self.out, "    {label:<32} n/a: {why}");
    }
}

fn timed_row(t: &mut Table, label: &str, bytes: u64, f: &Fig<Vec<f64>>, cold: usize, note: &str) {
    match f {
        Ok(v) => {
            let (a, b) = cold_warm(v, cold);
            let cell = |s| format!("{} {}", secs(s), rate(bytes, s));
            t.row(label, &cell(a), &b.map_or("-".into(), |_| cell(b)), note);
        }
        Err(e) => t.skip(label, e),
    }
}

impl Report {
    pub fn table(&self) -> String {
        let mut t = Table { out: String::new() };
        let cold = match self.cold_runs {
            1 => "the download's first run on cold memory".to_string(),
            n => format!("the median of the download's {n} runs on cold memory"),
        };
        let runs = if self.warm_runs == 0 {
            format!("first run only ({cold})")
        } else {
            format!(
                "first run ({cold}), then the median of {} warm runs (warm memory)",
                self.warm_runs
            )
        };
        let _ = writeln!(
            t.out,
            "p2p-bench: {} file, {} seeders, {} tracker clients; {runs}{}",
            mib(self.size),
            self.seeders,
            self.clients,
            if self.quick { " (--quick)" } else { "" }
        );
        let _ = writeln!(
            t.out,
            "machine: {} cores; load average at start {}",
            self.cores, self.load_start
        );
        for n in &self.notes {
            let _ = writeln!(t.out, "note: {n}");
        }
        for r in &self.runtimes {
            let _ = writeln!(t.out);
            if let Some(why) = &r.unavailable {
                let _ = writeln!(t.out, "runtime {}: not available ({why})", r.runtime);
                continue;
            }
            let _ = writeln!(
                t.out,
                "runtime {}  ({:.0} s; load average before {}, after {})",
                r.runtime, r.secs, r.load_before, r.load_after
            );
            if let Some(d) = &r.download {
                download_rows(&mut t, d);
            }
            if let Some(h) = &r.hashing {
                hashing_rows(&mut t, h);
            }
            memory_rows(&mut t, r);
            if let Some(tr) = &r.tracker {
                tracker_rows(&mut t, tr);
            }
        }
        if let Some(l) = &self.level {
            let _ = writeln!(t.out);
            level::level_rows(&mut t, l);
        }
        if !self.errors.is_empty() {
            let _ = writeln!(t.out, "\nerrors:");
            for e in &self.errors {
                let _ = writeln!(t.out, "  {e}");
            }
        }
        t.out
    }
}

fn download_rows(t: &mut Table, d: &Download) {
    t.head(&format!(
        "Download {} to disk (one leecher, {} seeders, every piece verified)",
        mib(d.size),
        d.seeders
    ));
    t.row("", &cold_column(d.cold), "warm median", "");
    let cold = d.cold;
    let p2p_times: Fig<Vec<f64>> = d
        .p2p
        .as_ref()
        .map(|v| v.iter().map(|r| r.secs).collect())
        .map_err(Clone::clone);
    timed_row(t, "p2p download", d.size, &p2p_times, cold, "");
    timed_row(
        t,
        "nginx -> curl, https",
        d.size,
        &d.https,
        cold,
        "(TLS 1.3, AES-GCM)",
    );
    timed_row(t, "nginx -> curl, http", d.size, &d.curl, cold, "");
    timed_row(t, "bare loopback copy", d.size, &d.bare, cold, "");
    let (pa, pb) = cw(&p2p_times, cold);
    let (ha, hb) = cw(&d.https, cold);
    let (ca, cb) = cw(&d.curl, cold);
    let (ba, bb) = cw(&d.bare, cold);
    if let Ok(p) = &p2p_times {
        if let Ok(h) = &d.https {
            t.row(
                "p2p / https curl",
                &fmt_ratio(ratio(pa, ha)),
                &fmt_ratio(ratio(pb, hb)),
                "target <= 0.80x",
            );
            let each = run_ratios(p, h);
            let (a, b) = each.split_at(cold.min(each.len()));
            let list = |v: &[f64]| {
                let s: Vec<String> = v.iter().map(|r| format!("{r:.2}")).collect();
                if s.is_empty() {
                    "-".into()
                } else {
                    s.join(" ")
                }
            };
            t.row(
                "  run by run",
                &list(a),
                &list(b),
                "(each run's contenders take turns in one memory state)",
            );
        }
        if d.curl.is_ok() {
            t.row(
                "p2p / http curl",
                &fmt_ratio(ratio(pa, ca)),
                &fmt_ratio(ratio(pb, cb)),
                "(plain HTTP: what encryption costs)",
            );
        }
        if d.bare.is_ok() {
            t.row(
                "p2p / bare copy",
                &fmt_ratio(ratio(pa, ba)),
                &fmt_ratio(ratio(pb, bb)),
                "(plaintext, unverified: no target since encryption)",
            );
        }
    }
    if let Ok(runs) = &d.p2p {
        let served = |r: Option<&DlRun>| {
            r.map_or("-".into(), |r| {
                r.served
                    .iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(" + ")
            })
        };
        let (cold_runs, warm_runs) = cold_and_warm(runs, cold);
        let first = median_run(cold_runs);
        let warm = median_run(warm_runs);
        t.row(
            "pieces served per seeder",
            &served(first),
            &served(warm),
            "",
        );
        let phases = |r: Option<&DlRun>| {
            r.and_then(|r| r.phases).map_or("-".into(), |p| {
                format!("{:.2} / {:.2} / {:.2} s", p.start, p.transfer, p.finish)
            })
        };
        t.row(
            "p2p: start / transfer / finish",
            &phases(first),
            &phases(warm),
            "(leecher's write counter; finish = rename into place)",
        );
        let cpu = |r: Option<&DlRun>| {
            r.and_then(|r| r.cpu)
                .map_or("-".into(), |(l, s)| format!("{l:.2} / {s:.2} s"))
        };
        t.row(
            "CPU: leecher / all seeders",
            &cpu(first),
            &cpu(warm),
            "(CPU seconds, command to completion)",
        );
        let faults = |r: Option<&DlRun>| {
            r.and_then(|r| r.faults)
                .map_or("-".into(), |(l, s)| format!("{l} / {s}"))
        };
        t.row(
            "page faults: leecher / seeders",
            &faults(first),
            &faults(warm),
            "(minor: pages touched first; command to completion)",
        );
        let switches = |r: Option<&DlRun>| {
            r.and_then(|r| r.switches)
                .map_or("-".into(), |n| n.to_string())
        };
        t.row(
            "leecher context switches",
            &switches(first),
            &switches(warm),
            "(all its threads, command to completion)",
        );
        machine_rows(t, runs, &d.https_use, cold);
        let reasons: Vec<String> = runs
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let run = if i < cold {
                    format!("cold {}", i + 1)
                } else {
                    format!("warm {}", i - cold + 1)
                };
                Some(format!("{run}: {}", r.left_direct.as_deref()?))
            })
            .collect();
        let left = |v: &[DlRun]| {
            format!(
                "{} of {} runs",
                v.iter().filter(|r| r.left_direct.is_some()).count(),
                v.len()
            )
        };
        t.row(
            "writes left O_DIRECT",
            &left(cold_runs),
            &left(warm_runs),
            &if reasons.is_empty() {
                "(the device kept up with the network)".into()
            } else {
                format!("({})", reasons.join("; "))
            },
        );
        t.row(
            "leecher peak RSS (VmHWM)",
            &rss(first.map(|r| r.rss_kib)),
            &rss(warm.map(|r| r.rss_kib)),
            "target <= 64 MiB",
        );
    }
}

/// The medians of each of [`Cores`]' figures over the runs that have them.
fn median_cores(v: &[Option<Cores>]) -> Option<Cores> {
    let c: Vec<Cores> = v.iter().flatten().copied().collect();
    let m = |f: fn(&Cores) -> f64| median(&c.iter().map(f).collect::<Vec<_>>());
    Some(Cores {
        busy: m(|c| c.busy)?,
        least: m(|c| c.least)?,
        steal: m(|c| c.steal)?,
    })
}

/// What the p2p runs and the HTTPS runs used besides their time: CPU
/// seconds of all their processes, and what the machine's cores did
/// (medians over the cold runs and over the warm ones). A slow run with
/// a core idle or time stolen was given less machine, not more work.
fn machine_rows(t: &mut Table, p2p: &[DlRun], https: &[HttpsUse], cold: usize) {
    let p2p_cores: Vec<Option<Cores>> = p2p.iter().map(|r| r.machine).collect();
    let https_cores: Vec<Option<Cores>> = https.iter().map(|u| u.machine).collect();
    let sum = |c: Option<(f64, f64)>| c.map(|(a, b)| a + b);
    let p2p_cpu: Vec<Option<f64>> = p2p.iter().map(|r| sum(r.cpu)).collect();
    let https_cpu: Vec<Option<f64>> = https.iter().map(|u| sum(u.cpu)).collect();
    let curl_nginx: Vec<Option<(f64, f64)>> = https.iter().map(|u| u.cpu).collect();
    let split = |n: usize| cold.min(n);
    let med = |v: &[Option<f64>]| {
        median(&v.iter().flatten().copied().collect::<Vec<_>>())
            .map_or("-".into(), |x| format!("{x:.2}"))
    };
    let (pa, pb) = p2p_cpu.split_at(split(p2p_cpu.len()));
    let (ha, hb) = https_cpu.split_at(split(https_cpu.len()));
    t.row(
        "CPU: p2p / https curl",
        &format!("{} / {} s", med(pa), med(ha)),
        &format!("{} / {} s", med(pb), med(hb)),
        "(all their processes: leecher + seeders, curl + nginx)",
    );
    let pair = |v: &[Option<(f64, f64)>]| {
        let a: Vec<Option<f64>> = v.iter().map(|c| c.map(|c| c.0)).collect();
        let b: Vec<Option<f64>> = v.iter().map(|c| c.map(|c| c.1)).collect();
        format!("{} / {} s", med(&a), med(&b))
    };
    let (ca, cb) = curl_nginx.split_at(split(curl_nginx.len()));
    t.row("  curl / nginx", &pair(ca), &pair(cb), "");
    let (pa, pb) = p2p_cores.split_at(split(p2p_cores.len()));
    let (ha, hb) = https_cores.split_at(split(https_cores.len()));
    let cols = |p: &[Option<Cores>], h: &[Option<Cores>], f: fn(&Cores) -> String| {
        let one = |v: &[Option<Cores>]| median_cores(v).map_or("-".into(), |c| f(&c));
        format!("{} / {}", one(p), one(h))
    };
    let busy = |c: &Cores| format!("{:.2}", c.busy);
    let least = |c: &Cores| format!("{:.2}", c.least);
    let steal = |c: &Cores| format!("{:.2}", c.steal);
    t.row(
        "cores busy: p2p / https curl",
        &cols(pa, ha, busy),
        &cols(pb, hb, busy),
        "(/proc/stat over each run, all processes)",
    );
    t.row(
        "  least busy core",
        &cols(pa, ha, least),
        &cols(pb, hb, least),
        "(its busy share of the run: a core left idle shows here)",
    );
    t.row(
        "  stolen by the host",
        &cols(pa, ha, steal),
        &cols(pb, hb, steal),
        "(CPU seconds, all cores)",
    );
}

fn hashing_rows(t: &mut Table, h: &Hashing) {
    t.head(&format!("Hashing {} (file in the page cache)", mib(h.size)));
    t.row("", "first run", "warm median", "");
    timed_row(
        t,
        "upload_file (until its answer)",
        h.size,
        &h.upload,
        1,
        "",
    );
    timed_row(t, "openssl dgst -sha1", h.size, &h.openssl, 1, "");
    timed_row(t, "sha1sum", h.size, &h.sha1sum, 1, "");
    let (ua, ub) = fw(&h.upload);
    if h.upload.is_ok() {
        if h.openssl.is_ok() {
            let (oa, ob) = fw(&h.openssl);
            t.row(
                "upload_file / openssl",
                &fmt_ratio(ratio(ua, oa)),
                &fmt_ratio(ratio(ub, ob)),
                "target <= 0.70x",
            );
        }
        if h.sha1sum.is_ok() {
            let (sa, sb) = fw(&h.sha1sum);
            t.row(
                "upload_file / sha1sum",
                &fmt_ratio(ratio(ua, sa)),
                &fmt_ratio(ratio(ub, sb)),
                "",
            );
        }
    }
}

/// The large file's download rate over the main file's (its warm
/// median, or its cold median without warm runs): issue 18 asks for 4 GiB
/// at the same rate as 1 GiB.
pub fn big_rate_ratio(r: &RuntimeReport) -> Option<f64> {
    let (size, Ok(big)) = r.big.as_ref()? else {
        return None;
    };
    let d = r.download.as_ref()?;
    let (cold, warm) = cold_and_warm(d.p2p.as_ref().ok()?, d.cold);
    let small = median_run(warm).or(median_run(cold))?;
    let per_sec = |bytes: u64, secs: f64| bytes as f64 / secs;
    Some(per_sec(*size, big.secs) / per_sec(d.size, small.secs))
}

fn memory_rows(t: &mut Table, r: &RuntimeReport) {
    t.head("Memory: leecher peak RSS by file size");
    if let Some(d) = &r.download {
        t.row("", &cold_column(d.cold), "warm median", "");
        match &d.p2p {
            Ok(runs) => {
                let (cold, warm) = cold_and_warm(runs, d.cold);
                t.row(
                    &mib(d.size),
                    &rss(median_run(cold).map(|r| r.rss_kib)),
                    &rss(median_run(warm).map(|r| r.rss_kib)),
                    "target <= 64 MiB",
                )
            }
            Err(e) => t.skip(&mib(d.size), e),
        }
    }
    match &r.big {
        Some((size, Ok(run))) => {
            t.row(
                &mib(*size),
                &rss(Some(run.rss_kib)),
                "",
                &format!(
                    "one run: {} {}{}, served {}{}",
                    secs(Some(run.secs)),
                    rate(*size, Some(run.secs)),
                    run.phases.map_or(String::new(), |p| format!(
                        " ({:.2} / {:.2} / {:.2} s)",
                        p.start, p.transfer, p.finish
                    )),
                    run.served
                        .iter()
                        .map(|n| n.to_string())
                        .collect::<Vec<_>>()
                        .join(" + "),
                    run.left_direct
                        .as_deref()
                        .map_or(String::new(), |w| format!("; left O_DIRECT ({w})"))
                ),
            );
            if let Some(d) = &r.download {
                t.row(
                    &format!("{} rate / {} rate", mib(*size), mib(d.size)),
                    &fmt_ratio(big_rate_ratio(r)),
                    "",
                    "target >= 0.90x (the same rate; against the warm median)",
                );
            }
        }
        Some((size, Err(e))) => t.skip(&mib(*size), e),
        None => t.skip(
            "large file",
            "skipped (--quick, or --big-size equals --size)",
        ),
    }
}

/// The head of a download column: its first run, or the median of its
/// cold runs.
fn cold_column(cold: usize) -> String {
    match cold {
        1 => "first run".into(),
        n => format!("cold median of {n}"),
    }
}

fn tracker_rows(t: &mut Table, tr: &Tracker) {
    t.head(&format!(
        "Tracker: {} concurrent clients, one request in flight each, {} trackers replicating",
        tr.clients, tr.trackers
    ));
    let row = |t: &mut Table, label: &str, l: &Fig<Load>, note: &str| match l {
        Ok(l) => {
            let errs = if l.errors > 0 {
                let per: Vec<String> = l
                    .ok_by_tracker
                    .iter()
                    .zip(&l.refused_by_tracker)
                    .enumerate()
                    .map(|(i, (ok, no))| format!("tracker {}: {ok} ok, {no} refused", i + 1))
                    .collect();
                format!(
                    "; {} more refused ({}): {}",
                    l.errors,
                    per.join(", "),
                    l.first_error.as_deref().unwrap_or("")
                )
            } else {
                String::new()
            };
            t.row(
                label,
                &format!("{:.0} req/s", l.rate()),
                &format!("p50 {}  p99 {}", ms(l.pct(0.5)), ms(l.pct(0.99))),
                &format!("{note}{errs}"),
            )
        }
        Err(e) => t.skip(label, e),
    };
    t.row("", "rate", "latency", "");
    row(t, "read: list_files", &tr.reads, "target >= 20000 req/s");
    row(t, "write: join/accept/leave", &tr.writes, "");
    for e in &tr.events {
        let _ = writeln!(t.out, "    {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(secs: f64) -> DlRun {
        DlRun {
            secs,
            wait_secs: secs,
            served: vec![1, 1],
            rss_kib: 1,
            phases: None,
            cpu: None,
            switches: None,
            faults: None,
            left_direct: None,
            machine: None,
        }
    }

    /// A runtime's section of a 1 GiB file with these p2p downloads.
    pub(super) fn runtime(name: &str, p2p: Fig<Vec<DlRun>>) -> RuntimeReport {
        RuntimeReport {
            runtime: name.into(),
            unavailable: None,
            download: Some(Download {
                size: 1024 * 1024 * 1024,
                seeders: 2,
                cold: 1,
                p2p,
                curl: Ok(Vec::new()),
                https: Ok(Vec::new()),
                https_use: Vec::new(),
                bare: Ok(Vec::new()),
            }),
            hashing: None,
            big: None,
            tracker: None,
            load_before: String::new(),
            load_after: String::new(),
            secs: 0.0,
        }
    }

    fn with_big(runs: Vec<DlRun>, big: (u64, Fig<DlRun>)) -> RuntimeReport {
        RuntimeReport {
            big: Some(big),
            ..runtime("std", Ok(runs))
        }
    }

    /// The words after `label` on the first table row that starts with it.
    fn row_words(out: &str, label: &str) -> Vec<String> {
        let line = out.lines().find(|l| l.trim_start().starts_with(label));
        let rest = line.unwrap_or_default().trim_start()[label.len()..].to_string();
        rest.split_whitespace().map(String::from).collect()
    }

    /// A report of these sections, without the runtimes level.
    pub(super) fn report(runtimes: Vec<RuntimeReport>) -> Report {
        Report {
            size: 1024 * 1024 * 1024,
            seeders: 2,
            clients: 64,
            warm_runs: 3,
            cold_runs: 1,
            quick: false,
            cores: 2,
            load_start: String::new(),
            runtimes,
            level: None,
            notes: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// With three cold runs the first column is their median, the warm
    /// column the median of the runs after them, and each run's ratio to
    /// HTTPS curl is listed: p2p 1.0/3.0/1.2 cold against curl 2.0/2.5/1.5
    /// gives a 1.20 / 2.00 = 0.60x cold median and runs 0.50 1.20 0.80.
    #[test]
    fn cold_runs_give_the_first_column_and_each_run_is_listed() {
        let mut r = runtime(
            "std",
            Ok(vec![run(1.0), run(3.0), run(1.2), run(0.9), run(0.7)]),
        );
        let d = r.download.as_mut().unwrap();
        d.cold = 3;
        d.https = Ok(vec![2.0, 2.5, 1.5, 1.0, 1.4]);
        let mut t = Table { out: String::new() };
        download_rows(&mut t, d);
        let words = |label: &str| row_words(&t.out, label);
        assert!(t.out.contains("cold median of 3"), "{}", t.out);
        assert_eq!(words("p2p download")[..2], ["1.200", "s"], "{}", t.out);
        assert_eq!(words("p2p download")[4], "0.800", "{}", t.out);
        assert_eq!(
            words("p2p / https curl")[..2],
            ["0.60x", "0.67x"],
            "{}",
            t.out
        );
        assert_eq!(
            words("run by run")[..5],
            ["0.50", "1.20", "0.80", "0.90", "0.50"],
            "{}",
            t.out
        );
        let cold = d.p2p.as_ref().unwrap();
        assert_eq!(
            median_run(cold_and_warm(cold, 3).0).map(|r| r.secs),
            Some(1.2)
        );
    }

    /// The CPU and cores rows give the medians of the cold runs and of
    /// the warm runs, p2p's before HTTPS curl's; a run without counters is
    /// left out of its median, and a side with none says "-".
    #[test]
    fn machine_rows_give_each_side_its_medians() {
        let cores = |busy, least, steal| Some(Cores { busy, least, steal });
        let mut runs = vec![run(1.0), run(1.0), run(1.0), run(1.0)];
        for (r, c) in runs.iter_mut().zip([
            cores(1.9, 0.9, 0.1),
            cores(1.5, 0.5, 0.3),
            None,
            cores(2.0, 1.0, 0.0),
        ]) {
            r.machine = c;
        }
        runs[0].cpu = Some((1.0, 0.8));
        runs[1].cpu = Some((1.2, 1.0));
        let https: Vec<HttpsUse> = [cores(1.3, 0.4, 0.0), cores(1.1, 0.2, 0.2), None, None]
            .into_iter()
            .zip([Some((1.5, 0.5)), Some((1.3, 0.3)), None, Some((1.4, 0.4))])
            .map(|(machine, cpu)| HttpsUse { cpu, machine })
            .collect();
        let mut t = Table { out: String::new() };
        machine_rows(&mut t, &runs, &https, 2);
        for (label, want) in [
            (
                "CPU: p2p / https curl",
                &["2.00", "/", "1.80", "s", "-", "/", "1.80", "s"][..],
            ),
            (
                "curl / nginx",
                &["1.40", "/", "0.40", "s", "1.40", "/", "0.40", "s"],
            ),
            (
                "cores busy: p2p / https curl",
                &["1.70", "/", "1.20", "2.00", "/", "-"],
            ),
            ("least busy core", &["0.70", "/", "0.30", "1.00", "/", "-"]),
            (
                "stolen by the host",
                &["0.20", "/", "0.10", "0.00", "/", "-"],
            ),
        ] {
            let got = row_words(&t.out, label);
            let got: Vec<&str> = got.iter().take(want.len()).map(String::as_str).collect();
            assert_eq!(got, want, "{label}: {}", t.out);
        }
    }

    /// The large file's rate is compared with the main file's warm median
    /// (0.9 s here: 4 GiB in 4 s is 0.9x of 1 GiB in 0.9 s), or with its
    /// first run when there are no warm runs; nothing without a large run.
    #[test]
    fn the_large_file_rate_is_against_the_warm_median() {
        let gib = 1024 * 1024 * 1024;
        let warm = vec![run(2.0), run(0.8), run(0.9), run(1.0)];
        let r = with_big(warm, (4 * gib, Ok(run(4.0))));
        assert!((big_rate_ratio(&r).unwrap() - 0.9).abs() < 1e-9);
        let mut t = Table { out: String::new() };
        memory_rows(&mut t, &r);
        let line = t
            .out
            .lines()
            .find(|l| l.contains("4096 MiB rate / 1024 MiB rate"));
        let words: Vec<&str> = line.unwrap_or_default().split_whitespace().collect();
        assert_eq!(words.get(7), Some(&"0.90x"), "{}", t.out);
        let first_only = with_big(vec![run(2.0)], (4 * gib, Ok(run(4.0))));
        assert!((big_rate_ratio(&first_only).unwrap() - 2.0).abs() < 1e-9);
        let failed = with_big(vec![run(1.0)], (4 * gib, Err("x".into())));
        assert_eq!(big_rate_ratio(&failed), None);
        assert_eq!(big_rate_ratio(&runtime("std", Ok(vec![run(1.0)]))), None);
    }
}
