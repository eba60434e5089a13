//! The deterministic simulation of the whole system (issue 7): real tracker
//! and client machines from p2p-state, each in runtime-common's driver
//! core, on a simulated network, disk and clock, with faults, all
//! from one seed, and checkers outside the machines.
//!
//! - `sim_seeds`: the batch. By default a fixed range of seeds (the CI
//!   batch) plus a few random ones, printed. `SIM_SEED=<n>` replays seed n;
//!   `SIM_SEEDS=<count>` runs count seeds from `SIM_SEED` (or from a random
//!   seed, printed). `SIM_TRACE=1` prints every trace line;
//!   `SIM_CHECK_DETERMINISM=1` runs each seed twice and compares traces.
//!   The seeds are spread over one thread per core (`SIM_THREADS=<n>`).
//!   See the figures with `-- --nocapture`.
//! - `sim_regressions`: every seed in `seeds.txt`.
//! - `teeth_*`: bugs planted behind test switches must be caught.
//! - the rest: hand-written scenarios (`scenarios.rs`).
//!
//! Files: `swarm.rs` (seed -> scenario), `world.rs`, `world_tracker.rs`
//! (runtime-common's tracker core over `sim_io.rs`), `world_client.rs`
//! (runtime-common's client core over `sim_client_io.rs`), `net.rs`, `faults.rs`, `workload.rs`, `check.rs`,
//! `run.rs` (phases of one run), `trace.rs`.

#[macro_use]
mod trace;
mod check;
mod check_identity;
mod faults;
mod net;
mod rogue_tracker;
mod run;
mod scenarios;
mod sim_client_io;
mod sim_io;
mod swarm;
mod workload;
mod world;
mod world_client;
mod world_identity;
mod world_tracker;

use std::collections::BTreeMap;

use run::{Failure, RunOpts, RunStats, run};
use swarm::Bugs;

/// Seeds the CI batch runs. Measured on the 2-core dev machine under
/// `cargo test` (test profile): about 10.5 ms of CPU a seed, so 10000 seeds
/// take about 105 s of CPU, spread over the cores (fresh-clone CI, 2 cores:
/// 239 s on one thread with the machine busy).
const CI_SEEDS: u64 = 10_000;
/// Random seeds added to the CI batch (printed, so a failure replays).
const RANDOM_SEEDS: u64 = 3;
/// Failures reported in full before the rest are only listed.
const FAILURES_SHOWN: usize = 3;

struct Env {
    seed: Option<u64>,
    seeds: Option<u64>,
    trace: bool,
    determinism: bool,
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number")),
    )
}

impl Env {
    fn read() -> Self {
        let flag = |n: &str| std::env::var(n).is_ok_and(|v| v == "1");
        Env {
            seed: env_u64("SIM_SEED"),
            seeds: env_u64("SIM_SEEDS"),
            trace: flag("SIM_TRACE"),
            determinism: flag("SIM_CHECK_DETERMINISM"),
        }
    }
}

/// The harness's own wall clock (the simulated world never sees it).
#[allow(clippy::disallowed_methods, clippy::disallowed_types)]
fn wall() -> std::time::Instant {
    std::time::Instant::now()
}

/// A seed nobody chose (the harness's, never the world's).
#[allow(clippy::disallowed_methods, clippy::disallowed_types)]
fn random_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    swarm::child_seed(t, std::process::id())
}

#[derive(Default)]
struct Totals {
    seeds: u64,
    sim_ms: u64,
    peer_ms: u64,
    steps: u64,
    acked: u64,
    commands: u64,
    downloads_ok: u64,
    downloads_failed: u64,
    pieces_written: u64,
    pieces_served: u64,
    conflicts: u64,
    divergences: u64,
    resubmitting: u64,
    diverged_lost: u64,
    duplicate_entries: u64,
    histories_lost: u64,
    resumed_pieces: u64,
    corrupt_reads: u64,
    bad_tickets: u64,
    faults: BTreeMap<&'static str, u64>,
}

impl Totals {
    fn add(&mut self, r: &RunStats) {
        self.seeds += 1;
        self.sim_ms += r.sim_ms;
        self.peer_ms += r.sim_ms * r.nodes;
        self.steps += r.steps;
        self.acked += r.acked;
        self.commands += r.commands;
        self.downloads_ok += r.downloads_ok;
        self.downloads_failed += r.downloads_failed;
        self.pieces_written += r.pieces_written;
        self.pieces_served += r.pieces_served;
        self.conflicts += r.conflicts;
        self.divergences += r.divergences;
        self.resubmitting += r.resubmitting;
        self.diverged_lost += r.diverged_lost;
        self.duplicate_entries += r.duplicate_entries;
        self.histories_lost += r.histories_lost;
        self.resumed_pieces += r.resumed_pieces;
        self.corrupt_reads += r.corrupt_reads;
        self.bad_tickets += r.bad_tickets;
        for (k, v) in &r.faults {
            *self.faults.entry(k).or_default() += v;
        }
    }

    fn print(&self, wall_s: f64, failed: usize) {
        let wall_s = wall_s.max(1e-6);
        println!("---- simulation figures ----");
        println!("seeds run:            {} ({failed} failed)", self.seeds);
        println!("simulated seconds:    {:.0}", self.sim_ms as f64 / 1000.0);
        println!("simulated peer-secs:  {:.0}", self.peer_ms as f64 / 1000.0);
        println!("wall seconds:         {wall_s:.2}");
        println!("events per second:    {:.0}", self.steps as f64 / wall_s);
        println!(
            "peer-secs per wall s: {:.0}",
            self.peer_ms as f64 / 1000.0 / wall_s
        );
        println!(
            "commands {} (acked writes {}), downloads ok {} failed {}, pieces written {} served {}, conflicts {}",
            self.commands,
            self.acked,
            self.downloads_ok,
            self.downloads_failed,
            self.pieces_written,
            self.pieces_served,
            self.conflicts
        );
        println!(
            "pieces resumed from part files {}, corrupt pieces served {}, forged or stale tickets shown {}",
            self.resumed_pieces, self.corrupt_reads, self.bad_tickets
        );
        println!(
            "log entries repeating a request {}, histories the world could not follow {}",
            self.duplicate_entries, self.histories_lost
        );
        println!(
            "divergent logs {}, client ops re-submitted {}, divergent entries already compacted on the joiner {}",
            self.divergences, self.resubmitting, self.diverged_lost
        );
        println!("faults injected by kind: {:?}", self.faults);
    }
}

/// Runs every seed, spread over the harness's threads (`SIM_THREADS`,
/// default one per core; one when tracing, so the lines do not mix), and
/// returns the outcomes in the order of `seeds`. Each seed is its own
/// world, so the threads share nothing and each outcome is the same as a
/// run alone.
#[allow(clippy::disallowed_methods)] // the harness's threads, never the world's
fn run_all(seeds: &[u64], env: &Env) -> Vec<(u64, Result<RunStats, Box<Failure>>)> {
    let threads = if env.trace {
        1
    } else {
        env_u64("SIM_THREADS")
            .map(|n| n.max(1) as usize)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
    .min(seeds.len().max(1));
    let one = |seed: u64| {
        let opts = RunOpts {
            print_trace: env.trace,
            record: env.determinism,
            ..RunOpts::default()
        };
        let outcome = run(seed, &opts);
        if env.determinism
            && let Ok(r) = &outcome
        {
            determinism(seed, r);
        }
        outcome
    };
    let mut done: Vec<(usize, u64, Result<RunStats, Box<Failure>>)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (t..seeds.len())
                        .step_by(threads)
                        .map(|i| (i, seeds[i], one(seeds[i])))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    done.sort_by_key(|(i, _, _)| *i);
    done.into_iter().map(|(_, seed, o)| (seed, o)).collect()
}

/// Runs `seeds`; prints failures and the figures; panics if any failed.
fn batch(seeds: &[u64], env: &Env, label: &str) {
    let start = wall();
    let mut totals = Totals::default();
    let mut failures: Vec<Box<Failure>> = Vec::new();
    for (seed, outcome) in run_all(seeds, env) {
        match outcome {
            Ok(r) => {
                if seeds.len() == 1 {
                    println!("swarm: {}", swarm::Swarm::from_seed(seed).summary());
                    println!(
                        "seed {seed}: trace hash {:016x}, {} s simulated",
                        r.trace_hash,
                        r.sim_ms / 1000
                    );
                }
                totals.add(&r);
            }
            Err(f) => {
                if failures.len() < FAILURES_SHOWN {
                    eprintln!("\n==== SIMULATION FAILURE ({label}) ====\n{f}\n");
                }
                failures.push(f);
            }
        }
    }
    totals.print(start.elapsed().as_secs_f64(), failures.len());
    if !failures.is_empty() {
        let list: Vec<String> = failures
            .iter()
            .map(|f| format!("{} ({})", f.seed, f.what.lines().next().unwrap_or("")))
            .collect();
        panic!(
            "{} of {} seeds failed ({label}):\n  {}",
            failures.len(),
            seeds.len(),
            list.join("\n  ")
        );
    }
}

/// Runs `seed` again and compares every trace line's hash with `first`;
/// on a difference, shows both runs' lines around the first one.
fn determinism(seed: u64, first: &RunStats) {
    let opts = RunOpts {
        record: true,
        ..RunOpts::default()
    };
    let second = |opts: &RunOpts| match run(seed, opts) {
        Ok(r) => (r.record.unwrap_or_default(), r.kept),
        Err(f) => (f.record.unwrap_or_default(), f.kept),
    };
    let a = first.record.clone().unwrap_or_default();
    let (b, _) = second(&opts);
    let Some(i) = (0..a.len().min(b.len())).find(|&i| a[i] != b[i]).or(
        // One run is a prefix of the other.
        (a.len() != b.len()).then_some(a.len().min(b.len())),
    ) else {
        return;
    };
    let keep = RunOpts {
        keep: Some((i.saturating_sub(5) as u64 + 1, i as u64 + 1)),
        ..RunOpts::default()
    };
    let (_, one) = second(&keep);
    let (_, two) = second(&keep);
    panic!(
        "seed {seed} is not deterministic: trace line {} differs between two runs; the lines before it in two more runs:\n{}\n----\n{}",
        i + 1,
        one.join("\n"),
        two.join("\n")
    );
}

#[test]
fn sim_seeds() {
    let env = Env::read();
    let seeds: Vec<u64> = match (env.seed, env.seeds) {
        (Some(s), n) => (s..s.saturating_add(n.unwrap_or(1))).collect(),
        (None, Some(n)) => {
            let s = random_seed();
            println!("SIM_SEEDS={n} from random seed {s}");
            (s..s.saturating_add(n)).collect()
        }
        (None, None) => {
            let extra: Vec<u64> = (0..RANDOM_SEEDS)
                .map(|k| swarm::child_seed(random_seed(), k as u32))
                .collect();
            println!("random seeds this run: {extra:?}");
            (0..CI_SEEDS).chain(extra).collect()
        }
    };
    batch(&seeds, &env, "sim_seeds");
}

/// Seeds that once failed, always re-run.
#[test]
fn sim_regressions() {
    let text = include_str!("seeds.txt");
    let seeds: Vec<u64> = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.parse()
                .unwrap_or_else(|_| panic!("seeds.txt: bad line {l}"))
        })
        .collect();
    let env = Env::read();
    batch(&seeds, &env, "sim_regressions");
}

/// The same seed twice gives the same trace, line for line.
#[test]
fn sim_is_deterministic() {
    for seed in [1, 2] {
        let opts = RunOpts {
            record: true,
            ..RunOpts::default()
        };
        let first = run(seed, &opts).unwrap_or_else(|f| panic!("{f}"));
        determinism(seed, &first);
    }
}

// ---------------------------------------------------------------- teeth

/// Runs seeds from 0 with `bugs` planted until one fails with a message
/// containing one of `expect`; returns that seed. With `SIM_TEETH_RATE=1`
/// it runs all `within` seeds and prints how many catch the bug.
fn catch(bugs: Bugs, within: u64, expect: &[&str]) -> u64 {
    let rate = std::env::var("SIM_TEETH_RATE").is_ok_and(|v| v == "1");
    let (mut first, mut caught) = (None, 0);
    for seed in 0..within {
        let opts = RunOpts {
            bugs,
            ..RunOpts::default()
        };
        if let Err(f) = run(seed, &opts) {
            assert!(
                expect.iter().any(|e| f.what.contains(e)),
                "planted bug {bugs:?}: seed {seed} failed, but not as expected:\n{f}"
            );
            if first.is_none() {
                println!("planted bug {bugs:?} caught at seed {seed}: {}", f.what);
            }
            first = first.or(Some(seed));
            caught += 1;
            if !rate {
                break;
            }
        }
    }
    if rate {
        println!("planted bug {bugs:?}: caught by {caught} of {within} seeds");
    }
    first.unwrap_or_else(|| panic!("planted bug {bugs:?} not caught within {within} seeds"))
}

#[test]
fn teeth_follower_skips_one_op_in_a_hundred() {
    let bugs = Bugs {
        follower_skips_op: true,
        ..Bugs::default()
    };
    catch(
        bugs,
        40,
        &[
            "trackers diverge",
            "replaying",
            "acknowledged writes lost",
            "invariant",
        ],
    );
}

#[test]
fn teeth_scheduler_writes_unverified_pieces() {
    let bugs = Bugs {
        scheduler_skips_verify: true,
        ..Bugs::default()
    };
    catch(bugs, 100, &["bad hash"]);
}

#[test]
fn teeth_tracker_skips_key_check() {
    let bugs = Bugs {
        tracker_skips_key_check: true,
        ..Bugs::default()
    };
    catch(bugs, 100, &["rogue tracker changed"]);
}

#[test]
fn teeth_seeder_skips_the_key_check() {
    let bugs = Bugs {
        seeder_skips_key_check: true,
        ..Bugs::default()
    };
    catch(bugs, 100, &["not its ticket's downloader key"]);
}

#[test]
fn teeth_seeder_ignores_tickets() {
    let bugs = Bugs {
        seeder_ignores_tickets: true,
        ..Bugs::default()
    };
    // Either checker may see it first: a piece served on a ticket that
    // does not verify, or on a connection whose key is not the ticket's.
    catch(
        bugs,
        100,
        &["does not verify", "is not its ticket's downloader key"],
    );
}
