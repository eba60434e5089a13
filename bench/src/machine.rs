//! What the machine's cores did while a contender ran, from `/proc/stat`:
//! how many cores were busy on average, how busy the least busy one was,
//! and how long the host stole the cores for something else.
//!
//! On a shared VM a download is slow for one of three reasons, and the
//! figures beside its time tell which: its processes needed more CPU
//! seconds (their own counters, `Proc::cpu_secs`), or the machine gave
//! it fewer cores than it could use (a core left idle: `least` well under
//! 1 while the run's threads had work), or the host took the cores away
//! (`steal`). The p2p download keeps both cores of this project's VM busy
//! while curl and nginx use about 1.3, so a machine that lends one core
//! less, or slower ones, costs the p2p figure more than the baseline.

use std::time::Instant;

/// Ticks per second of `/proc/stat` (`USER_HZ`, 100 on every Linux ABI).
const TICKS_PER_S: f64 = 100.0;

/// The cores' counters at one moment.
#[derive(Clone, Debug)]
pub struct Snapshot {
    at: Instant,
    /// Per core: (busy ticks, steal ticks).
    cores: Vec<(u64, u64)>,
}

/// What the cores did between two snapshots.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cores {
    /// Cores busy on average over the span (user, nice, system, irq and
    /// softirq time, summed over the cores, divided by the span).
    pub busy: f64,
    /// The least busy core's busy share of the span (0 to 1).
    pub least: f64,
    /// Seconds the host ran something else on the cores, summed over them.
    pub steal: f64,
}

impl Snapshot {
    /// The counters now; `None` where `/proc/stat` cannot be read.
    pub fn now() -> Option<Snapshot> {
        let text = std::fs::read_to_string("/proc/stat").ok()?;
        Some(Snapshot {
            at: Instant::now(),
            cores: parse(&text)?,
        })
    }

    /// What the cores did from this snapshot until now.
    pub fn until_now(&self) -> Option<Cores> {
        self.until(&Snapshot::now()?)
    }

    /// What the cores did from this snapshot to `later`.
    fn until(&self, later: &Snapshot) -> Option<Cores> {
        let secs = later.at.duration_since(self.at).as_secs_f64();
        span(&self.cores, &later.cores, secs)
    }
}

/// Per core (`cpuN` lines, the total line skipped): busy and steal ticks.
fn parse(stat: &str) -> Option<Vec<(u64, u64)>> {
    let cores: Vec<(u64, u64)> = stat
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            // cpuN user nice system idle iowait irq softirq steal ...
            let f: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .map(|n| n.parse().unwrap_or(0))
                .collect();
            let at = |i: usize| f.get(i).copied().unwrap_or(0);
            (at(0) + at(1) + at(2) + at(5) + at(6), at(7))
        })
        .collect();
    (!cores.is_empty()).then_some(cores)
}

/// The cores' activity between counters `a` and `b`, `secs` apart.
fn span(a: &[(u64, u64)], b: &[(u64, u64)], secs: f64) -> Option<Cores> {
    if a.len() != b.len() || secs <= 0.0 {
        return None;
    }
    let per_core: Vec<(f64, f64)> = a
        .iter()
        .zip(b)
        .map(|(x, y)| {
            (
                y.0.saturating_sub(x.0) as f64 / TICKS_PER_S,
                y.1.saturating_sub(x.1) as f64 / TICKS_PER_S,
            )
        })
        .collect();
    let busy: f64 = per_core.iter().map(|c| c.0).sum();
    let least = per_core.iter().map(|c| c.0).fold(f64::INFINITY, f64::min);
    Some(Cores {
        busy: busy / secs,
        least: (least / secs).min(1.0),
        steal: per_core.iter().map(|c| c.1).sum(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "cpu  300 0 100 900 0 0 10 5 0 0\n\
                          cpu0 100 0 50 400 0 0 5 2 0 0\n\
                          cpu1 200 0 50 500 0 0 5 3 0 0\n\
                          intr 1 2 3\n";
    const AFTER: &str = "cpu  0 0 0 0 0 0 0 0 0 0\n\
                         cpu0 180 0 60 400 0 0 5 4 0 0\n\
                         cpu1 240 0 55 545 0 0 10 3 0 0\n";

    #[test]
    fn busy_least_and_steal_come_from_the_per_core_lines() {
        let a = parse(BEFORE).unwrap();
        let b = parse(AFTER).unwrap();
        assert_eq!(a, vec![(155, 2), (255, 3)]);
        // Core 0: 90 ticks busy, 2 stolen; core 1: 50 busy, 0 stolen; 1 s.
        let c = span(&a, &b, 1.0).unwrap();
        assert!((c.busy - 1.4).abs() < 1e-9, "{c:?}");
        assert!((c.least - 0.5).abs() < 1e-9, "{c:?}");
        assert!((c.steal - 0.02).abs() < 1e-9, "{c:?}");
        // Over 2 s, the same ticks are half as many cores.
        let c = span(&a, &b, 2.0).unwrap();
        assert!((c.busy - 0.7).abs() < 1e-9, "{c:?}");
    }

    #[test]
    fn mismatched_or_empty_counters_give_nothing() {
        let a = parse(BEFORE).unwrap();
        assert_eq!(span(&a, &a[..1], 1.0), None);
        assert_eq!(span(&a, &a, 0.0), None);
        assert_eq!(parse("intr 1 2\n"), None);
    }

    #[test]
    fn this_machine_has_readable_counters() {
        let s = Snapshot::now().expect("/proc/stat");
        assert!(!s.cores.is_empty());
        std::thread::sleep(std::time::Duration::from_millis(20));
        let c = s.until_now().expect("a span");
        let n = s.cores.len() as f64;
        assert!((0.0..=n + 0.5).contains(&c.busy), "{c:?} on {n} cores");
        assert!((0.0..=1.0).contains(&c.least), "{c:?}");
    }
}
