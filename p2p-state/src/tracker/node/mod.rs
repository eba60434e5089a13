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
//! Trackers authenticate each other before anything else (`auth.rs`):
//! a peer tracker's connection counts only once the key it proved in the
//! TLS handshake is the one pinned for the tracker id it claims (pinned in
//! the config, or learned on first contact and announced with
//! [`Output::PinTracker`]); any other is closed right after its hello, with
//! no replication message decoded. Client sessions answer only to the key
//! that logged in, and expire (`auth.rs`: the primary proposes
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
//!
//! The files, one concern each (all but `interface.rs` are `impl Tracker`):
//! - `interface.rs`: [`NodeConfig`] and the connection limits, [`Input`],
//!   [`Output`], [`Outgoing`], [`TrackerEvent`], [`OnDisk`], the timer
//!   reasons;
//! - `connections.rs`: connections and hellos, caps per address and in
//!   all, dialing and redialing peer trackers, refusing a connection;
//! - `auth.rs`: who is at the other end (peer trackers by pinned key,
//!   sessions by the key that logged in, the session sweep);
//! - `requests.rs`: client requests: reads served here, writes prepared
//!   and proposed (primary) or forwarded, password work, answers;
//! - `sessions.rs`: sessions going online and offline with their
//!   connections, and system ops the primary proposes;
//! - `console.rs`: the operator's console;
//! - `mod.rs` (here): the machine's state, construction, input dispatch,
//!   the replication machine's outputs turned into ours, invariants;
//! - `tests/`: trackers and scripted clients in memory (`mod.rs`), and the
//!   scenarios by concern.

use bytes::{Bytes, BytesMut};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use p2p_proto::{
    ClientRequest, DecodeError, FrameError, FromTracker, Hello, KeyId, OpKind, Origin, Outcome,
    ReplMsg, Reply, Request, Role as WireRole, SessionToken, Text, TrackerError, TrackerId, Wire,
    encode_msg,
};

use super::login_guard::{FairQueue, Lane, LoginBackoff, forward_allowed};
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

mod auth;
mod connections;
mod console;
mod interface;
mod push;
mod requests;
mod sessions;
#[cfg(test)]
mod tests;

// The login guard's limits are the node's (the guard itself is private).
pub use super::login_guard::{
    LOGIN_BACKOFF_MAX, LOGIN_BACKOFF_MIN, LOGIN_FAILURES_FORGET, LOGIN_FAILURES_FREE_PER_SOURCE,
    LOGIN_FAILURES_FREE_PER_USER, LOGIN_SOURCES_TRACKED_MAX, LOGIN_USERS_TRACKED_MAX,
    PASSWORD_QUEUE_MAX, PASSWORD_QUEUE_PER_SOURCE_MAX, PASSWORD_RUNNING_MAX,
};
pub use super::storage::{OnDisk, Persist};
pub use auth::{KeyRefused, Mismatch, SESSION_SWEEP};
pub use interface::{
    CLIENT_CONNS_MAX, CLIENT_IDLE_TIMEOUT, CONNS_PER_ADDR_MAX, ConsoleAnswer, ConsoleCmd,
    FRAME_TIMEOUT, Input, NodeConfig, NodeTimer, Outgoing, Output, TrackerEvent, TrackerTimer,
};
pub use push::{
    PEERS_PER_PUSH, PUSH_INTERVAL, PUSH_SUBSCRIPTION_TTL, PUSH_SUBSCRIPTIONS_PER_CONN_MAX,
};

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
        /// The user name of a forwarded login, whose outcome counts
        /// towards its backoff here too.
        login: Option<p2p_proto::UserName>,
    },
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
    /// Backup: the source address of each forwarded login or create_user
    /// still waiting for the primary, by waiter tag (capped per address
    /// before forwarding, `login_guard::forward_allowed`).
    forwarded_passwords: BTreeMap<u64, IpAddr>,
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
    /// first contact (see `auth.rs`).
    pins: BTreeMap<TrackerId, KeyId>,
    /// `ExpireSession` proposed for these sessions, and when (not proposed
    /// again while it is on its way).
    expiring: BTreeMap<SessionToken, Instant>,
    /// Downloads told of new sources (`push.rs`).
    push: push::PushTable,
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
            forwarded_passwords: BTreeMap::new(),
            next_tag: 1,
            password_jobs: BTreeMap::new(),
            password_queue: FairQueue::default(),
            passwords_running: 0,
            logins: LoginBackoff::new(),
            pins: auth::configured_pins(&cfg),
            expiring: BTreeMap::new(),
            push: push::PushTable::default(),
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
                NodeTimer::Push => self.push_sources(now),
            }
        }
        self.pump(now);
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
                ReplOutput::Persist(write) => self.out.push_back(Output::Persist(write)),
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
        self.push_if_applied(now);
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
        self.push.check();
        assert!(self.passwords_running <= PASSWORD_RUNNING_MAX);
        assert!(
            self.forwarded_passwords
                .keys()
                .all(|t| self.waiters.contains_key(t)),
            "a forwarded password request counted after its answer"
        );
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
