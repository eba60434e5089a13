//! The figures of one runtime's section of the report: the download
//! against its baselines, hashing, the large-file memory point and the
//! tracker's rate and latency ([`runtime_section`]).

use super::*;
use crate::report::HttpsUse;

/// Everything one runtime section needs.
pub(crate) struct Ctx<'a> {
    pub(crate) args: &'a Args,
    pub(crate) dirs: &'a Dirs,
    pub(crate) tools: &'a Tools,
    pub(crate) nginx: &'a Fig<Nginx>,
    pub(crate) file: &'a Path,
    pub(crate) size: u64,
    /// Runs of the hashing figures: the first, then the warm ones.
    pub(crate) runs: usize,
    /// Download runs on cold memory before the warm ones (`--cold-runs`).
    pub(crate) cold_runs: usize,
    pub(crate) errors: &'a mut Vec<String>,
    /// Where this runtime's trace goes (`--trace`).
    pub(crate) trace: Option<PathBuf>,
    pub(crate) notes: &'a mut Vec<String>,
}

pub(crate) fn file_name(p: &Path) -> String {
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
    let base = cx.args.dest_dir.as_deref().unwrap_or(&cx.dirs.bench);
    let dir = WorkDir::new(base, "dl")?;
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
    let mut https_use = Vec::new();
    for k in 0..cx.cold_runs + cx.runs - 1 {
        eprintln!("p2p-bench: [{}] download, run {}", sw.bins.runtime, k + 1);
        // The first runs of each contender start on cold memory, the
        // others on warm memory (see `baseline::Memory`); the contenders
        // take turns within each run, so each run's are in one state.
        let state = if k < cx.cold_runs {
            Memory::Cold
        } else {
            Memory::Warm
        };
        let set_memory = || baseline::set_memory(state, dir.path(), cx.size);
        if let (Ok(c), Ok(n)) = (&cx.tools.curl, cx.nginx) {
            for (fig, tls) in [(&mut https, n.https.as_ref().ok()), (&mut curl, None)] {
                if fig.is_err() {
                    continue;
                }
                set_memory()?;
                let m0 = machine::Snapshot::now();
                let nginx0 = n.cpu_secs();
                let r = baseline::curl(c, n.port, tls, &name, &dest);
                if let (Some(_), Ok(run)) = (tls, &r) {
                    https_use.push(HttpsUse {
                        cpu: run.cpu.zip(n.cpu_secs().zip(nginx0).map(|(b, a)| b - a)),
                        machine: m0.and_then(|m| m.until_now()),
                    });
                }
                let r = r.map(|run| run.secs);
                let r = r.and_then(|s| match std::fs::metadata(&dest).map(|m| m.len()) {
                    Ok(len) if len == cx.size => Ok(s),
                    other => Err(format!("curl wrote {other:?} bytes, expected {}", cx.size)),
                });
                let _ = std::fs::remove_file(&dest);
                push_run(fig, r);
            }
        }
        set_memory()?;
        push_run(&mut bare, baseline::bare_copy(cx.file, &dest));
        let _ = std::fs::remove_file(&dest);
        if let Ok(v) = &mut p2p {
            set_memory()?;
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
        cold: cx.cold_runs,
        seeders: cx.args.seeders,
        p2p,
        curl,
        https,
        https_use,
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
    baseline::settle_writeback();
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

pub(crate) fn runtime_section(cx: &mut Ctx, runtime: &str) -> RuntimeReport {
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
    let bins = Bins::beside(&cx.dirs.bin, runtime);
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
