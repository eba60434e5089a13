//! Files: upload, list, get, peers and tickets, piece reports, stop_share,
//! seeding visibility, and the file limits.

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

#[test]
fn upload_new_then_same_content_then_conflict() {
    let (mut w, mut a, mut b, mut c, _) = setup();
    let m = meta("f", 3, 1);
    assert_eq!(
        w.run(&mut a, upload("g", m.clone())),
        Ok(Reply::Shared { new_file: true })
    );
    assert_eq!(
        w.run(&mut b, upload("g", m.clone())),
        Ok(Reply::Shared { new_file: false })
    );
    let f = &w.st.group(&group("g")).unwrap().files[&file("f")];
    assert_eq!(f.sources.len(), 2);
    assert!(f.sources.values().all(PieceSet::is_full));
    let conflict = TrackerError::FileConflict {
        group: group("g"),
        file: file("f"),
    };
    w.refused(&mut c, upload("g", meta("f", 3, 2)), conflict);
    assert_eq!(
        w.run(&mut a, upload("g", m)),
        Ok(Reply::Shared { new_file: false })
    );
}

#[test]
fn upload_needs_a_group_membership_and_valid_metadata() {
    let (mut w, mut a, _, _, mut m) = setup();
    w.refused(&mut m, upload("g", meta("f", 1, 1)), not_member("g"));
    let missing = TrackerError::NoSuchGroup {
        group: group("nope"),
    };
    w.refused(&mut a, upload("nope", meta("f", 1, 1)), missing);
    let mut bad = meta("f", 2, 1);
    bad.piece_hashes.pop();
    assert!(matches!(
        w.run(&mut a, upload("g", bad)),
        Err(TrackerError::BadRequest { .. })
    ));
}

#[test]
fn a_file_hash_that_does_not_commit_to_the_pieces_is_refused() {
    let (mut w, mut a, mut b, _, _) = setup();
    let mismatch = TrackerError::FileHashMismatch { file: file("f") };
    let mut forged_root = meta("f", 3, 1);
    forged_root.file_hash = Sha1Hash([0xaa; 20]);
    w.refused(&mut a, upload("g", forged_root), mismatch.clone());
    // Another piece hash under the file hash of the real content: refused
    // on its own, and also once the real file is shared.
    let real = meta("f", 3, 1);
    let mut forged_piece = real.clone();
    forged_piece.piece_hashes[1] = Sha1Hash([0xaa; 20]);
    w.refused(&mut a, upload("g", forged_piece.clone()), mismatch.clone());
    assert_eq!(
        w.run(&mut a, upload("g", real)),
        Ok(Reply::Shared { new_file: true })
    );
    w.refused(&mut b, upload("g", forged_piece.clone()), mismatch.clone());
    // An op that carries such metadata (from an old log) changes nothing.
    let before = w.st.digest();
    let op = OpKind::ShareFile {
        user: b.name.clone(),
        group: group("g"),
        meta: forged_piece,
    };
    assert_eq!(w.system(op), Err(mismatch));
    assert_eq!(w.st.digest(), before);
}

#[test]
fn an_empty_file_can_be_shared() {
    let (mut w, mut a, _, _, _) = setup();
    let empty = meta("empty", 0, 1);
    assert_eq!(
        w.run(&mut a, upload("g", empty)),
        Ok(Reply::Shared { new_file: true })
    );
}

#[test]
fn list_files_counts_online_seeders_and_partial_holders() {
    let (mut w, mut a, mut b, mut c, mut m) = setup();
    w.run(&mut a, upload("g", meta("f", 4, 1))).unwrap();
    w.run(&mut b, have("g", "f", pieces(4, &[0, 1]))).unwrap();
    w.run(&mut c, have("g", "f", pieces(4, &[2]))).unwrap();
    let list = Request::ListFiles { group: group("g") };
    let summary = |seeders, partial| {
        let m = meta("f", 4, 1);
        Ok(Reply::Files(vec![FileSummary {
            name: m.name,
            size: m.size,
            file_hash: m.file_hash,
            seeders,
            partial,
        }]))
    };
    assert_eq!(
        w.run(&mut a, list.clone()),
        summary(0, 0),
        "nobody registered an address"
    );
    w.run(&mut a, register(1)).unwrap();
    w.run(&mut b, register(2)).unwrap();
    w.run(&mut c, register(3)).unwrap();
    assert_eq!(w.run(&mut a, list.clone()), summary(1, 2));
    w.system(OpKind::SetOnline {
        token: c.token.unwrap(),
        online: false,
    })
    .unwrap();
    assert_eq!(w.run(&mut a, list.clone()), summary(1, 1));
    w.refused(&mut m, list, not_member("g"));
}

#[test]
fn get_file_returns_the_metadata_to_members() {
    let (mut w, mut a, mut b, _, mut m) = setup();
    let meta = meta("f", 2, 1);
    w.run(&mut a, upload("g", meta.clone())).unwrap();
    let get = |f: &str| Request::GetFile {
        group: group("g"),
        file: file(f),
    };
    assert_eq!(w.run(&mut b, get("f")), Ok(Reply::File(meta)));
    w.refused(&mut b, get("x"), no_file("g", "x"));
    w.refused(&mut m, get("f"), not_member("g"));
    let missing = Request::GetFile {
        group: group("nope"),
        file: file("f"),
    };
    w.refused(
        &mut b,
        missing,
        TrackerError::NoSuchGroup {
            group: group("nope"),
        },
    );
}

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

fn apply(st: &mut TrackerState, kind: OpKind) -> p2p_proto::Outcome {
    st.apply(&Op {
        at_ms: 1,
        origin: None,
        kind,
    })
}

#[test]
fn files_per_group_limit() {
    let (mut w, mut a, ..) = setup();
    let sharers = w.new_members("g", "u", FILES_PER_GROUP_MAX / FILES_PER_USER_MAX);
    for i in 0..FILES_PER_GROUP_MAX {
        let kind = OpKind::ShareFile {
            user: sharers[i / FILES_PER_USER_MAX].clone(),
            group: group("g"),
            meta: meta(&format!("f{i}"), 1, 1),
        };
        apply(&mut w.st, kind).unwrap();
    }
    w.st.check_invariants();
    w.refused(
        &mut a,
        upload("g", meta("more", 1, 1)),
        TrackerError::LimitReached {
            what: what::FILES.into(),
        },
    );
    assert!(
        w.run(&mut a, upload("g", meta("f0", 1, 1))).is_ok(),
        "an existing file is fine"
    );
}

#[test]
fn sources_per_file_limit() {
    let (mut w, mut a, mut b, ..) = setup();
    w.run(&mut a, upload("g", meta("f", 1, 1))).unwrap();
    let phc = some_phc();
    for i in 0..SOURCES_PER_FILE_MAX - 1 {
        let u = user(&format!("u{i}"));
        apply(
            &mut w.st,
            OpKind::CreateUser {
                user: u.clone(),
                password_hash: p2p_proto::PasswordHash(phc.clone()),
            },
        )
        .unwrap();
        apply(
            &mut w.st,
            OpKind::RequestJoin {
                user: u.clone(),
                group: group("g"),
            },
        )
        .unwrap();
        apply(
            &mut w.st,
            OpKind::AcceptJoin {
                group: group("g"),
                user: u.clone(),
            },
        )
        .unwrap();
        let kind = OpKind::ShareFile {
            user: u,
            group: group("g"),
            meta: meta("f", 1, 1),
        };
        apply(&mut w.st, kind).unwrap();
    }
    w.st.check_invariants();
    let full = TrackerError::LimitReached {
        what: what::SOURCES.into(),
    };
    w.refused(&mut b, upload("g", meta("f", 1, 1)), full.clone());
    w.refused(&mut b, have("g", "f", pieces(1, &[0])), full);
    assert!(
        w.run(&mut a, have("g", "f", pieces(1, &[0]))).is_ok(),
        "existing source"
    );
}

#[test]
fn piece_hashes_total_limit() {
    let (mut w, mut a, ..) = setup();
    let per_file = p2p_proto::limits::FILE_PIECES_MAX;
    let files = PIECE_HASHES_TOTAL_MAX / per_file as u64;
    let per_user = PIECE_HASHES_PER_USER_MAX / per_file as u64;
    let sharers = w.new_members("g", "u", files.div_ceil(per_user) as usize);
    for i in 0..files {
        let kind = OpKind::ShareFile {
            user: sharers[(i / per_user) as usize].clone(),
            group: group("g"),
            meta: meta(&format!("f{i}"), per_file, 1),
        };
        apply(&mut w.st, kind).unwrap();
    }
    let room = (PIECE_HASHES_TOTAL_MAX - w.st.piece_hashes) as u32;
    w.run(&mut a, upload("g", meta("last", room, 1))).unwrap();
    assert_eq!(w.st.piece_hashes, PIECE_HASHES_TOTAL_MAX);
    let full = TrackerError::LimitReached {
        what: what::PIECE_HASHES.into(),
    };
    w.refused(&mut a, upload("g", meta("more", 1, 1)), full);
    assert!(
        w.run(&mut a, upload("g", meta("empty", 0, 1))).is_ok(),
        "no hashes, no limit"
    );
}

fn limit(what: &str) -> TrackerError {
    TrackerError::LimitReached { what: what.into() }
}

/// One account registers at most `FILES_PER_USER_MAX` files; sharing an
/// existing file is not a registration, and others can still share.
#[test]
fn files_per_user_quota() {
    let (mut w, mut a, mut b, ..) = setup();
    for i in 0..FILES_PER_USER_MAX - 1 {
        let kind = OpKind::ShareFile {
            user: a.name.clone(),
            group: group("g"),
            meta: meta(&format!("f{i}"), 1, 1),
        };
        apply(&mut w.st, kind).unwrap();
    }
    let ok = Ok(Reply::Shared { new_file: true });
    assert_eq!(
        w.run(&mut a, upload("g", meta("last", 1, 1))),
        ok,
        "at the bound"
    );
    assert_eq!(w.st.registered_by(&a.name).files, FILES_PER_USER_MAX);
    w.refused(
        &mut a,
        upload("g", meta("more", 1, 1)),
        limit(what::FILES_USER),
    );
    assert_eq!(w.run(&mut b, upload("g", meta("bobs", 1, 2))), ok);
    let again = Ok(Reply::Shared { new_file: false });
    assert_eq!(w.run(&mut a, upload("g", meta("bobs", 1, 2))), again);
    assert_eq!(w.run(&mut a, upload("g", meta("f0", 1, 1))), again);
    w.st.check_invariants();
}

/// The piece hashes of the files one account registered stay within
/// `PIECE_HASHES_PER_USER_MAX`; others can still share.
#[test]
fn piece_hashes_per_user_quota() {
    let (mut w, mut a, mut b, ..) = setup();
    let per_file = p2p_proto::limits::FILE_PIECES_MAX;
    let full = (PIECE_HASHES_PER_USER_MAX / per_file as u64) as usize;
    for i in 0..full {
        let kind = OpKind::ShareFile {
            user: a.name.clone(),
            group: group("g"),
            meta: meta(&format!("f{i}"), per_file, 1),
        };
        apply(&mut w.st, kind).unwrap();
    }
    let room = (PIECE_HASHES_PER_USER_MAX - w.st.registered_by(&a.name).piece_hashes) as u32;
    w.run(&mut a, upload("g", meta("last", room, 1))).unwrap();
    let mine = w.st.registered_by(&a.name).piece_hashes;
    assert_eq!(mine, PIECE_HASHES_PER_USER_MAX, "at the bound");
    let over = limit(what::PIECE_HASHES_USER);
    w.refused(&mut a, upload("g", meta("more", 1, 1)), over);
    assert!(
        w.run(&mut b, upload("g", meta("bobs", per_file, 2)))
            .is_ok()
    );
    assert!(
        w.run(&mut a, upload("g", meta("empty", 0, 1))).is_ok(),
        "no hashes, no hash quota"
    );
}

/// A file counts against its registrant while it exists, even after they
/// leave its group; deleting the group frees the quota.
#[test]
fn registered_files_count_until_their_group_is_deleted() {
    let (mut w, mut a, mut b, mut c, _) = setup();
    w.run(&mut b, upload("g", meta("f", 3, 1))).unwrap();
    w.run(&mut a, upload("g", meta("f", 3, 1))).unwrap();
    let r = w.st.registered_by(&b.name);
    assert_eq!((r.files, r.piece_hashes), (1, 3), "b registered it");
    assert_eq!(w.st.registered_by(&a.name).files, 0, "a only sources it");
    w.run(&mut b, Request::LeaveGroup { group: group("g") })
        .unwrap();
    assert_eq!(w.st.registered_by(&b.name).files, 1, "still counts");
    for x in [&mut a, &mut c] {
        w.run(x, Request::LeaveGroup { group: group("g") }).unwrap();
    }
    assert!(w.st.group(&group("g")).is_none(), "the group was deleted");
    assert_eq!(w.st.registered_by(&b.name).files, 0, "freed");
    w.assert_replays();
}
