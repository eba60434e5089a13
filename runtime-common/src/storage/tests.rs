//! The data directory on a real file system: appends and reopen, torn
//! tails, replaced suffixes, snapshots with and without a log reset, a crash
//! between the snapshot and log renames, a corrupt snapshot, and the
//! storage thread's group commit; the modes of the directory and its files.

use super::*;
use p2p_proto::{Op, OpKind};
use p2p_state::tracker::state::TrackerState;
use std::os::unix::fs::PermissionsExt;
use std::sync::mpsc;
use std::time::Duration;

fn entry(epoch: u64, index: u64) -> Entry {
    Entry {
        pos: LogPos { epoch, index },
        op: Op {
            at_ms: 1_700_000_000_000 + index,
            origin: None,
            kind: OpKind::Noop,
        },
    }
}

fn entries(epoch: u64, r: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
    r.map(|i| entry(epoch, i)).collect()
}

fn indices(v: &[Entry]) -> Vec<u64> {
    v.iter().map(|e| e.pos.index).collect()
}

/// An empty state's snapshot at `at` (no log tail).
fn state_bytes(at: LogPos) -> Bytes {
    p2p_state::tracker::repl::snapshot::encode_snapshot(
        at,
        &[],
        &[],
        &TrackerState::default().encode_snapshot(),
    )
}

#[test]
fn appends_survive_a_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut d, rec) = DataDir::open(tmp.path()).unwrap();
    assert!(rec.snapshot.is_none() && rec.entries.is_empty());
    d.append(1, &entries(1, 1..=3)).unwrap();
    d.append(4, &entries(1, 4..=5)).unwrap();
    d.sync().unwrap();
    assert_eq!(d.last_index(), 5);
    drop(d);
    let (d, rec) = DataDir::open(tmp.path()).unwrap();
    assert_eq!(rec.entries, entries(1, 1..=5));
    assert!(rec.torn.is_none() && rec.dropped == 0);
    assert_eq!(d.last_index(), 5);
}

#[test]
fn a_torn_tail_is_cut_off_and_appends_go_on_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut d, _) = DataDir::open(tmp.path()).unwrap();
    d.append(1, &entries(1, 1..=3)).unwrap();
    d.sync().unwrap();
    drop(d);
    let log = tmp.path().join("log");
    let whole = fs::metadata(&log).unwrap().len();
    let mut f = OpenOptions::new().append(true).open(&log).unwrap();
    f.write_all(&[0, 0, 0, 40, 1, 2, 3, 4, 5]).unwrap();
    drop(f);
    let (mut d, rec) = DataDir::open(tmp.path()).unwrap();
    assert_eq!(indices(&rec.entries), [1, 2, 3]);
    assert_eq!(rec.torn.as_ref().unwrap().offset as u64, whole);
    assert_eq!(fs::metadata(&log).unwrap().len(), whole, "file truncated");
    d.append(4, &[entry(1, 4)]).unwrap();
    d.sync().unwrap();
    drop(d);
    let (_, rec) = DataDir::open(tmp.path()).unwrap();
    assert_eq!(indices(&rec.entries), [1, 2, 3, 4]);
    assert!(rec.torn.is_none());
}

#[test]
fn persist_from_an_earlier_index_replaces_the_suffix() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut d, _) = DataDir::open(tmp.path()).unwrap();
    d.append(1, &entries(1, 1..=5)).unwrap();
    d.append(3, &entries(2, 3..=4)).unwrap();
    d.sync().unwrap();
    assert_eq!(d.last_index(), 4);
    drop(d);
    let (_, rec) = DataDir::open(tmp.path()).unwrap();
    let mut want = entries(1, 1..=2);
    want.extend(entries(2, 3..=4));
    assert_eq!(rec.entries, want);
}

#[test]
fn a_compacting_snapshot_keeps_the_records_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut d, _) = DataDir::open(tmp.path()).unwrap();
    d.append(1, &entries(1, 1..=5)).unwrap();
    let at = LogPos { epoch: 1, index: 3 };
    d.write_snapshot(at, &state_bytes(at), false).unwrap();
    d.append(6, &[entry(1, 6)]).unwrap();
    d.sync().unwrap();
    drop(d);
    let (mut d, rec) = DataDir::open(tmp.path()).unwrap();
    assert_eq!(rec.snapshot, Some((at, state_bytes(at))));
    assert_eq!(indices(&rec.entries), [4, 5, 6]);
    assert_eq!(rec.dropped, 0);
    // Offsets were rebased: replacing from 5 keeps 4.
    d.append(5, &[entry(2, 5)]).unwrap();
    d.sync().unwrap();
    drop(d);
    let (_, rec) = DataDir::open(tmp.path()).unwrap();
    assert_eq!(rec.entries, vec![entry(1, 4), entry(2, 5)]);
}

#[test]
fn a_snapshot_from_the_primary_resets_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut d, _) = DataDir::open(tmp.path()).unwrap();
    d.append(1, &entries(1, 1..=5)).unwrap();
    let at = LogPos {
        epoch: 3,
        index: 10,
    };
    d.write_snapshot(at, &state_bytes(at), true).unwrap();
    assert_eq!(d.last_index(), 10);
    d.append(11, &[entry(3, 11)]).unwrap();
    d.sync().unwrap();
    drop(d);
    let (_, rec) = DataDir::open(tmp.path()).unwrap();
    assert_eq!(rec.snapshot.unwrap().0, at);
    assert_eq!(rec.entries, vec![entry(3, 11)]);
}

#[test]
fn a_crash_between_snapshot_and_log_rename_skips_covered_records() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut d, _) = DataDir::open(tmp.path()).unwrap();
    d.append(1, &entries(1, 1..=5)).unwrap();
    d.sync().unwrap();
    drop(d);
    // As if the snapshot rename happened and the log rewrite did not.
    let at = LogPos { epoch: 1, index: 3 };
    fs::write(
        tmp.path().join("snapshot"),
        encode_snapshot_file(at, 1, &state_bytes(at)),
    )
    .unwrap();
    let (mut d, rec) = DataDir::open(tmp.path()).unwrap();
    assert_eq!(indices(&rec.entries), [4, 5]);
    assert_eq!(rec.dropped, 3);
    assert!(tmp.path().join("log.bad").exists());
    d.append(6, &[entry(1, 6)]).unwrap();
    d.sync().unwrap();
    drop(d);
    let (_, rec) = DataDir::open(tmp.path()).unwrap();
    assert_eq!(indices(&rec.entries), [4, 5, 6]);
    assert_eq!(rec.dropped, 0);
}

#[test]
fn a_gap_or_epoch_going_back_ends_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut d, _) = DataDir::open(tmp.path()).unwrap();
    d.append(1, &entries(2, 1..=2)).unwrap();
    d.append(3, &[entry(1, 3)]).unwrap();
    d.sync().unwrap();
    drop(d);
    let (_, rec) = DataDir::open(tmp.path()).unwrap();
    assert_eq!(indices(&rec.entries), [1, 2]);
    assert_eq!(rec.dropped, 1);
}

#[test]
fn a_corrupt_snapshot_is_set_aside() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut d, _) = DataDir::open(tmp.path()).unwrap();
    d.append(1, &entries(1, 1..=2)).unwrap();
    d.sync().unwrap();
    drop(d);
    fs::write(
        tmp.path().join("snapshot"),
        b"not a snapshot at all, no no no no no",
    )
    .unwrap();
    let (_, rec) = DataDir::open(tmp.path()).unwrap();
    assert!(rec.bad_snapshot.is_some());
    assert!(rec.snapshot.is_none());
    assert!(tmp.path().join("snapshot.bad").exists());
    assert!(!tmp.path().join("snapshot").exists());
    assert_eq!(indices(&rec.entries), [1, 2]);
}

#[test]
fn the_storage_thread_batches_and_reports_the_highest_index() {
    let tmp = tempfile::tempdir().unwrap();
    let (d, _) = DataDir::open(tmp.path()).unwrap();
    let (tx, rx) = mpsc::channel();
    let (ptx, prx) = mpsc::channel();
    // Queue everything before the thread starts: one batch, one report.
    for i in 1..=50 {
        tx.send(StorageCmd::Persist(Persist::Log {
            from_index: i,
            entries: vec![entry(1, i)],
        }))
        .unwrap();
    }
    let (ack_tx, ack_rx) = mpsc::channel();
    tx.send(StorageCmd::Flush(ack_tx)).unwrap();
    let t = std::thread::spawn(move || run_storage(d, rx, move |i| ptx.send(i).unwrap()));
    ack_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(prx.recv_timeout(Duration::from_secs(5)).unwrap(), 50);
    assert!(prx.try_recv().is_err(), "one report for the batch");
    drop(tx);
    t.join().unwrap().unwrap();
    let (_, rec) = DataDir::open(tmp.path()).unwrap();
    assert_eq!(rec.entries.len(), 50);
}

/// Every file's mode in `dir` (none may be missing from the check).
fn modes(dir: &Path) -> Vec<(String, u32)> {
    let mut v: Vec<(String, u32)> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            (name, private::mode_of(&e.path()).unwrap())
        })
        .collect();
    v.sort();
    v
}

/// Fills `dir` with every kind of file the tracker keeps: log, snapshot,
/// re-submission queue, and a set-aside `log.bad`.
fn every_file(dir: &Path) {
    let (mut d, _) = DataDir::open(dir).unwrap();
    d.append(1, &entries(1, 1..=5)).unwrap();
    d.sync().unwrap();
    let at = LogPos { epoch: 1, index: 3 };
    d.write_snapshot(at, &state_bytes(at), false).unwrap();
    d.write_resubmit(&entries(1, 6..=6)).unwrap();
    drop(d);
    // A log that does not follow on from the snapshot: set aside.
    private::write(&dir.join("log"), &{
        let mut b = BytesMut::new();
        for e in entries(1, 1..=5) {
            encode_record(&e, &mut b);
        }
        b
    })
    .unwrap();
    let (_, rec) = DataDir::open(dir).unwrap();
    assert!(rec.dropped > 0 && dir.join("log.bad").exists());
}

/// The files hold password hashes, tokens and seeder keys: with the usual
/// umask (022, which leaves files 0644), the directory is still 0700 and
/// every file in it 0600, those made by a rename from a temporary file
/// included.
#[test]
fn a_new_data_dir_and_every_file_in_it_are_owner_only() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tracker-1");
    every_file(&dir);
    assert_eq!(private::mode_of(&dir).unwrap(), 0o700);
    let m = modes(&dir);
    let names: Vec<&str> = m.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["log", "log.bad", "resubmit", "snapshot"]);
    for (name, mode) in m {
        assert_eq!(mode, 0o600, "{name}");
    }
}

/// A directory left 0755 with 0644 files (by an older version, or by
/// hand) is tightened when the tracker opens it, and still recovers.
#[test]
fn loose_modes_found_at_start_are_tightened() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    every_file(dir);
    for (name, _) in modes(dir) {
        fs::set_permissions(dir.join(name), fs::Permissions::from_mode(0o644)).unwrap();
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    let (d, rec) = DataDir::open(dir).unwrap();
    assert_eq!(private::mode_of(dir).unwrap(), 0o700);
    for (name, mode) in modes(dir) {
        assert_eq!(mode, 0o600, "{name}");
    }
    assert_eq!(d.last_index(), 5);
    assert_eq!(indices(&rec.entries), [4, 5]);
    assert_eq!(indices(&rec.resubmit), [6]);
}

/// A temporary file that others could read (left there while the tracker
/// runs) is made 0600 before the secrets go in, so the renamed file is too.
#[test]
fn a_loose_temporary_file_is_tightened_before_it_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut d, _) = DataDir::open(tmp.path()).unwrap();
    d.append(1, &entries(1, 1..=3)).unwrap();
    for t in ["snapshot.tmp", "log.tmp", "resubmit.tmp"] {
        fs::write(tmp.path().join(t), b"stale").unwrap();
        fs::set_permissions(tmp.path().join(t), fs::Permissions::from_mode(0o666)).unwrap();
    }
    let at = LogPos { epoch: 1, index: 2 };
    d.write_snapshot(at, &state_bytes(at), false).unwrap();
    d.write_resubmit(&entries(1, 4..=4)).unwrap();
    for f in ["snapshot", "log", "resubmit"] {
        assert_eq!(private::mode_of(&tmp.path().join(f)).unwrap(), 0o600, "{f}");
    }
}
