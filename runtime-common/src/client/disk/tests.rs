//! Tests of the client's disk side: hashing, the share table, piece
//! writes and the destination's safety rules.

use super::*;
use std::io::Write;

/// The definition, one piece after the other from the bytes in memory.
fn sequential(data: &[u8], piece_len: u32) -> (Vec<Sha1Hash>, Sha1Hash) {
    let pieces: Vec<Sha1Hash> = data.chunks(piece_len as usize).map(sha1).collect();
    let root = file_root(data.len() as u64, piece_len, &pieces);
    (pieces, root)
}

fn file_of(dir: &Path, len: usize) -> (PathBuf, Vec<u8>) {
    let data: Vec<u8> = (0..len as u64)
        .map(|i| (i.wrapping_mul(0x9e37_79b9) >> 7) as u8)
        .collect();
    let path = dir.join(format!("f-{len}.bin"));
    File::create(&path).unwrap().write_all(&data).unwrap();
    (path, data)
}

#[test]
fn parallel_hashing_matches_the_sequential_definition() {
    let dir = tempfile::tempdir().unwrap();
    for piece_len in [1024u32, p2p_proto::limits::PIECE_LEN] {
        let p = piece_len as usize;
        for len in [0, 1, p - 1, p, p + 1, 5 * p + 17] {
            let (path, data) = file_of(dir.path(), len);
            let (pieces, root) = sequential(&data, piece_len);
            let file = File::open(&path).unwrap();
            for workers in [1, 2, 3, 8] {
                let got = hash_pieces(&file, len as u64, piece_len, workers, &|_| {}).unwrap();
                assert_eq!(got, pieces, "len {len}, piece {p}, {workers} threads");
            }
            let meta = hash_file(&path, piece_len).unwrap();
            assert_eq!(meta.piece_hashes, pieces, "len {len}, piece {p}");
            assert_eq!(meta.file_hash, root, "len {len}, piece {p}");
            assert_eq!((meta.size, meta.piece_len), (len as u64, piece_len));
            meta.validate().unwrap();
        }
    }
}

/// The destination gets every byte exactly, whichever way each piece
/// goes: an aligned whole piece (straight from its buffer with
/// `O_DIRECT`), a whole piece whose buffer is not aligned (copied to
/// an aligned one first), and a short last piece (the buffered file).
#[test]
fn pieces_land_byte_exact_through_direct_and_buffered_writes() {
    let dir = tempfile::tempdir().unwrap();
    let piece = 64 * 1024usize;
    let size = 3 * piece + 1000;
    let data: Vec<u8> = (0..size as u32).map(|i| (i % 251) as u8).collect();
    let pieces: Vec<Sha1Hash> = data.chunks(piece).map(sha1).collect();
    let meta = FileMeta {
        name: p2p_proto::FileName::new("f.bin").unwrap(),
        size: size as u64,
        piece_len: piece as u32,
        file_hash: file_root(size as u64, piece as u32, &pieces),
        piece_hashes: pieces,
    };
    let dest = dir.path().join("f.bin");
    let (dl, have) = open_dest(&dest, &meta, WriteMode::Direct, 16, false).unwrap();
    assert!(have.is_empty());
    // Asked not to, it never opens the file with O_DIRECT.
    let (buffered, _) = open_dest(
        &dir.path().join("g.bin"),
        &meta,
        WriteMode::PageCache,
        16,
        false,
    )
    .unwrap();
    assert!(buffered.direct.is_none());
    // Where the file system has O_DIRECT (ext4, xfs, btrfs: the CI
    // machine's /tmp), it is used.
    if dl.direct.is_none() {
        eprintln!(
            "note: no O_DIRECT on {}; buffered only",
            dir.path().display()
        );
    }
    let direct = dl.direct.as_deref();
    // Piece 0 from an aligned pooled buffer.
    let mut buf = buffers::take(piece + DIRECT_ALIGN);
    let at = buffers::aligned_start(&buf, 0);
    buf[at..at + piece].copy_from_slice(&data[..piece]);
    let aligned = buffers::freeze(buf, at..at + piece);
    assert_eq!(aligned.as_ptr().align_offset(DIRECT_ALIGN), 0);
    write_piece(&dl.file, direct, None, &dl.cache_writer, &aligned, 0).unwrap();
    // Piece 2, then piece 1, from buffers one byte off alignment.
    for i in [2usize, 1] {
        let mut v = vec![0u8; piece + 1];
        let off = usize::from(v.as_ptr().align_offset(DIRECT_ALIGN) == 0);
        v[off..off + piece].copy_from_slice(&data[i * piece..(i + 1) * piece]);
        let unaligned = &v[off..off + piece];
        assert_ne!(unaligned.as_ptr().align_offset(DIRECT_ALIGN), 0);
        write_piece(
            &dl.file,
            direct,
            None,
            &dl.cache_writer,
            unaligned,
            (i * piece) as u64,
        )
        .unwrap();
    }
    // The short tail.
    let tail = &data[3 * piece..];
    write_piece(
        &dl.file,
        direct,
        Some(&dl.trim),
        &dl.cache_writer,
        tail,
        (3 * piece) as u64,
    )
    .unwrap();
    assert_eq!(fs::read(&dl.part).unwrap(), data);
}

/// Writes `chunk` at `offset` of `file` through the page cache, handed
/// to `trim`.
fn write_trimmed(file: &File, trim: &CacheTrim, chunk: &[u8], offset: u64) {
    write_piece(file, None, Some(trim), &Mutex::default(), chunk, offset).unwrap();
}

/// Waits until `wb` has run everything queued before this call.
fn settle(wb: &Writeback) {
    let (tx, rx) = std::sync::mpsc::channel();
    wb.queue_waiting(WritebackReq::Call(Box::new(move || {
        let _ = tx.send(());
    })));
    rx.recv_timeout(std::time::Duration::from_secs(10))
        .expect("the writeback thread runs");
}

/// Buffered writes handed to a [`CacheTrim`] land byte-exact, and a drop
/// of clean pages is queued every [`CACHE_TRIM_LAG`] pieces.
#[test]
fn cache_trim_keeps_the_bytes_and_drops_every_lag() {
    let dir = tempfile::tempdir().unwrap();
    let piece = 4096;
    let n = CACHE_TRIM_LAG + 5;
    let data: Vec<u8> = (0..n * piece).map(|i| (i % 253) as u8).collect();
    let path = dir.path().join("f");
    let file = File::create(&path).unwrap();
    let wb = Writeback::spawn().unwrap();
    let trim = CacheTrim::with(Some(wb.clone()));
    for (i, chunk) in data.chunks(piece).enumerate().rev() {
        write_trimmed(&file, &trim, chunk, (i * piece) as u64);
        assert!(trim.pending() < CACHE_TRIM_LAG);
    }
    assert_eq!(trim.pending(), 5, "one drop queued, after {CACHE_TRIM_LAG}");
    settle(&wb);
    assert_eq!(wb.skipped(), 0);
    assert_eq!(fs::read(&path).unwrap(), data);
}

/// Issue 18: a piece write never waits for the device. With the
/// writeback thread stuck (as behind a device slower than the network),
/// writes go on at once; the thread's queue holds at most
/// [`WRITEBACK_QUEUE_MAX`] requests and the rest are left to the kernel.
#[test]
fn a_stuck_writeback_thread_never_holds_up_a_write() {
    let dir = tempfile::tempdir().unwrap();
    let piece = 4096;
    let n = WRITEBACK_QUEUE_MAX + 36;
    let data: Vec<u8> = (0..n * piece).map(|i| (i % 241) as u8).collect();
    let path = dir.path().join("f");
    let file = File::create(&path).unwrap();
    let wb = Writeback::spawn().unwrap();
    let (release, held) = std::sync::mpsc::channel::<()>();
    let (running, started) = std::sync::mpsc::channel();
    assert!(wb.queue(WritebackReq::Call(Box::new(move || {
        let _ = running.send(());
        let _ = held.recv();
    }))));
    started
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the thread holds");
    let trim = CacheTrim::with(Some(wb.clone()));
    // The writes run beside the test, which waits a bounded time: a write
    // that waited for the held thread fails here instead of hanging.
    let (wrote, done) = std::sync::mpsc::channel();
    let writes = data.clone();
    std::thread::spawn(move || {
        for (i, chunk) in writes.chunks(piece).enumerate() {
            write_trimmed(&file, &trim, chunk, (i * piece) as u64);
        }
        let _ = wrote.send(());
    });
    done.recv_timeout(std::time::Duration::from_secs(10))
        .expect("every write returned while the writeback thread was held");
    assert_eq!(wb.skipped(), 36, "beyond the bound, left to the kernel");
    release.send(()).unwrap();
    settle(&wb);
    assert_eq!(fs::read(&path).unwrap(), data);
}

/// A small file's metadata (pieces of 1 KiB).
fn meta_of(data: &[u8]) -> FileMeta {
    let pieces: Vec<Sha1Hash> = data.chunks(1024).map(sha1).collect();
    FileMeta {
        name: p2p_proto::FileName::new("f.bin").unwrap(),
        size: data.len() as u64,
        piece_len: 1024,
        file_hash: file_root(data.len() as u64, 1024, &pieces),
        piece_hashes: pieces,
    }
}

/// A symbolic link planted as `<dest>.part` or `<dest>.part.pieces`
/// (pointing at a victim file) is refused with an error that names it;
/// the victim keeps every byte.
#[test]
fn planted_symlinks_are_refused_and_the_victim_is_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let meta = meta_of(&[7u8; 5000]);
    let victim = dir.path().join("victim");
    fs::write(&victim, b"precious bytes").unwrap();
    for suffix in [".part", ".part.pieces"] {
        let dest = dir.path().join(format!("d{}.bin", suffix.len()));
        let trap = PathBuf::from(format!("{}{suffix}", dest.display()));
        std::os::unix::fs::symlink(&victim, &trap).unwrap();
        let err = open_dest(&dest, &meta, WriteMode::PageCache, 16, false).unwrap_err();
        assert!(
            matches!(&err, DestError::NotRegular { path, kind: "a symbolic link" } if *path == trap),
            "{err:?}"
        );
        assert!(err.to_string().contains("refusing"), "{err}");
        assert_eq!(fs::read(&victim).unwrap(), b"precious bytes");
    }
}

/// A FIFO (opening it must not hang), a directory, a file with another
/// hard link: none is written into.
#[test]
fn part_files_that_are_not_plain_files_of_ours_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let meta = meta_of(&[7u8; 5000]);
    let d = rustix::fs::open(dir.path(), OFlags::DIRECTORY, Mode::empty()).unwrap();
    rustix::fs::mknodat(
        &d,
        "fifo.bin.part",
        rustix::fs::FileType::Fifo,
        Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let err = open_dest(
        &dir.path().join("fifo.bin"),
        &meta,
        WriteMode::PageCache,
        16,
        false,
    )
    .unwrap_err();
    assert!(
        matches!(err, DestError::NotRegular { kind: "a FIFO", .. }),
        "{err:?}"
    );
    fs::create_dir(dir.path().join("dir.bin.part")).unwrap();
    let err = open_dest(
        &dir.path().join("dir.bin"),
        &meta,
        WriteMode::PageCache,
        16,
        false,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            DestError::NotRegular {
                kind: "a directory",
                ..
            }
        ),
        "{err:?}"
    );
    let victim = dir.path().join("victim");
    fs::write(&victim, b"precious").unwrap();
    fs::hard_link(&victim, dir.path().join("hl.bin.part")).unwrap();
    let err = open_dest(
        &dir.path().join("hl.bin"),
        &meta,
        WriteMode::PageCache,
        16,
        false,
    )
    .unwrap_err();
    assert!(matches!(err, DestError::Linked { .. }), "{err:?}");
    assert_eq!(fs::read(&victim).unwrap(), b"precious");
    // Another user's file (only root can make one here).
    let theirs = dir.path().join("theirs.bin.part");
    fs::write(&theirs, b"planted").unwrap();
    if std::os::unix::fs::chown(&theirs, Some(54321), None).is_ok() {
        let err = open_dest(
            &dir.path().join("theirs.bin"),
            &meta,
            WriteMode::PageCache,
            16,
            false,
        )
        .unwrap_err();
        assert!(matches!(err, DestError::NotOwned { .. }), "{err:?}");
        assert_eq!(fs::read(&theirs).unwrap(), b"planted");
    } else {
        eprintln!("note: not root; another user's part file not tried");
    }
}

/// An existing destination is kept unless asked to replace it, both
/// when the download starts and when it is put in place; a part file
/// left by an earlier run (a regular file of ours) is resumed.
#[test]
fn an_existing_destination_is_replaced_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
    let meta = meta_of(&data);
    let dest = dir.path().join("f.bin");
    fs::write(&dest, b"mine").unwrap();
    let err = open_dest(&dest, &meta, WriteMode::PageCache, 16, false).unwrap_err();
    assert!(
        matches!(&err, DestError::Exists { path } if *path == dest),
        "{err:?}"
    );
    assert!(err.to_string().contains("--force"), "{err}");
    assert!(!part_path(&dest).exists(), "nothing created");
    // Started while the destination was free; someone puts a file
    // there before the end: it is kept, the download fails.
    fs::remove_file(&dest).unwrap();
    let (dl, _) = open_dest(&dest, &meta, WriteMode::PageCache, 16, false).unwrap();
    dl.file.write_all_at(&data, 0).unwrap();
    fs::write(&dest, b"mine").unwrap();
    assert!(matches!(dl.dir.finalize(), Err(DestError::Exists { .. })));
    assert_eq!(fs::read(&dest).unwrap(), b"mine");
    // Resumed (the part file is reopened) with --force: replaced.
    let (dl, _) = open_dest(&dest, &meta, WriteMode::PageCache, 16, true).unwrap();
    assert_eq!(
        fs::read(&dl.part).unwrap(),
        data,
        "the part file was resumed"
    );
    dl.dir.finalize().unwrap();
    assert_eq!(fs::read(&dest).unwrap(), data);
    assert!(!part_path(&dest).exists());
    assert!(!record_path(&part_path(&dest)).exists());
    // A directory is never replaced.
    fs::create_dir(dir.path().join("d.bin")).unwrap();
    let err = open_dest(
        &dir.path().join("d.bin"),
        &meta,
        WriteMode::PageCache,
        16,
        true,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            DestError::NotRegular {
                kind: "a directory",
                ..
            }
        ),
        "{err:?}"
    );
}

/// The part file gets its full length up front, and the free-space
/// rule holds at its bound: exactly the free space is enough, one
/// byte more is refused with a message saying what to do.
#[test]
fn space_is_checked_and_allocated_before_fetching() {
    let dir = tempfile::tempdir().unwrap();
    let meta = meta_of(&[1u8; 5000]);
    let (dl, _) = open_dest(
        &dir.path().join("f.bin"),
        &meta,
        WriteMode::PageCache,
        16,
        false,
    )
    .unwrap();
    assert_eq!(dl.file.metadata().unwrap().len(), 5000);
    assert!(check_space(dir.path(), 1000, 1000).is_ok());
    let err = check_space(dir.path(), 1001, 1000).unwrap_err();
    assert!(matches!(
        err,
        DestError::NoSpace {
            need: 1001,
            free: 1000,
            ..
        }
    ));
    assert!(err.to_string().contains("free some space"), "{err}");
    // A file larger than the file system's free space is refused
    // before anything is written.
    let vfs = rustix::fs::statvfs(dir.path()).unwrap();
    let free = (vfs.f_bavail as u64).saturating_mul(vfs.f_frsize as u64);
    let mut huge = meta.clone();
    huge.size = free + (1 << 30);
    let dest = dir.path().join("huge.bin");
    let err = open_dest(&dest, &huge, WriteMode::PageCache, 16, false).unwrap_err();
    assert!(matches!(err, DestError::NoSpace { .. }), "{err:?}");
    assert_eq!(fs::metadata(part_path(&dest)).unwrap().len(), 0);
}

fn node() -> ClientNode {
    use p2p_state::client::node::ClientConfig;
    use p2p_state::client::session::SessionConfig;
    let addr = "127.0.0.1:9".parse().unwrap();
    let cfg = ClientConfig {
        session: SessionConfig::new(vec![addr], 0),
        seeder: Default::default(),
        download: Default::default(),
        seeder_addr: None,
    };
    ClientNode::new(cfg, 1, p2p_state::Instant(0))
}

/// A shared file whose name holds a newline and a tab (what forged a
/// second record in the old line format) is saved and loaded back
/// with its exact path, and nothing else appears.
#[test]
fn share_table_round_trips_any_file_name() {
    let dir = tempfile::tempdir().unwrap();
    let data = vec![5u8; 3000];
    let path = dir.path().join("evil\ng1\trel.bin\t00");
    fs::write(&path, &data).unwrap();
    let mut meta = hash_file(&path, 1024).unwrap_or_else(|_| meta_of(&data));
    meta.name = p2p_proto::FileName::new("evil.bin").unwrap();
    let (mut a, paths) = (node(), Arc::new(Mutex::new(Paths::new())));
    let group = GroupName::new("g1").unwrap();
    assert!(a.add_local_share(ShareId::Upload(7), group.clone(), meta.clone()));
    paths
        .lock()
        .unwrap()
        .shares
        .insert(7, (path.clone(), group.clone()));
    save_shares(dir.path(), &shares_bytes(&a, &paths));
    let (mut b, paths) = (node(), Arc::new(Mutex::new(Paths::new())));
    assert_eq!(load_shares(dir.path(), &mut b, &paths), None);
    let loaded: Vec<_> = paths.lock().unwrap().shares.values().cloned().collect();
    assert_eq!(loaded, vec![(path, group)]);
    assert_eq!(b.shares().count(), 1);
}

/// The share table (where this client's files are) and its temporary
/// file are 0600 with the usual umask, even over a loose stale
/// temporary file.
#[test]
fn the_share_table_is_owner_only() {
    rustix::process::umask(Mode::from_raw_mode(0o022));
    let dir = tempfile::tempdir().unwrap();
    let (a, paths) = (node(), Arc::new(Mutex::new(Paths::new())));
    save_shares(dir.path(), &shares_bytes(&a, &paths));
    let mode = |n: &str| crate::private::mode_of(&dir.path().join(n)).unwrap();
    assert_eq!(mode(SHARES_FILE), 0o600);
    fs::remove_file(dir.path().join(SHARES_FILE)).unwrap();
    let tmp = dir.path().join(format!("{SHARES_FILE}.tmp"));
    fs::write(&tmp, b"stale").unwrap();
    fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    save_shares(dir.path(), &shares_bytes(&a, &paths));
    assert_eq!(mode(SHARES_FILE), 0o600);
}

/// A damaged table, and one in the old line format, are set aside as
/// `shares.damaged` and nothing in them is trusted.
#[test]
fn a_damaged_share_table_is_set_aside_whole() {
    let dir = tempfile::tempdir().unwrap();
    let data = vec![5u8; 3000];
    let path = dir.path().join("a.bin");
    fs::write(&path, &data).unwrap();
    let meta = hash_file(&path, 1024).unwrap();
    let (mut a, paths) = (node(), Arc::new(Mutex::new(Paths::new())));
    let group = GroupName::new("g1").unwrap();
    assert!(a.add_local_share(ShareId::Upload(7), group.clone(), meta.clone()));
    paths
        .lock()
        .unwrap()
        .shares
        .insert(7, (path.clone(), group));
    let mut good = shares_bytes(&a, &paths);
    let last = good.len() - 1;
    good[last] ^= 1;
    let hex: String = meta.to_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let old = format!("g1\t{}\t{hex}\n", path.display()).into_bytes();
    for table in [good, old] {
        fs::write(dir.path().join(SHARES_FILE), &table).unwrap();
        let (mut b, paths) = (node(), Arc::new(Mutex::new(Paths::new())));
        let aside = load_shares(dir.path(), &mut b, &paths).expect("set aside");
        assert_eq!(aside, dir.path().join("shares.damaged"));
        assert_eq!(fs::read(&aside).unwrap(), table, "kept as it was");
        assert!(!dir.path().join(SHARES_FILE).exists());
        assert!(paths.lock().unwrap().shares.is_empty());
        assert_eq!(b.shares().count(), 0);
    }
}

/// A share's file is opened off the loop with its length (which the
/// driver checks each piece to serve against); a file that is gone is an
/// error; a served piece's read-ahead reports nothing.
#[test]
fn a_share_is_opened_with_its_length_and_read_ahead_reports_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = file_of(dir.path(), 10_000);
    let open = |path: PathBuf| match run_job(Job::OpenShare { share: 3, path }) {
        JobDone::ShareOpened { share: 3, opened } => opened,
        other => panic!("{other:?}"),
    };
    let (file, len) = open(path).unwrap();
    assert_eq!(len, 10_000);
    assert!(open(dir.path().join("gone")).is_err());
    let job = Job::ReadAhead {
        file,
        offset: 5_000,
        len: 5_000,
    };
    assert!(matches!(run_job(job), JobDone::Nothing));
}

#[test]
fn progress_reaches_the_size_and_a_short_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = file_of(dir.path(), 10 * 1024 + 5);
    let max = AtomicU64::new(0);
    hash_file_with_progress(&path, 1024, &|n| {
        max.fetch_max(n, Ordering::Relaxed);
    })
    .unwrap();
    assert_eq!(max.load(Ordering::Relaxed), 10 * 1024 + 5);
    // The file is shorter than the size asked for: an error, not a
    // hash of zeros.
    let file = File::open(&path).unwrap();
    let r = hash_pieces(&file, 20 * 1024, 1024, 2, &|_| {});
    assert_eq!(r.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
}

/// Runs `spans` spans of direct writes through `gate` with `level` of the
/// download's writes queued or running all the time (each write that
/// ends is replaced at once), one write ending every millisecond: how
/// many writes went with `O_DIRECT` under `mode`.
fn direct_writes_at_level(gate: &DirectGate, mode: WriteMode, level: u32, spans: u32) -> u32 {
    direct_writes_every(gate, mode, level, spans * DIRECT_SPAN_WRITES, 1)
}

/// [`direct_writes_at_level`] with `writes` writes, one ending every
/// `step_ms` milliseconds.
fn direct_writes_every(
    gate: &DirectGate,
    mode: WriteMode,
    level: u32,
    writes: u32,
    step_ms: u32,
) -> u32 {
    let t0 = std::time::Instant::now();
    let at = |i: u32| t0 + std::time::Duration::from_millis(u64::from(i * step_ms));
    for _ in 0..level {
        gate.queued(at(0));
    }
    let mut direct = 0;
    for i in 1..=writes {
        let d = gate.direct(mode);
        direct += u32::from(d);
        // Each write ran on a worker for the step before it ended.
        gate.end(mode, d, at(i - 1), at(i));
        gate.queued(at(i));
    }
    direct
}

#[test]
fn auto_writes_stay_direct_while_the_device_keeps_up() {
    // Window 10: the bound is an average of 6 writes waiting.
    let gate = DirectGate::new(10);
    let n = direct_writes_at_level(&gate, WriteMode::Auto, 5, 3);
    assert_eq!(n, 3 * DIRECT_SPAN_WRITES, "every write went direct");
    assert!(!gate.is_off());
    assert!(gate.trims(WriteMode::Auto));
}

#[test]
fn auto_writes_move_to_the_page_cache_once_spans_in_a_row_fill_the_window() {
    // At the bound: 6 of 10 on average over the first two spans.
    let gate = DirectGate::new(10);
    let n = direct_writes_at_level(&gate, WriteMode::Auto, 6, 4);
    assert!(gate.is_off());
    assert_eq!(
        n,
        DIRECT_LAG_SPANS * DIRECT_SPAN_WRITES,
        "direct for the first spans only"
    );
    assert!(!gate.direct(WriteMode::Auto), "for good");
    assert!(!gate.trims(WriteMode::Auto), "writeback left to the kernel");
}

/// One span over the bound between spans under it is a hiccup: the
/// download stays direct. Levels 6 and 5 of 10 alternate, a span each.
#[test]
fn one_span_over_the_bound_is_not_enough() {
    assert_eq!(DIRECT_LAG_SPANS, 2);
    let gate = DirectGate::new(10);
    let t0 = std::time::Instant::now();
    let at = |i: u32| t0 + std::time::Duration::from_millis(u64::from(i));
    let (mut level, mut i) = (0, 0);
    for span_level in [6, 5, 6, 5, 6, 5] {
        // The level changes at the instant the last span closed.
        while level < span_level {
            gate.queued(at(i));
            level += 1;
        }
        while level > span_level {
            gate.end(WriteMode::Auto, false, at(i), at(i));
            level -= 1;
        }
        for _ in 0..DIRECT_SPAN_WRITES {
            i += 1;
            assert!(gate.direct(WriteMode::Auto), "moved at write {i}");
            gate.end(WriteMode::Auto, true, at(i - 1), at(i));
            gate.queued(at(i));
        }
    }
    assert!(!gate.is_off(), "never two spans in a row");
}

#[test]
fn forced_modes_never_change() {
    assert_eq!(WriteMode::default(), WriteMode::Auto);
    let direct = DirectGate::new(10);
    let n = direct_writes_at_level(&direct, WriteMode::Direct, 10, 2);
    assert_eq!(n, 2 * DIRECT_SPAN_WRITES);
    assert!(!direct.is_off());
    let cached = DirectGate::new(10);
    assert_eq!(
        direct_writes_at_level(&cached, WriteMode::PageCache, 1, 2),
        0
    );
}

/// Page-cache writes go in [`PAGE_CACHE_WRITE_CHUNK`]s: pieces one byte
/// short of a chunk, exactly one, one byte over and several land
/// byte-exact at offsets that are not multiples of a chunk.
#[test]
fn page_cache_writes_in_chunks_land_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let c = PAGE_CACHE_WRITE_CHUNK;
    let lens = [c - 1, c, c + 1, 3 * c + 5, 1];
    let total: usize = lens.iter().sum();
    let data: Vec<u8> = (0..total).map(|i| (i % 239) as u8).collect();
    let path = dir.path().join("f");
    let file = File::create(&path).unwrap();
    let mut at = 0;
    let mut spans = Vec::new();
    for len in lens {
        spans.push((at, len));
        at += len;
    }
    for &(at, len) in spans.iter().rev() {
        write_piece(
            &file,
            None,
            None,
            &Mutex::default(),
            &data[at..at + len],
            at as u64,
        )
        .unwrap();
    }
    assert_eq!(fs::read(&path).unwrap(), data);
}

/// A download the gate moved off `O_DIRECT` (its device is slower than
/// the network) leaves writeback to the kernel: [`run_job`] hands its
/// pieces to no [`CacheTrim`], where a download written through the page
/// cache by choice has every piece handed over.
#[test]
fn a_download_moved_to_the_page_cache_leaves_writeback_to_the_kernel() {
    let dir = tempfile::tempdir().unwrap();
    let (_, data) = file_of(dir.path(), 4096);
    let meta = meta_of(&data);
    let write = |part: &Arc<DlFile>| {
        let piece = Bytes::copy_from_slice(&data[..1024]);
        match run_job(Job::Write {
            dl: 1,
            part: part.clone(),
            index: 0,
            offset: 0,
            data: piece,
        }) {
            JobDone::Input(cn::Input::PieceWritten { index: 0, .. }) => {}
            other => panic!("the write failed: {other:?}"),
        }
        assert_eq!(fs::read(&part.part).unwrap()[..1024], data[..1024]);
    };
    let (slow, _) = open_dest(&dir.path().join("slow"), &meta, WriteMode::Auto, 10, false).unwrap();
    direct_writes_at_level(&slow.gate, WriteMode::Auto, 6, DIRECT_LAG_SPANS);
    assert!(slow.gate.is_off() && !slow.gate.trims(WriteMode::Auto));
    let slow = Arc::new(slow);
    write(&slow);
    assert_eq!(slow.trim.pending(), 0, "nothing handed to the trim");
    let (chosen, _) = open_dest(
        &dir.path().join("chosen"),
        &meta,
        WriteMode::PageCache,
        10,
        false,
    )
    .unwrap();
    assert!(chosen.gate.trims(WriteMode::PageCache));
    let chosen = Arc::new(chosen);
    write(&chosen);
    assert_eq!(chosen.trim.pending(), 1, "the piece was handed to the trim");
}

/// The quick test at its bounds (window 10: 8 writes waiting on
/// average over a stretch of at least 20 ms with at least 4 writes ended
/// in it). With a write ending every 5 ms, an average of 8 moves the
/// download after the first 4 writes; 7 does not (the 64-write test
/// moves it later, after two spans over its 6).
#[test]
fn a_full_window_moves_the_download_after_the_quick_stretch() {
    let step = DIRECT_QUICK_SPAN.as_millis() as u32 / DIRECT_QUICK_WRITES;
    let quick = DirectGate::new(10);
    let n = direct_writes_every(&quick, WriteMode::Auto, 8, 200, step);
    assert!(quick.is_off());
    assert_eq!(n, DIRECT_QUICK_WRITES, "moved after the first stretch");
    let below = DirectGate::new(10);
    let n = direct_writes_every(&below, WriteMode::Auto, 7, 200, step);
    assert!(below.is_off());
    assert_eq!(
        n,
        DIRECT_LAG_SPANS * DIRECT_SPAN_WRITES,
        "moved by the 64-write test only"
    );
}

/// The quick stretch needs both its length and its writes: writes ending
/// every millisecond close it after 20 ms (20 writes), writes ending every
/// 30 ms after 4 writes, however full the window.
#[test]
fn the_quick_stretch_needs_its_length_and_its_writes() {
    let fast = DirectGate::new(10);
    let n = direct_writes_every(&fast, WriteMode::Auto, 10, 200, 1);
    assert_eq!(n, DIRECT_QUICK_SPAN.as_millis() as u32);
    let slow = DirectGate::new(10);
    let n = direct_writes_every(&slow, WriteMode::Auto, 10, 200, 30);
    assert_eq!(n, DIRECT_QUICK_WRITES);
    // Forced modes ignore it as they ignore the 64-write test.
    let forced = DirectGate::new(10);
    assert_eq!(
        direct_writes_every(&forced, WriteMode::Direct, 10, 200, 30),
        200
    );
    assert!(!forced.is_off());
}

/// One direct write that took [`DIRECT_STALL`] moves the download at
/// once, whatever the level; one a millisecond shorter does not, nor one
/// after the first [`DIRECT_STALL_EARLY`] direct writes. Writes through
/// the page cache and forced modes are not judged.
#[test]
fn one_stalled_direct_write_moves_the_download() {
    let t0 = std::time::Instant::now();
    let ms = |n: u64| std::time::Duration::from_millis(n);
    let short = DirectGate::new(10);
    short.queued(t0);
    short.end(WriteMode::Auto, true, t0, t0 + DIRECT_STALL - ms(1));
    assert!(!short.is_off(), "just under the bound");
    assert!(short.direct(WriteMode::Auto));
    let stalled = DirectGate::new(10);
    stalled.queued(t0);
    stalled.end(WriteMode::Auto, true, t0, t0 + DIRECT_STALL);
    assert!(stalled.is_off(), "at the bound");
    assert!(!stalled.direct(WriteMode::Auto), "for good");
    assert!(
        !stalled.trims(WriteMode::Auto),
        "writeback left to the kernel"
    );
    // A write that waited in the queue for long but ran quickly is the
    // level tests' business, not a stall.
    let queued = DirectGate::new(10);
    queued.queued(t0);
    queued.end(WriteMode::Auto, true, t0 + ms(100), t0 + ms(101));
    assert!(!queued.is_off());
    // Only among the first DIRECT_STALL_EARLY direct writes: the last of
    // them counts, the one after does not.
    let stall_after = |quick_writes: u32| {
        let gate = DirectGate::new(10);
        for i in 0..quick_writes {
            let at = t0 + ms(u64::from(i));
            gate.queued(at);
            gate.end(WriteMode::Auto, true, at, at);
        }
        gate.queued(t0);
        gate.end(WriteMode::Auto, true, t0, t0 + DIRECT_STALL);
        gate.is_off()
    };
    assert!(stall_after(DIRECT_STALL_EARLY - 1), "the last early write");
    assert!(
        !stall_after(DIRECT_STALL_EARLY),
        "a stall after the first writes"
    );
    for (mode, direct) in [
        (WriteMode::Auto, false),
        (WriteMode::Direct, true),
        (WriteMode::PageCache, false),
    ] {
        let gate = DirectGate::new(10);
        gate.queued(t0);
        gate.end(mode, direct, t0, t0 + 10 * DIRECT_STALL);
        assert!(!gate.is_off(), "{mode:?}, direct {direct}");
    }
}

/// A download's page-cache writes run one at a time (`DlFile::cache_writer`):
/// a write job waits while another holds the download's writer, then lands.
#[test]
fn page_cache_writes_of_a_download_take_turns() {
    let dir = tempfile::tempdir().unwrap();
    let piece = 1024; // meta_of's pieces
    let (_, data) = file_of(dir.path(), 2 * piece);
    let meta = meta_of(&data);
    let dest = dir.path().join("t.bin");
    let (dl, _) = open_dest(&dest, &meta, WriteMode::PageCache, 16, false).unwrap();
    let dl = Arc::new(dl);
    let held = dl.cache_writer.lock().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let job = Job::Write {
        dl: 1,
        part: dl.clone(),
        index: 1,
        offset: piece as u64,
        data: Bytes::copy_from_slice(&data[piece..]),
    };
    thread::spawn(move || {
        let _ = tx.send(run_job(job));
    });
    let wait = std::time::Duration::from_millis(100);
    assert!(
        rx.recv_timeout(wait).is_err(),
        "a page-cache write ran while another writer held the download"
    );
    drop(held);
    match rx.recv_timeout(std::time::Duration::from_secs(10)) {
        Ok(JobDone::Input(cn::Input::PieceWritten { dl: 1, index: 1 })) => {}
        other => panic!("expected piece 1 written, got {other:?}"),
    }
    let on_disk = fs::read(&dl.part).unwrap();
    assert_eq!(&on_disk[piece..], &data[piece..]);
}
