//! Catch-up, both sides. A tracker that connects sends `Join` (a backup
//! that finds a gap, `Mismatch`); the primary answers with `CatchUp`
//! carrying the fork point, then either appends from there or streams its
//! applied state as `SnapshotChunk`s. The joiner keeps its own log and
//! state until the whole snapshot has arrived, queues its divergent ops for
//! re-submission (`resubmit.rs`), installs it, and acks it once persisted.

use bytes::{Bytes, BytesMut};

use p2p_proto::limits::SNAPSHOT_CHUNK_LEN_MAX;
use p2p_proto::{EpochStart, LogPos, ReplMsg, Text, TrackerId};

use super::*;
use crate::time::Instant;

/// Largest snapshot accepted from a primary.
pub const SNAPSHOT_LEN_MAX: u64 = 1 << 30;

/// A snapshot being received.
#[derive(Debug)]
pub(super) struct SnapshotRx {
    at: LogPos,
    total: u64,
    buf: BytesMut,
}

impl<S: Replicated> Repl<S> {
    pub(super) fn on_join(
        &mut self,
        now: Instant,
        from: TrackerId,
        epoch: u64,
        last: LogPos,
        starts: &[EpochStart],
    ) {
        if self.observe_epoch(now, from, epoch) {
            self.request_catch_up();
            return;
        }
        if self.role != Role::Primary || epoch > self.epoch {
            return; // a backup, or an epoch refused as implausible
        }
        if epoch < self.epoch {
            self.send(from, self.heartbeat_msg());
        }
        if let Some(f) = self.followers.get(&from)
            && f.asked.0 == last
            && now.saturating_since(f.asked.1) < self.cfg.primary_timeout
        {
            return; // the same request again (a Join and a Mismatch crossed)
        }
        let fork = fork_point(&self.log.epoch_starts(), self.log.last(), starts, last);
        let snapshot = last.index > fork || fork < self.log.start().index;
        self.send(
            from,
            ReplMsg::CatchUp {
                epoch: self.epoch,
                fork,
                snapshot,
            },
        );
        let sent = if snapshot {
            self.send_snapshot(from)
        } else {
            // Entries up to the fork are on the follower already, but only
            // persisted ones count as sent (a new primary may still be
            // writing some): the rest go again, and are skipped there.
            fork.min(self.persisted)
        };
        self.followers.insert(
            from,
            Follower {
                asked: (last, now),
                in_sync: false,
                sent,
                acked: 0,
            },
        );
        self.flush_appends();
        self.check_follower_sync(from);
    }

    /// Streams the current applied state to `to`; returns the index it covers.
    pub(super) fn send_snapshot(&mut self, to: TrackerId) -> u64 {
        let at = self.pos_of(self.applied);
        let data = self.snapshot_bytes(at.index);
        let total = data.len() as u64;
        let mut offset = 0usize;
        loop {
            let end = (offset + SNAPSHOT_CHUNK_LEN_MAX as usize).min(data.len());
            self.send(
                to,
                ReplMsg::SnapshotChunk {
                    epoch: self.epoch,
                    at,
                    offset: offset as u64,
                    total,
                    data: data.slice(offset..end),
                },
            );
            offset = end;
            if offset >= data.len() {
                break;
            }
        }
        at.index
    }

    /// Asks the current primary to bring us up to date.
    pub(super) fn request_catch_up(&mut self) {
        if self.role == Role::Backup {
            self.caught_up = false;
        }
        let Some(p) = self.primary() else { return };
        if self.role == Role::Backup && self.connected.contains(&p) && !self.mismatch_sent {
            self.mismatch_sent = true;
            self.send(
                p,
                ReplMsg::Mismatch {
                    epoch: self.epoch,
                    last: self.log.last(),
                    epoch_starts: self.log.epoch_starts(),
                },
            );
        }
    }

    pub(super) fn on_catch_up(
        &mut self,
        now: Instant,
        from: TrackerId,
        epoch: u64,
        fork: u64,
        snapshot: bool,
    ) {
        if !self.accept_from_primary(now, from, epoch) {
            return;
        }
        self.mismatch_sent = false;
        self.caught_up = false;
        self.catch_up_seen = true;
        if snapshot {
            self.pending_fork = Some(fork);
            self.snapshot_rx = None;
            return;
        }
        // No snapshot is coming (one announced earlier may have been cut
        // off with its connection): stop waiting for it, take appends.
        self.pending_fork = None;
        self.snapshot_rx = None;
        // Entries past the fork written in the current epoch are the
        // primary's own, appended since we asked: not divergent.
        let epoch = self.epoch;
        let foreign = self
            .log
            .range(fork.saturating_add(1), self.log.last().index)
            .any(|e| e.pos.epoch != epoch);
        if foreign || (self.log.last().index > fork && fork < self.log.start().index) {
            // The primary thinks we hold nothing divergent; we disagree.
            self.event(ReplEvent::PeerError {
                peer: from,
                what: Text::new("catch-up without snapshot over a divergent log"),
            });
            self.request_catch_up();
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_snapshot_chunk(
        &mut self,
        now: Instant,
        from: TrackerId,
        epoch: u64,
        at: LogPos,
        offset: u64,
        total: u64,
        data: Bytes,
    ) {
        if !self.accept_from_primary(now, from, epoch) || self.pending_fork.is_none() {
            return;
        }
        if total > SNAPSHOT_LEN_MAX {
            self.event(ReplEvent::PeerError {
                peer: from,
                what: Text::new(format!("snapshot of {total} bytes is over the limit")),
            });
            return;
        }
        if offset == 0 {
            self.snapshot_rx = Some(SnapshotRx {
                at,
                total,
                buf: BytesMut::with_capacity(total.min(16 << 20) as usize),
            });
        }
        let Some(rx) = self.snapshot_rx.as_mut() else {
            return;
        };
        if rx.at != at || rx.total != total || rx.buf.len() as u64 != offset {
            self.snapshot_rx = None;
            self.mismatch_sent = false;
            self.request_catch_up();
            return;
        }
        rx.buf.extend_from_slice(&data);
        if (rx.buf.len() as u64) < rx.total {
            return;
        }
        let rx = self.snapshot_rx.take().expect("snapshot");
        self.install_snapshot(from, rx.at, rx.buf.freeze());
    }

    pub(super) fn install_snapshot(&mut self, from: TrackerId, at: LogPos, data: Bytes) {
        let snap = match Snapshot::<S>::decode(at, data.clone()) {
            Ok(s) => s,
            Err(e) => {
                self.event(ReplEvent::PeerError {
                    peer: from,
                    what: Text::new(format!("bad snapshot: {e}")),
                });
                self.mismatch_sent = false;
                self.request_catch_up();
                return;
            }
        };
        let fork = self.pending_fork.take().unwrap_or(at.index);
        self.queue_divergent(fork);
        self.state = snap.state;
        self.log = Snapshot::<S>::log(&snap.history, snap.base, snap.tail);
        self.persisted = at.index;
        self.applied = at.index;
        self.snapshot_at = at.index;
        self.out.push_back(ReplOutput::Persist(Persist::Snapshot {
            at,
            data,
            reset_log: true,
        }));
        // An empty persist after it: its completion (`handle_persisted(at)`)
        // says the snapshot is on disk, and only then is it acked.
        self.out.push_back(ReplOutput::Persist(Persist::Log {
            from_index: at.index.saturating_add(1),
            entries: Vec::new(),
        }));
        self.snapshot_ack = Some(at);
        self.event(ReplEvent::SnapshotInstalled { at });
        let _ = from;
        self.update_caught_up();
    }
}
