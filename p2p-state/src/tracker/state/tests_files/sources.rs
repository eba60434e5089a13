//! Sources: get_peers with signed tickets, capped and rotated, sources
//! hidden while offline, piece reports, stop_share and register_seeder.

use super::*;

#[test]
fn get_peers_lists_other_online_sources_with_signed_tickets() {
    let (mut w, mut a, mut b, mut c, mut m) = setup();
    w.run(&mut a, upload("g", meta("f", 4, 1))).unwrap();
    w.refused(&mut b, peers("g", "f"), no_seeders("g", "f"));
    w.run(&mut a, register(1)).unwrap();
    w.run(&mut c, have("g", "f", pieces(4, &[3]))).unwrap();
    w.run(&mut c, register(3)).unwrap();
    let out = w.run(&mut b, peers("g", "f"));
    assert_eq!(peer_names(&out), ["alice", "carol"]);
    let Ok(Reply::Peers(list)) = out else {
        unreachable!()
    };
    for p in &list {
        let (_, s) = w.st.user_session(&p.user).unwrap();
        assert_eq!(Some(p.addr), s.addr);
        let t = &p.ticket;
        assert_eq!(
            (&t.downloader, &t.seeder, &t.file),
            (&b.name, &p.user, &file("f"))
        );
        assert_eq!(t.expires_ms, w.now.as_millis() + w.cfg.ticket_ttl_ms);
        assert_eq!(crate::ticket::verify(&s.seeder_key, t, w.now), Ok(()));
    }
    assert_eq!(list[1].pieces, pieces(4, &[3]));
    // The asker is never its own source.
    assert_eq!(peer_names(&w.run(&mut a, peers("g", "f"))), ["carol"]);
    w.refused(&mut m, peers("g", "f"), not_member("g"));
    w.refused(&mut b, peers("g", "x"), no_file("g", "x"));
}

#[test]
fn offline_logged_out_or_taken_over_sources_are_hidden_until_back() {
    let (mut w, mut a, mut b, _, _) = setup();
    w.run(&mut a, upload("g", meta("f", 1, 1))).unwrap();
    w.run(&mut a, register(1)).unwrap();
    let token = a.token.unwrap();
    w.system(OpKind::SetOnline {
        token,
        online: false,
    })
    .unwrap();
    w.refused(&mut b, peers("g", "f"), no_seeders("g", "f"));
    w.system(OpKind::SetOnline {
        token,
        online: true,
    })
    .unwrap();
    assert_eq!(peer_names(&w.run(&mut b, peers("g", "f"))), ["alice"]);
    w.run(&mut a, Request::Logout).unwrap();
    w.refused(&mut b, peers("g", "f"), no_seeders("g", "f"));
    // A new login starts with no sources: registering an address is not
    // enough, the new client must announce what it holds.
    let mut again = Actor::new("alice", 9);
    w.login(&mut again, pw("pw-alice"));
    w.refused(&mut b, peers("g", "f"), no_seeders("g", "f"));
    w.run(&mut again, register(11)).unwrap();
    w.refused(&mut b, peers("g", "f"), no_seeders("g", "f"));
    w.run(&mut again, upload("g", meta("f", 1, 1))).unwrap();
    let Ok(Reply::Peers(list)) = w.run(&mut b, peers("g", "f")) else {
        panic!()
    };
    assert_eq!(list[0].addr, addr(11));
    // A takeover hides them again until the new session announces.
    let mut third = Actor::new("alice", 10);
    w.login(&mut third, pw("pw-alice"));
    w.run(&mut third, register(12)).unwrap();
    w.refused(&mut b, peers("g", "f"), no_seeders("g", "f"));
}

#[test]
fn a_new_login_counts_as_a_seeder_only_what_it_announces() {
    let (mut w, mut a, mut b, _, _) = setup();
    w.run(&mut a, upload("g", meta("f", 2, 1))).unwrap();
    w.run(&mut a, register(1)).unwrap();
    w.run(&mut b, have("g", "f", pieces(2, &[0]))).unwrap();
    w.run(&mut b, register(2)).unwrap();
    // Bob logs in again from a client with an empty data folder: it
    // announces nothing, so he is no longer a holder; alice still is.
    let mut fresh = Actor::new("bob", 9);
    w.login(&mut fresh, pw("pw-bob"));
    w.run(&mut fresh, register(9)).unwrap();
    assert_eq!(peer_names(&w.run(&mut fresh, peers("g", "f"))), ["alice"]);
    // The file's metadata stays listed for members.
    assert!(
        w.run(
            &mut fresh,
            Request::GetFile {
                group: group("g"),
                file: file("f"),
            }
        )
        .is_ok()
    );
    w.assert_replays();
}

#[test]
fn get_peers_caps_the_reply_and_rotates_over_sources() {
    let mut w = World::new();
    let mut a = w.login_new("alice", 1);
    w.group_with("g", &mut a, &mut []);
    w.run(&mut a, upload("g", meta("f", 1, 1))).unwrap();
    let n = PEERS_PER_REPLY + 7;
    for i in 0..n {
        let mut s = w.login_new(&format!("s{i:03}"), 100 + i as u8);
        w.run(&mut s, Request::JoinGroup { group: group("g") })
            .unwrap();
        let acc = Request::AcceptRequest {
            group: group("g"),
            user: s.name.clone(),
        };
        w.run(&mut a, acc).unwrap();
        w.run(&mut s, upload("g", meta("f", 1, 1))).unwrap();
        w.run(&mut s, register(1000 + i as u16)).unwrap();
    }
    let req = a.req(peers("g", "f"));
    let first = peer_names(&w.st.read(Instant(0), &w.cfg, &req, key_of(req.client)));
    assert_eq!(first.len(), PEERS_PER_REPLY);
    assert_eq!(first[0], "s000");
    let later = peer_names(&w.st.read(Instant(5), &w.cfg, &req, key_of(req.client)));
    assert_eq!(later[0], "s005");
    let wrapped = peer_names(
        &w.st
            .read(Instant(n as u64 - 1), &w.cfg, &req, key_of(req.client)),
    );
    assert_eq!((wrapped[0].as_str(), wrapped[1].as_str()), ("s056", "s000"));
}

#[test]
fn have_pieces_records_a_partial_holder_that_grows_to_a_seeder() {
    let (mut w, mut a, mut b, _, _) = setup();
    w.run(&mut a, upload("g", meta("f", 3, 1))).unwrap();
    w.run(&mut b, have("g", "f", pieces(3, &[0]))).unwrap();
    w.run(&mut b, have("g", "f", pieces(3, &[2]))).unwrap();
    let bob = b.name.clone();
    let src = |w: &World| w.st.group(&group("g")).unwrap().files[&file("f")].sources[&bob].clone();
    assert_eq!(src(&w), pieces(3, &[0, 2]), "reports add up");
    w.run(&mut b, have("g", "f", pieces(3, &[1]))).unwrap();
    assert!(src(&w).is_full());
    w.run(&mut b, have("g", "f", pieces(3, &[0]))).unwrap();
    assert!(src(&w).is_full(), "a report never takes pieces away");
}

#[test]
fn have_pieces_errors() {
    let (mut w, mut a, mut b, _, mut m) = setup();
    w.run(&mut a, upload("g", meta("f", 3, 1))).unwrap();
    for bad in [pieces(4, &[0]), pieces(3, &[])] {
        let out = w.run(&mut b, have("g", "f", bad));
        assert!(
            matches!(out, Err(TrackerError::BadRequest { .. })),
            "{out:?}"
        );
    }
    w.refused(&mut b, have("g", "x", pieces(3, &[0])), no_file("g", "x"));
    w.refused(&mut m, have("g", "f", pieces(3, &[0])), not_member("g"));
    let missing = TrackerError::NoSuchGroup {
        group: group("nope"),
    };
    w.refused(&mut b, have("nope", "f", pieces(3, &[0])), missing);
}

#[test]
fn stop_share_removes_the_source_and_keeps_the_metadata() {
    let (mut w, mut a, mut b, _, mut m) = setup();
    w.run(&mut a, upload("g", meta("f", 2, 1))).unwrap();
    let not_sharing = TrackerError::NotSharing {
        group: group("g"),
        file: file("f"),
    };
    w.refused(&mut b, stop("g", "f"), not_sharing.clone());
    w.refused(&mut m, stop("g", "f"), not_member("g"));
    w.refused(&mut a, stop("g", "x"), no_file("g", "x"));
    assert_eq!(w.run(&mut a, stop("g", "f")), Ok(Reply::Done));
    w.refused(&mut a, stop("g", "f"), not_sharing);
    let f = &w.st.group(&group("g")).unwrap().files[&file("f")];
    assert!(f.sources.is_empty());
    assert_eq!(w.st.piece_hashes, 2, "metadata kept");
    let get = Request::GetFile {
        group: group("g"),
        file: file("f"),
    };
    assert!(w.run(&mut b, get).is_ok());
    assert_eq!(
        w.run(&mut b, upload("g", meta("f", 2, 1))),
        Ok(Reply::Shared { new_file: false })
    );
}

#[test]
fn register_seeder_sets_the_sessions_address() {
    let (mut w, mut a, ..) = setup();
    w.run(&mut a, register(7)).unwrap();
    // The reply names the recorded address (the client prints it).
    assert_eq!(
        w.run(&mut a, register(8)),
        Ok(Reply::SeederAt { addr: addr(8) })
    );
    assert_eq!(w.st.session(&a.token.unwrap()).unwrap().addr, Some(addr(8)));
    // An address nobody can dial is refused and changes nothing.
    for bad in ["0.0.0.0:7001", "127.0.0.1:0", "[::]:7001"] {
        let bad: SocketAddr = bad.parse().unwrap();
        let out = w.run(&mut a, Request::RegisterSeeder { addr: bad });
        assert!(
            matches!(out, Err(TrackerError::BadRequest { .. })),
            "{bad}: {out:?}"
        );
    }
    assert_eq!(w.st.session(&a.token.unwrap()).unwrap().addr, Some(addr(8)));
}
