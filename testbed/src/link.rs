//! One direction of a host's link: a rate (serialization), a queue bound,
//! a one-way delay, random loss and a black-hole switch. Pure: time is
//! passed in, randomness comes from the caller's [`Rng`].

use std::time::{Duration, Instant};

/// Settings of one direction of a link.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkParams {
    /// Bits per second; 0 means unlimited (no serialization, no queue).
    pub rate_bps: u64,
    /// One-way propagation delay added after serialization.
    pub delay: Duration,
    /// Probability that a frame is lost, in parts per million.
    pub loss_ppm: u32,
    /// Most transmit time a frame may wait behind others before it is
    /// dropped (tail drop), as a router's buffer would.
    pub queue: Duration,
    /// Every frame is silently dropped (a pulled cable, a dead host):
    /// nothing is closed, nothing is answered.
    pub blackhole: bool,
}

impl Default for LinkParams {
    fn default() -> Self {
        LinkParams {
            rate_bps: 0,
            delay: Duration::ZERO,
            loss_ppm: 0,
            queue: Duration::from_millis(DEFAULT_QUEUE_MS),
            blackhole: false,
        }
    }
}

/// Default queue bound: 100 ms of transmit time (1.25 MB at 100 Mbit/s,
/// one bandwidth-delay product of a 100 ms round trip).
pub const DEFAULT_QUEUE_MS: u64 = 100;

/// What happened to a frame offered to a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// It arrives at the far end at this time.
    Arrives(Instant),
    /// Dropped: the link is black-holed.
    Blackholed,
    /// Dropped: the queue was full.
    QueueFull,
    /// Dropped: random loss (after taking its share of the link).
    Lost,
}

/// Counters of one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub frames: u64,
    pub bytes: u64,
    pub blackholed: u64,
    pub queue_full: u64,
    pub lost: u64,
}

/// One direction of a link.
#[derive(Clone, Debug)]
pub struct Link {
    pub params: LinkParams,
    /// When the link finishes sending what is queued.
    busy_until: Option<Instant>,
    pub stats: LinkStats,
}

impl Link {
    pub fn new(params: LinkParams) -> Link {
        Link {
            params,
            busy_until: None,
            stats: LinkStats::default(),
        }
    }

    /// Offers a frame of `len` bytes at `now`.
    pub fn offer(&mut self, now: Instant, len: usize, rng: &mut Rng) -> Fate {
        let p = self.params;
        if p.blackhole {
            self.stats.blackholed += 1;
            return Fate::Blackholed;
        }
        let sent = if p.rate_bps == 0 {
            now
        } else {
            let start = self.busy_until.map_or(now, |b| b.max(now));
            if start - now > p.queue {
                self.stats.queue_full += 1;
                return Fate::QueueFull;
            }
            let nanos = (len as u128 * 8 * 1_000_000_000) / u128::from(p.rate_bps);
            let end = start + Duration::from_nanos(nanos as u64);
            self.busy_until = Some(end);
            end
        };
        if p.loss_ppm > 0 && rng.below(1_000_000) < u64::from(p.loss_ppm) {
            self.stats.lost += 1;
            return Fate::Lost;
        }
        self.stats.frames += 1;
        self.stats.bytes += len as u64;
        Fate::Arrives(sent + p.delay)
    }
}

/// xorshift64*: small, seeded, good enough to pick lost frames.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-enough in `0..n` (n small against 2^64).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn rate_serializes_and_delay_adds() {
        let t0 = Instant::now();
        let mut l = Link::new(LinkParams {
            rate_bps: 8_000_000, // 1 byte per microsecond
            delay: ms(20),
            ..LinkParams::default()
        });
        let mut rng = Rng::new(1);
        // 1000 bytes take 1 ms; the second frame waits for the first.
        assert_eq!(l.offer(t0, 1000, &mut rng), Fate::Arrives(t0 + ms(21)));
        assert_eq!(l.offer(t0, 1000, &mut rng), Fate::Arrives(t0 + ms(22)));
        // An idle link starts at once.
        assert_eq!(
            l.offer(t0 + ms(100), 1000, &mut rng),
            Fate::Arrives(t0 + ms(121))
        );
    }

    #[test]
    fn queue_bound_drops_the_tail_exactly_past_it() {
        let t0 = Instant::now();
        let mut l = Link::new(LinkParams {
            rate_bps: 8_000_000,
            queue: ms(3),
            ..LinkParams::default()
        });
        let mut rng = Rng::new(1);
        // Frames start at 0, 1, 2, 3 ms (3 ms of wait is at the bound),
        // the fifth would wait 4 ms.
        for _ in 0..4 {
            assert!(matches!(l.offer(t0, 1000, &mut rng), Fate::Arrives(_)));
        }
        assert_eq!(l.offer(t0, 1000, &mut rng), Fate::QueueFull);
        assert_eq!(l.stats.queue_full, 1);
    }

    #[test]
    fn blackhole_drops_everything_and_loss_drops_about_its_share() {
        let t0 = Instant::now();
        let mut rng = Rng::new(7);
        let mut l = Link::new(LinkParams {
            blackhole: true,
            ..LinkParams::default()
        });
        assert_eq!(l.offer(t0, 100, &mut rng), Fate::Blackholed);
        let mut l = Link::new(LinkParams {
            loss_ppm: 10_000, // 1%
            ..LinkParams::default()
        });
        for _ in 0..100_000 {
            l.offer(t0, 100, &mut rng);
        }
        assert!((800..1200).contains(&l.stats.lost), "{:?}", l.stats);
        let mut l = Link::new(LinkParams::default());
        for _ in 0..1000 {
            assert_eq!(l.offer(t0, 100, &mut rng), Fate::Arrives(t0));
        }
    }
}
