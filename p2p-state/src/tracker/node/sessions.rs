//! Sessions online and offline: a request with a session token attaches
//! the session to its connection (with the session's key, within its
//! lifetimes); a session whose connection dropped is shown offline after
//! the grace; and the ops the tracker decides on itself (a session online
//! or offline), proposed on the primary or sent to it from a backup.

use super::*;

impl Tracker {
    /// A request carrying a live session token attaches that session to this
    /// connection (after a failover, the first request does it); a session
    /// the state shows offline is brought back online. Only on a connection
    /// with the session's key, and only within its lifetimes.
    pub(super) fn bind_session(
        &mut self,
        now: Instant,
        conn: ConnId,
        req: &ClientRequest,
        key: KeyId,
    ) {
        let state = self.repl.get().state();
        let Ok((token, s)) = state.request_session(now, &self.cfg.state, req, key) else {
            return;
        };
        let offline = !s.online;
        if let Some(Conn {
            kind: ConnKind::Client { session },
            ..
        }) = self.conns.get_mut(&conn)
        {
            *session = Some(token);
        }
        self.timers.clear(NodeTimer::Offline(token));
        let recently = self
            .online_sent
            .get(&token)
            .is_some_and(|&t| now.saturating_since(t) < Duration::from_secs(1));
        if offline && !recently && self.repl.get().can_take_writes() {
            self.online_sent.insert(token, now);
            self.submit_system(
                now,
                OpKind::SetOnline {
                    token,
                    online: true,
                },
            );
        }
    }

    pub(super) fn session_attached(&self, token: SessionToken) -> bool {
        self.conns.values().any(|c| {
            c.kind
                == ConnKind::Client {
                    session: Some(token),
                }
        })
    }

    pub(super) fn mark_offline(&mut self, now: Instant, token: SessionToken) {
        let online = self
            .repl
            .get()
            .state()
            .session(&token)
            .is_some_and(|s| s.online);
        if online && !self.session_attached(token) {
            self.submit_system(
                now,
                OpKind::SetOnline {
                    token,
                    online: false,
                },
            );
        }
    }

    /// An op the tracker itself decides on: proposed here on the primary,
    /// sent to the primary (as a re-submission, re-validated there) otherwise.
    pub(super) fn submit_system(&mut self, now: Instant, kind: OpKind) {
        match (self.repl.get().role(), self.repl.get().primary()) {
            (Role::Primary, _) => {
                let input = ReplInput::Propose {
                    origin: None,
                    kind,
                    tag: None,
                };
                self.repl.feed().handle_input(now, input);
            }
            (Role::Backup, Some(p)) => {
                if let Some(&conn) = self.tracker_conns.get(&p) {
                    let op = p2p_proto::Op {
                        at_ms: now.as_millis(),
                        origin: None,
                        kind,
                    };
                    self.send(conn, Outgoing::Repl(ReplMsg::Resubmit { fwd: 0, op }));
                }
            }
            (Role::Backup, None) => {}
        }
    }
}
