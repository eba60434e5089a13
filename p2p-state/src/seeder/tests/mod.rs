//! Seeder tests: every way a ticket can be wrong, every limit at its
//! default value and one past it, the request/read/cancel flow, share-table
//! commands, and a proptest feeding arbitrary peer messages.
//!
//! By concern: `admission.rs` (tickets, keys and expiry), `slots.rs`
//! (serving and ticketless connection caps), `requests.rs` (the
//! request/read/cancel flow and its limits), `protocol.rs` (wrong messages
//! and the arbitrary-peer proptest), `shares.rs` (share-table commands),
//! `upload_limits.rs` (upload rate limits over time), `initial_seeding.rs`
//! (initial seeding's views). This file holds the shared rig and helpers.

use bytes::Bytes;
use std::net::IpAddr;

use p2p_proto::{
    FileMeta, FileName, GroupName, KeyId, Mac, PeerMsg, PieceSet, RejectReason, SeederKey,
    Sha1Hash, Ticket, UserName,
};

use super::*;
use crate::ticket;
use crate::time::{Duration, Instant};

mod admission;
mod initial_seeding;
mod protocol;
mod requests;
mod shares;
mod slots;
mod upload_limits;

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

/// A user name and key of its own for connection `n`.
fn nth_user(n: usize) -> String {
    format!("u{n}")
}

/// The seeder's answer to a request for the share's last piece (index 9,
/// 100 bytes short of a whole piece) on `conn`.
fn serve_last(conn: ConnId) -> Output {
    Output::Serve {
        conn,
        share: SHARE,
        index: 9,
        offset: 9 * 1024,
        len: 1024 - 100,
    }
}
