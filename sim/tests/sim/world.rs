//! A deterministic world: tracker machines and client machines from
//! p2p-state on a simulated network ([`Net`]) and clock, all from one seed.
//!
//! Every byte between nodes goes through the real framing and message
//! codecs, and every connection event becomes an input through the
//! drivers' own functions (`runtime_common::client::peer_input`, ...).
//! Every host runs its real driver core over simulated I/O: a tracker
//! `runtime_common::tracker::Core` (`sim_io.rs`, `world_tracker.rs`), a
//! client `runtime_common::client::Core` (`sim_client_io.rs`,
//! `world_client.rs`). The core executes its machine's outputs; what it
//! asks of its host (send, close, dial, disk jobs, pins) the world does on
//! the simulated network and disks, turns the results into the core's
//! events, as the runtimes' readers, dialers and workers do, and lets the
//! checker ([`Checker`]) watch every effect.
//!
//! One mutation, then drain (docs/STYLE.md §3.3): an event goes into a
//! core, which drains its machine's outputs; the world executes what the
//! core asked for; results of those (a dial that connected, a write that
//! finished) are queued in `inbox` and fed only after, in order.

use bytes::Bytes;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};

use p2p_proto::{
    Entry, FileMeta, FileName, FrameError, GroupName, KeyId, PieceSet, SeederKey, TrackerId,
    UserName, Wire,
};
use p2p_state::client::node::{self as cn, ClientConfig, ClientNode, Command, CommandOk};
use p2p_state::client::session::{ClientError, SessionConfig};
use p2p_state::download::DownloadConfig;
use p2p_state::hash::sha1;
use p2p_state::seeder::{SeederConfig, ShareId};
use p2p_state::tracker::node::{self as tn, NodeConfig, Persist, Tracker};
use p2p_state::tracker::state::TrackerConfig;
use p2p_state::{Duration, Instant};

use runtime_common::client::{CoreParts, Ev, HandleMsg, Paths, WriteMode};
use runtime_common::conn::ConnEvent;
use runtime_common::{client, tracker};

use crate::check::Checker;
use crate::net::{Dialer, End, EvKind, Host, Net, NodeIx};
use crate::sim_client_io::{ClientCore, ClientEffect, ClientEv, SimClientIo, SimClientPins};
use crate::sim_io::{Effect, Effects, SimClock, SimPins, SimTrackerIo, TrackerCore};
use crate::swarm::{Swarm, child_seed};
use crate::trace::Trace;

/// The simulated clock starts here (tickets compare Unix milliseconds).
pub const T0: Instant = Instant(1_700_000_000_000);

/// Inputs queued while draining, at most, before the run is a runaway.
pub(crate) const INBOX_STEPS_MAX: usize = 1_000_000;

/// A tracker's durable files: snapshot, log, re-submission queue.
pub type TrackerDisk = p2p_state::tracker::node::OnDisk;

/// A client's files: shared originals by share id, destinations by dest id.
#[derive(Default)]
pub struct ClientDisk {
    pub shared: BTreeMap<u64, Bytes>,
    pub parts: BTreeMap<u64, (Vec<u8>, PieceSet)>,
    pub finished: BTreeMap<u64, Bytes>,
}

pub struct TrackerNode {
    /// The real driver core (`runtime_common::tracker::Core`) with the
    /// machine, while the host is up.
    pub core: Option<TrackerCore>,
    /// Its clock and what its core asked of the host (`sim_io.rs`).
    pub(crate) clock: SimClock,
    pub(crate) fx: Effects,
    pub disk: TrackerDisk,
    pub addr: SocketAddr,
    /// Disk writes in order; the front completes first.
    pub(crate) pending_disk: VecDeque<Persist>,
    pub(crate) disk_busy_until: u64,
    pub inc: u32,
    seed: u64,
    /// This host's clock runs ahead of the world's by this much.
    pub skew_ms: u64,
    pub(crate) wake: u64,
    /// Every durable entry of its history from index 1 (through snapshots:
    /// an installed snapshot's prefix is copied from a tracker that holds
    /// it); `None` once that could not be done.
    pub hist: Option<Vec<Entry>>,
    /// Peer tracker keys pinned on first contact (its `known_trackers`).
    pub pins: BTreeMap<TrackerId, KeyId>,
}

impl TrackerNode {
    /// The machine, while the host is up.
    pub fn m(&self) -> Option<&Tracker> {
        self.core.as_ref().map(|c| c.tracker())
    }
}

/// A command's answer, polled after each turn of the client's core.
type Reply = Receiver<Result<CommandOk, ClientError>>;

pub struct ClientHost {
    /// The real driver core (`runtime_common::client::Core`) with the
    /// machine, while the host is up.
    pub core: Option<ClientCore>,
    /// Its clock and what its core asked of the host (`sim_client_io.rs`).
    pub(crate) clock: SimClock,
    pub(crate) fx: Effects<ClientEffect>,
    /// This incarnation's events, answers to come (world tag, channel),
    /// and the core's table of shares and destinations (paths are ids).
    pub(crate) events_rx: Option<Receiver<cn::ClientEvent>>,
    pub(crate) replies: Vec<(u64, Reply)>,
    pub(crate) paths: Arc<Mutex<Paths>>,
    pub disk: ClientDisk,
    pub done: Vec<(u64, Result<CommandOk, ClientError>)>,
    pub events: Vec<cn::ClientEvent>,
    /// This incarnation's downloads: dl id -> dest id, and their metadata.
    pub dests: BTreeMap<u64, u64>,
    pub metas: BTreeMap<u64, FileMeta>,
    /// Dest id -> the group its download is in (kept across restarts).
    pub dest_group: BTreeMap<u64, GroupName>,
    /// Files this client put up for sharing: share id -> (group, meta).
    pub shares: BTreeMap<u64, (GroupName, FileMeta)>,
    /// The identity its seeder holds (user and ticket key), from login.
    pub identity: Option<(UserName, SeederKey)>,
    pub inc: u32,
    seed: u64,
    pub skew_ms: u64,
    /// Serves wrong bytes for some pieces (salt picks which).
    pub corrupt: Option<u64>,
    pub(crate) wake: u64,
    /// Its `known_trackers` (pins from tracker_info.txt or first use),
    /// kept across restarts like the file.
    pub pins: Vec<Option<KeyId>>,
    /// Its next tracker dials (to a tracker it pinned) that an impostor
    /// answers.
    pub hijack_dials: u32,
}

impl ClientHost {
    /// The machine, while the host is up.
    pub fn m(&self) -> Option<&ClientNode> {
        self.core.as_ref().map(|c| c.node())
    }
}

enum Deferred {
    T(NodeIx, tn::Input),
    C(NodeIx, ClientEv),
    /// A frame for an end; fed only if the end is still open then.
    Frame(End, Bytes),
    /// The byte stream of an end is broken.
    BadFrame(End, FrameError),
}

pub struct World {
    pub now: Instant,
    pub net: Net,
    pub trackers: Vec<TrackerNode>,
    pub clients: Vec<ClientHost>,
    pub check: Checker,
    pub trace: Trace,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) disk_ms: (u64, u64),
    inbox: VecDeque<Deferred>,
    /// Steps taken (deliveries and deadlines).
    pub steps: u64,
    next_tag: u64,
    pub download_cfg: DownloadConfig,
    pub seeder_cfg: SeederConfig,
    repl_bug: bool,
    pub(crate) tracker_auth: crate::rogue_tracker::TrackerAuth,
    /// Tickets seen on seeder connections, for rogues to replay.
    pub(crate) sniffed: VecDeque<(NodeIx, p2p_proto::Ticket)>,
    /// Client tracker connections an impostor answered: (client, inc, conn).
    pub(crate) hijacked: std::collections::BTreeSet<(NodeIx, u32, u64)>,
}

pub fn tracker_addr(i: NodeIx) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1 + i as u8], 7000))
}
pub fn client_addr(i: NodeIx) -> SocketAddr {
    SocketAddr::from(([10, 1, (i / 200) as u8, 1 + (i % 200) as u8], 9000))
}
pub fn rogue_addr() -> SocketAddr {
    SocketAddr::from(([10, 9, 9, 9], 6666))
}
/// The TLS keys the simulated hosts prove (keys are values here: a host's
/// key survives its restarts, as the real key file does).
pub fn tracker_key(i: NodeIx) -> KeyId {
    node_key(0x54, i)
}
pub fn client_key(i: NodeIx) -> KeyId {
    node_key(0x43, i)
}
pub fn rogue_key() -> KeyId {
    KeyId([0x52; 32])
}
fn node_key(kind: u8, i: NodeIx) -> KeyId {
    let mut k = [kind; 32];
    k[1..9].copy_from_slice(&(i as u64).to_be_bytes());
    KeyId(k)
}
/// A file's path on a client's simulated disk: its id.
pub fn sim_path(id: u64) -> PathBuf {
    PathBuf::from(id.to_string())
}
fn client_of(addr: SocketAddr) -> Option<NodeIx> {
    match addr {
        SocketAddr::V4(a) if a.port() == 9000 && a.ip().octets()[..2] == [10, 1] => {
            let o = a.ip().octets();
            Some(o[2] as usize * 200 + o[3] as usize - 1)
        }
        _ => None,
    }
}

impl World {
    /// A calm world for hand-written scenarios (`SIM_TRACE=1` prints it).
    pub fn new(seed: u64, trackers: usize, clients: usize) -> Self {
        let print = std::env::var("SIM_TRACE").is_ok_and(|v| v == "1");
        Self::from_swarm(&Swarm::calm(seed, trackers, clients), print)
    }

    pub fn from_swarm(s: &Swarm, print_trace: bool) -> Self {
        let download_cfg = DownloadConfig {
            no_peer_timeout: Duration::from_secs(60),
            bug_skip_verify: s.bugs.scheduler_skips_verify,
            ..DownloadConfig::default()
        };
        let seeder_cfg = SeederConfig {
            bug_ignore_tickets: s.bugs.seeder_ignores_tickets,
            bug_skip_key_check: s.bugs.seeder_skips_key_check,
            ..SeederConfig::default()
        };
        let mut w = World {
            now: T0,
            net: Net::new(s),
            trackers: Vec::new(),
            clients: Vec::new(),
            check: Checker::default(),
            trace: Trace::new(print_trace),
            rng: ChaCha8Rng::seed_from_u64(s.net_seed ^ 0xd15c),
            disk_ms: s.disk_ms,
            inbox: VecDeque::new(),
            steps: 0,
            next_tag: 1,
            download_cfg,
            seeder_cfg,
            repl_bug: s.bugs.follower_skips_op,
            tracker_auth: crate::rogue_tracker::TrackerAuth {
                explicit_pins: s.faults.rogue_tracker > 0,
                skip_key_check: s.bugs.tracker_skips_key_check,
            },
            sniffed: VecDeque::new(),
            hijacked: Default::default(),
        };
        for (i, &seed) in s.tracker_seeds.iter().enumerate() {
            w.trackers.push(TrackerNode {
                core: None,
                clock: SimClock::default(),
                fx: Effects::default(),
                disk: TrackerDisk::default(),
                addr: tracker_addr(i),
                pending_disk: VecDeque::new(),
                disk_busy_until: 0,
                inc: 0,
                seed,
                skew_ms: 0,
                wake: u64::MAX,
                hist: Some(Vec::new()),
                pins: BTreeMap::new(),
            });
        }
        for (c, &seed) in s.client_seeds.iter().enumerate() {
            let corrupt = s.corrupt.contains(&c).then_some(seed ^ 0xbad);
            w.clients.push(ClientHost {
                core: None,
                clock: SimClock::default(),
                fx: Effects::default(),
                events_rx: None,
                replies: Vec::new(),
                paths: Arc::default(),
                disk: ClientDisk::default(),
                done: vec![],
                events: vec![],
                dests: BTreeMap::new(),
                metas: BTreeMap::new(),
                dest_group: BTreeMap::new(),
                shares: BTreeMap::new(),
                identity: None,
                inc: 0,
                seed,
                skew_ms: 0,
                corrupt,
                wake: u64::MAX,
                pins: Vec::new(),
                hijack_dials: 0,
            });
            let pins = w.initial_pins(seed);
            w.clients[c].pins = pins;
        }
        for i in 0..w.trackers.len() {
            w.start_tracker(i);
        }
        for c in 0..w.clients.len() {
            w.start_client(c);
        }
        w.flush();
        w
    }

    fn tracker_cfg(&self, i: NodeIx) -> NodeConfig {
        let list: Vec<(TrackerId, SocketAddr)> = (0..self.trackers.len())
            .map(|k| (TrackerId(k as u16 + 1), tracker_addr(k)))
            .collect();
        let mut cfg = NodeConfig::new(TrackerId(i as u16 + 1), list, TrackerConfig::test());
        cfg.repl.bug_skip_one_in_100 = self.repl_bug;
        cfg.tracker_keys = self.tracker_pins(i);
        cfg.bug_skip_tracker_key_check = self.tracker_auth.skip_key_check;
        cfg
    }

    /// When, on the world's clock, a host whose clock runs `skew_ms`
    /// ahead must wake up for its core's `deadline` (`u64::MAX`: never).
    pub(crate) fn wake_at(&self, deadline: Option<Instant>, skew_ms: u64) -> u64 {
        deadline.map_or(u64::MAX, |d| d.0.saturating_sub(skew_ms).max(self.now.0))
    }

    pub fn tnow(&self, i: NodeIx) -> Instant {
        Instant(self.now.0 + self.trackers[i].skew_ms)
    }
    pub fn cnow(&self, c: NodeIx) -> Instant {
        Instant(self.now.0 + self.clients[c].skew_ms)
    }

    // ------------------------------------------------------------ life and death

    fn start_tracker(&mut self, i: NodeIx) {
        let cfg = self.tracker_cfg(i);
        let t = &self.trackers[i];
        let seed = child_seed(t.seed, t.inc);
        let d = t.disk.clone();
        let now = self.tnow(i);
        let m = Tracker::recover(cfg, seed, now, d).expect("own disk decodes");
        let t = &mut self.trackers[i];
        t.clock.set(now);
        let fx = t.fx.clone();
        let pins = SimPins {
            addrs: (0..self.trackers.len()).map(tracker_addr).collect(),
            fx: fx.clone(),
        };
        let io = SimTrackerIo { fx: fx.clone() };
        let sink = Box::new(move |e: &tn::TrackerEvent| fx.push(Effect::Event(e.clone())));
        let t = &mut self.trackers[i];
        t.core = Some(TrackerCore::new(m, pins, t.clock.clone(), io, sink));
        self.tracker_effects(i);
    }

    fn start_client(&mut self, c: NodeIx) {
        let n = self.trackers.len();
        let addrs = (0..n).map(tracker_addr).collect();
        let mut session = SessionConfig::new(addrs, (c + self.clients[c].inc as usize) % n);
        session.tracker_keys = self.clients[c].pins.clone();
        let cfg = ClientConfig {
            session,
            seeder: self.seeder_cfg.clone(),
            download: self.download_cfg.clone(),
            seeder_addr: Some(client_addr(c)),
        };
        let now = self.cnow(c);
        let h = &mut self.clients[c];
        let node = ClientNode::new(cfg, child_seed(h.seed, h.inc), now);
        h.clock.set(now);
        // The files on its disk, as a share table would name them.
        let mut paths = Paths::new();
        for (&n, (group, _)) in &h.shares {
            paths.shares.insert(n, (sim_path(n), group.clone()));
        }
        h.paths = Arc::new(Mutex::new(paths));
        let (events, events_rx) = mpsc::channel();
        h.events_rx = Some(events_rx);
        let parts = CoreParts {
            node,
            clock: h.clock.clone(),
            pins: SimClientPins {
                addrs: (0..n).map(tracker_addr).collect(),
                fx: h.fx.clone(),
            },
            io: SimClientIo { fx: h.fx.clone() },
            paths: h.paths.clone(),
            events,
            data_dir: PathBuf::from(format!("c{c}")),
            write_mode: WriteMode::PageCache,
            window: p2p_state::download::MAX_PARALLEL_DEFAULT,
        };
        h.core = Some(ClientCore::from_parts(parts));
        self.client_effects(c);
    }

    pub fn crash_tracker(&mut self, i: NodeIx) {
        self.stop_tracker(i);
        self.net.drop_host(self.now, Host::Tracker(i));
        trace!(self.trace, self.now.0, "CRASH t{}", i + 1);
    }

    /// Tracker `i`'s host vanishes (power lost, cable pulled): its peers
    /// hear nothing at all.
    pub fn vanish_tracker(&mut self, i: NodeIx) {
        self.stop_tracker(i);
        self.net.vanish_host(Host::Tracker(i));
        trace!(self.trace, self.now.0, "VANISH t{}", i + 1);
    }

    fn stop_tracker(&mut self, i: NodeIx) {
        let t = &mut self.trackers[i];
        t.core = None;
        t.fx.take();
        t.pending_disk.clear(); // not yet durable: lost
        t.inc += 1;
        t.wake = u64::MAX;
    }

    pub fn restart_tracker(&mut self, i: NodeIx) {
        trace!(self.trace, self.now.0, "RESTART t{}", i + 1);
        self.net.host_back(self.now, Host::Tracker(i));
        self.start_tracker(i);
        self.flush();
    }

    /// Client `c`'s host vanishes: its peers and trackers hear nothing.
    pub fn vanish_client(&mut self, c: NodeIx) {
        self.stop_client(c);
        self.net.vanish_host(Host::Client(c));
        trace!(self.trace, self.now.0, "VANISH c{c}");
    }

    pub fn crash_client(&mut self, c: NodeIx) {
        self.stop_client(c);
        self.net.drop_host(self.now, Host::Client(c));
        trace!(self.trace, self.now.0, "CRASH c{c}");
    }

    fn stop_client(&mut self, c: NodeIx) {
        let h = &mut self.clients[c];
        h.core = None;
        h.fx.take();
        h.events_rx = None;
        h.replies.clear();
        h.inc += 1;
        h.wake = u64::MAX;
        h.dests.clear();
        h.metas.clear();
        h.identity = None;
        h.done.clear();
        h.events.clear();
        h.hijack_dials = 0;
        self.check.client_crashed(c);
    }

    pub fn restart_client(&mut self, c: NodeIx) {
        trace!(self.trace, self.now.0, "RESTART c{c}");
        self.net.host_back(self.now, Host::Client(c));
        self.start_client(c);
        self.flush();
    }

    // ------------------------------------------------------------ clients

    pub fn client_input(&mut self, c: NodeIx, input: cn::Input) {
        self.client_turn(c, Some(Ev::Input(input)));
    }

    pub fn client_id(&self, c: NodeIx) -> Option<p2p_proto::ClientId> {
        self.clients[c].m().map(|m| m.session().client_id())
    }

    // ------------------------------------------------------------ delivery

    fn deliver(&mut self, to: End, bytes: Bytes) {
        if !self.net.is_open(to) {
            return;
        }
        let (frames, bad) = self.net.receive(to, &bytes);
        trace!(
            self.trace,
            self.now.0,
            "{to:?} <- {}B {} frames{}",
            bytes.len(),
            frames.len(),
            if bad.is_some() { " + bad framing" } else { "" }
        );
        for f in frames {
            self.inbox.push_back(Deferred::Frame(to, f));
        }
        if let Some(e) = bad {
            self.inbox.push_back(Deferred::BadFrame(to, e));
        }
    }

    fn closed(&mut self, to: End) {
        if !self.net.closed_delivered(to) {
            return;
        }
        trace!(self.trace, self.now.0, "{to:?} closed");
        self.reader_event(to, ConnEvent::Closed);
    }

    fn feed(&mut self, d: Deferred) {
        match d {
            Deferred::T(i, input) => self.tracker_input(i, input),
            Deferred::C(c, ev) => self.client_turn(c, Some(ev)),
            Deferred::Frame(end, payload) if self.net.is_open(end) => self.feed_frame(end, payload),
            Deferred::BadFrame(end, error) if self.net.is_open(end) => {
                // The tracker's reader stops reading and leaves the
                // closing to the machine; a client's reader hangs up.
                if !matches!(end, End::T(..)) {
                    self.net.close(self.now, end);
                }
                self.reader_event(end, ConnEvent::BadFraming(error));
            }
            Deferred::Frame(..) | Deferred::BadFrame(..) => {}
        }
    }

    /// What a connection's reader hands the machine, mapped to the
    /// machine's input by the drivers' own functions (for a peer's piece,
    /// the drivers' fast path: hashed off the machine).
    fn reader_event(&mut self, end: End, ev: ConnEvent) {
        match end {
            End::T(i, conn) => self.tracker_input(i, tracker::conn_input(conn, ev)),
            End::S(c, inc, conn) if self.clients[c].inc == inc => {
                self.client_input(c, client::tracker_input(conn, ev))
            }
            End::P(c, inc, conn) if self.clients[c].inc == inc => {
                self.client_input(c, client::peer_input(conn, ev))
            }
            _ => {}
        }
    }

    fn feed_frame(&mut self, end: End, payload: Bytes) {
        match end {
            End::T(i, conn) if matches!(self.net.peer_of(end), Some(End::R(_))) => {
                self.rogue_frame_to_tracker(i, conn, payload)
            }
            End::T(..) => self.reader_event(end, ConnEvent::Frame(payload)),
            End::S(c, _, _) => {
                if let Some(id) = self.client_id(c) {
                    let by = match self.net.peer_of(end) {
                        Some(End::T(j, _)) => j,
                        _ => usize::MAX,
                    };
                    let at = self.now.0 - T0.0;
                    self.check.tracker_frame(c, id, by, at, &payload);
                }
                self.check.reply_to_key(client_key(c), &payload);
                self.reader_event(end, ConnEvent::Frame(payload));
            }
            End::P(c, _, conn) => {
                if let Some(id) = conn.inbound() {
                    self.watch_seeder_frame(c, id.0, &payload);
                }
                self.reader_event(end, ConnEvent::Frame(payload));
            }
            // What a rogue hears from a tracker (replies to its replays).
            End::R(_) if matches!(self.net.peer_of(end), Some(End::T(..))) => {
                self.check.reply_to_key(rogue_key(), &payload);
            }
            End::R(_) => {}
        }
    }

    /// Notes the ticket a downloader shows our seeder (checked later when
    /// pieces are served on that connection).
    fn watch_seeder_frame(&mut self, c: NodeIx, conn: u64, payload: &Bytes) {
        if payload.first() != Some(&1) {
            return;
        }
        if let Ok(p2p_proto::PeerMsg::Open { ticket }) =
            p2p_proto::PeerMsg::from_bytes(payload.clone())
        {
            let now = self.cnow(c);
            let identity = self.clients[c].identity.clone();
            self.sniff(c, ticket.clone());
            self.check.open(c, conn, ticket, identity.as_ref(), now);
        }
    }

    /// Feeds queued inputs until none is left.
    pub fn flush(&mut self) {
        for _ in 0..INBOX_STEPS_MAX {
            let Some(d) = self.inbox.pop_front() else {
                return;
            };
            self.feed(d);
        }
        panic!("the inbox never empties");
    }

    // ------------------------------------------------------------ stepping

    /// When the next delivery or machine deadline is due.
    pub fn next_at(&self) -> Option<Instant> {
        let wake = self.next_wake().map(|(t, _)| Instant(t));
        match (self.net.peek_at(), wake) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn next_wake(&self) -> Option<(u64, Who)> {
        let t = self
            .trackers
            .iter()
            .enumerate()
            .map(|(i, t)| (t.wake, Who::Tracker(i)));
        let c = self
            .clients
            .iter()
            .enumerate()
            .map(|(i, h)| (h.wake, Who::Client(i)));
        t.chain(c)
            .filter(|(w, _)| *w != u64::MAX)
            .min_by_key(|(w, _)| *w)
    }

    /// Takes the next event (a delivery, a machine deadline) if it is due
    /// by `until`. False if nothing is.
    pub fn step(&mut self, until: Instant) -> bool {
        let Some(next) = self.next_at() else {
            return false;
        };
        if next > until {
            return false;
        }
        self.now = self.now.max(next);
        self.steps += 1;
        if self.net.peek_at() == Some(next) {
            let ev = self.net.pop().expect("peeked");
            self.event(ev.kind);
        } else if let Some((_, who)) = self.next_wake() {
            self.timeout(who);
        }
        self.flush();
        true
    }

    fn event(&mut self, kind: EvKind) {
        match kind {
            EvKind::Bytes { to, bytes } => self.deliver(to, bytes),
            EvKind::Closed { to } => self.closed(to),
            EvKind::DialFailed(who) => self.dial_failed_now(who),
            EvKind::DiskDone { tracker, inc } => self.disk_done(tracker, inc),
            EvKind::RogueClose { id } => self.net.close(self.now, End::R(id)),
            EvKind::PasswordDone {
                tracker,
                inc,
                job,
                done,
            } => {
                if self.trackers[tracker].inc == inc {
                    self.tracker_input(tracker, tn::Input::PasswordDone { job, done });
                }
            }
        }
    }

    fn dial_failed_now(&mut self, who: Dialer) {
        trace!(self.trace, self.now.0, "dial failed {who:?}");
        match who {
            Dialer::Tracker(i, inc, tracker) if self.trackers[i].inc == inc => {
                self.tracker_input(i, tn::Input::DialFailed { tracker })
            }
            Dialer::Session(c, inc, conn) if self.clients[c].inc == inc => {
                self.client_input(c, cn::Input::TrackerConnectFailed { conn })
            }
            Dialer::Peer(c, inc, conn) if self.clients[c].inc == inc => {
                self.client_input(c, cn::Input::PeerConnectFailed { conn })
            }
            _ => {}
        }
    }

    fn timeout(&mut self, who: Who) {
        match who {
            Who::Tracker(i) => self.tracker_turn(i, None),
            Who::Client(c) => self.client_turn(c, None),
        }
    }

    /// Moves the clock forward to `t` (nothing is due before it).
    pub fn advance(&mut self, t: Instant) {
        self.now = self.now.max(t);
    }

    /// Host `h`'s clock jumps forward by `ms`.
    pub fn jump_clock(&mut self, h: Host, ms: u64) {
        match h {
            Host::Tracker(i) => {
                self.trackers[i].skew_ms += ms;
                self.tracker_wake(i);
            }
            Host::Client(c) => {
                self.clients[c].skew_ms += ms;
                self.client_wake(c);
            }
            Host::Rogue => {}
        }
        trace!(self.trace, self.now.0, "CLOCK {h:?} +{ms}ms");
    }

    /// Runs `ms` of simulated time (bounded in steps).
    pub fn run(&mut self, ms: u64) {
        let until = self.now + Duration(ms);
        for _ in 0..50_000_000 {
            if !self.step(until) {
                self.now = self.now.max(until);
                return;
            }
        }
        panic!("livelock before {until:?}");
    }

    /// Runs until `done` holds or `ms` pass; true if it held.
    pub fn run_until(&mut self, ms: u64, mut done: impl FnMut(&World) -> bool) -> bool {
        let until = self.now + Duration(ms);
        for _ in 0..50_000_000 {
            if done(self) {
                return true;
            }
            if !self.step(until) {
                self.now = self.now.max(until);
                return done(self);
            }
        }
        panic!("livelock before {until:?}");
    }

    // ------------------------------------------------------------ commands

    /// Starts a command at client `c`; its result lands in `done` with the
    /// returned tag.
    pub fn issue(&mut self, c: NodeIx, cmd: Command) -> u64 {
        self.next_tag += 1;
        let tag = self.next_tag;
        trace!(
            self.trace,
            self.now.0,
            "c{c} cmd #{tag} {}",
            short_cmd(&cmd)
        );
        let h = &mut self.clients[c];
        if let Command::Download { group, dest, .. } = &cmd {
            h.dest_group.insert(*dest, group.clone());
            // Registered as the handle registers a destination.
            let mut paths = h.paths.lock().expect("paths");
            paths.dests.insert(*dest, (sim_path(*dest), true));
        }
        if h.core.is_some() {
            let (reply, rx) = mpsc::channel();
            h.replies.push((tag, rx));
            self.client_turn(c, Some(Ev::Handle(HandleMsg::Cmd { cmd, reply })));
        }
        self.flush();
        tag
    }

    /// Issues a command at client `c` and runs until it is answered.
    pub fn cmd(&mut self, c: NodeIx, cmd: Command) -> Result<CommandOk, ClientError> {
        let tag = self.issue(c, cmd);
        let ok = self.run_until(30_000, |w| w.clients[c].done.iter().any(|(t, _)| *t == tag));
        assert!(ok, "command at client {c} not answered\n{}", self.tail());
        self.clients[c]
            .done
            .iter()
            .find(|(t, _)| *t == tag)
            .map(|(_, r)| r.clone())
            .expect("answered")
    }

    /// Puts `data` on client `c`'s disk as a file to share with `group`;
    /// returns the share id and the metadata the driver computed.
    pub fn put_file(
        &mut self,
        c: NodeIx,
        group: &GroupName,
        name: &FileName,
        data: Bytes,
        piece_len: u32,
    ) -> (ShareId, FileMeta) {
        let meta = meta_of(name, &data, piece_len);
        let h = &mut self.clients[c];
        let share = 1 + h.disk.shared.keys().next_back().copied().unwrap_or(0);
        self.check.contents.insert(meta.file_hash, data.clone());
        h.disk.shared.insert(share, data);
        h.shares.insert(share, (group.clone(), meta.clone()));
        let mut paths = h.paths.lock().expect("paths");
        paths.shares.insert(share, (sim_path(share), group.clone()));
        (ShareId::Upload(share), meta)
    }

    /// Puts `data` on client `c`'s disk and shares it with `group`.
    pub fn share(
        &mut self,
        c: NodeIx,
        group: &str,
        name: &str,
        data: &[u8],
        piece_len: u32,
    ) -> Result<CommandOk, ClientError> {
        let group = GroupName::new(group).expect("group name");
        let name = FileName::new(name).expect("file name");
        let (share, meta) =
            self.put_file(c, &group, &name, Bytes::copy_from_slice(data), piece_len);
        self.cmd(c, Command::Share { group, meta, share })
    }

    pub fn tail(&self) -> String {
        self.trace.tail()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Who {
    Tracker(NodeIx),
    Client(NodeIx),
}

/// A command in a few words, for the trace.
pub fn short_cmd(cmd: &Command) -> String {
    match cmd {
        Command::Tracker(r) => {
            let s = format!("{r:?}");
            s.chars().take(120).collect()
        }
        Command::Share { group, meta, share } => format!(
            "Share {}/{} {}B/{} share {}",
            group, meta.name, meta.size, meta.piece_len, share
        ),
        Command::Download {
            group, file, dest, ..
        } => format!("Download {group}/{file} dest {dest}"),
        Command::ShowDownloads => "ShowDownloads".into(),
        Command::SetRate { limit, rate } => format!("SetRate {limit:?} {rate:?}"),
        Command::ShowRates => "ShowRates".into(),
    }
}

/// What a driver computes when sharing a file.
pub fn meta_of(name: &FileName, data: &[u8], piece_len: u32) -> FileMeta {
    let piece_hashes: Vec<_> = data.chunks(piece_len as usize).map(sha1).collect();
    FileMeta {
        name: name.clone(),
        size: data.len() as u64,
        piece_len,
        file_hash: p2p_state::hash::file_root(data.len() as u64, piece_len, &piece_hashes),
        piece_hashes,
    }
}

/// Helpers used by the client half (`world_client.rs`).
impl World {
    pub(crate) fn client_of(addr: SocketAddr) -> Option<NodeIx> {
        client_of(addr)
    }
    pub(crate) fn defer_client(&mut self, c: NodeIx, ev: ClientEv) {
        self.inbox.push_back(Deferred::C(c, ev));
    }
    pub(crate) fn defer_tracker(&mut self, i: NodeIx, input: tn::Input) {
        self.inbox.push_back(Deferred::T(i, input));
    }
    pub(crate) fn dial_failed_later(&mut self, cut: bool, who: Dialer) {
        self.dial_failed(cut, who)
    }
    pub(crate) fn defer_persisted(&mut self, i: NodeIx, index: u64) {
        self.inbox
            .push_back(Deferred::T(i, tn::Input::Persisted { index }));
    }
}
