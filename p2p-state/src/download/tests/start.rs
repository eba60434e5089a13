//! Start and end: the first output, metadata checked at once, completion,
//! a write failure, and cancel.

use super::*;

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
