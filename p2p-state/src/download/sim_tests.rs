//! Whole downloads against real seeder machines in the in-memory world of
//! `harness.rs`: fault-free runs, lying, dropping, vanishing and refusing
//! peers, resume, disk failures, endgame, weighting, determinism, and a
//! proptest over random scenarios.

use proptest::prelude::*;

use p2p_proto::PieceSet;

use super::harness::{Faults, Scenario, SeederSpec, T0, World};
use super::{DownloadConfig, DownloadError, DownloadState, WaitingReason};
use crate::time::Duration;

/// Enough steps for any scenario here, including a 5-minute stall.
const STEPS_MAX: u64 = 500_000;

fn run(sc: Scenario) -> (World, Result<(), DownloadError>) {
    let mut w = World::new(sc);
    let r = w.run(STEPS_MAX).expect("the download finishes");
    (w, r)
}

/// The download ended well: the disk is the file, each piece written once,
/// and `Finished` was the last output (the file is never read back).
fn assert_complete(w: &World, r: &Result<(), DownloadError>, fetched: u32) {
    assert_eq!(r, &Ok(()));
    assert_eq!(w.download.state(), &DownloadState::Complete);
    assert!(w.disk() == &w.file()[..], "disk differs from the file");
    assert_eq!(w.record.writes.len() as u32, fetched);
    assert!(
        w.record.writes.values().all(|&n| n == 1),
        "{:?}",
        w.record.writes
    );
    let t = &w.record.trace;
    let done = t
        .iter()
        .position(|l| l.contains("Finished(Ok"))
        .expect("Finished");
    assert_eq!(done, t.len() - 1, "Finished is the last output");
    assert_eq!(w.record.requests_to_lacking, 0);
}

fn some(n: u32, f: impl Fn(u32) -> bool) -> PieceSet {
    let mut s = PieceSet::empty(n);
    (0..n).filter(|&i| f(i)).for_each(|i| {
        s.insert(i);
    });
    s
}

#[test]
fn fault_free_run_fetches_every_piece_exactly_once() {
    let sc = Scenario::new(1, 64 * 1024 + 100, 1024, 3);
    let (w, r) = run(sc);
    assert_complete(&w, &r, 65);
    assert_eq!(w.download.stats().pieces_accepted, 65);
    assert!(w.served().iter().sum::<u64>() >= 65);
    assert!(w.record.max_in_flight <= DownloadConfig::default().max_parallel);
    assert!(!w.record.announces.is_empty());
    assert_eq!(w.record.announces.last().unwrap().count(), 65);
}

#[test]
fn partial_seeders_are_asked_only_for_what_they_hold() {
    let mut sc = Scenario::new(2, 40 * 1024, 1024, 3);
    for (k, s) in sc.seeders.iter_mut().enumerate() {
        s.pieces = some(40, |i| i as usize % 3 != k);
    }
    let (w, r) = run(sc);
    assert_complete(&w, &r, 40);
}

#[test]
fn a_lying_seeder_is_banned_and_nothing_it_sent_is_written() {
    let mut sc = Scenario::new(3, 32 * 1024, 1024, 2);
    sc.seeders[0].faults.corrupt_every = Some(1);
    sc.seeders[0].bytes_per_ms = 50_000; // fast, so it gets asked a lot
    let (w, r) = run(sc);
    assert_complete(&w, &r, 32);
    let stats = w.download.stats();
    assert_eq!(stats.bad_pieces, 3, "banned at the third bad piece");
    assert!(
        w.record
            .disconnects
            .iter()
            .any(|(_, why)| why.contains("corrupt"))
    );
}

#[test]
fn only_lying_seeders_means_failure_with_a_reason() {
    let mut sc = Scenario::new(4, 8 * 1024, 1024, 2);
    sc.seeders
        .iter_mut()
        .for_each(|s| s.faults.corrupt_every = Some(1));
    let (w, r) = run(sc);
    let Err(DownloadError::Stalled { why, .. }) = &r else {
        panic!("{r:?}")
    };
    assert!(matches!(why, WaitingReason::PeersFailed { .. }), "{why}");
    assert!(r.unwrap_err().to_string().contains("corrupt pieces"));
    assert!(w.record.writes.is_empty());
}

#[test]
fn silent_and_vanishing_seeders_are_worked_around() {
    let mut sc = Scenario::new(5, 48 * 1024, 1024, 3);
    sc.seeders[0].faults.drop_pieces = true;
    sc.seeders[1].faults.close_after = Some(5);
    sc.cfg.endgame_dup_max = 1; // no endgame: only timeouts rescue seeder 0's pieces
    let (w, r) = run(sc);
    assert_complete(&w, &r, 48);
    assert!(w.download.stats().timeouts >= 3);
    assert!(
        w.record
            .disconnects
            .iter()
            .any(|(_, why)| why.contains("timed out"))
    );
}

#[test]
fn refusing_and_unreachable_seeders_fail_with_the_reason() {
    let mut sc = Scenario::new(6, 4 * 1024, 1024, 2);
    sc.seeders[0].faults.wrong_key = true;
    sc.seeders[1].faults.unreachable = true;
    let (w, r) = run(sc);
    let e = r.unwrap_err();
    assert!(matches!(e, DownloadError::Stalled { .. }), "{e}");
    assert!(w.record.tracker_asks.len() > 5, "kept asking the tracker");
    assert!(w.record.writes.is_empty());
}

#[test]
fn waits_for_a_seeder_to_appear_with_backoff() {
    let mut sc = Scenario::new(7, 8 * 1024, 1024, 1);
    sc.seeders[0].faults.appears_after = Some(Duration::from_secs(20));
    let mut w = World::new(sc);
    let asking = |w: &World| w.download.waiting_reason(w.now) == Some(WaitingReason::AskingTracker);
    while w.now < T0 + Duration::from_secs(10) || asking(&w) {
        w.step();
    }
    let why = w.download.waiting_reason(w.now).expect("waiting");
    assert!(
        why.to_string()
            .starts_with("no seeder online; asking the tracker again in"),
        "{why}"
    );
    let r = w.run(STEPS_MAX).unwrap();
    assert_complete(&w, &r, 8);
    let secs: Vec<u64> = w
        .record
        .tracker_asks
        .iter()
        .map(|t| t.saturating_since(T0).as_millis() / 1000)
        .collect();
    assert_eq!(
        &secs[..5],
        &[0, 1, 3, 7, 15],
        "exponential backoff: {secs:?}"
    );
    assert_eq!(secs[5], 31, "found at the ask after it appeared: {secs:?}");
}

#[test]
fn resume_fetches_only_missing_pieces() {
    let mut sc = Scenario::new(8, 30 * 1024, 1024, 2);
    sc.resume = (0..30).filter(|i| i % 3 != 0).collect();
    let (w, r) = run(sc);
    assert_complete(&w, &r, 10);
    assert!(w.record.writes.keys().all(|i| i % 3 == 0));
}

#[test]
fn disk_full_fails_with_the_reason() {
    let mut sc = Scenario::new(9, 16 * 1024, 1024, 2);
    sc.write_fail = Some(5);
    let (_, r) = run(sc);
    let e = r.unwrap_err();
    assert!(matches!(e, DownloadError::WriteFailed { index: 5, .. }));
    assert!(e.to_string().contains("No space left on device"), "{e}");
}

#[test]
fn endgame_duplicates_are_dropped_and_losers_cancelled() {
    // A fast and a very slow seeder: near the end the fast one is asked for
    // the slow one's pieces too.
    let mut sc = Scenario::new(11, 24 * 1024, 1024, 2);
    sc.seeders[0].bytes_per_ms = 20_000;
    sc.seeders[1].bytes_per_ms = 1;
    let (w, r) = run(sc);
    assert_complete(&w, &r, 24);
    let s = w.download.stats();
    assert!(s.requests > 24, "endgame asked twice: {s:?}");
    assert!(w.record.cancels_sent > 0, "losers cancelled");
}

#[test]
fn faster_seeders_serve_more() {
    let mut sc = Scenario::new(12, 200 * 1024, 1024, 2);
    sc.seeders[0].bytes_per_ms = 10_000;
    sc.seeders[1].bytes_per_ms = 500;
    let (w, r) = run(sc);
    assert_complete(&w, &r, 200);
    let served = w.served();
    assert!(served[0] > 3 * served[1], "{served:?}");
    assert_eq!(w.seeder(0).stats().served.pieces, served[0]);
}

#[test]
fn caps_hold_in_a_crowd() {
    let mut sc = Scenario::new(13, 100 * 1024, 1024, 6);
    sc.cfg.max_parallel = 4;
    sc.cfg.per_peer_max = 2;
    let (w, r) = run(sc);
    assert_complete(&w, &r, 100);
    assert!(w.record.max_in_flight <= 4 && w.record.max_peer_in_flight <= 2);
    assert_eq!(w.record.max_in_flight, 4, "the cap is reached");
}

#[test]
fn same_seed_same_outputs() {
    let mut sc = Scenario::new(14, 40 * 1024, 1024, 3);
    sc.seeders[1].faults.corrupt_every = Some(4);
    let (a, _) = run(sc.clone());
    let (b, _) = run(sc.clone());
    assert_eq!(a.record.trace, b.record.trace);
    sc.seed = 15;
    let (c, _) = run(sc);
    assert_ne!(a.record.trace, c.record.trace);
}

// ---------------------------------------------------------------- proptest

fn spec(pieces: u32) -> impl Strategy<Value = SeederSpec> {
    let faults = (
        prop::option::weighted(0.2, 1u32..4),
        prop::option::weighted(0.2, 1u32..10),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.1),
    )
        .prop_map(
            |(corrupt_every, close_after, drop_pieces, unreachable, wrong_key, impostor)| Faults {
                corrupt_every,
                close_after,
                drop_pieces,
                unreachable,
                wrong_key,
                appears_after: None,
                impostor,
            },
        );
    (
        prop::collection::vec(prop::bool::weighted(0.8), pieces as usize),
        1u64..50,
        1u64..5000,
        faults,
    )
        .prop_map(move |(held, latency_ms, bytes_per_ms, faults)| SeederSpec {
            pieces: some(pieces, |i| held[i as usize]),
            latency_ms,
            bytes_per_ms,
            faults,
        })
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (1u32..40, 0usize..1024, any::<u64>(), 1usize..16, 1usize..5)
        .prop_flat_map(|(pieces, tail, seed, max_parallel, per_peer)| {
            let len = (pieces as usize - 1) * 1024 + tail.max(1);
            (
                Just((len, seed, max_parallel, per_peer)),
                prop::collection::vec(spec(pieces), 1..5),
            )
        })
        .prop_map(|((len, seed, max_parallel, per_peer), seeders)| {
            let mut sc = Scenario::new(seed, len, 1024, 0);
            sc.seeders = seeders;
            sc.cfg.max_parallel = max_parallel;
            sc.cfg.per_peer_max = per_peer;
            sc
        })
}

/// Do the seeders without faults hold every piece between them?
fn honest_cover(sc: &Scenario) -> bool {
    let mut all = PieceSet::empty(sc.pieces());
    for s in &sc.seeders {
        let f = &s.faults;
        let bad = f.drop_pieces || f.unreachable || f.wrong_key || f.impostor;
        if f.corrupt_every.is_none() && !bad {
            all.union_with(&s.pieces);
        }
    }
    all.is_full()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the peers do, the download ends: with the exact file (each
    /// piece written once, only verified bytes: the harness checks every
    /// write) or with a reason; never asking a peer for a piece it lacks,
    /// never above the caps.
    #[test]
    fn every_piece_is_fetched_or_the_download_fails_with_a_reason(sc in scenario()) {
        let cfg = sc.cfg.clone();
        let pieces = sc.pieces();
        let honest_cover = honest_cover(&sc);
        let mut w = World::new(sc);
        let r = w.run(STEPS_MAX);
        prop_assert!(r.is_some(), "did not finish in {} steps", STEPS_MAX);
        prop_assert_eq!(w.record.requests_to_lacking, 0);
        prop_assert!(w.record.max_in_flight <= cfg.max_parallel);
        prop_assert!(w.record.max_peer_in_flight <= cfg.per_peer_max);
        prop_assert!(w.record.writes.values().all(|&n| n == 1));
        match r.unwrap() {
            Ok(()) => {
                prop_assert!(w.disk() == &w.file()[..]);
                prop_assert_eq!(w.record.writes.len() as u32, pieces);
            }
            Err(e) => {
                prop_assert!(!honest_cover, "honest seeders hold every piece, yet: {}", e);
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }
}
