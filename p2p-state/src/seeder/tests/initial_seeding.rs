//! Initial seeding: later downloaders see disjoint, growing views of a
//! whole share, and the window's default.

use super::*;

/// A seeder sharing all 10 pieces of `f.bin`, initial seeding with `window`.
fn whole_rig(window: usize) -> Rig {
    let cfg = SeederConfig {
        initial_seed_window: window,
        ..SeederConfig::default()
    };
    let mut s = Seeder::new(cfg, NOW);
    s.set_identity(NOW, user("alice"), KEY);
    let g = GroupName::new("g").unwrap();
    s.add_share(NOW, SHARE, g, &meta(10), PieceSet::full(10))
        .unwrap();
    Rig {
        s,
        now: NOW,
        next_conn: 1,
    }
}

/// Opens a connection for `who` and returns the pieces its `Have` named.
fn open_seeing(r: &mut Rig, who: &str) -> (ConnId, PieceSet) {
    let conn = r.connect_as(key_of(who));
    let out = r.msg(
        conn,
        PeerMsg::Open {
            ticket: ticket_for(who),
        },
    );
    match &out[..] {
        [
            Output::Send {
                msg: PeerMsg::Have { pieces },
                ..
            },
        ] => (conn, pieces.clone()),
        _ => panic!("{out:?}"),
    }
}

/// Serves `index` on `conn` (request, `Serve`, then the driver's `Served`).
fn serve(r: &mut Rig, conn: ConnId, index: u32) -> Vec<Output> {
    assert_eq!(reads(&r.msg(conn, PeerMsg::Request { index })), vec![index]);
    r.input(Input::Served { conn, index })
}

fn shown(out: &[Output], to: ConnId) -> Vec<PeerMsg> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send { conn, msg } if *conn == to => match msg {
                PeerMsg::Have { .. } | PeerMsg::HavePiece { .. } => Some(msg.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

#[test]
fn initial_seeding_gives_later_downloaders_disjoint_growing_views() {
    let mut r = whole_rig(3);
    let (_, first) = open_seeing(&mut r, "bob");
    assert!(first.is_full(), "the first downloader sees every piece");
    let (c2, v2) = open_seeing(&mut r, "carol");
    let (c3, v3) = open_seeing(&mut r, "dave");
    assert_eq!((v2.count(), v3.count()), (3, 3), "views of the window");
    assert!(v2.iter().all(|i| !v3.contains(i)), "{v2:?} {v3:?}");
    let i = v2.iter().next().unwrap();
    let out = serve(&mut r, c2, i);
    let more = shown(&out, c2);
    let [PeerMsg::HavePiece { index: next }] = more[..] else {
        panic!("one more piece shown per piece served: {out:?}")
    };
    assert!(
        !v2.contains(next) && !v3.contains(next),
        "the next piece is one nobody was shown: {next}"
    );
    assert!(shown(&out, c3).is_empty(), "others hear nothing");
}

#[test]
fn a_downloader_that_got_its_shown_pieces_elsewhere_is_shown_more() {
    let mut r = whole_rig(2);
    let _ = open_seeing(&mut r, "bob");
    let (c2, v2) = open_seeing(&mut r, "carol");
    let mut seen = v2.clone();
    for i in v2.iter() {
        let out = r.msg(c2, PeerMsg::HavePiece { index: i });
        let [PeerMsg::HavePiece { index: next }] = shown(&out, c2)[..] else {
            panic!("one more for each shown piece got elsewhere: {out:?}")
        };
        assert!(!seen.contains(next), "{next} shown twice");
        seen.insert(next);
    }
    assert_eq!(seen.count(), 4, "it still sees 2 pieces it does not hold");
    let out = r.msg(c2, PeerMsg::HavePiece { index: 99 });
    assert!(out.is_empty(), "an index out of range is ignored: {out:?}");
}

#[test]
fn a_view_left_alone_sees_everything_and_a_partial_share_has_no_views() {
    let mut r = whole_rig(2);
    let (c1, _) = open_seeing(&mut r, "bob");
    let (c2, v2) = open_seeing(&mut r, "carol");
    assert_eq!(v2.count(), 2);
    let out = r.input(Input::Closed { conn: c1 });
    assert_eq!(
        shown(&out, c2),
        vec![PeerMsg::Have {
            pieces: PieceSet::full(10)
        }],
        "a lone downloader is never held back"
    );
    let mut r = Rig::with(SeederConfig {
        initial_seed_window: 2,
        ..SeederConfig::default()
    });
    let _ = open_seeing(&mut r, "bob");
    let (_, v) = open_seeing(&mut r, "carol");
    assert_eq!(v.count(), 9, "a partial holder shows what it has");
    let mut r = whole_rig(0);
    let _ = open_seeing(&mut r, "bob");
    assert!(open_seeing(&mut r, "carol").1.is_full(), "window 0 is off");
}

#[test]
fn the_default_window_shows_exactly_initial_seed_window_unheld_pieces() {
    let mut r = whole_rig(SeederConfig::default().initial_seed_window);
    let _ = open_seeing(&mut r, "bob");
    let (c2, v) = open_seeing(&mut r, "carol");
    assert_eq!(v.count() as usize, INITIAL_SEED_WINDOW);
    let i = v.iter().next().unwrap();
    let out = serve(&mut r, c2, i);
    assert_eq!(shown(&out, c2).len(), 1, "back to the window, not past it");
}
