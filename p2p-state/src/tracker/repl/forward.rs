//! Client writes taken by a backup: forwarded to the primary (which
//! prepares and proposes them, or refuses), answered with `ForwardReply`,
//! and reported [`ReplOutput::Applied`] only once this tracker applied the
//! entry, so the client reads its own write here. Forwards in flight are
//! abandoned when the primary changes; the client retries with the same id.

use p2p_proto::{ClientRequest, Outcome, ReplMsg, TrackerError, TrackerId};

use super::*;

impl<S: Replicated> Repl<S> {
    /// Backup: sends a client's write to the primary. The outcome comes back
    /// as [`ReplOutput::Applied`] with `tag` once this tracker applied it.
    pub(super) fn forward(
        &mut self,
        req: ClientRequest,
        key: KeyId,
        tag: u64,
    ) -> Result<(), TrackerError> {
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
    pub(super) fn reply_forward(&mut self, to: TrackerId, fwd: u64, index: u64, outcome: Outcome) {
        self.send(
            to,
            ReplMsg::ForwardReply {
                fwd,
                index,
                outcome,
            },
        );
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

    pub(super) fn abandon_forwards(&mut self) {
        let pending = std::mem::take(&mut self.fwd_pending);
        for tag in pending.into_values() {
            self.out.push_back(ReplOutput::Abandoned { tag });
        }
    }
}
