//! The primary's side of log shipping: sequencing proposals, sending each
//! follower the persisted entries it lacks (within its window, in bounded
//! `Append` frames), counting acks, moving the confirmed point, committing
//! what every in-sync follower holds, and dropping a follower that does
//! not ack in time from the in-sync set.

use p2p_proto::limits::APPEND_ENTRIES_MAX;
use p2p_proto::{LogPos, OpKind, Origin, ReplMsg, TrackerError, TrackerId};

use super::*;
use crate::time::Instant;

impl<S: Replicated> Repl<S> {
    /// Primary: sequences a new op. Returns its index; `tag` comes back in
    /// [`ReplOutput::Applied`] once it is applied everywhere in sync.
    pub(super) fn propose(
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
        self.out.push_back(ReplOutput::Persist(Persist::Log {
            from_index: pos.index,
            entries: vec![entry],
        }));
        self.check_invariants();
        Ok(pos.index)
    }

    /// The index of a logged, not yet applied entry for request `o`.
    pub(super) fn pending_index_of(&self, o: Origin) -> Option<u64> {
        self.log.index_of(&o).filter(|&i| i > self.applied)
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
}
