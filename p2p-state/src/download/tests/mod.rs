//! Unit tests of the download machine, fed by hand, one decision at a time.
//! Whole runs against real seeders are in `sim_tests.rs`.
//!
//! By concern: `start.rs` (start and end: metadata checks, completion,
//! write failure, cancel), `peers.rs` (listing, rarest first, bad and slow
//! peers, timeouts, announces to peers), `waiting.rs` (the in-flight caps,
//! asking the tracker again, progress and the waiting reason). This file
//! holds the shared rig and helpers.

use bytes::Bytes;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::net::SocketAddr;

use p2p_proto::{
    FileMeta, GroupName, KeyId, Mac, PeerInfo, PeerMsg, PieceSet, RejectReason, Sha1Hash, Ticket,
    UserName,
};

use super::harness::{T0, make_file};
use super::*;
use crate::hash;
use crate::time::{Duration, Instant};

mod peers;
mod start;
mod waiting;

/// The key every seeder of these tests proves (and the tracker vouches for).
const SEEDER_KEY: KeyId = KeyId([0x53; 32]);

/// A download of a small random file, driven by hand.
struct Rig {
    d: Download,
    now: Instant,
    file: Bytes,
    meta: FileMeta,
}

impl Rig {
    fn new(pieces: u32, cfg: DownloadConfig, have: PieceSet) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let (file, meta) = make_file(&mut rng, pieces as usize * 1024, 1024);
        let d = Download::new(cfg, group(), meta.clone(), have, 42, T0);
        Rig {
            d,
            now: T0,
            file,
            meta,
        }
    }

    fn fresh(pieces: u32) -> Self {
        Self::new(pieces, DownloadConfig::default(), PieceSet::empty(pieces))
    }

    fn drain(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.d.poll_output()).collect()
    }

    fn input(&mut self, i: Input) -> Vec<Output> {
        self.d.handle_input(self.now, i);
        self.drain()
    }

    fn advance(&mut self, ms: u64) -> Vec<Output> {
        self.now = self.now + Duration(ms);
        self.d.handle_timeout(self.now);
        self.drain()
    }

    /// Advances to the next deadline and fires it.
    fn fire_next(&mut self) -> Vec<Output> {
        let (at, _) = self.d.poll_timeout().expect("a deadline");
        self.now = self.now.max(at);
        self.d.handle_timeout(self.now);
        self.drain()
    }

    fn info(&self, i: u8, pieces: PieceSet) -> PeerInfo {
        let user = UserName::new(format!("s{i}")).unwrap();
        PeerInfo {
            user: user.clone(),
            addr: SocketAddr::from(([10, 0, 0, i], 7000)),
            pieces,
            ticket: Ticket {
                downloader: UserName::new("d").unwrap(),
                group: group(),
                file: self.meta.name.clone(),
                file_hash: self.meta.file_hash,
                seeder: user,
                downloader_key: KeyId([0x44; 32]),
                seeder_key: SEEDER_KEY,
                expires_ms: (T0 + Duration::from_secs(3600)).as_millis(),
                mac: Mac::default(),
            },
        }
    }

    fn data(&self, i: u32) -> Bytes {
        let off = self.meta.piece_offset(i) as usize;
        self.file.slice(off..off + self.meta.piece_size(i) as usize)
    }

    fn piece(&mut self, peer: PeerId, index: u32) -> Vec<Output> {
        let data = self.data(index);
        let sha1 = hash::sha1(&data);
        self.input(Input::Piece {
            peer,
            index,
            data,
            sha1,
        })
    }

    /// Lists the peers, connects every `Connect`, answers `Have`.
    fn connect_all(&mut self, peers: &[(u8, PieceSet)]) -> (Vec<PeerId>, Vec<Output>) {
        let list = peers
            .iter()
            .map(|(i, s)| self.info(*i, s.clone()))
            .collect();
        let outs = self.input(Input::Peers(list));
        let mut ids = connects(&outs);
        ids.sort();
        let mut after = Vec::new();
        for (&id, (_, pieces)) in ids.iter().zip(peers) {
            let o = self.input(Input::Connected {
                peer: id,
                key: SEEDER_KEY,
            });
            assert!(matches!(
                &o[0],
                Output::Send {
                    msg: PeerMsg::Open { .. },
                    ..
                }
            ));
            let pieces = pieces.clone();
            after.extend(self.input(Input::Msg {
                peer: id,
                msg: PeerMsg::Have { pieces },
            }));
        }
        (ids, after)
    }
}

fn group() -> GroupName {
    GroupName::new("g").unwrap()
}

fn connects(outs: &[Output]) -> Vec<PeerId> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Connect { peer, .. } => Some(*peer),
            _ => None,
        })
        .collect()
}

fn requests(outs: &[Output]) -> Vec<(PeerId, u32)> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Send {
                peer,
                msg: PeerMsg::Request { index },
            } => Some((*peer, *index)),
            _ => None,
        })
        .collect()
}

fn set(n: u32, items: &[u32]) -> PieceSet {
    let mut s = PieceSet::empty(n);
    items.iter().for_each(|&i| {
        s.insert(i);
    });
    s
}

fn has_disconnect(outs: &[Output], peer: PeerId) -> Option<DisconnectReason> {
    outs.iter().find_map(|o| match o {
        Output::Disconnect { peer: p, reason } if *p == peer => Some(reason.clone()),
        _ => None,
    })
}
