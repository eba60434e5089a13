//! Issue 16 §6: download rate limits over simulated time, in the world of
//! `harness.rs` (which grants requests from a global bucket as the client
//! node does). Tolerance: over any span from the start, bytes received
//! stay within `rate × span` plus one burst ([`RATE_BURST`]) and one piece
//! per bucket, and a limited download takes about `size / rate`.

use super::harness::{Scenario, T0, World};
use super::{DownloadState, WaitingReason};
use crate::rate::RATE_BURST;
use crate::time::{Duration, Instant};

const PIECE: u32 = 16 * 1024;
const FILE: usize = 2 << 20;
const STEPS_MAX: u64 = 500_000;

/// Bytes a limit of `rate` lets through by `now`: the tolerance above.
fn bound(rate: u64, now: Instant) -> u64 {
    let ms = now.saturating_since(T0).as_millis() + RATE_BURST.as_millis();
    rate * ms / 1000 + u64::from(PIECE)
}

/// Runs to the end, checking after every step that what arrived from
/// each seeder (`per_peer`) or in all (`global`) stays within the bound.
fn run_checked(w: &mut World, global: Option<u64>, per_peer: Option<u64>) -> Duration {
    while w.result.is_none() && w.steps < STEPS_MAX && w.step() {
        if let Some(r) = global {
            let got = w.download.stats().bytes_received;
            assert!(got <= bound(r, w.now), "{got} B by {:?}", w.now);
        }
        if let Some(r) = per_peer {
            for (i, pieces) in w.served().into_iter().enumerate() {
                let got = pieces * u64::from(PIECE);
                assert!(got <= bound(r, w.now), "seeder {i}: {got} B by {:?}", w.now);
            }
        }
    }
    assert_eq!(w.result, Some(Ok(())));
    w.now.saturating_since(T0)
}

fn secs(d: Duration) -> f64 {
    d.as_millis() as f64 / 1000.0
}

/// Unlimited, the same scenario takes well under a second.
#[test]
fn unlimited_the_scenario_is_fast() {
    let mut w = World::new(Scenario::new(7, FILE, PIECE, 2));
    let took = run_checked(&mut w, None, None);
    assert!(took < Duration::from_secs(1), "{} s", secs(took));
}

/// A global limit of R (256 KiB/s) holds at every step and a 2 MiB
/// download takes 8 s, within one second's burst.
#[test]
fn a_global_download_limit_holds_over_time() {
    const RATE: u64 = 256 * 1024;
    let mut sc = Scenario::new(7, FILE, PIECE, 2);
    sc.cfg.max_rate = Some(RATE);
    let mut w = World::new(sc);
    let took = run_checked(&mut w, Some(RATE), None);
    let ideal = FILE as f64 / RATE as f64;
    assert!(
        secs(took) >= ideal - 1.1 && secs(took) <= ideal + 0.5,
        "{} s for {ideal} s of data",
        secs(took)
    );
}

/// A per-peer limit of R holds for each of two seeders, and together
/// they deliver about 2R.
#[test]
fn a_per_peer_download_limit_holds_for_each_of_two_peers() {
    const RATE: u64 = 128 * 1024;
    let mut sc = Scenario::new(8, FILE, PIECE, 2);
    sc.cfg.max_rate_per_peer = Some(RATE);
    let mut w = World::new(sc);
    let took = run_checked(&mut w, None, Some(RATE));
    let ideal = FILE as f64 / (2 * RATE) as f64;
    assert!(
        secs(took) >= ideal - 1.1 && secs(took) <= ideal + 1.0,
        "{} s for {ideal} s of data at 2 x {RATE} B/s",
        secs(took)
    );
    let served = w.served();
    assert!(served.iter().all(|&n| n > 0), "both used: {served:?}");
}

/// Lifting the limits (`set_rate down off`) fills the window at once and
/// the rest comes at full speed.
#[test]
fn off_restores_the_full_window() {
    const RATE: u64 = 64 * 1024;
    let mut sc = Scenario::new(9, FILE, PIECE, 2);
    sc.cfg.max_rate = Some(RATE);
    sc.cfg.max_rate_per_peer = Some(RATE);
    let mut w = World::new(sc);
    let limit_end = T0 + Duration::from_secs(3);
    // A full bucket (one second: 4 pieces) may go at once, then one at
    // a time.
    let burst = (RATE * RATE_BURST.as_millis() / 1000 / u64::from(PIECE)) as usize;
    while w.now < limit_end && w.step() {
        assert!(w.download.in_flight() <= burst + 1, "held to the limit");
    }
    let got = w.download.stats().bytes_received;
    assert!(got <= bound(RATE, w.now), "{got} B");
    assert_eq!(w.download.progress(w.now).state, DownloadState::Downloading);
    w.set_rates(None, None);
    let window = w.download.in_flight();
    assert!(window >= 8, "lifted: {window} requests in flight");
    let lifted = w.now;
    w.run(STEPS_MAX);
    assert_eq!(w.result, Some(Ok(())));
    let rest = w.now.saturating_since(lifted);
    assert!(rest < Duration::from_secs(1), "{} s after off", secs(rest));
}

/// A limit far below one piece per `no_peer_timeout` is waiting, not a
/// stall, and says so.
#[test]
fn waiting_on_a_limit_is_not_a_stall() {
    const RATE: u64 = 1024; // a 16 KiB piece every 16 s
    let mut sc = Scenario::new(10, 3 * PIECE as usize, PIECE, 1);
    sc.cfg.max_rate = Some(RATE);
    sc.cfg.no_peer_timeout = Duration::from_secs(2);
    let mut w = World::new(sc);
    let mut saw_reason = false;
    while w.result.is_none() && w.steps < STEPS_MAX && w.step() {
        saw_reason |= w.download.waiting_reason(w.now) == Some(WaitingReason::RateLimited);
    }
    assert_eq!(w.result, Some(Ok(())));
    assert!(saw_reason, "show_downloads says why it waits");
    assert!(w.now.saturating_since(T0) >= Duration::from_secs(30));
}
