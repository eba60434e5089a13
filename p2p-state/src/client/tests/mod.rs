//! Unit tests of the client machine, fed by hand: a tracker that answers
//! `download_file`'s metadata request.
//!
//! By concern: `announce.rs` (shares announced again after a login),
//! `metadata.rs` (the metadata a download starts from),
//! `peers.rs` (listed and pushed seeders), `inbound.rs` (connections to
//! the seeder port before their hello), `rates.rs` (`set_rate` and the
//! global download limit). This file holds the shared helpers.

use std::net::SocketAddr;

use p2p_proto::{
    FileMeta, FileName, FromTracker, GroupName, Hello, KeyId, Reply, Request, Role, Sha1Hash, Wire,
};

use super::node::{ClientConfig, ClientNode, Command, CommandOk, Input, Output, PeerConnId};
use super::session::{ClientError, SessionConfig, TrackerOut};
use crate::download::{DownloadConfig, DownloadError};
use crate::hash;
use crate::seeder::{ConnId, SeederConfig};
use crate::time::Instant;

mod announce;
mod inbound;
mod metadata;
mod peers;
mod rates;

const T0: Instant = Instant(1_000_000);

fn tracker() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9901))
}

fn drain(n: &mut ClientNode) -> Vec<Output> {
    std::iter::from_fn(|| n.poll_output()).collect()
}

/// A file of three 1 KiB pieces whose file hash commits to its pieces.
fn good_meta() -> FileMeta {
    let data: Vec<u8> = (0..3 * 1024).map(|i| (i % 251) as u8).collect();
    let piece_hashes: Vec<Sha1Hash> = data.chunks(1024).map(hash::sha1).collect();
    FileMeta {
        name: FileName::new("f.bin").unwrap(),
        size: data.len() as u64,
        piece_len: 1024,
        file_hash: hash::file_root(data.len() as u64, 1024, &piece_hashes),
        piece_hashes,
    }
}

/// A client connected to its tracker that sent `download_file` and got
/// `meta` back as the file's metadata: the outputs of that answer.
fn download_with(meta: FileMeta) -> Vec<Output> {
    started_with(meta).0
}

/// As [`download_with`], with the machine and its tracker connection.
fn started_with(meta: FileMeta) -> (Vec<Output>, ClientNode, u64) {
    let file = meta.name.clone();
    asked_for(file, None, meta)
}

/// A client node with `download`'s settings, connected to its tracker
/// (hellos exchanged), and its tracker connection.
fn connected(download: DownloadConfig) -> (ClientNode, u64) {
    let cfg = ClientConfig {
        session: SessionConfig::new(vec![tracker()], 0),
        seeder: SeederConfig::default(),
        download,
        seeder_addr: None,
    };
    let mut n = ClientNode::new(cfg, 7, T0);
    let conn = connect(&mut n);
    (n, conn)
}

/// A new node's tracker dial answered (connected, hellos exchanged): the
/// tracker connection.
fn connect(n: &mut ClientNode) -> u64 {
    let conn = match drain(n).as_slice() {
        [Output::TrackerConnect { conn, .. }] => *conn,
        other => panic!("expected a tracker dial, got {other:?}"),
    };
    let peer = KeyId([0x54; 32]);
    n.handle_input(T0, Input::TrackerConnected { conn, peer });
    drain(n);
    let payload = Hello::new(Role::Server).to_bytes();
    n.handle_input(T0, Input::TrackerFrame { conn, payload });
    drain(n);
    conn
}

/// `download_file file [--hash expected]` answered with `meta`.
fn asked_for(
    file: FileName,
    expected: Option<Sha1Hash>,
    meta: FileMeta,
) -> (Vec<Output>, ClientNode, u64) {
    let (mut n, conn) = connected(DownloadConfig::default());
    let group = GroupName::new("g").unwrap();
    let cmd = Command::Download {
        group,
        file,
        dest: 1,
        expected,
    };
    n.handle_input(T0, Input::Command { tag: 5, cmd });
    let id = drain(&mut n)
        .into_iter()
        .find_map(|o| match o {
            Output::TrackerSend {
                msg: TrackerOut::Request(r),
                ..
            } => Some(r)
                .filter(|r| matches!(r.req, Request::GetFile { .. }))
                .map(|r| r.id),
            _ => None,
        })
        .expect("a GetFile request");
    let answer = FromTracker::Response {
        id,
        outcome: Ok(Reply::File(meta)),
    };
    let payload = answer.to_bytes();
    n.handle_input(T0, Input::TrackerFrame { conn, payload });
    (drain(&mut n), n, conn)
}

/// Answers the first tracker request among `out`.
fn answer(n: &mut ClientNode, conn: u64, out: &[Output], reply: Reply) -> Vec<Output> {
    let id = out
        .iter()
        .find_map(|o| match o {
            Output::TrackerSend {
                msg: TrackerOut::Request(r),
                ..
            } => Some(r.id),
            _ => None,
        })
        .expect("a request");
    let payload = FromTracker::Response {
        id,
        outcome: Ok(reply),
    }
    .to_bytes();
    n.handle_input(T0, Input::TrackerFrame { conn, payload });
    drain(n)
}

/// As [`started_with`], the destination opened (empty): the outputs now hold
/// the download's ask for peers.
fn asking_for_peers(meta: FileMeta) -> (Vec<Output>, ClientNode, u64) {
    let pieces = meta.piece_hashes.len() as u32;
    let (out, mut n, tconn) = started_with(meta);
    let dl = opened_dest(&out);
    let have = p2p_proto::PieceSet::empty(pieces);
    n.handle_input(T0, Input::DestReady { dl, have });
    (drain(&mut n), n, tconn)
}

/// The download `out` opens a destination for.
fn opened_dest(out: &[Output]) -> u64 {
    out.iter()
        .find_map(|o| match o {
            Output::OpenDest { dl, .. } => Some(*dl),
            _ => None,
        })
        .expect("opens the destination")
}

/// The peer connection `out` dials.
fn dialled(out: &[Output]) -> PeerConnId {
    out.iter()
        .find_map(|o| match o {
            Output::PeerConnect { conn, .. } => Some(*conn),
            _ => None,
        })
        .expect("dials the seeder")
}

/// The tracker's listing of seeder `user` at `addr` with `pieces` of
/// `file` (whose metadata is `meta`), vouching for `seeder_key`, its
/// ticket valid for five minutes.
fn listing(
    user: &str,
    addr: SocketAddr,
    pieces: p2p_proto::PieceSet,
    file: &FileName,
    meta: &FileMeta,
    seeder_key: KeyId,
) -> p2p_proto::PeerInfo {
    use p2p_proto::{Mac, PeerInfo, Ticket, UserName};
    PeerInfo {
        user: UserName::new(user).unwrap(),
        addr,
        pieces,
        ticket: Ticket {
            downloader: UserName::new("d").unwrap(),
            group: GroupName::new("g").unwrap(),
            file: file.clone(),
            file_hash: meta.file_hash,
            seeder: UserName::new(user).unwrap(),
            downloader_key: KeyId([0x44; 32]),
            seeder_key,
            expires_ms: T0.as_millis() + 300_000,
            mac: Mac::default(),
        },
    }
}

/// A client with no tracker answer yet, and its seeder port open.
fn idle_client() -> ClientNode {
    let cfg = ClientConfig {
        session: SessionConfig::new(vec![tracker()], 0),
        seeder: SeederConfig {
            unopened_per_addr_max: 1,
            ..SeederConfig::default()
        },
        download: DownloadConfig::default(),
        seeder_addr: None,
    };
    let mut n = ClientNode::new(cfg, 7, T0);
    drain(&mut n);
    n
}
