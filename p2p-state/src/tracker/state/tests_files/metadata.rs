//! File metadata: upload (new, same, conflicting, invalid), an empty file,
//! list_files' counts and get_file.

use super::*;

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
