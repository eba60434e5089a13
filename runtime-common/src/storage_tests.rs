//! The data directory on a real file system: appends and reopen, torn
//! tails, replaced suffixes, snapshots with and without a log reset, a crash
//! between the snapshot and log renames, a corrupt snapshot, and the
//! storage thread's group commit.

use super::*;
use p2p_proto::{Op, OpKind};
use p2p_state::tracker::state::TrackerState;
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
        tx.send(StorageCmd::Persist {
            from_index: i,
            entries: vec![entry(1, i)],
        })
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
