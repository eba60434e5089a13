//! Serving slots and ticketless connections: the caps in total, per user
//! and per address, and a flood from one address not starving others.

use super::*;

/// The refusal of a connection past a connection limit.
fn too_many(conn: ConnId, limit: &'static str, max: usize) -> Vec<Output> {
    vec![
        Output::Send {
            conn,
            msg: PeerMsg::Reject {
                index: None,
                reason: RejectReason::Busy,
            },
        },
        Output::Close {
            conn,
            reason: CloseReason::TooManyConnections { limit, max },
        },
    ]
}

fn open_msg(downloader: &str) -> PeerMsg {
    PeerMsg::Open {
        ticket: ticket_for(downloader),
    }
}

#[test]
fn serving_slots_are_capped_in_total_at_open() {
    let mut r = Rig::new();
    assert_eq!(CONNS_MAX, 128);
    for n in 0..CONNS_MAX {
        r.open_as(&nth_user(n));
    }
    assert_eq!(r.s.slots_taken(), CONNS_MAX);
    // One past: it may connect (no slot yet), but its ticket finds none.
    let conn = r.connect_as(key_of("bob"));
    let out = r.msg(conn, open_msg("bob"));
    assert_eq!(out, too_many(conn, "CONNS_MAX", CONNS_MAX));
    assert_eq!(r.s.slots_taken(), CONNS_MAX);
    assert_eq!(r.s.connections(), CONNS_MAX);
}

#[test]
fn serving_slots_per_user_are_capped() {
    let mut r = Rig::new();
    assert_eq!(CONNS_PER_USER_MAX, 4);
    for _ in 0..CONNS_PER_USER_MAX {
        r.open();
    }
    let conn = r.connect();
    let out = r.msg(conn, open_msg("bob"));
    assert_eq!(
        out,
        too_many(conn, "CONNS_PER_USER_MAX", CONNS_PER_USER_MAX)
    );
    r.open_as("carol");
}

#[test]
fn serving_slots_per_address_are_capped_whatever_the_users() {
    let mut r = Rig::new();
    assert_eq!(CONNS_PER_ADDR_MAX, 16);
    let host = IpAddr::from([192, 0, 2, 7]);
    for n in 0..CONNS_PER_ADDR_MAX {
        let u = nth_user(n);
        let conn = r.connect_from(key_of(&u), host);
        r.show_ticket(conn, &u);
    }
    let u = nth_user(CONNS_PER_ADDR_MAX);
    let conn = r.connect_from(key_of(&u), host);
    let out = r.msg(conn, open_msg(&u));
    assert_eq!(
        out,
        too_many(conn, "CONNS_PER_ADDR_MAX", CONNS_PER_ADDR_MAX)
    );
    // Another address is served.
    r.open_as(&u);
}

#[test]
fn ticketless_connections_take_no_slot_and_are_capped_in_total() {
    let mut r = Rig::new();
    assert_eq!(UNOPENED_MAX, 64);
    for n in 0..UNOPENED_MAX {
        r.connect_as(key_of(&nth_user(n)));
    }
    assert_eq!(r.s.slots_taken(), 0, "no ticket, no slot");
    let conn = ConnId(10_000);
    let addr = IpAddr::from([192, 0, 2, 1]);
    let out = r.input(Input::Opened {
        conn,
        peer: key_of("bob"),
        addr,
    });
    assert_eq!(out, too_many(conn, "UNOPENED_MAX", UNOPENED_MAX));
    assert_eq!(r.s.connections(), UNOPENED_MAX);
    // A ticket shown on one of them frees its place among the ticketless.
    let first = ConnId(1);
    r.show_ticket(first, &nth_user(0));
    r.connect_from(key_of("bob"), addr);
}

#[test]
fn ticketless_connections_per_address_are_capped() {
    let mut r = Rig::new();
    assert_eq!(UNOPENED_PER_ADDR_MAX, 8);
    let host = IpAddr::from([192, 0, 2, 7]);
    let held: Vec<ConnId> = (0..UNOPENED_PER_ADDR_MAX)
        .map(|_| r.connect_from(ROGUE, host))
        .collect();
    let conn = ConnId(10_000);
    let out = r.input(Input::Opened {
        conn,
        peer: ROGUE,
        addr: host,
    });
    let max = UNOPENED_PER_ADDR_MAX;
    assert_eq!(out, too_many(conn, "UNOPENED_PER_ADDR_MAX", max));
    // Other addresses still connect and are served.
    r.open();
    // Once one of the flood closes, its address may connect again.
    r.input(Input::Closed { conn: held[0] });
    r.connect_from(ROGUE, host);
}

/// Issue 16 §6: a flood of ticketless connections from one host, and many
/// users from one host, never keep another downloader from being served.
#[test]
fn a_flood_from_one_address_cannot_take_slots_from_others() {
    let mut r = Rig::new();
    let host = IpAddr::from([192, 0, 2, 66]);
    let mut refused = 0;
    for n in 0..200u64 {
        let conn = ConnId(50_000 + n);
        let out = r.input(Input::Opened {
            conn,
            peer: ROGUE,
            addr: host,
        });
        refused += usize::from(!out.is_empty());
    }
    assert_eq!(refused, 200 - UNOPENED_PER_ADDR_MAX);
    for n in 0..40 {
        let u = nth_user(n);
        let conn = r.connect_from(key_of(&u), IpAddr::from([192, 0, 2, 67]));
        r.msg(conn, open_msg(&u));
    }
    assert_eq!(r.s.slots_taken(), CONNS_PER_ADDR_MAX);
    let conn = r.open();
    assert!(r.s.conn_served(conn).is_some(), "bob is served");
    // The flood's connections are closed when their time to show a
    // ticket runs out.
    let out = r.advance(OPEN_TIMEOUT.as_millis());
    let closed = out
        .iter()
        .filter(|o| {
            matches!(
                o,
                Output::Close {
                    reason: CloseReason::OpenTimeout,
                    ..
                }
            )
        })
        .count();
    assert_eq!(closed, UNOPENED_PER_ADDR_MAX);
}
