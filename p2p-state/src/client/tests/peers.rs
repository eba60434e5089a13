//! Seeders: one proving another key than the tracker vouched for hears
//! nothing, and one the tracker pushes is dialled by its file's download.

use super::*;

/// The seeder the tracker lists proves another key at its address: the
/// connection is closed with not a byte sent (no hello, no ticket).
#[test]
fn a_seeder_address_answered_by_another_key_hears_nothing() {
    use p2p_proto::PieceSet;
    let meta = good_meta();
    let (out, mut n, tconn) = asking_for_peers(meta.clone());
    let addr = SocketAddr::from(([10, 0, 0, 9], 9000));
    let vouched = KeyId([0x53; 32]);
    let info = listing("s", addr, PieceSet::full(3), &meta.name, &meta, vouched);
    let out = answer(&mut n, tconn, &out, Reply::Peers(vec![info]));
    let conn = dialled(&out);
    let peer = KeyId([0x52; 32]);
    n.handle_input(T0, Input::PeerConnected { conn, peer });
    let out = drain(&mut n);
    assert_eq!(out, vec![Output::PeerClose { conn }], "nothing sent");
    let lines = n.download_lines(T0);
    let p = lines[0].progress.as_ref().unwrap();
    let why = p.waiting_reason.as_ref().map(|w| w.to_string());
    assert!(why.is_some_and(|w| w.contains(&peer.to_string())), "{p:?}");
}

/// A source the tracker pushes unasked (`FromTracker::Peers`) is dialled
/// by the running download of that file at once; a push for another file
/// dials nothing.
#[test]
fn a_pushed_peer_is_dialled_by_the_download_of_its_file() {
    use p2p_proto::{PeerInfo, PieceSet};
    let meta = good_meta();
    let (out, mut n, tconn) = asking_for_peers(meta.clone());
    let info = |user: &str, port: u16, pieces: PieceSet, file: &FileName| -> PeerInfo {
        let addr = SocketAddr::from(([10, 0, 0, 9], port));
        listing(user, addr, pieces, file, &meta, KeyId([0x53; 32]))
    };
    let seeder = info("s", 9000, PieceSet::full(3), &meta.name);
    let out = answer(&mut n, tconn, &out, Reply::Peers(vec![seeder]));
    assert!(out.iter().any(|o| matches!(o, Output::PeerConnect { .. })));
    let dials = |out: &[Output]| -> Vec<SocketAddr> {
        out.iter()
            .filter_map(|o| match o {
                Output::PeerConnect { addr, .. } => Some(*addr),
                _ => None,
            })
            .collect()
    };
    let mut one = PieceSet::empty(3);
    one.insert(1);
    let other = FileName::new("other.bin").unwrap();
    let push = |peers: Vec<PeerInfo>| FromTracker::Peers {
        group: GroupName::new("g").unwrap(),
        file: peers[0].ticket.file.clone(),
        peers,
    };
    let payload = push(vec![info("q", 9002, one.clone(), &other)]).to_bytes();
    n.handle_input(
        T0,
        Input::TrackerFrame {
            conn: tconn,
            payload,
        },
    );
    assert!(dials(&drain(&mut n)).is_empty(), "another file's push");
    let payload = push(vec![info("p", 9001, one, &meta.name)]).to_bytes();
    n.handle_input(
        T0,
        Input::TrackerFrame {
            conn: tconn,
            payload,
        },
    );
    assert_eq!(
        dials(&drain(&mut n)),
        vec![SocketAddr::from(([10, 0, 0, 9], 9001))],
        "the pushed holder is dialled"
    );
}
