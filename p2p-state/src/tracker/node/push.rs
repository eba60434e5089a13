//! New sources pushed to running downloads (issue 17 §3): a client that
//! asks for a file's peers (`get_peers`) on a connection subscribes that
//! connection to the file for [`PUSH_SUBSCRIPTION_TTL`] (renewed by every
//! ask; downloads ask again well within it). When this tracker applies an
//! op, whoever made it and on whichever tracker (a source registered on
//! the other tracker reaches this one by replication), the sources each
//! subscriber was not told of yet go to it in a [`FromTracker::Peers`]
//! with fresh tickets, so leechers meet within one tracker hop of one of
//! them holding a piece instead of at their next ask.
//!
//! Bounded: at most one push per file per connection per
//! [`PUSH_INTERVAL`] (later news waits for the interval's end), at most
//! [`PEERS_PER_PUSH`] peers in one, at most
//! [`PUSH_SUBSCRIPTIONS_PER_CONN_MAX`] files per connection (the oldest
//! ask gives way). Only to logged-in members of the group: the session
//! bound to the connection and its membership are checked at every push,
//! and a subscription ends when its user leaves the group, the file goes,
//! or the user holds the whole file. Pushes are this tracker's own
//! notifications, never replicated.

use super::*;
use p2p_proto::{FileName, GroupName, UserName};

/// Least time between two pushes of one file to one client connection.
pub const PUSH_INTERVAL: Duration = Duration::from_millis(250);
/// Most peers in one push (more wait for the next interval).
pub const PEERS_PER_PUSH: usize = 8;
/// How long a `get_peers` keeps its connection told of new sources.
pub const PUSH_SUBSCRIPTION_TTL: Duration = Duration::from_secs(90);
/// Most files one client connection is told of at once.
pub const PUSH_SUBSCRIPTIONS_PER_CONN_MAX: usize = 16;

/// One connection's interest in one file.
#[derive(Debug, Clone)]
pub(super) struct Subscription {
    /// Sources it knows of (listed to it or pushed).
    told: BTreeSet<UserName>,
    /// It ends here unless asked again.
    until: Instant,
    last_push: Option<Instant>,
}

/// Every connection's subscriptions.
#[derive(Debug, Default)]
pub(super) struct PushTable {
    subs: BTreeMap<ConnId, BTreeMap<(GroupName, FileName), Subscription>>,
    /// The applied index the last scan saw.
    seen_applied: u64,
}

impl PushTable {
    /// `conn` asked for the peers of `file` and was given `listed`.
    pub(super) fn subscribe(
        &mut self,
        now: Instant,
        conn: ConnId,
        file: (GroupName, FileName),
        listed: impl Iterator<Item = UserName>,
    ) {
        let subs = self.subs.entry(conn).or_default();
        if !subs.contains_key(&file) && subs.len() >= PUSH_SUBSCRIPTIONS_PER_CONN_MAX {
            let oldest = subs
                .iter()
                .min_by_key(|(_, s)| s.until)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                subs.remove(&k);
            }
        }
        let s = subs.entry(file).or_insert_with(|| Subscription {
            told: BTreeSet::new(),
            until: now,
            last_push: None,
        });
        s.told.extend(listed);
        s.until = now + PUSH_SUBSCRIPTION_TTL;
    }

    pub(super) fn forget(&mut self, conn: ConnId) {
        self.subs.remove(&conn);
    }

    /// Files `conn` is subscribed to (for tests).
    #[cfg(test)]
    pub(super) fn count(&self, conn: ConnId) -> usize {
        self.subs.get(&conn).map_or(0, |s| s.len())
    }

    pub(super) fn check(&self) {
        for subs in self.subs.values() {
            assert!(subs.len() <= PUSH_SUBSCRIPTIONS_PER_CONN_MAX);
        }
    }
}

impl Tracker {
    /// After a mutation: if an op was applied since the last scan, tell
    /// subscribers of new sources.
    pub(super) fn push_if_applied(&mut self, now: Instant) {
        let applied = self.repl.get().applied();
        if applied != self.push.seen_applied {
            self.push.seen_applied = applied;
            self.push_sources(now);
        }
    }

    /// Sends each subscriber the sources it was not told of, at most once
    /// per [`PUSH_INTERVAL`] per file; news that must wait sets
    /// [`NodeTimer::Push`] for the interval's end.
    pub(super) fn push_sources(&mut self, now: Instant) {
        if self.push.subs.is_empty() || !self.repl.get().can_serve_reads() {
            return;
        }
        let mut next: Option<Instant> = None;
        let mut sends = Vec::new();
        let state = self.repl.get().state();
        for (conn, subs) in self.push.subs.iter_mut() {
            let token = match self.conns.get(conn).map(|c| &c.kind) {
                Some(ConnKind::Client { session: Some(t) }) => *t,
                _ => continue,
            };
            subs.retain(|(group, file), s| {
                if s.until <= now {
                    return false;
                }
                let Some(peers) = state.new_peers(
                    now,
                    &self.cfg.state,
                    &token,
                    (group, file),
                    &s.told,
                    PEERS_PER_PUSH,
                ) else {
                    return false;
                };
                if peers.is_empty() {
                    return true;
                }
                if let Some(due) = s.last_push.map(|t| t + PUSH_INTERVAL)
                    && now < due
                {
                    next = Some(next.map_or(due, |n| n.min(due)));
                    return true;
                }
                if peers.len() == PEERS_PER_PUSH {
                    // There may be more: look again at the interval's end.
                    let due = now + PUSH_INTERVAL;
                    next = Some(next.map_or(due, |n| n.min(due)));
                }
                s.told.extend(peers.iter().map(|p| p.user.clone()));
                s.last_push = Some(now);
                sends.push((*conn, group.clone(), file.clone(), peers));
                true
            });
        }
        self.push.subs.retain(|_, s| !s.is_empty());
        for (conn, group, file, peers) in sends {
            let msg = FromTracker::Peers { group, file, peers };
            self.send(conn, Outgoing::Client(msg));
        }
        if let Some(at) = next {
            self.timers.set(NodeTimer::Push, at);
        }
    }
}
