//! The session's requests: one in flight at a time (the session's own
//! resume and ping first), the request deadline and the idle ping, the
//! answers matched by request id (`NotReady` retried, then failed over),
//! and what login, resume and logout answers teach the session.

use p2p_proto::{ClientRequest, Outcome, Reply, Request, RequestId, TrackerError};

use super::{
    ClientError, ClientSession, Link, Pending, SessionEvent, SessionOutput, Timer, TrackerOut,
};
use crate::time::Instant;

impl ClientSession {
    pub(super) fn fresh_id(&mut self) -> RequestId {
        let id = RequestId(self.next_id);
        self.next_id += 1;
        id
    }

    /// Sends the next request if none is in flight: the session's own
    /// (resume, ping) first, then user commands in the order given. One at a
    /// time, because the tracker validates a write against the state its
    /// predecessors left.
    pub(super) fn send_pending(&mut self, now: Instant) {
        if self.link != Link::Up || self.pending.values().any(|p| p.sent.is_some()) {
            self.arm_request_timer(now);
            return;
        }
        let control = self
            .pending
            .iter()
            .find(|(_, p)| p.tag.is_none())
            .map(|(&id, _)| id);
        if let Some(id) = control.or_else(|| self.pending.keys().next().copied()) {
            let p = self.pending.get_mut(&id).expect("pending");
            p.sent = Some(now);
            let msg = ClientRequest {
                client: self.client,
                id,
                session: self.token,
                req: p.req.clone(),
            };
            self.out.push_back(SessionOutput::Send {
                conn: self.conn,
                msg: TrackerOut::Request(msg),
            });
        }
        self.arm_request_timer(now);
    }

    pub(super) fn arm_request_timer(&mut self, now: Instant) {
        match self.link {
            Link::Connecting | Link::AwaitHello => {
                // The handshake's deadline holds whatever waits meanwhile.
                self.timers.set(Timer::Request, self.handshake_by);
                self.timers.clear(Timer::Ping);
                return;
            }
            Link::Down => {
                self.timers.clear(Timer::Request);
                self.timers.clear(Timer::Ping);
                return;
            }
            Link::Up => {}
        }
        match self.pending.values().filter_map(|p| p.sent).min() {
            Some(t) => {
                self.timers
                    .set(Timer::Request, t + self.cfg.request_timeout);
                self.timers.clear(Timer::Ping);
            }
            None => {
                self.timers.clear(Timer::Request);
                if self.link == Link::Up && self.timers.get(Timer::Ping).is_none() {
                    self.timers.set(Timer::Ping, now + self.cfg.ping_interval);
                }
            }
        }
    }

    pub(super) fn on_request_timer(&mut self, now: Instant) {
        let oldest = self.pending.values().filter_map(|p| p.sent).min();
        let stalled = match self.link {
            Link::Up => oldest.is_some_and(|t| now.saturating_since(t) >= self.cfg.request_timeout),
            Link::AwaitHello | Link::Connecting => now >= self.handshake_by,
            Link::Down => false,
        };
        if stalled {
            self.fail_over(now);
        } else {
            self.arm_request_timer(now);
        }
    }

    pub(super) fn ping(&mut self, now: Instant) {
        if self.link == Link::Up && self.pending.is_empty() {
            let id = self.fresh_id();
            self.pending.insert(
                id,
                Pending {
                    tag: None,
                    req: Request::Ping,
                    sent: None,
                    not_ready: 0,
                },
            );
            self.send_pending(now);
        }
    }

    pub(super) fn on_response(&mut self, now: Instant, id: RequestId, outcome: Outcome) {
        let Some(mut p) = self.pending.remove(&id) else {
            return;
        };
        if outcome == Err(TrackerError::NotReady) {
            p.not_ready += 1;
            if p.not_ready > self.cfg.not_ready_max {
                self.pending.insert(
                    id,
                    Pending {
                        sent: None,
                        not_ready: 0,
                        ..p
                    },
                );
                self.fail_over(now);
                return;
            }
            p.sent = None;
            self.pending.insert(id, p);
            self.timers
                .set(Timer::Retry, now + self.cfg.not_ready_retry);
            self.timers.clear(Timer::Request);
            return;
        }
        self.note_session(&p.req, &outcome);
        if let Some(tag) = p.tag {
            self.out.push_back(SessionOutput::Done {
                tag,
                result: outcome.map_err(ClientError::Tracker),
            });
        }
        self.send_pending(now);
    }

    /// Learns the session from login / resume / logout answers.
    pub(super) fn note_session(&mut self, req: &Request, outcome: &Outcome) {
        let ev = match (req, outcome) {
            (
                _,
                Ok(Reply::LoggedIn {
                    user,
                    token,
                    seeder_key,
                }),
            ) => {
                self.token = Some(*token);
                self.user = Some(user.clone());
                Some(SessionEvent::LoggedIn {
                    user: user.clone(),
                    seeder_key: *seeder_key,
                })
            }
            (Request::Resume, Ok(Reply::Resumed { user })) => {
                Some(SessionEvent::Resumed { user: user.clone() })
            }
            (Request::Logout, Ok(_)) => {
                self.token = None;
                self.user = None;
                Some(SessionEvent::LoggedOut)
            }
            (_, Err(TrackerError::SessionUnknown)) if self.token.is_some() => {
                self.token = None;
                self.user = None;
                Some(SessionEvent::SessionLost)
            }
            _ => None,
        };
        if let Some(e) = ev {
            self.out.push_back(SessionOutput::Event(e));
        }
    }
}
