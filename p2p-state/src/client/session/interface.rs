//! What the session machine shows its owner: [`SessionConfig`], the
//! inputs, outputs and events, the errors a command can end in, the
//! timer reasons, and the session's limit, [`PENDING_MAX`].

use bytes::Bytes;
use p2p_proto::{
    ClientRequest, FileName, GroupName, Hello, KeyId, PeerInfo, Reply, Request, SeederKey, Text,
    TrackerError, UserName, Wire,
};
use std::net::SocketAddr;

use crate::time::Duration;

/// A user command's number, chosen by the caller; results carry it back.
pub type CommandTag = u64;

/// Most commands waiting for an answer at once.
pub const PENDING_MAX: usize = 1024;

#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Trackers in `tracker_info.txt` order.
    pub trackers: Vec<SocketAddr>,
    /// Which of them to try first.
    pub first: usize,
    /// A request unanswered this long means the tracker is gone.
    pub request_timeout: Duration,
    /// With nothing in flight, ping this often (liveness both ways).
    pub ping_interval: Duration,
    /// Wait between `NotReady` retries on the same tracker.
    pub not_ready_retry: Duration,
    /// `NotReady` answers in a row before moving to the next tracker.
    pub not_ready_max: u32,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// The key each tracker must present, by position in `trackers`:
    /// pinned in `tracker_info.txt` or learned on first contact (kept in
    /// the data directory's `known_trackers`); `None` is not pinned yet.
    pub tracker_keys: Vec<Option<KeyId>>,
}

impl SessionConfig {
    pub fn new(trackers: Vec<SocketAddr>, first: usize) -> Self {
        let tracker_keys = vec![None; trackers.len()];
        SessionConfig {
            tracker_keys,
            trackers,
            first,
            request_timeout: Duration::from_secs(3),
            ping_interval: Duration::from_secs(1),
            not_ready_retry: Duration::from_millis(200),
            not_ready_max: 15,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
        }
    }
}

/// Why a command did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Tracker(#[from] TrackerError),
    #[error("no tracker reachable (tried {tried}); retrying in the background")]
    NoTracker { tried: String },
    #[error("too many commands in flight (wait for some to finish)")]
    Busy,
    /// The tracker's metadata for a download does not hold together
    /// (`download::check_meta`); nothing was started.
    #[error("refusing to download {file}: {error}")]
    BadMetadata {
        file: p2p_proto::FileName,
        error: crate::download::DownloadError,
    },
}

/// Connection number: stale events from an old connection are ignored.
pub type SessionConn = u64;

/// What the owner tells the session.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionInput {
    /// Start a user command; its result comes back as
    /// [`SessionOutput::Done`] with `tag`.
    Command {
        tag: CommandTag,
        req: Request,
    },
    /// The connection of a [`SessionOutput::Connect`] is up and its TLS
    /// handshake done; `peer` is the key the tracker proved it holds.
    Connected {
        conn: SessionConn,
        peer: KeyId,
    },
    ConnectFailed {
        conn: SessionConn,
    },
    /// One frame from the tracker.
    Frame {
        conn: SessionConn,
        payload: Bytes,
    },
    Closed {
        conn: SessionConn,
    },
}

/// What a session sends its tracker: the hello that opens the
/// connection, then requests (the driver frames them, as it does a
/// seeder's [`PeerOut`](crate::client::node::PeerOut)).
#[derive(Debug, Clone, PartialEq)]
pub enum TrackerOut {
    Hello(Hello),
    Request(ClientRequest),
}

impl TrackerOut {
    /// The message's encoding (a frame's payload).
    pub fn to_bytes(&self) -> Bytes {
        match self {
            TrackerOut::Hello(h) => h.to_bytes(),
            TrackerOut::Request(r) => r.to_bytes(),
        }
    }

    /// Appends the message as a whole frame (length header, payload).
    pub fn encode_frame(&self, out: &mut bytes::BytesMut) {
        match self {
            TrackerOut::Hello(h) => p2p_proto::encode_msg(h, out),
            TrackerOut::Request(r) => p2p_proto::encode_msg(r, out),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum SessionOutput {
    /// Open a TCP connection to `addr`; answer with
    /// [`SessionInput::Connected`] or [`SessionInput::ConnectFailed`] for
    /// `conn`.
    Connect {
        conn: SessionConn,
        addr: SocketAddr,
    },
    /// Put this message on connection `conn`.
    Send {
        conn: SessionConn,
        msg: TrackerOut,
    },
    Close {
        conn: SessionConn,
    },
    /// Tracker `index` was not pinned and proved `key` on first contact
    /// (trust on first use): keep the pin (the data directory's
    /// `known_trackers`); the session holds it from now on.
    PinTracker {
        index: usize,
        key: KeyId,
    },
    /// A command finished.
    Done {
        tag: CommandTag,
        result: Result<Reply, ClientError>,
    },
    Event(SessionEvent),
}

#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    /// One line for the user: the tracker changed.
    FailedOver {
        from: SocketAddr,
        to: SocketAddr,
    },
    /// Logged in (the seeder learns its identity; shares are re-announced).
    LoggedIn {
        user: UserName,
        seeder_key: SeederKey,
    },
    /// Resumed on another tracker (shares are re-announced there too).
    Resumed {
        user: UserName,
    },
    LoggedOut,
    /// The session is gone (ended elsewhere or expired): log in again.
    SessionLost,
    /// The tracker said something unprompted.
    Notice(Text),
    /// The tracker told us of new sources of a file we asked the peers of
    /// (`FromTracker::Peers`); the node hands them to the download.
    Peers {
        group: GroupName,
        file: FileName,
        peers: Vec<PeerInfo>,
    },
    /// No tracker answers; retrying in the background.
    Unreachable,
    /// A tracker presented another key than the one pinned for it: the
    /// connection was closed before anything was sent, and the session
    /// moved on to the next tracker. Its `Display` is the user's line.
    TrackerKeyRefused(KeyMismatch),
}

/// A tracker proved `presented` but `pinned` is the key it must have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "tracker {addr} presented key {presented} but it is pinned to {pinned} \
     (tracker_info.txt or <data dir>/known_trackers); nothing was sent to it; \
     if its key really changed, update that line"
)]
pub struct KeyMismatch {
    pub index: usize,
    pub addr: SocketAddr,
    pub presented: KeyId,
    pub pinned: KeyId,
}

/// The session's deadlines; the key is the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    Request,
    Ping,
    Reconnect,
    Retry,
}
