//! A token bucket for user-set transfer rate limits (issue 16 §6), pure:
//! time is passed in.
//!
//! The bucket fills at `rate` bytes per second up to [`RATE_BURST`] worth
//! of it (at least one piece). A transfer of any size may start while the
//! bucket is not empty and takes its bytes at once, leaving the bucket in
//! debt: the next one waits until the debt is paid. So a 512 KiB piece
//! passes a 10 KiB/s limit (after 51 s of waiting for the next), and over
//! any span the bytes started are at most `rate × span` plus one burst
//! plus one transfer.

use crate::time::{Duration, Instant};

/// How much unused allowance a limit keeps: one second of its rate.
pub(crate) const RATE_BURST: Duration = Duration::from_secs(1);

/// One rate limit: `rate` bytes per second.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TokenBucket {
    /// Bytes per second (at least 1).
    rate: u64,
    /// Allowance in thousandths of a byte (bytes × ms / s); negative is
    /// debt. At most one burst.
    milli: i128,
    /// Refilled up to this time.
    at: Instant,
}

impl TokenBucket {
    /// A full bucket of `rate` bytes per second (0 is taken as 1).
    pub(crate) fn new(now: Instant, rate: u64) -> Self {
        let rate = rate.max(1);
        TokenBucket {
            rate,
            milli: Self::cap(rate),
            at: now,
        }
    }

    fn cap(rate: u64) -> i128 {
        i128::from(rate) * i128::from(RATE_BURST.as_millis())
    }

    fn refill(&mut self, now: Instant) {
        let ms = now.saturating_since(self.at).as_millis();
        self.at = self.at.max(now);
        let add = i128::from(self.rate) * i128::from(ms);
        self.milli = (self.milli + add).min(Self::cap(self.rate));
    }

    /// Whether a transfer may start at `now`.
    pub(crate) fn ready(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.milli > 0
    }

    /// Takes `bytes` (the bucket may go into debt).
    pub(crate) fn take(&mut self, now: Instant, bytes: u64) {
        self.refill(now);
        self.milli -= i128::from(bytes) * 1000;
    }

    /// When a transfer may start (now if it may already).
    pub(crate) fn ready_at(&self) -> Instant {
        if self.milli > 0 {
            return self.at;
        }
        // First ms at which milli + rate × ms > 0.
        let need = (-self.milli) / i128::from(self.rate) + 1;
        self.at + Duration(u64::try_from(need).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Instant = Instant(1_000_000);

    /// Transfers of `size` bytes started as soon as the bucket allows, over
    /// `span`: the bytes started.
    fn run(rate: u64, size: u64, span: Duration) -> u64 {
        let mut b = TokenBucket::new(T0, rate);
        let mut now = T0;
        let mut sent = 0;
        while now < T0 + span {
            if b.ready(now) {
                b.take(now, size);
                sent += size;
            } else {
                now = b.ready_at();
            }
        }
        sent
    }

    /// A limit of R holds over 60 s within one burst and one transfer,
    /// for transfers small and large next to the rate.
    #[test]
    fn a_limit_holds_over_time_within_one_burst_and_one_transfer() {
        let span = Duration::from_secs(60);
        for (rate, size) in [
            (100_000, 1024),
            (100_000, 512 * 1024),
            (10_000_000, 512 * 1024),
        ] {
            let sent = run(rate, size, span);
            let ideal = rate * 60;
            let slack = rate + size;
            assert!(sent >= ideal, "{rate} B/s, {size} B: {sent} < {ideal}");
            assert!(
                sent <= ideal + slack,
                "{rate} B/s, {size} B: {sent} > {ideal} + {slack}"
            );
        }
    }

    #[test]
    fn a_transfer_waits_exactly_until_its_debt_is_paid() {
        let mut b = TokenBucket::new(T0, 1000);
        assert!(b.ready(T0));
        b.take(T0, 3000); // 1000 allowance, 2000 debt: 2 s to pay
        assert!(!b.ready(T0));
        assert_eq!(b.ready_at(), T0 + Duration(2001));
        assert!(!b.ready(T0 + Duration(2000)), "debt paid, nothing left");
        assert!(b.ready(T0 + Duration(2001)));
    }

    #[test]
    fn unused_allowance_is_kept_for_one_burst_only() {
        let mut b = TokenBucket::new(T0, 1000);
        let later = T0 + Duration::from_secs(3600);
        b.take(later, 1000);
        assert!(
            !b.ready(later),
            "an hour idle saves one second, not an hour"
        );
    }
}
