//! Who is reachable. Connections come and go as the driver reports them;
//! on top of that, reachability is "heard from" (issue 17): every tracker
//! sends something to every connected peer each heartbeat (the primary its
//! heartbeat, a backup `Alive`), and a peer silent past `peer_timeout`
//! counts as disconnected ([`ReplOutput::PeerSilent`]). A backup that lost
//! its primary that way runs the election at once.

use super::*;

impl<S: Replicated> Repl<S> {
    pub(super) fn handle_connected(&mut self, now: Instant, peer: TrackerId) {
        self.connected.insert(peer);
        self.heard.insert(peer, now);
        self.send(peer, self.join_msg());
        if self.role == Role::Primary {
            self.send(peer, self.heartbeat_msg());
        }
        self.finish(now);
    }

    pub(super) fn handle_disconnected(&mut self, now: Instant, peer: TrackerId) {
        self.disconnect(now, peer);
        self.finish(now);
    }

    pub(super) fn disconnect(&mut self, now: Instant, peer: TrackerId) {
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
    pub(super) fn drop_silent(&mut self, now: Instant) {
        if self.drop_silent_peers(now) {
            self.on_primary_timeout(now);
        }
    }

    /// Counts peers silent past the peer timeout as disconnected (their
    /// connections to be closed). True if our primary was one of them.
    pub(super) fn drop_silent_peers(&mut self, now: Instant) -> bool {
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
}
