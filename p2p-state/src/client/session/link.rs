//! The session's connection life: dialing the current tracker, coming up
//! (resume first, then re-send what waits), failing over to the next
//! tracker, and the backoff once every tracker has failed.

use p2p_proto::Request;

use super::{ClientError, ClientSession, Link, Pending, SessionEvent, SessionOutput, Timer};
use crate::time::{Duration, Instant};

impl ClientSession {
    pub(super) fn connect(&mut self, now: Instant) {
        self.conn += 1;
        self.link = Link::Connecting;
        let addr = self.cfg.trackers[self.tracker];
        self.out.push_back(SessionOutput::Connect {
            conn: self.conn,
            addr,
        });
        // A tracker host that vanished may never refuse: our deadline.
        self.handshake_by = now + self.cfg.request_timeout;
        self.arm_request_timer(now);
    }

    pub(super) fn on_up(&mut self, now: Instant) {
        self.link = Link::Up;
        self.failures = 0;
        self.backoff = self.cfg.backoff_min;
        // Resume first, so the requests re-sent after it run in the session.
        if self.token.is_some() {
            let id = self.fresh_id();
            self.pending.insert(
                id,
                Pending {
                    tag: None,
                    req: Request::Resume,
                    sent: None,
                    not_ready: 0,
                },
            );
        }
        for p in self.pending.values_mut() {
            p.sent = None;
        }
        self.send_pending(now);
    }

    /// The current tracker is gone: move to the next one.
    pub(super) fn fail_over(&mut self, now: Instant) {
        let from = self.cfg.trackers[self.tracker];
        if self.link != Link::Down && self.link != Link::Connecting {
            self.out.push_back(SessionOutput::Close { conn: self.conn });
        }
        self.link = Link::Down;
        self.timers.clear(Timer::Request);
        self.timers.clear(Timer::Ping);
        self.pending.retain(|_, p| p.tag.is_some()); // resume/ping are re-made
        self.failures += 1;
        self.tracker = (self.tracker + 1) % self.cfg.trackers.len();
        if self.failures >= self.cfg.trackers.len() {
            self.give_up_round(now);
            return;
        }
        let to = self.cfg.trackers[self.tracker];
        if from != to {
            self.out
                .push_back(SessionOutput::Event(SessionEvent::FailedOver { from, to }));
        }
        self.connect(now);
    }

    /// Every tracker failed once: fail what waits, back off, try again.
    pub(super) fn give_up_round(&mut self, now: Instant) {
        let tried = self
            .cfg
            .trackers
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let pending = std::mem::take(&mut self.pending);
        for p in pending.into_values() {
            if let Some(tag) = p.tag {
                let result = Err(ClientError::NoTracker {
                    tried: tried.clone(),
                });
                self.out.push_back(SessionOutput::Done { tag, result });
            }
        }
        self.out
            .push_back(SessionOutput::Event(SessionEvent::Unreachable));
        self.failures = 0;
        self.timers.set(Timer::Reconnect, now + self.backoff);
        self.backoff = Duration((self.backoff.0 * 2).min(self.cfg.backoff_max.0));
    }
}
