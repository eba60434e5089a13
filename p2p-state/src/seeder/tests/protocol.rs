//! Protocol: wrong messages close the connection, and a proptest feeding
//! arbitrary peer messages never serves more than a ticket allows.

use proptest::prelude::*;

use super::*;

#[test]
fn wrong_messages_close_the_connection() {
    let mut r = Rig::new();
    let before_open = r.connect();
    let out = r.msg(before_open, PeerMsg::HavePiece { index: 0 });
    assert!(matches!(
        out.last(),
        Some(Output::Close {
            reason: CloseReason::ProtocolViolation { .. },
            ..
        })
    ));
    for bad in [
        PeerMsg::Piece {
            index: 0,
            data: Bytes::new(),
        },
        reject_piece(0, RejectReason::Busy),
    ] {
        let conn = r.open_as("u");
        let out = r.msg(conn, bad);
        assert!(matches!(
            out.first(),
            Some(Output::Send {
                msg: PeerMsg::Fatal { .. },
                ..
            })
        ));
        assert!(matches!(
            out.last(),
            Some(Output::Close {
                reason: CloseReason::ProtocolViolation { .. },
                ..
            })
        ));
    }
    let conn = r.open_as("u");
    let out = r.msg(
        conn,
        PeerMsg::Fatal {
            reason: "bye".into(),
        },
    );
    assert_eq!(out.len(), 1, "closed without a reply");
    // A downloader announcing its pieces is fine.
    let conn = r.open_as("u");
    assert!(r.msg(conn, PeerMsg::HavePiece { index: 1 }).is_empty());
    assert!(
        r.msg(
            conn,
            PeerMsg::Have {
                pieces: PieceSet::empty(10)
            }
        )
        .is_empty()
    );
    // Messages for a connection already closed are ignored.
    assert!(r.msg(before_open, PeerMsg::Request { index: 0 }).is_empty());
}

fn peer_msg() -> impl Strategy<Value = PeerMsg> {
    prop_oneof![
        Just(PeerMsg::Open {
            ticket: ticket_for("bob")
        }),
        Just(PeerMsg::Open {
            ticket: ticket_with(|_| {}, &SeederKey([0; 32]))
        }),
        (0u32..12).prop_map(|index| PeerMsg::Request { index }),
        (0u32..12).prop_map(|index| PeerMsg::Cancel { index }),
        (0u32..12).prop_map(|index| PeerMsg::HavePiece { index }),
        Just(PeerMsg::Piece {
            index: 0,
            data: Bytes::from_static(b"x")
        }),
        Just(PeerMsg::Fatal { reason: "x".into() }),
    ]
}

#[derive(Clone, Debug)]
enum Step {
    Open(u8),
    Msg(u8, Box<PeerMsg>),
    Close(u8),
    ReadDone(bool),
    Tick(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => (0u8..4).prop_map(Step::Open),
        4 => ((0u8..4), peer_msg()).prop_map(|(c, m)| Step::Msg(c, Box::new(m))),
        1 => (0u8..4).prop_map(Step::Close),
        3 => any::<bool>().prop_map(Step::ReadDone),
        1 => (0u64..20_000).prop_map(Step::Tick),
    ]
}

proptest! {
    /// Arbitrary peer behaviour never panics (invariants are checked after
    /// every input), pieces go only to connections that opened with a valid
    /// ticket, only for held pieces, and the limits hold.
    #[test]
    fn arbitrary_peers_never_get_more_than_their_ticket_allows(steps in prop::collection::vec(step(), 1..80)) {
        let cfg = SeederConfig { reads_max: 3, conn_requests_max: 2, ..SeederConfig::default() };
        let mut r = Rig::with(cfg);
        let mut opened = std::collections::BTreeSet::new();
        let mut pending_reads = std::collections::VecDeque::new();
        let mut fresh = 100u64;
        let mut keys = std::collections::BTreeMap::new();
        for st in steps {
            let out = match st {
                Step::Open(c) => {
                    fresh += 1;
                    let conn = ConnId(u64::from(c) + fresh * 10);
                    let peer = if c % 2 == 0 { key_of("bob") } else { ROGUE };
                    keys.insert(conn, peer);
                    let addr = IpAddr::from([10, 0, 0, c]);
                    r.input(Input::Opened { conn, peer, addr })
                }
                Step::Msg(c, m) => { let conn = pick(&r, c); r.msg(conn, *m) }
                Step::Close(c) => { let conn = pick(&r, c); r.input(Input::Closed { conn }) }
                Step::ReadDone(ok) => match pending_reads.pop_front() {
                    Some((conn, index)) if ok => r.input(Input::Served { conn, index }),
                    Some((conn, index)) => r.input(Input::ServeFailed { conn, index, why: ServeError::Short }),
                    None => vec![],
                },
                Step::Tick(ms) => r.advance(ms),
            };
            for o in out {
                match o {
                    Output::Send { conn, msg: PeerMsg::Have { .. } } => { opened.insert(conn); }
                    Output::Send { msg: PeerMsg::Piece { .. }, .. } => {
                        prop_assert!(false, "piece data goes out through Serve only");
                    }
                    Output::Serve { conn, index, .. } => {
                        prop_assert!(opened.contains(&conn), "piece to a connection without a valid Open");
                        prop_assert_eq!(keys.get(&conn), Some(&key_of("bob")), "piece to another key than the ticket's");
                        prop_assert!(index != 7 && index < 10);
                        pending_reads.push_back((conn, index));
                    }
                    _ => {}
                }
            }
            prop_assert!(r.s.reads_in_flight() <= 3);
        }
    }
}

/// The `c`-th live connection (or a made-up one).
fn pick(r: &Rig, c: u8) -> ConnId {
    r.s.conns
        .keys()
        .nth(usize::from(c))
        .copied()
        .unwrap_or(ConnId(u64::from(c)))
}
