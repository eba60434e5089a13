//! A snapshot as the replication layer sees it: where its log tail starts,
//! the epoch runs of the history it covers, the entries of that tail, then
//! the replicated state's own encoding.
//!
//! - The **epoch runs** travel with the state (to a catching-up backup in
//!   `SnapshotChunk`s, and to disk in the snapshot file) so that a tracker
//!   whose log starts at a snapshot still knows which epoch wrote each index
//!   before it. Without them, the fork point with a tracker whose log ends
//!   before the snapshot falls to 0, and that tracker would treat its whole
//!   history as divergent.
//! - The **tail** is the entries from `base` (the confirmed point: every
//!   tracker holds the log through it) to the snapshot's position, already
//!   applied in the state. A tracker that installs or restarts from the
//!   snapshot keeps them in its log: if another history wins later, they
//!   are still there to be re-submitted. Entries up to `base` can never be
//!   divergent.
//!
//! Layout: `base` ([`LogPos`]), `u32` run count (at most
//! [`EPOCH_STARTS_MAX`]) and the runs ([`EpochStart`], oldest first), `u32`
//! tail count (at most [`SNAPSHOT_TAIL_MAX`]) and the tail entries, then the
//! state bytes to the end.

use bytes::{BufMut, Bytes, BytesMut};

use p2p_proto::codec::put_list;
use p2p_proto::limits::EPOCH_STARTS_MAX;
use p2p_proto::{DecodeError, Entry, EpochStart, LogPos, Reader, Wire};

use super::{Log, Replicated};

/// Most tail entries a snapshot carries (see `ReplConfig::unconfirmed_keep_max`).
pub const SNAPSHOT_TAIL_MAX: usize = 1 << 20;

/// A decoded snapshot, the state still encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotParts {
    /// The position the tail follows on from.
    pub base: LogPos,
    /// Epoch runs of the history through the snapshot's position.
    pub history: Vec<EpochStart>,
    /// Entries after `base`, through the snapshot's position, in order.
    pub tail: Vec<Entry>,
    /// The replicated state's encoding.
    pub state: Bytes,
}

/// Wraps `state` (a [`super::Replicated::encode_snapshot`] output) with the
/// history it covers and its unconfirmed tail.
pub fn encode_snapshot(
    base: LogPos,
    history: &[EpochStart],
    tail: &[Entry],
    state: &[u8],
) -> Bytes {
    let history = &history[history.len().saturating_sub(EPOCH_STARTS_MAX)..];
    let mut w = BytesMut::with_capacity(20 + 16 * history.len() + state.len());
    base.encode(&mut w);
    put_list(&mut w, history);
    put_list(&mut w, tail);
    w.put_slice(state);
    w.freeze()
}

/// Splits [`encode_snapshot`]'s output into its parts. Refuses counts past
/// their limits or past the bytes present before allocating, and a tail
/// that does not follow on from `base` without gaps.
pub fn decode_snapshot(b: Bytes) -> Result<SnapshotParts, DecodeError> {
    let mut r = Reader::new(b);
    let base = LogPos::decode(&mut r)?;
    let history = r.list("snapshot epoch runs", EPOCH_STARTS_MAX)?;
    let tail: Vec<Entry> = r.list("snapshot tail", SNAPSHOT_TAIL_MAX)?;
    let mut last = base;
    for e in &tail {
        if e.pos.index != last.index + 1 || e.pos.epoch < last.epoch {
            return Err(DecodeError::Invalid {
                field: "snapshot tail",
                reason: "does not follow on from its base",
            });
        }
        last = e.pos;
    }
    let rest = r.remaining();
    let state = r.take(rest, "snapshot state")?;
    Ok(SnapshotParts {
        base,
        history,
        tail,
        state,
    })
}

/// A decoded snapshot: the state at `at`, with the log tail and the epoch
/// history that travel with it (see the layout above).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot<S> {
    pub at: LogPos,
    /// The tail follows on from here (every tracker holds the log so far).
    pub base: LogPos,
    pub history: Vec<EpochStart>,
    /// Entries `base+1..=at`, already applied in `state`.
    pub tail: Vec<Entry>,
    pub state: S,
}

impl<S: Replicated> Snapshot<S> {
    /// Decodes a snapshot taken at `at` ([`encode_snapshot`]
    /// layout); its tail must end at `at`.
    pub fn decode(at: LogPos, data: Bytes) -> Result<Self, DecodeError> {
        let p = decode_snapshot(data)?;
        let end = p.tail.last().map_or(p.base, |e| e.pos);
        if end != at {
            return Err(DecodeError::Invalid {
                field: "snapshot tail",
                reason: "does not end at the snapshot's position",
            });
        }
        Ok(Snapshot {
            at,
            base: p.base,
            history: p.history,
            tail: p.tail,
            state: S::decode_snapshot(p.state)?,
        })
    }

    /// The log this snapshot starts: its tail, after its history.
    pub(super) fn log(history: &[EpochStart], base: LogPos, tail: Vec<Entry>) -> Log {
        let mut log = Log::with_history(base, history);
        for e in tail {
            log.push(e);
        }
        log
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2p_proto::{Op, OpKind};

    fn entry(epoch: u64, index: u64) -> Entry {
        Entry {
            pos: LogPos { epoch, index },
            op: Op {
                at_ms: 0,
                origin: None,
                kind: OpKind::Noop,
            },
        }
    }

    #[test]
    fn parts_round_trip_and_bad_counts_or_tails_are_refused() {
        let runs = vec![
            EpochStart {
                epoch: 0,
                first_index: 0,
            },
            EpochStart {
                epoch: 7,
                first_index: 1,
            },
        ];
        let base = LogPos { epoch: 7, index: 3 };
        let tail = vec![entry(7, 4), entry(9, 5)];
        let b = encode_snapshot(base, &runs, &tail, b"state bytes");
        let p = decode_snapshot(b.clone()).unwrap();
        assert_eq!((p.base, &p.history, &p.tail), (base, &runs, &tail));
        assert_eq!(&p.state[..], b"state bytes");
        // A count past the limit, or past the bytes present, is refused
        // before anything is allocated.
        let mut huge = BytesMut::new();
        base.encode(&mut huge);
        huge.put_u32(u32::MAX);
        assert!(decode_snapshot(huge.freeze()).is_err());
        assert!(decode_snapshot(b.slice(..30)).is_err());
        // A tail with a gap, or going back in epochs, is refused.
        let gap = encode_snapshot(base, &runs, &[entry(7, 5)], b"");
        assert!(decode_snapshot(gap).is_err());
        let back = encode_snapshot(base, &runs, &[entry(6, 4)], b"");
        assert!(decode_snapshot(back).is_err());
        // Only the newest runs are kept.
        let many: Vec<EpochStart> = (0..EPOCH_STARTS_MAX as u64 + 5)
            .map(|i| EpochStart {
                epoch: i,
                first_index: i,
            })
            .collect();
        let p = decode_snapshot(encode_snapshot(base, &many, &[], b"")).unwrap();
        assert_eq!(p.history.len(), EPOCH_STARTS_MAX);
        assert_eq!(p.history[0].epoch, 5);
    }
}
