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

mod executor;
mod log;

pub use executor::Core;

#[cfg(test)]
mod tests;
