//! The in-memory op log of one tracker: entries after a snapshot point, the
//! epoch runs that describe it, and the fork-point computation that tells two
//! trackers how much of their logs they share.
//!
//! Log matching (as in Raft): two logs that hold an entry with the same
//! `(epoch, index)` hold identical entries up to that index, because an epoch
//! has exactly one primary (the epoch number encodes its id, see
//! [`super::epoch`]) and a primary never rewrites its own log.

use std::collections::VecDeque;

use p2p_proto::limits::EPOCH_STARTS_MAX;
use p2p_proto::{Entry, EpochStart, LogPos, Wire};

/// Entries after `start` (the position a snapshot covers, or 0).
#[derive(Debug, Clone, Default)]
pub struct Log {
    start: LogPos,
    entries: VecDeque<(Entry, usize)>,
}

impl Log {
    /// An empty log that begins after `start` (a snapshot's position).
    pub fn starting_at(start: LogPos) -> Self {
        Log {
            start,
            entries: VecDeque::new(),
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

    /// Appends one entry; it must directly follow the last one.
    pub fn push(&mut self, e: Entry) {
        debug_assert_eq!(e.pos.index, self.last().index + 1, "log gap");
        debug_assert!(e.pos.epoch >= self.last().epoch, "epoch went backwards");
        let n = e.to_bytes().len();
        self.entries.push_back((e, n));
    }

    /// Drops every entry after `index` and returns them, oldest first.
    pub fn truncate_after(&mut self, index: u64) -> Vec<Entry> {
        let keep = index.saturating_sub(self.start.index) as usize;
        if keep >= self.entries.len() {
            return Vec::new();
        }
        self.entries.drain(keep..).map(|(e, _)| e).collect()
    }

    /// Forgets entries up to and including `index` (they are in a snapshot).
    pub fn compact_through(&mut self, index: u64) {
        while let Some((e, _)) = self.entries.front() {
            if e.pos.index > index {
                break;
            }
            self.start = e.pos;
            self.entries.pop_front();
        }
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

    /// The runs of equal epochs, as sent in `Join` and `Mismatch`. The first
    /// run starts at the snapshot point; indices before it are unknown.
    /// Only the newest [`EPOCH_STARTS_MAX`] runs are kept.
    pub fn epoch_starts(&self) -> Vec<EpochStart> {
        let mut runs = vec![EpochStart {
            epoch: self.start.epoch,
            first_index: self.start.index,
        }];
        for (e, _) in &self.entries {
            if e.pos.epoch != runs[runs.len() - 1].epoch {
                runs.push(EpochStart {
                    epoch: e.pos.epoch,
                    first_index: e.pos.index,
                });
            }
        }
        if runs.len() > EPOCH_STARTS_MAX {
            runs.drain(..runs.len() - EPOCH_STARTS_MAX);
        }
        runs
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
        // c's entries lie before a's snapshot: nothing known in common.
        assert_eq!(fork(&a, &c), 0);
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
