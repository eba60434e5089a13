//! Tracker replication: one primary per epoch sequences ops, backups apply
//! its log in order, a tracker that (re)joins catches up by log suffix or
//! snapshot, and after a partition the higher epoch wins while the loser's
//! divergent client ops are re-submitted (or recorded as conflicts).
//!
//! The protocol is `docs/REPLICATION.md`; its main points, as implemented here:
//! - **Epochs name their primary.** `epoch = round << 16 | (0xffff - id)`, so
//!   two trackers can never start the same epoch ("at most one primary per
//!   epoch" holds by construction), a higher round wins, and at an equal
//!   round the lower id wins, as the page asks.
//! - **Catch-up is started by the primary** with an explicit
//!   [`ReplMsg::CatchUp`] carrying the fork point, so both sides agree on
//!   what is divergent. A divergent backup keeps its own log and state until
//!   the primary's snapshot has arrived (if the primary dies meanwhile, the
//!   backup has lost nothing).
//! - **Persistence is an output.** Entries go out as [`ReplOutput::Persist`];
//!   the primary sends an entry to backups only once it is persisted
//!   locally, a backup acks only what it has persisted, and a client is
//!   answered only after every in-sync backup acked. Backups apply an entry
//!   as soon as it is persisted, so a client that fails over reads its own
//!   writes.
//! - **Reachability is "heard from", not "connected"** (issue 17). A host
//!   that vanishes (power lost, cable pulled) sends no close, and TCP may
//!   take many minutes to report its socket dead. So every tracker sends
//!   something to every connected peer each `heartbeat` (the primary its
//!   heartbeat, a backup [`ReplMsg::Alive`]), and a peer not heard from
//!   within `peer_timeout` counts as disconnected at once
//!   ([`ReplOutput::PeerSilent`]: the owner closes that connection and
//!   redials as after a close). A backup whose primary went silent takes
//!   over right then if it is the lowest id among the trackers it still
//!   hears. Bounds with the defaults: a silent peer is given up within
//!   `peer_timeout + heartbeat` (1.2 s) of the last message it sent, and a
//!   silent primary is replaced within that bound too.
//! - **Conflicts are replicated.** A divergent op that no longer applies is
//!   logged as an `OpKind::RecordConflict` entry, so the conflict log is
//!   part of the replicated, durable state (console `conflicts` on any
//!   tracker); its re-submitter is answered once that entry is applied, and
//!   a conflict record that itself ends up in a divergent log is
//!   re-submitted like a client op.
//! - **Re-submission is durable and acknowledged.** A joiner's divergent
//!   client ops are written to disk ([`ReplOutput::PersistResubmit`]) before
//!   its log is replaced, re-sent to every primary it becomes in sync with,
//!   and dropped only when the primary answered (`ForwardReply` with the
//!   same `fwd`: applied, found applied already, or a recorded conflict).
//!   A joiner that becomes primary itself re-submits them to itself. The
//!   primary finds an op it already holds by its request origin in its log
//!   (every entry after the confirmed point is kept in memory) or in the
//!   stored outcomes, so a re-submitted request never applies twice.
//! - **Confirmed point.** The primary tells backups the highest index every
//!   tracker of the group holds (`confirmed` in heartbeats and appends).
//!   Entries up to it can never become divergent; entries after it are not
//!   compacted away (up to `unconfirmed_keep_max`), so divergent ops are
//!   always still in some log to be re-submitted.
//! - **Snapshots carry their history** (`snapshot.rs`): the epoch runs (a log
//!   that starts at a snapshot still knows the epochs before it, so fork
//!   points stay exact) and the unconfirmed tail of entries (a tracker that
//!   installs a snapshot, or restarts from one, still holds every entry that
//!   could turn out divergent).
//! - A backup counts itself in sync only after the current primary's
//!   `CatchUp` in this epoch (before it, its log may hold a divergent suffix
//!   as long as the primary's).
//!
//! The machine is generic over the replicated state ([`Replicated`]), so it
//! is tested here with a toy state and used with the tracker's real one.

mod backup;
mod log;
mod primary;
pub mod snapshot;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_epoch;

pub use Timer as ReplTimer;
pub use log::{Log, fork_point};

use bytes::{Bytes, BytesMut};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use p2p_proto::{
    ClientRequest, DecodeError, Entry, EpochStart, KeyId, LogPos, Op, OpKind, Origin, Outcome,
    ReplMsg, Sha1Hash, Text, TrackerError, TrackerId, TrackerStatus,
};

use crate::machine::Outbox;
use crate::time::{Duration, Instant};
use crate::timer::TimerTable;

/// The state a [`Repl`] keeps identical on every tracker.
pub trait Replicated: Default {
    /// The only way the state changes. Deterministic and total.
    fn apply(&mut self, op: &Op) -> Outcome;
    fn digest(&self) -> Sha1Hash;
    fn encode_snapshot(&self) -> Bytes;
    fn decode_snapshot(b: Bytes) -> Result<Self, DecodeError>;
    /// Re-checks an op from a divergent log; `Err` is a conflict.
    fn revalidate(&self, op: &Op) -> Result<(), TrackerError>;
    /// The stored outcome of a request already applied, if any.
    fn recorded(&self, origin: &Origin) -> Option<Outcome>;
    /// The reason a conflict record for request `origin` holds, if the
    /// conflict log has one.
    fn conflict_of(&self, origin: &Origin) -> Option<TrackerError>;
}

/// Largest snapshot accepted from a primary.
pub const SNAPSHOT_LEN_MAX: u64 = 1 << 30;

/// The highest round an epoch number can carry.
pub const ROUND_MAX: u64 = u64::MAX >> 16;

/// Rounds a peer's epoch may be ahead of ours: an epoch further ahead is
/// refused, not followed (a round is one election, so this is years of
/// elections a second; far more is a bug or an attack, and following it
/// would bring the epoch near overflow).
pub const EPOCH_AHEAD_MAX: u64 = 1 << 20;

/// Builds an epoch number from a round and the primary that starts it;
/// `None` past [`ROUND_MAX`] (the epoch would not fit).
pub fn make_epoch(round: u64, primary: TrackerId) -> Option<u64> {
    (round <= ROUND_MAX).then(|| (round << 16) | (u16::MAX - primary.0) as u64)
}

/// The round of an epoch.
pub fn epoch_round(epoch: u64) -> u64 {
    epoch >> 16
}

/// The primary of an epoch (none for epoch 0, before any election).
pub fn epoch_primary(epoch: u64) -> Option<TrackerId> {
    (epoch != 0).then(|| TrackerId(u16::MAX - (epoch & 0xffff) as u16))
}

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
    /// Make the on-disk log end at `from_index - 1`, then append `entries`;
    /// report completion with [`ReplInput::Persisted`].
    Persist {
        from_index: u64,
        entries: Vec<Entry>,
    },
    /// Store a snapshot of the state at `at` (`data` in the layout of
    /// [`snapshot::encode_snapshot`]). `reset_log`: the whole local log is
    /// replaced (a snapshot from the primary); otherwise only records up to
    /// `at` may be dropped (local compaction).
    PersistSnapshot {
        at: LogPos,
        data: Bytes,
        reset_log: bool,
    },
    /// Replace the stored set of ops waiting for re-submission with
    /// `entries` (the divergent entries they came in). Executed in order
    /// with the other persist outputs: it is durable before the log
    /// truncation that follows it.
    PersistResubmit {
        entries: Vec<Entry>,
    },
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

/// A backup as the primary sees it.
#[derive(Debug, Clone)]
struct Follower {
    /// The request this follower was caught up for, and when (duplicates of
    /// it within a primary timeout are ignored).
    asked: (LogPos, Instant),
    in_sync: bool,
    /// Last index sent (entries after it go next).
    sent: u64,
    acked: u64,
}

/// Who waits for a re-submitted op to be applied on the primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResubmitFrom {
    /// A backup, answered with `ForwardReply { fwd }`.
    Peer(TrackerId, u64),
    /// This tracker's own queue (it became primary with ops pending): the
    /// entry's key there.
    Local((u64, u64)),
}

/// A decoded snapshot: the state at `at`, with the log tail and the epoch
/// history that travel with it (see [`snapshot`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot<S> {
    pub at: LogPos,
    /// The tail follows on from here (every tracker holds the log so far).
    pub base: LogPos,
    pub history: Vec<EpochStart>,
    /// Entries `base+1..=at`, already applied in `state`.
    pub tail: Vec<Entry>,
    pub state: S,
}

/// What a tracker found on its disk, for [`Repl::recover`].
#[derive(Debug)]
pub struct Durable<S> {
    /// The last snapshot.
    pub snapshot: Option<Snapshot<S>>,
    /// The log records after the snapshot (a torn tail already cut off).
    pub entries: Vec<Entry>,
    /// Divergent entries still waiting for re-submission.
    pub resubmit: Vec<Entry>,
}

impl<S> Default for Durable<S> {
    fn default() -> Self {
        Durable {
            snapshot: None,
            entries: Vec::new(),
            resubmit: Vec::new(),
        }
    }
}

impl<S: Replicated> Snapshot<S> {
    /// Decodes a snapshot taken at `at` ([`snapshot::encode_snapshot`]
    /// layout); its tail must end at `at`.
    pub fn decode(at: LogPos, data: Bytes) -> Result<Self, DecodeError> {
        let p = snapshot::decode_snapshot(data)?;
        let end = p.tail.last().map_or(p.base, |e| e.pos);
        if end != at {
            return Err(DecodeError::Invalid {
                field: "snapshot tail",
                reason: "does not end at the snapshot's position",
            });
        }
        Ok(Snapshot {
            at,
            base: p.base,
            history: p.history,
            tail: p.tail,
            state: S::decode_snapshot(p.state)?,
        })
    }

    /// The log this snapshot starts: its tail, after its history.
    fn log(history: &[EpochStart], base: LogPos, tail: Vec<Entry>) -> Log {
        let mut log = Log::with_history(base, history);
        for e in tail {
            log.push(e);
        }
        log
    }
}

/// A snapshot being received.
#[derive(Debug)]
struct SnapshotRx {
    at: LogPos,
    total: u64,
    buf: BytesMut,
}

#[derive(Debug)]
pub struct Repl<S: Replicated> {
    cfg: ReplConfig,
    state: S,
    log: Log,
    epoch: u64,
    role: Role,
    persisted: u64,
    applied: u64,
    connected: BTreeSet<TrackerId>,
    /// When each connected peer was last heard from (any message).
    heard: BTreeMap<TrackerId, Instant>,
    timers: TimerTable<Timer>,
    out: Outbox<ReplOutput>,
    // primary side
    followers: BTreeMap<TrackerId, Follower>,
    waiters: BTreeMap<u64, Vec<u64>>,
    uncommitted_since: VecDeque<(u64, Instant)>,
    // backup side
    primary_heard: Instant,
    primary_last: u64,
    caught_up: bool,
    mismatch_sent: bool,
    pending_fork: Option<u64>,
    snapshot_rx: Option<SnapshotRx>,
    fwd_next: u64,
    fwd_pending: BTreeMap<u64, u64>,
    fwd_done: BTreeMap<u64, Vec<(u64, Outcome)>>,
    /// Divergent entries whose client ops wait for the primary's answer,
    /// in log order (keyed by index, then epoch); one per request origin.
    /// Mirrored on disk by `PersistResubmit`.
    resubmit: BTreeMap<(u64, u64), Entry>,
    /// `fwd` of each re-submission sent and not answered yet.
    resubmit_sent: BTreeMap<u64, (u64, u64)>,
    /// `resubmit` changed since it was last persisted.
    resubmit_dirty: bool,
    /// Got the current primary's `CatchUp` in this epoch.
    catch_up_seen: bool,
    /// Every tracker of the group holds our log through here.
    confirmed: u64,
    /// Primary: re-submitted ops that failed when applied, to be logged as
    /// conflict records (with who waits for them) once `apply_through` is
    /// done.
    conflicts_due: Vec<(Op, TrackerError, Vec<ResubmitFrom>)>,
    snapshot_at: u64,
    /// A snapshot installed from the primary, acked once it is persisted.
    snapshot_ack: Option<LogPos>,
    /// Primary: who waits for the re-submitted op at each log index (one
    /// that fails when applied is a conflict too).
    resubmit_waiters: BTreeMap<u64, Vec<ResubmitFrom>>,
}

impl<S: Replicated> Repl<S> {
    /// A tracker with an empty state and log.
    pub fn new(cfg: ReplConfig, now: Instant) -> Self {
        Self::recover(cfg, Durable::default(), now)
    }

    /// A tracker rebuilt from its disk: the last snapshot, then the log
    /// records after it (a torn tail already cut off by the storage code),
    /// and the ops still waiting for re-submission.
    pub fn recover(cfg: ReplConfig, disk: Durable<S>, now: Instant) -> Self {
        let Durable {
            snapshot,
            entries,
            resubmit,
        } = disk;
        let (start, log, state) = match snapshot {
            Some(s) => (
                s.at,
                Snapshot::<S>::log(&s.history, s.base, s.tail),
                s.state,
            ),
            None => (LogPos::default(), Log::default(), S::default()),
        };
        let mut r = Repl {
            state,
            log,
            epoch: start.epoch,
            role: Role::Backup,
            persisted: start.index,
            applied: start.index,
            connected: BTreeSet::new(),
            heard: BTreeMap::new(),
            timers: TimerTable::new(),
            out: Outbox::new(),
            followers: BTreeMap::new(),
            waiters: BTreeMap::new(),
            uncommitted_since: VecDeque::new(),
            primary_heard: now,
            primary_last: 0,
            caught_up: false,
            mismatch_sent: false,
            pending_fork: None,
            snapshot_rx: None,
            fwd_next: 1,
            fwd_pending: BTreeMap::new(),
            fwd_done: BTreeMap::new(),
            resubmit: BTreeMap::new(),
            resubmit_sent: BTreeMap::new(),
            resubmit_dirty: false,
            catch_up_seen: false,
            confirmed: 0,
            conflicts_due: Vec::new(),
            snapshot_at: start.index,
            snapshot_ack: None,
            resubmit_waiters: BTreeMap::new(),
            cfg,
        };
        r.queue_resubmit(resubmit);
        r.resubmit_dirty = false;
        for e in entries {
            if e.pos.index != r.log.last().index + 1 || e.pos.epoch < r.log.last().epoch {
                break; // storage guarantees order; refuse a gap rather than panic
            }
            r.epoch = r.epoch.max(e.pos.epoch);
            r.log.push(e);
        }
        r.persisted = r.log.last().index;
        r.apply_through(r.persisted);
        r.timers
            .set(Timer::PrimaryTimeout, now + r.cfg.primary_timeout);
        r.timers.set(Timer::Heartbeat, now + r.cfg.heartbeat);
        r
    }

    // ------------------------------------------------------------ getters

    pub fn state(&self) -> &S {
        &self.state
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
    pub fn primary(&self) -> Option<TrackerId> {
        match self.role {
            Role::Primary => Some(self.cfg.id),
            Role::Backup => epoch_primary(self.epoch),
        }
    }
    pub fn last(&self) -> LogPos {
        self.log.last()
    }
    pub fn applied(&self) -> u64 {
        self.applied
    }
    pub fn log(&self) -> &Log {
        &self.log
    }
    /// Divergent ops waiting for the primary's answer to their re-submission.
    pub fn resubmit_pending(&self) -> usize {
        self.resubmit.len()
    }
    /// Every tracker of the group holds our log through this index.
    pub fn confirmed(&self) -> u64 {
        self.confirmed
    }

    /// May reads be answered from this tracker's state? The primary always;
    /// a backup while it is caught up with a primary it hears from.
    pub fn can_serve_reads(&self) -> bool {
        match self.role {
            Role::Primary => true,
            Role::Backup => {
                self.caught_up
                    && self.pending_fork.is_none()
                    && self.primary().is_some_and(|p| self.connected.contains(&p))
            }
        }
    }

    /// Can a write be taken here (primary) or forwarded (backup)?
    pub fn can_take_writes(&self) -> bool {
        match self.role {
            Role::Primary => true,
            Role::Backup => self.can_serve_reads(),
        }
    }

    pub fn status(&self) -> TrackerStatus {
        TrackerStatus {
            id: self.cfg.id,
            epoch: self.epoch,
            primary: self.primary(),
            last: self.log.last(),
            applied: self.applied,
            digest: self.state.digest(),
            in_sync: self.can_serve_reads(),
        }
    }

    pub fn poll_output(&mut self) -> Option<ReplOutput> {
        self.out.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<(Instant, Timer)> {
        self.timers.next()
    }

    // ------------------------------------------------------------ commands

    /// Feeds one input (see [`ReplInput`]); drain [`Repl::poll_output`]
    /// afterwards.
    pub fn handle_input(&mut self, now: Instant, input: ReplInput) {
        self.out.check_drained("replication");
        match input {
            ReplInput::Connected(peer) => self.handle_connected(now, peer),
            ReplInput::Disconnected(peer) => self.handle_disconnected(now, peer),
            ReplInput::Persisted(index) => self.handle_persisted(now, index),
            ReplInput::Msg { from, msg } => self.handle_msg(now, from, msg),
            ReplInput::Propose { origin, kind, tag } => {
                if self.propose(now, origin, kind, tag).is_err()
                    && let Some(tag) = tag
                {
                    self.out.push_back(ReplOutput::Abandoned { tag });
                }
            }
            ReplInput::Forward { req, key, tag } => {
                if self.forward(req, key, tag).is_err() {
                    self.out.push_back(ReplOutput::Abandoned { tag });
                }
            }
            ReplInput::ReplyForward {
                to,
                fwd,
                index,
                outcome,
            } => self.reply_forward(to, fwd, index, outcome),
        }
    }

    /// Primary: sequences a new op. Returns its index; `tag` comes back in
    /// [`ReplOutput::Applied`] once it is applied everywhere in sync.
    fn propose(
        &mut self,
        now: Instant,
        origin: Option<Origin>,
        kind: OpKind,
        tag: Option<u64>,
    ) -> Result<u64, TrackerError> {
        if self.role != Role::Primary {
            return Err(TrackerError::NotReady);
        }
        // The same request already logged and not applied yet (a retry
        // through another tracker, or one divergent op re-submitted by two
        // backups): wait for that entry rather than log the request twice.
        if let Some(index) = origin.and_then(|o| self.pending_index_of(o)) {
            if let Some(tag) = tag {
                self.waiters.entry(index).or_default().push(tag);
            }
            return Ok(index);
        }
        let pos = LogPos {
            epoch: self.epoch,
            index: self.log.last().index + 1,
        };
        let entry = Entry {
            pos,
            op: Op {
                at_ms: now.as_millis(),
                origin,
                kind,
            },
        };
        self.log.push(entry.clone());
        if let Some(tag) = tag {
            self.waiters.entry(pos.index).or_default().push(tag);
        }
        if self.uncommitted_since.is_empty() {
            self.timers
                .set(Timer::AckTimeout, now + self.cfg.ack_timeout);
        }
        self.uncommitted_since.push_back((pos.index, now));
        self.out.push_back(ReplOutput::Persist {
            from_index: pos.index,
            entries: vec![entry],
        });
        self.check_invariants();
        Ok(pos.index)
    }

    /// The index of a logged, not yet applied entry for request `o`.
    fn pending_index_of(&self, o: Origin) -> Option<u64> {
        self.log.index_of(&o).filter(|&i| i > self.applied)
    }

    /// Backup: sends a client's write to the primary. The outcome comes back
    /// as [`ReplOutput::Applied`] with `tag` once this tracker applied it.
    fn forward(&mut self, req: ClientRequest, key: KeyId, tag: u64) -> Result<(), TrackerError> {
        let primary = match (self.role, self.primary()) {
            (Role::Backup, Some(p)) if self.can_take_writes() => p,
            _ => return Err(TrackerError::NotReady),
        };
        let fwd = self.fwd_next;
        self.fwd_next += 1;
        self.fwd_pending.insert(fwd, tag);
        self.send(primary, ReplMsg::Forward { fwd, key, req });
        Ok(())
    }

    /// Primary: answers a forwarded write (`index` 0 for a rejection).
    fn reply_forward(&mut self, to: TrackerId, fwd: u64, index: u64, outcome: Outcome) {
        self.send(
            to,
            ReplMsg::ForwardReply {
                fwd,
                index,
                outcome,
            },
        );
    }

    // ------------------------------------------------------------ inputs

    fn handle_connected(&mut self, now: Instant, peer: TrackerId) {
        self.connected.insert(peer);
        self.heard.insert(peer, now);
        self.send(peer, self.join_msg());
        if self.role == Role::Primary {
            self.send(peer, self.heartbeat_msg());
        }
        self.finish(now);
    }

    fn handle_disconnected(&mut self, now: Instant, peer: TrackerId) {
        self.disconnect(now, peer);
        self.finish(now);
    }

    fn disconnect(&mut self, now: Instant, peer: TrackerId) {
        self.connected.remove(&peer);
        self.heard.remove(&peer);
        if let Some(f) = self.followers.remove(&peer)
            && f.in_sync
        {
            self.event(ReplEvent::PeerOutOfSync {
                peer,
                why: "disconnected",
            });
        }
        if self.role == Role::Backup && self.primary() == Some(peer) {
            // Give a dropped connection one heartbeat to come back.
            let soon = now + self.cfg.heartbeat;
            if self
                .timers
                .get(Timer::PrimaryTimeout)
                .is_none_or(|t| t > soon)
            {
                self.timers.set(Timer::PrimaryTimeout, soon);
            }
            self.abandon_forwards();
        }
        self.advance_commit(now);
    }

    /// Peers not heard from within the peer timeout count as gone now;
    /// if our primary is among them, the election runs at once.
    fn drop_silent(&mut self, now: Instant) {
        if self.drop_silent_peers(now) {
            self.on_primary_timeout(now);
        }
    }

    /// Counts peers silent past the peer timeout as disconnected (their
    /// connections to be closed). True if our primary was one of them.
    fn drop_silent_peers(&mut self, now: Instant) -> bool {
        let silent: Vec<(TrackerId, u64)> = self
            .heard
            .iter()
            .map(|(&p, &t)| (p, now.saturating_since(t).0))
            .filter(|&(_, ms)| ms >= self.cfg.peer_timeout.0)
            .collect();
        let mut lost_primary = false;
        for (peer, silent_ms) in silent {
            lost_primary |= self.role == Role::Backup && self.primary() == Some(peer);
            self.disconnect(now, peer);
            self.out.push_back(ReplOutput::PeerSilent { peer });
            self.event(ReplEvent::PeerSilent { peer, silent_ms });
        }
        lost_primary
    }

    /// The driver made the log durable through `index`.
    fn handle_persisted(&mut self, now: Instant, index: u64) {
        let index = index.min(self.log.last().index);
        if let Some(at) = self.snapshot_ack
            && index >= at.index
        {
            // An installed snapshot is durable: ack it.
            self.snapshot_ack = None;
            if let (Role::Backup, Some(p)) = (self.role, self.primary()) {
                self.send(
                    p,
                    ReplMsg::Ack {
                        epoch: self.epoch,
                        last: at,
                    },
                );
            }
        }
        if index <= self.persisted {
            self.finish(now);
            return;
        }
        self.persisted = index;
        match self.role {
            Role::Primary => {
                self.flush_appends();
                self.advance_commit(now);
            }
            Role::Backup => {
                self.apply_through(self.persisted);
                if let Some(p) = self.primary() {
                    let last = self.pos_of(self.persisted);
                    self.send(
                        p,
                        ReplMsg::Ack {
                            epoch: self.epoch,
                            last,
                        },
                    );
                }
                self.update_caught_up();
            }
        }
        self.finish(now);
    }

    fn handle_msg(&mut self, now: Instant, from: TrackerId, msg: ReplMsg) {
        if !self.connected.contains(&from) {
            return; // queued before a disconnect the driver already reported
        }
        self.heard.insert(from, now);
        match msg {
            ReplMsg::Join {
                epoch,
                last,
                epoch_starts,
                ..
            }
            | ReplMsg::Mismatch {
                epoch,
                last,
                epoch_starts,
            } => self.on_join(now, from, epoch, last, &epoch_starts),
            ReplMsg::Heartbeat {
                epoch,
                last,
                confirmed,
                ..
            } => self.on_heartbeat(now, from, epoch, last, confirmed),
            ReplMsg::Append {
                epoch,
                prev,
                entries,
                confirmed,
            } => self.on_append(now, from, epoch, prev, entries, confirmed),
            ReplMsg::Ack { epoch, last } => self.on_ack(now, from, epoch, last),
            ReplMsg::CatchUp {
                epoch,
                fork,
                snapshot,
            } => self.on_catch_up(now, from, epoch, fork, snapshot),
            ReplMsg::SnapshotChunk {
                epoch,
                at,
                offset,
                total,
                data,
            } => self.on_snapshot_chunk(now, from, epoch, at, offset, total, data),
            ReplMsg::Forward { fwd, key, req } => self.on_forward(from, fwd, key, req),
            ReplMsg::ForwardReply {
                fwd,
                index,
                outcome,
            } => self.on_forward_reply(fwd, index, outcome),
            ReplMsg::Resubmit { fwd, op } => {
                self.on_resubmit(now, ResubmitFrom::Peer(from, fwd), op)
            }
            ReplMsg::Fatal { reason } => self.event(ReplEvent::PeerError {
                peer: from,
                what: reason,
            }),
            ReplMsg::Alive { .. } => {} // heard: that is all it says
        }
        self.finish(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.out.check_drained("replication");
        for t in self.timers.expire(now) {
            match t {
                Timer::Heartbeat => self.on_heartbeat_timer(now),
                Timer::PrimaryTimeout => self.on_primary_timeout(now),
                Timer::AckTimeout => self.on_ack_timeout(now),
            }
        }
        self.finish(now);
    }

    // ------------------------------------------------------------ epochs and roles

    /// Adopts a higher epoch seen in any message from `from`. Returns true
    /// if it did. An implausible one ([`Repl::implausible_epoch`]) is
    /// refused and reported: the caller then ignores the message
    /// (`epoch > self.epoch` still holds).
    fn observe_epoch(&mut self, now: Instant, from: TrackerId, epoch: u64) -> bool {
        if epoch <= self.epoch {
            return false;
        }
        if let Some(why) = self.implausible_epoch(epoch) {
            self.event(ReplEvent::PeerError {
                peer: from,
                what: Text::new(format!("epoch {epoch} refused: {why}")),
            });
            return false;
        }
        if self.role == Role::Primary {
            self.step_down();
        }
        self.abandon_forwards();
        self.epoch = epoch;
        self.role = Role::Backup;
        self.caught_up = false;
        // What the old primary's log reached says nothing about the new one's.
        self.primary_last = 0;
        self.mismatch_sent = false;
        self.catch_up_seen = false;
        self.pending_fork = None;
        self.snapshot_rx = None;
        self.primary_heard = now;
        self.timers.clear(Timer::AckTimeout);
        self.timers
            .set(Timer::PrimaryTimeout, now + self.cfg.primary_timeout);
        if let Some(primary) = epoch_primary(epoch) {
            self.event(ReplEvent::Following { primary, epoch });
        }
        true
    }

    /// Why a peer's higher `epoch` cannot be followed: its primary is not a
    /// tracker of the group, or it is more than [`EPOCH_AHEAD_MAX`] rounds
    /// ahead of ours.
    fn implausible_epoch(&self, epoch: u64) -> Option<String> {
        let primary = epoch_primary(epoch)?;
        if !self.cfg.trackers.contains(&primary) {
            return Some(format!(
                "its primary {primary} is not a tracker of the group"
            ));
        }
        let ahead = epoch_round(epoch).saturating_sub(epoch_round(self.epoch));
        (ahead > EPOCH_AHEAD_MAX).then(|| {
            format!("{ahead} rounds ahead of ours (at most {EPOCH_AHEAD_MAX} are believable)")
        })
    }

    fn step_down(&mut self) {
        self.followers.clear();
        self.uncommitted_since.clear();
        // Backups re-send their re-submissions to the next primary; ours
        // stay in `resubmit` and go to it too.
        self.resubmit_waiters.clear();
        self.conflicts_due.clear();
        let waiters = std::mem::take(&mut self.waiters);
        for tag in waiters.into_values().flatten() {
            self.out.push_back(ReplOutput::Abandoned { tag });
        }
    }

    fn abandon_forwards(&mut self) {
        let pending = std::mem::take(&mut self.fwd_pending);
        for tag in pending.into_values() {
            self.out.push_back(ReplOutput::Abandoned { tag });
        }
    }

    fn become_primary(&mut self, now: Instant) {
        let next = epoch_round(self.epoch)
            .checked_add(1)
            .and_then(|round| make_epoch(round, self.cfg.id));
        let Some(epoch) = next else {
            // Unreachable with plausible epochs: stay a backup, say why.
            let what = Text::new("epoch rounds exhausted: cannot start a new epoch");
            self.event(ReplEvent::PeerError {
                peer: self.cfg.id,
                what,
            });
            return;
        };
        self.abandon_forwards();
        self.epoch = epoch;
        self.role = Role::Primary;
        self.followers.clear();
        self.caught_up = true;
        self.pending_fork = None;
        self.snapshot_rx = None;
        self.timers.clear(Timer::PrimaryTimeout);
        self.event(ReplEvent::BecamePrimary { epoch: self.epoch });
        // The new epoch's first entry makes the epoch durable in the log.
        let _ = self.propose(now, None, OpKind::Noop, None);
        self.resubmit_sent.clear();
        let own: Vec<((u64, u64), Op)> = self
            .resubmit
            .iter()
            .map(|(k, e)| (*k, e.op.clone()))
            .collect();
        for (key, op) in own {
            self.on_resubmit(now, ResubmitFrom::Local(key), op);
        }
        let hb = self.heartbeat_msg();
        for p in self.connected.clone() {
            self.send(p, hb.clone());
        }
        self.timers.set(Timer::Heartbeat, now + self.cfg.heartbeat);
    }

    fn on_primary_timeout(&mut self, now: Instant) {
        if self.role == Role::Primary {
            return;
        }
        // A peer gone silent must not count as reachable in the election.
        self.drop_silent_peers(now);
        let alive = self.primary().is_some_and(|p| self.connected.contains(&p))
            && now.saturating_since(self.primary_heard) < self.cfg.primary_timeout;
        let lowest = self.connected.iter().copied().chain([self.cfg.id]).min();
        if !alive && lowest == Some(self.cfg.id) {
            // A snapshot we were waiting for will not come from a dead
            // primary; our own log and state are untouched until one is
            // installed, so leading with them loses nothing.
            self.become_primary(now);
            return;
        }
        self.timers
            .set(Timer::PrimaryTimeout, now + self.cfg.primary_timeout);
    }

    // ------------------------------------------------------------ applying

    fn apply_through(&mut self, index: u64) {
        while self.applied < index {
            let i = self.applied + 1;
            let Some(entry) = self.log.get(i) else { break };
            let op = entry.op.clone();
            // planted bug (test switch)
            if self.cfg.bug_skip_one_in_100 && self.role == Role::Backup && i.is_multiple_of(100) {
                self.applied = i;
                continue;
            }
            let outcome = self.state.apply(&op);
            self.applied = i;
            if let Some(waiting) = self.resubmit_waiters.remove(&i) {
                match &outcome {
                    // Answered once the conflict record is applied.
                    Err(reason) => self
                        .conflicts_due
                        .push((op.clone(), reason.clone(), waiting)),
                    Ok(_) => {
                        for from in waiting {
                            self.resubmit_answered(from, i, outcome.clone());
                        }
                    }
                }
            }
            for tag in self.waiters.remove(&i).unwrap_or_default() {
                self.out.push_back(ReplOutput::Applied {
                    tag,
                    index: i,
                    outcome: outcome.clone(),
                });
            }
        }
        let done: Vec<u64> = self
            .fwd_done
            .range(..=self.applied)
            .map(|(&i, _)| i)
            .collect();
        for i in done {
            for (tag, outcome) in self.fwd_done.remove(&i).unwrap_or_default() {
                self.out.push_back(ReplOutput::Applied {
                    tag,
                    index: i,
                    outcome,
                });
            }
        }
        self.maybe_snapshot();
    }

    fn maybe_snapshot(&mut self) {
        if self.applied < self.snapshot_at.saturating_add(self.cfg.snapshot_every) {
            return;
        }
        let at = self.pos_of(self.applied);
        self.snapshot_at = at.index;
        let keep_from = at.index.saturating_sub(self.cfg.log_keep);
        let oldest_needed = self
            .followers
            .values()
            .map(|f| f.sent.min(f.acked))
            .min()
            .unwrap_or(keep_from);
        // Entries not every tracker holds may still turn out divergent:
        // keep them to be re-submitted, within the memory bound.
        let unconfirmed_floor = self
            .confirmed
            .max(at.index.saturating_sub(self.cfg.unconfirmed_keep_max));
        self.log
            .compact_through(keep_from.min(oldest_needed).min(unconfirmed_floor));
        self.out.push_back(ReplOutput::PersistSnapshot {
            at,
            data: self.snapshot_bytes(at.index),
            reset_log: false,
        });
    }

    /// The applied state with its history and unconfirmed tail, as stored
    /// and sent ([`snapshot::encode_snapshot`]).
    fn snapshot_bytes(&self, at: u64) -> Bytes {
        debug_assert_eq!(at, self.applied);
        let base = self
            .confirmed
            .max(self.log.start().index)
            .max(at.saturating_sub(snapshot::SNAPSHOT_TAIL_MAX as u64))
            .min(at);
        let tail: Vec<Entry> = self.log.range(base + 1, at).cloned().collect();
        snapshot::encode_snapshot(
            self.pos_of(base),
            &self.log.history(at),
            &tail,
            &self.state.encode_snapshot(),
        )
    }

    // ------------------------------------------------------------ helpers

    fn pos_of(&self, index: u64) -> LogPos {
        LogPos {
            epoch: self.log.epoch_at(index).unwrap_or(0),
            index,
        }
    }

    fn join_msg(&self) -> ReplMsg {
        ReplMsg::Join {
            id: self.cfg.id,
            epoch: self.epoch,
            primary: self.primary(),
            last: self.log.last(),
            epoch_starts: self.log.epoch_starts(),
        }
    }

    fn heartbeat_msg(&self) -> ReplMsg {
        ReplMsg::Heartbeat {
            epoch: self.epoch,
            primary: self.cfg.id,
            last: self.pos_of(self.persisted),
            confirmed: self.confirmed,
        }
    }

    fn send(&mut self, to: TrackerId, msg: ReplMsg) {
        if self.connected.contains(&to) {
            self.out.push_back(ReplOutput::Send { to, msg });
        }
    }

    fn event(&mut self, e: ReplEvent) {
        self.out.push_back(ReplOutput::Event(e));
    }

    fn finish(&mut self, _now: Instant) {
        if self.resubmit_dirty {
            self.persist_resubmit();
        }
        self.check_invariants();
    }

    /// Writes the re-submission queue as it is now.
    fn persist_resubmit(&mut self) {
        self.resubmit_dirty = false;
        self.out.push_back(ReplOutput::PersistResubmit {
            entries: self.resubmit.values().cloned().collect(),
        });
    }

    /// Panics if the machine's own invariants are broken.
    pub fn check_invariants(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        assert!(self.applied <= self.persisted.max(self.applied));
        assert!(
            self.persisted <= self.log.last().index,
            "persisted past the log"
        );
        assert!(
            self.applied <= self.log.last().index,
            "applied past the log"
        );
        assert!(
            self.log.start().index <= self.applied,
            "compacted unapplied entries"
        );
        assert!(
            self.heard.keys().eq(self.connected.iter()),
            "a connected peer without a last-heard time, or the reverse"
        );
        if self.role == Role::Primary {
            assert_eq!(
                epoch_primary(self.epoch),
                Some(self.cfg.id),
                "primary of a foreign epoch"
            );
            assert!(self.pending_fork.is_none());
            for f in self.followers.values() {
                assert!(f.sent <= self.persisted, "sent unpersisted entries");
            }
        } else {
            assert!(self.followers.is_empty(), "backup with followers");
            assert!(self.waiters.is_empty(), "backup with proposal waiters");
        }
    }
}

impl<S: Replicated> crate::machine::Machine for Repl<S> {
    type Input = ReplInput;
    type Output = ReplOutput;
    type Reason = Timer;
    fn handle_input(&mut self, now: Instant, input: ReplInput) {
        Repl::handle_input(self, now, input)
    }
    fn handle_timeout(&mut self, now: Instant) {
        Repl::handle_timeout(self, now)
    }
    fn poll_output(&mut self) -> Option<ReplOutput> {
        Repl::poll_output(self)
    }
    fn poll_timeout(&self) -> Option<(Instant, Timer)> {
        Repl::poll_timeout(self)
    }
    fn check_invariants(&self) {
        Repl::check_invariants(self)
    }
}
