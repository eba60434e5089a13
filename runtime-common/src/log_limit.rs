//! Log lines a remote peer can cause, rate-limited (issue 16): a flood of
//! refused connections or handshakes must not fill the log one line per
//! connection. Per [`REFUSALS_LOG_WINDOW`], the first
//! [`REFUSALS_LOGGED_PER_WINDOW`] are logged as they come; the rest are
//! counted, and the first one after the window ends is logged with a
//! summary of how many were left out. The caller passes the time in.

use std::time::{Duration, Instant};

/// Refusals logged one by one per window.
pub const REFUSALS_LOGGED_PER_WINDOW: u32 = 10;
/// The window over which [`REFUSALS_LOGGED_PER_WINDOW`] counts.
pub const REFUSALS_LOG_WINDOW: Duration = Duration::from_secs(10);

/// What to do with one more line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Log it; `suppressed` lines were left out before it (say so when
    /// not zero).
    Log { suppressed: u64 },
    /// Leave it out (it is counted).
    Skip,
}

/// One kind of line's rate limit.
#[derive(Debug, Default)]
pub struct LogLimit {
    window_start: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

impl LogLimit {
    /// Whether a line at `now` is logged.
    pub fn admit(&mut self, now: Instant) -> Admit {
        let fresh = self
            .window_start
            .is_none_or(|s| now.saturating_duration_since(s) >= REFUSALS_LOG_WINDOW);
        if fresh {
            self.window_start = Some(now);
            self.logged = 0;
        }
        if self.logged < REFUSALS_LOGGED_PER_WINDOW {
            self.logged += 1;
            let suppressed = std::mem::take(&mut self.suppressed);
            return Admit::Log { suppressed };
        }
        self.suppressed += 1;
        Admit::Skip
    }
}

/// `line`, with the count of lines left out before it when there were any.
pub fn with_suppressed(line: std::fmt::Arguments, suppressed: u64) -> String {
    match suppressed {
        0 => line.to_string(),
        n => format!(
            "{line} ({n} more like it in the last {} s were not logged one by one)",
            REFUSALS_LOG_WINDOW.as_secs()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_per_window_are_logged_then_a_count() {
        let t0 = Instant::now();
        let mut l = LogLimit::default();
        for _ in 0..REFUSALS_LOGGED_PER_WINDOW {
            assert_eq!(l.admit(t0), Admit::Log { suppressed: 0 });
        }
        // Just past the bound: left out, counted.
        assert_eq!(l.admit(t0), Admit::Skip);
        for _ in 0..99 {
            assert_eq!(l.admit(t0 + Duration::from_secs(5)), Admit::Skip);
        }
        let almost = t0 + REFUSALS_LOG_WINDOW - Duration::from_millis(1);
        assert_eq!(l.admit(almost), Admit::Skip);
        // The window over: logged again, with what was left out.
        let next = t0 + REFUSALS_LOG_WINDOW;
        assert_eq!(l.admit(next), Admit::Log { suppressed: 101 });
        assert_eq!(l.admit(next), Admit::Log { suppressed: 0 });
    }

    #[test]
    fn the_summary_says_how_many() {
        let line = with_suppressed(format_args!("refused"), 0);
        assert_eq!(line, "refused");
        let line = with_suppressed(format_args!("refused"), 7);
        assert!(line.starts_with("refused (7 more like it"), "{line}");
    }
}
