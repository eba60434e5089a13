//! Deadlines of a machine in one small table keyed by a timer-kind enum
//! (quinn's `TimerTable`). `poll_timeout` is the soonest entry; the kind is
//! the reason traces print.

use crate::time::Instant;

/// A timer kind: a small enum with a dense index.
pub trait TimerKind: Copy + Eq + std::fmt::Debug + 'static {
    const COUNT: usize;
    const ALL: &'static [Self];
    fn index(self) -> usize;
}

#[derive(Debug, Clone)]
pub struct TimerTable<K: TimerKind> {
    at: Vec<Option<Instant>>,
    _kind: std::marker::PhantomData<K>,
}

impl<K: TimerKind> Default for TimerTable<K> {
    fn default() -> Self {
        TimerTable {
            at: vec![None; K::COUNT],
            _kind: std::marker::PhantomData,
        }
    }
}

impl<K: TimerKind> TimerTable<K> {
    pub fn set(&mut self, k: K, at: Instant) {
        self.at[k.index()] = Some(at);
    }
    pub fn stop(&mut self, k: K) {
        self.at[k.index()] = None;
    }
    pub fn get(&self, k: K) -> Option<Instant> {
        self.at[k.index()]
    }
    /// The soonest deadline and its kind.
    pub fn next(&self) -> Option<(K, Instant)> {
        K::ALL
            .iter()
            .filter_map(|&k| self.at[k.index()].map(|t| (k, t)))
            .min_by_key(|&(k, t)| (t, k.index()))
    }
    /// Kinds due at `now`, clearing them.
    pub fn expire(&mut self, now: Instant) -> Vec<K> {
        let due: Vec<K> = K::ALL
            .iter()
            .copied()
            .filter(|k| self.at[k.index()].is_some_and(|t| t <= now))
            .collect();
        for &k in &due {
            self.at[k.index()] = None;
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum T {
        A,
        B,
    }
    impl TimerKind for T {
        const COUNT: usize = 2;
        const ALL: &'static [Self] = &[T::A, T::B];
        fn index(self) -> usize {
            self as usize
        }
    }

    #[test]
    fn soonest_wins_and_expire_clears() {
        let mut t = TimerTable::<T>::default();
        assert_eq!(t.next(), None);
        t.set(T::A, Instant(50));
        t.set(T::B, Instant(20));
        assert_eq!(t.next(), Some((T::B, Instant(20))));
        assert_eq!(t.expire(Instant(30)), vec![T::B]);
        assert_eq!(t.next(), Some((T::A, Instant(50))));
        t.stop(T::A);
        assert_eq!(t.next(), None);
    }
}
