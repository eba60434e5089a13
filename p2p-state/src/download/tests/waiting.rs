//! Caps and waiting: in-flight caps, backing off from the tracker, batched
//! announces, resume, progress reports and the waiting reason.

use super::*;

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
