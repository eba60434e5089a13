//! What a download does after every input: open connections to useful
//! peers, fill free request slots (weighted random peer, rarest piece,
//! endgame duplicates), make room for useful peers, and arm the tracker and
//! stall deadlines. When nothing is left to fetch it closes every
//! connection and, once every piece is on disk, completes.

use std::collections::BTreeSet;

use p2p_proto::{PeerMsg, PieceSet};
use rand::Rng;
use rand::seq::SliceRandom;

use super::peer::{PeerState, Sent};
use super::picker::{Picker, PieceState};
use super::{DisconnectReason, Download, Output, PeerId, Timer};
use crate::time::Instant;

impl Download {
    pub(super) fn pump(&mut self, now: Instant) {
        if self.is_finished() {
            return;
        }
        if self.picker.all_verified() {
            return self.wind_down();
        }
        self.connect_more(now);
        let exhausted = self.fill_requests(now);
        if self.evict_unneeded(now, &exhausted) {
            self.connect_more(now);
        }
        let interval = if self.has_usable_peer() {
            self.tracker.refresh
        } else {
            self.tracker.backoff
        };
        let mut ask = self.tracker.last_ask + interval;
        if let Some(renew) = self.next_renewal() {
            // Fresh tickets before a live connection's expires; at most one
            // ask per `tracker_backoff_min` however short tickets live.
            let soonest = self.tracker.last_ask + self.cfg.tracker_backoff_min;
            ask = ask.min(renew.max(soonest));
        }
        self.timers.set(Timer::AskTracker, ask);
        self.timers
            .set(Timer::Stall, self.last_progress + self.cfg.no_peer_timeout);
    }

    /// Every piece is verified: drop peers, stop asking; complete once
    /// every piece is written. Each piece matched a piece hash that the
    /// file hash commits to (checked at start), so the file is whole and
    /// nothing reads it again.
    fn wind_down(&mut self) {
        self.close_all(DisconnectReason::Complete);
        self.timers.clear(Timer::AskTracker);
        self.timers.clear(Timer::Stall);
        if self.picker.all_done() {
            self.finish(Ok(()));
        }
    }

    /// When the ticket of the first live connection is due for renewal.
    fn next_renewal(&self) -> Option<Instant> {
        self.peers
            .values()
            .filter(|p| matches!(p.state, PeerState::Opening | PeerState::Ready { .. }))
            .filter(|p| p.shown_expires_ms.is_some())
            .map(|p| p.renew_at)
            .min()
    }

    /// Something is in flight or a connection is being set up.
    pub(super) fn has_usable_peer(&self) -> bool {
        self.in_flight > 0
            || self
                .peers
                .values()
                .any(|p| matches!(p.state, PeerState::Connecting | PeerState::Opening))
    }

    // ------------------------------------------------------------ connections

    fn active_peers(&self) -> usize {
        self.peers.values().filter(|p| p.is_active()).count()
    }

    /// Idle peers whose ticket is still valid and that hold (by the
    /// tracker's word) a piece we need. Expired tickets wait for a new one.
    fn connect_candidates(&mut self, now: Instant) -> Vec<PeerId> {
        let mut out = Vec::new();
        for (id, p) in self.peers.iter_mut() {
            if p.state != PeerState::Idle {
                continue;
            }
            if p.ticket.expires_ms < now.as_millis() {
                p.state = PeerState::NeedTicket;
                continue;
            }
            if p.hint_useful(|i| self.picker.is_needed(i)) {
                out.push(*id);
            }
        }
        out
    }

    fn connect_more(&mut self, now: Instant) {
        let active = self.active_peers();
        if active >= self.cfg.peers_max {
            return;
        }
        let mut cands = self.connect_candidates(now);
        cands.shuffle(&mut self.rng);
        for id in cands.into_iter().take(self.cfg.peers_max - active) {
            let id = self.fresh_id_for(id);
            let p = self.peers.get_mut(&id).expect("candidate");
            p.state = PeerState::Connecting;
            p.attempts += 1;
            let addr = p.addr;
            self.timers
                .set(Timer::Connect(id), now + self.cfg.connect_timeout);
            self.out.push_back(Output::Connect { peer: id, addr });
        }
    }

    /// A [`PeerId`] names one connection: a peer connected to again gets a
    /// new id, so late events of its old connection cannot touch the new.
    fn fresh_id_for(&mut self, id: PeerId) -> PeerId {
        if self.peers[&id].attempts == 0 {
            return id;
        }
        let new = PeerId(self.next_peer);
        self.next_peer += 1;
        let p = self.peers.remove(&id).expect("known");
        self.by_addr.insert((p.user.clone(), p.addr), new);
        self.peers.insert(new, p);
        new
    }

    /// All connection slots are taken while a useful peer waits: close
    /// ready peers that had nothing to give in this round (`exhausted`)
    /// and have nothing in flight.
    fn evict_unneeded(&mut self, now: Instant, exhausted: &BTreeSet<PeerId>) -> bool {
        if exhausted.is_empty() || self.active_peers() < self.cfg.peers_max {
            return false;
        }
        let picker = &self.picker;
        let waiting = self.peers.values_mut().any(|p| {
            p.state == PeerState::Idle
                && p.ticket.expires_ms >= now.as_millis()
                && p.hint_useful(|i| picker.is_needed(i))
        });
        if !waiting {
            return false;
        }
        let idle: Vec<PeerId> = exhausted
            .iter()
            .copied()
            .filter(|id| self.peers[id].requests.is_empty())
            .collect();
        for &id in &idle {
            self.disconnect(id, DisconnectReason::Unneeded, PeerState::Failed);
        }
        !idle.is_empty()
    }

    // ------------------------------------------------------------ requests

    /// Sends requests until the download's cap is reached or no ready peer
    /// with room has a piece to give. Returns the peers found to have none.
    ///
    /// Verified pieces not yet written count against the cap too: piece
    /// bytes held anywhere (in flight, or queued for a slow disk) stay
    /// bounded by `max_parallel` pieces, whatever the file size.
    ///
    /// Under rate limits (module docs) a request goes out only with the
    /// node's allowance (global limit) and to a peer whose bucket allows
    /// (per-peer limit); what was held back is noted for
    /// [`Download::wants_request`] and the `Rate` deadline.
    fn fill_requests(&mut self, now: Instant) -> BTreeSet<PeerId> {
        let mut exhausted = BTreeSet::new();
        self.gate.held_global = false;
        while self.in_flight + (self.picker.writing_count() as usize) < self.cfg.max_parallel {
            let Some(id) = self.choose_peer(now, &exhausted) else {
                break;
            };
            match self.choose_piece(id) {
                Some(_) if self.cfg.max_rate.is_some() && !self.gate.allowed => {
                    self.gate.held_global = true;
                    break;
                }
                Some(index) => {
                    self.gate.allowed = false;
                    self.send_request(now, id, index);
                }
                None => {
                    exhausted.insert(id);
                }
            }
        }
        self.arm_peer_rate(now);
        exhausted
    }

    /// Under a per-peer limit: the soonest time a peer with room and a
    /// piece for us, held back only by its bucket, may be asked again.
    fn arm_peer_rate(&mut self, now: Instant) {
        self.gate.held_peer = false;
        if self.cfg.max_rate_per_peer.is_none() {
            self.timers.clear(Timer::Rate);
            return;
        }
        let piece_len = self.meta.piece_len;
        let next = self
            .peers
            .iter()
            .filter(|(_, p)| p.has_room(&self.cfg, piece_len) && !p.rate_allows(now))
            .filter(|(id, _)| self.choose_piece(**id).is_some())
            .filter_map(|(_, p)| p.bucket.as_ref().map(|b| b.ready_at()))
            .min();
        match next {
            Some(at) => {
                self.gate.held_peer = true;
                self.timers.set(Timer::Rate, at);
            }
            None => self.timers.clear(Timer::Rate),
        }
    }

    /// A ready peer with room in its window (and, under a per-peer limit,
    /// allowance), at random, weighted by its measured rate (unmeasured
    /// peers count as fast as the fastest).
    fn choose_peer(&mut self, now: Instant, exhausted: &BTreeSet<PeerId>) -> Option<PeerId> {
        let piece_len = self.meta.piece_len;
        let unmeasured = self
            .peers
            .values()
            .filter_map(|p| p.rate_bps)
            .max()
            .unwrap_or(self.cfg.initial_rate_bps);
        let cands: Vec<(PeerId, u64)> = self
            .peers
            .iter()
            .filter(|(id, p)| {
                !exhausted.contains(id) && p.has_room(&self.cfg, piece_len) && p.rate_allows(now)
            })
            .map(|(id, p)| (*id, p.weight(unmeasured)))
            .collect();
        let total: u64 = cands.iter().map(|(_, w)| *w).sum();
        if total == 0 {
            return None;
        }
        let mut ticket = self.rng.random_range(0..total);
        for (id, w) in cands {
            if ticket < w {
                return Some(id);
            }
            ticket -= w;
        }
        unreachable!("weights sum to total")
    }

    /// The rarest wanted piece the peer holds; in endgame (every available
    /// missing piece in flight) a piece already asked of someone else.
    fn choose_piece(&self, id: PeerId) -> Option<u32> {
        let has: &PieceSet = self.peers[&id].pieces()?;
        self.picker.pick(has).or_else(|| {
            if self.picker.any_wanted_available() {
                return None;
            }
            Picker::pick_endgame(&self.requests, has, id, self.cfg.endgame_dup_max)
        })
    }

    fn send_request(&mut self, now: Instant, id: PeerId, index: u32) {
        let bytes = self.meta.piece_size(index);
        let p = self.peers.get_mut(&id).expect("chosen peer");
        p.take_rate(now, self.cfg.max_rate_per_peer, bytes);
        self.gate.requested += u64::from(bytes);
        let ahead = p.requests.len();
        let timeout = p.request_timeout(&self.cfg, bytes, ahead);
        let head = ahead == 0;
        p.requests.insert(index, Sent { at: now, head });
        self.requests.entry(index).or_default().push((id, now));
        if self.picker.state(index) == PieceState::Wanted {
            self.picker.set_in_flight(index);
        }
        self.in_flight += 1;
        self.stats.requests += 1;
        self.timers.set(Timer::Request(id, index), now + timeout);
        self.send(id, PeerMsg::Request { index });
    }
}
