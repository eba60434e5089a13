//! The tracker machine a driver runs: connections and hellos, client
//! requests (reads served locally, writes sequenced by the primary or
//! forwarded to it), sessions going offline when their client vanishes,
//! replication ([`Repl`] over [`TrackerState`]) and the console.
//!
//! Drivers feed [`Input`]s (connections, raw frames, persistence done,
//! password work done, console lines) and execute [`Output`]s (send, close,
//! dial, persist, password work). The machine decodes every frame itself,
//! so what happens on bad input (an error frame, then close) is decided
//! here, not in a driver.
//!
//! Trackers authenticate each other before anything else (`node_auth.rs`):
//! a peer tracker's connection counts only once the key it proved in the
//! TLS handshake is the one pinned for the tracker id it claims (pinned in
//! the config, or learned on first contact and announced with
//! [`Output::PinTracker`]); any other is closed right after its hello, with
//! no replication message decoded. Client sessions answer only to the key
//! that logged in, and expire (`node_auth.rs`: the primary proposes
//! `ExpireSession` for sessions past their lifetimes).
//!
//! Argon2 is slow on purpose, so a login or create_user on the primary
//! hands its password work to the driver ([`Output::Password`], at most
//! [`PASSWORD_RUNNING_MAX`] at once; the rest wait in a queue fair across
//! sources, `login_guard.rs`) and is prepared again, against the state
//! of that moment, when [`Input::PasswordDone`] comes back; the machine
//! serves everyone else meanwhile. Failed logins back off per user name
//! and per source address (`login_guard.rs`), checked where the client's
//! connection is seen, before any password work.

use bytes::{Bytes, BytesMut};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use p2p_proto::{
    ClientRequest, DecodeError, Entry, FrameError, FromTracker, Hello, KeyId, LogPos, OpKind,
    Origin, Outcome, ReplMsg, Reply, Request, Role as WireRole, SessionToken, Text, TrackerError,
    TrackerId, Wire, encode_msg,
};

use super::login_guard::{FairQueue, Lane, LoginBackoff, PASSWORD_RUNNING_MAX};
use super::password::{PasswordDone, PasswordWork};
use super::repl::{
    Durable, Repl, ReplConfig, ReplEvent, ReplInput, ReplOutput, ReplTimer, Replicated, Role,
    Snapshot,
};
use super::state::{Prepared, Step, TrackerConfig, TrackerState};
use crate::machine::{Child, Outbox, impl_machine};
use crate::time::{Duration, Instant};
use crate::timer::TimerTable;

/// A connection, numbered by the driver.
pub type ConnId = u64;

impl Replicated for TrackerState {
    fn apply(&mut self, op: &p2p_proto::Op) -> Outcome {
        TrackerState::apply(self, op)
    }
    fn digest(&self) -> p2p_proto::Sha1Hash {
        TrackerState::digest(self)
    }
    fn encode_snapshot(&self) -> Bytes {
        TrackerState::encode_snapshot(self)
    }
    fn decode_snapshot(b: Bytes) -> Result<Self, DecodeError> {
        TrackerState::decode_snapshot(b)
    }
    fn revalidate(&self, op: &p2p_proto::Op) -> Result<(), TrackerError> {
        TrackerState::revalidate(self, op)
    }
    fn recorded(&self, origin: &Origin) -> Option<Outcome> {
        self.stored_outcome(origin).cloned()
    }
    fn conflict_of(&self, origin: &Origin) -> Option<TrackerError> {
        self.conflicts()
            .find(|c| c.op.origin.as_ref() == Some(origin))
            .map(|c| c.reason.clone())
    }
}

/// Most client connections one tracker holds (the default of
/// [`NodeConfig::client_conns_max`]; a driver lowers it to what its
/// descriptor limit allows).
pub const CLIENT_CONNS_MAX: usize = 10_000;
/// Most connections accepted from one source address at once, peer
/// trackers' included (issue 16 §3: one host cannot take every slot).
pub const CONNS_PER_ADDR_MAX: usize = 64;
/// A client connection that sends nothing for this long is closed (issue
/// 16 §1). Clients ping every second when idle (`SessionConfig`'s
/// `ping_interval`) and answer-less requests time out in seconds, so only
/// a silent or stuck peer gets there.
pub const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub id: TrackerId,
    /// Every tracker of the group with its address (this one included).
    pub trackers: Vec<(TrackerId, SocketAddr)>,
    pub state: TrackerConfig,
    pub repl: ReplConfig,
    /// A client whose connection dropped is shown offline (its seeding
    /// withdrawn) after this long, unless it came back.
    pub offline_grace: Duration,
    /// A connection that does not say hello within this is closed.
    pub hello_timeout: Duration,
    /// A client connection silent this long is closed
    /// ([`CLIENT_IDLE_TIMEOUT`]).
    pub client_idle_timeout: Duration,
    /// Most accepted connections at once, peer trackers' (pinned keys)
    /// not counted ([`CLIENT_CONNS_MAX`]).
    pub client_conns_max: usize,
    /// Most accepted connections from one address ([`CONNS_PER_ADDR_MAX`]).
    pub conns_per_addr_max: usize,
    pub redial_min: Duration,
    pub redial_max: Duration,
    /// The key each tracker must present, by position in `trackers`:
    /// pinned in `tracker_info.txt` or learned on first contact (then kept
    /// in the data directory's `known_trackers`); `None` is not pinned yet
    /// (trust on first use, announced by [`Output::PinTracker`]).
    pub tracker_keys: Vec<Option<KeyId>>,
    /// Planted bug (test switch): a peer tracker's key is never checked.
    /// Always false outside the simulator's teeth tests.
    #[doc(hidden)]
    pub bug_skip_tracker_key_check: bool,
}

impl NodeConfig {
    pub fn new(
        id: TrackerId,
        trackers: Vec<(TrackerId, SocketAddr)>,
        state: TrackerConfig,
    ) -> Self {
        let ids = trackers.iter().map(|(t, _)| *t).collect();
        let tracker_keys = vec![None; trackers.len()];
        NodeConfig {
            id,
            trackers,
            state,
            repl: ReplConfig::new(id, ids),
            offline_grace: Duration::from_secs(5),
            hello_timeout: Duration::from_secs(10),
            client_idle_timeout: CLIENT_IDLE_TIMEOUT,
            client_conns_max: CLIENT_CONNS_MAX,
            conns_per_addr_max: CONNS_PER_ADDR_MAX,
            redial_min: Duration::from_millis(100),
            redial_max: Duration::from_secs(5),
            tracker_keys,
            bug_skip_tracker_key_check: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A connection came in and its TLS handshake is done; `peer` is the
    /// key it proved it holds.
    Accepted {
        conn: ConnId,
        addr: SocketAddr,
        peer: KeyId,
    },
    /// A connection we asked for (an [`Output::Dial`]) is up, TLS done;
    /// `peer` is the key the other end proved it holds.
    Dialed {
        conn: ConnId,
        tracker: TrackerId,
        peer: KeyId,
    },
    DialFailed {
        tracker: TrackerId,
    },
    /// One whole frame's payload.
    Frame {
        conn: ConnId,
        payload: Bytes,
    },
    /// The connection's byte stream is not valid framing.
    BadFraming {
        conn: ConnId,
        error: FrameError,
    },
    Closed {
        conn: ConnId,
    },
    /// The log is durable through this index.
    Persisted {
        index: u64,
    },
    /// The argon2 work of an [`Output::Password`] is done.
    PasswordDone {
        job: u64,
        done: PasswordDone,
    },
    Console(ConsoleCmd),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleCmd {
    Status,
    Conflicts,
}

/// A message to put on a connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    Hello(Hello),
    Client(FromTracker),
    Repl(ReplMsg),
}

impl Outgoing {
    /// Appends this message as one frame.
    pub fn encode_frame(&self, out: &mut BytesMut) {
        match self {
            Outgoing::Hello(m) => encode_msg(m, out),
            Outgoing::Client(m) => encode_msg(m, out),
            Outgoing::Repl(m) => encode_msg(m, out),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Send {
        conn: ConnId,
        msg: Outgoing,
    },
    /// Close after what was sent before has gone out.
    Close {
        conn: ConnId,
        why: Text,
    },
    Dial {
        tracker: TrackerId,
        addr: SocketAddr,
    },
    Persist {
        from_index: u64,
        entries: Vec<Entry>,
    },
    PersistSnapshot {
        at: LogPos,
        data: Bytes,
        reset_log: bool,
    },
    /// Replace the stored re-submission queue with `entries` (in order with
    /// the other persist outputs; see [`ReplOutput::PersistResubmit`]).
    PersistResubmit {
        entries: Vec<Entry>,
    },
    /// Run `work` ([`PasswordWork::run`]) off the machine's thread and
    /// report [`Input::PasswordDone`] with the same `job`.
    Password {
        job: u64,
        work: PasswordWork,
    },
    /// Tracker `tracker` was not pinned and proved `key` on first contact:
    /// the driver keeps the pin (the data directory's `known_trackers`) and
    /// tells the operator, loudly, how to pin it explicitly.
    PinTracker {
        tracker: TrackerId,
        key: KeyId,
    },
    Event(TrackerEvent),
}

/// What a tracker's data directory held, for [`Tracker::recover`].
#[derive(Debug, Clone, Default)]
pub struct OnDisk {
    /// The last snapshot: its position and its bytes (the layout of
    /// [`crate::tracker::repl::snapshot::encode_snapshot`]).
    pub snapshot: Option<(LogPos, Bytes)>,
    /// The log records after the snapshot, in order.
    pub entries: Vec<Entry>,
    /// Divergent entries still waiting for re-submission.
    pub resubmit: Vec<Entry>,
}

/// What a driver logs.
#[derive(Debug, Clone, PartialEq)]
pub enum TrackerEvent {
    /// The seed's line: "Connected to peer tracker".
    ConnectedToTracker {
        tracker: TrackerId,
    },
    DisconnectedFromTracker {
        tracker: TrackerId,
    },
    ClientConnected {
        conn: ConnId,
        addr: SocketAddr,
    },
    ClientGone {
        conn: ConnId,
    },
    /// A peer tracker connection refused for its key (impostor, or a
    /// tracker whose key changed); its `Display` tells the operator what
    /// to do.
    TrackerKeyRefused(KeyRefused),
    /// A peer sent something we refuse; its connection is being closed.
    BadInput {
        conn: ConnId,
        addr: Option<SocketAddr>,
        error: String,
    },
    Repl(ReplEvent),
    /// Text for the console, one line each.
    Console(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
enum ConnKind {
    /// Hello not seen yet (its deadline is [`NodeTimer::Hello`]).
    AwaitHello {
        dialed: Option<TrackerId>,
    },
    Client {
        session: Option<SessionToken>,
    },
    Tracker(TrackerId),
}

#[derive(Debug, Clone)]
struct Conn {
    addr: Option<SocketAddr>,
    /// The source address it counts against, if it is capped (accepted,
    /// not from a pinned tracker key): [`NodeConfig::conns_per_addr_max`],
    /// [`NodeConfig::client_conns_max`].
    capped: Option<IpAddr>,
    /// The key the other end proved in the TLS handshake.
    key: KeyId,
    kind: ConnKind,
}

#[derive(Debug, Clone)]
enum Waiter {
    Local {
        conn: ConnId,
        req: ClientRequest,
    },
    /// A backup's forwarded write.
    Remote {
        from: TrackerId,
        fwd: u64,
    },
}

pub use super::login_guard::{PASSWORD_QUEUE_MAX, PASSWORD_QUEUE_PER_SOURCE_MAX};

/// The node's own deadlines (replication keeps its own table); the key is
/// the reason. Expired in key order: hellos, redials, then sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NodeTimer {
    /// A connection that has not said hello is closed.
    Hello(ConnId),
    /// A client connection silent for [`NodeConfig::client_idle_timeout`]
    /// is closed.
    Idle(ConnId),
    /// Dial a tracker again (after a failure, with backoff).
    Redial(TrackerId),
    /// A session whose connection dropped is shown offline.
    Offline(SessionToken),
    /// Primary: end the sessions past their lifetimes (every
    /// [`SESSION_SWEEP`]).
    SessionSweep,
}

/// Why a tracker asks to be woken up ([`Tracker::poll_timeout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackerTimer {
    Repl(ReplTimer),
    Node(NodeTimer),
}

/// One tracker.
pub struct Tracker {
    cfg: NodeConfig,
    repl: Child<Repl<TrackerState>>,
    rng: ChaCha8Rng,
    conns: BTreeMap<ConnId, Conn>,
    /// Capped connections open, per source address and in all.
    per_addr: BTreeMap<IpAddr, usize>,
    accepted: usize,
    tracker_conns: BTreeMap<TrackerId, ConnId>,
    /// Hello deadlines, redials and sessions going offline.
    timers: TimerTable<NodeTimer>,
    /// The backoff of the next redial of a tracker.
    backoff: BTreeMap<TrackerId, Duration>,
    dialing: BTreeSet<TrackerId>,
    online_sent: BTreeMap<SessionToken, Instant>,
    waiters: BTreeMap<u64, Waiter>,
    next_tag: u64,
    /// Writes waiting for their argon2 work (queued or running), by job,
    /// with the requester's key; answered through the waiter once prepared.
    password_jobs: BTreeMap<u64, (Waiter, ClientRequest, KeyId)>,
    /// Password work not handed to the driver yet, fair across sources.
    password_queue: FairQueue<(u64, PasswordWork)>,
    /// Password jobs handed to the driver and not reported yet.
    passwords_running: usize,
    /// Failed logins by user name and source address (this tracker's
    /// connections only; not replicated).
    logins: LoginBackoff,
    /// The key of each peer tracker: pinned in the config, or learned on
    /// first contact (see `node_auth.rs`).
    pins: BTreeMap<TrackerId, KeyId>,
    /// `ExpireSession` proposed for these sessions, and when (not proposed
    /// again while it is on its way).
    expiring: BTreeMap<SessionToken, Instant>,
    out: Outbox<Output>,
}

impl Tracker {
    /// A tracker with empty state.
    pub fn new(cfg: NodeConfig, seed: u64, now: Instant) -> Self {
        Self::recover(cfg, seed, now, OnDisk::default()).expect("an empty state always decodes")
    }

    /// A tracker rebuilt from its snapshot, the log records after it and
    /// its re-submission queue.
    pub fn recover(
        cfg: NodeConfig,
        seed: u64,
        now: Instant,
        disk: OnDisk,
    ) -> Result<Self, DecodeError> {
        let snapshot = match disk.snapshot {
            Some((at, b)) => Some(Snapshot::<TrackerState>::decode(at, b)?),
            None => None,
        };
        let durable = Durable {
            snapshot,
            entries: disk.entries,
            resubmit: disk.resubmit,
        };
        let repl = Repl::recover(cfg.repl.clone(), durable, now);
        let mut t = Tracker {
            repl: Child::new(repl),
            rng: ChaCha8Rng::seed_from_u64(seed),
            conns: BTreeMap::new(),
            per_addr: BTreeMap::new(),
            accepted: 0,
            tracker_conns: BTreeMap::new(),
            timers: TimerTable::new(),
            backoff: BTreeMap::new(),
            dialing: BTreeSet::new(),
            online_sent: BTreeMap::new(),
            waiters: BTreeMap::new(),
            next_tag: 1,
            password_jobs: BTreeMap::new(),
            password_queue: FairQueue::default(),
            passwords_running: 0,
            logins: LoginBackoff::new(),
            pins: auth::configured_pins(&cfg),
            expiring: BTreeMap::new(),
            out: Outbox::new(),
            cfg,
        };
        t.timers.set(NodeTimer::SessionSweep, now + SESSION_SWEEP);
        let higher: Vec<TrackerId> = t
            .cfg
            .trackers
            .iter()
            .map(|(id, _)| *id)
            .filter(|&id| id > t.cfg.id)
            .collect();
        for id in higher {
            t.dial(id);
        }
        Ok(t)
    }

    // ------------------------------------------------------------ getters

    pub fn id(&self) -> TrackerId {
        self.cfg.id
    }
    pub fn state(&self) -> &TrackerState {
        self.repl.get().state()
    }
    pub fn repl(&self) -> &Repl<TrackerState> {
        self.repl.get()
    }
    pub fn is_primary(&self) -> bool {
        self.repl.get().role() == Role::Primary
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The soonest deadline and why; on a tie, replication's (it is
    /// handled first).
    pub fn poll_timeout(&self) -> Option<(Instant, TrackerTimer)> {
        let repl = self
            .repl
            .get()
            .poll_timeout()
            .map(|(t, k)| (t, TrackerTimer::Repl(k)));
        let own = self.timers.next().map(|(t, k)| (t, TrackerTimer::Node(k)));
        match (repl, own) {
            (Some(r), Some(o)) => Some(if o.0 < r.0 { o } else { r }),
            (r, o) => r.or(o),
        }
    }

    // ------------------------------------------------------------ inputs

    pub fn handle_input(&mut self, now: Instant, input: Input) {
        self.out.check_drained("tracker");
        match input {
            Input::Accepted { conn, addr, peer } => {
                self.add_conn(now, conn, Some(addr), peer, None)
            }
            Input::Dialed {
                conn,
                tracker,
                peer,
            } => {
                self.dialing.remove(&tracker);
                self.add_conn(now, conn, None, peer, Some(tracker));
                // Not even our hello goes to a tracker with the wrong key.
                if self.authenticate_tracker(now, conn, tracker) {
                    self.send(
                        conn,
                        Outgoing::Hello(Hello::new(WireRole::Tracker(self.cfg.id))),
                    );
                }
            }
            Input::DialFailed { tracker } => {
                self.dialing.remove(&tracker);
                self.schedule_redial(now, tracker);
            }
            Input::Frame { conn, payload } => self.on_frame(now, conn, payload),
            Input::BadFraming { conn, error } => self.refuse(now, conn, error.to_string()),
            Input::Closed { conn } => self.on_closed(now, conn),
            Input::Persisted { index } => self
                .repl
                .feed()
                .handle_input(now, ReplInput::Persisted(index)),
            Input::PasswordDone { job, done } => self.on_password_done(now, job, done),
            Input::Console(cmd) => self.on_console(cmd),
        }
        self.pump(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.out.check_drained("tracker");
        self.repl.feed().handle_timeout(now);
        for t in self.timers.expire(now) {
            match t {
                NodeTimer::Hello(conn) => self.refuse(now, conn, "no hello in time".into()),
                NodeTimer::Idle(conn) => {
                    let secs = self.cfg.client_idle_timeout.as_millis() / 1000;
                    let why = format!("silent for {secs} s (a client pings every second)");
                    self.refuse(now, conn, why)
                }
                NodeTimer::Redial(id) => self.dial(id),
                NodeTimer::Offline(token) => self.mark_offline(now, token),
                NodeTimer::SessionSweep => self.sweep_sessions(now),
            }
        }
        self.pump(now);
    }

    // ------------------------------------------------------------ connections

    fn add_conn(
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

    fn on_frame(&mut self, now: Instant, conn: ConnId, payload: Bytes) {
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

    fn on_hello(&mut self, now: Instant, conn: ConnId, dialed: Option<TrackerId>, payload: Bytes) {
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

    fn knows(&self, t: TrackerId) -> bool {
        self.cfg.trackers.iter().any(|(id, _)| *id == t)
    }

    fn tracker_up(&mut self, now: Instant, conn: ConnId, t: TrackerId) {
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

    fn set_kind(&mut self, conn: ConnId, kind: ConnKind) {
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
    fn forget_conn(&mut self, conn: ConnId) -> Option<Conn> {
        self.timers.clear(NodeTimer::Hello(conn));
        self.timers.clear(NodeTimer::Idle(conn));
        self.uncap(conn);
        self.conns.remove(&conn)
    }

    /// `conn` no longer counts against the connection caps.
    fn uncap(&mut self, conn: ConnId) {
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

    fn on_closed(&mut self, now: Instant, conn: ConnId) {
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
    fn drop_silent_tracker(&mut self, now: Instant, t: TrackerId) {
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

    fn dial(&mut self, t: TrackerId) {
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

    fn schedule_redial(&mut self, now: Instant, t: TrackerId) {
        let backoff = match self.backoff.get(&t) {
            Some(b) => Duration((b.0 * 2).min(self.cfg.redial_max.0)),
            None => self.cfg.redial_min,
        };
        self.backoff.insert(t, backoff);
        self.timers.set(NodeTimer::Redial(t), now + backoff);
    }

    /// Refuses a connection: an error frame where its channel has one, then close.
    fn refuse(&mut self, now: Instant, conn: ConnId, error: String) {
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

    // ------------------------------------------------------------ requests

    fn on_request(&mut self, now: Instant, conn: ConnId, mut req: ClientRequest) {
        let Some(key) = self.conns.get(&conn).map(|c| c.key) else {
            return;
        };
        self.observe_seeder_ip(conn, &mut req);
        self.bind_session(now, conn, &req, key);
        let outcome = match &req.req {
            Request::Login { user, .. } if let Err(e) = self.login_allowed(now, conn, user) => {
                Some(Err(e))
            }
            Request::Status => Some(Ok(Reply::Status(self.repl.get().status()))),
            Request::Resume => Some(self.resume(now, &req, key)),
            r if !r.is_write() => Some(match self.repl.get().can_serve_reads() {
                true => self
                    .repl
                    .get()
                    .state()
                    .read(now, &self.cfg.state, &req, key),
                false => Err(TrackerError::NotReady),
            }),
            _ => self.write(now, conn, req.clone(), key),
        };
        if let Some(outcome) = outcome {
            self.respond(conn, &req, outcome);
        }
    }

    /// A seeder address is the IP this tracker sees the client's
    /// connection come from, with the port the client states: a client
    /// cannot name another host (issue 16 §10), and one that does not know
    /// its own address (NAT, a late network, an unspecified bind) is still
    /// reachable where its tracker connection came from. Done where the
    /// connection is seen, before a backup forwards the write.
    fn observe_seeder_ip(&self, conn: ConnId, req: &mut ClientRequest) {
        if let Request::RegisterSeeder { addr } = &mut req.req
            && let Some(seen) = self.conns.get(&conn).and_then(|c| c.addr)
        {
            addr.set_ip(seen.ip().to_canonical());
        }
    }

    /// Resumes a session: only on a connection with the key that logged
    /// in, and only within the session's lifetimes.
    fn resume(&self, now: Instant, req: &ClientRequest, key: KeyId) -> Outcome {
        if !self.repl.get().can_serve_reads() {
            return Err(TrackerError::NotReady);
        }
        let state = self.repl.get().state();
        let (_, s) = state.request_session(now, &self.cfg.state, req, key)?;
        Ok(Reply::Resumed {
            user: s.user.clone(),
        })
    }

    /// Takes a write: prepared and proposed here on the primary, forwarded
    /// from a backup. `Some` is an answer now; `None` waits for the log.
    fn write(
        &mut self,
        now: Instant,
        conn: ConnId,
        req: ClientRequest,
        key: KeyId,
    ) -> Option<Outcome> {
        let tag = self.next_tag;
        match self.repl.get().role() {
            Role::Primary => {
                let waiter = Waiter::Local {
                    conn,
                    req: req.clone(),
                };
                self.prepare_step(now, waiter, req, key, None);
                None
            }
            Role::Backup => {
                self.next_tag += 1;
                if !self.repl.get().can_take_writes() {
                    return Some(Err(TrackerError::NotReady));
                }
                self.waiters.insert(
                    tag,
                    Waiter::Local {
                        conn,
                        req: req.clone(),
                    },
                );
                self.repl
                    .feed()
                    .handle_input(now, ReplInput::Forward { req, key, tag });
                None
            }
        }
    }

    /// Primary: a backup's forwarded write.
    fn on_forwarded(
        &mut self,
        now: Instant,
        from: TrackerId,
        fwd: u64,
        req: ClientRequest,
        key: KeyId,
    ) {
        self.prepare_step(now, Waiter::Remote { from, fwd }, req, key, None);
    }

    /// Primary: prepares a write and proposes it; a login or create_user
    /// first hands its argon2 work to the driver, and comes back here with
    /// the result in `done`.
    fn prepare_step(
        &mut self,
        now: Instant,
        waiter: Waiter,
        req: ClientRequest,
        key: KeyId,
        done: Option<PasswordDone>,
    ) {
        if self.repl.get().role() != Role::Primary {
            // Stepped down while the password work ran: the client retries.
            return self.answer(now, waiter, 0, Err(TrackerError::NotReady));
        }
        let step = self.repl.get().state().prepare_step(
            now,
            &self.cfg.state,
            &mut self.rng,
            &req,
            key,
            done.as_ref(),
        );
        let applied = self.repl.get().applied();
        match step {
            Err(e) => self.answer(now, waiter, 0, Err(e)),
            Ok(Step::Ready(Prepared::Done(outcome))) => self.answer(now, waiter, applied, outcome),
            Ok(Step::Password(work)) => {
                let job = self.next_tag;
                let lane = self.lane(&waiter);
                match self.password_queue.push(lane, (job, work)) {
                    Err(full) => self.answer(now, waiter, 0, Err(full.error())),
                    Ok(()) => {
                        self.next_tag += 1;
                        self.password_jobs.insert(job, (waiter, req, key));
                        self.dispatch_passwords(now);
                    }
                }
            }
            Ok(Step::Ready(Prepared::Op(kind))) => {
                let tag = self.next_tag;
                self.next_tag += 1;
                let origin = Origin {
                    client: req.client,
                    key,
                    id: req.id,
                };
                self.waiters.insert(tag, waiter);
                // Not the primary any more: `Abandoned` answers the waiter.
                let input = ReplInput::Propose {
                    origin: Some(origin),
                    kind,
                    tag: Some(tag),
                };
                self.repl.feed().handle_input(now, input);
            }
        }
    }

    fn on_password_done(&mut self, now: Instant, job: u64, done: PasswordDone) {
        if let Some((waiter, req, key)) = self.password_jobs.remove(&job) {
            self.passwords_running -= 1;
            self.prepare_step(now, waiter, req, key, Some(done));
        }
        self.dispatch_passwords(now);
    }

    /// Hands queued password work to the driver, round robin across
    /// sources, while fewer than [`PASSWORD_RUNNING_MAX`] run. A login
    /// whose name or address started backing off while it waited is
    /// answered now, without its password check.
    fn dispatch_passwords(&mut self, now: Instant) {
        while self.passwords_running < PASSWORD_RUNNING_MAX {
            let Some((job, work)) = self.password_queue.pop() else {
                return;
            };
            let Some((waiter, req, key)) = self.password_jobs.remove(&job) else {
                continue;
            };
            // Nobody is waiting any more: no argon2 for a closed connection.
            if let Waiter::Local { conn, .. } = &waiter
                && !self.conns.contains_key(conn)
            {
                continue;
            }
            if let (Waiter::Local { conn, .. }, Request::Login { user, .. }) = (&waiter, &req.req)
                && let Err(e) = self.login_allowed(now, *conn, user)
            {
                self.answer(now, waiter, 0, Err(e));
                continue;
            }
            self.password_jobs.insert(job, (waiter, req, key));
            self.passwords_running += 1;
            self.out.push_back(Output::Password { job, work });
        }
    }

    /// The fairness lane of a write's password work: the client's address
    /// here, or the backup that forwarded it.
    fn lane(&self, waiter: &Waiter) -> Lane {
        match waiter {
            Waiter::Local { conn, .. } => self.source(*conn).map_or(Lane::Unknown, Lane::Addr),
            Waiter::Remote { from, .. } => Lane::Tracker(*from),
        }
    }

    /// The address a client connection came from.
    fn source(&self, conn: ConnId) -> Option<std::net::IpAddr> {
        let addr = self.conns.get(&conn)?.addr?;
        Some(addr.ip().to_canonical())
    }

    /// `Ok` unless `user`, or the address of `conn`, is backing off after
    /// failed logins.
    fn login_allowed(
        &self,
        now: Instant,
        conn: ConnId,
        user: &p2p_proto::UserName,
    ) -> Result<(), TrackerError> {
        self.logins.check(now, user, self.source(conn))
    }

    /// Counts a login's outcome towards (or clears) the backoff of its
    /// user name and source address.
    fn note_login(&mut self, now: Instant, conn: ConnId, req: &ClientRequest, outcome: &Outcome) {
        let Request::Login { user, .. } = &req.req else {
            return;
        };
        match outcome {
            Err(TrackerError::WrongUserOrPassword) => {
                let source = self.source(conn);
                self.logins.failed(now, user, source);
            }
            Ok(Reply::LoggedIn { .. }) => self.logins.succeeded(user),
            _ => {}
        }
    }

    /// Answers a write's waiter: the local client, or the forwarding backup.
    fn answer(&mut self, now: Instant, waiter: Waiter, index: u64, outcome: Outcome) {
        match waiter {
            Waiter::Local { conn, req } => {
                self.note_login(now, conn, &req, &outcome);
                self.track_login(conn, &outcome);
                self.respond(conn, &req, outcome);
            }
            Waiter::Remote { from, fwd } => {
                let input = ReplInput::ReplyForward {
                    to: from,
                    fwd,
                    index,
                    outcome,
                };
                self.repl.feed().handle_input(now, input);
            }
        }
    }

    fn on_applied(&mut self, now: Instant, tag: u64, index: u64, outcome: Outcome) {
        if let Some(waiter) = self.waiters.remove(&tag) {
            self.answer(now, waiter, index, outcome);
        }
    }

    /// A login on a connection binds its session; a logout unbinds it.
    fn track_login(&mut self, conn: ConnId, outcome: &Outcome) {
        let Some(Conn {
            kind: ConnKind::Client { session },
            ..
        }) = self.conns.get_mut(&conn)
        else {
            return;
        };
        match outcome {
            Ok(Reply::LoggedIn { token, .. }) => *session = Some(*token),
            Ok(Reply::Done)
                if session.is_some_and(|t| self.repl.get().state().session(&t).is_none()) =>
            {
                *session = None
            }
            _ => {}
        }
    }

    fn respond(&mut self, conn: ConnId, req: &ClientRequest, outcome: Outcome) {
        if self.conns.contains_key(&conn) {
            self.send(
                conn,
                Outgoing::Client(FromTracker::Response {
                    id: req.id,
                    outcome,
                }),
            );
        }
    }

    // ------------------------------------------------------------ sessions online / offline

    /// A request carrying a live session token attaches that session to this
    /// connection (after a failover, the first request does it); a session
    /// the state shows offline is brought back online. Only on a connection
    /// with the session's key, and only within its lifetimes.
    fn bind_session(&mut self, now: Instant, conn: ConnId, req: &ClientRequest, key: KeyId) {
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

    fn session_attached(&self, token: SessionToken) -> bool {
        self.conns.values().any(|c| {
            c.kind
                == ConnKind::Client {
                    session: Some(token),
                }
        })
    }

    fn mark_offline(&mut self, now: Instant, token: SessionToken) {
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
    fn submit_system(&mut self, now: Instant, kind: OpKind) {
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

    // ------------------------------------------------------------ console

    fn on_console(&mut self, cmd: ConsoleCmd) {
        let lines = match cmd {
            ConsoleCmd::Status => {
                let s = self.repl.get().status();
                let role = if self.is_primary() {
                    "primary"
                } else {
                    "backup"
                };
                vec![
                    format!(
                        "tracker {} ({role}), epoch {} (primary {}), log {}:{}, applied {}, {}",
                        s.id,
                        s.epoch,
                        s.primary
                            .map(|p| p.to_string())
                            .unwrap_or_else(|| "none".into()),
                        s.last.epoch,
                        s.last.index,
                        s.applied,
                        if s.in_sync { "in sync" } else { "not in sync" }
                    ),
                    format!("state digest {}", s.digest),
                    format!(
                        "trackers connected: {:?}",
                        self.tracker_conns.keys().map(|t| t.0).collect::<Vec<_>>()
                    ),
                ]
            }
            ConsoleCmd::Conflicts => {
                let mut v: Vec<String> = self
                    .repl
                    .get()
                    .state()
                    .conflicts()
                    .map(|c| {
                        format!(
                            "conflict: {:?} at {} ms: {}",
                            c.op.kind, c.op.at_ms, c.reason
                        )
                    })
                    .collect();
                if v.is_empty() {
                    v.push("no conflicts recorded".into());
                }
                v
            }
        };
        self.event(TrackerEvent::Console(lines));
    }

    // ------------------------------------------------------------ plumbing

    /// Moves the replication machine's outputs into ours.
    fn pump(&mut self, now: Instant) {
        while let Some(o) = self.repl.poll() {
            match o {
                ReplOutput::Send { to, msg } => {
                    if let Some(&conn) = self.tracker_conns.get(&to) {
                        self.send(conn, Outgoing::Repl(msg));
                    }
                }
                ReplOutput::Persist {
                    from_index,
                    entries,
                } => self.out.push_back(Output::Persist {
                    from_index,
                    entries,
                }),
                ReplOutput::PersistSnapshot {
                    at,
                    data,
                    reset_log,
                } => self.out.push_back(Output::PersistSnapshot {
                    at,
                    data,
                    reset_log,
                }),
                ReplOutput::PersistResubmit { entries } => {
                    self.out.push_back(Output::PersistResubmit { entries })
                }
                ReplOutput::Applied {
                    tag,
                    index,
                    outcome,
                } => self.on_applied(now, tag, index, outcome),
                ReplOutput::Abandoned { tag } => {
                    self.on_applied(now, tag, 0, Err(TrackerError::NotReady))
                }
                ReplOutput::Forwarded {
                    from,
                    fwd,
                    req,
                    key,
                } => self.on_forwarded(now, from, fwd, req, key),
                ReplOutput::PeerSilent { peer } => self.drop_silent_tracker(now, peer),
                ReplOutput::Event(e) => self.event(TrackerEvent::Repl(e)),
            }
        }
        self.check_invariants();
    }

    fn send(&mut self, conn: ConnId, msg: Outgoing) {
        if self.conns.contains_key(&conn) {
            self.out.push_back(Output::Send { conn, msg });
        }
    }

    /// Sends on a connection already removed from the table (its last words).
    fn send_raw(&mut self, conn: ConnId, msg: Outgoing) {
        self.out.push_back(Output::Send { conn, msg });
    }

    fn event(&mut self, e: TrackerEvent) {
        self.out.push_back(Output::Event(e));
    }

    pub fn check_invariants(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        self.repl.get().check_invariants();
        self.password_queue.check_invariants();
        assert!(self.passwords_running <= PASSWORD_RUNNING_MAX);
        assert_eq!(
            self.password_jobs.len(),
            self.password_queue.len() + self.passwords_running,
            "password jobs neither queued nor running"
        );
        let mut per_addr = BTreeMap::<IpAddr, usize>::new();
        for c in self.conns.values() {
            if let Some(ip) = c.capped {
                *per_addr.entry(ip).or_default() += 1;
            }
        }
        assert_eq!(per_addr, self.per_addr, "per-address counts out of step");
        assert_eq!(per_addr.values().sum::<usize>(), self.accepted);
        assert!(self.accepted <= self.cfg.client_conns_max, "over the cap");
        for (t, conn) in &self.tracker_conns {
            assert_eq!(
                self.conns.get(conn).map(|c| &c.kind),
                Some(&ConnKind::Tracker(*t)),
                "tracker table out of step"
            );
            // A peer tracker's connection proved the key pinned for it.
            if !self.cfg.bug_skip_tracker_key_check {
                assert_eq!(
                    self.conns.get(conn).map(|c| c.key),
                    self.pins.get(t).copied(),
                    "tracker {t} connected without its pinned key"
                );
            }
        }
    }
}

impl_machine!(Tracker, Input, Output, TrackerTimer);

#[path = "node_auth.rs"]
mod auth;
pub use auth::{KeyRefused, Mismatch, SESSION_SWEEP};

#[cfg(test)]
#[path = "node_tests.rs"]
mod tests;
