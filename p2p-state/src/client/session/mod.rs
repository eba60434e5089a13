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
//! next tracker, where the session resumes by token (still logged in).

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::Bytes;
use p2p_proto::{
    ClientId, ClientRequest, FileName, FromTracker, GroupName, Hello, KeyId, Outcome, PeerInfo,
    Reply, Request, RequestId, Role, SeederKey, SessionToken, Text, TrackerError, UserName, Wire,
};

use crate::machine::{Outbox, impl_machine};
use crate::time::{Duration, Instant};
use crate::timer::TimerTable;

/// A user command's number, chosen by the caller; results carry it back.
pub type CommandTag = u64;

/// Most commands waiting for an answer at once.
pub const PENDING_MAX: usize = 1024;

#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Trackers in `tracker_info.txt` order.
    pub trackers: Vec<SocketAddr>,
    /// Which of them to try first.
    pub first: usize,
    /// A request unanswered this long means the tracker is gone.
    pub request_timeout: Duration,
    /// With nothing in flight, ping this often (liveness both ways).
    pub ping_interval: Duration,
    /// Wait between `NotReady` retries on the same tracker.
    pub not_ready_retry: Duration,
    /// `NotReady` answers in a row before moving to the next tracker.
    pub not_ready_max: u32,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// The key each tracker must present, by position in `trackers`:
    /// pinned in `tracker_info.txt` or learned on first contact (kept in
    /// the data directory's `known_trackers`); `None` is not pinned yet.
    pub tracker_keys: Vec<Option<KeyId>>,
}

impl SessionConfig {
    pub fn new(trackers: Vec<SocketAddr>, first: usize) -> Self {
        let tracker_keys = vec![None; trackers.len()];
        SessionConfig {
            tracker_keys,
            trackers,
            first,
            request_timeout: Duration::from_secs(3),
            ping_interval: Duration::from_secs(1),
            not_ready_retry: Duration::from_millis(200),
            not_ready_max: 15,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
        }
    }
}

/// Why a command did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Tracker(#[from] TrackerError),
    #[error("no tracker reachable (tried {tried}); retrying in the background")]
    NoTracker { tried: String },
    #[error("too many commands in flight (wait for some to finish)")]
    Busy,
    /// The tracker's metadata for a download does not hold together
    /// ([`crate::download::check_meta`]); nothing was started.
    #[error("refusing to download {file}: {error}")]
    BadMetadata {
        file: p2p_proto::FileName,
        error: crate::download::DownloadError,
    },
}

/// Connection number: stale events from an old connection are ignored.
pub type SessionConn = u64;

/// What the owner tells the session.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionInput {
    /// Start a user command; its result comes back as
    /// [`SessionOutput::Done`] with `tag`.
    Command {
        tag: CommandTag,
        req: Request,
    },
    /// The connection of a [`SessionOutput::Connect`] is up and its TLS
    /// handshake done; `peer` is the key the tracker proved it holds.
    Connected {
        conn: SessionConn,
        peer: KeyId,
    },
    ConnectFailed {
        conn: SessionConn,
    },
    /// One frame from the tracker.
    Frame {
        conn: SessionConn,
        payload: Bytes,
    },
    Closed {
        conn: SessionConn,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum SessionOutput {
    /// Open a TCP connection to `addr`; answer with
    /// [`SessionInput::Connected`] or [`SessionInput::ConnectFailed`] for
    /// `conn`.
    Connect {
        conn: SessionConn,
        addr: SocketAddr,
    },
    /// Put this frame on connection `conn`.
    Send {
        conn: SessionConn,
        frame: Bytes,
    },
    Close {
        conn: SessionConn,
    },
    /// Tracker `index` was not pinned and proved `key` on first contact
    /// (trust on first use): keep the pin (the data directory's
    /// `known_trackers`); the session holds it from now on.
    PinTracker {
        index: usize,
        key: KeyId,
    },
    /// A command finished.
    Done {
        tag: CommandTag,
        result: Result<Reply, ClientError>,
    },
    Event(SessionEvent),
}

#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    /// One line for the user: the tracker changed.
    FailedOver {
        from: SocketAddr,
        to: SocketAddr,
    },
    /// Logged in (the seeder learns its identity; shares are re-announced).
    LoggedIn {
        user: UserName,
        seeder_key: SeederKey,
    },
    /// Resumed on another tracker (shares are re-announced there too).
    Resumed {
        user: UserName,
    },
    LoggedOut,
    /// The session is gone (ended elsewhere or expired): log in again.
    SessionLost,
    /// The tracker said something unprompted.
    Notice(Text),
    /// The tracker told us of new sources of a file we asked the peers of
    /// (`FromTracker::Peers`); the node hands them to the download.
    Peers {
        group: GroupName,
        file: FileName,
        peers: Vec<PeerInfo>,
    },
    /// No tracker answers; retrying in the background.
    Unreachable,
    /// A tracker presented another key than the one pinned for it: the
    /// connection was closed before anything was sent, and the session
    /// moved on to the next tracker. Its `Display` is the user's line.
    TrackerKeyRefused(KeyMismatch),
}

/// A tracker proved `presented` but `pinned` is the key it must have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "tracker {addr} presented key {presented} but it is pinned to {pinned} \
     (tracker_info.txt or <data dir>/known_trackers); nothing was sent to it; \
     if its key really changed, update that line"
)]
pub struct KeyMismatch {
    pub index: usize,
    pub addr: SocketAddr,
    pub presented: KeyId,
    pub pinned: KeyId,
}

/// The session's deadlines; the key is the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    Request,
    Ping,
    Reconnect,
    Retry,
}

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
        let frame = Hello::new(Role::Client).to_bytes();
        self.out.push_back(SessionOutput::Send { conn, frame });
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

    // ------------------------------------------------------------ connection life

    fn connect(&mut self, now: Instant) {
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

    fn on_up(&mut self, now: Instant) {
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
    fn fail_over(&mut self, now: Instant) {
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
    fn give_up_round(&mut self, now: Instant) {
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

    // ------------------------------------------------------------ requests

    fn fresh_id(&mut self) -> RequestId {
        let id = RequestId(self.next_id);
        self.next_id += 1;
        id
    }

    /// Sends the next request if none is in flight: the session's own
    /// (resume, ping) first, then user commands in the order given. One at a
    /// time, because the tracker validates a write against the state its
    /// predecessors left.
    fn send_pending(&mut self, now: Instant) {
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
                frame: msg.to_bytes(),
            });
        }
        self.arm_request_timer(now);
    }

    fn arm_request_timer(&mut self, now: Instant) {
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

    fn on_request_timer(&mut self, now: Instant) {
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

    fn ping(&mut self, now: Instant) {
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

    fn on_response(&mut self, now: Instant, id: RequestId, outcome: Outcome) {
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
    fn note_session(&mut self, req: &Request, outcome: &Outcome) {
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
