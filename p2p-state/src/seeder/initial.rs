//! Initial seeding (BitTorrent's super-seeding): a seeder holding a whole
//! file, facing several downloaders of it, sends each piece out about once
//! before it sends any piece twice, so the downloaders fetch the rest from
//! each other instead of all from the seeder.
//!
//! It works with the existing protocol: the `Have` that answers `Open` may
//! name a subset of the pieces held (a downloader only asks for pieces a
//! peer says it holds), `HavePiece` names more later, and downloaders tell
//! their peers of each piece they now hold (`HavePiece`, either way). For a
//! share registered whole:
//!
//! - the first connection on the share sees every piece (a lone downloader
//!   is never slowed down), and so does a connection that is the only one
//!   left on its share (it hears a full `Have` again);
//! - every later connection sees a *view*: always `initial_seed_window`
//!   pieces it does not hold (while there are such pieces), those claimed
//!   least often (shown to a view, asked for by a full view, or announced
//!   held by a downloader; ties by index, so views start disjoint). Each
//!   piece it gets, from us or from anyone (its `HavePiece`), shows it one
//!   more. Its queue here never runs dry, it is never left with nothing to
//!   ask, and what it asks of us are the pieces the swarm lacks; the rest
//!   it fetches from the other downloaders.
//!
//! A request for a held piece outside a view is served all the same (the
//! view only steers which pieces are asked for). A downloader that never
//! announces what it holds still gets one more piece per piece served.
//! Pure bookkeeping: the seeder (`mod.rs`) calls it and sends what it
//! returns.

use std::collections::{BTreeMap, BTreeSet};

use p2p_proto::PieceSet;

use super::interface::{ConnId, ShareId};

/// One share registered whole.
#[derive(Clone, Debug)]
struct Share {
    /// Times each piece was shown to a view, asked for by a full view or
    /// announced held by a downloader: a rough count of its copies.
    claimed: Vec<u32>,
    /// `(claimed, piece)` of every piece: the next one to show is the
    /// first a connection neither sees nor holds.
    order: BTreeSet<(u32, u32)>,
}

impl Share {
    fn new(pieces: u32) -> Self {
        Share {
            claimed: vec![0; pieces as usize],
            order: (0..pieces).map(|i| (0, i)).collect(),
        }
    }

    fn claim(&mut self, i: u32) {
        let Some(c) = self.claimed.get_mut(i as usize) else {
            return;
        };
        self.order.remove(&(*c, i));
        *c = c.saturating_add(1);
        self.order.insert((*c, i));
    }
}

/// What one restricted connection sees and holds.
#[derive(Clone, Debug)]
struct View {
    share: ShareId,
    shown: PieceSet,
    /// Pieces it holds (sent by us or announced by it).
    held: PieceSet,
    /// Shown pieces it does not hold.
    unheld: usize,
}

/// What the seeder must tell a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Show {
    /// One more piece (`HavePiece`).
    Piece(ConnId, u32),
    /// Every piece held (`Have`): the view is lifted.
    All(ConnId),
}

/// Initial-seeding state of every share registered whole, and every
/// restricted view.
#[derive(Clone, Debug)]
pub(crate) struct Initial {
    /// Unheld pieces a view keeps shown; 0 turns initial seeding off.
    window: usize,
    shares: BTreeMap<ShareId, Share>,
    views: BTreeMap<ConnId, View>,
}

impl Initial {
    pub(super) fn new(window: usize) -> Self {
        Initial {
            window,
            shares: BTreeMap::new(),
            views: BTreeMap::new(),
        }
    }

    /// A share registered with every piece is served in initial seeding.
    pub(super) fn add_share(&mut self, share: ShareId, have: &PieceSet) {
        if self.window > 0 && have.is_full() && !have.is_empty() {
            self.shares.insert(share, Share::new(have.len()));
        }
    }

    /// The share is no longer served (its connections close too).
    pub(super) fn remove_share(&mut self, share: ShareId) {
        self.shares.remove(&share);
        self.views.retain(|_, v| v.share != share);
    }

    /// `conn` opened `share` while `others` connections were already on
    /// it: the pieces its `Have` names (`have` itself unless restricted).
    pub(super) fn on_open(
        &mut self,
        conn: ConnId,
        share: ShareId,
        have: &PieceSet,
        others: usize,
    ) -> PieceSet {
        if others == 0 || !self.shares.contains_key(&share) {
            return have.clone();
        }
        let view = View {
            share,
            shown: PieceSet::empty(have.len()),
            held: PieceSet::empty(have.len()),
            unheld: 0,
        };
        self.views.insert(conn, view);
        self.top_up(conn);
        self.views[&conn].shown.clone()
    }

    /// Shows `conn` least-claimed pieces it neither sees nor holds until
    /// it sees `window` it does not hold. Returns them.
    fn top_up(&mut self, conn: ConnId) -> Vec<u32> {
        let mut out = Vec::new();
        let Some(v) = self.views.get_mut(&conn) else {
            return out;
        };
        let Some(s) = self.shares.get_mut(&v.share) else {
            return out;
        };
        while v.unheld < self.window {
            let next = s
                .order
                .iter()
                .map(|&(_, i)| i)
                .find(|&i| !v.shown.contains(i) && !v.held.contains(i));
            let Some(i) = next else { break };
            s.claim(i);
            v.shown.insert(i);
            v.unheld += 1;
            out.push(i);
        }
        out
    }

    /// `conn` holds `index` now; `ours` if we sent it. Returns the pieces
    /// it is shown in exchange.
    fn holds(&mut self, conn: ConnId, index: u32, ours: bool) -> Vec<Show> {
        let Some(v) = self.views.get_mut(&conn) else {
            return Vec::new();
        };
        if index >= v.held.len() || v.held.contains(index) {
            return Vec::new();
        }
        v.held.insert(index);
        if v.shown.contains(index) {
            v.unheld -= 1;
        } else if !ours && let Some(s) = self.shares.get_mut(&v.share) {
            s.claim(index);
        }
        self.top_up(conn)
            .into_iter()
            .map(|i| Show::Piece(conn, i))
            .collect()
    }

    /// `conn` (on `share`) asked for `index` and it was queued.
    pub(super) fn on_request(&mut self, conn: ConnId, share: ShareId, index: u32) {
        let Some(s) = self.shares.get_mut(&share) else {
            return;
        };
        match self.views.get(&conn) {
            Some(v) if v.shown.contains(index) => {} // claimed when shown
            _ => s.claim(index),
        }
    }

    /// `index` was sent on `conn`: what to show it.
    pub(super) fn on_served(&mut self, conn: ConnId, index: u32) -> Vec<Show> {
        self.holds(conn, index, true)
    }

    /// `conn` (on `share`) says it holds `index` (got from anyone).
    pub(super) fn on_held(&mut self, conn: ConnId, share: ShareId, index: u32) -> Vec<Show> {
        if !self.views.contains_key(&conn)
            && let Some(s) = self.shares.get_mut(&share)
        {
            s.claim(index); // a full view: one more copy out there
        }
        self.holds(conn, index, false)
    }

    /// `conn` is gone. A view left alone on its share now sees everything.
    pub(super) fn forget(
        &mut self,
        conn: ConnId,
        open_on: impl Fn(ShareId) -> Vec<ConnId>,
    ) -> Vec<Show> {
        self.views.remove(&conn);
        let shares: BTreeSet<ShareId> = self.views.values().map(|v| v.share).collect();
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

    /// What `conn` sees, if restricted.
    #[cfg(test)]
    pub(super) fn view(&self, conn: ConnId) -> Option<&PieceSet> {
        self.views.get(&conn).map(|v| &v.shown)
    }

    /// Views belong to shares registered whole and to connections the
    /// caller says are open on them; counts agree. Returns what is wrong.
    pub(super) fn check(
        &self,
        open_share: impl Fn(ConnId) -> Option<ShareId>,
    ) -> Result<(), String> {
        for (conn, v) in &self.views {
            let Some(s) = self.shares.get(&v.share) else {
                return Err(format!(
                    "{conn} has a view of a share not in initial seeding"
                ));
            };
            if open_share(*conn) != Some(v.share) {
                return Err(format!("{conn} has a view but is not open on its share"));
            }
            let n = s.claimed.len() as u32;
            if v.shown.len() != n || v.held.len() != n {
                return Err(format!("{conn}'s view has the wrong piece count"));
            }
            let unheld = v.shown.iter().filter(|&i| !v.held.contains(i)).count();
            if unheld != v.unheld {
                return Err(format!(
                    "{conn}: {unheld} unheld pieces shown, counted {}",
                    v.unheld
                ));
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

    const S: ShareId = ShareId::Upload(1);

    fn open(ini: &mut Initial, conn: u64, have: &PieceSet, others: usize) -> PieceSet {
        ini.on_open(ConnId(conn), S, have, others)
    }

    #[test]
    fn views_start_disjoint_and_the_first_connection_sees_everything() {
        let mut ini = Initial::new(4);
        let have = PieceSet::full(16);
        ini.add_share(S, &have);
        assert!(
            open(&mut ini, 1, &have, 0).is_full(),
            "a lone downloader sees all"
        );
        let a = open(&mut ini, 2, &have, 1);
        let b = open(&mut ini, 3, &have, 2);
        assert_eq!((a.count(), b.count()), (4, 4));
        assert!(
            a.iter().all(|i| !b.contains(i)),
            "views overlap: {a:?} {b:?}"
        );
        ini.check(|_| Some(S)).unwrap();
    }

    #[test]
    fn a_partial_share_or_window_zero_is_never_restricted() {
        let mut ini = Initial::new(2);
        let mut have = PieceSet::full(8);
        have.remove(3);
        ini.add_share(S, &have);
        assert_eq!(open(&mut ini, 2, &have, 3), have);
        let mut off = Initial::new(0);
        off.add_share(S, &PieceSet::full(8));
        assert!(off.on_open(ConnId(2), S, &PieceSet::full(8), 3).is_full());
    }

    #[test]
    fn a_piece_got_from_us_or_anyone_shows_one_more_never_one_held() {
        let mut ini = Initial::new(2);
        let have = PieceSet::full(6);
        ini.add_share(S, &have);
        open(&mut ini, 1, &have, 0);
        let v = open(&mut ini, 2, &have, 1);
        let first = v.iter().next().unwrap();
        let out = ini.on_served(ConnId(2), first);
        let [Show::Piece(_, next)] = out[..] else {
            panic!("one more per piece served: {out:?}")
        };
        assert!(!v.contains(next));
        // It announces a piece it was never shown (got elsewhere): no new
        // piece, and that piece is never shown to it.
        let elsewhere = (0..6)
            .find(|&i| !ini.view(ConnId(2)).unwrap().contains(i))
            .unwrap();
        assert_eq!(ini.on_held(ConnId(2), S, elsewhere), vec![]);
        // It announces a shown piece got elsewhere: one more, not `elsewhere`.
        let out = ini.on_held(ConnId(2), S, next);
        let [Show::Piece(_, third)] = out[..] else {
            panic!("{out:?}")
        };
        assert_ne!(third, elsewhere);
        assert_eq!(ini.on_held(ConnId(2), S, next), vec![], "announced twice");
        ini.check(|_| Some(S)).unwrap();
    }

    #[test]
    fn a_view_left_alone_on_its_share_is_lifted() {
        let mut ini = Initial::new(2);
        let have = PieceSet::full(8);
        ini.add_share(S, &have);
        open(&mut ini, 1, &have, 0);
        open(&mut ini, 2, &have, 1);
        open(&mut ini, 3, &have, 2);
        assert_eq!(
            ini.forget(ConnId(1), |_| vec![ConnId(2), ConnId(3)]),
            vec![]
        );
        assert_eq!(
            ini.forget(ConnId(3), |_| vec![ConnId(2)]),
            vec![Show::All(ConnId(2))]
        );
        assert!(ini.view(ConnId(2)).is_none());
    }
}
