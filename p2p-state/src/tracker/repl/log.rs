//! The in-memory op log of one tracker: entries after a snapshot point, the
//! epoch runs that describe its whole history (kept across snapshots, so a
//! fork point is found even when the entries themselves are compacted), an
//! index of the requests it holds, and the fork-point computation that tells
//! two trackers how much of their logs they share.
//!
//! Log matching (as in Raft): two logs that hold an entry with the same
//! `(epoch, index)` hold identical entries up to that index, because an epoch
//! has exactly one primary (the epoch number encodes its id, see
//! [`super::epoch`]) and a primary never rewrites its own log.

use std::collections::{BTreeMap, VecDeque};

use p2p_proto::limits::EPOCH_STARTS_MAX;
use p2p_proto::{Entry, EpochStart, LogPos, Origin, Wire};

/// Entries after `start` (the position a snapshot covers, or 0).
#[derive(Debug, Clone)]
pub struct Log {
    start: LogPos,
    entries: VecDeque<(Entry, usize)>,
    /// Runs of equal epochs over the whole history, compacted part included:
    /// `runs[k]` says entries from `first_index` on (to the next run) have
    /// `epoch`. Never empty; the newest [`EPOCH_STARTS_MAX`] are kept.
    runs: Vec<EpochStart>,
    /// Request origin -> index, for the entries in memory.
    origins: BTreeMap<Origin, u64>,
}

impl Default for Log {
    fn default() -> Self {
        Log::starting_at(LogPos::default())
    }
}

impl Log {
    /// An empty log that begins after `start` (a snapshot's position), with
    /// no knowledge of the epochs before it.
    pub fn starting_at(start: LogPos) -> Self {
        Log::with_history(start, &[])
    }

    /// An empty log that begins after `start`, whose history up to `start`
    /// had the epoch runs `history` (as [`Log::history`] gave them). Runs
    /// that contradict `start` are ignored.
    pub fn with_history(start: LogPos, history: &[EpochStart]) -> Self {
        let mut runs: Vec<EpochStart> = history
            .iter()
            .copied()
            .filter(|r| r.first_index <= start.index)
            .collect();
        let consistent = runs
            .windows(2)
            .all(|w| w[0].first_index < w[1].first_index && w[0].epoch < w[1].epoch)
            && runs.last().is_some_and(|r| r.epoch == start.epoch);
        if !consistent {
            runs = vec![EpochStart {
                epoch: start.epoch,
                first_index: start.index,
            }];
        }
        if runs.len() > EPOCH_STARTS_MAX {
            runs.drain(..runs.len() - EPOCH_STARTS_MAX);
        }
        Log {
            start,
            entries: VecDeque::new(),
            runs,
            origins: BTreeMap::new(),
        }
    }

    pub fn start(&self) -> LogPos {
        self.start
    }

    pub fn last(&self) -> LogPos {
        self.entries
            .back()
            .map(|(e, _)| e.pos)
            .unwrap_or(self.start)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry at `index`, if it is in memory.
    pub fn get(&self, index: u64) -> Option<&Entry> {
        let first = self.start.index + 1;
        if index < first {
            return None;
        }
        self.entries.get((index - first) as usize).map(|(e, _)| e)
    }

    /// Encoded size of the entry at `index` (0 if absent).
    pub fn size_of(&self, index: u64) -> usize {
        let first = self.start.index + 1;
        if index < first {
            return 0;
        }
        self.entries
            .get((index - first) as usize)
            .map(|(_, n)| *n)
            .unwrap_or(0)
    }

    /// Epoch of the entry at `index` when known (index 0 is epoch 0).
    pub fn epoch_at(&self, index: u64) -> Option<u64> {
        if index == self.start.index {
            return Some(self.start.epoch);
        }
        self.get(index).map(|e| e.pos.epoch)
    }

    /// Index of the entry in memory that carries request `o`.
    pub fn index_of(&self, o: &Origin) -> Option<u64> {
        self.origins.get(o).copied()
    }

    /// Appends one entry; it must directly follow the last one.
    pub fn push(&mut self, e: Entry) {
        debug_assert_eq!(e.pos.index, self.last().index + 1, "log gap");
        debug_assert!(e.pos.epoch >= self.last().epoch, "epoch went backwards");
        let n = e.to_bytes().len();
        if self.runs.last().is_none_or(|r| r.epoch != e.pos.epoch) {
            self.runs.push(EpochStart {
                epoch: e.pos.epoch,
                first_index: e.pos.index,
            });
            if self.runs.len() > EPOCH_STARTS_MAX {
                self.runs.remove(0);
            }
        }
        if let Some(o) = e.op.origin {
            // The first copy wins (a second one is a no-op when applied).
            self.origins.entry(o).or_insert(e.pos.index);
        }
        self.entries.push_back((e, n));
    }

    /// Drops every entry after `index` and returns them, oldest first.
    pub fn truncate_after(&mut self, index: u64) -> Vec<Entry> {
        let keep = index.saturating_sub(self.start.index) as usize;
        if keep >= self.entries.len() {
            return Vec::new();
        }
        let cut: Vec<Entry> = self.entries.drain(keep..).map(|(e, _)| e).collect();
        self.forget_origins(&cut);
        let last = self.last();
        self.runs.retain(|r| r.first_index <= last.index);
        if self.runs.last().is_none_or(|r| r.epoch != last.epoch) {
            self.runs.push(EpochStart {
                epoch: last.epoch,
                first_index: last.index,
            });
        }
        cut
    }

    /// Forgets entries up to and including `index` (they are in a snapshot).
    /// Their epoch runs are kept.
    pub fn compact_through(&mut self, index: u64) {
        while let Some((e, _)) = self.entries.front() {
            if e.pos.index > index {
                break;
            }
            self.start = e.pos;
            let (e, _) = self.entries.pop_front().expect("front");
            self.forget_origins(std::slice::from_ref(&e));
        }
    }

    fn forget_origins(&mut self, gone: &[Entry]) {
        for e in gone {
            if let Some(o) = e.op.origin
                && self.origins.get(&o) == Some(&e.pos.index)
            {
                self.origins.remove(&o);
            }
        }
    }

    /// The epoch runs of the history through `index` (what a snapshot at
    /// `index` carries, so its receiver can still find fork points).
    pub fn history(&self, index: u64) -> Vec<EpochStart> {
        self.runs
            .iter()
            .copied()
            .filter(|r| r.first_index <= index)
            .collect()
    }

    /// Entries `from..=to` (clamped to what is in memory).
    pub fn range(&self, from: u64, to: u64) -> impl Iterator<Item = &Entry> {
        let first = self.start.index + 1;
        let lo = from.max(first).saturating_sub(first) as usize;
        let hi = to.saturating_add(1).max(first).saturating_sub(first) as usize;
        self.entries
            .range(lo.min(self.entries.len())..hi.min(self.entries.len()))
            .map(|(e, _)| e)
    }

    /// The runs of equal epochs, as sent in `Join` and `Mismatch`: the whole
    /// history's, compacted entries included (indices before the oldest run
    /// are unknown). Only the newest [`EPOCH_STARTS_MAX`] runs are kept.
    pub fn epoch_starts(&self) -> Vec<EpochStart> {
        self.runs.clone()
    }
}

/// Epoch of `index` in a log described by `starts` and ending at `last`.
fn epoch_in(starts: &[EpochStart], last: LogPos, index: u64) -> Option<u64> {
    if index == 0 {
        return Some(0);
    }
    if index > last.index {
        return None;
    }
    starts
        .iter()
        .rev()
        .find(|s| s.first_index <= index)
        .map(|s| s.epoch)
}

/// The fork point of two logs: the highest index at which both hold an
/// entry of the same epoch (0 when they share nothing known).
pub fn fork_point(a: &[EpochStart], a_last: LogPos, b: &[EpochStart], b_last: LogPos) -> u64 {
    let m = a_last.index.min(b_last.index);
    // Epochs are step functions of the index, so the highest agreeing index
    // is the right end of a constant stretch: `m` or a run start minus one.
    let mut candidates: Vec<u64> = std::iter::once(m)
        .chain(
            a.iter()
                .chain(b)
                .flat_map(|s| [s.first_index, s.first_index.saturating_sub(1)]),
        )
        .filter(|&i| i <= m)
        .collect();
    candidates.sort_unstable_by(|x, y| y.cmp(x));
    candidates.dedup();
    for i in candidates {
        match (epoch_in(a, a_last, i), epoch_in(b, b_last, i)) {
            (Some(x), Some(y)) if x == y => return i,
            _ => {}
        }
    }
    0
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

    fn log_of(epochs: &[u64]) -> Log {
        let mut l = Log::default();
        for (i, &e) in epochs.iter().enumerate() {
            l.push(entry(e, i as u64 + 1));
        }
        l
    }

    fn fork(a: &Log, b: &Log) -> u64 {
        fork_point(&a.epoch_starts(), a.last(), &b.epoch_starts(), b.last())
    }

    #[test]
    fn fork_of_prefix_is_the_shorter_end() {
        let a = log_of(&[1, 1, 2, 2, 2]);
        let b = log_of(&[1, 1, 2]);
        assert_eq!(fork(&a, &b), 3);
        assert_eq!(fork(&b, &a), 3);
        assert_eq!(fork(&a, &a), 5);
    }

    #[test]
    fn fork_of_divergent_logs() {
        // Common [1,1], then a went on in epoch 2, b in epoch 3.
        let a = log_of(&[1, 1, 2, 2, 2]);
        let b = log_of(&[1, 1, 3, 3]);
        assert_eq!(fork(&a, &b), 2);
        let c = log_of(&[5]);
        assert_eq!(fork(&a, &c), 0);
        assert_eq!(fork(&Log::default(), &a), 0);
    }

    #[test]
    fn fork_with_a_compacted_log() {
        let mut a = log_of(&[1, 1, 1, 2, 2, 2]);
        a.compact_through(4);
        assert_eq!(a.start(), LogPos { epoch: 2, index: 4 });
        let b = log_of(&[1, 1, 1, 2, 2]);
        assert_eq!(fork(&a, &b), 5);
        let c = log_of(&[1, 1]);
        // c's entries lie before a's snapshot, whose epoch runs a kept.
        assert_eq!(fork(&a, &c), 2);
        let d = log_of(&[1, 3]);
        assert_eq!(fork(&a, &d), 1);
    }

    #[test]
    fn a_log_started_at_a_snapshot_knows_the_history_it_was_given() {
        let full = log_of(&[1, 1, 2, 2, 4]);
        let at = LogPos { epoch: 2, index: 4 };
        let mut b = Log::with_history(at, &full.history(4));
        assert_eq!(b.epoch_starts(), full.history(4));
        let behind = log_of(&[1, 1, 2]);
        assert_eq!(fork(&b, &behind), 3);
        let divergent = log_of(&[1, 1, 3]);
        assert_eq!(fork(&b, &divergent), 2);
        b.push(entry(4, 5));
        assert_eq!(fork(&b, &full), 5);
        // Without history (or a contradicting one) only `at` is known.
        let bare = Log::starting_at(at);
        assert_eq!(fork(&bare, &behind), 0);
        let wrong = Log::with_history(at, &log_of(&[1, 1, 3, 3]).history(4));
        assert_eq!(wrong.epoch_starts(), bare.epoch_starts());
    }

    #[test]
    fn the_origin_index_follows_pushes_truncations_and_compaction() {
        let mut a = Log::default();
        let o = |id: u64| Origin {
            client: p2p_proto::ClientId([1; 16]),
            key: p2p_proto::KeyId::default(),
            id: p2p_proto::RequestId(id),
        };
        for i in 1..=4 {
            let mut e = entry(1, i);
            e.op.origin = Some(o(i));
            a.push(e);
        }
        assert_eq!(a.index_of(&o(3)), Some(3));
        a.truncate_after(2);
        assert_eq!(a.index_of(&o(3)), None);
        a.compact_through(1);
        assert_eq!(a.index_of(&o(1)), None);
        assert_eq!(a.index_of(&o(2)), Some(2));
    }

    #[test]
    fn truncate_and_range() {
        let mut a = log_of(&[1, 1, 2, 2]);
        let cut = a.truncate_after(2);
        assert_eq!(cut.len(), 2);
        assert_eq!(a.last(), LogPos { epoch: 1, index: 2 });
        assert_eq!(a.range(1, 10).count(), 2);
        assert_eq!(a.range(2, 2).next().unwrap().pos.index, 2);
        assert_eq!(a.epoch_at(0), Some(0));
        assert_eq!(a.epoch_at(3), None);
    }
}
