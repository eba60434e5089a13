//! File limits: files per group, sources per file, piece hashes in total,
//! and the per-user quotas until the group is deleted.

use super::*;

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
