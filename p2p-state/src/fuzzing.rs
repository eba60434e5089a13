//! Fuzz bodies over the state machines, kept in the library so the targets
//! in `fuzz/` are one-liners and the same bodies run as regression tests.
//!
//! [`tracker_input`] drives a real [`Tracker`] (a lone primary, so writes
//! are applied) with frames from untrusted bytes on several client
//! connections, closing and reopening them, and checks after every input
//! that the machine holds its invariants. Frames are what a driver hands
//! over after deframing, so this reaches the tracker's decoding, hello,
//! request handling, preparation and apply paths.
//!
//! [`share_table`] checks the client's share-table decoder: it never
//! panics, and what it accepts encodes back to the same bytes.

use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::net::SocketAddr;

use p2p_proto::{
    ClientId, ClientRequest, GroupName, Hello, KeyId, Password, Request, RequestId, Role,
    TrackerId, UserName, Wire, encode_msg,
};

use crate::time::{Duration, Instant};
use crate::tracker::node::{Input, NodeConfig, OnDisk, Output, Tracker};
use crate::tracker::state::TrackerConfig;

/// Client connections the input spreads over.
const CONNS: u64 = 3;
/// Inputs handled at most per run (bounds the work per fuzz case).
const STEPS_MAX: usize = 256;

/// `data` is a list of `[selector][u16 BE length][payload]`: selector % 4
/// picks connection 1..=3 (a frame) or closes and reopens the connection
/// numbered by the payload's first byte; the top bits of the selector move
/// the clock by up to 7 s. A truncated last item is dropped.
pub fn tracker_input(data: &[u8]) {
    run_tracker(data);
}

/// [`tracker_input`], returning the machine for a test to look at.
fn run_tracker(data: &[u8]) -> Tracker {
    let addr = SocketAddr::from(([127, 0, 0, 1], 7001));
    let cfg = NodeConfig::new(
        TrackerId(1),
        vec![(TrackerId(1), addr)],
        TrackerConfig::test(),
    );
    let mut now = Instant(1_700_000_000_000);
    let mut t = Tracker::new(cfg, 7, now);
    // Alone, it elects itself once the primary timeout passes.
    now = now + Duration::from_secs(2);
    t.handle_timeout(now);
    drain(&mut t, now);
    let peer = SocketAddr::from(([127, 0, 0, 1], 9000));
    for conn in 1..=CONNS {
        let key = KeyId([conn as u8; 32]);
        t.handle_input(
            now,
            Input::Accepted {
                conn,
                addr: peer,
                peer: key,
            },
        );
        drain(&mut t, now);
    }
    let mut rest = data;
    for _ in 0..STEPS_MAX {
        let [sel, hi, lo, tail @ ..] = rest else {
            break;
        };
        let len = (usize::from(*hi) << 8 | usize::from(*lo)).min(tail.len());
        let (payload, next) = tail.split_at(len);
        rest = next;
        now = now + Duration::from_millis(u64::from(sel >> 2) * 100);
        let conn = u64::from(sel % 4);
        if conn == 0 {
            let c = 1 + u64::from(payload.first().copied().unwrap_or(0)) % CONNS;
            t.handle_input(now, Input::Closed { conn: c });
            drain(&mut t, now);
            t.handle_input(
                now,
                Input::Accepted {
                    conn: c,
                    addr: peer,
                    peer: KeyId([c as u8; 32]),
                },
            );
        } else {
            let payload = Bytes::copy_from_slice(payload);
            t.handle_input(now, Input::Frame { conn, payload });
        }
        drain(&mut t, now);
        t.handle_timeout(now);
        drain(&mut t, now);
        t.check_invariants();
        t.state().check_invariants();
    }
    t
}

/// Executes what the machine asks of its driver, as a driver would: disk
/// writes are done at once, password work runs inline. The machine's
/// outputs are taken out before each output is executed, since executing
/// one may feed the machine (the single-mutation rule).
fn drain(t: &mut Tracker, now: Instant) {
    let mut outs = VecDeque::new();
    for _ in 0..10_000 {
        // Outputs queued by the last feed go behind the ones still here.
        outs.extend(crate::machine::drain(t));
        let Some(o) = outs.pop_front() else { return };
        match o {
            Output::Persist(write) => {
                if let Some(index) = OnDisk::default().apply(write) {
                    t.handle_input(now, Input::Persisted { index });
                }
            }
            Output::Password { job, work } => {
                let done = work.run();
                t.handle_input(now, Input::PasswordDone { job, done });
            }
            _ => {}
        }
    }
    panic!("the tracker never stops producing output");
}

fn item(out: &mut Vec<u8>, sel: u8, payload: &[u8]) {
    out.push(sel);
    out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    out.extend_from_slice(payload);
}

fn request(id: u64, req: Request) -> Vec<u8> {
    let r = ClientRequest {
        client: ClientId([1; 16]),
        id: RequestId(id),
        session: None,
        req,
    };
    let mut b = BytesMut::new();
    encode_msg(&r, &mut b);
    // The frame body: what follows the 4-byte length.
    b[4..].to_vec()
}

/// A session's worth of valid frames (hello, create_user, login,
/// create_group), then garbage and a reconnect: what the committed corpus
/// of the `tracker_input` target starts from.
pub fn tracker_input_sample() -> Vec<u8> {
    let mut d = Vec::new();
    item(&mut d, 1, &Hello::new(Role::Client).to_bytes());
    let user = UserName::new("alice").unwrap();
    let password = Password::new("pw").unwrap();
    item(
        &mut d,
        1,
        &request(
            1,
            Request::CreateUser {
                user: user.clone(),
                password: password.clone(),
            },
        ),
    );
    item(&mut d, 1, &request(2, Request::Login { user, password }));
    item(
        &mut d,
        1,
        &request(
            3,
            Request::CreateGroup {
                group: GroupName::new("g").unwrap(),
            },
        ),
    );
    item(&mut d, 2, b"\xff\xff garbage");
    item(&mut d, 0, &[1]);
    item(&mut d, 1, &[0; 3]);
    d
}

/// `data` as a whole table, and `data` as a table's body behind the
/// magic and with the right checksum appended (so the fuzzer reaches the
/// field decoders past the checksum): never a panic, and whatever is
/// accepted is canonical.
pub fn share_table(data: &[u8]) {
    use crate::client::shares;
    let sealed = shares::seal(data);
    for bytes in [data, &sealed] {
        if let Ok(entries) = shares::decode(bytes) {
            assert_eq!(shares::encode(&entries), bytes, "not canonical");
        }
    }
}

/// A valid share table body (what [`share_table`] seals), with a path
/// holding a newline and a tab, for the seed corpus.
pub fn share_table_sample() -> Vec<u8> {
    use crate::client::shares::{self, ShareEntry};
    let hashes = vec![p2p_proto::Sha1Hash([9; 20]); 2];
    let meta = p2p_proto::FileMeta {
        name: p2p_proto::FileName::new("a.bin").unwrap(),
        size: 1500,
        piece_len: 1024,
        file_hash: crate::hash::file_root(1500, 1024, &hashes),
        piece_hashes: hashes,
    };
    let entries = [b"/home/a/a.bin".as_slice(), b"/tmp/x\ny\tz.bin"].map(|p| ShareEntry {
        group: GroupName::new("g1").unwrap(),
        path: p.to_vec(),
        meta: meta.clone(),
    });
    let table = shares::encode(&entries);
    table[shares::MAGIC.len()..table.len() - 4].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2p_proto::UserName;

    #[test]
    fn valid_sessions_garbage_and_truncated_input_never_panic() {
        let s = tracker_input_sample();
        // The sample reaches the tracker's write path: alice exists and is
        // logged in.
        let t = run_tracker(&s);
        let alice = UserName::new("alice").unwrap();
        assert!(t.state().user(&alice).is_some());
        assert!(t.state().user_session(&alice).is_some());
        for cut in 0..s.len() {
            tracker_input(&s[..cut]);
        }
        let mut flipped = s.clone();
        for i in (0..flipped.len()).step_by(7) {
            flipped[i] ^= 0x5a;
        }
        tracker_input(&flipped);
        tracker_input(&[]);
        tracker_input(&[3, 0xff, 0xff]);
    }

    #[test]
    fn share_table_sample_decodes_and_cuts_never_panic() {
        use crate::client::shares;
        let body = share_table_sample();
        let table = shares::seal(&body);
        assert_eq!(shares::decode(&table).unwrap().len(), 2);
        for cut in 0..body.len() {
            share_table(&body[..cut]);
            share_table(&table[..cut]);
        }
        share_table(&body);
        share_table(&table);
    }
}
