//! The driver's clock: milliseconds since the Unix epoch that never go
//! backwards.
//!
//! Machines take `now` as a [`p2p_state::Instant`]. Tickets compare times
//! across hosts, so the epoch is the Unix epoch; but a wall clock can jump,
//! so the clock reads the wall time once at start and adds the monotonic
//! time elapsed since then.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use p2p_state::Instant;

/// What a driver core reads the time from: the [`Clock`] in the
/// runtimes, a simulated clock in the simulation (`sim/`), which drives
/// the same cores.
pub trait Now {
    /// Milliseconds since the Unix epoch, never going backwards.
    fn now(&self) -> Instant;
}

impl Now for Clock {
    fn now(&self) -> Instant {
        Clock::now(self)
    }
}

/// Wall time at start plus monotonic time since.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start_wall_ms: u64,
    start: std::time::Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    /// A clock whose epoch is the Unix epoch, read now.
    pub fn new() -> Self {
        let start_wall_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Clock {
            start_wall_ms,
            start: std::time::Instant::now(),
        }
    }

    /// Milliseconds since the Unix epoch (monotonic within this process).
    pub fn now(&self) -> Instant {
        Instant(self.start_wall_ms + self.start.elapsed().as_millis() as u64)
    }

    /// The monotonic instant at which this clock reads `deadline` (for
    /// timers that take one, such as `async_io::Timer::at`).
    pub fn instant(&self, deadline: Instant) -> std::time::Instant {
        let ms = deadline.0.saturating_sub(self.start_wall_ms);
        self.start + Duration::from_millis(ms)
    }

    /// How long from now until `deadline` (zero if it has passed).
    pub fn until(&self, deadline: Instant) -> Duration {
        Duration::from_millis(deadline.0.saturating_sub(self.now().0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_unix_millis_and_never_goes_back() {
        let c = Clock::new();
        let a = c.now();
        let b = c.now();
        assert!(b >= a);
        // Somewhere after 2020 and before 2200.
        assert!(a.0 > 1_577_836_800_000 && a.0 < 7_258_118_400_000);
        assert_eq!(c.until(Instant(0)), Duration::ZERO);
        assert!(c.until(a + p2p_state::Duration(50)) <= Duration::from_millis(50));
        let at = c.instant(a + p2p_state::Duration(50));
        assert!(at >= c.start && at <= std::time::Instant::now() + Duration::from_millis(50));
        assert_eq!(c.instant(Instant(0)), c.start);
    }
}
