//! Tracker ↔ tracker replication ([`ReplMsg`]) and the log's entries
//! ([`Entry`], [`EpochStart`]). The protocol is described in
//! `docs/REPLICATION.md`; the machine that speaks it lives in
//! `p2p-state::tracker`. The replicated op itself ([`Op`], [`OpKind`],
//! [`Origin`]) and its codec are in `op.rs`.

mod op;

pub use op::{Op, OpKind, Origin};

use bytes::{BufMut, Bytes, BytesMut};

use super::client::{ClientRequest, Outcome};
use super::{Text, tag, unknown};
use crate::codec::{DecodeError, Reader, Wire, put_blob, put_list, put_option};
use crate::limits::{APPEND_ENTRIES_MAX, EPOCH_STARTS_MAX, SNAPSHOT_CHUNK_LEN_MAX};
use crate::types::*;

/// One entry of the replicated log.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Entry {
    pub pos: LogPos,
    pub op: Op,
}

impl Wire for Entry {
    const MIN_LEN: usize = LogPos::MIN_LEN + Op::MIN_LEN;
    fn encode(&self, w: &mut BytesMut) {
        self.pos.encode(w);
        self.op.encode(w);
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Entry {
            pos: Wire::decode(r)?,
            op: Wire::decode(r)?,
        })
    }
}

/// The first index of an epoch in a tracker's log (finds fork points).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct EpochStart {
    pub epoch: u64,
    pub first_index: u64,
}

impl Wire for EpochStart {
    const MIN_LEN: usize = 16;
    fn encode(&self, w: &mut BytesMut) {
        w.put_u64(self.epoch);
        w.put_u64(self.first_index);
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(EpochStart {
            epoch: r.u64("epoch")?,
            first_index: r.u64("first index")?,
        })
    }
}

/// Everything trackers say to each other.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ReplMsg {
    /// Sent by both ends after the hello: who I am and what my log holds.
    Join {
        id: TrackerId,
        epoch: u64,
        primary: Option<TrackerId>,
        last: LogPos,
        epoch_starts: Vec<EpochStart>,
    },
    /// Primary → backups every heartbeat interval. `confirmed`: every
    /// tracker of the group holds the primary's log through this index (so
    /// it can never become divergent; logs may be compacted up to it).
    Heartbeat {
        epoch: u64,
        primary: TrackerId,
        last: LogPos,
        confirmed: u64,
    },
    /// Primary → backup: entries following `prev` (`confirmed` as in
    /// `Heartbeat`).
    Append {
        epoch: u64,
        prev: LogPos,
        entries: Vec<Entry>,
        confirmed: u64,
    },
    /// Backup → primary: persisted and applied up to `last`.
    Ack { epoch: u64, last: LogPos },
    /// Backup → primary: `prev` of an append did not match; my log ends at
    /// `last` (the primary answers with a suffix from the fork, or a snapshot).
    Mismatch {
        epoch: u64,
        last: LogPos,
        epoch_starts: Vec<EpochStart>,
    },
    /// Primary → backup, answering a `Join` or `Mismatch`: "your log agrees
    /// with mine through `fork`". With `snapshot`, a snapshot follows and
    /// the backup's entries after `fork` are divergent (to be re-submitted);
    /// without, appends from `fork` follow.
    CatchUp {
        epoch: u64,
        fork: u64,
        snapshot: bool,
    },
    /// Primary → backup: a piece of the snapshot taken at `at`.
    SnapshotChunk {
        epoch: u64,
        at: LogPos,
        offset: u64,
        total: u64,
        data: Bytes,
    },
    /// Backup → primary: a client's write, to be sequenced. `key` is the
    /// TLS key of the client's connection to the backup (the primary
    /// prepares the write as that key's).
    Forward {
        fwd: u64,
        key: KeyId,
        req: ClientRequest,
    },
    /// Primary → backup: the outcome, and the log index that carries it.
    ForwardReply {
        fwd: u64,
        index: u64,
        outcome: Outcome,
    },
    /// Joiner → primary after a heal: an op from a divergent log, to be
    /// re-validated and, if still valid, applied as a new op. The primary
    /// answers with a `ForwardReply` of the same `fwd` once the op is
    /// applied (or found applied already, or refused as a conflict); the
    /// joiner keeps the op, on disk, until then.
    Resubmit { fwd: u64, op: Op },
    /// The connection broke the protocol and is being closed.
    Fatal { reason: Text },
    /// Backup → every tracker it is connected to, every heartbeat
    /// interval: still here. A tracker not heard from (any message) within
    /// the peer timeout counts as gone, however its connection looks.
    Alive { epoch: u64 },
}

impl Wire for ReplMsg {
    const MIN_LEN: usize = 1;
    fn encode(&self, w: &mut BytesMut) {
        use ReplMsg::*;
        match self {
            Join {
                id,
                epoch,
                primary,
                last,
                epoch_starts,
            } => {
                w.put_u8(1);
                id.encode(w);
                w.put_u64(*epoch);
                put_option(w, primary);
                last.encode(w);
                put_list(w, epoch_starts);
            }
            Heartbeat {
                epoch,
                primary,
                last,
                confirmed,
            } => {
                w.put_u8(2);
                w.put_u64(*epoch);
                primary.encode(w);
                last.encode(w);
                w.put_u64(*confirmed);
            }
            Append {
                epoch,
                prev,
                entries,
                confirmed,
            } => {
                w.put_u8(3);
                w.put_u64(*epoch);
                prev.encode(w);
                put_list(w, entries);
                w.put_u64(*confirmed);
            }
            Ack { epoch, last } => {
                w.put_u8(4);
                w.put_u64(*epoch);
                last.encode(w);
            }
            Mismatch {
                epoch,
                last,
                epoch_starts,
            } => {
                w.put_u8(5);
                w.put_u64(*epoch);
                last.encode(w);
                put_list(w, epoch_starts);
            }
            SnapshotChunk {
                epoch,
                at,
                offset,
                total,
                data,
            } => {
                w.put_u8(6);
                w.put_u64(*epoch);
                at.encode(w);
                w.put_u64(*offset);
                w.put_u64(*total);
                put_blob(w, data);
            }
            Forward { fwd, key, req } => {
                w.put_u8(7);
                w.put_u64(*fwd);
                key.encode(w);
                req.encode(w);
            }
            ForwardReply {
                fwd,
                index,
                outcome,
            } => {
                w.put_u8(8);
                w.put_u64(*fwd);
                w.put_u64(*index);
                outcome.encode(w);
            }
            Resubmit { fwd, op } => {
                w.put_u8(9);
                w.put_u64(*fwd);
                op.encode(w);
            }
            Fatal { reason } => {
                w.put_u8(10);
                reason.encode(w);
            }
            CatchUp {
                epoch,
                fork,
                snapshot,
            } => {
                w.put_u8(11);
                w.put_u64(*epoch);
                w.put_u64(*fork);
                crate::codec::put_bool(w, *snapshot);
            }
            Alive { epoch } => {
                w.put_u8(12);
                w.put_u64(*epoch);
            }
        }
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        use ReplMsg::*;
        Ok(match tag(r, "replication message")? {
            1 => Join {
                id: Wire::decode(r)?,
                epoch: r.u64("epoch")?,
                primary: r.option("primary")?,
                last: Wire::decode(r)?,
                epoch_starts: r.list("epoch starts", EPOCH_STARTS_MAX)?,
            },
            2 => Heartbeat {
                epoch: r.u64("epoch")?,
                primary: Wire::decode(r)?,
                last: Wire::decode(r)?,
                confirmed: r.u64("confirmed")?,
            },
            3 => Append {
                epoch: r.u64("epoch")?,
                prev: Wire::decode(r)?,
                entries: r.list("entries", APPEND_ENTRIES_MAX)?,
                confirmed: r.u64("confirmed")?,
            },
            4 => Ack {
                epoch: r.u64("epoch")?,
                last: Wire::decode(r)?,
            },
            5 => Mismatch {
                epoch: r.u64("epoch")?,
                last: Wire::decode(r)?,
                epoch_starts: r.list("epoch starts", EPOCH_STARTS_MAX)?,
            },
            6 => SnapshotChunk {
                epoch: r.u64("epoch")?,
                at: Wire::decode(r)?,
                offset: r.u64("snapshot offset")?,
                total: r.u64("snapshot total")?,
                data: r.blob("snapshot chunk", SNAPSHOT_CHUNK_LEN_MAX as usize)?,
            },
            7 => Forward {
                fwd: r.u64("forward id")?,
                key: Wire::decode(r)?,
                req: Wire::decode(r)?,
            },
            8 => ForwardReply {
                fwd: r.u64("forward id")?,
                index: r.u64("index")?,
                outcome: Wire::decode(r)?,
            },
            9 => Resubmit {
                fwd: r.u64("forward id")?,
                op: Wire::decode(r)?,
            },
            10 => Fatal {
                reason: Wire::decode(r)?,
            },
            11 => CatchUp {
                epoch: r.u64("epoch")?,
                fork: r.u64("fork")?,
                snapshot: r.bool("snapshot")?,
            },
            12 => Alive {
                epoch: r.u64("epoch")?,
            },
            t => return Err(unknown("replication message", t)),
        })
    }
}
