//! Epochs and elections. An epoch number names its primary
//! (`round << 16 | (0xffff - id)`), so two trackers never start the same
//! epoch; a tracker follows any plausible higher epoch it hears of (a
//! primary steps down), and a backup whose primary is gone becomes the
//! primary of the next round if it is the lowest id it still hears.

use super::*;

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

impl<S: Replicated> Repl<S> {
    /// Adopts a higher epoch seen in any message from `from`. Returns true
    /// if it did. An implausible one ([`Repl::implausible_epoch`]) is
    /// refused and reported: the caller then ignores the message
    /// (`epoch > self.epoch` still holds).
    pub(super) fn observe_epoch(&mut self, now: Instant, from: TrackerId, epoch: u64) -> bool {
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
    pub(super) fn implausible_epoch(&self, epoch: u64) -> Option<String> {
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

    pub(super) fn step_down(&mut self) {
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

    pub(super) fn become_primary(&mut self, now: Instant) {
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

    pub(super) fn on_primary_timeout(&mut self, now: Instant) {
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
}
