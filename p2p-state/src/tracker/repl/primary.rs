//! The primary's half of [`Repl`]: answering joins with a catch-up,
//! streaming appends and snapshots, counting acks, committing, and taking
//! forwarded and re-submitted writes.

use p2p_proto::limits::{APPEND_ENTRIES_MAX, SNAPSHOT_CHUNK_LEN_MAX};
use p2p_proto::{
    ClientRequest, EpochStart, LogPos, Op, Outcome, ReplMsg, Reply, TrackerError, TrackerId,
};

use super::*;
use crate::time::Instant;

impl<S: Replicated> Repl<S> {
    // ------------------------------------------------------------ primary side

    pub(super) fn on_join(
        &mut self,
        now: Instant,
        from: TrackerId,
        epoch: u64,
        last: LogPos,
        starts: &[EpochStart],
    ) {
        if self.observe_epoch(now, from, epoch) {
            self.request_catch_up();
            return;
        }
        if self.role != Role::Primary || epoch > self.epoch {
            return; // a backup, or an epoch refused as implausible
        }
        if epoch < self.epoch {
            self.send(from, self.heartbeat_msg());
        }
        if let Some(f) = self.followers.get(&from)
            && f.asked.0 == last
            && now.saturating_since(f.asked.1) < self.cfg.primary_timeout
        {
            return; // the same request again (a Join and a Mismatch crossed)
        }
        let fork = fork_point(&self.log.epoch_starts(), self.log.last(), starts, last);
        let snapshot = last.index > fork || fork < self.log.start().index;
        self.send(
            from,
            ReplMsg::CatchUp {
                epoch: self.epoch,
                fork,
                snapshot,
            },
        );
        let sent = if snapshot {
            self.send_snapshot(from)
        } else {
            // Entries up to the fork are on the follower already, but only
            // persisted ones count as sent (a new primary may still be
            // writing some): the rest go again, and are skipped there.
            fork.min(self.persisted)
        };
        self.followers.insert(
            from,
            Follower {
                asked: (last, now),
                in_sync: false,
                sent,
                acked: 0,
            },
        );
        self.flush_appends();
        self.check_follower_sync(from);
    }

    /// Streams the current applied state to `to`; returns the index it covers.
    pub(super) fn send_snapshot(&mut self, to: TrackerId) -> u64 {
        let at = self.pos_of(self.applied);
        let data = self.snapshot_bytes(at.index);
        let total = data.len() as u64;
        let mut offset = 0usize;
        loop {
            let end = (offset + SNAPSHOT_CHUNK_LEN_MAX as usize).min(data.len());
            self.send(
                to,
                ReplMsg::SnapshotChunk {
                    epoch: self.epoch,
                    at,
                    offset: offset as u64,
                    total,
                    data: data.slice(offset..end),
                },
            );
            offset = end;
            if offset >= data.len() {
                break;
            }
        }
        at.index
    }

    pub(super) fn on_ack(&mut self, now: Instant, from: TrackerId, epoch: u64, last: LogPos) {
        if self.observe_epoch(now, from, epoch) {
            self.request_catch_up();
            return;
        }
        if self.role != Role::Primary || epoch != self.epoch {
            return;
        }
        let Some(f) = self.followers.get_mut(&from) else {
            return;
        };
        // An ack only counts for entries that are ours.
        if self.log.epoch_at(last.index) == Some(last.epoch) || last.index < self.log.start().index
        {
            f.acked = f.acked.max(last.index);
        }
        self.update_confirmed();
        self.check_follower_sync(from);
        self.flush_appends();
        self.advance_commit(now);
    }

    /// Every tracker of the group follows us: what all of them hold is
    /// confirmed (it can never become divergent).
    pub(super) fn update_confirmed(&mut self) {
        let mut lowest = self.persisted;
        for t in &self.cfg.trackers {
            if *t == self.cfg.id {
                continue;
            }
            match self.followers.get(t) {
                Some(f) => lowest = lowest.min(f.acked),
                None => return,
            }
        }
        self.confirmed = self.confirmed.max(lowest);
    }

    /// A follower joins the in-sync set once it holds everything committed;
    /// from then on, commits wait for its acks.
    pub(super) fn check_follower_sync(&mut self, peer: TrackerId) {
        let last = self.log.last().index;
        if let Some(f) = self.followers.get_mut(&peer)
            && !f.in_sync
            && f.acked >= self.applied.max(1).min(last)
        {
            f.in_sync = true;
            self.event(ReplEvent::PeerInSync { peer });
        }
    }

    /// Sends every follower the persisted entries it has not been sent,
    /// within its window, in frames of at most `append_bytes_max`.
    pub(super) fn flush_appends(&mut self) {
        if self.role != Role::Primary {
            return;
        }
        let peers: Vec<TrackerId> = self.followers.keys().copied().collect();
        for p in peers {
            loop {
                let f = &self.followers[&p];
                let limit = self
                    .persisted
                    .min(f.acked.saturating_add(self.cfg.window_entries));
                if f.sent >= limit {
                    break;
                }
                let (from, mut bytes, mut entries) = (f.sent + 1, 0usize, Vec::new());
                for e in self.log.range(from, limit) {
                    let n = self.log.size_of(e.pos.index);
                    if !entries.is_empty()
                        && (bytes + n > self.cfg.append_bytes_max
                            || entries.len() >= APPEND_ENTRIES_MAX)
                    {
                        break;
                    }
                    bytes += n;
                    entries.push(e.clone());
                }
                let Some(end) = entries.last().map(|e| e.pos.index) else {
                    break; // compacted away: the follower needs a snapshot
                };
                let msg = ReplMsg::Append {
                    epoch: self.epoch,
                    prev: self.pos_of(from - 1),
                    entries,
                    confirmed: self.confirmed,
                };
                self.send(p, msg);
                self.followers.get_mut(&p).expect("follower").sent = end;
            }
        }
    }

    /// Commits what every in-sync follower (and our disk) holds, applies it
    /// and answers the waiters.
    pub(super) fn advance_commit(&mut self, now: Instant) {
        if self.role != Role::Primary {
            return;
        }
        let commit = self
            .followers
            .values()
            .filter(|f| f.in_sync)
            .map(|f| f.acked)
            .chain([self.persisted])
            .min()
            .unwrap_or(self.persisted);
        if commit <= self.applied {
            return;
        }
        self.apply_through(commit);
        for (op, reason, waiting) in std::mem::take(&mut self.conflicts_due) {
            self.conflict_then_answer(now, op, reason, waiting);
        }
        while self
            .uncommitted_since
            .front()
            .is_some_and(|&(i, _)| i <= self.applied)
        {
            self.uncommitted_since.pop_front();
        }
        match self.uncommitted_since.front() {
            Some(&(_, since)) => self
                .timers
                .set(Timer::AckTimeout, since + self.cfg.ack_timeout),
            None => self.timers.clear(Timer::AckTimeout),
        }
        let _ = now;
    }

    pub(super) fn on_ack_timeout(&mut self, now: Instant) {
        if self.role != Role::Primary {
            return;
        }
        let Some(&(index, since)) = self.uncommitted_since.front() else {
            return;
        };
        if now.saturating_since(since) < self.cfg.ack_timeout {
            self.timers
                .set(Timer::AckTimeout, since + self.cfg.ack_timeout);
            return;
        }
        let slow: Vec<TrackerId> = self
            .followers
            .iter()
            .filter(|(_, f)| f.in_sync && f.acked < index)
            .map(|(&p, _)| p)
            .collect();
        for peer in slow {
            self.followers.get_mut(&peer).expect("follower").in_sync = false;
            self.event(ReplEvent::PeerOutOfSync {
                peer,
                why: "no ack within the ack timeout",
            });
        }
        self.advance_commit(now);
    }

    /// Every heartbeat, on every tracker: tell each peer we are here (the
    /// primary's heartbeat, a backup's `Alive`), then give up on peers
    /// silent past the peer timeout.
    pub(super) fn on_heartbeat_timer(&mut self, now: Instant) {
        let msg = match self.role {
            Role::Primary => self.heartbeat_msg(),
            Role::Backup => ReplMsg::Alive { epoch: self.epoch },
        };
        for p in self.connected.clone() {
            self.send(p, msg.clone());
        }
        self.timers.set(Timer::Heartbeat, now + self.cfg.heartbeat);
        self.drop_silent(now);
    }

    pub(super) fn on_forward(&mut self, from: TrackerId, fwd: u64, key: KeyId, req: ClientRequest) {
        if self.role == Role::Primary {
            self.out.push_back(ReplOutput::Forwarded {
                from,
                fwd,
                req,
                key,
            });
        } else {
            self.reply_forward(from, fwd, 0, Err(TrackerError::NotReady));
        }
    }

    /// A divergent op re-submitted by a backup (or from our own queue):
    /// answered once it is applied here, found applied already, or refused.
    pub(super) fn on_resubmit(&mut self, now: Instant, from: ResubmitFrom, op: Op) {
        if self.role != Role::Primary {
            return; // the joiner re-sends once it follows the new primary
        }
        if let OpKind::RecordConflict { .. } = op.kind {
            // A conflict record from a divergent log: logged again (applying
            // a second record of the same request changes nothing).
            if let Ok(index) = self.propose(now, None, op.kind, None) {
                self.resubmit_waiters.entry(index).or_default().push(from);
            }
            return;
        }
        let origin = op.origin;
        if let Some(index) = origin.and_then(|o| self.log.index_of(&o)) {
            // Logged here already (the client retried it here, another
            // backup re-submitted it, or it is common history): never twice.
            if index > self.applied {
                self.resubmit_waiters.entry(index).or_default().push(from);
                return;
            }
            let outcome = origin
                .and_then(|o| self.state.recorded(&o))
                .unwrap_or(Ok(Reply::Done));
            return match outcome {
                Err(reason) => self.conflict_then_answer(now, op, reason, vec![from]),
                ok => self.resubmit_answered(from, index, ok),
            };
        }
        if let Some(recorded) = origin.and_then(|o| self.state.recorded(&o)) {
            // Applied here, in a compacted part of the log. If it failed
            // here, the divergent success is undone: that is a conflict too.
            return match recorded {
                Err(reason) => self.conflict_then_answer(now, op, reason, vec![from]),
                ok => self.resubmit_answered(from, 0, ok),
            };
        }
        match self.state.revalidate(&op) {
            Ok(()) => {
                // Re-validated against the applied state only: ops proposed
                // before it may still make it fail (see `apply_through`).
                if let Ok(index) = self.propose(now, op.origin, op.kind, None) {
                    self.resubmit_waiters.entry(index).or_default().push(from);
                }
            }
            Err(reason) => self.conflict_then_answer(now, op, reason, vec![from]),
        }
    }

    /// Logs a conflict record for `op` (a `RecordConflict` entry, so the
    /// conflict log is replicated and durable); `waiting` re-submitters
    /// are answered once it is applied.
    pub(super) fn conflict_then_answer(
        &mut self,
        now: Instant,
        op: Op,
        reason: TrackerError,
        waiting: Vec<ResubmitFrom>,
    ) {
        if let Some(o) = op.origin {
            // Recorded already (a re-sent re-submission): answer from the
            // log, or wait for the record still on its way.
            if let Some(reason) = self.state.conflict_of(&o) {
                for from in waiting {
                    self.resubmit_answered(from, 0, Err(reason.clone()));
                }
                return;
            }
            let pending = self
                .log
                .range(self.applied + 1, self.log.last().index)
                .find(|e| matches!(&e.op.kind, OpKind::RecordConflict { op, .. } if op.origin == Some(o)))
                .map(|e| e.pos.index);
            if let Some(index) = pending {
                self.resubmit_waiters
                    .entry(index)
                    .or_default()
                    .extend(waiting);
                return;
            }
        }
        self.event(ReplEvent::Conflict {
            op: Box::new(op.clone()),
            reason: reason.clone(),
        });
        let record = OpKind::RecordConflict {
            op: Box::new(op),
            reason: reason.clone(),
        };
        // Not primary (cannot happen here): the re-submitters ask the next.
        if let Ok(index) = self.propose(now, None, record, None) {
            self.resubmit_waiters
                .entry(index)
                .or_default()
                .extend(waiting);
        }
    }

    /// Tells whoever re-submitted an op that we are done with it (a backup's
    /// own system op, sent with `fwd` 0, wants no answer).
    pub(super) fn resubmit_answered(&mut self, from: ResubmitFrom, index: u64, outcome: Outcome) {
        match from {
            ResubmitFrom::Peer(_, 0) => {}
            ResubmitFrom::Peer(to, fwd) => self.reply_forward(to, fwd, index, outcome),
            ResubmitFrom::Local(key) => {
                self.resubmit_dirty |= self.resubmit.remove(&key).is_some();
            }
        }
    }
}
