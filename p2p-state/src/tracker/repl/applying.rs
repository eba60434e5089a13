//! From durable to applied. Once the driver reports the log persisted, the
//! primary ships the new entries and commits what every in-sync follower
//! holds, and a backup applies them and acks. Entries are applied in order,
//! answering the proposals, forwarded writes and re-submissions that wait
//! for them; every `snapshot_every` ops a local snapshot compacts the log,
//! keeping what followers and the unconfirmed history still need.

use super::*;

impl<S: Replicated> Repl<S> {
    /// The driver made the log durable through `index`.
    pub(super) fn handle_persisted(&mut self, now: Instant, index: u64) {
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

    pub(super) fn apply_through(&mut self, index: u64) {
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

    pub(super) fn maybe_snapshot(&mut self) {
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
        self.out.push_back(ReplOutput::Persist(Persist::Snapshot {
            at,
            data: self.snapshot_bytes(at.index),
            reset_log: false,
        }));
    }

    /// The applied state with its history and unconfirmed tail, as stored
    /// and sent ([`snapshot::encode_snapshot`]).
    pub(super) fn snapshot_bytes(&self, at: u64) -> Bytes {
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
}
