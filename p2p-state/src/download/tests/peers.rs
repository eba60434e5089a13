//! Peers: listing, rarest first, corrupt, refusing, busy, expired and
//! closed peers, request timeouts, late pieces, announces and malformed
//! messages.

use super::*;

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
