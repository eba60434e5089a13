//! What the owner and the replication machine say to each other: the
//! configuration, the inputs, the outputs (sends, persistence, answers),
//! the events worth a log line, the roles and the timer reasons.

use super::*;

#[derive(Debug, Clone)]
pub struct ReplConfig {
    pub id: TrackerId,
    /// Every tracker of the group, this one included.
    pub trackers: Vec<TrackerId>,
    /// Every tracker sends to every peer this often (primary: heartbeat,
    /// backup: alive), and checks who went silent.
    pub heartbeat: Duration,
    /// A backup that hears nothing from its primary this long gives it up.
    pub primary_timeout: Duration,
    /// A peer tracker not heard from this long counts as gone, whatever
    /// its connection looks like (detection bound: this plus `heartbeat`).
    pub peer_timeout: Duration,
    pub ack_timeout: Duration,
    /// Write a snapshot every this many applied ops.
    pub snapshot_every: u64,
    /// Entries kept in memory behind a snapshot, for cheap catch-up.
    pub log_keep: u64,
    /// Entries past the confirmed point kept in memory at most (while a
    /// tracker of the group is away): past this, the oldest are compacted
    /// anyway, and if they turn out divergent they are reported `lost`.
    pub unconfirmed_keep_max: u64,
    /// Budget of one `Append` frame.
    pub append_bytes_max: usize,
    /// Most entries sent to a backup and not yet acked.
    pub window_entries: u64,
    /// Planted bug (test switch): a backup skips applying one op in a
    /// hundred. Always false outside the simulator's teeth tests.
    #[doc(hidden)]
    pub bug_skip_one_in_100: bool,
}

impl ReplConfig {
    pub fn new(id: TrackerId, trackers: Vec<TrackerId>) -> Self {
        ReplConfig {
            id,
            trackers,
            heartbeat: Duration::from_millis(200),
            primary_timeout: Duration::from_millis(1000),
            peer_timeout: Duration::from_millis(1000),
            ack_timeout: Duration::from_millis(1000),
            snapshot_every: 10_000,
            log_keep: 5_000,
            unconfirmed_keep_max: 100_000,
            append_bytes_max: 256 * 1024,
            window_entries: 8192,
            bug_skip_one_in_100: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Primary,
    Backup,
}

/// What the owner tells the replication machine.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplInput {
    /// A connection to this peer tracker is up.
    Connected(TrackerId),
    /// The connection to this peer tracker is gone.
    Disconnected(TrackerId),
    /// The driver made the log durable through this index.
    Persisted(u64),
    Msg {
        from: TrackerId,
        msg: ReplMsg,
    },
    /// Primary: sequence a new op; `tag` comes back in
    /// [`ReplOutput::Applied`] once it is applied everywhere in sync, or in
    /// [`ReplOutput::Abandoned`] if this tracker is not the primary.
    Propose {
        origin: Option<Origin>,
        kind: OpKind,
        tag: Option<u64>,
    },
    /// Backup: send a client's write to the primary. The outcome comes
    /// back as [`ReplOutput::Applied`] with `tag` once this tracker applied
    /// it ([`ReplOutput::Abandoned`] if it cannot be forwarded: check
    /// [`Repl::can_take_writes`] first).
    /// `key` is the TLS key of the client's connection (the primary
    /// prepares the write as that key's).
    Forward {
        req: ClientRequest,
        key: KeyId,
        tag: u64,
    },
    /// Primary: answer a forwarded write (`index` 0 for a rejection).
    ReplyForward {
        to: TrackerId,
        fwd: u64,
        index: u64,
        outcome: Outcome,
    },
}

/// What the replication machine asks its owner to do or know.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplOutput {
    Send {
        to: TrackerId,
        msg: ReplMsg,
    },
    /// Make `write` durable, in order with the other writes; appends
    /// report completion with [`ReplInput::Persisted`].
    Persist(Persist),
    /// A proposal or forwarded write took effect (or was refused).
    Applied {
        tag: u64,
        index: u64,
        outcome: Outcome,
    },
    /// A proposal or forwarded write will not be answered here (primary
    /// changed); the client should retry with the same request id.
    Abandoned {
        tag: u64,
    },
    /// Primary only: a backup forwarded a client's write; prepare it and
    /// [`ReplInput::Propose`] it, or [`ReplInput::ReplyForward`] a rejection.
    /// `key`: the client connection's key, as the backup saw it.
    Forwarded {
        from: TrackerId,
        fwd: u64,
        req: ClientRequest,
        key: KeyId,
    },
    /// `peer` said nothing for longer than the peer timeout: it counts as
    /// disconnected already; close its connection (redial as after a
    /// close) and report a new one with [`ReplInput::Connected`].
    PeerSilent {
        peer: TrackerId,
    },
    Event(ReplEvent),
}

/// Things worth a log line, and what the simulator's checkers watch.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplEvent {
    BecamePrimary {
        epoch: u64,
    },
    Following {
        primary: TrackerId,
        epoch: u64,
    },
    InSync {
        primary: TrackerId,
    },
    PeerInSync {
        peer: TrackerId,
    },
    PeerOutOfSync {
        peer: TrackerId,
        why: &'static str,
    },
    /// Nothing from `peer` for `silent_ms` (past the peer timeout): it
    /// counts as gone.
    PeerSilent {
        peer: TrackerId,
        silent_ms: u64,
    },
    SnapshotInstalled {
        at: LogPos,
    },
    /// Our log diverged from the primary's: `resubmitting` client ops go
    /// back to it; `lost` were in our compacted prefix and cannot.
    Diverged {
        fork: u64,
        resubmitting: usize,
        lost: u64,
    },
    /// A divergent op that no longer applies, with why.
    Conflict {
        op: Box<Op>,
        reason: TrackerError,
    },
    /// A peer broke the protocol or sent something unusable.
    PeerError {
        peer: TrackerId,
        what: Text,
    },
}

/// Replication's deadlines; the key is the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    Heartbeat,
    PrimaryTimeout,
    AckTimeout,
}
