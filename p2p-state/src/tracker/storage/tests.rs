//! Log records and snapshot files: round trips, torn tails at every byte,
//! flipped bits, and random bytes.

use bytes::BytesMut;
use p2p_proto::{Entry, EpochStart, LogPos, Op, OpKind, SessionToken};
use proptest::prelude::*;

use super::*;
use crate::tracker::repl::snapshot::encode_snapshot;
use crate::tracker::state::testkit::{World, addr, group, meta};

fn entry(index: u64) -> Entry {
    let kind = match index % 3 {
        0 => OpKind::Noop,
        1 => OpKind::CreateGroup {
            owner: p2p_proto::UserName::new("alice").unwrap(),
            group: group(&format!("g{index}")),
        },
        _ => OpKind::RegisterSeeder {
            token: SessionToken([index as u8; 16]),
            addr: addr(index as u16),
        },
    };
    Entry {
        pos: LogPos { epoch: 1, index },
        op: Op {
            at_ms: index * 10,
            origin: None,
            kind,
        },
    }
}

fn log_of(n: u64) -> (Vec<Entry>, BytesMut, Vec<usize>) {
    let entries: Vec<_> = (1..=n).map(entry).collect();
    let mut buf = BytesMut::new();
    let mut ends = vec![];
    for e in &entries {
        encode_record(e, &mut buf);
        ends.push(buf.len());
    }
    (entries, buf, ends)
}

#[test]
fn records_round_trip() {
    let (entries, buf, _) = log_of(5);
    let scan = decode_log(&buf);
    assert_eq!(scan.entries, entries);
    assert_eq!(scan.valid_len, buf.len());
    assert_eq!(scan.torn, None);
    assert_eq!(decode_log(&[]).entries, vec![]);
}

#[test]
fn a_torn_tail_at_every_offset_recovers_to_the_last_whole_record() {
    let (entries, buf, ends) = log_of(4);
    let last_start = ends[2];
    assert_eq!(decode_log(&buf[..last_start]).torn, None);
    for cut in last_start + 1..buf.len() {
        let scan = decode_log(&buf[..cut]);
        assert_eq!(scan.entries, entries[..3], "cut at {cut}");
        assert_eq!(scan.valid_len, last_start);
        let torn = scan.torn.expect("a torn tail is reported");
        assert_eq!(torn.offset, last_start);
        let short = matches!(
            torn.reason,
            TornReason::ShortHeader { .. } | TornReason::ShortPayload { .. }
        );
        assert!(short, "cut at {cut}: {:?}", torn.reason);
    }
}

#[test]
fn a_flipped_bit_anywhere_in_a_record_is_detected() {
    let (entries, buf, ends) = log_of(3);
    let (start, end) = (ends[0], ends[1]);
    for byte in start..end {
        for bit in 0..8 {
            let mut b = buf.to_vec();
            b[byte] ^= 1 << bit;
            let scan = decode_log(&b);
            assert_eq!(scan.entries, entries[..1], "flip {byte}.{bit}");
            assert_eq!(scan.valid_len, start);
            assert!(scan.torn.is_some());
        }
    }
}

#[test]
fn an_oversized_or_zero_length_is_refused_before_reading() {
    let mut b = vec![0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];
    let scan = decode_log(&b);
    let reason = scan.torn.unwrap().reason;
    assert_eq!(
        reason,
        TornReason::BadLength {
            len: u32::MAX as usize
        }
    );
    b[..4].copy_from_slice(&0u32.to_be_bytes());
    assert_eq!(
        decode_log(&b).torn.unwrap().reason,
        TornReason::BadLength { len: 0 }
    );
}

#[test]
fn a_record_with_a_good_crc_but_bad_entry_is_refused() {
    let payload = [9u8; 12];
    let mut b = (payload.len() as u32).to_be_bytes().to_vec();
    b.extend_from_slice(&crc32fast::hash(&payload).to_be_bytes());
    b.extend_from_slice(&payload);
    let scan = decode_log(&b);
    assert!(matches!(scan.torn.unwrap().reason, TornReason::BadEntry(_)));
    assert_eq!(scan.valid_len, 0);
}

/// A state with users, sessions, groups, files, sources and outcomes.
fn busy_state() -> TrackerState {
    let mut w = World::new();
    let mut a = w.login_new("alice", 1);
    let mut b = w.login_new("bob", 2);
    w.group_with("g", &mut a, &mut [&mut b]);
    let up = p2p_proto::Request::UploadFile {
        group: group("g"),
        meta: meta("f", 3, 1),
    };
    w.run(&mut a, up).unwrap();
    w.run(&mut a, p2p_proto::Request::RegisterSeeder { addr: addr(9) })
        .unwrap();
    w.st
}

#[test]
fn snapshot_files_round_trip() {
    let st = busy_state();
    let at = LogPos {
        epoch: 3,
        index: 42,
    };
    let history = vec![
        EpochStart {
            epoch: 0,
            first_index: 0,
        },
        EpochStart {
            epoch: 3,
            first_index: 1,
        },
    ];
    let base = LogPos {
        epoch: 3,
        index: 40,
    };
    let tail = [41, 42].map(|i| Entry {
        pos: LogPos { epoch: 3, index: i },
        ..entry(i)
    });
    let data = encode_snapshot(base, &history, &tail, &st.encode_snapshot());
    let file = encode_snapshot_file(at, 5, &data);
    let got = decode_snapshot_file(&file).unwrap();
    assert_eq!((got.at, got.epoch), (at, 5));
    let s = got.snapshot;
    assert_eq!(
        (s.base, &s.history, &s.tail[..]),
        (base, &history, &tail[..])
    );
    assert_eq!(s.state, st);
    assert_eq!(s.state.digest(), st.digest());
    // A tail that does not end at the snapshot's position is refused.
    let short = encode_snapshot(base, &history, &tail[..1], &st.encode_snapshot());
    let file = encode_snapshot_file(at, 5, &short);
    assert!(matches!(
        decode_snapshot_file(&file),
        Err(SnapshotError::State(_))
    ));
}

#[test]
fn snapshot_file_damage_is_detected() {
    let st = busy_state();
    let state = encode_snapshot(LogPos::default(), &[], &[], &st.encode_snapshot());
    let file = encode_snapshot_file(LogPos::default(), 1, &state).to_vec();
    for cut in 0..file.len() {
        assert!(decode_snapshot_file(&file[..cut]).is_err(), "cut at {cut}");
    }
    for byte in 0..file.len() {
        let mut b = file.clone();
        b[byte] ^= 0x10;
        assert!(decode_snapshot_file(&b).is_err(), "flip at {byte}");
    }
    let mut b = file.clone();
    b[0] = b'x';
    assert_eq!(decode_snapshot_file(&b), Err(SnapshotError::BadMagic));
    let mut b = file.clone();
    b[9] = 9;
    assert_eq!(
        decode_snapshot_file(&b),
        Err(SnapshotError::BadVersion { found: 9 })
    );
    let mut b = file;
    b.push(0);
    assert_eq!(decode_snapshot_file(&b), Err(SnapshotError::BadLength));
}

#[test]
fn resubmit_files_round_trip_and_a_bad_record_ends_them() {
    let entries: Vec<Entry> = (1..=3).map(entry).collect();
    let file = encode_resubmit_file(&entries);
    let scan = decode_resubmit_file(&file);
    assert_eq!(scan.entries, entries);
    assert!(scan.torn.is_none());
    assert!(
        decode_resubmit_file(&encode_resubmit_file(&[]))
            .entries
            .is_empty()
    );
    let mut bad = file.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let scan = decode_resubmit_file(&bad);
    assert_eq!(scan.entries, entries[..2]);
    assert!(scan.torn.is_some());
}

proptest! {
    #[test]
    fn random_bytes_never_panic_the_log_reader(b in prop::collection::vec(any::<u8>(), 0..600)) {
        let scan = decode_log(&b);
        prop_assert!(scan.valid_len <= b.len());
        prop_assert_eq!(scan.torn.is_none(), scan.valid_len == b.len());
    }

    #[test]
    fn random_bytes_never_panic_the_snapshot_readers(b in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = decode_snapshot_file(&b);
        let _ = TrackerState::decode_snapshot(bytes::Bytes::from(b));
    }

    #[test]
    fn random_tails_after_good_records_are_cut(
        n in 1u64..6,
        tail in prop::collection::vec(any::<u8>(), 1..64),
    ) {
        let (entries, mut buf, _) = log_of(n);
        let good = buf.len();
        buf.extend_from_slice(&tail);
        let scan = decode_log(&buf);
        prop_assert_eq!(&scan.entries[..n as usize], &entries[..]);
        prop_assert!(scan.valid_len >= good);
    }
}
