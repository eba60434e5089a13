//! The backup's half of [`Repl`]: following a primary, appending its
//! entries, installing its snapshot, detecting divergence, and keeping the
//! divergent client ops (on disk) until the primary answered their
//! re-submission.

use bytes::{Bytes, BytesMut};

use p2p_proto::{Entry, LogPos, Outcome, ReplMsg, Text, TrackerId};

use super::*;
use crate::time::Instant;

impl<S: Replicated> Repl<S> {
    // ------------------------------------------------------------ backup side

    /// Asks the current primary to bring us up to date.
    pub(super) fn request_catch_up(&mut self) {
        if self.role == Role::Backup {
            self.caught_up = false;
        }
        let Some(p) = self.primary() else { return };
        if self.role == Role::Backup && self.connected.contains(&p) && !self.mismatch_sent {
            self.mismatch_sent = true;
            self.send(
                p,
                ReplMsg::Mismatch {
                    epoch: self.epoch,
                    last: self.log.last(),
                    epoch_starts: self.log.epoch_starts(),
                },
            );
        }
    }

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

    pub(super) fn on_catch_up(
        &mut self,
        now: Instant,
        from: TrackerId,
        epoch: u64,
        fork: u64,
        snapshot: bool,
    ) {
        if !self.accept_from_primary(now, from, epoch) {
            return;
        }
        self.mismatch_sent = false;
        self.caught_up = false;
        self.catch_up_seen = true;
        if snapshot {
            self.pending_fork = Some(fork);
            self.snapshot_rx = None;
            return;
        }
        // No snapshot is coming (one announced earlier may have been cut
        // off with its connection): stop waiting for it, take appends.
        self.pending_fork = None;
        self.snapshot_rx = None;
        // Entries past the fork written in the current epoch are the
        // primary's own, appended since we asked: not divergent.
        let epoch = self.epoch;
        let foreign = self
            .log
            .range(fork.saturating_add(1), self.log.last().index)
            .any(|e| e.pos.epoch != epoch);
        if foreign || (self.log.last().index > fork && fork < self.log.start().index) {
            // The primary thinks we hold nothing divergent; we disagree.
            self.event(ReplEvent::PeerError {
                peer: from,
                what: Text::new("catch-up without snapshot over a divergent log"),
            });
            self.request_catch_up();
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_snapshot_chunk(
        &mut self,
        now: Instant,
        from: TrackerId,
        epoch: u64,
        at: LogPos,
        offset: u64,
        total: u64,
        data: Bytes,
    ) {
        if !self.accept_from_primary(now, from, epoch) || self.pending_fork.is_none() {
            return;
        }
        if total > SNAPSHOT_LEN_MAX {
            self.event(ReplEvent::PeerError {
                peer: from,
                what: Text::new(format!("snapshot of {total} bytes is over the limit")),
            });
            return;
        }
        if offset == 0 {
            self.snapshot_rx = Some(SnapshotRx {
                at,
                total,
                buf: BytesMut::with_capacity(total.min(16 << 20) as usize),
            });
        }
        let Some(rx) = self.snapshot_rx.as_mut() else {
            return;
        };
        if rx.at != at || rx.total != total || rx.buf.len() as u64 != offset {
            self.snapshot_rx = None;
            self.mismatch_sent = false;
            self.request_catch_up();
            return;
        }
        rx.buf.extend_from_slice(&data);
        if (rx.buf.len() as u64) < rx.total {
            return;
        }
        let rx = self.snapshot_rx.take().expect("snapshot");
        self.install_snapshot(from, rx.at, rx.buf.freeze());
    }

    pub(super) fn install_snapshot(&mut self, from: TrackerId, at: LogPos, data: Bytes) {
        let snap = match Snapshot::<S>::decode(at, data.clone()) {
            Ok(s) => s,
            Err(e) => {
                self.event(ReplEvent::PeerError {
                    peer: from,
                    what: Text::new(format!("bad snapshot: {e}")),
                });
                self.mismatch_sent = false;
                self.request_catch_up();
                return;
            }
        };
        let fork = self.pending_fork.take().unwrap_or(at.index);
        self.queue_divergent(fork);
        self.state = snap.state;
        self.log = Snapshot::<S>::log(&snap.history, snap.base, snap.tail);
        self.persisted = at.index;
        self.applied = at.index;
        self.snapshot_at = at.index;
        self.out.push_back(ReplOutput::PersistSnapshot {
            at,
            data,
            reset_log: true,
        });
        // An empty persist after it: its completion (`handle_persisted(at)`)
        // says the snapshot is on disk, and only then is it acked.
        self.out.push_back(ReplOutput::Persist {
            from_index: at.index.saturating_add(1),
            entries: Vec::new(),
        });
        self.snapshot_ack = Some(at);
        self.event(ReplEvent::SnapshotInstalled { at });
        let _ = from;
        self.update_caught_up();
    }

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
            self.out.push_back(ReplOutput::Persist {
                from_index: first,
                entries: fresh,
            });
        }
    }

    pub(super) fn on_forward_reply(&mut self, fwd: u64, index: u64, outcome: Outcome) {
        if let Some(key) = self.resubmit_sent.remove(&fwd) {
            // The primary holds the re-submitted op (or refused it as a
            // conflict, which it recorded): ours can go.
            if self.resubmit.remove(&key).is_some() {
                self.resubmit_dirty = true;
            }
            return;
        }
        let Some(tag) = self.fwd_pending.remove(&fwd) else {
            return;
        };
        if index <= self.applied {
            self.out.push_back(ReplOutput::Applied {
                tag,
                index,
                outcome,
            });
        } else {
            self.fwd_done.entry(index).or_default().push((tag, outcome));
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
