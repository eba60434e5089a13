//! The client's tracker session: turns user commands into requests, matches
//! responses by request id, and keeps the user's session alive across
//! trackers.
//!
//! Commands run one at a time, in order, on one tracker connection. When it fails (closed, refused, or a
//! request unanswered for `request_timeout`), the session connects to the
//! next tracker of `tracker_info.txt`, resumes the session by token, and
//! re-sends every pending request with its original id, so a command
//! completes exactly once (the trackers answer a retry from their record).
//! A tracker that answers `NotReady` (catching up, or an election under way)
//! is retried a few times, then left for the next. When no tracker answers,
//! pending commands fail with [`ClientError::NoTracker`] and the session
//! keeps trying in the background with exponential backoff.
//!
//! Failure detection is the session's own, never the OS's (issue 17: a
//! tracker host that vanishes sends no close): a connection attempt and the
//! tracker's hello must each complete within `request_timeout`, a request
//! must be answered within it, and an idle session pings every
//! `ping_interval`. So a silent tracker is left within `ping_interval +
//! request_timeout` (4 s with the defaults) of the last answer, for the
//! next tracker, where the session resumes by token (still logged in).//!
//! The files: `interface.rs` (config, inputs, outputs, events, errors,
//! [`PENDING_MAX`]), this file (the machine, its inputs and invariants),
//! `link.rs` (connecting, failover, backoff), `requests.rs` (sending,
//! deadlines, answers).

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::Bytes;
use p2p_proto::{
    ClientId, FromTracker, Hello, KeyId, Request, RequestId, Role, SessionToken, UserName, Wire,
};

use crate::machine::{Outbox, impl_machine};
use crate::time::{Duration, Instant};
use crate::timer::TimerTable;
mod interface;
mod link;
mod requests;

pub use interface::{
    ClientError, CommandTag, KeyMismatch, PENDING_MAX, SessionConfig, SessionConn, SessionEvent,
    SessionInput, SessionOutput, Timer, TrackerOut,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Down,
    Connecting,
    AwaitHello,
    Up,
}

#[derive(Debug, Clone)]
struct Pending {
    /// `None` for the session's own requests (resume, ping).
    tag: Option<CommandTag>,
    req: Request,
    sent: Option<Instant>,
    not_ready: u32,
}

/// The session machine.
pub struct ClientSession {
    cfg: SessionConfig,
    client: ClientId,
    next_id: u64,
    token: Option<SessionToken>,
    user: Option<UserName>,
    link: Link,
    /// While connecting or waiting for the tracker's hello: give up on
    /// this tracker at this time (our own deadline, not the OS's).
    handshake_by: Instant,
    conn: SessionConn,
    tracker: usize,
    /// Trackers tried since the last one that worked.
    failures: usize,
    backoff: Duration,
    pending: BTreeMap<RequestId, Pending>,
    timers: TimerTable<Timer>,
    out: Outbox<SessionOutput>,
}

impl ClientSession {
    pub fn new(mut cfg: SessionConfig, seed: u64, now: Instant) -> Self {
        // One pin slot per tracker, whatever the caller filled in.
        cfg.tracker_keys.resize(cfg.trackers.len(), None);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut id = [0u8; 16];
        rng.fill_bytes(&mut id);
        let tracker = cfg.first.min(cfg.trackers.len().saturating_sub(1));
        let mut s = ClientSession {
            client: ClientId(id),
            next_id: 1,
            token: None,
            user: None,
            link: Link::Down,
            handshake_by: now,
            conn: 0,
            tracker,
            failures: 0,
            backoff: cfg.backoff_min,
            pending: BTreeMap::new(),
            timers: TimerTable::new(),
            out: Outbox::new(),
            cfg,
        };
        s.connect(now);
        s
    }

    // ------------------------------------------------------------ getters

    pub fn user(&self) -> Option<&UserName> {
        self.user.as_ref()
    }
    pub fn token(&self) -> Option<SessionToken> {
        self.token
    }
    pub fn client_id(&self) -> ClientId {
        self.client
    }
    pub fn tracker(&self) -> SocketAddr {
        self.cfg.trackers[self.tracker]
    }
    /// The key pinned for tracker `index` (configured or learned), if any.
    pub fn tracker_key(&self, index: usize) -> Option<KeyId> {
        self.cfg.tracker_keys.get(index).copied().flatten()
    }
    pub fn is_up(&self) -> bool {
        self.link == Link::Up
    }
    pub fn in_flight(&self) -> usize {
        self.pending.values().filter(|p| p.tag.is_some()).count()
    }

    pub fn poll_output(&mut self) -> Option<SessionOutput> {
        self.out.pop_front()
    }
    pub fn poll_timeout(&self) -> Option<(Instant, Timer)> {
        self.timers.next()
    }

    // ------------------------------------------------------------ commands

    /// Feeds one input (see [`SessionInput`]); drain
    /// [`ClientSession::poll_output`] afterwards.
    pub fn handle_input(&mut self, now: Instant, input: SessionInput) {
        self.out.check_drained("client session");
        match input {
            SessionInput::Command { tag, req } => self.command(now, tag, req),
            SessionInput::Connected { conn, peer } => self.handle_connected(now, conn, peer),
            SessionInput::ConnectFailed { conn } => self.handle_connect_failed(now, conn),
            SessionInput::Frame { conn, payload } => self.handle_frame(now, conn, payload),
            SessionInput::Closed { conn } => self.handle_closed(now, conn),
        }
        self.debug_check();
    }

    /// Starts a user command; its result comes back as `Done { tag, .. }`.
    fn command(&mut self, now: Instant, tag: CommandTag, req: Request) {
        if self.in_flight() >= PENDING_MAX {
            self.out.push_back(SessionOutput::Done {
                tag,
                result: Err(ClientError::Busy),
            });
            return;
        }
        let id = self.fresh_id();
        self.pending.insert(
            id,
            Pending {
                tag: Some(tag),
                req,
                sent: None,
                not_ready: 0,
            },
        );
        self.send_pending(now);
    }

    // ------------------------------------------------------------ inputs

    /// The TLS handshake is done: the tracker proved `peer`. A pinned
    /// tracker must prove its pin (else close, send nothing, tell the user,
    /// fail over); an unpinned one is pinned now (trust on first use).
    fn handle_connected(&mut self, now: Instant, conn: SessionConn, peer: KeyId) {
        if conn != self.conn || self.link != Link::Connecting {
            return;
        }
        let index = self.tracker;
        match self.cfg.tracker_keys[index] {
            Some(pinned) if pinned != peer => {
                self.out.push_back(SessionOutput::Close { conn });
                let m = KeyMismatch {
                    index,
                    addr: self.cfg.trackers[index],
                    presented: peer,
                    pinned,
                };
                self.out
                    .push_back(SessionOutput::Event(SessionEvent::TrackerKeyRefused(m)));
                self.fail_over(now);
                return;
            }
            Some(_) => {}
            None => {
                self.cfg.tracker_keys[index] = Some(peer);
                self.out
                    .push_back(SessionOutput::PinTracker { index, key: peer });
            }
        }
        self.link = Link::AwaitHello;
        let msg = TrackerOut::Hello(Hello::new(Role::Client));
        self.out.push_back(SessionOutput::Send { conn, msg });
        self.handshake_by = now + self.cfg.request_timeout;
        self.arm_request_timer(now);
    }

    fn handle_connect_failed(&mut self, now: Instant, conn: SessionConn) {
        if conn == self.conn {
            self.fail_over(now);
        }
    }

    fn handle_closed(&mut self, now: Instant, conn: SessionConn) {
        if conn == self.conn && self.link != Link::Down {
            self.fail_over(now);
        }
    }

    /// One frame from the tracker.
    fn handle_frame(&mut self, now: Instant, conn: SessionConn, payload: Bytes) {
        if conn != self.conn {
            return;
        }
        if self.link == Link::AwaitHello {
            match Hello::from_bytes(payload) {
                Ok(h) if h.role == Role::Server => self.on_up(now),
                _ => self.fail_over(now),
            }
            return;
        }
        match FromTracker::from_bytes(payload) {
            Ok(FromTracker::Response { id, outcome }) => self.on_response(now, id, outcome),
            Ok(FromTracker::Notice { text }) => self
                .out
                .push_back(SessionOutput::Event(SessionEvent::Notice(text))),
            Ok(FromTracker::Peers { group, file, peers }) => {
                self.out
                    .push_back(SessionOutput::Event(SessionEvent::Peers {
                        group,
                        file,
                        peers,
                    }))
            }
            Ok(FromTracker::Fatal { .. }) | Err(_) => self.fail_over(now),
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.out.check_drained("client session");
        for t in self.timers.expire(now) {
            match t {
                Timer::Request => self.on_request_timer(now),
                Timer::Ping => self.ping(now),
                Timer::Reconnect => self.connect(now),
                Timer::Retry => self.send_pending(now),
            }
        }
        self.debug_check();
    }

    // ------------------------------------------------------------ invariants

    fn debug_check(&self) {
        if cfg!(debug_assertions) {
            self.check_invariants();
        }
    }

    /// Panics if the session's bookkeeping disagrees with itself (called
    /// after every input and timeout in debug builds, and by the simulator).
    pub fn check_invariants(&self) {
        if let Err(e) = self.invariant_violation() {
            panic!("client session invariant broken: {e}");
        }
    }

    fn invariant_violation(&self) -> Result<(), String> {
        if !self.timers.is_consistent() {
            return Err("timer table indexes disagree".into());
        }
        if self.tracker >= self.cfg.trackers.len() {
            return Err(format!("tracker index {} out of range", self.tracker));
        }
        if self.cfg.tracker_keys.len() != self.cfg.trackers.len() {
            return Err("one pin slot per tracker".into());
        }
        if self.link == Link::AwaitHello || self.link == Link::Up {
            // Nothing is said to a tracker whose key is not its pin.
            if self.cfg.tracker_keys[self.tracker].is_none() {
                return Err("talking to a tracker with no pinned key".into());
            }
        }
        if self.token.is_some() != self.user.is_some() {
            return Err("a session token without a user, or the reverse".into());
        }
        if self.in_flight() > PENDING_MAX {
            return Err(format!("{} commands in flight", self.in_flight()));
        }
        if let Some(id) = self.pending.keys().next_back()
            && id.0 >= self.next_id
        {
            return Err(format!("pending request {} not below next id", id.0));
        }
        let sent = self.pending.values().filter(|p| p.sent.is_some()).count();
        if sent > 1 {
            return Err(format!("{sent} requests in flight at once"));
        }
        if self.timers.is_set(Timer::Ping) && self.link != Link::Up {
            return Err(format!("ping armed while the link is {:?}", self.link));
        }
        Ok(())
    }
}

impl_machine!(ClientSession, SessionInput, SessionOutput, Timer);

#[cfg(test)]
mod tests;
