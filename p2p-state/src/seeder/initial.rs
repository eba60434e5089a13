//! Initial seeding (BitTorrent's super-seeding): a seeder holding a whole
//! file, facing several downloaders of it, sends each piece out about once
//! before it sends any piece twice, so the downloaders fetch the rest from
//! each other instead of all from the seeder.
//!
//! It works with the existing protocol: the `Have` that answers `Open` may
//! name a subset of the pieces held (a downloader only asks for pieces a
//! peer says it holds), and `HavePiece` names more later. While a share is
//! in initial seeding (registered whole, and some piece not yet sent to
//! anyone):
//!
//! - the first connection on the share sees every piece (a lone downloader
//!   is never slowed down), and so does a connection that is the only one
//!   left on its share (it hears a full `Have` again);
//! - every later connection sees a *view* of `initial_seed_window` pieces,
//!   those claimed least often (shown to a view or asked for by a full
//!   view; ties by index, so views start disjoint), and each piece served
//!   on it shows it one more. The seeder's queue for it never runs dry,
//!   and its pieces are the ones the others do not have;
//! - once every piece has been sent at least once, the share leaves
//!   initial seeding and every view hears a full `Have`.
//!
//! A request for a held piece outside a view is served all the same (the
//! view only steers which pieces are asked for). Pure bookkeeping: the
//! seeder (`mod.rs`) calls it and sends what it returns.

use std::collections::{BTreeMap, BTreeSet};

use p2p_proto::PieceSet;

use super::types::{ConnId, ShareId};

/// One share in initial seeding.
#[derive(Clone, Debug)]
struct Share {
    /// Times each piece was shown to a view or asked for by a full view.
    claimed: Vec<u32>,
    /// `(claimed, piece)` of every piece: the next one to show is the
    /// first not already in the view.
    order: BTreeSet<(u32, u32)>,
    /// Pieces sent at least once.
    sent: PieceSet,
}

impl Share {
    fn new(pieces: u32) -> Self {
        Share {
            claimed: vec![0; pieces as usize],
            order: (0..pieces).map(|i| (0, i)).collect(),
            sent: PieceSet::empty(pieces),
        }
    }

    fn claim(&mut self, i: u32) {
        let c = &mut self.claimed[i as usize];
        self.order.remove(&(*c, i));
        *c += 1;
        self.order.insert((*c, i));
    }

    /// The least claimed piece not in `view`, claimed.
    fn next_for(&mut self, view: &PieceSet) -> Option<u32> {
        let i = self
            .order
            .iter()
            .map(|&(_, i)| i)
            .find(|&i| !view.contains(i))?;
        self.claim(i);
        Some(i)
    }
}

/// What the seeder must tell a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Show {
    /// One more piece (`HavePiece`).
    Piece(ConnId, u32),
    /// Every piece held (`Have`): the view is lifted.
    All(ConnId),
}

/// Initial-seeding state of every share in it, and every restricted view.
#[derive(Clone, Debug, Default)]
pub(crate) struct Initial {
    shares: BTreeMap<ShareId, Share>,
    /// Connections that see only part of their share, and what they see.
    views: BTreeMap<ConnId, (ShareId, PieceSet)>,
}

impl Initial {
    /// A share registered with every piece starts in initial seeding.
    pub fn add_share(&mut self, share: ShareId, have: &PieceSet) {
        if have.is_full() && !have.is_empty() {
            self.shares.insert(share, Share::new(have.len()));
        }
    }

    /// The share is no longer served (its connections close too).
    pub fn remove_share(&mut self, share: ShareId) {
        self.shares.remove(&share);
        self.views.retain(|_, (s, _)| *s != share);
    }

    /// `conn` opened `share` while `others` connections were already on
    /// it: the pieces its `Have` names (`have` itself unless restricted).
    pub fn on_open(
        &mut self,
        conn: ConnId,
        share: ShareId,
        have: &PieceSet,
        others: usize,
        window: usize,
    ) -> PieceSet {
        let Some(s) = self.shares.get_mut(&share) else {
            return have.clone();
        };
        if others == 0 || window == 0 {
            return have.clone();
        }
        let mut view = PieceSet::empty(have.len());
        for _ in 0..window {
            match s.next_for(&view) {
                Some(i) => view.insert(i),
                None => break,
            };
        }
        self.views.insert(conn, (share, view.clone()));
        view
    }

    /// `conn` (on `share`) asked for `index` and it was queued.
    pub fn on_request(&mut self, conn: ConnId, share: ShareId, index: u32) {
        let Some(s) = self.shares.get_mut(&share) else {
            return;
        };
        match self.views.get(&conn) {
            Some((_, view)) if view.contains(index) => {} // claimed when shown
            _ => s.claim(index),
        }
    }

    /// `index` of `share` was sent on `conn`: what to show whom. When the
    /// last unsent piece goes out, the share leaves initial seeding and
    /// every view on it is lifted.
    pub fn on_served(&mut self, conn: ConnId, share: ShareId, index: u32) -> Vec<Show> {
        let Some(s) = self.shares.get_mut(&share) else {
            return Vec::new();
        };
        s.sent.insert(index);
        if s.sent.is_full() {
            self.shares.remove(&share);
            return self.lift_share(share);
        }
        let Some((_, view)) = self.views.get_mut(&conn) else {
            return Vec::new();
        };
        match s.next_for(view) {
            Some(i) => {
                view.insert(i);
                vec![Show::Piece(conn, i)]
            }
            None => Vec::new(),
        }
    }

    /// `conn` is gone. If a single connection is left on its share and it
    /// is restricted, it now sees everything.
    pub fn forget(&mut self, conn: ConnId, open_on: impl Fn(ShareId) -> Vec<ConnId>) -> Vec<Show> {
        let Some((share, _)) = self.views.remove(&conn) else {
            return self.lift_lone(open_on);
        };
        let left = open_on(share);
        match left.as_slice() {
            [only] if self.views.remove(only).is_some() => vec![Show::All(*only)],
            _ => Vec::new(),
        }
    }

    /// A full-view connection closed: a view left alone on its share is
    /// lifted too.
    fn lift_lone(&mut self, open_on: impl Fn(ShareId) -> Vec<ConnId>) -> Vec<Show> {
        let shares: BTreeSet<ShareId> = self.views.values().map(|(s, _)| *s).collect();
        let mut out = Vec::new();
        for share in shares {
            if let [only] = open_on(share).as_slice()
                && self.views.remove(only).is_some()
            {
                out.push(Show::All(*only));
            }
        }
        out
    }

    fn lift_share(&mut self, share: ShareId) -> Vec<Show> {
        let lifted: Vec<ConnId> = self
            .views
            .iter()
            .filter(|(_, (s, _))| *s == share)
            .map(|(c, _)| *c)
            .collect();
        for c in &lifted {
            self.views.remove(c);
        }
        lifted.into_iter().map(Show::All).collect()
    }

    /// Is `share` in initial seeding?
    #[cfg(test)]
    pub fn is_active(&self, share: ShareId) -> bool {
        self.shares.contains_key(&share)
    }

    /// What `conn` sees, if restricted.
    #[cfg(test)]
    pub fn view(&self, conn: ConnId) -> Option<&PieceSet> {
        self.views.get(&conn).map(|(_, v)| v)
    }

    /// Views belong to shares in initial seeding and to connections the
    /// caller says are open on them. Returns what is wrong.
    pub fn check(&self, open_share: impl Fn(ConnId) -> Option<ShareId>) -> Result<(), String> {
        for (conn, (share, view)) in &self.views {
            if !self.shares.contains_key(share) {
                return Err(format!("{conn} has a view of a share not in initial seeding"));
            }
            if open_share(*conn) != Some(*share) {
                return Err(format!("{conn} has a view but is not open on its share"));
            }
            if view.len() as usize != self.shares[share].claimed.len() {
                return Err(format!("{conn}'s view has the wrong piece count"));
            }
        }
        for s in self.shares.values() {
            if s.order.len() != s.claimed.len() {
                return Err("initial-seeding order and claims disagree".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: ShareId = ShareId(1);

    #[test]
    fn views_start_disjoint_and_the_first_connection_sees_everything() {
        let mut ini = Initial::default();
        let have = PieceSet::full(16);
        ini.add_share(S, &have);
        let first = ini.on_open(ConnId(1), S, &have, 0, 4);
        assert!(first.is_full(), "a lone downloader sees every piece");
        let a = ini.on_open(ConnId(2), S, &have, 1, 4);
        let b = ini.on_open(ConnId(3), S, &have, 2, 4);
        assert_eq!((a.count(), b.count()), (4, 4));
        assert!(a.iter().all(|i| !b.contains(i)), "views overlap: {a:?} {b:?}");
    }

    #[test]
    fn a_partial_share_is_never_restricted() {
        let mut ini = Initial::default();
        let mut have = PieceSet::full(8);
        have.remove(3);
        ini.add_share(S, &have);
        assert_eq!(ini.on_open(ConnId(2), S, &have, 3, 2), have);
        assert!(!ini.is_active(S));
    }

    #[test]
    fn each_serve_shows_one_more_and_the_last_unsent_piece_lifts_every_view() {
        let mut ini = Initial::default();
        let have = PieceSet::full(4);
        ini.add_share(S, &have);
        ini.on_open(ConnId(1), S, &have, 0, 2);
        let v = ini.on_open(ConnId(2), S, &have, 1, 2);
        let shown: Vec<u32> = v.iter().collect();
        let first = shown[0];
        let out = ini.on_served(ConnId(2), S, first);
        assert_eq!(out.len(), 1, "one more piece shown: {out:?}");
        let Show::Piece(_, next) = out[0] else {
            panic!("expected a piece: {out:?}")
        };
        assert!(!shown.contains(&next));
        for i in (0..4).filter(|&i| i != first) {
            let out = ini.on_served(ConnId(1), S, i);
            if i == (0..4).filter(|&i| i != first).last().unwrap() {
                assert_eq!(out, vec![Show::All(ConnId(2))], "every piece sent once");
            }
        }
        assert!(!ini.is_active(S) && ini.view(ConnId(2)).is_none());
    }

    #[test]
    fn a_view_left_alone_on_its_share_is_lifted() {
        let mut ini = Initial::default();
        let have = PieceSet::full(8);
        ini.add_share(S, &have);
        ini.on_open(ConnId(1), S, &have, 0, 2);
        ini.on_open(ConnId(2), S, &have, 1, 2);
        ini.on_open(ConnId(3), S, &have, 2, 2);
        assert_eq!(ini.forget(ConnId(1), |_| vec![ConnId(2), ConnId(3)]), vec![]);
        assert_eq!(
            ini.forget(ConnId(3), |_| vec![ConnId(2)]),
            vec![Show::All(ConnId(2))]
        );
        assert!(ini.view(ConnId(2)).is_none());
    }
}
