//! [`Deadline`]: one timer for a deadline that moves on every step of a
//! loop (a frame's, a write batch's, a machine's next timeout), armed
//! lazily.
//!
//! A fresh `Timer` per read costs a registration in async-io's reactor
//! and a wake-up of whichever thread runs it, thousands of times a second
//! during a download. Here the timer stays registered: a deadline that
//! moves later changes nothing until the timer fires at the earlier one,
//! finds the real deadline not yet due, and re-arms once; only a deadline
//! that moves earlier re-arms at once. So a loop whose deadline keeps
//! moving registers about once per deadline period, whatever its rate.

use std::future::Future;
use std::pin::pin;
use std::time::Instant;

use smol::Timer;
use smol::future::FutureExt;

/// A lazily re-armed timer (module doc). Owned by one loop.
#[derive(Debug)]
pub struct Deadline {
    timer: Timer,
    /// When `timer` fires, if it is armed (never later than the deadline
    /// last asked for).
    armed: Option<Instant>,
}

impl Default for Deadline {
    fn default() -> Self {
        Deadline {
            timer: Timer::never(),
            armed: None,
        }
    }
}

impl Deadline {
    /// Runs `fut` until it finishes (`Some` of its output) or until `at`
    /// passes first (`None`). With no `at`, `fut` runs to its end. A
    /// finished `fut` wins over a deadline that passed meanwhile.
    pub async fn run<F: Future>(&mut self, at: Option<Instant>, fut: F) -> Option<F::Output> {
        let Some(at) = at else {
            return Some(fut.await);
        };
        if self.armed.is_none_or(|armed| armed > at) {
            self.arm(at);
        }
        let fut = pin!(async { Some(fut.await) });
        let due = async {
            loop {
                (&mut self.timer).await;
                self.armed = None;
                if Instant::now() >= at {
                    return None;
                }
                // It fired at an earlier deadline that has since moved.
                self.arm(at);
            }
        };
        fut.or(due).await
    }

    fn arm(&mut self, at: Instant) {
        self.timer.set_at(at);
        self.armed = Some(at);
    }

    /// When the timer is armed to fire (for tests).
    #[cfg(test)]
    fn armed(&self) -> Option<Instant> {
        self.armed
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use smol::future;

    use super::*;

    #[test]
    fn a_finished_future_wins_and_the_timer_stays_armed() {
        let mut d = Deadline::default();
        let at = Instant::now() + Duration::from_secs(30);
        let r = smol::block_on(d.run(Some(at), async { 7 }));
        assert_eq!(r, Some(7));
        assert_eq!(d.armed(), Some(at));
    }

    #[test]
    fn a_later_deadline_keeps_the_earlier_arming_and_an_earlier_one_rearms() {
        let mut d = Deadline::default();
        let now = Instant::now();
        let first = now + Duration::from_secs(10);
        smol::block_on(d.run(Some(first), async {}));
        smol::block_on(d.run(Some(now + Duration::from_secs(20)), async {}));
        assert_eq!(d.armed(), Some(first), "moving later re-arms nothing");
        let earlier = now + Duration::from_secs(5);
        smol::block_on(d.run(Some(earlier), async {}));
        assert_eq!(d.armed(), Some(earlier), "moving earlier re-arms at once");
    }

    #[test]
    fn a_passed_deadline_ends_a_future_that_never_finishes() {
        let mut d = Deadline::default();
        let at = Instant::now() + Duration::from_millis(30);
        let started = Instant::now();
        let r = smol::block_on(d.run(Some(at), future::pending::<()>()));
        assert_eq!(r, None);
        assert!(Instant::now() >= at);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_timer_armed_early_fires_then_waits_for_the_real_deadline() {
        let mut d = Deadline::default();
        let now = Instant::now();
        // Armed for 20 ms from now...
        smol::block_on(d.run(Some(now + Duration::from_millis(20)), async {}));
        // ...then the deadline moves to 120 ms: the early firing must not
        // end the wait.
        let at = now + Duration::from_millis(120);
        let r = smol::block_on(d.run(Some(at), future::pending::<()>()));
        assert_eq!(r, None);
        assert!(Instant::now() >= at, "ended before the real deadline");
        assert_eq!(d.armed(), None, "a fired timer is disarmed");
    }

    #[test]
    fn no_deadline_runs_the_future_to_its_end() {
        let mut d = Deadline::default();
        let r = smol::block_on(d.run(None, async {
            Timer::after(Duration::from_millis(10)).await;
            3
        }));
        assert_eq!(r, Some(3));
        assert_eq!(d.armed(), None);
    }
}
