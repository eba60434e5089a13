//! `TimerTable`: every deadline a machine keeps, keyed by a timer enum
//! (quinn's `TimerTable`, with keys that may carry data: a connection, a
//! peer, a piece).
//!
//! The key names the timer *and* why it exists (the key is the reason
//! `poll_timeout` returns and traces print), so a machine never keeps a
//! deadline anywhere else. Ties are broken by key order, so expiry order
//! is deterministic. Every machine (tracker node, replication, client
//! session, download, seeder) keeps its deadlines in one of these.

use std::collections::{BTreeMap, BTreeSet};

use crate::time::Instant;

/// Deadlines keyed by `K`. At most one deadline per key.
#[derive(Clone, Debug)]
pub(crate) struct TimerTable<K: Ord + Copy> {
    by_key: BTreeMap<K, Instant>,
    by_time: BTreeSet<(Instant, K)>,
}

impl<K: Ord + Copy> Default for TimerTable<K> {
    fn default() -> Self {
        TimerTable {
            by_key: BTreeMap::new(),
            by_time: BTreeSet::new(),
        }
    }
}

impl<K: Ord + Copy> TimerTable<K> {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Sets (or moves) the deadline of `key` to `at`.
    pub(crate) fn set(&mut self, key: K, at: Instant) {
        if let Some(old) = self.by_key.insert(key, at) {
            self.by_time.remove(&(old, key));
        }
        self.by_time.insert((at, key));
    }

    /// Sets the deadline of `key` to `at` unless an earlier one is set.
    pub(crate) fn set_min(&mut self, key: K, at: Instant) {
        match self.get(key) {
            Some(old) if old <= at => {}
            _ => self.set(key, at),
        }
    }

    /// Removes the deadline of `key`, if any.
    pub(crate) fn clear(&mut self, key: K) {
        if let Some(old) = self.by_key.remove(&key) {
            self.by_time.remove(&(old, key));
        }
    }

    /// Removes every deadline whose key matches `pred`.
    #[cfg(test)]
    pub(crate) fn clear_where(&mut self, mut pred: impl FnMut(&K) -> bool) {
        let doomed: Vec<K> = self.by_key.keys().filter(|k| pred(k)).copied().collect();
        for k in doomed {
            self.clear(k);
        }
    }

    pub(crate) fn get(&self, key: K) -> Option<Instant> {
        self.by_key.get(&key).copied()
    }

    pub(crate) fn is_set(&self, key: K) -> bool {
        self.by_key.contains_key(&key)
    }

    /// The soonest deadline and its key.
    pub(crate) fn next(&self) -> Option<(Instant, K)> {
        self.by_time.first().copied()
    }

    /// Removes and returns the soonest key whose deadline is at or before `now`.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<K> {
        let (at, key) = self.next()?;
        if at > now {
            return None;
        }
        self.clear(key);
        Some(key)
    }

    /// Removes every key whose deadline is at or before `now` and returns
    /// them in key order (for machines that handle all due timers of one
    /// wake-up in a fixed order, whatever their deadlines).
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<K> {
        let mut due: Vec<K> = self
            .by_time
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, k)| *k)
            .collect();
        due.sort();
        for &k in &due {
            self.clear(k);
        }
        due
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_key.len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Both indexes agree (for `check_invariants`).
    pub(crate) fn is_consistent(&self) -> bool {
        self.by_key.len() == self.by_time.len()
            && self
                .by_time
                .iter()
                .all(|(at, k)| self.by_key.get(k) == Some(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soonest_first_ties_by_key_and_moves_replace() {
        let mut t = TimerTable::new();
        t.set(3u8, Instant(10));
        t.set(1u8, Instant(10));
        t.set(2u8, Instant(5));
        t.set(2u8, Instant(20));
        assert!(t.is_consistent());
        assert_eq!(t.len(), 3);
        assert_eq!(t.next(), Some((Instant(10), 1)));
        assert_eq!(t.pop_expired(Instant(9)), None);
        assert_eq!(t.pop_expired(Instant(10)), Some(1));
        assert_eq!(t.pop_expired(Instant(10)), Some(3));
        assert_eq!(t.pop_expired(Instant(19)), None);
        t.set_min(2, Instant(30));
        assert_eq!(t.get(2), Some(Instant(20)));
        t.set_min(2, Instant(15));
        assert_eq!(t.get(2), Some(Instant(15)));
        t.clear_where(|k| *k == 2);
        assert!(t.is_empty() && t.is_consistent());
    }

    #[test]
    fn expire_returns_every_due_key_in_key_order() {
        let mut t = TimerTable::new();
        t.set(2u8, Instant(5));
        t.set(1u8, Instant(9));
        t.set(3u8, Instant(50));
        assert_eq!(t.expire(Instant(10)), vec![1, 2]);
        assert_eq!(t.next(), Some((Instant(50), 3)));
        assert!(t.expire(Instant(49)).is_empty());
        assert!(t.is_consistent());
    }
}
