//! Files: upload, list, get, peers and tickets, piece reports, stop_share,
//! seeding visibility, and the file limits.
//!
//! By concern: `metadata.rs` (upload, list and get), `sources.rs` (peers
//! and tickets, who is shown as a source, piece reports, stop_share and
//! the seeder address), `quotas.rs` (the file limits and per-user
//! quotas). This file holds the shared requests and setup.

use p2p_proto::{
    FileMeta, FileSummary, Op, OpKind, PieceSet, Reply, Request, Sha1Hash, TrackerError,
};

use super::testkit::*;
use crate::time::Instant;
use crate::tracker::limits::{
    FILES_PER_GROUP_MAX, FILES_PER_USER_MAX, PEERS_PER_REPLY, PIECE_HASHES_PER_USER_MAX,
    PIECE_HASHES_TOTAL_MAX, SOURCES_PER_FILE_MAX, what,
};
use crate::tracker::state::TrackerState;
use std::net::SocketAddr;

mod metadata;
mod quotas;
mod sources;

fn upload(g: &str, m: FileMeta) -> Request {
    Request::UploadFile {
        group: group(g),
        meta: m,
    }
}
fn peers(g: &str, f: &str) -> Request {
    Request::GetPeers {
        group: group(g),
        file: file(f),
    }
}
fn have(g: &str, f: &str, pieces: PieceSet) -> Request {
    Request::HavePieces {
        group: group(g),
        file: file(f),
        pieces,
    }
}
fn stop(g: &str, f: &str) -> Request {
    Request::StopShare {
        group: group(g),
        file: file(f),
    }
}
fn register(port: u16) -> Request {
    Request::RegisterSeeder { addr: addr(port) }
}
fn not_member(g: &str) -> TrackerError {
    TrackerError::NotMember { group: group(g) }
}
fn no_file(g: &str, f: &str) -> TrackerError {
    TrackerError::NoSuchFile {
        group: group(g),
        file: file(f),
    }
}
fn no_seeders(g: &str, f: &str) -> TrackerError {
    TrackerError::NoSeeders {
        group: group(g),
        file: file(f),
    }
}
fn pieces(len: u32, which: &[u32]) -> PieceSet {
    let mut s = PieceSet::empty(len);
    for i in which {
        s.insert(*i);
    }
    s
}

/// alice owns "g" with bob and carol as members; mallory is outside.
fn setup() -> (World, Actor, Actor, Actor, Actor) {
    let mut w = World::new();
    let mut a = w.login_new("alice", 1);
    let mut b = w.login_new("bob", 2);
    let mut c = w.login_new("carol", 3);
    let m = w.login_new("mallory", 4);
    w.group_with("g", &mut a, &mut [&mut b, &mut c]);
    (w, a, b, c, m)
}

/// The users in a `get_peers` reply, in order.
fn peer_names(out: &p2p_proto::Outcome) -> Vec<String> {
    match out {
        Ok(Reply::Peers(v)) => v.iter().map(|p| p.user.to_string()).collect(),
        other => panic!("not peers: {other:?}"),
    }
}
