//! The figures, the table a person reads and the JSON a script reads.
//!
//! Every timed figure keeps all its runs: the first run is reported on its
//! own (fresh processes and, for the download, cold memory: see
//! `baseline::Memory`), then the median of the warm runs after it.

use std::fmt::Write as _;

use super::swarm::DlRun;
use super::tracker_load::Load;

/// A figure that could not be measured says why.
pub type Fig<T> = Result<T, String>;

#[derive(Clone, Debug)]
pub struct Download {
    pub size: u64,
    pub seeders: usize,
    pub p2p: Fig<Vec<DlRun>>,
    /// nginx -> curl over plain HTTP.
    pub curl: Fig<Vec<f64>>,
    /// nginx -> curl over HTTPS (TLS 1.3, AES-GCM).
    pub https: Fig<Vec<f64>>,
    pub bare: Fig<Vec<f64>>,
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
    pub quick: bool,
    pub cores: usize,
    pub load_start: String,
    pub runtimes: Vec<RuntimeReport>,
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

/// First run, and the median of the runs after it.
pub fn first_warm(v: &[f64]) -> (Option<f64>, Option<f64>) {
    (v.first().copied(), v.get(1..).and_then(median))
}

/// The warm run whose time is the median (for its other numbers).
fn warm_median_run(runs: &[DlRun]) -> Option<&DlRun> {
    let warm = runs.get(1..)?;
    let m = median(&warm.iter().map(|r| r.secs).collect::<Vec<_>>())?;
    warm.iter()
        .min_by(|a, b| (a.secs - m).abs().total_cmp(&(b.secs - m).abs()))
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
    match f {
        Ok(v) => first_warm(v),
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

fn timed_row(t: &mut Table, label: &str, bytes: u64, f: &Fig<Vec<f64>>, note: &str) {
    match f {
        Ok(v) => {
            let (a, b) = first_warm(v);
            let cell = |s| format!("{} {}", secs(s), rate(bytes, s));
            t.row(label, &cell(a), &b.map_or("-".into(), |_| cell(b)), note);
        }
        Err(e) => t.skip(label, e),
    }
}

impl Report {
    pub fn table(&self) -> String {
        let mut t = Table { out: String::new() };
        let runs = if self.warm_runs == 0 {
            "first run only (downloads on cold memory)".to_string()
        } else {
            format!(
                "first run (downloads on cold memory), then the median of {} warm runs (warm memory)",
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
            t.row("", "first run", "warm median", "");
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
    let p2p_times: Fig<Vec<f64>> = d
        .p2p
        .as_ref()
        .map(|v| v.iter().map(|r| r.secs).collect())
        .map_err(Clone::clone);
    timed_row(t, "p2p download", d.size, &p2p_times, "");
    timed_row(
        t,
        "nginx -> curl, https",
        d.size,
        &d.https,
        "(TLS 1.3, AES-GCM)",
    );
    timed_row(t, "nginx -> curl, http", d.size, &d.curl, "");
    timed_row(t, "bare loopback copy", d.size, &d.bare, "");
    let (pa, pb) = fw(&p2p_times);
    let (ha, hb) = fw(&d.https);
    let (ca, cb) = fw(&d.curl);
    let (ba, bb) = fw(&d.bare);
    if p2p_times.is_ok() {
        if d.https.is_ok() {
            t.row(
                "p2p / https curl",
                &fmt_ratio(ratio(pa, ha)),
                &fmt_ratio(ratio(pb, hb)),
                "target <= 0.80x",
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
                "target <= 1.60x",
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
        let warm = warm_median_run(runs);
        t.row(
            "pieces served per seeder",
            &served(runs.first()),
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
            &phases(runs.first()),
            &phases(warm),
            "(leecher's write counter; finish = rename into place)",
        );
        let cpu = |r: Option<&DlRun>| {
            r.and_then(|r| r.cpu)
                .map_or("-".into(), |(l, s)| format!("{l:.2} / {s:.2} s"))
        };
        t.row(
            "CPU: leecher / all seeders",
            &cpu(runs.first()),
            &cpu(warm),
            "(CPU seconds, command to completion)",
        );
        let switches = |r: Option<&DlRun>| {
            r.and_then(|r| r.switches)
                .map_or("-".into(), |n| n.to_string())
        };
        t.row(
            "leecher context switches",
            &switches(runs.first()),
            &switches(warm),
            "(all its threads, command to completion)",
        );
        t.row(
            "leecher peak RSS (VmHWM)",
            &rss(runs.first().map(|r| r.rss_kib)),
            &rss(warm.map(|r| r.rss_kib)),
            "target <= 64 MiB",
        );
    }
}

fn hashing_rows(t: &mut Table, h: &Hashing) {
    t.head(&format!("Hashing {} (file in the page cache)", mib(h.size)));
    timed_row(t, "upload_file (until its answer)", h.size, &h.upload, "");
    timed_row(t, "openssl dgst -sha1", h.size, &h.openssl, "");
    timed_row(t, "sha1sum", h.size, &h.sha1sum, "");
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

fn memory_rows(t: &mut Table, r: &RuntimeReport) {
    t.head("Memory: leecher peak RSS by file size");
    if let Some(d) = &r.download {
        match &d.p2p {
            Ok(runs) => t.row(
                &mib(d.size),
                &rss(runs.first().map(|r| r.rss_kib)),
                &rss(warm_median_run(runs).map(|r| r.rss_kib)),
                "target <= 64 MiB",
            ),
            Err(e) => t.skip(&mib(d.size), e),
        }
    }
    match &r.big {
        Some((size, Ok(run))) => t.row(
            &mib(*size),
            &rss(Some(run.rss_kib)),
            "",
            &format!(
                "one run: {} {}{}, served {}",
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
                    .join(" + ")
            ),
        ),
        Some((size, Err(e))) => t.skip(&mib(*size), e),
        None => t.skip(
            "large file",
            "skipped (--quick, or --big-size equals --size)",
        ),
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

// ------------------------------------------------------------------ JSON

/// A JSON value, written by hand (no serde in this workspace).
pub enum J {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(&'static str, J)>),
}

impl J {
    fn write(&self, out: &mut String) {
        match self {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Num(n) if n.is_finite() => {
                let _ = write!(out, "{n}");
            }
            J::Num(_) => out.push_str("null"),
            J::Str(s) => {
                out.push('"');
                for c in s.chars() {
                    match c {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        '\n' => out.push_str("\\n"),
                        c if (c as u32) < 0x20 => {
                            let _ = write!(out, "\\u{:04x}", c as u32);
                        }
                        c => out.push(c),
                    }
                }
                out.push('"');
            }
            J::Arr(v) => {
                out.push('[');
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    x.write(out);
                }
                out.push(']');
            }
            J::Obj(v) => {
                out.push('{');
                for (i, (k, x)) in v.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    J::Str((*k).into()).write(out);
                    out.push(':');
                    x.write(out);
                }
                out.push('}');
            }
        }
    }
}

fn opt(x: Option<f64>) -> J {
    x.map_or(J::Null, J::Num)
}

fn nums(v: &[f64]) -> J {
    J::Arr(v.iter().map(|&x| J::Num(x)).collect())
}

/// `{"runs": [...], "first": x, "warm_median": y}` or `{"error": "..."}`.
fn timed(f: &Fig<Vec<f64>>) -> J {
    match f {
        Ok(v) => {
            let (a, b) = first_warm(v);
            J::Obj(vec![
                ("runs_s", nums(v)),
                ("first_s", opt(a)),
                ("warm_median_s", opt(b)),
            ])
        }
        Err(e) => J::Obj(vec![("error", J::Str(e.clone()))]),
    }
}

fn dl_run(r: &DlRun) -> J {
    J::Obj(vec![
        ("secs", J::Num(r.secs)),
        ("wait_downloads_secs", J::Num(r.wait_secs)),
        (
            "served_pieces",
            J::Arr(r.served.iter().map(|&n| J::Num(n as f64)).collect()),
        ),
        ("peak_rss_kib", J::Num(r.rss_kib as f64)),
        (
            "cpu",
            r.cpu.map_or(J::Null, |(l, s)| {
                J::Obj(vec![("leecher_s", J::Num(l)), ("seeders_s", J::Num(s))])
            }),
        ),
        (
            "leecher_context_switches",
            r.switches.map_or(J::Null, |n| J::Num(n as f64)),
        ),
        (
            "phases",
            r.phases.map_or(J::Null, |p| {
                J::Obj(vec![
                    ("start_s", J::Num(p.start)),
                    ("transfer_s", J::Num(p.transfer)),
                    ("finish_s", J::Num(p.finish)),
                ])
            }),
        ),
    ])
}

fn load(l: &Fig<Load>) -> J {
    match l {
        Ok(l) => J::Obj(vec![
            ("ok", J::Num(l.ops as f64)),
            ("refused", J::Num(l.errors as f64)),
            (
                "ok_by_tracker",
                J::Arr(l.ok_by_tracker.iter().map(|&n| J::Num(n as f64)).collect()),
            ),
            (
                "refused_by_tracker",
                J::Arr(
                    l.refused_by_tracker
                        .iter()
                        .map(|&n| J::Num(n as f64))
                        .collect(),
                ),
            ),
            (
                "first_refusal",
                l.first_error.clone().map_or(J::Null, J::Str),
            ),
            ("secs", J::Num(l.secs)),
            ("rate_per_s", J::Num(l.rate())),
            ("p50_ms", J::Num(l.pct(0.5) * 1e3)),
            ("p99_ms", J::Num(l.pct(0.99) * 1e3)),
            ("max_ms", J::Num(l.pct(1.0) * 1e3)),
        ]),
        Err(e) => J::Obj(vec![("error", J::Str(e.clone()))]),
    }
}

fn err(e: &str) -> J {
    J::Obj(vec![("error", J::Str(e.into()))])
}

impl Report {
    pub fn json(&self) -> String {
        let runtimes = self.runtimes.iter().map(|r| {
            let mut o = vec![
                ("runtime", J::Str(r.runtime.clone())),
                ("available", J::Bool(r.unavailable.is_none())),
            ];
            if let Some(why) = &r.unavailable {
                o.push(("reason", J::Str(why.clone())));
                return J::Obj(o);
            }
            o.push(("load_before", J::Str(r.load_before.clone())));
            o.push(("load_after", J::Str(r.load_after.clone())));
            o.push(("secs", J::Num(r.secs)));
            if let Some(d) = &r.download {
                let p2p_times: Fig<Vec<f64>> = d
                    .p2p
                    .as_ref()
                    .map(|v| v.iter().map(|r| r.secs).collect())
                    .map_err(Clone::clone);
                let (pa, pb) = fw(&p2p_times);
                let (ca, cb) = fw(&d.curl);
                let (ha, hb) = fw(&d.https);
                let (ba, bb) = fw(&d.bare);
                o.push((
                    "download",
                    J::Obj(vec![
                        ("size_bytes", J::Num(d.size as f64)),
                        ("seeders", J::Num(d.seeders as f64)),
                        ("p2p", timed(&p2p_times)),
                        (
                            "p2p_runs",
                            match &d.p2p {
                                Ok(v) => J::Arr(v.iter().map(dl_run).collect()),
                                Err(e) => err(e),
                            },
                        ),
                        ("curl", timed(&d.curl)),
                        ("https_curl", timed(&d.https)),
                        ("bare_copy", timed(&d.bare)),
                        ("ratio_curl_first", opt(ratio(pa, ca))),
                        ("ratio_curl_warm", opt(ratio(pb, cb))),
                        ("ratio_https_curl_first", opt(ratio(pa, ha))),
                        ("ratio_https_curl_warm", opt(ratio(pb, hb))),
                        ("ratio_bare_first", opt(ratio(pa, ba))),
                        ("ratio_bare_warm", opt(ratio(pb, bb))),
                    ]),
                ));
            }
            if let Some(h) = &r.hashing {
                let (ua, ub) = fw(&h.upload);
                let (oa, ob) = fw(&h.openssl);
                let (sa, sb) = fw(&h.sha1sum);
                o.push((
                    "hashing",
                    J::Obj(vec![
                        ("size_bytes", J::Num(h.size as f64)),
                        ("upload_file", timed(&h.upload)),
                        ("openssl", timed(&h.openssl)),
                        ("sha1sum", timed(&h.sha1sum)),
                        ("ratio_openssl_first", opt(ratio(ua, oa))),
                        ("ratio_openssl_warm", opt(ratio(ub, ob))),
                        ("ratio_sha1sum_first", opt(ratio(ua, sa))),
                        ("ratio_sha1sum_warm", opt(ratio(ub, sb))),
                    ]),
                ));
            }
            o.push((
                "big_file",
                match &r.big {
                    None => J::Null,
                    Some((size, run)) => J::Obj(vec![
                        ("size_bytes", J::Num(*size as f64)),
                        (
                            "run",
                            match run {
                                Ok(r) => dl_run(r),
                                Err(e) => err(e),
                            },
                        ),
                    ]),
                },
            ));
            if let Some(t) = &r.tracker {
                o.push((
                    "tracker",
                    J::Obj(vec![
                        ("clients", J::Num(t.clients as f64)),
                        ("trackers", J::Num(t.trackers as f64)),
                        ("reads", load(&t.reads)),
                        ("writes", load(&t.writes)),
                        (
                            "events",
                            J::Arr(t.events.iter().map(|e| J::Str(e.clone())).collect()),
                        ),
                    ]),
                ));
            }
            J::Obj(o)
        });
        let top = J::Obj(vec![
            ("size_bytes", J::Num(self.size as f64)),
            ("seeders", J::Num(self.seeders as f64)),
            ("clients", J::Num(self.clients as f64)),
            ("warm_runs", J::Num(self.warm_runs as f64)),
            ("quick", J::Bool(self.quick)),
            ("cores", J::Num(self.cores as f64)),
            ("load_start", J::Str(self.load_start.clone())),
            ("runtimes", J::Arr(runtimes.collect())),
            (
                "notes",
                J::Arr(self.notes.iter().map(|n| J::Str(n.clone())).collect()),
            ),
            (
                "errors",
                J::Arr(self.errors.iter().map(|n| J::Str(n.clone())).collect()),
            ),
        ]);
        let mut out = String::new();
        top.write(&mut out);
        out
    }
}
