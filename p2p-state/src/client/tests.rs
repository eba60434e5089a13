//! Unit tests of the client machine, fed by hand: a tracker that answers
//! `download_file`'s metadata request.

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
    let conn = match drain(&mut n).as_slice() {
        [Output::TrackerConnect { conn, .. }] => *conn,
        other => panic!("expected a tracker dial, got {other:?}"),
    };
    let peer = KeyId([0x54; 32]);
    n.handle_input(T0, Input::TrackerConnected { conn, peer });
    drain(&mut n);
    let payload = Hello::new(Role::Server).to_bytes();
    n.handle_input(T0, Input::TrackerFrame { conn, payload });
    drain(&mut n);
    (n, conn)
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

/// The seeder the tracker lists proves another key at its address: the
/// connection is closed with not a byte sent (no hello, no ticket).
#[test]
fn a_seeder_address_answered_by_another_key_hears_nothing() {
    use p2p_proto::PieceSet;
    let meta = good_meta();
    let (out, mut n, tconn) = asking_for_peers(meta.clone());
    let addr = SocketAddr::from(([10, 0, 0, 9], 9000));
    let vouched = KeyId([0x53; 32]);
    let info = listing("s", addr, PieceSet::full(3), &meta.name, &meta, vouched);
    let out = answer(&mut n, tconn, &out, Reply::Peers(vec![info]));
    let conn = dialled(&out);
    let peer = KeyId([0x52; 32]);
    n.handle_input(T0, Input::PeerConnected { conn, peer });
    let out = drain(&mut n);
    assert_eq!(out, vec![Output::PeerClose { conn }], "nothing sent");
    let lines = n.download_lines(T0);
    let p = lines[0].progress.as_ref().unwrap();
    let why = p.waiting_reason.as_ref().map(|w| w.to_string());
    assert!(why.is_some_and(|w| w.contains(&peer.to_string())), "{p:?}");
}

#[test]
fn consistent_metadata_starts_the_download() {
    let out = download_with(good_meta());
    assert!(
        out.iter().any(|o| matches!(o, Output::OpenDest { .. })),
        "{out:?}"
    );
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Done {
            tag: 5,
            result: Ok(CommandOk::Started { .. })
        }
    )));
}

#[test]
fn metadata_whose_file_hash_does_not_commit_to_the_pieces_is_refused() {
    let good = good_meta();
    let mut forged = good.clone();
    forged.piece_hashes[1] = Sha1Hash([0xaa; 20]);
    let out = download_with(forged.clone());
    let want = ClientError::BadMetadata {
        file: good.name.clone(),
        error: DownloadError::FileHashMismatch {
            expected: good.file_hash,
            computed: hash::meta_root(&forged),
        },
    };
    assert_eq!(
        out,
        vec![Output::Done {
            tag: 5,
            result: Err(want.clone())
        }],
        "refused before any file is touched"
    );
    assert!(want.to_string().contains("does not match"), "{want}");
}

/// Issue 16 §10: asked for one file, a hostile tracker answers with
/// another's (valid) metadata; nothing is opened or fetched.
#[test]
fn metadata_of_another_file_is_refused() {
    let other = good_meta();
    let asked = FileName::new("report.pdf").unwrap();
    let (out, ..) = asked_for(asked.clone(), None, other.clone());
    let want = ClientError::BadMetadata {
        file: asked.clone(),
        error: DownloadError::WrongFile {
            asked,
            got: other.name.clone(),
        },
    };
    assert_eq!(
        out,
        vec![Output::Done {
            tag: 5,
            result: Err(want.clone())
        }],
        "refused before any file is touched"
    );
    assert!(want.to_string().contains("not of report.pdf"), "{want}");
}

/// `download_file ... --hash H`: metadata with another file hash is
/// refused before anything is fetched; the right hash starts the download.
#[test]
fn an_expected_file_hash_must_match() {
    let meta = good_meta();
    let wrong = Sha1Hash([0x11; 20]);
    let (out, ..) = asked_for(meta.name.clone(), Some(wrong), meta.clone());
    let want = ClientError::BadMetadata {
        file: meta.name.clone(),
        error: DownloadError::NotExpectedHash {
            expected: wrong,
            got: meta.file_hash,
        },
    };
    assert_eq!(
        out,
        vec![Output::Done {
            tag: 5,
            result: Err(want)
        }]
    );
    let (out, ..) = asked_for(meta.name.clone(), Some(meta.file_hash), meta.clone());
    assert!(
        out.iter().any(|o| matches!(o, Output::OpenDest { .. })),
        "the right hash starts it: {out:?}"
    );
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

/// Issue 16 §6: a connection to the seeder port that never says hello is
/// counted by the seeder from accept (so the ticketless bounds hold it)
/// and closed when its time to show a ticket runs out.
#[test]
fn an_inbound_connection_silent_before_its_hello_is_closed_in_time() {
    use crate::seeder::OPEN_TIMEOUT;
    let mut n = idle_client();
    let addr = std::net::IpAddr::from([192, 0, 2, 1]);
    let peer = KeyId([0x61; 32]);
    n.handle_input(
        T0,
        Input::PeerAccepted {
            conn: PeerConnId::Inbound(ConnId(1)),
            peer,
            addr,
        },
    );
    assert!(drain(&mut n).is_empty());
    assert_eq!(n.seeder().connections(), 1);
    let before = T0 + crate::time::Duration(OPEN_TIMEOUT.as_millis() - 1);
    // (The session's own timers make outputs too: look at peers only.)
    let closes = |out: Vec<Output>| -> Vec<Output> {
        out.into_iter()
            .filter(|o| matches!(o, Output::PeerClose { .. }))
            .collect()
    };
    n.handle_timeout(before);
    assert!(closes(drain(&mut n)).is_empty(), "not before OPEN_TIMEOUT");
    n.handle_timeout(T0 + OPEN_TIMEOUT);
    let out = closes(drain(&mut n));
    assert_eq!(
        out,
        vec![Output::PeerClose {
            conn: PeerConnId::Inbound(ConnId(1))
        }]
    );
    assert_eq!(n.seeder().connections(), 0);
}

/// A connection refused at accept (here past the ticketless limit from
/// one address) hears our hello, then the refusal, then is closed: the
/// peer reads why.
#[test]
fn an_inbound_connection_refused_before_its_hello_hears_why() {
    use super::node::PeerOut;
    use p2p_proto::{PeerMsg, RejectReason};
    let mut n = idle_client();
    let addr = std::net::IpAddr::from([192, 0, 2, 1]);
    let peer = KeyId([0x61; 32]);
    n.handle_input(
        T0,
        Input::PeerAccepted {
            conn: PeerConnId::Inbound(ConnId(1)),
            peer,
            addr,
        },
    );
    drain(&mut n);
    n.handle_input(
        T0,
        Input::PeerAccepted {
            conn: PeerConnId::Inbound(ConnId(2)),
            peer,
            addr,
        },
    );
    let reject = PeerMsg::Reject {
        index: None,
        reason: RejectReason::Busy,
    };
    assert_eq!(
        drain(&mut n),
        vec![
            Output::PeerSend {
                conn: PeerConnId::Inbound(ConnId(2)),
                msg: PeerOut::Hello(Hello::new(Role::Server)),
            },
            Output::PeerSend {
                conn: PeerConnId::Inbound(ConnId(2)),
                msg: PeerOut::Msg(reject),
            },
            Output::PeerClose {
                conn: PeerConnId::Inbound(ConnId(2))
            },
        ]
    );
    // Its hello, arriving late, is ignored; the first one is still held.
    let payload = Hello::new(Role::Peer).to_bytes();
    n.handle_input(
        T0,
        Input::PeerFrame {
            conn: PeerConnId::Inbound(ConnId(2)),
            payload,
        },
    );
    assert!(drain(&mut n).is_empty());
    assert_eq!(n.seeder().connections(), 1);
}

/// `set_rate` sets each limit where it is enforced and answers all four;
/// `set_rate` alone shows them.
#[test]
fn set_rate_sets_each_limit_and_answers_all() {
    use super::node::{RateLimit, Rates};
    let mut n = idle_client();
    let run = |n: &mut ClientNode, cmd| {
        n.handle_input(T0, Input::Command { tag: 9, cmd });
        match drain(n).as_slice() {
            [
                Output::Done {
                    result: Ok(CommandOk::Rates(r)),
                    ..
                },
            ] => *r,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(run(&mut n, Command::ShowRates), Rates::default());
    for (limit, rate) in [
        (RateLimit::Up, 1),
        (RateLimit::Down, 2),
        (RateLimit::UpPerPeer, 3),
        (RateLimit::DownPerPeer, 4),
    ] {
        let rate = Some(rate);
        run(&mut n, Command::SetRate { limit, rate });
    }
    let all = Rates {
        up: Some(1),
        down: Some(2),
        up_per_peer: Some(3),
        down_per_peer: Some(4),
    };
    assert_eq!(run(&mut n, Command::ShowRates), all);
    assert_eq!(n.seeder().upload_rate(), Some(1));
    assert_eq!(n.seeder().upload_rate_per_peer(), Some(3));
    let limit = RateLimit::Down;
    let r = run(&mut n, Command::SetRate { limit, rate: None });
    assert_eq!(r, Rates { down: None, ..all });
}

/// A source the tracker pushes unasked (`FromTracker::Peers`) is dialled
/// by the running download of that file at once; a push for another file
/// dials nothing.
#[test]
fn a_pushed_peer_is_dialled_by_the_download_of_its_file() {
    use p2p_proto::{PeerInfo, PieceSet};
    let meta = good_meta();
    let (out, mut n, tconn) = asking_for_peers(meta.clone());
    let info = |user: &str, port: u16, pieces: PieceSet, file: &FileName| -> PeerInfo {
        let addr = SocketAddr::from(([10, 0, 0, 9], port));
        listing(user, addr, pieces, file, &meta, KeyId([0x53; 32]))
    };
    let seeder = info("s", 9000, PieceSet::full(3), &meta.name);
    let out = answer(&mut n, tconn, &out, Reply::Peers(vec![seeder]));
    assert!(out.iter().any(|o| matches!(o, Output::PeerConnect { .. })));
    let dials = |out: &[Output]| -> Vec<SocketAddr> {
        out.iter()
            .filter_map(|o| match o {
                Output::PeerConnect { addr, .. } => Some(*addr),
                _ => None,
            })
            .collect()
    };
    let mut one = PieceSet::empty(3);
    one.insert(1);
    let other = FileName::new("other.bin").unwrap();
    let push = |peers: Vec<PeerInfo>| FromTracker::Peers {
        group: GroupName::new("g").unwrap(),
        file: peers[0].ticket.file.clone(),
        peers,
    };
    let payload = push(vec![info("q", 9002, one.clone(), &other)]).to_bytes();
    n.handle_input(
        T0,
        Input::TrackerFrame {
            conn: tconn,
            payload,
        },
    );
    assert!(dials(&drain(&mut n)).is_empty(), "another file's push");
    let payload = push(vec![info("p", 9001, one, &meta.name)]).to_bytes();
    n.handle_input(
        T0,
        Input::TrackerFrame {
            conn: tconn,
            payload,
        },
    );
    assert_eq!(
        dials(&drain(&mut n)),
        vec![SocketAddr::from(([10, 0, 0, 9], 9001))],
        "the pushed holder is dialled"
    );
}

/// A file of `pieces` 1 KiB pieces named `name`.
fn meta_of(name: &str, pieces: u32) -> FileMeta {
    let data: Vec<u8> = (0..pieces * 1024).map(|i| (i % 241) as u8).collect();
    let piece_hashes: Vec<Sha1Hash> = data.chunks(1024).map(hash::sha1).collect();
    FileMeta {
        name: FileName::new(name).unwrap(),
        size: data.len() as u64,
        piece_len: 1024,
        file_hash: hash::file_root(data.len() as u64, 1024, &piece_hashes),
        piece_hashes,
    }
}

/// Piece requests a client node sends over `secs` seconds while it runs
/// two downloads at once, each from its own seeder that holds every
/// piece and never answers: the count per download, in start order.
fn requests_of_two_downloads(max_rate: Option<u64>, secs: u64) -> Vec<usize> {
    use super::node::PeerOut;
    use p2p_proto::{PeerMsg, PieceSet};
    const PIECES: u32 = 64;
    let (mut n, tconn) = connected(DownloadConfig {
        max_rate,
        ..DownloadConfig::default()
    });
    let mut conns = Vec::new();
    // What the node sent after each seeder's hello (counted with the rest).
    let mut early = Vec::new();
    for (i, name) in ["a.bin", "b.bin"].into_iter().enumerate() {
        let meta = meta_of(name, PIECES);
        let cmd = Command::Download {
            group: GroupName::new("g").unwrap(),
            file: meta.name.clone(),
            dest: 10 + i as u64,
            expected: None,
        };
        n.handle_input(
            T0,
            Input::Command {
                tag: 5 + i as u64,
                cmd,
            },
        );
        let out = drain(&mut n);
        let out = answer(&mut n, tconn, &out, Reply::File(meta.clone()));
        let dl = opened_dest(&out);
        let have = PieceSet::empty(PIECES);
        n.handle_input(T0, Input::DestReady { dl, have });
        let out = drain(&mut n);
        let addr = SocketAddr::from(([10, 0, 0, 9 + i as u8], 9000));
        let peer = KeyId([0x60 + i as u8; 32]);
        let all = PieceSet::full(PIECES);
        let info = listing(&format!("s{i}"), addr, all, &meta.name, &meta, peer);
        let out = answer(&mut n, tconn, &out, Reply::Peers(vec![info]));
        let conn = dialled(&out);
        n.handle_input(T0, Input::PeerConnected { conn, peer });
        drain(&mut n);
        let payload = Hello::new(Role::Server).to_bytes();
        n.handle_input(T0, Input::PeerFrame { conn, payload });
        early.extend(drain(&mut n));
        conns.push(conn);
    }
    let mut counts = vec![0usize; conns.len()];
    let count = |out: Vec<Output>, counts: &mut Vec<usize>| {
        for o in out {
            if let Output::PeerSend {
                conn,
                msg: PeerOut::Msg(PeerMsg::Request { .. }),
            } = o
                && let Some(i) = conns.iter().position(|c| *c == conn)
            {
                counts[i] += 1;
            }
        }
    };
    count(early, &mut counts);
    // Both seeders say they hold everything at the same instant.
    for &conn in &conns.clone() {
        let payload = PeerMsg::Have {
            pieces: PieceSet::full(PIECES),
        }
        .to_bytes();
        n.handle_input(T0, Input::PeerFrame { conn, payload });
        count(drain(&mut n), &mut counts);
    }
    let end = T0 + crate::time::Duration::from_secs(secs);
    for _ in 0..100_000 {
        match n.poll_timeout() {
            Some((at, _)) if at <= end => {
                n.handle_timeout(at);
                count(drain(&mut n), &mut counts);
            }
            _ => break,
        }
    }
    counts
}

/// The global download limit (`--max-download-rate`) is one bucket for
/// every download: two downloads at once together request no more than
/// the rate allows (plus the bucket's one-second burst and one piece of
/// debt), and they take turns, so neither starves the other.
#[test]
fn the_global_download_limit_is_shared_by_every_download_in_turn() {
    const SECS: u64 = 2;
    let unlimited = requests_of_two_downloads(None, SECS);
    let limited = requests_of_two_downloads(Some(1024), SECS);
    // One 1 KiB piece a second: a second's burst, SECS seconds, one piece
    // of debt.
    let bound = 1 + SECS as usize + 1;
    let total: usize = limited.iter().sum();
    assert!(
        total <= bound,
        "{limited:?} over {SECS} s at one piece a second"
    );
    assert!(
        total >= SECS as usize,
        "{limited:?}: the limit still lets pieces through"
    );
    assert!(
        limited.iter().max().unwrap() - limited.iter().min().unwrap() <= 1,
        "{limited:?}: the downloads take turns"
    );
    assert!(
        unlimited.iter().sum::<usize>() > bound,
        "{unlimited:?}: without the limit they ask for more"
    );
}
