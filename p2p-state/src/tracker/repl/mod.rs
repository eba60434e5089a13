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
//!   client ops are written to disk ([`Persist::Resubmit`]) before
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
//!
//! The files, one concern each (all of them `impl Repl`, except the data
//! ones):
//! - `interface.rs`: what the owner and the machine say to each other:
//!   [`ReplConfig`], [`ReplInput`], [`ReplOutput`], [`ReplEvent`], [`Role`]
//!   and the timer reasons;
//! - `epoch.rs`: epoch numbers, and elections: following a higher epoch,
//!   stepping down, becoming primary on a primary timeout;
//! - `liveness.rs`: connections, "heard from", heartbeats and silent peers;
//! - `primary.rs`: the primary's side of log shipping: proposals, appends
//!   within each follower's window, acks, the confirmed point, commit;
//! - `backup.rs`: the backup's side: following the primary, appending its
//!   entries, caught up or not;
//! - `catch_up.rs`: catch-up by log suffix or snapshot, both sides;
//! - `applying.rs`: from durable to applied: a persisted log shipped or
//!   acked, entries applied in order, answering who waits, local snapshots
//!   that compact the log;
//! - `forward.rs`: client writes a backup forwards to the primary;
//! - `resubmit.rs`: divergent client ops kept on disk, re-submitted, and
//!   answered (applied, found applied, or recorded as conflicts);
//! - `log.rs`: the in-memory log and the fork point; `snapshot.rs`: what a
//!   snapshot carries and its encoding;
//! - `tests/`: scenarios on a toy state in an in-memory cluster, one file
//!   per concern as above.

mod applying;
mod backup;
mod catch_up;
mod epoch;
mod forward;
mod interface;
mod liveness;
mod log;
mod primary;
mod resubmit;
pub mod snapshot;
#[cfg(test)]
mod tests;

pub use Timer as ReplTimer;
pub use catch_up::SNAPSHOT_LEN_MAX;
pub use epoch::{EPOCH_AHEAD_MAX, ROUND_MAX, epoch_primary, epoch_round, make_epoch};
pub use interface::{ReplConfig, ReplEvent, ReplInput, ReplOutput, Role, Timer};
pub use log::{Log, fork_point};
pub use snapshot::Snapshot;

use catch_up::SnapshotRx;
use resubmit::ResubmitFrom;

use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use p2p_proto::{
    ClientRequest, DecodeError, Entry, KeyId, LogPos, Op, OpKind, Origin, Outcome, ReplMsg,
    Sha1Hash, Text, TrackerError, TrackerId, TrackerStatus,
};

use crate::machine::Outbox;
use crate::time::{Duration, Instant};
use crate::timer::TimerTable;
use crate::tracker::storage::Persist;

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
    /// Mirrored on disk by `Persist::Resubmit`.
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
