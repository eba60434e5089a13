//! What `show_downloads` shows, typed: [`Progress`] (a snapshot built by
//! `Download::progress`), the [`DownloadState`], the [`WaitingReason`] a
//! stalled download gives, and the windowed [`RateMeter`]. Its line is
//! worded by the driver (`runtime_common::present::format_download`);
//! the waiting reason's and the peer problem's `Display` stay here, as
//! they are part of `DownloadError::Stalled`'s text.

use std::fmt;

use std::net::SocketAddr;

use p2p_proto::{PieceSet, RejectReason, Text, UserName};

use super::Peer;
use super::interface::{DisconnectReason, DownloadError, Timer};
use crate::time::{Duration, Instant};

/// Where a download is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DownloadState {
    /// Fetching pieces.
    Downloading,
    /// Every piece is verified and written (each against a piece hash
    /// the file hash commits to, so the file is whole).
    Complete,
    /// Ended without the file.
    Failed(DownloadError),
}

/// The last thing that went wrong with a peer, for the waiting reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerProblem {
    ConnectFailed,
    ClosedByPeer,
    Refused(RejectReason),
    Dropped(DisconnectReason),
}

impl fmt::Display for PeerProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerProblem::ConnectFailed => f.write_str("could not connect"),
            PeerProblem::ClosedByPeer => f.write_str("peer closed the connection"),
            PeerProblem::Refused(r) => write!(f, "refused: {r}"),
            PeerProblem::Dropped(r) => write!(f, "dropped: {r}"),
        }
    }
}

/// Why nothing is being received right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WaitingReason {
    /// Asked the tracker; no answer yet.
    AskingTracker,
    /// The tracker could not list peers.
    TrackerUnavailable { reason: Text, retry_in: Duration },
    /// The tracker listed no peer.
    NoPeers { retry_in: Duration },
    /// Every listed peer failed; `last` is the latest failure.
    PeersFailed {
        last: PeerProblem,
        retry_in: Duration,
    },
    /// Connections are being opened.
    Connecting { peers: u32 },
    /// Peers are connected and asked, yet no piece verified.
    NoPieceVerified { peers: u32 },
    /// Connected peers hold none of the missing pieces.
    PeersLackPieces {
        peers: u32,
        missing: u32,
        retry_in: Duration,
    },
    /// A request is ready and held back by the user's download rate
    /// limit (`set_rate down`, `set_rate down-per-peer`).
    RateLimited,
}

struct Secs(Duration);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} s", self.0.as_millis().div_ceil(1000))
    }
}

impl fmt::Display for WaitingReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use WaitingReason::*;
        let again = "asking the tracker again in";
        match self {
            AskingTracker => f.write_str("asking the tracker for peers"),
            TrackerUnavailable { reason, retry_in } => {
                write!(
                    f,
                    "tracker cannot list peers ({reason}); {again} {}",
                    Secs(*retry_in)
                )
            }
            NoPeers { retry_in } => write!(f, "no seeder online; {again} {}", Secs(*retry_in)),
            PeersFailed { last, retry_in } => {
                write!(
                    f,
                    "no usable peer (last: {last}); {again} {}",
                    Secs(*retry_in)
                )
            }
            Connecting { peers } => write!(f, "connecting to {peers} peer(s)"),
            RateLimited => f.write_str("held back by your download rate limit (set_rate)"),
            NoPieceVerified { peers } => {
                write!(f, "{peers} peer(s) connected but no piece arrived intact")
            }
            PeersLackPieces {
                peers,
                missing,
                retry_in,
            } => write!(
                f,
                "{peers} connected peer(s) hold none of the {missing} missing pieces; {again} {}",
                Secs(*retry_in)
            ),
        }
    }
}

/// A snapshot of one download for `show_downloads`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    pub state: DownloadState,
    pub pieces_done: u32,
    pub pieces_total: u32,
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// Bytes per second received over the last few seconds.
    pub rate_bps: u64,
    /// Connected peers with a request in flight.
    pub peers_in_use: u32,
    /// Connected peers (handshake done).
    pub peers_connected: u32,
    /// Peers known from the tracker.
    pub peers_known: u32,
    pub requests_in_flight: u32,
    /// Set while nothing has been received for [`WAITING_WINDOW`],
    /// saying why.
    pub waiting_reason: Option<WaitingReason>,
    /// The piece map: pieces verified and written.
    pub have: PieceSet,
    /// Every known peer, with what it gave so far.
    pub peers: Vec<PeerProgress>,
}

/// One peer of a download, for the per-peer figures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerProgress {
    pub user: UserName,
    pub addr: SocketAddr,
    /// Pieces it delivered (that it had been asked for).
    pub pieces_received: u32,
    /// Requests to it in flight now.
    pub in_flight: u32,
    /// Its measured delivery rate, bytes per second, if measured.
    pub rate_bps: Option<u64>,
    /// The connection is up (handshake done).
    pub connected: bool,
}

/// A download that received a piece (or had a request in flight) this
/// recently has no waiting reason: between two pieces there are instants
/// with nothing in flight (the disk holding pieces back, a peer's answer
/// just in), and a reason read at such an instant was wrong (issue 19).
pub const WAITING_WINDOW: Duration = Duration(3_000);

/// Length of one rate bucket.
const RATE_BUCKET_MS: u64 = 1000;
/// Buckets kept: the rate covers the last `RATE_BUCKETS - 1` seconds and
/// the current partial one.
const RATE_BUCKETS: usize = 6;

/// Bytes per second over a sliding window of whole-second buckets.
#[derive(Clone, Debug)]
pub(crate) struct RateMeter {
    started: Instant,
    buckets: [(u64, u64); RATE_BUCKETS],
}

impl RateMeter {
    pub(super) fn new(now: Instant) -> Self {
        RateMeter {
            started: now,
            buckets: [(u64::MAX, 0); RATE_BUCKETS],
        }
    }

    pub(super) fn add(&mut self, now: Instant, bytes: u64) {
        let b = now.as_millis() / RATE_BUCKET_MS;
        let slot = &mut self.buckets[(b % RATE_BUCKETS as u64) as usize];
        if slot.0 != b {
            *slot = (b, 0);
        }
        slot.1 += bytes;
    }

    pub(super) fn rate_bps(&self, now: Instant) -> u64 {
        let b = now.as_millis() / RATE_BUCKET_MS;
        let oldest = b.saturating_sub(RATE_BUCKETS as u64 - 1);
        let bytes: u64 = self
            .buckets
            .iter()
            .filter(|(n, _)| *n != u64::MAX && *n >= oldest && *n <= b)
            .map(|(_, v)| v)
            .sum();
        let window = (RATE_BUCKETS as u64 - 1) * RATE_BUCKET_MS + now.as_millis() % RATE_BUCKET_MS;
        let window = window
            .min(now.saturating_since(self.started).as_millis())
            .max(1);
        bytes.saturating_mul(1000) / window
    }
}

impl super::Download {
    /// A snapshot for `show_downloads`.
    pub fn progress(&self, now: Instant) -> Progress {
        let ready = self.peers.values().filter(|p| p.is_ready());
        let in_use = ready.clone().filter(|p| !p.requests.is_empty()).count();
        let done = self.picker.done();
        let bytes_done = done
            .iter()
            .map(|i| u64::from(self.meta.piece_size(i)))
            .sum();
        Progress {
            state: self.state.clone(),
            pieces_done: done.count(),
            pieces_total: self.meta.piece_count(),
            bytes_done,
            bytes_total: self.meta.size,
            rate_bps: self.rate.rate_bps(now),
            peers_in_use: in_use as u32,
            peers_connected: ready.count() as u32,
            peers_known: self.peers.len() as u32,
            requests_in_flight: self.in_flight as u32,
            waiting_reason: self.waiting_reason(now),
            have: done.clone(),
            peers: self
                .peers
                .values()
                .map(|p| PeerProgress {
                    user: p.user.clone(),
                    addr: p.addr,
                    pieces_received: p.pieces_received,
                    in_flight: p.requests.len() as u32,
                    rate_bps: p.rate_bps,
                    connected: p.is_ready(),
                })
                .collect(),
        }
    }

    /// A piece arrived from some peer within `window` before `now`.
    fn active_within(&self, now: Instant, window: Duration) -> bool {
        self.peers
            .values()
            .filter_map(|p| p.last_arrival)
            .any(|t| now.saturating_since(t) < window)
    }

    /// Why nothing is being received, or `None` while pieces flow (a
    /// piece arrived within [`WAITING_WINDOW`], or one is asked for) or
    /// the download is not fetching any more.
    pub fn waiting_reason(&self, now: Instant) -> Option<WaitingReason> {
        if self.state != DownloadState::Downloading
            || self.in_flight > 0
            || self.picker.all_verified()
            || self.active_within(now, WAITING_WINDOW)
        {
            return None;
        }
        let retry_in = self
            .timers
            .get(Timer::AskTracker)
            .map_or(Duration(0), |t| t.saturating_since(now));
        let count = |f: fn(&Peer) -> bool| self.peers.values().filter(|p| f(p)).count() as u32;
        let opening = count(|p| p.is_active() && !p.is_ready());
        let ready = count(Peer::is_ready);
        if self.gate.held_global || self.gate.held_peer {
            return Some(WaitingReason::RateLimited);
        }
        Some(if opening > 0 {
            WaitingReason::Connecting { peers: opening }
        } else if ready > 0 {
            let missing = self.picker.len() - self.picker.verified_count();
            WaitingReason::PeersLackPieces {
                peers: ready,
                missing,
                retry_in,
            }
        } else if self.tracker.pending {
            WaitingReason::AskingTracker
        } else if let Some(reason) = &self.tracker.problem {
            WaitingReason::TrackerUnavailable {
                reason: reason.clone(),
                retry_in,
            }
        } else if let (Some(last), true) = (&self.last_peer_problem, self.tracker.last_listed > 0) {
            WaitingReason::PeersFailed {
                last: last.clone(),
                retry_in,
            }
        } else {
            WaitingReason::NoPeers { retry_in }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_meter_windows_and_forgets() {
        let mut m = RateMeter::new(Instant(0));
        m.add(Instant(500), 1000);
        assert_eq!(m.rate_bps(Instant(1000)), 1000);
        m.add(Instant(1500), 1000);
        assert_eq!(m.rate_bps(Instant(2000)), 1000);
        // Six seconds later both buckets have left the window.
        assert_eq!(m.rate_bps(Instant(8000)), 0);
    }

    #[test]
    fn waiting_reason_says_when_it_retries() {
        let w = WaitingReason::NoPeers {
            retry_in: Duration::from_millis(7_200),
        };
        assert_eq!(
            w.to_string(),
            "no seeder online; asking the tracker again in 8 s"
        );
        let w = WaitingReason::PeersFailed {
            last: PeerProblem::Refused(RejectReason::Expired),
            retry_in: Duration::from_secs(2),
        };
        assert!(w.to_string().contains("ticket expired"), "{w}");
    }
}
