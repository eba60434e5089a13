//! The report as JSON (`p2p-bench --json`), for scripts.

use super::*;

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

/// `{"runs_s": [...], "first_s": x, "warm_median_s": y}` or
/// `{"error": "..."}`.
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
        Err(e) => err(e),
    }
}

/// A download figure: its runs (the first `cold` on cold memory), the
/// first run, the cold and the warm median.
fn timed_dl(f: &Fig<Vec<f64>>, cold: usize) -> J {
    match f {
        Ok(v) => {
            let (a, b) = cold_warm(v, cold);
            J::Obj(vec![
                ("runs_s", nums(v)),
                ("first_s", opt(v.first().copied())),
                ("cold_median_s", opt(a)),
                ("warm_median_s", opt(b)),
            ])
        }
        Err(e) => err(e),
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
        ("left_direct", r.left_direct.clone().map_or(J::Null, J::Str)),
        (
            "cpu",
            r.cpu.map_or(J::Null, |(l, s)| {
                J::Obj(vec![("leecher_s", J::Num(l)), ("seeders_s", J::Num(s))])
            }),
        ),
        (
            "minor_faults",
            r.faults.map_or(J::Null, |(l, s)| {
                J::Obj(vec![
                    ("leecher", J::Num(l as f64)),
                    ("seeders", J::Num(s as f64)),
                ])
            }),
        ),
        (
            "leecher_context_switches",
            r.switches.map_or(J::Null, |n| J::Num(n as f64)),
        ),
        ("machine", cores(r.machine)),
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

/// What the machine's cores did during a run ([`Cores`]).
fn cores(c: Option<Cores>) -> J {
    c.map_or(J::Null, |c| {
        J::Obj(vec![
            ("cores_busy", J::Num(c.busy)),
            ("least_busy_core", J::Num(c.least)),
            ("steal_s", J::Num(c.steal)),
        ])
    })
}

/// What an HTTPS curl run used ([`HttpsUse`]).
fn https_use(u: &HttpsUse) -> J {
    J::Obj(vec![
        (
            "cpu",
            u.cpu.map_or(J::Null, |(c, n)| {
                J::Obj(vec![("curl_s", J::Num(c)), ("nginx_s", J::Num(n))])
            }),
        ),
        ("machine", cores(u.machine)),
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

/// The runtimes level: each runtime's seconds round by round, the
/// ratio of their medians and each round's ratio (smol / std).
fn level(l: &Fig<Level>) -> J {
    match l {
        Ok(l) => J::Obj(vec![
            ("std_secs", nums(&l.std)),
            ("smol_secs", nums(&l.smol)),
            ("median_ratio", opt(l.median_ratio())),
            ("round_ratios", nums(&l.round_ratios())),
            ("std_cpu_secs", nums(&l.std_cpu)),
            ("smol_cpu_secs", nums(&l.smol_cpu)),
            ("cpu_ratio", opt(l.cpu_ratio())),
            ("load_before", J::Str(l.load_before.clone())),
            ("load_after", J::Str(l.load_after.clone())),
            ("secs", J::Num(l.secs)),
        ]),
        Err(e) => err(e),
    }
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
                let (pa, pb) = cw(&p2p_times, d.cold);
                let (ca, cb) = cw(&d.curl, d.cold);
                let (ha, hb) = cw(&d.https, d.cold);
                let (ba, bb) = cw(&d.bare, d.cold);
                o.push((
                    "download",
                    J::Obj(vec![
                        ("size_bytes", J::Num(d.size as f64)),
                        ("seeders", J::Num(d.seeders as f64)),
                        ("cold_runs", J::Num(d.cold as f64)),
                        ("p2p", timed_dl(&p2p_times, d.cold)),
                        (
                            "p2p_runs",
                            match &d.p2p {
                                Ok(v) => J::Arr(v.iter().map(dl_run).collect()),
                                Err(e) => err(e),
                            },
                        ),
                        ("curl", timed_dl(&d.curl, d.cold)),
                        ("https_curl", timed_dl(&d.https, d.cold)),
                        (
                            "https_curl_use",
                            J::Arr(d.https_use.iter().map(https_use).collect()),
                        ),
                        ("bare_copy", timed_dl(&d.bare, d.cold)),
                        ("ratio_curl_cold", opt(ratio(pa, ca))),
                        ("ratio_curl_warm", opt(ratio(pb, cb))),
                        ("ratio_https_curl_cold", opt(ratio(pa, ha))),
                        ("ratio_https_curl_warm", opt(ratio(pb, hb))),
                        (
                            "ratio_https_curl_runs",
                            match (&p2p_times, &d.https) {
                                (Ok(p), Ok(h)) => nums(&run_ratios(p, h)),
                                _ => J::Null,
                            },
                        ),
                        ("ratio_bare_cold", opt(ratio(pa, ba))),
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
                        ("rate_ratio", opt(super::big_rate_ratio(r))),
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
            ("cold_runs", J::Num(self.cold_runs as f64)),
            ("quick", J::Bool(self.quick)),
            ("cores", J::Num(self.cores as f64)),
            ("load_start", J::Str(self.load_start.clone())),
            ("runtimes", J::Arr(runtimes.collect())),
            (
                "smol_over_std",
                match &self.level {
                    None => J::Null,
                    Some(l) => J::Obj(vec![("alternated", level(l))]),
                },
            ),
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
