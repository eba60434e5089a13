//! Logins against guessing and floods (issue 16 §5), as two pure pieces
//! the tracker node owns:
//!
//! - [`LoginBackoff`]: after a few failed logins, a user name and a source
//!   address are each refused for a time that doubles with every further
//!   failure ([`TrackerError::LoginBackoff`] says when to retry). Kept by
//!   each tracker for the connections it sees (not replicated), in two
//!   bounded tables whose oldest entry is evicted; the primary also counts
//!   the logins backups forward to it, by name (their addresses are the
//!   backups' to count), so guesses spread over trackers count together. A name that does not
//!   exist backs off like one that does, so the answer still tells nothing.
//! - [`FairQueue`]: the password work (argon2) waiting for a driver worker,
//!   in one lane per source, served round robin, so a burst from one
//!   source waits behind itself and never stalls other sources.
//!
//! Time is passed in; nothing here reads a clock.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;

use p2p_proto::{TrackerError, TrackerId, UserName};

use crate::time::{Duration, Instant};

/// Failed logins for one user name before backoff starts.
pub const LOGIN_FAILURES_FREE_PER_USER: u32 = 3;
/// Failed logins from one source address before backoff starts (higher:
/// several people may share an address behind NAT).
pub const LOGIN_FAILURES_FREE_PER_SOURCE: u32 = 10;
/// The first backoff; each further failure doubles it.
pub const LOGIN_BACKOFF_MIN: Duration = Duration::from_secs(1);
/// The longest backoff.
pub const LOGIN_BACKOFF_MAX: Duration = Duration::from_secs(15 * 60);
/// A name or address with no failed login for this long starts afresh.
pub const LOGIN_FAILURES_FORGET: Duration = Duration::from_secs(60 * 60);
/// User names whose failures are remembered, at most (the one whose last
/// failure is oldest is forgotten first).
pub const LOGIN_USERS_TRACKED_MAX: usize = 10_000;
/// Source addresses whose failures are remembered, at most (oldest
/// forgotten first).
pub const LOGIN_SOURCES_TRACKED_MAX: usize = 10_000;

/// Failed logins of one name or from one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Failures {
    count: u32,
    last: Instant,
    /// Refused until then.
    until: Instant,
}

/// One bounded table of failures.
#[derive(Debug, Clone)]
struct Table<K: Ord> {
    entries: BTreeMap<K, Failures>,
    free: u32,
    max: usize,
}

impl<K: Ord + Clone> Table<K> {
    fn new(free: u32, max: usize) -> Self {
        Table {
            entries: BTreeMap::new(),
            free,
            max,
        }
    }

    /// When `k` may try again, if not now.
    fn blocked(&self, now: Instant, k: &K) -> Option<Instant> {
        self.entries
            .get(k)
            .map(|f| f.until)
            .filter(|until| *until > now)
    }

    fn fail(&mut self, now: Instant, k: &K) {
        if !self.entries.contains_key(k) && self.entries.len() >= self.max {
            self.evict_oldest();
        }
        let f = self.entries.entry(k.clone()).or_insert(Failures {
            count: 0,
            last: now,
            until: now,
        });
        if now.saturating_since(f.last) >= LOGIN_FAILURES_FORGET {
            f.count = 0;
        }
        f.count = f.count.saturating_add(1);
        f.last = now;
        f.until = now + backoff(f.count, self.free);
    }

    fn evict_oldest(&mut self) {
        let oldest = self
            .entries
            .iter()
            .min_by_key(|(k, f)| (f.last, *k))
            .map(|(k, _)| k.clone());
        if let Some(k) = oldest {
            self.entries.remove(&k);
        }
    }
}

/// The backoff after the `count`th failure when `free` are allowed.
pub(super) fn backoff(count: u32, free: u32) -> Duration {
    let Some(over) = count.checked_sub(free + 1) else {
        return Duration::from_millis(0);
    };
    let ms = LOGIN_BACKOFF_MIN
        .as_millis()
        .saturating_mul(1u64 << over.min(32));
    Duration::from_millis(ms.min(LOGIN_BACKOFF_MAX.as_millis()))
}

/// Failed logins by user name and by source address.
#[derive(Debug, Clone)]
pub(super) struct LoginBackoff {
    users: Table<UserName>,
    sources: Table<IpAddr>,
}

impl Default for LoginBackoff {
    fn default() -> Self {
        Self::new()
    }
}

impl LoginBackoff {
    pub(super) fn new() -> Self {
        LoginBackoff {
            users: Table::new(LOGIN_FAILURES_FREE_PER_USER, LOGIN_USERS_TRACKED_MAX),
            sources: Table::new(LOGIN_FAILURES_FREE_PER_SOURCE, LOGIN_SOURCES_TRACKED_MAX),
        }
    }

    /// `Ok` if `user` may try a login from `source` now; otherwise the
    /// error that says when to retry.
    pub(super) fn check(
        &self,
        now: Instant,
        user: &UserName,
        source: Option<IpAddr>,
    ) -> Result<(), TrackerError> {
        let by_user = self.users.blocked(now, user);
        let by_source = source.and_then(|s| self.sources.blocked(now, &s));
        match by_user.max(by_source) {
            None => Ok(()),
            Some(until) => {
                let ms = until.saturating_since(now).as_millis();
                Err(TrackerError::LoginBackoff {
                    retry_after_secs: ms.div_ceil(1000).max(1),
                })
            }
        }
    }

    /// A login of `user` from `source` failed (wrong name or password).
    pub(super) fn failed(&mut self, now: Instant, user: &UserName, source: Option<IpAddr>) {
        self.users.fail(now, user);
        if let Some(s) = source {
            self.sources.fail(now, &s);
        }
    }

    /// `user` logged in: their name starts afresh (the source does not,
    /// so one good account does not clear a source's guesses at others).
    pub(super) fn succeeded(&mut self, user: &UserName) {
        self.users.entries.remove(user);
    }

    /// Names and addresses remembered.
    #[cfg(test)]
    pub(super) fn tracked(&self) -> (usize, usize) {
        (self.users.entries.len(), self.sources.entries.len())
    }
}

/// Where password work came from, for fairness: the client's address on a
/// connection this tracker accepted, or the backup that forwarded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Lane {
    Addr(IpAddr),
    Tracker(TrackerId),
    /// No address known (a driver that gave none).
    Unknown,
}

/// Password jobs waiting for a driver worker, at most, across sources.
pub const PASSWORD_QUEUE_MAX: usize = 256;
/// Password jobs waiting from one client address, at most (more is
/// refused at once): a burst from one source queues behind itself. Logins
/// a backup forwards share one lane bounded only by [`PASSWORD_QUEUE_MAX`];
/// the backup caps each of its clients' addresses the same way before
/// forwarding (`forward_allowed`), so one host behind a backup cannot
/// fill that lane either.
pub const PASSWORD_QUEUE_PER_SOURCE_MAX: usize = 8;
/// Password jobs handed to the driver at once (its workers, at most 4 in
/// `runtime_common::tracker::password_workers`); the rest wait in the
/// fair queue, so the driver's own first-in-first-out queue stays short.
pub const PASSWORD_RUNNING_MAX: usize = 4;

/// Why [`FairQueue::push`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum QueueFull {
    /// This source has [`PASSWORD_QUEUE_PER_SOURCE_MAX`] waiting.
    Source,
    /// [`PASSWORD_QUEUE_MAX`] are waiting in all.
    Total,
}

impl QueueFull {
    pub(super) fn error(self) -> TrackerError {
        let what = match self {
            QueueFull::Source => {
                "your address has the most password checks one source may have waiting \
                 (PASSWORD_QUEUE_PER_SOURCE_MAX, 8); retry once they are answered"
            }
            QueueFull::Total => {
                "password checks waiting on this tracker (PASSWORD_QUEUE_MAX, 256); retry shortly"
            }
        };
        TrackerError::LimitReached { what: what.into() }
    }
}

/// Backup: whether one more login or create_user from a client address
/// may be forwarded to the primary when `waiting` from that address are
/// forwarded and not answered yet. The primary sees a backup's forwards
/// as one lane (it does not know their addresses), so the backup applies
/// the per-address cap, [`PASSWORD_QUEUE_PER_SOURCE_MAX`], before they
/// leave: a burst from one host through a backup is refused at the
/// backup, as it would be at the primary, and cannot fill the primary's
/// whole queue ([`PASSWORD_QUEUE_MAX`]) against everyone else.
pub(super) fn forward_allowed(waiting: usize) -> Result<(), QueueFull> {
    if waiting >= PASSWORD_QUEUE_PER_SOURCE_MAX {
        return Err(QueueFull::Source);
    }
    Ok(())
}

/// Items in one lane per source, taken round robin across lanes.
#[derive(Debug, Clone)]
pub(super) struct FairQueue<T> {
    lanes: BTreeMap<Lane, VecDeque<T>>,
    /// Lanes with items, in serving order (each appears once).
    turn: VecDeque<Lane>,
    len: usize,
}

impl<T> Default for FairQueue<T> {
    fn default() -> Self {
        FairQueue {
            lanes: BTreeMap::new(),
            turn: VecDeque::new(),
            len: 0,
        }
    }
}

impl<T> FairQueue<T> {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Queues `item` at the back of its source's lane.
    pub(super) fn push(&mut self, lane: Lane, item: T) -> Result<(), QueueFull> {
        let waiting = self.lanes.get(&lane).map_or(0, VecDeque::len);
        // A backup forwards the logins of all its clients in one lane (the
        // primary does not see their addresses): that lane is bounded by
        // the total only, or a burst of ordinary logins through a backup
        // would be refused as if it came from one host.
        let capped = matches!(lane, Lane::Addr(_));
        if capped && waiting >= PASSWORD_QUEUE_PER_SOURCE_MAX {
            return Err(QueueFull::Source);
        }
        if self.len >= PASSWORD_QUEUE_MAX {
            return Err(QueueFull::Total);
        }
        let q = self.lanes.entry(lane).or_default();
        if q.is_empty() {
            self.turn.push_back(lane);
        }
        q.push_back(item);
        self.len += 1;
        Ok(())
    }

    /// The next item: the front of the lane whose turn it is (that lane
    /// then goes to the back of the turn).
    pub(super) fn pop(&mut self) -> Option<T> {
        let lane = self.turn.pop_front()?;
        let q = self.lanes.get_mut(&lane).expect("a lane in turn has items");
        let item = q.pop_front().expect("a lane in turn has items");
        if q.is_empty() {
            self.lanes.remove(&lane);
        } else {
            self.turn.push_back(lane);
        }
        self.len -= 1;
        Some(item)
    }

    /// Panics if the lanes, the turn and the count disagree.
    pub(super) fn check_invariants(&self) {
        assert_eq!(self.lanes.len(), self.turn.len(), "a lane missing its turn");
        assert!(
            self.lanes.values().all(|q| !q.is_empty()),
            "empty lane kept"
        );
        let n: usize = self.lanes.values().map(VecDeque::len).sum();
        assert_eq!(n, self.len, "queue length out of date");
        assert!(self.len <= PASSWORD_QUEUE_MAX, "queue past its bound");
    }
}

#[cfg(test)]
mod tests;
