//! Unit tests of the download machine, fed by hand, one decision at a time.
//! Whole runs against real seeders are in `sim_tests.rs`.

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

// ---------------------------------------------------------------- start and end

#[test]
fn first_output_asks_the_tracker() {
    let mut r = Rig::fresh(4);
    assert_eq!(r.drain(), vec![Output::AskTrackerForPeers]);
    assert_eq!(r.d.state(), &DownloadState::Downloading);
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "download fed while 1 of its outputs")]
fn feeding_before_draining_panics() {
    let mut r = Rig::fresh(4);
    // `AskTrackerForPeers` is still queued.
    r.d.handle_timeout(r.now);
}

#[test]
fn inconsistent_metadata_fails_at_once() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let (_, mut meta) = make_file(&mut rng, 4096, 1024);
    meta.piece_hashes.pop();
    let mut d = Download::new(
        DownloadConfig::default(),
        group(),
        meta,
        PieceSet::empty(3),
        1,
        T0,
    );
    let out: Vec<_> = std::iter::from_fn(|| d.poll_output()).collect();
    assert!(matches!(
        out.as_slice(),
        [Output::Finished(Err(DownloadError::BadMetadata { .. }))]
    ));
    assert_eq!(d.poll_timeout(), None);
}

/// Starts a download of `meta` with nothing on disk; its first outputs.
fn start_with(meta: FileMeta) -> (Download, Vec<Output>) {
    let n = meta.piece_count();
    let mut d = Download::new(
        DownloadConfig::default(),
        group(),
        meta,
        PieceSet::empty(n),
        1,
        T0,
    );
    let out = std::iter::from_fn(|| d.poll_output()).collect();
    (d, out)
}

#[test]
fn a_file_hash_that_does_not_commit_to_the_pieces_is_refused_at_once() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let (_, good) = make_file(&mut rng, 4096 + 10, 1024);
    assert_eq!(check_meta(&good), Ok(()));
    let computed = hash::file_root(good.size, good.piece_len, &good.piece_hashes);
    // A forged file hash, then a forged piece hash under the real file
    // hash, then a size that still fits the piece count.
    let mut forged_root = good.clone();
    forged_root.file_hash = Sha1Hash([9; 20]);
    let mut forged_piece = good.clone();
    forged_piece.piece_hashes[2] = Sha1Hash([9; 20]);
    let mut other_size = good.clone();
    other_size.size -= 1;
    for (meta, want) in [
        (forged_root, computed),
        (forged_piece.clone(), hash::meta_root(&forged_piece)),
        (other_size.clone(), hash::meta_root(&other_size)),
    ] {
        let expected = meta.file_hash;
        let err = DownloadError::FileHashMismatch {
            expected,
            computed: want,
        };
        assert_eq!(check_meta(&meta), Err(err.clone()));
        let (d, out) = start_with(meta);
        assert_eq!(
            out,
            vec![Output::Finished(Err(err.clone()))],
            "nothing else"
        );
        assert_eq!(d.poll_timeout(), None);
        assert_eq!(d.state(), &DownloadState::Failed(err));
    }
}

#[test]
fn complete_as_soon_as_every_piece_is_written() {
    // Resumed with every piece on disk: complete at once, nothing re-read.
    let mut r = Rig::new(3, DownloadConfig::default(), PieceSet::full(3));
    let out = r.drain();
    assert_eq!(out.last(), Some(&Output::Finished(Ok(()))), "{out:?}");
    assert_eq!(r.d.state(), &DownloadState::Complete);
    assert!(r.d.poll_timeout().is_none());
    assert!(
        r.input(Input::Peers(vec![])).is_empty(),
        "idle once complete"
    );
}

#[test]
fn write_failure_ends_the_download_with_the_reason() {
    let mut r = Rig::fresh(2);
    r.drain();
    let (ids, out) = r.connect_all(&[(1, PieceSet::full(2))]);
    let (_, first) = requests(&out)[0];
    r.piece(ids[0], first);
    let out = r.input(Input::WriteFailed {
        index: first,
        reason: "No space left on device".into(),
    });
    assert!(has_disconnect(&out, ids[0]).is_some());
    let Some(Output::Finished(Err(e))) = out.last() else {
        panic!("{out:?}")
    };
    assert_eq!(
        e.to_string(),
        format!("writing piece {first} to disk failed: No space left on device")
    );
}

#[test]
fn cancel_closes_everything() {
    let mut r = Rig::fresh(2);
    r.drain();
    let (ids, _) = r.connect_all(&[(1, PieceSet::full(2))]);
    r.d.cancel(r.now);
    let out = r.drain();
    assert_eq!(has_disconnect(&out, ids[0]), Some(DisconnectReason::Ended));
    assert_eq!(
        out.last(),
        Some(&Output::Finished(Err(DownloadError::Cancelled)))
    );
    assert_eq!(r.d.in_flight(), 0);
}

// ---------------------------------------------------------------- peers

#[test]
fn listing_is_deduplicated_and_filtered() {
    let mut r = Rig::fresh(2);
    r.drain();
    let a = r.info(1, PieceSet::full(2));
    let mut me = r.info(2, PieceSet::full(2));
    me.user = me.ticket.downloader.clone();
    let mut other_file = r.info(3, PieceSet::full(2));
    other_file.ticket.file_hash = Sha1Hash([1; 20]);
    let wrong_len = r.info(4, PieceSet::full(3));
    let out = r.input(Input::Peers(vec![a.clone(), a, me, other_file, wrong_len]));
    assert_eq!(connects(&out).len(), 1, "{out:?}");
    assert_eq!(r.d.progress(r.now).peers_known, 1);
}

#[test]
fn requests_only_pieces_the_peer_holds_and_rarest_first() {
    let mut r = Rig::fresh(8);
    r.drain();
    // Piece 5 is held by one peer only: it is the rarest the second holds.
    let (ids, out) = r.connect_all(&[(1, set(8, &[0, 1, 2, 3])), (2, set(8, &[0, 1, 2, 3, 5]))]);
    for (p, i) in requests(&out) {
        assert!(r.d.peer_pieces(p).unwrap().contains(i), "{i} asked of {p}");
    }
    assert!(requests(&out).contains(&(ids[1], 5)), "{out:?}");
}

#[test]
fn rarest_first_counts_what_listed_peers_not_yet_ready_hold() {
    let cfg = DownloadConfig {
        per_peer_max: 1,
        per_peer_min: 1,
        ..DownloadConfig::default()
    };
    let mut r = Rig::new(4, cfg, PieceSet::empty(4));
    r.drain();
    // s1 holds everything and gets ready; s2 (0, 1, 2 by the tracker's
    // word) is still connecting: piece 3 is the rarest in the swarm.
    let list = vec![r.info(1, PieceSet::full(4)), r.info(2, set(4, &[0, 1, 2]))];
    let out = r.input(Input::Peers(list));
    let s1 = out
        .iter()
        .find_map(|o| match o {
            Output::Connect { peer, addr }
                if addr.port() == 7000 && addr.ip().to_string() == "10.0.0.1" =>
            {
                Some(*peer)
            }
            _ => None,
        })
        .expect("s1 dialed");
    r.input(Input::Connected {
        peer: s1,
        key: SEEDER_KEY,
    });
    let pieces = PieceSet::full(4);
    let out = r.input(Input::Msg {
        peer: s1,
        msg: PeerMsg::Have { pieces },
    });
    assert_eq!(requests(&out), vec![(s1, 3)], "{out:?}");
}

#[test]
fn a_corrupt_piece_is_never_written_and_the_peer_is_banned() {
    let cfg = DownloadConfig {
        max_parallel: 1,
        ..DownloadConfig::default()
    };
    let mut r = Rig::new(4, cfg, PieceSet::empty(4));
    r.drain();
    let (ids, out) = r.connect_all(&[(1, PieceSet::full(4))]);
    let mut asked = requests(&out);
    for strike in 1..=3 {
        let (p, i) = asked[0];
        let mut data = r.data(i).to_vec();
        data[0] ^= 1;
        let data = Bytes::from(data);
        let sha1 = hash::sha1(&data);
        let out = r.input(Input::Piece {
            peer: p,
            index: i,
            data,
            sha1,
        });
        assert!(!out.iter().any(|o| matches!(o, Output::WritePiece { .. })));
        if strike < 3 {
            asked = requests(&out);
            assert_eq!(asked, vec![(ids[0], i)], "re-queued and asked again");
        } else {
            assert!(out.iter().any(|o| matches!(
                o,
                Output::Send {
                    msg: PeerMsg::Fatal { .. },
                    ..
                }
            )));
            assert_eq!(
                has_disconnect(&out, ids[0]),
                Some(DisconnectReason::BadPieces { count: 3 })
            );
        }
    }
    assert_eq!(r.d.stats().bad_pieces, 3);
    // A banned peer is not connected again when listed again.
    let info = r.info(1, PieceSet::full(4));
    assert!(connects(&r.input(Input::Peers(vec![info]))).is_empty());
}

#[test]
fn a_rejected_piece_is_never_asked_of_that_peer_again() {
    let cfg = DownloadConfig {
        max_parallel: 1,
        ..DownloadConfig::default()
    };
    let mut r = Rig::new(2, cfg, PieceSet::empty(2));
    r.drain();
    let (ids, out) = r.connect_all(&[(1, PieceSet::full(2))]);
    let (_, i) = requests(&out)[0];
    let out = r.input(Input::Msg {
        peer: ids[0],
        msg: PeerMsg::Reject {
            index: Some(i),
            reason: RejectReason::NoSuchPiece { index: i },
        },
    });
    assert_eq!(requests(&out), vec![(ids[0], 1 - i)]);
    assert!(!r.d.peer_pieces(ids[0]).unwrap().contains(i));
}

#[test]
fn busy_caps_the_window_of_that_peer() {
    let mut r = Rig::fresh(8);
    r.drain();
    let (ids, out) = r.connect_all(&[(1, PieceSet::full(8))]);
    let asked = requests(&out);
    assert_eq!(asked.len(), PER_PEER_MIN_DEFAULT);
    // The seeder refuses the last one: it can take one fewer at a time.
    let (_, i) = asked[PER_PEER_MIN_DEFAULT - 1];
    let out = r.input(Input::Msg {
        peer: ids[0],
        msg: PeerMsg::Reject {
            index: Some(i),
            reason: RejectReason::Busy,
        },
    });
    let cap = PER_PEER_MIN_DEFAULT - 1;
    assert!(requests(&out).is_empty(), "window capped at {cap}: {out:?}");
    assert_eq!(r.d.peer_in_flight(ids[0]), cap);
}

#[test]
fn an_expired_ticket_waits_for_a_fresh_listing() {
    let mut r = Rig::fresh(2);
    r.drain();
    let (ids, _) = r.connect_all(&[(1, PieceSet::full(2))]);
    let out = r.input(Input::Msg {
        peer: ids[0],
        msg: PeerMsg::Reject {
            index: None,
            reason: RejectReason::Expired,
        },
    });
    assert_eq!(
        has_disconnect(&out, ids[0]),
        Some(DisconnectReason::Refused(RejectReason::Expired))
    );
    assert_eq!(r.d.in_flight(), 0);
    let w = r.d.waiting_reason(r.now).unwrap().to_string();
    assert!(w.contains("ticket expired"), "{w}");
    let info = r.info(1, PieceSet::full(2));
    let again = connects(&r.input(Input::Peers(vec![info])));
    assert_eq!(again.len(), 1);
    assert_ne!(again[0], ids[0], "a new connection gets a new id");
    // A late event of the old connection does not touch the new one.
    assert!(r.input(Input::Closed { peer: ids[0] }).is_empty());
    let out = r.input(Input::Connected {
        peer: again[0],
        key: SEEDER_KEY,
    });
    assert!(matches!(
        &out[..],
        [Output::Send {
            msg: PeerMsg::Open { .. },
            ..
        }]
    ));
}

#[test]
fn a_closed_peer_has_its_requests_moved_to_another() {
    let cfg = DownloadConfig {
        max_parallel: 2,
        ..DownloadConfig::default()
    };
    let mut r = Rig::new(2, cfg, PieceSet::empty(2));
    r.drain();
    let (ids, out) = r.connect_all(&[(1, PieceSet::full(2)), (2, PieceSet::full(2))]);
    let mut mine: Vec<u32> = requests(&out)
        .into_iter()
        .filter(|(p, _)| *p == ids[0])
        .map(|(_, i)| i)
        .collect();
    let out = r.input(Input::Closed { peer: ids[0] });
    let mut moved: Vec<u32> = requests(&out).into_iter().map(|(_, i)| i).collect();
    mine.sort();
    moved.sort();
    assert_eq!(moved, mine, "{out:?}");
    assert_eq!(mine.len(), 2);
    assert!(requests(&out).iter().all(|(p, _)| *p == ids[1]));
}

#[test]
fn request_timeouts_cancel_requeue_then_drop_the_peer() {
    let cfg = DownloadConfig {
        max_parallel: 1,
        // No peer refresh among the deadlines this test fires.
        peers_refresh_first: Duration::from_secs(3600),
        peers_refresh: Duration::from_secs(3600),
        ..DownloadConfig::default()
    };
    let mut r = Rig::new(2, cfg, PieceSet::empty(2));
    r.drain();
    let (ids, _) = r.connect_all(&[(1, PieceSet::full(2))]);
    for n in 1..=3u32 {
        let out = r.fire_next();
        assert_eq!(r.d.stats().timeouts, u64::from(n), "{out:?}");
        assert!(out.iter().any(|o| matches!(
            o,
            Output::Send {
                msg: PeerMsg::Cancel { .. },
                ..
            }
        )));
        if n == 3 {
            assert_eq!(
                has_disconnect(&out, ids[0]),
                Some(DisconnectReason::TimedOut { count: 3 })
            );
        } else {
            assert_eq!(requests(&out).len(), 1, "re-requested: {out:?}");
        }
    }
}

#[test]
fn a_late_piece_after_cancel_is_accepted_but_unrequested_ones_are_not() {
    let cfg = DownloadConfig {
        max_parallel: 1,
        // No peer refresh among the deadlines this test fires.
        peers_refresh_first: Duration::from_secs(3600),
        peers_refresh: Duration::from_secs(3600),
        ..DownloadConfig::default()
    };
    let mut r = Rig::new(3, cfg, PieceSet::empty(3));
    r.drain();
    let (ids, out) = r.connect_all(&[(1, PieceSet::full(3))]);
    let (_, i) = requests(&out)[0];
    let out = r.fire_next();
    assert!(out.contains(&Output::Send {
        peer: ids[0],
        msg: PeerMsg::Cancel { index: i }
    }));
    // The cancelled copy arrives anyway: good data, written once. Further
    // copies nobody asked for use up the allowance, then break the rules.
    let mut outs = Vec::new();
    for _ in 0..3 {
        outs.extend(r.piece(ids[0], i));
    }
    let writes = outs
        .iter()
        .filter(|o| matches!(o, Output::WritePiece { .. }));
    assert_eq!(writes.count(), 1);
    assert_eq!(
        has_disconnect(&outs, ids[0]),
        Some(DisconnectReason::ProtocolViolation {
            what: "sent a piece nobody asked for"
        }),
    );
}

#[test]
fn a_piece_through_msg_is_hashed_by_the_machine() {
    let mut r = Rig::fresh(1);
    r.drain();
    let (ids, out) = r.connect_all(&[(1, PieceSet::full(1))]);
    assert_eq!(requests(&out), vec![(ids[0], 0)]);
    let data = r.data(0);
    let out = r.input(Input::Msg {
        peer: ids[0],
        msg: PeerMsg::Piece { index: 0, data },
    });
    assert!(matches!(
        out[0],
        Output::WritePiece {
            index: 0,
            offset: 0,
            ..
        }
    ));
    let out = r.input(Input::PieceWritten { index: 0 });
    assert!(out.contains(&Output::Finished(Ok(()))), "{out:?}");
}

#[test]
fn a_written_piece_is_announced_to_every_ready_peer() {
    let mut r = Rig::fresh(4);
    r.drain();
    let (ids, out) = r.connect_all(&[(1, PieceSet::full(4)), (2, PieceSet::full(4))]);
    let (from, index) = requests(&out)[0];
    r.piece(from, index);
    let out = r.input(Input::PieceWritten { index });
    for id in ids {
        let told = Output::Send {
            peer: id,
            msg: PeerMsg::HavePiece { index },
        };
        assert!(out.contains(&told), "{id} not told: {out:?}");
    }
}

#[test]
fn malformed_peer_messages_are_violations() {
    let mut r = Rig::fresh(2);
    r.drain();
    let (ids, _) = r.connect_all(&[(1, PieceSet::full(2)), (2, PieceSet::full(2))]);
    let out = r.input(Input::Msg {
        peer: ids[0],
        msg: PeerMsg::Have {
            pieces: PieceSet::full(3),
        },
    });
    assert!(matches!(
        has_disconnect(&out, ids[0]),
        Some(DisconnectReason::ProtocolViolation { .. })
    ));
    let out = r.input(Input::Msg {
        peer: ids[1],
        msg: PeerMsg::Request { index: 0 },
    });
    assert!(has_disconnect(&out, ids[1]).is_some());
    // Messages for a peer already dropped are ignored.
    assert!(r.input(Input::Closed { peer: ids[1] }).is_empty());
}

// ---------------------------------------------------------------- caps

#[test]
fn in_flight_never_exceeds_the_caps() {
    let cfg = DownloadConfig {
        max_parallel: 5,
        per_peer_max: 2,
        ..DownloadConfig::default()
    };
    let mut r = Rig::new(40, cfg, PieceSet::empty(40));
    r.drain();
    let peers: Vec<_> = (1..=4).map(|i| (i, PieceSet::full(40))).collect();
    let (ids, _) = r.connect_all(&peers);
    assert_eq!(r.d.in_flight(), 5);
    assert!(ids.iter().all(|&p| r.d.peer_in_flight(p) <= 2));
}

// ---------------------------------------------------------------- tracker, waiting

#[test]
fn no_peer_backs_off_and_says_why_then_gives_up() {
    let mut r = Rig::fresh(2);
    r.drain();
    r.input(Input::Peers(vec![]));
    let w = r.d.waiting_reason(r.now).unwrap();
    assert_eq!(
        w.to_string(),
        "no seeder online; asking the tracker again in 1 s"
    );
    let mut asks = vec![];
    while !r.d.is_finished() {
        let out = r.fire_next();
        if out.contains(&Output::AskTrackerForPeers) {
            asks.push(r.now.saturating_since(T0).as_millis() / 1000);
            r.input(Input::Peers(vec![]));
        }
    }
    assert_eq!(&asks[..7], &[1, 3, 7, 15, 31, 61, 91], "{asks:?}");
    let DownloadState::Failed(e) = r.d.state() else {
        panic!()
    };
    assert!(matches!(e, DownloadError::Stalled { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with("no progress for 300 s: no seeder online"),
        "{e}"
    );
}

#[test]
fn peers_are_asked_for_again_soon_at_first_then_less_and_less_often() {
    // Leechers starting together must meet within a second: the refresh
    // while downloading starts at 125 ms and doubles up to 60 s.
    let cfg = DownloadConfig {
        max_parallel: 1,
        request_timeout_min: Duration::from_secs(3600),
        request_timeout_max: Duration::from_secs(3600),
        ..DownloadConfig::default()
    };
    let mut r = Rig::new(2, cfg, PieceSet::empty(2));
    assert_eq!(r.drain(), vec![Output::AskTrackerForPeers]);
    r.connect_all(&[(1, PieceSet::full(2))]);
    let mut asks = vec![];
    for _ in 0..12 {
        let out = r.fire_next();
        if out.contains(&Output::AskTrackerForPeers) {
            asks.push(r.now.saturating_since(T0).as_millis());
            r.input(Input::Peers(vec![r.info(1, PieceSet::full(2))]));
        }
    }
    let ramp = [250, 750, 1750, 3750, 7750, 15750, 31750, 63750, 123750];
    assert_eq!(&asks[..ramp.len()], &ramp, "{asks:?}");
}

#[test]
fn announces_are_batched() {
    let mut r = Rig::fresh(6);
    r.drain();
    let (ids, _) = r.connect_all(&[(1, PieceSet::full(6))]);
    let mut announced = Vec::new();
    let mut note = |out: Vec<Output>| {
        for o in out {
            if let Output::AnnounceHave { pieces } = o {
                announced.push(pieces.count());
            }
        }
    };
    while r.d.pieces_done().count() < 6 {
        let i = *r.d.requests.keys().next().expect("something in flight");
        note(r.piece(ids[0], i));
        note(r.input(Input::PieceWritten { index: i }));
        note(r.advance(100));
    }
    note(r.advance(1000));
    // The first piece is announced at once, the next five (written within
    // one interval) together.
    assert_eq!(announced, vec![1, 6]);
}

#[test]
fn resume_fetches_only_the_missing_pieces() {
    let have = set(6, &[0, 2, 4]);
    let mut r = Rig::new(6, DownloadConfig::default(), have);
    r.drain();
    let (_, out) = r.connect_all(&[(1, PieceSet::full(6))]);
    for (_, i) in requests(&out) {
        assert!(i % 2 == 1, "asked for held piece {i}");
    }
    assert_eq!(r.d.progress(r.now).pieces_done, 3);
}

#[test]
fn progress_reports_counts_rate_and_peers() {
    let mut r = Rig::fresh(4);
    r.drain();
    let (ids, out) = r.connect_all(&[(1, PieceSet::full(4))]);
    let (_, i) = requests(&out)[0];
    r.now = r.now + Duration(500);
    r.piece(ids[0], i);
    r.input(Input::PieceWritten { index: i });
    let p = r.d.progress(r.now);
    assert_eq!((p.pieces_done, p.pieces_total, p.bytes_done), (1, 4, 1024));
    assert_eq!(p.peers_connected, 1);
    assert_eq!(p.peers_in_use, 1);
    assert!(p.rate_bps > 0 && p.waiting_reason.is_none(), "{p:?}");
    assert_eq!(p.state, DownloadState::Downloading);
}

/// A slow disk holds verified pieces back: they count against the cap, so
/// the piece bytes held anywhere stay bounded by `max_parallel` pieces.
#[test]
fn unwritten_pieces_count_against_the_cap() {
    let cfg = DownloadConfig {
        max_parallel: 4,
        ..DownloadConfig::default()
    };
    let mut r = Rig::new(64, cfg, PieceSet::empty(64));
    r.drain();
    let (ids, outs) = r.connect_all(&[(1, PieceSet::full(64))]);
    let peer = ids[0];
    let mut asked = requests(&outs);
    let mut written = Vec::new();
    // Answer every request, never acknowledge a write.
    for _ in 0..64 {
        let Some((_, index)) = asked.pop() else { break };
        let outs = r.piece(peer, index);
        written.extend(outs.iter().filter_map(|o| match o {
            Output::WritePiece { index, .. } => Some(*index),
            _ => None,
        }));
        asked.extend(requests(&outs));
        let held = r.d.in_flight() + written.len();
        assert!(
            held <= 4,
            "{} in flight + {} unwritten",
            r.d.in_flight(),
            written.len()
        );
    }
    assert_eq!(
        written.len(),
        4,
        "stalls at the cap until the disk catches up"
    );
    assert_eq!(r.d.in_flight(), 0);
    // The disk acknowledges one: exactly one more request goes out.
    let outs = r.input(Input::PieceWritten { index: written[0] });
    assert_eq!(requests(&outs).len(), 1);
}

/// The waiting reason covers the last seconds, not one instant: with
/// every request answered and the disk holding the pieces back (nothing
/// in flight for a moment), a download that just received pieces is not
/// "waiting"; only after `WAITING_WINDOW` without a piece does it say why.
/// The progress carries the piece map and what each peer gave.
#[test]
fn the_waiting_reason_looks_at_the_last_seconds() {
    let cfg = DownloadConfig {
        max_parallel: 2,
        ..DownloadConfig::default()
    };
    let mut r = Rig::new(8, cfg, PieceSet::empty(8));
    r.drain();
    let (ids, outs) = r.connect_all(&[(1, PieceSet::full(8))]);
    let asked = requests(&outs);
    assert_eq!(asked.len(), 2);
    for (_, index) in &asked {
        r.piece(ids[0], *index);
    }
    // Both pieces wait for the disk: nothing is in flight.
    assert_eq!(r.d.in_flight(), 0);
    assert_eq!(r.d.waiting_reason(r.now), None, "pieces just arrived");
    assert_eq!(r.d.progress(r.now).waiting_reason, None);
    r.now = r.now + WAITING_WINDOW;
    assert!(
        r.d.waiting_reason(r.now).is_some(),
        "quiet for the whole window"
    );
    r.input(Input::PieceWritten { index: asked[0].1 });
    let p = r.d.progress(r.now);
    assert_eq!(p.have.count(), 1, "{p:?}");
    assert!(p.have.contains(asked[0].1));
    assert_eq!(p.peers.len(), 1);
    assert_eq!(p.peers[0].pieces_received, 2);
    assert!(p.peers[0].connected);
}
