//! The tracker driver's runtime-free half (docs/STYLE.md §2.3): options, errors,
//! the handle the binaries hold, and [`Core`], which owns the [`Tracker`]
//! machine and executes its outputs. A runtime supplies the plumbing
//! through [`TrackerIo`] (a writer per connection, dialing, the storage
//! loop) and runs the loop: wait for the first of a [`Msg`] or the
//! machine's deadline, then [`Core::turn`].
//!
//! Executing an output never blocks and never calls back into the machine:
//!
//! - `Send` → the connection's writer; `Close` → flush, then shut down;
//! - `Dial` → [`TrackerIo::dial`], which reports `Dialed` / `DialFailed`;
//! - `Persist(Log | Snapshot | Resubmit)` → [`TrackerIo::store`]
//!   (the storage loop of [`crate::storage`] reports `Persisted { index }`);
//! - `Password` → [`TrackerIo::password`]: argon2 runs on the driver's
//!   password workers ([`crate::runtime::spawn_workers`]), never on the machine's
//!   thread, which goes on serving while a login is checked;
//! - `PinTracker` → the data directory's `known_trackers` and a warning
//!   ([`Pinner::pin`]; a small synced write, once per tracker ever);
//! - `Event` → a `tracing` line, then the caller's [`EventSink`].
//!
//! Inputs for a connection the driver already closed (frames still in the
//! channel) are dropped here: the machine never hears of it again.

use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use p2p_proto::{DecodeError, KeyId, TrackerId};
use p2p_state::Instant;
use p2p_state::tracker::node::{
    ConsoleCmd, Input, NodeConfig, OnDisk, Output, Tracker, TrackerEvent,
};
use p2p_state::tracker::password::PasswordWork;
use p2p_state::tracker::repl::{ReplEvent, epoch_primary, epoch_round};

use crate::clock::{Clock, Now};
use crate::conn::{ConnEvent, ConnId, FrameSink, PEER_TRACKER_WRITE_QUEUE_LEN_MAX};
use crate::known_trackers::{KnownTrackers, PinError, Pinner, Pins, merge_pins};
use crate::log_limit::{Admit, with_suppressed};
use crate::storage::{DataDir, StorageCmd};
use crate::tls::{Identity, IdentityError, Tls};

/// Receives every event the tracker reports (after the driver logged it),
/// on the machine's thread or task: keep it quick.
pub type EventSink = Box<dyn FnMut(&TrackerEvent) + Send>;

/// How long shutdown waits for writers to flush their last frames.
pub const CLOSE_FLUSH_WAIT: Duration = Duration::from_secs(1);

/// What a tracker needs to start.
pub struct TrackerOptions {
    pub node: NodeConfig,
    /// Holds `log` and `snapshot`; created if missing.
    pub data_dir: PathBuf,
    /// Already bound (by the binary to its line's address; by tests to port 0).
    pub listener: TcpListener,
    /// The machine's RNG seed; `None` draws one from the OS.
    pub seed: Option<u64>,
}

/// Why a tracker could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("data directory {dir}: {source}")]
    DataDir { dir: PathBuf, source: io::Error },
    #[error("{0}")]
    Identity(#[from] IdentityError),
    #[error("{0}")]
    Pins(#[from] PinError),
    #[error("the state on disk does not decode: {0}")]
    Recover(DecodeError),
    #[error("no OS randomness for the seed: {0}")]
    Seed(getrandom::Error),
    #[error("cannot start: {0}")]
    Io(#[from] io::Error),
    #[error("writing the data directory failed, stopping: {0}")]
    StorageFailed(io::Error),
    #[error("the tracker thread panicked")]
    Panicked,
}

/// What the machine's loop receives.
pub enum Msg<W> {
    /// A connection is up; register its writer before its first frame.
    Opened {
        conn: ConnId,
        peer: SocketAddr,
        writer: W,
        input: Input,
    },
    Input(Input),
    StorageFailed(io::Error),
    Shutdown,
}

/// What a reader's event means to the machine.
pub fn conn_input(conn: ConnId, ev: ConnEvent) -> Input {
    match ev {
        ConnEvent::Frame(payload) => Input::Frame { conn, payload },
        ConnEvent::BadFraming(error) => Input::BadFraming { conn, error },
        ConnEvent::Closed => Input::Closed { conn },
    }
}

/// A request from outside the loop (console, signals).
pub enum Control {
    Console(ConsoleCmd),
    Stop,
}

impl<W> From<Control> for Msg<W> {
    fn from(c: Control) -> Self {
        match c {
            Control::Console(cmd) => Msg::Input(Input::Console(cmd)),
            Control::Stop => Msg::Shutdown,
        }
    }
}

/// Talks to a running tracker from other threads (console, signals).
#[derive(Clone)]
pub struct TrackerControl {
    send: Arc<dyn Fn(Control) -> bool + Send + Sync>,
}

impl TrackerControl {
    /// `send` queues a request for the loop; `false` once it has stopped.
    pub fn new(send: impl Fn(Control) -> bool + Send + Sync + 'static) -> Self {
        TrackerControl {
            send: Arc::new(send),
        }
    }

    /// Runs a console command; its answer comes as `TrackerEvent::Console`.
    /// `false` if the tracker has stopped.
    pub fn console(&self, cmd: ConsoleCmd) -> bool {
        (self.send)(Control::Console(cmd))
    }

    /// Asks for a clean shutdown (storage flushed, connections closed).
    pub fn stop(&self) -> bool {
        (self.send)(Control::Stop)
    }
}

type Join = Box<dyn FnOnce() -> Result<(), DriverError> + Send>;

/// A running tracker. Dropping it asks for shutdown without waiting.
pub struct TrackerHandle {
    control: TrackerControl,
    addr: SocketAddr,
    join: Option<Join>,
}

impl TrackerHandle {
    /// `join` waits for the loop to end and returns its result.
    pub fn new(
        control: TrackerControl,
        addr: SocketAddr,
        join: impl FnOnce() -> Result<(), DriverError> + Send + 'static,
    ) -> Self {
        TrackerHandle {
            control,
            addr,
            join: Some(Box::new(join)),
        }
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn control(&self) -> TrackerControl {
        self.control.clone()
    }

    /// Waits until the tracker stops (after [`TrackerControl::stop`] or a
    /// storage failure).
    pub fn join(mut self) -> Result<(), DriverError> {
        match self.join.take() {
            Some(j) => j(),
            None => Ok(()),
        }
    }

    /// Stops the tracker cleanly and waits for it.
    pub fn shutdown(self) -> Result<(), DriverError> {
        self.control.stop();
        self.join()
    }
}

impl Drop for TrackerHandle {
    fn drop(&mut self) {
        if self.join.is_some() {
            self.control.stop();
        }
    }
}

/// A tracker recovered from its data directory, ready to run.
pub struct Recovered {
    pub tracker: Tracker,
    /// The TLS configurations of this tracker's identity (its data
    /// directory's `identity.key`).
    pub tls: Tls,
    /// Where pins learned on first contact go (the data directory's
    /// `known_trackers`, already merged into the machine's config).
    pub pins: Pinner,
    pub data: DataDir,
    pub clock: Clock,
    pub listener: TcpListener,
    pub addr: SocketAddr,
}

/// Loads (or makes) the identity, opens the data directory, draws the
/// seed and recovers the machine.
pub fn recover(opts: TrackerOptions) -> Result<Recovered, DriverError> {
    let clock = Clock::new();
    let dir = opts.data_dir.clone();
    // First, so a new data directory is made private (0700).
    let identity = Identity::load_or_create(&dir)?;
    let known = KnownTrackers::load(&dir)?;
    let mut node = opts.node;
    let addrs: Vec<SocketAddr> = node.trackers.iter().map(|(_, a)| *a).collect();
    node.tracker_keys = merge_pins(&addrs, &node.tracker_keys, &known, |i| {
        format!("tracker {}'s configured key", i + 1)
    })?;
    let (data, rec) = DataDir::open(&dir).map_err(|source| DriverError::DataDir {
        dir: dir.clone(),
        source,
    })?;
    let seed = match opts.seed {
        Some(s) => s,
        None => getrandom::u64().map_err(DriverError::Seed)?,
    };
    let id = node.id;
    tracing::info!(
        "tracker {id}: data in {}: {}, {} log entries",
        dir.display(),
        match &rec.snapshot {
            Some((at, b)) => format!("snapshot at {}:{} ({} bytes)", at.epoch, at.index, b.len()),
            None => "no snapshot".into(),
        },
        rec.entries.len()
    );
    if !rec.resubmit.is_empty() {
        tracing::info!(
            "tracker {id}: {} divergent ops still to re-submit",
            rec.resubmit.len()
        );
    }
    let disk = OnDisk {
        snapshot: rec.snapshot,
        entries: rec.entries,
        resubmit: rec.resubmit,
    };
    let tracker = Tracker::recover(node, seed, clock.now(), disk).map_err(DriverError::Recover)?;
    let addr = opts.listener.local_addr()?;
    tracing::info!(
        "tracker {id} listening on {addr}, key fingerprint {}",
        identity.key_id()
    );
    Ok(Recovered {
        tracker,
        tls: identity.tls(),
        pins: Pinner::new(known, addrs),
        data,
        clock,
        listener: opts.listener,
        addr,
    })
}

/// The effects only a runtime can run. Neither may block.
pub trait TrackerIo {
    type Writer: FrameSink;
    /// Connects to a peer tracker; reports `Msg::Opened` with
    /// `Input::Dialed`, or `Input::DialFailed`.
    fn dial(&mut self, tracker: TrackerId, addr: SocketAddr);
    /// Queues work for the storage loop.
    fn store(&mut self, cmd: StorageCmd);
    /// Queues argon2 work for the password workers ([`crate::runtime::spawn_workers`]);
    /// they report `Input::PasswordDone`.
    fn password(&mut self, job: u64, work: PasswordWork);
}

/// How many password workers a driver runs: argon2 jobs at once, each
/// holding its memory cost (19 MiB at the production cost).
pub fn password_workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().min(4))
}

struct Conn<W> {
    writer: W,
    peer: SocketAddr,
    /// The key the peer proved in the TLS handshake.
    key: KeyId,
}

/// The machine and what the driver knows beside it. The runtimes run it
/// on the [`Clock`] and record pins with a [`Pinner`]; the simulation
/// (`sim/`) runs the same core on its simulated clock, disk and network.
pub struct Core<R: TrackerIo, C: Now = Clock, P: Pins = Pinner> {
    tracker: Tracker,
    pins: P,
    clock: C,
    conns: BTreeMap<ConnId, Conn<R::Writer>>,
    io: R,
    sink: EventSink,
    /// Refused connections and bad input logged, rate-limited (a flood
    /// must not fill the log).
    refusals: crate::log_limit::LogLimit,
}

impl<R: TrackerIo, C: Now, P: Pins> Core<R, C, P> {
    /// Runs the machine's first outputs (dials to the other trackers).
    pub fn new(tracker: Tracker, pins: P, clock: C, io: R, sink: EventSink) -> Self {
        let mut core = Core {
            tracker,
            pins,
            clock,
            conns: BTreeMap::new(),
            io,
            sink,
            refusals: Default::default(),
        };
        core.drain();
        core
    }

    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// The machine, to look at (the simulation's checkers).
    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    /// When the loop must wake up if nothing arrives.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.tracker.poll_timeout().map(|(t, _)| t)
    }

    /// One turn of the loop: the message that woke it (`None`: the wait
    /// timed out), then the machine's deadline if the clock has passed it
    /// (quinn's drive_timer: trust the clock, not the wake-up reason).
    /// `Some` ends the loop with that result.
    pub fn turn(&mut self, msg: Option<Msg<R::Writer>>) -> Option<Result<(), DriverError>> {
        if let Some(m) = msg
            && let Some(stop) = self.on_msg(m)
        {
            return Some(stop);
        }
        let now = self.clock.now();
        if let Some((d, why)) = self.tracker.poll_timeout()
            && d <= now
        {
            tracing::trace!("deadline: {why:?}");
            self.tracker.handle_timeout(now);
            self.drain();
        }
        None
    }

    /// For shutdown: the runtime's effects and every open writer.
    pub fn into_parts(self) -> (R, Vec<R::Writer>) {
        let writers = self.conns.into_values().map(|c| c.writer).collect();
        (self.io, writers)
    }

    /// Handles one message; `Some` ends the loop with that result.
    fn on_msg(&mut self, m: Msg<R::Writer>) -> Option<Result<(), DriverError>> {
        match m {
            Msg::Opened {
                conn,
                peer,
                writer,
                input,
            } => {
                tracing::debug!(conn, "connection with {peer} up");
                let (key, dialed) = match &input {
                    Input::Dialed { peer, .. } => (*peer, true),
                    Input::Accepted { peer, .. } => (*peer, false),
                    _ => unreachable!("a connection opens with Dialed or Accepted"),
                };
                // A peer tracker's connection may carry a whole snapshot.
                if dialed || self.is_tracker_key(key) {
                    writer.set_queue_max(PEER_TRACKER_WRITE_QUEUE_LEN_MAX);
                }
                self.conns.insert(conn, Conn { writer, peer, key });
                self.feed(input);
            }
            Msg::Input(input) => {
                if self.known(&input) {
                    let frame_of = match &input {
                        Input::Frame { conn, .. } => Some(*conn),
                        _ => None,
                    };
                    self.feed(input);
                    // Its replies are queued: the reader may go on.
                    if let Some(c) = frame_of.and_then(|c| self.conns.get(&c)) {
                        c.writer.frame_handled();
                    }
                }
            }
            Msg::StorageFailed(e) => {
                tracing::error!("storage failed: {e}; stopping");
                return Some(Err(DriverError::StorageFailed(e)));
            }
            Msg::Shutdown => {
                tracing::info!("shutting down");
                return Some(Ok(()));
            }
        }
        None
    }

    /// Drops input for connections already closed here (frames still in the
    /// channel when the machine closed it); forgets a connection on `Closed`.
    fn known(&mut self, input: &Input) -> bool {
        match input {
            Input::Frame { conn, .. } | Input::BadFraming { conn, .. } => {
                self.conns.contains_key(conn)
            }
            Input::Closed { conn } => match self.conns.remove(conn) {
                Some(c) => {
                    tracing::debug!(conn, "connection with {} closed by the peer", c.peer);
                    true
                }
                None => false,
            },
            _ => true,
        }
    }

    fn feed(&mut self, input: Input) {
        let now = self.clock.now();
        self.tracker.handle_input(now, input);
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(o) = self.tracker.poll_output() {
            self.execute(o);
        }
    }

    /// Runs one output. Never blocks and never calls the machine.
    fn execute(&mut self, o: Output) {
        match o {
            Output::Send { conn, msg } => {
                let Some(c) = self.conns.get(&conn) else {
                    tracing::trace!(conn, "send on a closed connection dropped");
                    return;
                };
                let mut frame = BytesMut::new();
                msg.encode_frame(&mut frame);
                if !c.writer.send(frame.freeze()) {
                    tracing::warn!(
                        conn,
                        "{}: send queue full or writer gone; connection cut",
                        c.peer
                    );
                }
            }
            Output::Close { conn, why } => {
                if let Some(c) = self.conns.remove(&conn) {
                    tracing::debug!(conn, "closing connection with {}: {}", c.peer, why.as_str());
                    c.writer.close();
                }
            }
            Output::Dial { tracker, addr } => {
                tracing::debug!("dialing tracker {tracker} at {addr}");
                self.io.dial(tracker, addr)
            }
            Output::Persist(write) => self.io.store(StorageCmd::Persist(write)),
            Output::Password { job, work } => self.io.password(job, work),
            Output::PinTracker { tracker, key } => {
                self.pins.pin(usize::from(tracker.0).saturating_sub(1), key);
                for c in self.conns.values().filter(|c| c.key == key) {
                    c.writer.set_queue_max(PEER_TRACKER_WRITE_QUEUE_LEN_MAX);
                }
            }
            Output::Event(e) => {
                self.log_event(&e);
                (self.sink)(&e);
            }
        }
    }

    fn peer_of(&self, conn: ConnId) -> String {
        self.conns
            .get(&conn)
            .map(|c| c.peer.to_string())
            .unwrap_or_else(|| "?".into())
    }

    /// Whether `key` is pinned for one of the group's trackers.
    fn is_tracker_key(&self, key: KeyId) -> bool {
        (1..=self.pins.addrs().len())
            .filter_map(|i| u16::try_from(i).ok())
            .any(|i| self.tracker.pinned_key(TrackerId(i)) == Some(key))
    }

    fn log_event(&mut self, e: &TrackerEvent) {
        match e {
            TrackerEvent::ConnectedToTracker { tracker } => {
                tracing::info!("connected to peer tracker {tracker}")
            }
            TrackerEvent::DisconnectedFromTracker { tracker } => {
                tracing::warn!("lost the connection to peer tracker {tracker}")
            }
            TrackerEvent::ClientConnected { conn, addr } => {
                tracing::info!(conn = *conn, "client connected from {addr}")
            }
            TrackerEvent::ClientGone { conn } => {
                tracing::info!(conn = *conn, "client disconnected")
            }
            TrackerEvent::BadInput { conn, addr, error } => {
                let peer = addr
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| self.peer_of(*conn));
                if let Admit::Log { suppressed } = self.refusals.admit(std::time::Instant::now()) {
                    let line = format_args!("rejected input from {peer}: {error}; closing");
                    tracing::warn!(conn = *conn, "{}", with_suppressed(line, suppressed))
                }
            }
            TrackerEvent::TrackerKeyRefused(r) => tracing::error!("{r}"),
            TrackerEvent::Repl(r) => log_repl(r),
            TrackerEvent::Console(_) => {}
        }
    }
}

fn epoch_name(epoch: u64) -> String {
    match epoch_primary(epoch) {
        Some(p) => format!("{} (round {}, primary {p})", epoch, epoch_round(epoch)),
        None => epoch.to_string(),
    }
}

fn log_repl(e: &ReplEvent) {
    match e {
        ReplEvent::BecamePrimary { epoch } => {
            tracing::info!("became primary, epoch {}", epoch_name(*epoch))
        }
        ReplEvent::Following { primary, epoch } => {
            tracing::info!("following primary {primary}, epoch {}", epoch_name(*epoch))
        }
        ReplEvent::InSync { primary } => tracing::info!("caught up with primary {primary}"),
        ReplEvent::PeerInSync { peer } => tracing::info!("tracker {peer} is in sync"),
        ReplEvent::PeerOutOfSync { peer, why } => {
            tracing::warn!("tracker {peer} is out of sync: {why}")
        }
        ReplEvent::PeerSilent { peer, silent_ms } => tracing::warn!(
            "no word from tracker {peer} for {silent_ms} ms: treating it as gone (closing its connection)"
        ),
        ReplEvent::SnapshotInstalled { at } => {
            tracing::info!(
                "installed the primary's snapshot at {}:{}",
                at.epoch,
                at.index
            )
        }
        ReplEvent::Diverged {
            fork,
            resubmitting,
            lost,
        } => tracing::warn!(
            "log diverged from the primary's after index {fork}: re-submitting {resubmitting} op(s), {lost} lost"
        ),
        ReplEvent::Conflict { op, reason } => {
            // Debug of an op shows no password hash and only a prefix of a
            // token or key (p2p_proto::PasswordHash, SessionToken).
            tracing::warn!("divergent op {:?} no longer applies: {reason}", op.kind)
        }
        ReplEvent::PeerError { peer, what } => {
            tracing::warn!("tracker {peer}: {}", what.as_str())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use p2p_state::tracker::state::TrackerConfig;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct NoIo;

    impl TrackerIo for NoIo {
        type Writer = Sink;
        fn dial(&mut self, _: TrackerId, _: SocketAddr) {}
        fn store(&mut self, _: StorageCmd) {}
        fn password(&mut self, _: u64, _: PasswordWork) {}
    }

    /// A writer that remembers the queue bound it was given (0: none).
    #[derive(Clone, Default)]
    struct Sink(Arc<AtomicUsize>);

    impl FrameSink for Sink {
        fn send(&self, _: Bytes) -> bool {
            true
        }
        fn close(self) {}
        fn abort(&self) {}
        fn set_queue_max(&self, max: usize) {
            self.0.store(max, Ordering::SeqCst);
        }
    }

    /// A peer tracker's connection (dialed, or accepted with its pinned
    /// key, or pinned on first contact) may queue a whole snapshot; a
    /// client's keeps the small default bound.
    #[test]
    fn only_peer_trackers_connections_get_the_larger_write_queue() {
        let addrs: Vec<SocketAddr> = vec![
            "127.0.0.1:7001".parse().unwrap(),
            "127.0.0.1:7002".parse().unwrap(),
            "127.0.0.1:7003".parse().unwrap(),
        ];
        let pinned = KeyId([2; 32]);
        let trackers = (1..=3).map(|i| (TrackerId(i), addrs[i as usize - 1]));
        let mut cfg = NodeConfig::new(TrackerId(1), trackers.collect(), TrackerConfig::test());
        cfg.tracker_keys = vec![None, Some(pinned), None];
        let tracker = Tracker::new(cfg, 1, Instant::from_millis(0));
        let dir = tempfile::tempdir().unwrap();
        let pins = Pinner::new(KnownTrackers::load(dir.path()).unwrap(), addrs.clone());
        let mut core = Core::new(tracker, pins, Clock::new(), NoIo, Box::new(|_| {}));
        let mut open = |input: Input| {
            let writer = Sink::default();
            let conn = match &input {
                Input::Accepted { conn, .. } | Input::Dialed { conn, .. } => *conn,
                _ => unreachable!(),
            };
            let peer = addrs[1];
            let _ = core.turn(Some(Msg::Opened {
                conn,
                peer,
                writer: writer.clone(),
                input,
            }));
            writer
        };
        let client = "127.0.0.9:5000".parse().unwrap();
        let c = open(Input::Accepted {
            conn: 1,
            addr: client,
            peer: KeyId([9; 32]),
        });
        assert_eq!(c.0.load(Ordering::SeqCst), 0, "a client's: the default");
        let accepted = open(Input::Accepted {
            conn: 2,
            addr: addrs[1],
            peer: pinned,
        });
        let dialed = open(Input::Dialed {
            conn: 3,
            tracker: TrackerId(2),
            peer: pinned,
        });
        for w in [accepted, dialed] {
            assert_eq!(w.0.load(Ordering::SeqCst), PEER_TRACKER_WRITE_QUEUE_LEN_MAX);
        }
    }
}
