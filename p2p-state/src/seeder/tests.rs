//! Seeder tests: every way a ticket can be wrong, every limit at its
//! default value and one past it, the request/read/cancel flow, share-table
//! commands, and a proptest feeding arbitrary peer messages.

use bytes::Bytes;
use proptest::prelude::*;
use std::net::IpAddr;

use p2p_proto::{
    FileMeta, FileName, GroupName, KeyId, Mac, PeerMsg, PieceSet, RejectReason, SeederKey,
    Sha1Hash, Ticket, UserName,
};

use super::*;
use crate::ticket;
use crate::time::{Duration, Instant};

const NOW: Instant = Instant(1_700_000_000_000);
const KEY: SeederKey = SeederKey([3; 32]);
const SHARE: ShareId = ShareId::Upload(9);

fn user(s: &str) -> UserName {
    UserName::new(s).unwrap()
}

fn meta(pieces: u32) -> FileMeta {
    FileMeta {
        name: FileName::new("f.bin").unwrap(),
        size: u64::from(pieces) * 1024 - 100,
        piece_len: 1024,
        piece_hashes: vec![Sha1Hash([1; 20]); pieces as usize],
        file_hash: Sha1Hash([2; 20]),
    }
}

/// A seeder "alice" sharing `f.bin` (10 pieces, piece 7 missing) in `g`.
struct Rig {
    s: Seeder,
    now: Instant,
    next_conn: u64,
}

impl Rig {
    fn with(cfg: SeederConfig) -> Self {
        let mut s = Seeder::new(cfg, NOW);
        s.set_identity(NOW, user("alice"), KEY);
        let mut have = PieceSet::full(10);
        have.remove(7);
        s.add_share(NOW, SHARE, GroupName::new("g").unwrap(), &meta(10), have)
            .unwrap();
        Rig {
            s,
            now: NOW,
            next_conn: 1,
        }
    }

    fn new() -> Self {
        Self::with(SeederConfig::default())
    }

    fn input(&mut self, i: Input) -> Vec<Output> {
        self.s.handle_input(self.now, i);
        std::iter::from_fn(|| self.s.poll_output()).collect()
    }

    fn msg(&mut self, conn: ConnId, msg: PeerMsg) -> Vec<Output> {
        self.input(Input::Msg { conn, msg })
    }

    fn advance(&mut self, ms: u64) -> Vec<Output> {
        self.now = self.now + Duration(ms);
        self.s.handle_timeout(self.now);
        std::iter::from_fn(|| self.s.poll_output()).collect()
    }

    /// A connection from bob's client.
    fn connect(&mut self) -> ConnId {
        self.connect_as(key_of("bob"))
    }

    /// A connection whose TLS handshake proved `peer`, from an address of
    /// its own.
    fn connect_as(&mut self, peer: KeyId) -> ConnId {
        let addr = addr_of(self.next_conn);
        self.connect_from(peer, addr)
    }

    /// A connection from `addr` whose TLS handshake proved `peer`.
    fn connect_from(&mut self, peer: KeyId, addr: IpAddr) -> ConnId {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        let out = self.input(Input::Opened { conn, peer, addr });
        assert!(out.is_empty(), "{out:?}");
        conn
    }

    /// A connection from `downloader`'s client, opened with a valid ticket.
    fn open_as(&mut self, downloader: &str) -> ConnId {
        let conn = self.connect_as(key_of(downloader));
        self.show_ticket(conn, downloader);
        conn
    }

    /// `downloader`'s valid ticket shown on `conn`, which must be served.
    fn show_ticket(&mut self, conn: ConnId, downloader: &str) {
        let out = self.msg(
            conn,
            PeerMsg::Open {
                ticket: ticket_for(downloader),
            },
        );
        assert!(
            matches!(
                &out[..],
                [Output::Send {
                    msg: PeerMsg::Have { .. },
                    ..
                }]
            ),
            "{out:?}"
        );
    }

    fn open(&mut self) -> ConnId {
        self.open_as("bob")
    }
}

/// A source address of its own for connection `n`.
fn addr_of(n: u64) -> IpAddr {
    IpAddr::from([10, 1, (n >> 8) as u8, n as u8])
}

/// The TLS key of `user`'s client.
fn key_of(user: &str) -> KeyId {
    let mut k = [0x44; 32];
    for (i, b) in user.bytes().take(31).enumerate() {
        k[i + 1] = b;
    }
    KeyId(k)
}

/// How long the tickets of these tests live (longer than the idle timeout).
const LIFE_MS: u64 = 600_000;

/// A key no ticket names.
const ROGUE: KeyId = KeyId([0x52; 32]);

fn ticket_with(f: impl FnOnce(&mut Ticket), key: &SeederKey) -> Ticket {
    let mut t = Ticket {
        downloader: user("bob"),
        group: GroupName::new("g").unwrap(),
        file: FileName::new("f.bin").unwrap(),
        file_hash: Sha1Hash([2; 20]),
        seeder: user("alice"),
        downloader_key: key_of("bob"),
        seeder_key: KeyId([0x53; 32]),
        expires_ms: NOW.as_millis() + LIFE_MS,
        mac: Mac::default(),
    };
    f(&mut t);
    ticket::sign(key, &mut t);
    t
}

fn ticket_for(downloader: &str) -> Ticket {
    ticket_with(
        |t| {
            t.downloader = user(downloader);
            t.downloader_key = key_of(downloader);
        },
        &KEY,
    )
}

fn rejected(out: &[Output], conn: ConnId, why: RejectReason) -> bool {
    out == [
        Output::Send {
            conn,
            msg: PeerMsg::Reject {
                index: None,
                reason: why.clone(),
            },
        },
        Output::Close {
            conn,
            reason: CloseReason::Rejected(why),
        },
    ]
}

fn rejected_as(out: &[Output], conn: ConnId, why: RejectReason, reason: CloseReason) -> bool {
    out == [
        Output::Send {
            conn,
            msg: PeerMsg::Reject {
                index: None,
                reason: why,
            },
        },
        Output::Close { conn, reason },
    ]
}

fn reject_piece(index: u32, reason: RejectReason) -> PeerMsg {
    PeerMsg::Reject {
        index: Some(index),
        reason,
    }
}

fn reads(out: &[Output]) -> Vec<u32> {
    out.iter()
        .filter_map(|o| match o {
            Output::Serve { index, .. } => Some(*index),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------- tickets

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
    assert_eq!(
        out,
        vec![Output::Serve {
            conn,
            share: SHARE,
            index: 9,
            offset: 9 * 1024,
            len: 1024 - 100,
        }]
    );
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
    let out = r.msg(
        conn,
        PeerMsg::Open {
            ticket: ticket_for("bob"),
        },
    );
    assert!(
        matches!(
            &out[..],
            [Output::Send {
                msg: PeerMsg::Have { .. },
                ..
            }]
        ),
        "{out:?}"
    );
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

// ---------------------------------------------------------------- requests

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

/// A user name and key of its own for connection `n`.
fn nth_user(n: usize) -> String {
    format!("u{n}")
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
    assert_eq!(
        out,
        vec![Output::Serve {
            conn,
            share: SHARE,
            index: 9,
            offset: 9 * 1024,
            len: 1024 - 100,
        }]
    );
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

// ---------------------------------------------------------------- protocol

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

// ---------------------------------------------------------------- shares

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

// ---------------------------------------------------------------- proptest

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

/// Serves `conns` connections that always have pieces requested, answering
/// every read at once, for `span`: the bytes sent and the machine.
fn serve_flat_out(r: &mut Rig, conns: usize, span: Duration) -> u64 {
    let end = r.now + span;
    let open: Vec<ConnId> = (0..conns).map(|n| r.open_as(&nth_user(n))).collect();
    let mut sent = 0u64;
    let mut out = Vec::new();
    for &c in &open {
        for i in [0, 1, 2, 3] {
            out.extend(r.msg(c, PeerMsg::Request { index: i }));
        }
    }
    loop {
        let mut more = Vec::new();
        for o in out.drain(..) {
            if let Output::Serve {
                conn, index, len, ..
            } = o
            {
                sent += u64::from(len);
                more.extend(r.input(Input::Served { conn, index }));
                // Ask for it again: demand never ends.
                more.extend(r.msg(conn, PeerMsg::Request { index }));
            }
        }
        if more.is_empty() {
            let Some((at, _)) = r.s.poll_timeout().filter(|(at, _)| *at < end) else {
                return sent;
            };
            more = r.advance(at.saturating_since(r.now).as_millis());
        }
        out = more;
    }
}

/// Issue 16 §6: an upload limit of R holds over 20 s of simulated time
/// within one second's burst plus one piece per connection; without a
/// limit the same peers take far more.
#[test]
fn the_upload_rate_limit_holds_over_time() {
    const RATE: u64 = 20_000;
    let span = Duration::from_secs(20);
    let mut r = Rig::with(SeederConfig {
        upload_rate: Some(RATE),
        ..SeederConfig::default()
    });
    let sent = serve_flat_out(&mut r, 3, span);
    let ideal = RATE * 20;
    let slack = RATE * crate::rate::RATE_BURST.as_millis() / 1000 + 3 * 1024;
    assert!(
        sent + 1024 >= ideal && sent <= ideal + slack,
        "{sent} bytes in 20 s at {RATE} B/s (ideal {ideal}, slack {slack})"
    );
}

/// Issue 16 §6: a per-connection upload limit of R holds for each of
/// three connections (together about 3R) within one burst and one piece
/// each; under a global limit of R as well, the global one rules.
#[test]
fn the_per_peer_upload_rate_limit_holds_for_each_connection() {
    const RATE: u64 = 10_000;
    let span = Duration::from_secs(20);
    let burst = RATE * crate::rate::RATE_BURST.as_millis() / 1000;
    let mut r = Rig::with(SeederConfig {
        upload_rate_per_peer: Some(RATE),
        ..SeederConfig::default()
    });
    let sent = serve_flat_out(&mut r, 3, span);
    let ideal = 3 * RATE * 20;
    let slack = 3 * (burst + 1024);
    assert!(
        sent + 3 * 1024 >= ideal && sent <= ideal + slack,
        "{sent} bytes in 20 s at 3 x {RATE} B/s (ideal {ideal}, slack {slack})"
    );
    for c in r.s.conns.values() {
        let got = c.served.bytes;
        assert!(got <= RATE * 20 + burst + 1024, "one connection got {got}");
    }
    let mut r = Rig::with(SeederConfig {
        upload_rate: Some(RATE),
        upload_rate_per_peer: Some(RATE),
        ..SeederConfig::default()
    });
    let sent = serve_flat_out(&mut r, 3, span);
    assert!(sent <= RATE * 20 + burst + 3 * 1024, "{sent}");
}

/// A seeder under `cfg` (one piece's worth of rate a second) lets one of
/// three requests through and holds the rest for its rate timer; `lift`
/// turns the limit off at run time, and the held reads start at once.
fn held_then_lifted(cfg: SeederConfig, lift: impl FnOnce(&mut Seeder, Instant)) -> Rig {
    let mut r = Rig::with(cfg);
    let c = r.open();
    let mut out = Vec::new();
    for i in [0, 1, 2] {
        out.extend(r.msg(c, PeerMsg::Request { index: i }));
    }
    assert_eq!(reads(&out), vec![0], "one piece's worth allowed now");
    assert_eq!(r.s.poll_timeout().map(|t| t.1), Some(Timer::Rate));
    lift(&mut r.s, r.now);
    let out: Vec<Output> = std::iter::from_fn(|| r.s.poll_output()).collect();
    assert_eq!(reads(&out), vec![1, 2], "lifted: the held reads start");
    r
}

#[test]
fn the_per_peer_upload_rate_limit_can_be_lifted_at_run_time() {
    let cfg = SeederConfig {
        upload_rate_per_peer: Some(1024),
        ..SeederConfig::default()
    };
    let r = held_then_lifted(cfg, |s, now| s.set_upload_rate_per_peer(now, None));
    assert_eq!(r.s.upload_rate_per_peer(), None);
}

#[test]
fn the_upload_rate_limit_can_be_lifted_and_set_at_run_time() {
    let cfg = SeederConfig {
        upload_rate: Some(1024),
        ..SeederConfig::default()
    };
    let mut r = held_then_lifted(cfg, |s, now| s.set_upload_rate(now, None));
    assert_eq!(r.s.upload_rate(), None);
    r.s.set_upload_rate(r.now, Some(1));
    assert_eq!(r.s.upload_rate(), Some(1));
}

// ---------------------------------------------------------------- initial seeding

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
