//! Rate limits: `set_rate` sets and shows each limit, and the global
//! download limit is shared by every download in turn.

use super::*;

/// `set_rate` sets each limit where it is enforced and answers all four;
/// `set_rate` alone shows them.
#[test]
fn set_rate_sets_each_limit_and_answers_all() {
    use crate::client::node::{RateLimit, Rates};
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
    use crate::client::node::PeerOut;
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
