//! The backup's side of log shipping: taking messages only from the
//! current epoch's primary (a stale one is told of the newer epoch),
//! appending its entries in order (a gap or a conflicting entry asks for a
//! catch-up), learning the confirmed point, and counting itself caught up.

use p2p_proto::{Entry, LogPos, Text, TrackerId};

use super::*;
use crate::time::Instant;

impl<S: Replicated> Repl<S> {
    pub(super) fn accept_from_primary(
        &mut self,
        now: Instant,
        from: TrackerId,
        epoch: u64,
    ) -> bool {
        if epoch < self.epoch {
            // A stale primary: tell it about the newer epoch.
            self.send(from, self.join_msg());
            return false;
        }
        if self.observe_epoch(now, from, epoch) {
            self.request_catch_up();
        }
        if epoch != self.epoch || self.role != Role::Backup || self.primary() != Some(from) {
            return false;
        }
        self.primary_heard = now;
        self.timers
            .set(Timer::PrimaryTimeout, now + self.cfg.primary_timeout);
        true
    }

    pub(super) fn on_heartbeat(
        &mut self,
        now: Instant,
        from: TrackerId,
        epoch: u64,
        last: LogPos,
        confirmed: u64,
    ) {
        if epoch == self.epoch && self.role == Role::Primary {
            return; // cannot happen: an epoch has one primary
        }
        if !self.accept_from_primary(now, from, epoch) {
            return;
        }
        self.primary_last = self.primary_last.max(last.index);
        self.learn_confirmed(confirmed);
        self.update_caught_up();
        if !self.caught_up
            && self.pending_fork.is_none()
            && self.snapshot_rx.is_none()
            && self.persisted == self.log.last().index
            && last.index > self.log.last().index
        {
            // Behind with nothing on the way: ask again (a lost catch-up).
            self.mismatch_sent = false;
            self.request_catch_up();
        }
    }

    /// The primary's `confirmed` point: every tracker holds its log so far.
    pub(super) fn learn_confirmed(&mut self, confirmed: u64) {
        self.confirmed = self.confirmed.max(confirmed.min(self.log.last().index));
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_append(
        &mut self,
        now: Instant,
        from: TrackerId,
        epoch: u64,
        prev: LogPos,
        entries: Vec<Entry>,
        confirmed: u64,
    ) {
        if !self.accept_from_primary(now, from, epoch) || self.pending_fork.is_some() {
            return;
        }
        if self.log.epoch_at(prev.index) != Some(prev.epoch) {
            self.request_catch_up();
            return;
        }
        let mut fresh = Vec::new();
        for e in entries {
            if e.pos.epoch > epoch {
                // An entry from the future of its own message: refuse all.
                self.event(ReplEvent::PeerError {
                    peer: from,
                    what: Text::new(format!(
                        "append in epoch {epoch} carries an entry of epoch {}",
                        e.pos.epoch
                    )),
                });
                return;
            }
            let i = e.pos.index;
            if i <= self.log.last().index {
                if self.log.epoch_at(i) != Some(e.pos.epoch) && i > self.log.start().index {
                    // Conflicting history past prev: only a catch-up can fix it.
                    self.mismatch_sent = false;
                    self.request_catch_up();
                    return;
                }
                continue;
            }
            if i != self.log.last().index + 1 {
                self.request_catch_up();
                return;
            }
            self.primary_last = self.primary_last.max(i);
            self.log.push(e.clone());
            fresh.push(e);
        }
        self.learn_confirmed(confirmed);
        if let Some(first) = fresh.first().map(|e| e.pos.index) {
            self.out.push_back(ReplOutput::Persist(Persist::Log {
                from_index: first,
                entries: fresh,
            }));
        }
    }

    pub(super) fn update_caught_up(&mut self) {
        if self.role != Role::Backup || self.pending_fork.is_some() {
            return;
        }
        // Caught up once our log holds everything the primary reported; then
        // it stays so (entries in flight are normal under load) until a new
        // epoch, a gap (`request_catch_up`) or a snapshot resets it.
        // Only after this epoch's `CatchUp`: before it, a divergent suffix
        // as long as the primary's log would pass for being caught up.
        let was = self.caught_up;
        let holds_all = self.catch_up_seen
            && self.primary_last > 0
            && self.log.last().index >= self.primary_last;
        self.caught_up = was || holds_all;
        if self.caught_up
            && !was
            && let Some(primary) = self.primary()
        {
            self.event(ReplEvent::InSync { primary });
            self.send_resubmits(primary);
        }
    }
}
