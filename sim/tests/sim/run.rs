//! One run of one seed: boot, the safety phase (workload and faults), the
//! quiet phase (everything healed and restarted, the system must settle),
//! then the final checks. Returns the run's figures, or a failure with the
//! seed, the step, what broke and the trace's last lines.
//!
//! Liveness is checked while faults run too, not only after the heal
//! (issue 17): [`TAKEOVER_MS_MAX`] after the last fault that changed what
//! the trackers reach, every live tracker is a primary or follows a live
//! primary whose traffic reaches it (nobody follows a dead or silent
//! primary); and a client never fails a command with "no tracker
//! reachable" [`SWITCH_MS_MAX`] after the last fault that touched it or the
//! trackers while a serving tracker is reachable from it.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use p2p_state::client::node::DownloadMark;
use p2p_state::client::session::{ClientError, PENDING_MAX};
use p2p_state::seeder::{CONNS_MAX, READS_MAX};
use p2p_state::tracker::repl::Role;
use p2p_state::{Duration, Instant};

use crate::faults::Faults;
use crate::net::{Host, IN_FLIGHT_BYTES_MAX, NodeIx, QUEUE_LEN_MAX};
use crate::swarm::{Bugs, Swarm};
use crate::workload::Workload;
use crate::world::{T0, World};

/// Steps one run may take before it counts as a livelock.
const STEPS_MAX: u64 = 30_000_000;
/// How often the cheap periodic checks run (simulated ms).
const PROBE_MS: u64 = 1000;
/// Liveness bound on the trackers, counted from the last fault that
/// changed what they reach: by then every live tracker leads or follows a
/// live primary it hears. The README's takeover bound (about 1.2 s with
/// the default timers) plus the simulated network's slow links, dial
/// timeouts and redial backoff.
pub const TAKEOVER_MS_MAX: u64 = 8_000;
/// Liveness bound on clients, counted from the last fault that touched
/// the client or the trackers: by then no command fails with "no tracker
/// reachable" while a tracker that serves is reachable. The README's
/// client switch bound times the trackers a round may try, plus margin.
pub const SWITCH_MS_MAX: u64 = 15_000;

#[derive(Clone, Debug, Default)]
pub struct RunOpts {
    pub print_trace: bool,
    /// Keep the hash after every trace line (determinism check).
    pub record: bool,
    /// Keep the text of trace lines in this range (determinism report).
    pub keep: Option<(u64, u64)>,
    pub bugs: Bugs,
}

#[derive(Clone, Debug, Default)]
pub struct RunStats {
    pub nodes: u64,
    pub sim_ms: u64,
    pub steps: u64,
    pub faults: BTreeMap<&'static str, u64>,
    pub acked: u64,
    pub commands: u64,
    pub downloads_ok: u64,
    pub downloads_failed: u64,
    pub pieces_written: u64,
    pub pieces_served: u64,
    pub conflicts: u64,
    pub divergences: u64,
    pub resubmitting: u64,
    pub diverged_lost: u64,
    pub duplicate_entries: u64,
    pub histories_lost: u64,
    pub resumed_pieces: u64,
    pub corrupt_reads: u64,
    pub bad_tickets: u64,
    pub trace_hash: u64,
    pub record: Option<Vec<u64>>,
    pub kept: Vec<String>,
}

#[derive(Debug)]
pub struct Failure {
    pub seed: u64,
    pub step: u64,
    pub at_ms: u64,
    pub what: String,
    pub tail: String,
    pub swarm: String,
    pub record: Option<Vec<u64>>,
    pub kept: Vec<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "seed {} failed at step {} (t={} ms):",
            self.seed, self.step, self.at_ms
        )?;
        writeln!(f, "  {}", self.what)?;
        writeln!(f, "swarm: {}", self.swarm)?;
        writeln!(f, "last trace lines:\n{}", self.tail)?;
        write!(
            f,
            "replay: SIM_SEED={} cargo test -p p2p-sim --test sim -- sim_seeds --nocapture \
             (add SIM_TRACE=1 for the full trace)",
            self.seed
        )
    }
}

/// Runs seed `seed` to the end.
pub fn run(seed: u64, opts: &RunOpts) -> Result<RunStats, Box<Failure>> {
    let mut swarm = Swarm::from_seed(seed);
    swarm.bugs = opts.bugs;
    run_swarm(&swarm, opts)
}

pub fn run_swarm(swarm: &Swarm, opts: &RunOpts) -> Result<RunStats, Box<Failure>> {
    let mut w = World::from_swarm(swarm, opts.print_trace);
    if opts.record {
        w.trace.record = Some(Vec::new());
    }
    w.trace.keep = opts.keep;
    let mut load = Workload::new(swarm);
    let mut faults = Faults::new(swarm, w.now);
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        drive(&mut w, &mut load, &mut faults, swarm)
    }));
    let what = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(what)) => Some(what),
        Err(panic) => Some(format!("panic: {}", panic_text(&panic))),
    };
    if let Some(what) = what {
        return Err(Box::new(Failure {
            seed: swarm.seed,
            step: w.steps,
            at_ms: w.now.0 - T0.0,
            what,
            tail: w.tail(),
            swarm: swarm.summary(),
            record: w.trace.record.take(),
            kept: std::mem::take(&mut w.trace.kept),
        }));
    }
    let c = &w.check.stats;
    Ok(RunStats {
        nodes: (swarm.trackers + swarm.clients) as u64,
        sim_ms: w.now.0 - T0.0,
        steps: w.steps,
        faults: faults.counts.clone(),
        acked: c.acked,
        commands: load.stats.commands,
        downloads_ok: load.stats.downloads_ok,
        downloads_failed: load.stats.downloads_failed,
        pieces_written: c.pieces_written,
        pieces_served: c.pieces_served,
        conflicts: c.conflicts,
        divergences: c.divergences,
        resubmitting: c.resubmitting,
        diverged_lost: w.check.diverged_lost,
        duplicate_entries: c.duplicate_entries,
        histories_lost: c.histories_lost,
        resumed_pieces: c.resumed_pieces,
        corrupt_reads: c.corrupt_reads,
        bad_tickets: c.tickets_refusable,
        trace_hash: w.trace.hash(),
        record: w.trace.record.take(),
        kept: std::mem::take(&mut w.trace.kept),
    })
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(no message)".into())
}

/// What happens next: the world, a user, or a fault.
#[derive(PartialEq, Eq)]
enum Next {
    World,
    Load,
    Fault,
    Probe,
}

fn next_event(w: &World, load: &Workload, faults: &Faults, probe: Instant) -> (Instant, Next) {
    let mut best = (probe, Next::Probe);
    for (t, n) in [
        (faults.next_at(), Next::Fault),
        (load.next_at(w), Next::Load),
        (w.next_at(), Next::World),
    ] {
        if let Some(t) = t
            && t <= best.0
        {
            best = (t, n);
        }
    }
    best
}

fn drive(w: &mut World, load: &mut Workload, faults: &mut Faults, s: &Swarm) -> Result<(), String> {
    w.run(2000);
    // Safety phase: the workload runs, faults come.
    let end = w.now + Duration(s.safety_ms);
    let mut probe = w.now + Duration(PROBE_MS);
    while !load.spent() {
        let (t, next) = next_event(w, load, faults, probe);
        if t > end {
            break;
        }
        one(w, load, faults, &mut probe, t, next)?;
    }
    // Quiet phase: heal, restart, and the system must settle.
    faults.heal_all(w);
    load.quiet = true;
    let end = w.now + Duration(s.quiet_ms);
    loop {
        let (t, next) = next_event(w, load, faults, probe);
        if t > end {
            return Err(format!(
                "liveness: not settled {} s after every fault healed: {}",
                s.quiet_ms / 1000,
                unsettled(w, load).unwrap_or_default()
            ));
        }
        let probing = next == Next::Probe;
        one(w, load, faults, &mut probe, t, next)?;
        if probing && unsettled(w, load).is_none() {
            break;
        }
    }
    let trackers: Vec<_> = w.trackers.iter().filter_map(|t| t.m()).collect();
    let hist = w
        .trackers
        .iter()
        .find(|t| t.m().is_some_and(|m| m.is_primary()))
        .and_then(|t| t.hist.as_deref());
    w.check.final_checks(&trackers, hist);
    violations(w)
}

fn one(
    w: &mut World,
    load: &mut Workload,
    faults: &mut Faults,
    probe: &mut Instant,
    t: Instant,
    next: Next,
) -> Result<(), String> {
    match next {
        Next::World => {
            w.step(t);
        }
        Next::Load => {
            w.advance(t);
            load.act(w);
        }
        Next::Fault => {
            w.advance(t);
            faults.fire(w);
        }
        Next::Probe => {
            w.advance(t);
            *probe = t + Duration(PROBE_MS);
            bounded(w)?;
            takeover(w, faults)?;
        }
    }
    switched(w, faults)?;
    load.collect(w);
    if w.steps > STEPS_MAX {
        return Err(format!("livelock: {STEPS_MAX} steps"));
    }
    violations(w)
}

fn violations(w: &mut World) -> Result<(), String> {
    match w.check.violations.is_empty() {
        true => Ok(()),
        false => Err(w.check.violations.join("\n  ")),
    }
}

/// Every queue and table a peer can grow stays under its cap.
fn bounded(w: &World) -> Result<(), String> {
    let worst = w.net.worst_in_flight();
    if worst > IN_FLIGHT_BYTES_MAX || w.net.queue_len() > QUEUE_LEN_MAX {
        return Err(format!(
            "unbounded: {worst} bytes in flight to one end, {} events queued",
            w.net.queue_len()
        ));
    }
    for (c, h) in w.clients.iter().enumerate() {
        let Some(m) = h.m() else { continue };
        // The client's own bookkeeping, its session's, seeder's and downloads'.
        m.check_invariants();
        let s = m.seeder();
        if m.session().in_flight() > PENDING_MAX
            || s.connections() > CONNS_MAX
            || s.reads_in_flight() > READS_MAX
        {
            return Err(format!(
                "unbounded: c{c} session {} in flight, seeder {} conns {} reads",
                m.session().in_flight(),
                s.connections(),
                s.reads_in_flight()
            ));
        }
    }
    for t in w.trackers.iter().filter_map(|t| t.m()) {
        t.check_invariants();
        if t.state().conflicts().count() > p2p_state::tracker::limits::CONFLICTS_MAX {
            return Err("unbounded: conflict log".into());
        }
    }
    Ok(())
}

/// Is tracker `i` serving: a primary, or following a live primary (in
/// its epoch) whose traffic reaches it? Why not, if not.
fn serving(w: &World, i: NodeIx) -> Result<(), String> {
    let Some(m) = w.trackers[i].m() else {
        return Err("is down".into());
    };
    if m.is_primary() {
        return Ok(());
    }
    let epoch = m.repl().epoch();
    let Some(p) = m.repl().primary() else {
        return Err("knows no primary".into());
    };
    let j = usize::from(p.0) - 1;
    let why = match w.trackers.get(j).and_then(|t| t.m()) {
        None => "which is down",
        Some(pm) if !pm.is_primary() || pm.repl().epoch() != epoch => {
            "which is not primary in that epoch"
        }
        Some(_) if !w.net.passes(Host::Tracker(j), Host::Tracker(i)) => {
            "whose traffic does not reach it"
        }
        Some(_) => return Ok(()),
    };
    Err(format!("follows t{} in epoch {epoch:#x}, {why}", j + 1))
}

/// Nobody follows a dead or silent primary for long (issue 17).
fn takeover(w: &World, faults: &Faults) -> Result<(), String> {
    let since = w.now.0.saturating_sub(faults.trackers_changed);
    if since < TAKEOVER_MS_MAX {
        return Ok(());
    }
    for i in 0..w.trackers.len() {
        if w.trackers[i].m().is_none() {
            continue;
        }
        if let Err(why) = serving(w, i) {
            return Err(format!(
                "liveness: t{} {why}, {} ms after the last fault that changed what trackers \
                 reach (bound {TAKEOVER_MS_MAX} ms)",
                i + 1,
                since
            ));
        }
    }
    Ok(())
}

/// No command fails with "no tracker reachable" while a serving tracker
/// is reachable and no fault touched the client or the trackers for long.
fn switched(w: &World, faults: &Faults) -> Result<(), String> {
    for (c, h) in w.clients.iter().enumerate() {
        for (tag, r) in &h.done {
            if !matches!(r, Err(ClientError::NoTracker { .. })) {
                continue;
            }
            let since = w.now.0.saturating_sub(faults.changed_for(c));
            if since < SWITCH_MS_MAX {
                continue;
            }
            let up = (0..w.trackers.len()).find(|&j| {
                let reads = w.trackers[j]
                    .m()
                    .is_some_and(|m| m.repl().can_serve_reads());
                reads && serving(w, j).is_ok() && w.net.reachable(Host::Client(c), Host::Tracker(j))
            });
            if let Some(j) = up {
                return Err(format!(
                    "liveness: c{c} command #{tag} failed with \"no tracker reachable\" while t{} \
                     served and was reachable, {since} ms after the last fault that touched \
                     it or the trackers (bound {SWITCH_MS_MAX} ms)",
                    j + 1
                ));
            }
        }
    }
    Ok(())
}

/// Why the system has not settled yet (`None` once it has).
fn unsettled(w: &World, load: &Workload) -> Option<String> {
    if !load.idle(w) {
        return Some(format!("users still waiting: {:?}", load.waiting()));
    }
    let ts: Vec<_> = w.trackers.iter().filter_map(|t| t.m()).collect();
    let primaries = ts
        .iter()
        .filter(|t| t.repl().role() == Role::Primary)
        .count();
    let last = ts[0].repl().last();
    let synced = ts.iter().all(|t| {
        t.repl().last() == last && t.repl().applied() == last.index && t.repl().can_serve_reads()
    });
    if primaries != 1 || !synced {
        let st: Vec<_> = ts.iter().map(|t| t.repl().status()).collect();
        return Some(format!("trackers not in sync: {st:?}"));
    }
    if let Some(t) = ts.iter().find(|t| t.repl().resubmit_pending() > 0) {
        return Some(format!(
            "t{} still re-submitting {} divergent ops",
            t.id(),
            t.repl().resubmit_pending()
        ));
    }
    for (c, h) in w.clients.iter().enumerate() {
        let Some(m) = h.m() else { continue };
        let (ended, _) = m.downloads_ended();
        if !ended {
            let lines: Vec<_> = m
                .download_lines(w.cnow(c))
                .into_iter()
                .filter(|l| l.state() == DownloadMark::Downloading)
                .map(|l| format!("{}/{} {:?}", l.group, l.file, l.progress))
                .collect();
            return Some(format!("c{c} downloads still running: {lines:?}"));
        }
        if m.session().in_flight() > 0 {
            return Some(format!("c{c} has commands in flight"));
        }
    }
    None
}
