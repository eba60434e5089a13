//! The seeder's vocabulary: ids, [`Input`], [`Output`], [`SeederConfig`]
//! with its named limits, [`CloseReason`], [`ShareError`], [`ServeError`],
//! timer keys and
//! [`SeederStats`].

use std::fmt;
use std::net::IpAddr;

use p2p_proto::{KeyId, PeerMsg, RejectReason, Text};

use crate::time::Duration;

/// A connection accepted by the driver. Never reused within a process.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct ConnId(pub u64);

/// A file this client serves. Peers never name paths: the driver keeps
/// the file behind each id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum ShareId {
    /// A file the user shared; the number is the driver's, which keeps
    /// its path.
    Upload(u64),
    /// The partial file of the client's download with this number, served
    /// while it downloads.
    Download(u64),
}

impl ShareId {
    /// The driver's number of an uploaded share (`None` for a download's).
    pub fn upload(self) -> Option<u64> {
        match self {
            ShareId::Upload(n) => Some(n),
            ShareId::Download(_) => None,
        }
    }
}

impl fmt::Display for ShareId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShareId::Upload(n) => write!(f, "upload#{n}"),
            ShareId::Download(n) => write!(f, "download#{n}"),
        }
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

/// Default most serving slots: connections that showed a valid ticket
/// (`Open`) and are served at once. A connection takes a slot only when
/// its ticket verifies, so connections that show none never take one.
pub const CONNS_MAX: usize = 128;
/// Default most serving slots one downloading user may hold.
pub const CONNS_PER_USER_MAX: usize = 4;
/// Default most serving slots held from one source address (whatever
/// users its connections are for: a host with many accounts, or a NAT).
pub const CONNS_PER_ADDR_MAX: usize = 16;
/// Default most connections that have not shown a valid ticket yet
/// (hello or `Open` awaited), in total. One more is refused at once.
pub const UNOPENED_MAX: usize = 64;
/// Default most connections from one source address that have not shown
/// a valid ticket yet. One more from that address is refused at once.
pub const UNOPENED_PER_ADDR_MAX: usize = 8;
/// Default most piece requests queued or being read per connection; one
/// more is answered `Busy`.
pub const CONN_REQUESTS_MAX: usize = 8;
/// Default most `Serve`s in flight (unanswered) over all connections
/// (bounds the piece buffers and file reads a driver holds).
pub const READS_MAX: usize = 32;
/// Default refused requests (pieces not held) a connection may make
/// before it is closed.
pub const REFUSALS_MAX: u32 = 16;
/// Default pieces a downloader sees and does not hold while a share
/// registered whole has other downloaders on it (initial seeding,
/// `initial.rs`): at most this many requests of each queue here, so the
/// seeder's queue stays short and downloaders fetch the rest from each
/// other. 0 turns initial seeding off.
pub const INITIAL_SEED_WINDOW: usize = 4;
/// Default time a new connection has to show its ticket.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a connection may stay silent with nothing pending.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// The seeder's limits; defaults are the named constants above.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeederConfig {
    /// Serving slots in total ([`CONNS_MAX`]).
    pub conns_max: usize,
    /// Serving slots per downloading user ([`CONNS_PER_USER_MAX`]).
    pub conns_per_user_max: usize,
    /// Serving slots per source address ([`CONNS_PER_ADDR_MAX`]).
    pub conns_per_addr_max: usize,
    /// Connections without a ticket yet, in total ([`UNOPENED_MAX`]).
    pub unopened_max: usize,
    /// Connections without a ticket yet per source address
    /// ([`UNOPENED_PER_ADDR_MAX`]).
    pub unopened_per_addr_max: usize,
    pub conn_requests_max: usize,
    pub reads_max: usize,
    pub refusals_max: u32,
    pub open_timeout: Duration,
    pub idle_timeout: Duration,
    /// Upload rate limit over all connections, bytes per second (`None`:
    /// unlimited); a `Serve` of a piece starts only when the
    /// `TokenBucket` (`rate.rs`) allows. Changed at run
    /// time with `Seeder::set_upload_rate`.
    pub upload_rate: Option<u64>,
    /// Upload rate limit per serving connection, bytes per second
    /// (`None`: unlimited): a connection's next read starts only when its
    /// own bucket allows too. Changed with
    /// `Seeder::set_upload_rate_per_peer`.
    pub upload_rate_per_peer: Option<u64>,
    /// Unheld pieces a later downloader sees in initial seeding (see
    /// `initial.rs`); 0 turns initial seeding off.
    pub initial_seed_window: usize,
    /// Planted bug (test switch): serve any `Open`, whatever its ticket.
    /// Always false outside the simulator's teeth tests.
    #[doc(hidden)]
    pub bug_ignore_tickets: bool,
    /// Planted bug (test switch): serve a valid ticket whoever shows it
    /// (skip the check that the connection's key is the ticket's
    /// downloader key). Always false outside the simulator's teeth tests.
    #[doc(hidden)]
    pub bug_skip_key_check: bool,
}

impl Default for SeederConfig {
    fn default() -> Self {
        SeederConfig {
            conns_max: CONNS_MAX,
            conns_per_user_max: CONNS_PER_USER_MAX,
            conns_per_addr_max: CONNS_PER_ADDR_MAX,
            unopened_max: UNOPENED_MAX,
            unopened_per_addr_max: UNOPENED_PER_ADDR_MAX,
            conn_requests_max: CONN_REQUESTS_MAX,
            reads_max: READS_MAX,
            refusals_max: REFUSALS_MAX,
            open_timeout: OPEN_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
            upload_rate: None,
            upload_rate_per_peer: None,
            initial_seed_window: INITIAL_SEED_WINDOW,
            bug_ignore_tickets: false,
            bug_skip_key_check: false,
        }
    }
}

impl SeederConfig {
    /// The same limits with every count at least 1.
    pub fn normalized(mut self) -> Self {
        self.conns_max = self.conns_max.max(1);
        self.conns_per_user_max = self.conns_per_user_max.max(1);
        self.conns_per_addr_max = self.conns_per_addr_max.max(1);
        self.unopened_max = self.unopened_max.max(1);
        self.unopened_per_addr_max = self.unopened_per_addr_max.max(1);
        self.conn_requests_max = self.conn_requests_max.max(1);
        self.reads_max = self.reads_max.max(1);
        self
    }
}

/// Everything the driver tells the seeder about connections and disk.
#[derive(Clone, Debug)]
pub enum Input {
    /// A peer connected to our seeder port from `addr` (its source
    /// address, which the per-address limits count); `peer` is the key it
    /// proved in the TLS handshake (only a ticket issued to that key opens
    /// a file).
    Opened {
        conn: ConnId,
        peer: KeyId,
        addr: IpAddr,
    },
    /// A decoded message from that peer.
    Msg { conn: ConnId, msg: PeerMsg },
    /// The connection closed (not after our own `Close`).
    Closed { conn: ConnId },
    /// A `Serve` is done: the piece's frame is queued on the connection
    /// (its data read from the file by the connection's writer). Every
    /// `Serve` gets exactly one answer, `Served` or `ServeFailed`, even if
    /// the connection closed meanwhile.
    Served { conn: ConnId, index: u32 },
    /// A `Serve` the driver could not do (`why`); the peer hears
    /// `NoSuchPiece`.
    ServeFailed {
        conn: ConnId,
        index: u32,
        why: ServeError,
    },
}

/// Why the driver could not serve a piece.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ServeError {
    /// The driver keeps no file for the share (unknown to it, or a
    /// download's part file not open).
    #[error("no file is kept for this share")]
    NoFile,
    /// The share's file could not be opened.
    #[error("the shared file could not be opened")]
    Unreadable,
    /// The file no longer holds the piece's range (it shrank).
    #[error("the shared file is shorter than the piece's range")]
    Short,
    /// The connection's writer is gone, or refused the piece (its queue
    /// was full, which cut the connection).
    #[error("the connection is gone")]
    ConnGone,
}

/// Everything the seeder asks its driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send a message on `conn`.
    Send { conn: ConnId, msg: PeerMsg },
    /// Serve piece `index` on `conn`: send `Piece { index, data }` where
    /// the data is the `len` bytes at `offset` of the file registered as
    /// `share`, in order with every earlier `Send` on `conn`, then answer
    /// `Served` or `ServeFailed` for `(conn, index)`. The driver frames the
    /// piece and its writer reads the bytes straight from the file; no
    /// piece waits in memory in the machine's queues.
    Serve {
        conn: ConnId,
        share: ShareId,
        index: u32,
        offset: u64,
        len: u32,
    },
    /// Close `conn` (after sending what is queued). The machine has
    /// forgotten it; a later `Closed` for it is ignored.
    Close { conn: ConnId, reason: CloseReason },
}

/// Why the seeder closed a connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CloseReason {
    #[error("refused: {0}")]
    Rejected(RejectReason),
    #[error("protocol violation: {what}")]
    ProtocolViolation { what: &'static str },
    #[error("kept asking for pieces it was refused ({count})")]
    TooManyRefusals { count: u32 },
    /// A limit on connections was reached (`limit` names it, `max` is its
    /// value); the peer may retry later.
    #[error("too many connections: {limit} ({max}) reached; retry later")]
    TooManyConnections { limit: &'static str, max: usize },
    #[error("no ticket shown in time")]
    OpenTimeout,
    #[error("its ticket expired and no fresh one was shown")]
    TicketExpired,
    #[error("idle for too long")]
    IdleTimeout,
    #[error("the file is no longer shared")]
    ShareRemoved,
    #[error("our identity changed (logout or new login)")]
    IdentityChanged,
    #[error("peer closed with an error: {reason}")]
    PeerFatal { reason: Text },
}

/// A share-table command the caller got wrong; nothing was changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShareError {
    #[error("share id {0:?} is already registered")]
    DuplicateId(ShareId),
    #[error("this file is already shared in this group (share {0:?})")]
    DuplicateFile(ShareId),
    #[error("file metadata is inconsistent: {reason}")]
    BadMetadata { reason: Text },
    #[error("piece set has {have} pieces; the file has {expected}")]
    WrongPieceCount { have: u32, expected: u32 },
    #[error("no share {0:?}")]
    UnknownShare(ShareId),
    #[error("piece {index} is out of range (the file has {count})")]
    PieceOutOfRange { index: u32, count: u32 },
}

/// Every deadline the seeder keeps; the key is also the reason it fires.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Timer {
    /// A connection that has not shown a ticket yet.
    Open(ConnId),
    /// A connection silent for `idle_timeout`.
    Idle(ConnId),
    /// The ticket a connection is served under expires (unless a fresh
    /// one is shown on it first).
    Expire(ConnId),
    /// The upload rate limits (global or per connection) allow the next
    /// piece.
    Rate,
}

impl fmt::Display for Timer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Timer::Open(c) => write!(f, "{c} must show a ticket"),
            Timer::Idle(c) => write!(f, "{c} idle"),
            Timer::Expire(c) => write!(f, "{c}'s ticket expires"),
            Timer::Rate => write!(f, "the upload rate limits allow the next piece"),
        }
    }
}

/// Pieces and bytes served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Served {
    pub pieces: u64,
    pub bytes: u64,
}

impl Served {
    pub(crate) fn add(&mut self, bytes: usize) {
        self.pieces += 1;
        self.bytes += bytes as u64;
    }
}

/// Counters for `show_downloads`, traces and the benchmark.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeederStats {
    pub served: Served,
    /// Connections refused at `Open` (any reason).
    pub conns_refused: u64,
    /// Piece requests refused (not held, out of range, busy).
    pub requests_refused: u64,
    pub read_failures: u64,
}
