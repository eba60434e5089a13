//! Admission: every way a ticket can be wrong, logout, a ticket shown by
//! another key, and a connection's ticket expiring or renewed.

use super::*;

#[test]
fn a_valid_flow_reads_and_sends_the_right_piece() {
    let mut r = Rig::new();
    let conn = r.connect();
    let out = r.msg(
        conn,
        PeerMsg::Open {
            ticket: ticket_for("bob"),
        },
    );
    let Output::Send {
        msg: PeerMsg::Have { pieces },
        ..
    } = &out[0]
    else {
        panic!("{out:?}")
    };
    assert_eq!((pieces.count(), pieces.contains(7)), (9, false));
    let out = r.msg(conn, PeerMsg::Request { index: 9 });
    assert_eq!(out, vec![serve_last(conn)]);
    let out = r.input(Input::Served { conn, index: 9 });
    assert_eq!(out, vec![], "the driver sent the piece");
    let served = Served {
        pieces: 1,
        bytes: 924,
    };
    assert_eq!(r.s.conn_served(conn), Some(served));
    assert_eq!(r.s.served_by_user()[&user("bob")], served);
    assert_eq!(r.s.stats().served, served);
    assert_eq!(r.s.share_served(SHARE), Some(served));
    assert_eq!(r.s.share_served(ShareId::Upload(10)), None);
}

#[test]
fn a_request_without_a_ticket_is_refused() {
    let mut r = Rig::new();
    let conn = r.connect();
    let out = r.msg(conn, PeerMsg::Request { index: 0 });
    assert!(rejected(&out, conn, RejectReason::NoTicket), "{out:?}");
    assert_eq!(r.s.connections(), 0);
}

#[test]
fn an_expired_ticket_is_refused() {
    let mut r = Rig::new();
    let conn = r.connect();
    let t = ticket_with(|t| t.expires_ms = NOW.as_millis() - 1, &KEY);
    let out = r.msg(conn, PeerMsg::Open { ticket: t });
    assert!(rejected(&out, conn, RejectReason::Expired), "{out:?}");
}

#[test]
fn a_ticket_for_another_file_is_refused() {
    let mut r = Rig::new();
    for change in [
        (|t: &mut Ticket| t.file = FileName::new("other").unwrap()) as fn(&mut Ticket),
        |t| t.file_hash = Sha1Hash([9; 20]),
        |t| t.group = GroupName::new("h").unwrap(),
    ] {
        let conn = r.connect();
        let out = r.msg(
            conn,
            PeerMsg::Open {
                ticket: ticket_with(change, &KEY),
            },
        );
        assert!(rejected(&out, conn, RejectReason::UnknownFile), "{out:?}");
    }
}

#[test]
fn a_ticket_for_another_seeder_is_refused() {
    let mut r = Rig::new();
    let conn = r.connect();
    let t = ticket_with(|t| t.seeder = user("carol"), &KEY);
    let out = r.msg(conn, PeerMsg::Open { ticket: t });
    assert!(rejected(&out, conn, RejectReason::WrongParty), "{out:?}");
}

#[test]
fn a_forged_ticket_is_refused() {
    let mut r = Rig::new();
    let conn = r.connect();
    let forged = ticket_with(|_| {}, &SeederKey([4; 32]));
    let out = r.msg(conn, PeerMsg::Open { ticket: forged });
    assert!(rejected(&out, conn, RejectReason::BadTicket), "{out:?}");
    // An altered field breaks the MAC too.
    let conn = r.connect();
    let mut altered = ticket_for("bob");
    altered.expires_ms += 1;
    let out = r.msg(conn, PeerMsg::Open { ticket: altered });
    assert!(rejected(&out, conn, RejectReason::BadTicket), "{out:?}");
    assert_eq!(r.s.stats().conns_refused, 2);
}

#[test]
fn after_logout_no_ticket_opens_and_connections_close() {
    let mut r = Rig::new();
    let old = r.open();
    r.s.clear_identity(r.now);
    let out: Vec<_> = std::iter::from_fn(|| r.s.poll_output()).collect();
    assert_eq!(
        out,
        vec![Output::Close {
            conn: old,
            reason: CloseReason::IdentityChanged
        }]
    );
    let conn = r.connect();
    let out = r.msg(
        conn,
        PeerMsg::Open {
            ticket: ticket_for("bob"),
        },
    );
    assert!(rejected(&out, conn, RejectReason::BadTicket), "{out:?}");
    // Logging in again with the same key: tickets work again.
    r.s.set_identity(r.now, user("alice"), KEY);
    r.open();
}

// ---------------------------------------------------------------- keys and expiry (issue 15)

#[test]
fn a_ticket_presented_by_another_key_is_refused_and_nothing_is_served() {
    let mut r = Rig::new();
    let conn = r.connect_as(ROGUE);
    let out = r.msg(
        conn,
        PeerMsg::Open {
            ticket: ticket_for("bob"),
        },
    );
    assert!(rejected(&out, conn, RejectReason::WrongKey), "{out:?}");
    assert!(r.msg(conn, PeerMsg::Request { index: 0 }).is_empty());
    assert_eq!(r.s.stats().served.pieces, 0);
    assert_eq!(r.s.stats().conns_refused, 1);
    // Bob's own client, same ticket: served.
    let conn = r.connect_as(key_of("bob"));
    let out = r.msg(
        conn,
        PeerMsg::Open {
            ticket: ticket_for("bob"),
        },
    );
    assert!(matches!(
        &out[..],
        [Output::Send {
            msg: PeerMsg::Have { .. },
            ..
        }]
    ));
}

#[test]
fn the_planted_bug_skips_the_key_check() {
    let cfg = SeederConfig {
        bug_skip_key_check: true,
        ..SeederConfig::default()
    };
    let mut r = Rig::with(cfg);
    let conn = r.connect_as(ROGUE);
    // Bob's ticket from a connection with another key: admitted.
    r.show_ticket(conn, "bob");
}

/// A connection is served only while its ticket is valid: at expiry it is
/// refused `Expired` and closed, unless a fresh ticket came first.
#[test]
fn an_open_connection_ends_when_its_ticket_expires_unless_renewed() {
    let mut r = Rig::with(SeederConfig {
        idle_timeout: Duration::from_secs(24 * 3600),
        ..SeederConfig::default()
    });
    let stale = r.open();
    let renewed = r.open_as("carol");
    let life = LIFE_MS;
    let fresh = ticket_with(
        |t| {
            t.downloader = user("carol");
            t.downloader_key = key_of("carol");
            t.expires_ms = NOW.as_millis() + 2 * life;
        },
        &KEY,
    );
    r.advance(life / 2);
    assert!(r.msg(renewed, PeerMsg::Open { ticket: fresh }).is_empty());
    assert!(r.msg(stale, PeerMsg::Request { index: 0 }).len() == 1);
    assert!(r.advance(life / 2).is_empty(), "valid through expires_ms");
    let out = r.advance(1);
    assert!(
        rejected_as(
            &out,
            stale,
            RejectReason::Expired,
            CloseReason::TicketExpired
        ),
        "{out:?}"
    );
    assert_eq!(r.s.connections(), 1);
    assert_eq!(
        reads(&r.msg(renewed, PeerMsg::Request { index: 1 })),
        vec![1]
    );
    r.input(Input::Served {
        conn: renewed,
        index: 1,
    });
    let out = r.advance(life);
    assert!(
        rejected_as(
            &out,
            renewed,
            RejectReason::Expired,
            CloseReason::TicketExpired
        ),
        "{out:?}"
    );
    assert_eq!(r.s.connections(), 0);
}

#[test]
fn a_renewal_is_checked_like_a_first_ticket() {
    let mut r = Rig::new();
    // Expired: refused.
    let conn = r.open();
    let t = ticket_with(|t| t.expires_ms = NOW.as_millis() - 1, &KEY);
    let out = r.msg(conn, PeerMsg::Open { ticket: t });
    assert!(rejected(&out, conn, RejectReason::Expired), "{out:?}");
    // Issued to another key: refused.
    let conn = r.open();
    let out = r.msg(
        conn,
        PeerMsg::Open {
            ticket: ticket_for("carol"),
        },
    );
    assert!(rejected(&out, conn, RejectReason::WrongKey), "{out:?}");
    // Forged: refused.
    let conn = r.open();
    let forged = ticket_with(|_| {}, &SeederKey([4; 32]));
    let out = r.msg(conn, PeerMsg::Open { ticket: forged });
    assert!(rejected(&out, conn, RejectReason::BadTicket), "{out:?}");
    // Valid, for the same user and key but another user name: a violation.
    let conn = r.open();
    let other = ticket_with(|t| t.downloader = user("mallory"), &KEY);
    let out = r.msg(conn, PeerMsg::Open { ticket: other });
    assert!(matches!(
        out.last(),
        Some(Output::Close {
            reason: CloseReason::ProtocolViolation { .. },
            ..
        })
    ));
    assert_eq!(r.s.connections(), 0);
}
