//! What a tracker keeps on disk, as pure encode/decode (the driver does the
//! file I/O and fsync), and the one declaration of what the tracker asks
//! its storage to make durable ([`Persist`]) with the in-memory data
//! directory that tests and the simulation execute it on ([`OnDisk`], as
//! raft-rs's `MemStorage`).
//!
//! **Op log**: a sequence of records, each
//! `[u32 BE payload length][u32 BE CRC-32 of payload][payload]`, the payload
//! an [`Entry`] in its wire encoding. [`decode_log`] reads records until the
//! first one that is short (torn by a crash mid-write), too long, fails its
//! CRC or does not decode: that record and everything after it are the torn
//! tail, reported and never applied; the driver truncates the file to
//! [`LogScan::valid_len`]. A record's length is checked against
//! [`RECORD_LEN_MAX`] and the bytes present before anything is allocated.
//!
//! **Snapshot file**: `magic "p2psnap\0"`, `u16 version`, the [`LogPos`] the
//! snapshot covers, the epoch, `u64` state length, `u32` CRC-32 of all the
//! bytes before it and of the state, then the state: the epoch runs of the
//! history it covers and [`TrackerState::encode_snapshot`], in the layout of
//! [`crate::tracker::repl::snapshot`]. Any mismatch is an error: a tracker
//! falls back to an older snapshot or a full catch-up, never to a half state.
//!
//! **Re-submission file**: the divergent entries whose client ops still wait
//! for the primary's answer, as log records ([`encode_resubmit_file`]). It
//! is replaced whole (write, fsync, rename), so it is never torn; a bad
//! record all the same ends it, like the log.

use bytes::{BufMut, Bytes, BytesMut};
use p2p_proto::limits::FRAME_LEN_MAX;
use p2p_proto::{DecodeError, Entry, LogPos, Wire};

use super::repl::Snapshot;
use super::state::TrackerState;

/// Bytes before each log record's payload (length, CRC).
pub const RECORD_HEADER_LEN: usize = 8;
/// Longest record payload: an entry must fit one replication frame.
pub const RECORD_LEN_MAX: usize = FRAME_LEN_MAX as usize;

/// Appends `entry` to `out` as one log record.
pub fn encode_record(entry: &Entry, out: &mut BytesMut) {
    let at = out.len();
    out.put_bytes(0, RECORD_HEADER_LEN);
    entry.encode(out);
    let payload = &out[at + RECORD_HEADER_LEN..];
    let len = payload.len();
    assert!(
        len <= RECORD_LEN_MAX,
        "log entry of {len} bytes is too long"
    );
    let crc = crc32fast::hash(payload);
    out[at..at + 4].copy_from_slice(&(len as u32).to_be_bytes());
    out[at + 4..at + 8].copy_from_slice(&crc.to_be_bytes());
}

/// Why the log stops where it does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TornReason {
    #[error("record header cut short ({have} of 8 bytes)")]
    ShortHeader { have: usize },
    #[error("record payload cut short ({have} of {need} bytes)")]
    ShortPayload { need: usize, have: usize },
    #[error("record length {len} is zero or above the limit")]
    BadLength { len: usize },
    #[error("record checksum does not match")]
    BadCrc,
    #[error("record does not decode: {0}")]
    BadEntry(DecodeError),
}

/// Where and why the readable log ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// Byte offset of the first record not read (equals `valid_len`).
    pub offset: usize,
    pub reason: TornReason,
}

/// What [`decode_log`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogScan {
    /// Every whole, checked record, in order.
    pub entries: Vec<Entry>,
    /// Bytes those records take: truncate the file here.
    pub valid_len: usize,
    /// Set when bytes follow the last whole record.
    pub torn: Option<TornTail>,
}

/// The re-submission file holding `entries`.
pub fn encode_resubmit_file(entries: &[Entry]) -> Bytes {
    let mut w = BytesMut::new();
    for e in entries {
        encode_record(e, &mut w);
    }
    w.freeze()
}

/// Reads a re-submission file (what [`decode_log`] reads of it).
pub fn decode_resubmit_file(buf: &[u8]) -> LogScan {
    decode_log(buf)
}

/// Reads the log records in `buf`, stopping at the first bad one.
pub fn decode_log(buf: &[u8]) -> LogScan {
    let mut entries = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        match decode_record(&buf[pos..]) {
            Ok((entry, used)) => {
                entries.push(entry);
                pos += used;
            }
            Err(reason) => {
                let torn = Some(TornTail {
                    offset: pos,
                    reason,
                });
                return LogScan {
                    entries,
                    valid_len: pos,
                    torn,
                };
            }
        }
    }
    LogScan {
        entries,
        valid_len: pos,
        torn: None,
    }
}

/// Decodes the record at the start of `buf`: the entry and the bytes used.
pub fn decode_record(buf: &[u8]) -> Result<(Entry, usize), TornReason> {
    if buf.len() < RECORD_HEADER_LEN {
        return Err(TornReason::ShortHeader { have: buf.len() });
    }
    let len = u32::from_be_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_be_bytes(buf[4..8].try_into().expect("4 bytes"));
    if len == 0 || len > RECORD_LEN_MAX {
        return Err(TornReason::BadLength { len });
    }
    let have = buf.len() - RECORD_HEADER_LEN;
    if have < len {
        return Err(TornReason::ShortPayload { need: len, have });
    }
    let payload = &buf[RECORD_HEADER_LEN..RECORD_HEADER_LEN + len];
    if crc32fast::hash(payload) != crc {
        return Err(TornReason::BadCrc);
    }
    let entry = Entry::from_bytes(Bytes::copy_from_slice(payload)).map_err(TornReason::BadEntry)?;
    Ok((entry, RECORD_HEADER_LEN + len))
}

/// First bytes of every snapshot file.
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"p2psnap\0";
/// Version of the snapshot file layout.
pub const SNAPSHOT_VERSION: u16 = 3;
/// Bytes before the state: magic, version, position, epoch, length, CRC.
pub const SNAPSHOT_HEADER_LEN: usize = 8 + 2 + 16 + 8 + 8 + 4;

/// A decoded snapshot file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    /// The last log entry the state includes.
    pub at: LogPos,
    /// The tracker's epoch when the snapshot was taken.
    pub epoch: u64,
    /// The state, with the history and log tail stored with it.
    pub snapshot: Snapshot<TrackerState>,
}

/// Why a snapshot file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot file is shorter than its header")]
    Short,
    #[error("not a snapshot file (bad magic)")]
    BadMagic,
    #[error("snapshot file version {found} is not supported (this build reads {SNAPSHOT_VERSION})")]
    BadVersion { found: u16 },
    #[error("snapshot file length does not match its header")]
    BadLength,
    #[error("snapshot file checksum does not match")]
    BadCrc,
    #[error("snapshot state does not decode: {0}")]
    State(DecodeError),
}

/// A snapshot file holding `state` (a
/// [`crate::tracker::repl::snapshot::encode_snapshot`] output) taken at `at`
/// in `epoch`.
pub fn encode_snapshot_file(at: LogPos, epoch: u64, state: &[u8]) -> Bytes {
    let mut w = BytesMut::with_capacity(SNAPSHOT_HEADER_LEN + state.len());
    w.put_slice(SNAPSHOT_MAGIC);
    w.put_u16(SNAPSHOT_VERSION);
    at.encode(&mut w);
    w.put_u64(epoch);
    w.put_u64(state.len() as u64);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&w);
    crc.update(state);
    w.put_u32(crc.finalize());
    w.put_slice(state);
    w.freeze()
}

/// Reads a snapshot file, checking magic, version, length and CRC before
/// decoding the state.
pub fn decode_snapshot_file(buf: &[u8]) -> Result<SnapshotFile, SnapshotError> {
    if buf.len() < SNAPSHOT_HEADER_LEN {
        return Err(SnapshotError::Short);
    }
    let (head, state) = buf.split_at(SNAPSHOT_HEADER_LEN);
    if &head[..8] != SNAPSHOT_MAGIC {
        return Err(SnapshotError::BadMagic);
    }
    let mut r = p2p_proto::Reader::new(Bytes::copy_from_slice(&head[8..]));
    let header_err = |_| SnapshotError::Short;
    let version = r.u16("snapshot version").map_err(header_err)?;
    if version != SNAPSHOT_VERSION {
        return Err(SnapshotError::BadVersion { found: version });
    }
    let at = LogPos::decode(&mut r).map_err(header_err)?;
    let epoch = r.u64("epoch").map_err(header_err)?;
    let len = r.u64("state length").map_err(header_err)?;
    let crc = r.u32("crc").map_err(header_err)?;
    if len != state.len() as u64 {
        return Err(SnapshotError::BadLength);
    }
    let mut h = crc32fast::Hasher::new();
    h.update(&head[..SNAPSHOT_HEADER_LEN - 4]);
    h.update(state);
    if h.finalize() != crc {
        return Err(SnapshotError::BadCrc);
    }
    let snapshot =
        Snapshot::decode(at, Bytes::copy_from_slice(state)).map_err(SnapshotError::State)?;
    Ok(SnapshotFile {
        at,
        epoch,
        snapshot,
    })
}

/// One durable write the replication machine asks for. The tracker node
/// passes it on unchanged ([`crate::tracker::node::Output::Persist`]); the
/// driver's storage loop (`runtime-common/src/storage/`) executes these in
/// the order they were emitted and reports the appends' completion with
/// `Persisted`.
#[derive(Debug, Clone, PartialEq)]
pub enum Persist {
    /// Make the log end at `from_index - 1`, then append `entries` (none:
    /// a barrier whose completion says everything before it is durable).
    Log {
        from_index: u64,
        entries: Vec<Entry>,
    },
    /// Store a snapshot of the state at `at` (`data` in the layout of
    /// [`crate::tracker::repl::snapshot::encode_snapshot`]). `reset_log`:
    /// the whole local log is replaced (a snapshot from the primary);
    /// otherwise only records up to `at` may be dropped (local compaction).
    Snapshot {
        at: LogPos,
        data: Bytes,
        reset_log: bool,
    },
    /// Replace the stored set of ops waiting for re-submission with
    /// `entries` (the divergent entries they came in). In order with the
    /// other writes: it is durable before the log truncation that follows.
    Resubmit { entries: Vec<Entry> },
}

/// What a tracker's data directory holds, in memory: what
/// [`crate::tracker::node::Tracker::recover`] starts from, and the disk that
/// unit tests and the simulation execute [`Persist`] on.
#[derive(Debug, Clone, Default)]
pub struct OnDisk {
    /// The last snapshot: its position and its bytes (the layout of
    /// [`crate::tracker::repl::snapshot::encode_snapshot`]).
    pub snapshot: Option<(LogPos, Bytes)>,
    /// The log records after the snapshot, in order.
    pub entries: Vec<Entry>,
    /// Divergent entries still waiting for re-submission.
    pub resubmit: Vec<Entry>,
}

impl OnDisk {
    /// Executes `write`, as the driver's storage does. For an append, the
    /// index to report as `Persisted` (the last one it wrote, or
    /// `from_index - 1` for a barrier); `None` for the other writes.
    pub fn apply(&mut self, write: Persist) -> Option<u64> {
        match write {
            Persist::Log {
                from_index,
                entries,
            } => {
                self.entries.retain(|e| e.pos.index < from_index);
                let last = entries
                    .last()
                    .map_or(from_index.saturating_sub(1), |e| e.pos.index);
                self.entries.extend(entries);
                Some(last)
            }
            Persist::Snapshot {
                at,
                data,
                reset_log,
            } => {
                self.snapshot = Some((at, data));
                if reset_log {
                    self.entries.clear();
                } else {
                    self.entries.retain(|e| e.pos.index > at.index);
                }
                None
            }
            Persist::Resubmit { entries } => {
                self.resubmit = entries;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests;
