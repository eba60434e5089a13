//! One source of the file as the download sees it: connection state, the
//! pieces it holds, requests in flight, and its measured speed, from which
//! come its pipelining window, its request timeouts and its pick weight.
//!
//! Adaptive pipelining rule (see [`Peer::window`]): keep at least
//! `rate × latency` bytes in flight, plus one piece, within
//! `[per_peer_min, per_peer_max]` (and below a seeder's `Busy` limit).
//! `rate` is an EWMA of per-piece delivery rates; `latency` is an EWMA of
//! request→piece times of *head-of-line* requests only (sent when nothing
//! else was outstanding to that peer), so queueing behind our own earlier
//! requests never inflates it and the window cannot run away.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use p2p_proto::{KeyId, PieceSet, Ticket, UserName};

use super::interface::DownloadConfig;
use crate::rate::TokenBucket;
use crate::time::{Duration, Instant};

/// Slowest rate assumed when scaling timeouts (bytes per second).
const RATE_FLOOR_BPS: u64 = 16 * 1024;
/// A request may take this many times its expected transfer time.
const TIMEOUT_SLACK: u64 = 4;

/// Connection state of a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PeerState {
    /// Known, not connected: may be connected to.
    Idle,
    /// `Connect` sent.
    Connecting,
    /// Connected, `Open` sent, waiting for `Have`.
    Opening,
    /// `Have` received: requests may be sent.
    Ready { pieces: PieceSet },
    /// Failed; connected again only after the tracker lists it again.
    Failed,
    /// Refused our ticket (expired, not verifying): waits for a fresh one.
    NeedTicket,
    /// Sent too many bad pieces: never used again by this download.
    Banned,
    /// Proved another key than `vouched` (the ticket's seeder key): not
    /// dialed again until the tracker vouches for another key.
    WrongKey { vouched: KeyId },
}

/// A request in flight to a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sent {
    pub at: Instant,
    /// Nothing else was outstanding to this peer when it was sent.
    pub head: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct Peer {
    pub user: UserName,
    pub addr: SocketAddr,
    pub ticket: Ticket,
    /// When to fetch a fresh ticket (before `ticket` expires).
    pub renew_at: Instant,
    /// The expiry of the ticket shown on the live connection, if any.
    pub shown_expires_ms: Option<u64>,
    /// The key the live connection proved (the ticket's seeder key).
    pub conn_key: Option<KeyId>,
    /// Pieces the tracker says it holds (used before `Have` arrives).
    hint: PieceSet,
    /// The hint held no needed piece when last checked. Needed pieces only
    /// ever get fewer, so this stays true until the hint changes.
    hint_useless: bool,
    /// Connections attempted so far.
    pub attempts: u32,
    pub state: PeerState,
    pub requests: BTreeMap<u32, Sent>,
    /// Delivery rate EWMA, bytes per second.
    pub rate_bps: Option<u64>,
    /// Head-of-line request latency EWMA, milliseconds.
    pub latency_ms: Option<u64>,
    pub last_arrival: Option<Instant>,
    /// A seeder answered `Busy` with this many requests outstanding.
    pub busy_cap: Option<usize>,
    pub bad_pieces: u32,
    pub timeouts_in_a_row: u32,
    /// Pieces we cancelled that may still arrive: one late piece each is
    /// accepted quietly; an unrequested piece beyond that is a violation.
    pub allowance: u32,
    pub pieces_received: u32,
    /// The per-peer download rate limit's bucket, made at the first
    /// request under a limit (`None` while unlimited).
    pub bucket: Option<TokenBucket>,
}

impl Peer {
    pub(super) fn new(user: UserName, addr: SocketAddr, ticket: Ticket, hint: PieceSet) -> Self {
        Peer {
            user,
            addr,
            renew_at: Instant(ticket.expires_ms),
            shown_expires_ms: None,
            conn_key: None,
            ticket,
            hint,
            hint_useless: false,
            attempts: 0,
            state: PeerState::Idle,
            requests: BTreeMap::new(),
            rate_bps: None,
            latency_ms: None,
            last_arrival: None,
            busy_cap: None,
            bad_pieces: 0,
            timeouts_in_a_row: 0,
            allowance: 0,
            pieces_received: 0,
            bucket: None,
        }
    }

    /// A ticket from a listing that arrived `now`: fetch the next one
    /// `renew_before` ahead of its expiry, or halfway through what is left
    /// of its life if that is sooner.
    pub(super) fn set_ticket(&mut self, now: Instant, ticket: Ticket, renew_before: Duration) {
        let left = ticket.expires_ms.saturating_sub(now.as_millis());
        let ahead = renew_before.as_millis().min(left / 2);
        self.renew_at = Instant(ticket.expires_ms - ahead);
        self.ticket = ticket;
    }

    /// A new listing says it holds `hint`.
    pub(super) fn set_hint(&mut self, hint: &PieceSet) {
        if *hint != self.hint {
            self.hint = hint.clone();
            self.hint_useless = false;
        }
    }

    /// The tracker's word on what it holds, while it counts in the
    /// swarm's rarity: known, not ready (a ready peer's own `Have` counts
    /// instead), not banned.
    pub(super) fn swarm_hint(&self) -> Option<&PieceSet> {
        match self.state {
            PeerState::Ready { .. } | PeerState::Banned => None,
            _ => Some(&self.hint),
        }
    }

    /// Does the tracker's word say it holds a piece `needed` accepts?
    pub(super) fn hint_useful(&mut self, needed: impl Fn(u32) -> bool) -> bool {
        if !self.hint_useless && !self.hint.iter().any(needed) {
            self.hint_useless = true;
        }
        !self.hint_useless
    }

    pub(super) fn pieces(&self) -> Option<&PieceSet> {
        match &self.state {
            PeerState::Ready { pieces } => Some(pieces),
            _ => None,
        }
    }

    pub(super) fn is_ready(&self) -> bool {
        matches!(self.state, PeerState::Ready { .. })
    }

    /// Connecting, opening or ready: holds a connection slot.
    pub(super) fn is_active(&self) -> bool {
        matches!(
            self.state,
            PeerState::Connecting | PeerState::Opening | PeerState::Ready { .. }
        )
    }

    /// How many requests to keep in flight to this peer.
    pub(super) fn window(&self, cfg: &DownloadConfig, piece_len: u32) -> usize {
        let adaptive = match (self.rate_bps, self.latency_ms) {
            (Some(rate), Some(lat)) => {
                let bytes = rate.saturating_mul(lat) / 1000;
                bytes.div_ceil(u64::from(piece_len.max(1))) as usize + 1
            }
            _ => cfg.per_peer_min,
        };
        let w = adaptive.clamp(cfg.per_peer_min, cfg.per_peer_max);
        self.busy_cap.map_or(w, |cap| w.min(cap))
    }

    pub(super) fn has_room(&self, cfg: &DownloadConfig, piece_len: u32) -> bool {
        self.is_ready() && self.requests.len() < self.window(cfg, piece_len)
    }

    /// The per-peer rate limit (if any) lets a request go to this peer.
    pub(super) fn rate_allows(&self, now: Instant) -> bool {
        self.bucket.as_ref().is_none_or(|b| b.ready_at() <= now)
    }

    /// A request for `bytes` went out under a per-peer limit of `rate`.
    pub(super) fn take_rate(&mut self, now: Instant, rate: Option<u64>, bytes: u32) {
        if let Some(rate) = rate {
            self.bucket
                .get_or_insert_with(|| TokenBucket::new(now, rate))
                .take(now, u64::from(bytes));
        }
    }

    /// Relative chance of being picked for the next request.
    pub(super) fn weight(&self, unmeasured: u64) -> u64 {
        self.rate_bps.unwrap_or(unmeasured).max(1)
    }

    /// Deadline of a request for `bytes` sent now, behind `ahead` others.
    pub(super) fn request_timeout(
        &self,
        cfg: &DownloadConfig,
        bytes: u32,
        ahead: usize,
    ) -> Duration {
        let rate = self
            .rate_bps
            .unwrap_or(cfg.initial_rate_bps)
            .max(RATE_FLOOR_BPS);
        let queued = u64::from(bytes).saturating_mul(ahead as u64 + 1);
        let expected_ms = queued.saturating_mul(1000) / rate;
        let ms = cfg.request_timeout_min.as_millis() + expected_ms.saturating_mul(TIMEOUT_SLACK);
        Duration(ms.min(cfg.request_timeout_max.as_millis()))
    }

    /// Records a requested piece of `bytes` that arrived `now`.
    pub(super) fn on_arrival(&mut self, now: Instant, sent: Sent, bytes: u32) {
        let start = self.last_arrival.map_or(sent.at, |t| t.max(sent.at));
        let ms = now.saturating_since(start).as_millis().max(1);
        let sample = u64::from(bytes) * 1000 / ms;
        self.rate_bps = Some(ewma(self.rate_bps, sample, 4));
        if sent.head {
            let lat = now.saturating_since(sent.at).as_millis().max(1);
            self.latency_ms = Some(ewma(self.latency_ms, lat, 8));
        }
        self.last_arrival = Some(now);
        self.timeouts_in_a_row = 0;
        self.pieces_received += 1;
    }

    /// A timeout or a bad piece: halve the rate estimate, so the peer gets
    /// fewer and longer-lived requests.
    pub(super) fn penalise(&mut self, cfg: &DownloadConfig) {
        let r = self.rate_bps.unwrap_or(cfg.initial_rate_bps);
        self.rate_bps = Some((r / 2).max(1));
    }
}

/// Exponentially weighted moving average with weight `1/div` for `sample`.
fn ewma(old: Option<u64>, sample: u64, div: u64) -> u64 {
    match old {
        None => sample,
        Some(o) => o - o / div + sample / div,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2p_proto::{FileName, GroupName, KeyId, Mac, Sha1Hash};

    fn peer() -> Peer {
        let u = UserName::new("s").unwrap();
        let t = Ticket {
            downloader: UserName::new("d").unwrap(),
            group: GroupName::new("g").unwrap(),
            file: FileName::new("f").unwrap(),
            file_hash: Sha1Hash::default(),
            seeder: u.clone(),
            downloader_key: KeyId([0x44; 32]),
            seeder_key: KeyId([0x53; 32]),
            expires_ms: 0,
            mac: Mac::default(),
        };
        Peer::new(u, "127.0.0.1:1".parse().unwrap(), t, PieceSet::empty(1))
    }

    #[test]
    fn window_covers_rate_times_latency_within_bounds() {
        let cfg = DownloadConfig::default();
        let mut p = peer();
        p.state = PeerState::Ready {
            pieces: PieceSet::full(1),
        };
        assert_eq!(p.window(&cfg, 1000), cfg.per_peer_min, "unmeasured");
        // 100 kB/s, 50 ms: 5 kB in flight = 5 pieces of 1 kB, plus one.
        p.rate_bps = Some(100_000);
        p.latency_ms = Some(50);
        assert_eq!(p.window(&cfg, 1000), 6);
        p.latency_ms = Some(10_000);
        assert_eq!(p.window(&cfg, 1000), cfg.per_peer_max);
        p.latency_ms = Some(1);
        assert_eq!(p.window(&cfg, 1000), cfg.per_peer_min);
        p.latency_ms = Some(50);
        p.busy_cap = Some(3);
        assert_eq!(p.window(&cfg, 1000), 3);
    }

    #[test]
    fn queued_requests_do_not_inflate_latency() {
        let mut p = peer();
        let t0 = Instant(0);
        p.on_arrival(Instant(100), Sent { at: t0, head: true }, 1000);
        assert_eq!(p.latency_ms, Some(100));
        // Queued behind the first: a long request->arrival time, not a sample.
        p.on_arrival(
            Instant(150),
            Sent {
                at: t0,
                head: false,
            },
            1000,
        );
        assert_eq!(p.latency_ms, Some(100));
        // Rate counts from the previous arrival: 1000 B in 50 ms.
        assert_eq!(p.rate_bps, Some(10_000 - 10_000 / 4 + 20_000 / 4));
    }

    #[test]
    fn timeouts_scale_with_size_queue_and_rate_and_are_capped() {
        let cfg = DownloadConfig::default();
        let mut p = peer();
        p.rate_bps = Some(1_000_000);
        let one = p.request_timeout(&cfg, 500_000, 0);
        assert_eq!(one.as_millis(), 5_000 + 2_000);
        assert!(p.request_timeout(&cfg, 500_000, 3) > one);
        p.penalise(&cfg);
        assert!(p.request_timeout(&cfg, 500_000, 0) > one);
        p.rate_bps = Some(1);
        assert_eq!(p.request_timeout(&cfg, 500_000, 7), cfg.request_timeout_max);
    }
}
