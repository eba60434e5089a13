//! Requests: refused pieces, the per-connection and disk-read caps, the
//! open and idle deadlines, cancel, served pieces, failed and orphaned reads.

use super::*;

#[test]
fn out_of_range_and_missing_pieces_are_refused() {
    let mut r = Rig::new();
    let conn = r.open();
    for index in [7, 10, u32::MAX] {
        let out = r.msg(conn, PeerMsg::Request { index });
        let msg = reject_piece(index, RejectReason::NoSuchPiece { index });
        assert_eq!(out, vec![Output::Send { conn, msg }]);
    }
    assert_eq!(r.s.stats().requests_refused, 3);
}

#[test]
fn a_peer_that_keeps_asking_for_refused_pieces_is_closed() {
    let mut r = Rig::new();
    let conn = r.open();
    for n in 1..=REFUSALS_MAX {
        let out = r.msg(conn, PeerMsg::Request { index: 7 });
        assert_eq!(out.len(), 1, "refusal {n} only rejects");
    }
    let out = r.msg(conn, PeerMsg::Request { index: 7 });
    assert_eq!(
        out.last(),
        Some(&Output::Close {
            conn,
            reason: CloseReason::TooManyRefusals {
                count: REFUSALS_MAX + 1
            }
        })
    );
}

#[test]
fn requests_per_connection_are_capped_with_busy() {
    let mut r = Rig::new();
    let conn = r.open();
    let held = [0, 1, 2, 3, 4, 5, 6, 8, 9]; // piece 7 is not held
    assert_eq!(CONN_REQUESTS_MAX, 8);
    for &index in &held[..CONN_REQUESTS_MAX] {
        assert_eq!(reads(&r.msg(conn, PeerMsg::Request { index })), vec![index]);
    }
    let out = r.msg(conn, PeerMsg::Request { index: 9 });
    let msg = reject_piece(9, RejectReason::Busy);
    assert_eq!(out, vec![Output::Send { conn, msg }]);
    assert_eq!(r.s.conn_requests(conn), CONN_REQUESTS_MAX);
    // A duplicate request is not a new one.
    assert!(r.msg(conn, PeerMsg::Request { index: 0 }).is_empty());
}

#[test]
fn disk_reads_in_flight_are_capped_over_all_connections() {
    let mut r = Rig::new();
    let conns: Vec<ConnId> = (0..5).map(|i| r.open_as(&format!("u{i}"))).collect();
    let mut emitted = Vec::new();
    for &c in &conns {
        for index in 0..7 {
            for o in r.msg(c, PeerMsg::Request { index }) {
                if let Output::Serve { conn, index, .. } = o {
                    emitted.push((conn, index));
                }
            }
        }
    }
    assert_eq!(READS_MAX, 32);
    assert_eq!(emitted.len(), READS_MAX, "35 requested, 32 read at once");
    assert_eq!(r.s.reads_in_flight(), READS_MAX);
    let (c, i) = emitted[0];
    let out = r.input(Input::Served { conn: c, index: i });
    assert_eq!(
        reads(&out).len(),
        1,
        "a freed slot goes to a queued request"
    );
}

#[test]
fn a_connection_must_show_its_ticket_in_time() {
    let mut r = Rig::new();
    let conn = r.connect();
    assert_eq!(
        r.s.poll_timeout(),
        Some((NOW + OPEN_TIMEOUT, Timer::Open(conn)))
    );
    assert!(r.advance(OPEN_TIMEOUT.as_millis() - 1).is_empty());
    let out = r.advance(1);
    assert_eq!(
        out,
        vec![Output::Close {
            conn,
            reason: CloseReason::OpenTimeout
        }]
    );
}

#[test]
fn an_idle_connection_is_closed_but_not_while_reads_are_pending() {
    let mut r = Rig::new();
    let idle = r.open();
    let busy = r.open_as("carol");
    r.msg(busy, PeerMsg::Request { index: 1 });
    let out = r.advance(IDLE_TIMEOUT.as_millis());
    assert_eq!(
        out,
        vec![Output::Close {
            conn: idle,
            reason: CloseReason::IdleTimeout
        }]
    );
    assert_eq!(r.s.connections(), 1, "the connection owed a piece stays");
}

#[test]
fn cancel_drops_a_queued_request_and_a_read_in_progress() {
    let cfg = SeederConfig {
        reads_max: 1,
        ..SeederConfig::default()
    };
    let mut r = Rig::with(cfg);
    let conn = r.open();
    assert_eq!(reads(&r.msg(conn, PeerMsg::Request { index: 1 })), vec![1]);
    assert!(
        r.msg(conn, PeerMsg::Request { index: 2 }).is_empty(),
        "queued"
    );
    assert!(r.msg(conn, PeerMsg::Cancel { index: 2 }).is_empty());
    assert!(r.msg(conn, PeerMsg::Cancel { index: 1 }).is_empty());
    let out = r.input(Input::Served { conn, index: 1 });
    assert!(
        out.is_empty(),
        "cancelled read dropped, cancelled queue entry gone: {out:?}"
    );
    assert_eq!(r.s.conn_requests(conn), 0);
    assert_eq!(r.s.stats().served.pieces, 0);
}

/// A piece the driver serves from the file itself: the machine says where
/// it is, counts it served when the driver says so, and does not count a
/// cancelled one.
#[test]
fn a_served_piece_is_counted_once_answered() {
    let mut r = Rig::new();
    let conn = r.open();
    let out = r.msg(conn, PeerMsg::Request { index: 9 });
    assert_eq!(out, vec![serve_last(conn)]);
    assert_eq!(r.s.stats().served.pieces, 0, "not before the answer");
    assert!(r.input(Input::Served { conn, index: 9 }).is_empty());
    assert_eq!(r.s.stats().served.pieces, 1);
    assert_eq!(r.s.stats().served.bytes, 924);
    assert_eq!(r.s.reads_in_flight(), 0);
    // Cancelled while the driver served it: not counted.
    assert_eq!(reads(&r.msg(conn, PeerMsg::Request { index: 2 })), vec![2]);
    assert!(r.msg(conn, PeerMsg::Cancel { index: 2 }).is_empty());
    assert!(r.input(Input::Served { conn, index: 2 }).is_empty());
    assert_eq!(r.s.stats().served.pieces, 1);
    // An answer for a read never asked for is ignored.
    assert!(r.input(Input::Served { conn, index: 5 }).is_empty());
}

#[test]
fn a_failed_read_is_reported_as_a_missing_piece() {
    let mut r = Rig::new();
    let conn = r.open();
    r.msg(conn, PeerMsg::Request { index: 3 });
    let out = r.input(Input::ServeFailed {
        conn,
        index: 3,
        why: ServeError::NoFile,
    });
    let msg = reject_piece(3, RejectReason::NoSuchPiece { index: 3 });
    assert_eq!(out, vec![Output::Send { conn, msg }]);
    assert_eq!(r.s.stats().read_failures, 1);
}

#[test]
fn reads_of_a_closed_connection_keep_their_slot_until_answered() {
    let cfg = SeederConfig {
        reads_max: 1,
        ..SeederConfig::default()
    };
    let mut r = Rig::with(cfg);
    let a = r.open();
    let b = r.open_as("carol");
    r.msg(a, PeerMsg::Request { index: 0 });
    r.msg(b, PeerMsg::Request { index: 0 });
    assert!(r.input(Input::Closed { conn: a }).is_empty());
    assert_eq!(r.s.reads_in_flight(), 1);
    let out = r.input(Input::Served { conn: a, index: 0 });
    assert_eq!(reads(&out), vec![0], "b's read starts only now");
}
