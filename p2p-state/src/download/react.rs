//! Reactions to what the driver reports: tracker listings, connection
//! events, peer messages, verified or corrupt pieces, disk results and
//! deadlines. Every peer fault ends here as a decision (re-queue, penalise,
//! disconnect, ban), never as a panic or an error returned to the driver.

use bytes::Bytes;

use p2p_proto::{KeyId, PeerInfo, PeerMsg, PieceSet, RejectReason, Sha1Hash, Text};

use super::peer::{Peer, PeerState, Sent};
use super::{
    DisconnectReason, Download, DownloadError, Output, PeerId, PeerProblem, Timer, WaitingReason,
};
use crate::hash;
use crate::time::Instant;

impl Download {
    // ------------------------------------------------------------ tracker

    pub(super) fn on_peers(&mut self, now: Instant, list: Vec<PeerInfo>) {
        self.tracker.pending = false;
        self.tracker.problem = None;
        let listed = list
            .iter()
            .filter(|info| self.learn_peer(now, info))
            .count();
        self.tracker.last_listed = listed;
        self.recount_swarm();
    }

    /// The tracker pushed sources we were not told of (a new partial
    /// holder, a new seeder): learned like a listing's, without touching
    /// the state of our own asks.
    pub(super) fn on_peers_pushed(&mut self, now: Instant, list: Vec<PeerInfo>) {
        for info in &list {
            self.learn_peer(now, info);
        }
        self.recount_swarm();
    }

    /// Recounts, for the picker's rarity, the pieces known peers that are
    /// not ready hold by the tracker's word (after a listing, and when a
    /// peer becomes ready or stops being ready).
    pub(super) fn recount_swarm(&mut self) {
        let mut known = vec![0u32; self.meta.piece_count() as usize];
        for h in self.peers.values().filter_map(|p| p.swarm_hint()) {
            for i in h.iter() {
                if let Some(k) = known.get_mut(i as usize) {
                    *k += 1;
                }
            }
        }
        self.picker.set_known(&known);
    }

    pub(super) fn on_peers_unavailable(&mut self, reason: Text) {
        self.tracker.pending = false;
        self.tracker.problem = Some(reason);
    }

    /// Adds or refreshes one listed peer; true if the entry is a source of
    /// this file (even one we have banned). A fresh ticket for a live
    /// connection is shown on it at once (the seeder then serves it until
    /// the new expiry).
    fn learn_peer(&mut self, now: Instant, info: &PeerInfo) -> bool {
        let t = &info.ticket;
        let for_us = t.seeder == info.user
            && t.downloader != info.user
            && t.group == self.group
            && t.file == self.meta.name
            && t.file_hash == self.meta.file_hash
            && info.pieces.len() == self.meta.piece_count();
        if !for_us {
            return false;
        }
        let key = (info.user.clone(), info.addr);
        if let Some(id) = self.by_addr.get(&key) {
            let id = *id;
            let p = self
                .peers
                .get_mut(&id)
                .expect("address index points at a peer");
            p.set_ticket(now, info.ticket.clone(), self.cfg.ticket_renew_before);
            p.set_hint(&info.pieces);
            match p.state {
                PeerState::Failed | PeerState::NeedTicket => p.state = PeerState::Idle,
                PeerState::WrongKey { vouched } if vouched != info.ticket.seeder_key => {
                    p.state = PeerState::Idle
                }
                _ => {}
            }
            self.renew_ticket(id);
            return true;
        }
        if self.peers.len() >= self.cfg.peers_known_max {
            return false;
        }
        let id = PeerId(self.next_peer);
        self.next_peer += 1;
        self.by_addr.insert(key, id);
        let mut peer = Peer::new(
            info.user.clone(),
            info.addr,
            info.ticket.clone(),
            info.pieces.clone(),
        );
        peer.set_ticket(now, info.ticket.clone(), self.cfg.ticket_renew_before);
        self.peers.insert(id, peer);
        true
    }

    /// Shows `id`'s ticket on its live connection if it outlives the one
    /// shown there (and names the key the connection proved).
    fn renew_ticket(&mut self, id: PeerId) {
        let p = &self.peers[&id];
        let live = matches!(p.state, PeerState::Opening | PeerState::Ready { .. });
        let Some(shown) = p.shown_expires_ms.filter(|_| live) else {
            return;
        };
        let proven = p.conn_key;
        if p.ticket.expires_ms <= shown || Some(p.ticket.seeder_key) != proven {
            return;
        }
        let ticket = p.ticket.clone();
        let p = self.peers.get_mut(&id).expect("known");
        p.shown_expires_ms = Some(ticket.expires_ms);
        self.stats.tickets_renewed += 1;
        self.send(id, PeerMsg::Open { ticket });
    }

    pub(super) fn ask_tracker(&mut self, now: Instant) {
        self.tracker.last_ask = now;
        let doubled = self.tracker.refresh.as_millis().saturating_mul(2);
        let max = self.cfg.peers_refresh.as_millis();
        self.tracker.refresh = crate::time::Duration(doubled.min(max));
        self.tracker.pending = true;
        self.stats.tracker_asks += 1;
        self.out.push_back(Output::AskTrackerForPeers);
    }

    // ------------------------------------------------------------ connections

    /// The connection is up and proved `key`: only the seeder the tracker
    /// vouched for hears our ticket; anyone else is dropped at once, with
    /// nothing sent, and not dialed again unless another key is vouched for.
    pub(super) fn on_connected(&mut self, now: Instant, id: PeerId, key: KeyId) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        if p.state != PeerState::Connecting {
            return;
        }
        let vouched = p.ticket.seeder_key;
        if key != vouched {
            self.stats.wrong_keys += 1;
            p.penalise(&self.cfg);
            let reason = DisconnectReason::WrongKey {
                vouched,
                presented: key,
            };
            self.disconnect(id, reason, PeerState::WrongKey { vouched });
            return;
        }
        p.state = PeerState::Opening;
        p.conn_key = Some(key);
        p.shown_expires_ms = Some(p.ticket.expires_ms);
        let ticket = p.ticket.clone();
        self.timers.clear(Timer::Connect(id));
        self.timers
            .set(Timer::Handshake(id), now + self.cfg.handshake_timeout);
        self.send(id, PeerMsg::Open { ticket });
    }

    pub(super) fn on_connect_failed(&mut self, id: PeerId) {
        if self.peer_state_is(id, |s| *s == PeerState::Connecting) {
            self.drop_peer(id, PeerState::Failed, PeerProblem::ConnectFailed);
        }
    }

    pub(super) fn on_closed(&mut self, id: PeerId) {
        if self.peer_state_is(id, |s| *s == PeerState::Connecting) {
            self.drop_peer(id, PeerState::Failed, PeerProblem::ConnectFailed);
        } else if self.peer_state_is(id, |s| {
            matches!(s, PeerState::Opening | PeerState::Ready { .. })
        }) {
            self.drop_peer(id, PeerState::Failed, PeerProblem::ClosedByPeer);
        }
    }

    fn peer_state_is(&self, id: PeerId, f: impl Fn(&PeerState) -> bool) -> bool {
        self.peers.get(&id).is_some_and(|p| f(&p.state))
    }

    // ------------------------------------------------------------ messages

    pub(super) fn on_msg(&mut self, now: Instant, id: PeerId, msg: PeerMsg) {
        let open = |s: &PeerState| matches!(s, PeerState::Opening | PeerState::Ready { .. });
        if !self.peer_state_is(id, open) {
            return; // raced our Disconnect, or a driver bug: nothing to do
        }
        match msg {
            PeerMsg::Have { pieces } => self.on_have(id, pieces),
            PeerMsg::HavePiece { index } => self.on_have_piece(id, index),
            PeerMsg::Piece { index, data } => {
                let sha1 = hash::sha1(&data);
                self.on_piece(now, id, index, data, sha1);
            }
            PeerMsg::Reject {
                index: Some(i),
                reason,
            } => self.on_reject_piece(id, i, reason),
            PeerMsg::Reject {
                index: None,
                reason,
            } => self.on_refused(id, reason),
            PeerMsg::Fatal { reason } => {
                let reason = DisconnectReason::PeerFatal { reason };
                self.disconnect(id, reason, PeerState::Failed);
            }
            PeerMsg::Open { .. } | PeerMsg::Request { .. } | PeerMsg::Cancel { .. } => {
                self.violation(id, "sent a seeder-bound message to a downloader")
            }
        }
    }

    fn on_have(&mut self, id: PeerId, pieces: PieceSet) {
        if pieces.len() != self.meta.piece_count() {
            return self.violation(id, "Have with the wrong piece count");
        }
        let p = self.peers.get_mut(&id).expect("checked by on_msg");
        let old = match std::mem::replace(&mut p.state, PeerState::Opening) {
            PeerState::Ready { pieces } => Some(pieces),
            _ => None,
        };
        let held_before = |i: u32| old.as_ref().is_some_and(|o| o.contains(i));
        let lost: Vec<u32> = old
            .iter()
            .flat_map(|o| o.iter())
            .filter(|&i| !pieces.contains(i))
            .collect();
        for &i in &lost {
            self.unrequest(id, i);
            self.picker.sub_avail(i);
        }
        for i in pieces.iter().filter(|&i| !held_before(i)) {
            self.picker.add_avail(i);
        }
        self.timers.clear(Timer::Handshake(id));
        let p = self.peers.get_mut(&id).expect("checked by on_msg");
        let was_ready = old.is_some();
        p.state = PeerState::Ready { pieces };
        if !was_ready {
            self.recount_swarm();
        }
    }

    fn on_have_piece(&mut self, id: PeerId, index: u32) {
        if index >= self.meta.piece_count() {
            return self.violation(id, "HavePiece index out of range");
        }
        let p = self.peers.get_mut(&id).expect("checked by on_msg");
        let PeerState::Ready { pieces } = &mut p.state else {
            return self.violation(id, "HavePiece before Have");
        };
        if !pieces.contains(index) {
            pieces.insert(index);
            self.picker.add_avail(index);
        }
    }

    /// A piece's bytes arrived, with the SHA-1 the driver computed.
    pub(super) fn on_piece(
        &mut self,
        now: Instant,
        id: PeerId,
        index: u32,
        data: Bytes,
        sha1: Sha1Hash,
    ) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        match p.state {
            PeerState::Ready { .. } => {}
            PeerState::Opening => return self.violation(id, "Piece before Have"),
            _ => return,
        }
        if index >= self.meta.piece_count() {
            return self.violation(id, "Piece index out of range");
        }
        let sent = p.requests.get(&index).copied();
        if sent.is_none() {
            if p.allowance == 0 {
                return self.violation(id, "sent a piece nobody asked for");
            }
            p.allowance -= 1;
        }
        self.stats.bytes_received += data.len() as u64;
        let size = self.meta.piece_size(index);
        let bad_hash = sha1 != self.meta.piece_hashes[index as usize];
        // planted bug (test switch)
        let bad_hash = bad_hash && !self.cfg.bug_skip_verify;
        if data.len() != size as usize || bad_hash {
            return self.bad_piece(id, index);
        }
        if let Some(sent) = sent {
            self.unrequest(id, index);
            let p = self.peers.get_mut(&id).expect("still known");
            p.on_arrival(now, sent, size);
        }
        self.rate.add(now, u64::from(size));
        if self.picker.is_needed(index) {
            self.accept(now, index, data);
        } else {
            self.stats.duplicates += 1;
        }
    }

    /// A verified piece we need: cancel its other requesters, write it.
    fn accept(&mut self, now: Instant, index: u32, data: Bytes) {
        let others: Vec<PeerId> = self
            .requests
            .get(&index)
            .map(|rs| rs.iter().map(|(p, _)| *p).collect())
            .unwrap_or_default();
        for q in others {
            self.unrequest(q, index);
            self.peers.get_mut(&q).expect("requester").allowance += 1;
            self.send(q, PeerMsg::Cancel { index });
        }
        self.picker.set_writing(index);
        self.stats.pieces_accepted += 1;
        self.last_progress = now;
        self.tracker.backoff = self.cfg.tracker_backoff_min;
        let offset = self.meta.piece_offset(index);
        self.out.push_back(Output::WritePiece {
            index,
            offset,
            data,
        });
    }

    /// Wrong hash or length: discard, re-queue, penalise, ban at the limit.
    fn bad_piece(&mut self, id: PeerId, index: u32) {
        self.stats.bad_pieces += 1;
        self.unrequest(id, index);
        let p = self.peers.get_mut(&id).expect("caller checked");
        p.bad_pieces += 1;
        p.penalise(&self.cfg);
        let count = p.bad_pieces;
        if count >= self.cfg.bad_pieces_max {
            let reason = Text::new(format!("{count} corrupt pieces"));
            self.send(id, PeerMsg::Fatal { reason });
            self.disconnect(id, DisconnectReason::BadPieces { count }, PeerState::Banned);
        }
    }

    fn on_reject_piece(&mut self, id: PeerId, index: u32, reason: RejectReason) {
        if self.unrequest(id, index).is_none() {
            return; // a reject for something not (or no longer) asked
        }
        let p = self.peers.get_mut(&id).expect("checked by on_msg");
        if reason == RejectReason::Busy {
            let cap = p.requests.len().max(1);
            p.busy_cap = Some(p.busy_cap.map_or(cap, |c| c.min(cap)));
            return;
        }
        if let PeerState::Ready { pieces } = &mut p.state
            && pieces.contains(index)
        {
            pieces.remove(index);
            self.picker.sub_avail(index);
        }
    }

    /// The seeder refused the connection (`Reject { index: None }`).
    fn on_refused(&mut self, id: PeerId, reason: RejectReason) {
        let next = match reason {
            RejectReason::Expired | RejectReason::BadTicket | RejectReason::NoTicket => {
                PeerState::NeedTicket
            }
            _ => PeerState::Failed,
        };
        self.drop_peer(id, next, PeerProblem::Refused(reason.clone()));
        let reason = DisconnectReason::Refused(reason);
        self.out.push_back(Output::Disconnect { peer: id, reason });
    }

    // ------------------------------------------------------------ disk

    pub(super) fn on_written(&mut self, now: Instant, index: u32) {
        if !self.picker.set_done(index) {
            return; // not a write we asked for: ignore
        }
        // Our peers hear of it (a seeder in initial seeding shows us
        // another piece in exchange).
        let ready: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.is_ready())
            .map(|(id, _)| *id)
            .collect();
        for id in ready {
            self.send(id, PeerMsg::HavePiece { index });
        }
        self.announce.dirty = true;
        let at = self
            .announce
            .last
            .map_or(now, |t| (t + self.cfg.announce_interval).max(now));
        self.timers.set_min(Timer::Announce, at);
    }

    // ------------------------------------------------------------ deadlines

    pub(super) fn on_timer(&mut self, now: Instant, timer: Timer) {
        match timer {
            Timer::AskTracker => {
                if !self.has_usable_peer() {
                    let doubled = self.tracker.backoff.as_millis().saturating_mul(2);
                    let max = self.cfg.tracker_backoff_max.as_millis();
                    self.tracker.backoff = crate::time::Duration(doubled.min(max));
                }
                self.ask_tracker(now);
            }
            Timer::Announce => {
                if self.announce.dirty {
                    self.flush_announce(Some(now));
                }
            }
            Timer::Stall => self.stalled(now),
            Timer::Connect(id) => {
                if self.peer_state_is(id, |s| *s == PeerState::Connecting) {
                    self.disconnect(id, DisconnectReason::ConnectTimeout, PeerState::Failed);
                }
            }
            Timer::Handshake(id) => {
                if self.peer_state_is(id, |s| *s == PeerState::Opening) {
                    self.disconnect(id, DisconnectReason::HandshakeTimeout, PeerState::Failed);
                }
            }
            Timer::Request(id, index) => self.request_timed_out(id, index),
            Timer::Rate => {} // the pump that follows asks the peer
        }
    }

    fn stalled(&mut self, now: Instant) {
        if self.gate.held_global || self.gate.held_peer {
            // Held back by the user's own rate limit, not stalled: the
            // wait starts again (the pump re-arms it from here).
            self.last_progress = now;
            return;
        }
        let waited = now.saturating_since(self.last_progress);
        let why = self.waiting_reason(now).unwrap_or({
            let peers = self.peers.values().filter(|p| p.is_ready()).count() as u32;
            WaitingReason::NoPieceVerified { peers }
        });
        self.finish(Err(DownloadError::Stalled { waited, why }));
    }

    fn request_timed_out(&mut self, id: PeerId, index: u32) {
        if self.unrequest(id, index).is_none() {
            return;
        }
        self.stats.timeouts += 1;
        let p = self.peers.get_mut(&id).expect("had a request");
        p.allowance += 1;
        p.timeouts_in_a_row += 1;
        p.penalise(&self.cfg);
        let count = p.timeouts_in_a_row;
        self.send(id, PeerMsg::Cancel { index });
        if count >= self.cfg.timeouts_max {
            self.disconnect(id, DisconnectReason::TimedOut { count }, PeerState::Failed);
        }
    }

    // ------------------------------------------------------------ helpers

    pub(super) fn send(&mut self, peer: PeerId, msg: PeerMsg) {
        self.out.push_back(Output::Send { peer, msg });
    }

    /// Drops the request of `index` to `id`; re-queues the piece if nobody
    /// else is asked for it. `None` if there was no such request.
    pub(super) fn unrequest(&mut self, id: PeerId, index: u32) -> Option<Sent> {
        let sent = self.peers.get_mut(&id)?.requests.remove(&index)?;
        self.timers.clear(Timer::Request(id, index));
        self.in_flight -= 1;
        let rs = self.requests.get_mut(&index).expect("request index agrees");
        rs.retain(|(p, _)| *p != id);
        if rs.is_empty() {
            self.requests.remove(&index);
            self.picker.requeue(index);
        }
        Some(sent)
    }

    /// Forgets the connection of `id`: re-queues its requests, removes its
    /// pieces from availability, clears its deadlines.
    pub(super) fn drop_peer(&mut self, id: PeerId, next: PeerState, problem: PeerProblem) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        let asked: Vec<u32> = p.requests.keys().copied().collect();
        for i in asked {
            self.unrequest(id, i);
        }
        let p = self.peers.get_mut(&id).expect("checked above");
        if let PeerState::Ready { pieces } = std::mem::replace(&mut p.state, next) {
            for i in pieces.iter() {
                self.picker.sub_avail(i);
            }
            self.recount_swarm();
        }
        let p = self.peers.get_mut(&id).expect("checked above");
        p.allowance = 0;
        p.last_arrival = None;
        p.shown_expires_ms = None;
        p.conn_key = None;
        self.timers.clear(Timer::Connect(id));
        self.timers.clear(Timer::Handshake(id));
        self.last_peer_problem = Some(problem);
    }

    /// Closes `id`'s connection ourselves.
    pub(super) fn disconnect(&mut self, id: PeerId, reason: DisconnectReason, next: PeerState) {
        self.drop_peer(id, next, PeerProblem::Dropped(reason.clone()));
        self.out.push_back(Output::Disconnect { peer: id, reason });
    }

    /// Protocol violation: tell the peer, close, never use it again.
    fn violation(&mut self, id: PeerId, what: &'static str) {
        self.send(
            id,
            PeerMsg::Fatal {
                reason: what.into(),
            },
        );
        let reason = DisconnectReason::ProtocolViolation { what };
        self.disconnect(id, reason, PeerState::Banned);
    }

    pub(super) fn close_all(&mut self, reason: DisconnectReason) {
        let live: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.is_active())
            .map(|(id, _)| *id)
            .collect();
        for id in live {
            self.disconnect(id, reason.clone(), PeerState::Failed);
        }
    }
}
