//! The download machine's vocabulary: [`Input`], [`Output`],
//! [`DownloadConfig`], [`DownloadError`], peer ids, disconnect reasons and
//! the timer keys (each timer key is also the reason it fires).

use bytes::Bytes;
use std::fmt;
use std::net::SocketAddr;

use p2p_proto::{FileName, KeyId, PeerInfo, PeerMsg, PieceSet, RejectReason, Sha1Hash, Text};

use crate::time::Duration;

use super::progress::WaitingReason;

/// A peer as this download knows it: allocated by the machine, never reused.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct PeerId(pub u32);

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "peer#{}", self.0)
    }
}

/// Tuning of one download. Every field has a named default; drivers may
/// lower `max_parallel` (the client's `--workers N`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownloadConfig {
    /// Most piece requests in flight for this download, over all peers.
    pub max_parallel: usize,
    /// Most requests in flight to one peer (keep it at or below the
    /// seeder's per-connection limit, or the seeder answers `Busy`).
    pub per_peer_max: usize,
    /// Fewest requests the adaptive window allows per peer.
    pub per_peer_min: usize,
    /// Most peer connections (open or opening) at a time.
    pub peers_max: usize,
    /// Most peers remembered (a tracker listing beyond this is ignored).
    pub peers_known_max: usize,
    /// Bad (corrupt) pieces after which a peer is banned.
    pub bad_pieces_max: u32,
    /// Request timeouts in a row after which a peer is dropped.
    pub timeouts_max: u32,
    /// Most peers asked for the same piece in endgame.
    pub endgame_dup_max: usize,
    /// Time to establish a connection.
    pub connect_timeout: Duration,
    /// Time between sending `Open` and receiving `Have`.
    pub handshake_timeout: Duration,
    /// Least time a request may take before it is re-queued.
    pub request_timeout_min: Duration,
    /// Most time a request may take before it is re-queued.
    pub request_timeout_max: Duration,
    /// Expected speed of a peer not yet measured (bytes per second).
    pub initial_rate_bps: u64,
    /// Least time between two `AnnounceHave` outputs.
    pub announce_interval: Duration,
    /// First delay before asking the tracker again when no peer is usable.
    pub tracker_backoff_min: Duration,
    /// Longest delay between asks while no peer is usable.
    pub tracker_backoff_max: Duration,
    /// Where the interval between asks for new peers while downloading
    /// starts: each ask doubles it, up to `peers_refresh` (with the
    /// defaults, asks 0.25, 0.75, 1.75, 3.75, 7.75, 15.75, 31.75 and
    /// 63.75 s after the start, then every 60 s), so leechers that start
    /// together meet within a second of holding their first piece (each
    /// announces its first piece at once, later ones batched by
    /// `announce_interval`) and the swarm carries the file from the start,
    /// without asking often for long.
    pub peers_refresh_first: Duration,
    /// Ask the tracker for new peers this often even while downloading.
    pub peers_refresh: Duration,
    /// Give up after this long without a verified piece.
    pub no_peer_timeout: Duration,
    /// Ask the tracker for fresh tickets this long before the ticket of an
    /// open connection expires (at most half the ticket's remaining life
    /// when it arrived), and show the fresh one on the connection.
    pub ticket_renew_before: Duration,
    /// The client's download rate limit over all its downloads, bytes per
    /// second (`None`: unlimited). The client node keeps the one
    /// `TokenBucket` (`rate.rs`); while it is set, a
    /// download sends a request only when the node allows it one
    /// ([`Download::allow_request`](super::Download::allow_request)).
    pub max_rate: Option<u64>,
    /// Download rate limit per seeder connection, bytes per second
    /// (`None`: unlimited): a request goes to a peer only while that
    /// connection's own bucket allows.
    pub max_rate_per_peer: Option<u64>,
    /// Planted bug (test switch): accept pieces without checking their
    /// hash. Always false outside the simulator's teeth tests.
    #[doc(hidden)]
    pub bug_skip_verify: bool,
}

/// Default most requests in flight per download.
pub const MAX_PARALLEL_DEFAULT: usize = 16;
/// Default most requests in flight per peer (the seeder's default limit).
pub const PER_PEER_MAX_DEFAULT: usize = 8;
/// Default fewest requests the adaptive window keeps per peer. Latency is
/// measured in whole milliseconds, so on a fast link (loopback, a LAN) the
/// window falls to this floor; with 2 a seeder sat idle between pieces
/// while the leecher hashed one and asked for the next (1 GiB from two
/// seeders on loopback: 1.26 s with 2, 1.01-1.07 s with 4).
pub const PER_PEER_MIN_DEFAULT: usize = 4;
/// Default most connections per download.
pub const PEERS_MAX_DEFAULT: usize = 8;
/// Default most peers remembered per download.
pub const PEERS_KNOWN_MAX_DEFAULT: usize = 256;
/// Default bad pieces before a ban.
pub const BAD_PIECES_MAX_DEFAULT: u32 = 3;
/// Default timeouts in a row before a peer is dropped.
pub const TIMEOUTS_MAX_DEFAULT: u32 = 3;
/// Default time before a connection's ticket expires at which a fresh
/// one is fetched and shown (tickets live minutes).
pub const TICKET_RENEW_BEFORE_DEFAULT: Duration = Duration::from_secs(30);
/// Default first interval between asks for new peers while downloading
/// (doubled after each ask). At 1 s (asks at 2, 6, 14 s) 8 leechers of a
/// 32 MiB file met after 2 s of the 2.7 s the seeder needs to send the file
/// once, and the seeder sent 2.1x the file (test bed, issue 17 s3).
pub const PEERS_REFRESH_FIRST_DEFAULT: Duration = Duration(125);
/// Default most peers asked for one piece in endgame.
pub const ENDGAME_DUP_MAX_DEFAULT: usize = 2;

impl Default for DownloadConfig {
    fn default() -> Self {
        DownloadConfig {
            max_parallel: MAX_PARALLEL_DEFAULT,
            per_peer_max: PER_PEER_MAX_DEFAULT,
            per_peer_min: PER_PEER_MIN_DEFAULT,
            peers_max: PEERS_MAX_DEFAULT,
            peers_known_max: PEERS_KNOWN_MAX_DEFAULT,
            bad_pieces_max: BAD_PIECES_MAX_DEFAULT,
            timeouts_max: TIMEOUTS_MAX_DEFAULT,
            endgame_dup_max: ENDGAME_DUP_MAX_DEFAULT,
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            request_timeout_min: Duration::from_secs(5),
            request_timeout_max: Duration::from_secs(60),
            initial_rate_bps: 1024 * 1024,
            announce_interval: Duration::from_secs(1),
            tracker_backoff_min: Duration::from_secs(1),
            tracker_backoff_max: Duration::from_secs(30),
            peers_refresh_first: PEERS_REFRESH_FIRST_DEFAULT,
            peers_refresh: Duration::from_secs(60),
            no_peer_timeout: Duration::from_secs(5 * 60),
            ticket_renew_before: TICKET_RENEW_BEFORE_DEFAULT,
            max_rate: None,
            max_rate_per_peer: None,
            bug_skip_verify: false,
        }
    }
}

impl DownloadConfig {
    /// The same settings with every count at least 1 and the per-peer
    /// bounds ordered, so the machine never divides by or waits on zero.
    pub fn normalized(mut self) -> Self {
        self.max_parallel = self.max_parallel.max(1);
        self.per_peer_max = self.per_peer_max.max(1);
        self.per_peer_min = self.per_peer_min.clamp(1, self.per_peer_max);
        self.peers_max = self.peers_max.max(1);
        self.peers_known_max = self.peers_known_max.max(1);
        self.bad_pieces_max = self.bad_pieces_max.max(1);
        self.timeouts_max = self.timeouts_max.max(1);
        self.endgame_dup_max = self.endgame_dup_max.max(1);
        self.initial_rate_bps = self.initial_rate_bps.max(1);
        self.tracker_backoff_min = Duration(self.tracker_backoff_min.0.max(1));
        self.tracker_backoff_max =
            Duration(self.tracker_backoff_max.0.max(self.tracker_backoff_min.0));
        self.request_timeout_max =
            Duration(self.request_timeout_max.0.max(self.request_timeout_min.0));
        self.peers_refresh_first = Duration(self.peers_refresh_first.0.max(1));
        self.peers_refresh = Duration(self.peers_refresh.0.max(self.peers_refresh_first.0));
        self
    }
}

/// Everything the driver tells a download.
#[derive(Clone, Debug)]
pub enum Input {
    /// The tracker's answer to `AskTrackerForPeers` (GetPeers).
    Peers(Vec<PeerInfo>),
    /// Sources the tracker pushed unasked (`FromTracker::Peers`): new
    /// holders of the file, learned like a listing's.
    PeersPushed(Vec<PeerInfo>),
    /// The tracker could not list peers (the reason shows in progress).
    PeersUnavailable { reason: Text },
    /// The connection asked for by `Connect` is up and its TLS handshake
    /// proved `key`: it must be the key the tracker vouched for (the
    /// ticket's `seeder_key`), or the connection is closed before anything
    /// is sent on it.
    Connected { peer: PeerId, key: KeyId },
    /// The connection asked for by `Connect` could not be made.
    ConnectFailed { peer: PeerId },
    /// A message from a peer. A `PeerMsg::Piece` here is hashed on the
    /// machine's thread; drivers should send [`Input::Piece`] instead.
    Msg { peer: PeerId, msg: PeerMsg },
    /// A `PeerMsg::Piece` with the SHA-1 of `data` computed by the driver
    /// (off the machine's thread, with `crate::hash::sha1`).
    Piece {
        peer: PeerId,
        index: u32,
        data: Bytes,
        sha1: Sha1Hash,
    },
    /// The connection to a peer closed (not after our own `Disconnect`).
    Closed { peer: PeerId },
    /// A `WritePiece` reached the `.part` file (and its record).
    PieceWritten { index: u32 },
    /// A `WritePiece` failed (disk full, permissions...).
    WriteFailed { index: u32, reason: Text },
}

/// Everything a download asks its driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Open a connection to `addr` for `peer`; answer `Connected`/`ConnectFailed`.
    Connect { peer: PeerId, addr: SocketAddr },
    /// Send a message on `peer`'s connection.
    Send { peer: PeerId, msg: PeerMsg },
    /// Close `peer`'s connection. The machine has already forgotten it; no
    /// `Closed` is expected (one that comes anyway is ignored).
    Disconnect {
        peer: PeerId,
        reason: DisconnectReason,
    },
    /// Write verified piece bytes at `offset` of `<dest>.part`; answer
    /// `PieceWritten`/`WriteFailed`. Never emitted for unverified data.
    WritePiece {
        index: u32,
        offset: u64,
        data: Bytes,
    },
    /// Tell the tracker every piece now held (HavePieces). Batched.
    AnnounceHave { pieces: PieceSet },
    /// Ask the tracker for the current peers (GetPeers); answer `Peers`.
    AskTrackerForPeers,
    /// The download ended. Emitted once; the machine is idle afterwards.
    Finished(Result<(), DownloadError>),
}

/// Why the download closed a peer connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DisconnectReason {
    #[error("sent {count} corrupt pieces; banned")]
    BadPieces { count: u32 },
    #[error("broke the protocol: {what}")]
    ProtocolViolation { what: &'static str },
    #[error("{count} requests in a row timed out")]
    TimedOut { count: u32 },
    #[error("connection attempt timed out")]
    ConnectTimeout,
    #[error("did not answer Open in time")]
    HandshakeTimeout,
    #[error("peer refused: {0}")]
    Refused(RejectReason),
    #[error(
        "it proved key {presented}, not the key {vouched} the tracker vouched for; nothing was sent to it"
    )]
    WrongKey { vouched: KeyId, presented: KeyId },
    #[error("peer closed with an error: {reason}")]
    PeerFatal { reason: Text },
    #[error("holds no piece still needed (slot given to another peer)")]
    Unneeded,
    #[error("download complete")]
    Complete,
    #[error("download ended")]
    Ended,
}

/// Why a download failed; the `Display` text is what the user sees.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DownloadError {
    #[error("file metadata is inconsistent: {reason}")]
    BadMetadata { reason: Text },
    #[error("no progress for {} s: {why}", waited.as_millis() / 1000)]
    Stalled {
        waited: Duration,
        why: WaitingReason,
    },
    #[error("writing piece {index} to disk failed: {reason}")]
    WriteFailed { index: u32, reason: Text },
    #[error(
        "file hash {expected} does not match the size, piece size and piece hashes sent with it (they give {computed})"
    )]
    FileHashMismatch {
        expected: Sha1Hash,
        computed: Sha1Hash,
    },
    #[error("download cancelled")]
    Cancelled,
    /// The tracker answered a request for one file with another's
    /// metadata (issue 16 §10): a faulty or hostile tracker.
    #[error(
        "the tracker sent the metadata of {got}, not of {asked} (it may be faulty or hostile; nothing was fetched)"
    )]
    WrongFile { asked: FileName, got: FileName },
    /// The file's hash is not the one the user gave `download_file`.
    #[error(
        "its file hash is {got}, not the {expected} you asked for (check the hash with whoever shared it; nothing was fetched)"
    )]
    NotExpectedHash { expected: Sha1Hash, got: Sha1Hash },
}

/// Every deadline a download keeps; the key is also the reason it fires.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Timer {
    /// Ask the tracker for peers (backoff, or periodic refresh).
    AskTracker,
    /// Flush the batched `AnnounceHave`.
    Announce,
    /// Give up: no verified piece for `no_peer_timeout`.
    Stall,
    /// A `Connect` not answered yet.
    Connect(PeerId),
    /// An `Open` not answered with `Have` yet.
    Handshake(PeerId),
    /// A piece request not answered yet.
    Request(PeerId, u32),
    /// A per-peer rate limit allows the next request.
    Rate,
}

impl fmt::Display for Timer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Timer::AskTracker => f.write_str("ask the tracker for peers"),
            Timer::Announce => f.write_str("announce held pieces"),
            Timer::Stall => f.write_str("give up if still no progress"),
            Timer::Connect(p) => write!(f, "connect timeout of {p}"),
            Timer::Handshake(p) => write!(f, "handshake timeout of {p}"),
            Timer::Request(p, i) => write!(f, "request timeout of piece {i} from {p}"),
            Timer::Rate => f.write_str("the per-peer download rate limit allows the next request"),
        }
    }
}
