//! Share-table commands: argument checks, a new piece announced and
//! served, and a removed share closing its connections.

use super::*;

#[test]
fn share_table_commands_check_their_arguments() {
    let mut r = Rig::new();
    let g = GroupName::new("g").unwrap();
    let full = PieceSet::full(10);
    assert_eq!(
        r.s.add_share(r.now, SHARE, g.clone(), &meta(10), full.clone()),
        Err(ShareError::DuplicateId(SHARE))
    );
    assert_eq!(
        r.s.add_share(r.now, ShareId::Upload(1), g.clone(), &meta(10), full),
        Err(ShareError::DuplicateFile(SHARE))
    );
    assert_eq!(
        r.s.add_share(
            r.now,
            ShareId::Upload(1),
            g.clone(),
            &meta(10),
            PieceSet::full(9)
        ),
        Err(ShareError::WrongPieceCount {
            have: 9,
            expected: 10
        })
    );
    let mut bad = meta(10);
    bad.piece_len = 1000;
    assert!(matches!(
        r.s.add_share(r.now, ShareId::Upload(1), g, &bad, PieceSet::full(10)),
        Err(ShareError::BadMetadata { .. })
    ));
    assert_eq!(
        r.s.add_piece(r.now, SHARE, 10),
        Err(ShareError::PieceOutOfRange {
            index: 10,
            count: 10
        })
    );
    assert_eq!(
        r.s.remove_share(r.now, ShareId::Upload(1)),
        Err(ShareError::UnknownShare(ShareId::Upload(1)))
    );
}

#[test]
fn a_new_piece_is_announced_and_served() {
    let mut r = Rig::new();
    let conn = r.open();
    r.s.add_piece(r.now, SHARE, 7).unwrap();
    let out: Vec<_> = std::iter::from_fn(|| r.s.poll_output()).collect();
    assert_eq!(
        out,
        vec![Output::Send {
            conn,
            msg: PeerMsg::HavePiece { index: 7 }
        }]
    );
    r.s.add_piece(r.now, SHARE, 7).unwrap();
    assert_eq!(r.s.poll_output(), None, "announced once");
    assert_eq!(reads(&r.msg(conn, PeerMsg::Request { index: 7 })), vec![7]);
}

#[test]
fn removing_a_share_closes_its_connections() {
    let mut r = Rig::new();
    let conn = r.open();
    r.msg(conn, PeerMsg::Request { index: 0 });
    r.s.remove_share(r.now, SHARE).unwrap();
    let out: Vec<_> = std::iter::from_fn(|| r.s.poll_output()).collect();
    let why = RejectReason::UnknownFile;
    let msg = PeerMsg::Reject {
        index: None,
        reason: why,
    };
    let close = Output::Close {
        conn,
        reason: CloseReason::ShareRemoved,
    };
    assert_eq!(out, vec![Output::Send { conn, msg }, close]);
    assert!(r.input(Input::Served { conn, index: 0 }).is_empty());
    let c = r.connect();
    let out = r.msg(
        c,
        PeerMsg::Open {
            ticket: ticket_for("bob"),
        },
    );
    assert!(rejected(&out, c, RejectReason::UnknownFile));
}
