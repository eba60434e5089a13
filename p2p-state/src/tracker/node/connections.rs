//! Connections: accepted and dialed ones (capped per source address and
//! in all, peer trackers with a pinned key not counted), hellos and what
//! they make of a connection (client or peer tracker, see `auth.rs`),
//! closes, silent peer trackers, dialing and redialing with backoff, and
//! refusing a connection (an error frame, then close).

use super::*;

impl Tracker {
    pub(super) fn add_conn(
        &mut self,
        now: Instant,
        conn: ConnId,
        addr: Option<SocketAddr>,
        key: KeyId,
        dialed: Option<TrackerId>,
    ) {
        let kind = ConnKind::AwaitHello { dialed };
        // Accepted connections count against the caps, except a peer
        // tracker's (its key pinned): a flood never cuts replication.
        let capped = addr
            .filter(|_| !self.pins.values().any(|k| *k == key))
            .map(|a| a.ip());
        let c = Conn {
            addr,
            capped,
            key,
            kind,
        };
        self.conns.insert(conn, c);
        self.timers
            .set(NodeTimer::Hello(conn), now + self.cfg.hello_timeout);
        let Some(ip) = capped else {
            return;
        };
        let from = self.per_addr.entry(ip).or_default();
        *from += 1;
        let from = *from;
        self.accepted += 1;
        let why = if from > self.cfg.conns_per_addr_max {
            let max = self.cfg.conns_per_addr_max;
            format!("too many connections from {ip} (at most {max}); close some and retry")
        } else if self.accepted > self.cfg.client_conns_max {
            let max = self.cfg.client_conns_max;
            format!("too many client connections (at most {max}); retry later")
        } else {
            return;
        };
        // Told as a client is told (our hello, then why), before the close.
        self.send(conn, Outgoing::Hello(Hello::new(WireRole::Server)));
        let reason = Text::new(why.clone());
        self.send(conn, Outgoing::Client(FromTracker::Fatal { reason }));
        self.refuse(now, conn, why);
    }

    pub(super) fn on_frame(&mut self, now: Instant, conn: ConnId, payload: Bytes) {
        let Some(c) = self.conns.get(&conn) else {
            return; // still queued when the connection was closed
        };
        match c.kind.clone() {
            ConnKind::AwaitHello { dialed, .. } => self.on_hello(now, conn, dialed, payload),
            ConnKind::Client { .. } => match ClientRequest::from_bytes(payload) {
                Ok(req) => {
                    let idle = now + self.cfg.client_idle_timeout;
                    self.timers.set(NodeTimer::Idle(conn), idle);
                    self.on_request(now, conn, req)
                }
                Err(e) => self.refuse(now, conn, e.to_string()),
            },
            ConnKind::Tracker(id) => match ReplMsg::from_bytes(payload) {
                Ok(msg) => self
                    .repl
                    .feed()
                    .handle_input(now, ReplInput::Msg { from: id, msg }),
                Err(e) => self.refuse(now, conn, e.to_string()),
            },
        }
    }

    pub(super) fn on_hello(
        &mut self,
        now: Instant,
        conn: ConnId,
        dialed: Option<TrackerId>,
        payload: Bytes,
    ) {
        let hello = match Hello::from_bytes(payload) {
            Ok(h) => h,
            Err(e) => {
                if dialed.is_none() {
                    // Our hello lets the other side see the version too.
                    self.send(conn, Outgoing::Hello(Hello::new(WireRole::Server)));
                }
                return self.refuse(now, conn, e.to_string());
            }
        };
        match (dialed, hello.role) {
            (Some(t), WireRole::Server) => self.tracker_up(now, conn, t),
            (None, WireRole::Client) => {
                // (Client connections were counted when accepted.)
                self.send(conn, Outgoing::Hello(Hello::new(WireRole::Server)));
                self.set_kind(conn, ConnKind::Client { session: None });
                let idle = now + self.cfg.client_idle_timeout;
                self.timers.set(NodeTimer::Idle(conn), idle);
                let addr = self.conns[&conn].addr;
                if let Some(addr) = addr {
                    self.event(TrackerEvent::ClientConnected { conn, addr });
                }
            }
            (None, WireRole::Tracker(t)) if t != self.cfg.id && self.knows(t) => {
                // The key first: an impostor learns nothing, not even our hello.
                if self.authenticate_tracker(now, conn, t) {
                    self.send(conn, Outgoing::Hello(Hello::new(WireRole::Server)));
                    self.tracker_up(now, conn, t);
                }
            }
            (_, role) => self.refuse(now, conn, format!("unexpected role {role:?} in hello")),
        }
    }

    pub(super) fn knows(&self, t: TrackerId) -> bool {
        self.cfg.trackers.iter().any(|(id, _)| *id == t)
    }

    pub(super) fn tracker_up(&mut self, now: Instant, conn: ConnId, t: TrackerId) {
        if let Some(old) = self.tracker_conns.insert(t, conn) {
            // A newer connection replaces the old one.
            self.forget_conn(old);
            self.out.push_back(Output::Close {
                conn: old,
                why: Text::new("replaced by a newer connection"),
            });
            self.repl
                .feed()
                .handle_input(now, ReplInput::Disconnected(t));
        }
        self.timers.clear(NodeTimer::Redial(t));
        self.backoff.remove(&t);
        self.set_kind(conn, ConnKind::Tracker(t));
        self.event(TrackerEvent::ConnectedToTracker { tracker: t });
        self.repl.feed().handle_input(now, ReplInput::Connected(t));
    }

    pub(super) fn set_kind(&mut self, conn: ConnId, kind: ConnKind) {
        if let ConnKind::Tracker(_) = kind {
            // A peer tracker (its key now checked) leaves the caps.
            self.uncap(conn);
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.kind = kind;
            self.timers.clear(NodeTimer::Hello(conn));
        }
    }

    /// Removes a connection from the table, with its hello deadline.
    pub(super) fn forget_conn(&mut self, conn: ConnId) -> Option<Conn> {
        self.timers.clear(NodeTimer::Hello(conn));
        self.timers.clear(NodeTimer::Idle(conn));
        self.uncap(conn);
        self.push.forget(conn);
        self.conns.remove(&conn)
    }

    /// `conn` no longer counts against the connection caps.
    pub(super) fn uncap(&mut self, conn: ConnId) {
        let Some(ip) = self.conns.get_mut(&conn).and_then(|c| c.capped.take()) else {
            return;
        };
        if let Some(n) = self.per_addr.get_mut(&ip) {
            self.accepted -= 1;
            *n -= 1;
            if *n == 0 {
                self.per_addr.remove(&ip);
            }
        }
    }

    pub(super) fn on_closed(&mut self, now: Instant, conn: ConnId) {
        let Some(c) = self.forget_conn(conn) else {
            return;
        };
        match c.kind {
            ConnKind::Tracker(t) => {
                if self.tracker_conns.get(&t) == Some(&conn) {
                    self.tracker_conns.remove(&t);
                    self.repl
                        .feed()
                        .handle_input(now, ReplInput::Disconnected(t));
                    self.event(TrackerEvent::DisconnectedFromTracker { tracker: t });
                    if t > self.cfg.id {
                        self.schedule_redial(now, t);
                    }
                }
            }
            ConnKind::Client { session } => {
                self.event(TrackerEvent::ClientGone { conn });
                if let Some(token) = session
                    && !self.session_attached(token)
                {
                    self.timers
                        .set(NodeTimer::Offline(token), now + self.cfg.offline_grace);
                }
            }
            ConnKind::AwaitHello { dialed, .. } => {
                if let Some(t) = dialed {
                    self.schedule_redial(now, t);
                }
            }
        }
    }

    /// The replication machine gave up on tracker `t`, silent past the
    /// peer timeout (already counted as disconnected there): close its
    /// connection without waiting for TCP to notice, and redial as after
    /// a close (the lower id dials).
    pub(super) fn drop_silent_tracker(&mut self, now: Instant, t: TrackerId) {
        let Some(conn) = self.tracker_conns.remove(&t) else {
            return;
        };
        self.forget_conn(conn);
        self.out.push_back(Output::Close {
            conn,
            why: Text::new(format!("tracker {t} silent past the peer timeout")),
        });
        self.event(TrackerEvent::DisconnectedFromTracker { tracker: t });
        if t > self.cfg.id {
            self.schedule_redial(now, t);
        }
    }

    pub(super) fn dial(&mut self, t: TrackerId) {
        let hello_pending = self
            .conns
            .values()
            .any(|c| matches!(c.kind, ConnKind::AwaitHello { dialed: Some(d), .. } if d == t));
        if self.tracker_conns.contains_key(&t) || hello_pending || !self.dialing.insert(t) {
            return;
        }
        if let Some(&(_, addr)) = self.cfg.trackers.iter().find(|(id, _)| *id == t) {
            self.out.push_back(Output::Dial { tracker: t, addr });
        }
    }

    pub(super) fn schedule_redial(&mut self, now: Instant, t: TrackerId) {
        let backoff = match self.backoff.get(&t) {
            Some(b) => Duration((b.0 * 2).min(self.cfg.redial_max.0)),
            None => self.cfg.redial_min,
        };
        self.backoff.insert(t, backoff);
        self.timers.set(NodeTimer::Redial(t), now + backoff);
    }

    /// Refuses a connection: an error frame where its channel has one, then close.
    pub(super) fn refuse(&mut self, now: Instant, conn: ConnId, error: String) {
        let Some(c) = self.forget_conn(conn) else {
            return;
        };
        let reason = Text::new(error.clone());
        match c.kind {
            ConnKind::Client { session } => {
                self.send_raw(
                    conn,
                    Outgoing::Client(FromTracker::Fatal {
                        reason: reason.clone(),
                    }),
                );
                // As on a close: the session goes offline after the grace.
                if let Some(token) = session
                    && !self.session_attached(token)
                {
                    self.timers
                        .set(NodeTimer::Offline(token), now + self.cfg.offline_grace);
                }
            }
            ConnKind::Tracker(t) => {
                self.send_raw(
                    conn,
                    Outgoing::Repl(ReplMsg::Fatal {
                        reason: reason.clone(),
                    }),
                );
                if self.tracker_conns.get(&t) == Some(&conn) {
                    self.tracker_conns.remove(&t);
                    // The driver's Closed will find no connection; tell repl now.
                    self.repl
                        .feed()
                        .handle_input(now, ReplInput::Disconnected(t));
                    // As on a close: the lower id dials again, or nobody does.
                    if t > self.cfg.id {
                        self.schedule_redial(now, t);
                    }
                }
            }
            ConnKind::AwaitHello { dialed, .. } => {
                if let Some(t) = dialed {
                    self.schedule_redial(now, t);
                }
            }
        }
        self.event(TrackerEvent::BadInput {
            conn,
            addr: c.addr,
            error,
        });
        self.out.push_back(Output::Close { conn, why: reason });
    }
}
