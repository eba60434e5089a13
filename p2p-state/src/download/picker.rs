//! The piece picker: which pieces are wanted, in flight, being written or
//! done, how many peers hold each, and which piece to ask a given peer for
//! next (rarest first across the swarm, random tie-break; endgame
//! duplicates).
//!
//! Rarity counts the ready peers' `Have`s and, for peers known but not
//! ready (listed, connecting, failed), the tracker's word on what they
//! hold: a piece that many peers out of reach hold is not worth fetching
//! first from the one peer in reach that has it.
//!
//! Pure bookkeeping: it knows nothing of peers beyond the piece set passed
//! in, so it is tested on its own.

use std::collections::{BTreeMap, BTreeSet};

use p2p_proto::PieceSet;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::interface::PeerId;
use crate::time::Instant;

/// Where one piece stands.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum PieceState {
    /// Missing and not requested: in the pick queue.
    Wanted,
    /// Missing, requested from at least one peer.
    InFlight,
    /// Verified, handed to the driver in `WritePiece`.
    Writing,
    /// On disk (or already there at start).
    Done,
}

/// Piece states, availability and the rarest-first queue.
#[derive(Clone, Debug)]
pub(crate) struct Picker {
    /// A random permutation: the tie-break among equally rare pieces.
    rank: Vec<u32>,
    /// Ready peers holding each piece.
    avail: Vec<u32>,
    /// Known peers that are not ready holding each piece, by the
    /// tracker's word.
    known: Vec<u32>,
    state: Vec<PieceState>,
    /// `(no ready peer holds it, rarity, rank, piece)` of every `Wanted`
    /// piece: those a ready peer holds first, rarest first.
    queue: BTreeSet<(bool, u32, u32, u32)>,
    /// `Done` pieces, as announced to the tracker.
    done: PieceSet,
    writing: u32,
}

impl Picker {
    /// `have` (same length, else ignored) starts out `Done`.
    pub(super) fn new(pieces: u32, have: &PieceSet, rng: &mut ChaCha8Rng) -> Self {
        let mut rank: Vec<u32> = (0..pieces).collect();
        rank.shuffle(rng);
        let have_ok = have.len() == pieces;
        let mut p = Picker {
            rank,
            avail: vec![0; pieces as usize],
            known: vec![0; pieces as usize],
            state: vec![PieceState::Wanted; pieces as usize],
            queue: BTreeSet::new(),
            done: PieceSet::empty(pieces),
            writing: 0,
        };
        for i in 0..pieces {
            if have_ok && have.contains(i) {
                p.state[i as usize] = PieceState::Done;
                p.done.insert(i);
            } else {
                p.queue.insert(p.key(i));
            }
        }
        p
    }

    fn key(&self, i: u32) -> (bool, u32, u32, u32) {
        let (a, k) = (self.avail[i as usize], self.known[i as usize]);
        (a == 0, a.saturating_add(k), self.rank[i as usize], i)
    }

    pub(super) fn len(&self) -> u32 {
        self.state.len() as u32
    }

    pub(super) fn state(&self, i: u32) -> PieceState {
        self.state[i as usize]
    }

    /// Still to be fetched (wanted or in flight).
    pub(super) fn is_needed(&self, i: u32) -> bool {
        matches!(self.state(i), PieceState::Wanted | PieceState::InFlight)
    }

    pub(super) fn avail(&self, i: u32) -> u32 {
        self.avail[i as usize]
    }

    pub(super) fn done(&self) -> &PieceSet {
        &self.done
    }

    /// Verified pieces handed to the driver and not yet written.
    pub(super) fn writing_count(&self) -> u32 {
        self.writing
    }

    pub(super) fn done_count(&self) -> u32 {
        self.done.count()
    }

    /// Verified pieces (written or being written).
    pub(super) fn verified_count(&self) -> u32 {
        self.done_count() + self.writing
    }

    pub(super) fn all_verified(&self) -> bool {
        self.verified_count() == self.len()
    }

    pub(super) fn all_done(&self) -> bool {
        self.done_count() == self.len()
    }

    /// A ready peer now holds piece `i`.
    pub(super) fn add_avail(&mut self, i: u32) {
        self.reavail(i, |a| a + 1);
    }

    /// A ready peer no longer holds piece `i` (or is gone).
    pub(super) fn sub_avail(&mut self, i: u32) {
        debug_assert!(self.avail[i as usize] > 0, "availability of {i} underflows");
        self.reavail(i, |a| a.saturating_sub(1));
    }

    fn reavail(&mut self, i: u32, f: impl Fn(u32) -> u32) {
        self.rekey(i, |p| p.avail[i as usize] = f(p.avail[i as usize]));
    }

    /// Changes what `i`'s queue key is made of, keeping the queue right.
    fn rekey(&mut self, i: u32, f: impl FnOnce(&mut Self)) {
        let queued = self.state(i) == PieceState::Wanted;
        if queued {
            self.queue.remove(&self.key(i));
        }
        f(self);
        if queued {
            self.queue.insert(self.key(i));
        }
    }

    /// Known peers that are not ready hold piece `i` this many times
    /// (`known[i]`, one count per piece; another length is ignored).
    pub(super) fn set_known(&mut self, known: &[u32]) {
        if known.len() != self.known.len() {
            return;
        }
        for (i, &k) in known.iter().enumerate() {
            if self.known[i] != k {
                self.rekey(i as u32, |p| p.known[i] = k);
            }
        }
    }

    /// Is some wanted (not in flight) piece held by a ready peer? If not,
    /// every fetchable missing piece is in flight: endgame.
    pub(super) fn any_wanted_available(&self) -> bool {
        self.queue.first().is_some_and(|k| !k.0)
    }

    /// The rarest wanted piece `has` holds (random among equally rare).
    pub(super) fn pick(&self, has: &PieceSet) -> Option<u32> {
        self.queue
            .iter()
            .take_while(|k| !k.0)
            .map(|&(_, _, _, i)| i)
            .find(|&i| has.contains(i))
    }

    /// Wanted -> InFlight (a first request was sent).
    pub(super) fn set_in_flight(&mut self, i: u32) {
        debug_assert_eq!(self.state(i), PieceState::Wanted);
        self.queue.remove(&self.key(i));
        self.state[i as usize] = PieceState::InFlight;
    }

    /// InFlight -> Wanted (its last request was dropped).
    pub(super) fn requeue(&mut self, i: u32) {
        debug_assert_eq!(self.state(i), PieceState::InFlight);
        self.state[i as usize] = PieceState::Wanted;
        self.queue.insert(self.key(i));
    }

    /// Wanted/InFlight -> Writing (a verified copy arrived).
    pub(super) fn set_writing(&mut self, i: u32) {
        debug_assert!(self.is_needed(i));
        if self.state(i) == PieceState::Wanted {
            self.queue.remove(&self.key(i));
        }
        self.state[i as usize] = PieceState::Writing;
        self.writing += 1;
    }

    /// Writing -> Done. Returns false (and changes nothing) otherwise.
    pub(super) fn set_done(&mut self, i: u32) -> bool {
        if i >= self.len() || self.state(i) != PieceState::Writing {
            return false;
        }
        self.state[i as usize] = PieceState::Done;
        self.writing -= 1;
        self.done.insert(i);
        true
    }

    /// Endgame: among pieces in flight that `has` holds, not already asked of
    /// `peer`, with fewer than `dup_max` requesters: the one with the fewest
    /// requesters, then the oldest request.
    pub(super) fn pick_endgame(
        requests: &BTreeMap<u32, Vec<(PeerId, Instant)>>,
        has: &PieceSet,
        peer: PeerId,
        dup_max: usize,
    ) -> Option<u32> {
        requests
            .iter()
            .filter(|(i, rs)| {
                rs.len() < dup_max && has.contains(**i) && rs.iter().all(|(p, _)| *p != peer)
            })
            .min_by_key(|(i, rs)| (rs.len(), rs.iter().map(|(_, t)| *t).min(), **i))
            .map(|(i, _)| *i)
    }

    /// The queue, states, counts and `done` agree. Returns what is wrong.
    pub(super) fn check(&self) -> Result<(), String> {
        let mut writing = 0;
        for i in 0..self.len() {
            let s = self.state(i);
            if (s == PieceState::Wanted) != self.queue.contains(&self.key(i)) {
                return Err(format!("piece {i} ({s:?}) and the queue disagree"));
            }
            if (s == PieceState::Done) != self.done.contains(i) {
                return Err(format!("piece {i} ({s:?}) and the done set disagree"));
            }
            writing += u32::from(s == PieceState::Writing);
        }
        if writing != self.writing || self.queue.len() > self.state.len() {
            return Err(format!("writing count {} != {writing}", self.writing));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn picker(n: u32, have: &[u32], seed: u64) -> Picker {
        let mut h = PieceSet::empty(n);
        for &i in have {
            h.insert(i);
        }
        Picker::new(n, &h, &mut ChaCha8Rng::seed_from_u64(seed))
    }

    #[test]
    fn picks_the_rarest_piece_the_peer_holds() {
        let mut p = picker(4, &[], 1);
        for (i, n) in [(0, 3), (1, 1), (2, 2), (3, 1)] {
            for _ in 0..n {
                p.add_avail(i);
            }
        }
        let mut has = PieceSet::full(4);
        let first = p.pick(&has).unwrap();
        assert!(first == 1 || first == 3, "rarest is 1 or 3, got {first}");
        has.remove(1);
        has.remove(3);
        assert_eq!(p.pick(&has), Some(2));
        p.set_in_flight(2);
        assert_eq!(p.pick(&has), Some(0));
        p.requeue(2);
        assert_eq!(p.pick(&has), Some(2));
        p.check().unwrap();
    }

    #[test]
    fn rarity_counts_peers_known_but_not_ready() {
        let mut p = picker(3, &[], 4);
        (0..3).for_each(|i| p.add_avail(i));
        p.set_known(&[2, 0, 1]);
        let all = PieceSet::full(3);
        assert_eq!(p.pick(&all), Some(1), "nobody else holds 1");
        p.set_in_flight(1);
        assert_eq!(p.pick(&all), Some(2), "one peer out of reach holds 2");
        p.set_known(&[0, 0, 3]);
        assert_eq!(p.pick(&all), Some(0));
        p.set_known(&[0; 4]);
        assert_eq!(p.pick(&all), Some(0), "a wrong length is ignored");
        p.check().unwrap();
        let mut q = picker(2, &[], 4);
        q.set_known(&[5, 5]);
        assert!(!q.any_wanted_available(), "known alone is not in reach");
        assert_eq!(q.pick(&PieceSet::full(2)), None);
    }

    #[test]
    fn tie_break_depends_on_the_seed() {
        let firsts: BTreeSet<u32> = (0..32)
            .map(|seed| {
                let mut p = picker(16, &[], seed);
                (0..16).for_each(|i| p.add_avail(i));
                p.pick(&PieceSet::full(16)).unwrap()
            })
            .collect();
        assert!(firsts.len() > 4, "tie-break is not random: {firsts:?}");
    }

    #[test]
    fn unavailable_and_held_pieces_are_never_picked() {
        let mut p = picker(3, &[0], 2);
        assert_eq!(
            p.pick(&PieceSet::full(3)),
            None,
            "no peer holds anything yet"
        );
        (0..3).for_each(|i| p.add_avail(i));
        p.set_writing(1);
        assert_eq!(p.pick(&PieceSet::full(3)), Some(2));
        assert!(p.set_done(1) && !p.set_done(1));
        assert_eq!(p.verified_count(), 2);
        assert!(!p.any_wanted_available() || p.pick(&PieceSet::full(3)) == Some(2));
        p.check().unwrap();
    }

    #[test]
    fn resume_set_of_the_wrong_length_is_ignored() {
        let p = Picker::new(4, &PieceSet::full(5), &mut ChaCha8Rng::seed_from_u64(0));
        assert_eq!(p.done_count(), 0);
    }

    #[test]
    fn endgame_prefers_fewest_requesters_then_oldest() {
        let (a, b, c) = (PeerId(1), PeerId(2), PeerId(3));
        let mut r = BTreeMap::new();
        r.insert(5, vec![(a, Instant(10))]);
        r.insert(6, vec![(a, Instant(5))]);
        r.insert(7, vec![(a, Instant(1)), (b, Instant(2))]);
        let all = PieceSet::full(8);
        assert_eq!(Picker::pick_endgame(&r, &all, c, 3), Some(6));
        assert_eq!(
            Picker::pick_endgame(&r, &all, a, 3),
            None,
            "a asked for all"
        );
        assert_eq!(Picker::pick_endgame(&r, &all, c, 1), None, "dup cap");
        let mut only7 = PieceSet::empty(8);
        only7.insert(7);
        assert_eq!(Picker::pick_endgame(&r, &only7, c, 2), None);
        assert_eq!(Picker::pick_endgame(&r, &only7, c, 3), Some(7));
    }
}
