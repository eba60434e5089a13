//! Divergent client ops, after a partition heals. A joiner whose log
//! forked from the primary's queues the client ops (and conflict records)
//! of its divergent suffix, durably before that suffix is replaced, and
//! re-sends them to every primary it becomes in sync with (to itself if it
//! becomes primary). The primary answers each once it is applied, found
//! applied already, or recorded as a conflict (a replicated
//! `RecordConflict` entry); only then does the joiner drop it.

use p2p_proto::{Entry, Op, Outcome, ReplMsg, Reply, TrackerError, TrackerId};

use super::*;
use crate::time::Instant;

/// Who waits for a re-submitted op to be applied on the primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ResubmitFrom {
    /// A backup, answered with `ForwardReply { fwd }`.
    Peer(TrackerId, u64),
    /// This tracker's own queue (it became primary with ops pending): the
    /// entry's key there.
    Local((u64, u64)),
}

impl<S: Replicated> Repl<S> {
    /// Our entries after `fork` are not in the primary's history: queue the
    /// client ops among them for re-submission, durably, before anything
    /// replaces them on disk.
    pub(super) fn queue_divergent(&mut self, fork: u64) {
        if self.log.last().index <= fork {
            return;
        }
        let lost = self.log.start().index.saturating_sub(fork);
        let divergent = self.log.truncate_after(fork.max(self.log.start().index));
        let before = self.resubmit.len();
        self.queue_resubmit(divergent);
        // Durable before the truncating snapshot or persist that follows.
        self.persist_resubmit();
        self.event(ReplEvent::Diverged {
            fork,
            resubmitting: self.resubmit.len() - before,
            lost,
        });
    }

    /// Adds the client ops of `entries`, and the conflict records of client
    /// ops, to the re-submission queue (one of each per request origin).
    pub(super) fn queue_resubmit(&mut self, entries: Vec<Entry>) {
        let mut known: BTreeSet<(bool, Origin)> =
            self.resubmit.values().filter_map(resubmit_key).collect();
        for e in entries {
            if let Some(k) = resubmit_key(&e)
                && known.insert(k)
            {
                self.resubmit.insert((e.pos.index, e.pos.epoch), e);
                self.resubmit_dirty = true;
            }
        }
    }

    /// Sends every queued re-submission to `primary` (again: answers to
    /// earlier sends are no longer expected).
    pub(super) fn send_resubmits(&mut self, primary: TrackerId) {
        self.resubmit_sent.clear();
        let queued: Vec<((u64, u64), Op)> = self
            .resubmit
            .iter()
            .map(|(k, e)| (*k, e.op.clone()))
            .collect();
        for (key, op) in queued {
            let fwd = self.fwd_next;
            self.fwd_next += 1;
            self.resubmit_sent.insert(fwd, key);
            self.send(primary, ReplMsg::Resubmit { fwd, op });
        }
    }

    /// Writes the re-submission queue as it is now.
    pub(super) fn persist_resubmit(&mut self) {
        self.resubmit_dirty = false;
        self.out.push_back(ReplOutput::Persist(Persist::Resubmit {
            entries: self.resubmit.values().cloned().collect(),
        }));
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

/// What makes a divergent entry worth re-submitting, and tells copies
/// apart: a client's request (`false`, its origin), or the conflict record
/// of one (`true`, the request's origin). System ops are decided afresh by
/// the new primary.
fn resubmit_key(e: &Entry) -> Option<(bool, Origin)> {
    match &e.op.kind {
        OpKind::RecordConflict { op, .. } => op.origin.map(|o| (true, o)),
        _ => e.op.origin.map(|o| (false, o)),
    }
}
