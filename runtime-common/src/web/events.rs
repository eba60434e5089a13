//! The numbered event log behind `GET /api/events?since=N`: ids start at
//! 1 and increase by one, so a reader that sees a gap (it asked for
//! events after `N` and the first it got is past `N + 1`: older ones were
//! dropped) refetches the state, as Syncthing's event API works.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Events kept for readers that fall behind; older ones are dropped.
pub const EVENTS_KEPT: usize = 1024;

/// One event: its id, its type and what it carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: u64,
    pub kind: &'static str,
    pub data: Value,
}

impl Event {
    pub fn to_json(&self) -> Value {
        serde_json::json!({ "id": self.id, "type": self.kind, "data": self.data })
    }
}

#[derive(Default)]
struct Inner {
    last: u64,
    kept: VecDeque<Event>,
}

/// Shared by the watcher (which pushes) and the connections (which
/// wait).
#[derive(Default)]
pub struct EventLog {
    inner: Mutex<Inner>,
    changed: Condvar,
}

impl EventLog {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an event and wakes every waiting reader; returns its id.
    pub fn push(&self, kind: &'static str, data: Value) -> u64 {
        let mut g = self.inner.lock().expect("events");
        g.last += 1;
        let id = g.last;
        g.kept.push_back(Event { id, kind, data });
        while g.kept.len() > EVENTS_KEPT {
            g.kept.pop_front();
        }
        self.changed.notify_all();
        id
    }

    /// The id of the latest event (0: none yet).
    pub fn last_id(&self) -> u64 {
        self.inner.lock().expect("events").last
    }

    /// Events after `since`, waiting up to `wait` for the first one.
    /// Empty when none came in time.
    pub fn since(&self, since: u64, wait: Duration) -> Vec<Event> {
        let deadline = Instant::now() + wait;
        let mut g = self.inner.lock().expect("events");
        loop {
            if g.last > since {
                return g.kept.iter().filter(|e| e.id > since).cloned().collect();
            }
            let now = Instant::now();
            if now >= deadline {
                return Vec::new();
            }
            g = self
                .changed
                .wait_timeout(g, deadline - now)
                .expect("events")
                .0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn ids_increase_by_one_and_old_ones_are_dropped_past_the_bound() {
        let log = EventLog::new();
        assert_eq!(log.since(0, Duration::ZERO), vec![]);
        for i in 0..EVENTS_KEPT as u64 {
            assert_eq!(log.push("x", Value::from(i)), i + 1);
        }
        let all = log.since(0, Duration::ZERO);
        assert_eq!(all.len(), EVENTS_KEPT);
        assert_eq!(all[0].id, 1, "at the bound nothing is dropped");
        log.push("x", Value::Null);
        let all = log.since(0, Duration::ZERO);
        assert_eq!(all.len(), EVENTS_KEPT);
        assert_eq!(all[0].id, 2, "one past the bound: a gap after 0");
        assert!(all.windows(2).all(|w| w[1].id == w[0].id + 1));
        assert_eq!(log.since(log.last_id() - 1, Duration::ZERO).len(), 1);
    }

    /// A waiting reader wakes as soon as an event arrives.
    #[test]
    fn a_reader_waits_for_the_next_event() {
        let log = Arc::new(EventLog::new());
        let l = log.clone();
        let t = std::thread::spawn(move || l.since(0, Duration::from_secs(30)));
        // The reader may or may not be waiting yet; either way it gets it.
        log.push("tracker_switched", serde_json::json!({"to": "x"}));
        let got = t.join().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].to_json()["type"], "tracker_switched");
    }
}
