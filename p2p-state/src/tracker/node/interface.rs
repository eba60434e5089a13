//! What the driver and the tracker machine say to each other: the node's
//! configuration and its connection limits, the inputs, the outputs (and
//! the messages they carry), the events a driver logs, what the data
//! directory held, and the timer reasons.

use super::*;

/// Most client connections one tracker holds (the default of
/// [`NodeConfig::client_conns_max`]; a driver lowers it to what its
/// descriptor limit allows).
pub const CLIENT_CONNS_MAX: usize = 10_000;
/// Most connections accepted from one source address at once, peer
/// trackers' included (issue 16 §3: one host cannot take every slot).
pub const CONNS_PER_ADDR_MAX: usize = 64;
/// A client connection that sends nothing for this long is closed (issue
/// 16 §1). Clients ping every second when idle (`SessionConfig`'s
/// `ping_interval`) and answer-less requests time out in seconds, so only
/// a silent or stuck peer gets there.
pub const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// A frame that has started to arrive must be whole within this (the
/// drivers' readers; `runtime_common::conn::FRAME_TIMEOUT` is the same
/// for every other connection). A 516 KiB piece frame gets it whole over
/// a link of 26 KiB/s.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub id: TrackerId,
    /// Every tracker of the group with its address (this one included).
    pub trackers: Vec<(TrackerId, SocketAddr)>,
    pub state: TrackerConfig,
    pub repl: ReplConfig,
    /// A client whose connection dropped is shown offline (its seeding
    /// withdrawn) after this long, unless it came back.
    pub offline_grace: Duration,
    /// A connection that does not say hello within this is closed.
    pub hello_timeout: Duration,
    /// A client connection silent this long is closed
    /// ([`CLIENT_IDLE_TIMEOUT`]).
    pub client_idle_timeout: Duration,
    /// A frame whose first byte has come must be whole within this, or
    /// the driver's reader cuts the connection (issue 16 §1, slowloris).
    /// The machine does not use it; the driver does. Default
    /// [`FRAME_TIMEOUT`] (`tracker --frame-timeout-secs`).
    pub frame_timeout: Duration,
    /// Most accepted connections at once, peer trackers' (pinned keys)
    /// not counted ([`CLIENT_CONNS_MAX`]).
    pub client_conns_max: usize,
    /// Most accepted connections from one address ([`CONNS_PER_ADDR_MAX`]).
    pub conns_per_addr_max: usize,
    pub redial_min: Duration,
    pub redial_max: Duration,
    /// The key each tracker must present, by position in `trackers`:
    /// pinned in `tracker_info.txt` or learned on first contact (then kept
    /// in the data directory's `known_trackers`); `None` is not pinned yet
    /// (trust on first use, announced by [`Output::PinTracker`]).
    pub tracker_keys: Vec<Option<KeyId>>,
    /// Planted bug (test switch): a peer tracker's key is never checked.
    /// Always false outside the simulator's teeth tests.
    #[doc(hidden)]
    pub bug_skip_tracker_key_check: bool,
}

impl NodeConfig {
    pub fn new(
        id: TrackerId,
        trackers: Vec<(TrackerId, SocketAddr)>,
        state: TrackerConfig,
    ) -> Self {
        let ids = trackers.iter().map(|(t, _)| *t).collect();
        let tracker_keys = vec![None; trackers.len()];
        NodeConfig {
            id,
            trackers,
            state,
            repl: ReplConfig::new(id, ids),
            offline_grace: Duration::from_secs(5),
            hello_timeout: Duration::from_secs(10),
            client_idle_timeout: CLIENT_IDLE_TIMEOUT,
            frame_timeout: FRAME_TIMEOUT,
            client_conns_max: CLIENT_CONNS_MAX,
            conns_per_addr_max: CONNS_PER_ADDR_MAX,
            redial_min: Duration::from_millis(100),
            redial_max: Duration::from_secs(5),
            tracker_keys,
            bug_skip_tracker_key_check: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A connection came in and its TLS handshake is done; `peer` is the
    /// key it proved it holds.
    Accepted {
        conn: ConnId,
        addr: SocketAddr,
        peer: KeyId,
    },
    /// A connection we asked for (an [`Output::Dial`]) is up, TLS done;
    /// `peer` is the key the other end proved it holds.
    Dialed {
        conn: ConnId,
        tracker: TrackerId,
        peer: KeyId,
    },
    DialFailed {
        tracker: TrackerId,
    },
    /// One whole frame's payload.
    Frame {
        conn: ConnId,
        payload: Bytes,
    },
    /// The connection's byte stream is not valid framing.
    BadFraming {
        conn: ConnId,
        error: FrameError,
    },
    Closed {
        conn: ConnId,
    },
    /// The log is durable through this index.
    Persisted {
        index: u64,
    },
    /// The argon2 work of an [`Output::Password`] is done.
    PasswordDone {
        job: u64,
        done: PasswordDone,
    },
    Console(ConsoleCmd),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleCmd {
    Status,
    Conflicts,
}

/// A console command's answer, typed: the driver's presentation turns it
/// into lines (`runtime_common::present::console_lines`).
#[derive(Debug, Clone, PartialEq)]
pub enum ConsoleAnswer {
    /// `status`: this tracker's replication status.
    Status {
        status: p2p_proto::TrackerStatus,
        /// This tracker is the primary.
        primary: bool,
        /// The peer trackers connected, by id.
        trackers: Vec<TrackerId>,
    },
    /// `conflicts`: the replicated conflict log, oldest first.
    Conflicts(Vec<crate::tracker::state::Conflict>),
}

/// A message to put on a connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    Hello(Hello),
    Client(FromTracker),
    Repl(ReplMsg),
}

impl Outgoing {
    /// Appends this message as one frame.
    pub fn encode_frame(&self, out: &mut BytesMut) {
        match self {
            Outgoing::Hello(m) => encode_msg(m, out),
            Outgoing::Client(m) => encode_msg(m, out),
            Outgoing::Repl(m) => encode_msg(m, out),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Send {
        conn: ConnId,
        msg: Outgoing,
    },
    /// Close after what was sent before has gone out.
    Close {
        conn: ConnId,
        why: Text,
    },
    Dial {
        tracker: TrackerId,
        addr: SocketAddr,
    },
    /// Make `write` durable, in order with the other writes (see
    /// [`Persist`]); appends report [`Input::Persisted`].
    Persist(Persist),
    /// Run `work` ([`PasswordWork::run`]) off the machine's thread and
    /// report [`Input::PasswordDone`] with the same `job`.
    Password {
        job: u64,
        work: PasswordWork,
    },
    /// Tracker `tracker` was not pinned and proved `key` on first contact:
    /// the driver keeps the pin (the data directory's `known_trackers`) and
    /// tells the operator, loudly, how to pin it explicitly.
    PinTracker {
        tracker: TrackerId,
        key: KeyId,
    },
    Event(TrackerEvent),
}

/// What a driver logs.
#[derive(Debug, Clone, PartialEq)]
pub enum TrackerEvent {
    /// The seed's line: "Connected to peer tracker".
    ConnectedToTracker {
        tracker: TrackerId,
    },
    DisconnectedFromTracker {
        tracker: TrackerId,
    },
    ClientConnected {
        conn: ConnId,
        addr: SocketAddr,
    },
    ClientGone {
        conn: ConnId,
    },
    /// A peer tracker connection refused for its key (impostor, or a
    /// tracker whose key changed); its `Display` tells the operator what
    /// to do.
    TrackerKeyRefused(KeyRefused),
    /// A peer sent something we refuse; its connection is being closed.
    BadInput {
        conn: ConnId,
        addr: Option<SocketAddr>,
        error: String,
    },
    Repl(ReplEvent),
    /// A console command's answer.
    Console(ConsoleAnswer),
}

/// The node's own deadlines (replication keeps its own table); the key is
/// the reason. Expired in key order: hellos, redials, then sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NodeTimer {
    /// A connection that has not said hello is closed.
    Hello(ConnId),
    /// A client connection silent for [`NodeConfig::client_idle_timeout`]
    /// is closed.
    Idle(ConnId),
    /// Dial a tracker again (after a failure, with backoff).
    Redial(TrackerId),
    /// A session whose connection dropped is shown offline.
    Offline(SessionToken),
    /// Primary: end the sessions past their lifetimes (every
    /// [`SESSION_SWEEP`]).
    SessionSweep,
    /// New sources held back by [`super::PUSH_INTERVAL`] are pushed.
    Push,
}

/// Why a tracker asks to be woken up ([`Tracker::poll_timeout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackerTimer {
    Repl(ReplTimer),
    Node(NodeTimer),
}
