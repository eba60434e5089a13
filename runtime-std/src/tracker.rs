//! The tracker driver (STYLE 2.3): one machine thread owns the
//! [`Tracker`], waits on a channel with `recv_timeout(deadline - now)`,
//! feeds it one input (or the timeout), then drains `poll_output` and
//! executes each output without blocking:
//!
//! - `Send` → the connection's writer thread; `Close` → flush, then shut down;
//! - `Dial` → a short-lived connector thread that reports `Dialed` / `DialFailed`;
//! - `Persist` / `PersistSnapshot` → the storage thread (group commit, then
//!   `Persisted { index }`), see [`crate::storage`];
//! - `Event` → a `tracing` line, then the caller's [`EventSink`].
//!
//! A listener thread accepts connections; every connection gets a reader
//! thread (frames → `Frame` / `BadFraming` / `Closed`) and a writer thread.
//! Inputs for a connection the driver already closed (frames still in the
//! channel) are dropped here: the machine never hears of it again.

use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use bytes::BytesMut;
use p2p_proto::{DecodeError, FrameDecoder, TrackerId};
use p2p_state::tracker::node::{ConsoleCmd, Input, NodeConfig, Output, Tracker, TrackerEvent};
use p2p_state::tracker::repl::{ReplEvent, epoch_primary, epoch_round};

use crate::clock::Clock;
use crate::conn::{
    ConnEvent, ConnId, ConnWriter, DIAL_TIMEOUT, Listener, dial, next_conn_id, spawn_reader,
};
use crate::storage::{DataDir, StorageCmd, run_storage};

/// Receives every event the tracker reports (after the driver logged it),
/// on the machine thread: keep it quick.
pub type EventSink = Box<dyn FnMut(&TrackerEvent) + Send>;

/// How long shutdown waits for writers to flush their last frames.
const CLOSE_FLUSH_WAIT: Duration = Duration::from_secs(1);

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

enum Msg {
    /// A connection is up; register its writer before its first frame.
    Opened {
        conn: ConnId,
        peer: SocketAddr,
        writer: ConnWriter,
        input: Input,
    },
    Input(Input),
    StorageFailed(io::Error),
    Shutdown,
}

/// Talks to a running tracker from other threads (console, signals).
#[derive(Clone)]
pub struct TrackerControl {
    tx: Sender<Msg>,
}

impl TrackerControl {
    /// Runs a console command; its answer comes as `TrackerEvent::Console`.
    /// `false` if the tracker has stopped.
    pub fn console(&self, cmd: ConsoleCmd) -> bool {
        self.tx.send(Msg::Input(Input::Console(cmd))).is_ok()
    }

    /// Asks for a clean shutdown (storage flushed, connections closed).
    pub fn stop(&self) -> bool {
        self.tx.send(Msg::Shutdown).is_ok()
    }
}

/// A running tracker. Dropping it asks for shutdown without waiting.
pub struct TrackerHandle {
    control: TrackerControl,
    addr: SocketAddr,
    thread: Option<JoinHandle<Result<(), DriverError>>>,
}

impl TrackerHandle {
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
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(DriverError::Panicked),
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
        if self.thread.is_some() {
            self.control.stop();
        }
    }
}

/// Recovers the tracker from its data directory and starts its threads.
pub fn start(opts: TrackerOptions, sink: EventSink) -> Result<TrackerHandle, DriverError> {
    let clock = Clock::new();
    let dir = opts.data_dir.clone();
    let data_err = |source| DriverError::DataDir {
        dir: dir.clone(),
        source,
    };
    let (data, rec) = DataDir::open(&opts.data_dir).map_err(data_err)?;
    let seed = match opts.seed {
        Some(s) => s,
        None => getrandom::u64().map_err(DriverError::Seed)?,
    };
    let id = opts.node.id;
    tracing::info!(
        "tracker {id}: data in {}: {}, {} log entries",
        dir.display(),
        match &rec.snapshot {
            Some((at, b)) => format!("snapshot at {}:{} ({} bytes)", at.epoch, at.index, b.len()),
            None => "no snapshot".into(),
        },
        rec.entries.len()
    );
    let tracker = Tracker::recover(opts.node, seed, clock.now(), rec.snapshot, rec.entries)
        .map_err(DriverError::Recover)?;
    let (tx, rx) = mpsc::channel();
    let storage = spawn_storage(data, tx.clone())?;
    let addr = opts.listener.local_addr()?;
    let accept_tx = tx.clone();
    let listener = Listener::spawn(opts.listener, move |stream, peer| {
        opened(accept_tx.clone(), stream, peer, |conn| Input::Accepted {
            conn,
            addr: peer,
        });
    })?;
    tracing::info!("tracker {id} listening on {addr}");
    let driver = Driver {
        tracker,
        clock,
        tx: tx.clone(),
        conns: BTreeMap::new(),
        storage: Some(storage),
        listener: Some(listener),
        sink,
    };
    let thread = thread::Builder::new()
        .name(format!("tracker-{id}"))
        .spawn(move || driver.run(rx))?;
    Ok(TrackerHandle {
        control: TrackerControl { tx },
        addr,
        thread: Some(thread),
    })
}

type StorageThread = (Sender<StorageCmd>, JoinHandle<io::Result<()>>);

fn spawn_storage(data: DataDir, tx: Sender<Msg>) -> io::Result<StorageThread> {
    let (stx, srx) = mpsc::channel();
    let t = thread::Builder::new()
        .name("storage".into())
        .spawn(move || {
            let done = tx.clone();
            let r = run_storage(data, srx, move |index| {
                let _ = done.send(Msg::Input(Input::Persisted { index }));
            });
            if let Err(e) = &r {
                let _ = tx.send(Msg::StorageFailed(io::Error::new(e.kind(), e.to_string())));
            }
            r
        })?;
    Ok((stx, t))
}

/// A connection is up: start its writer, register it, then start its reader
/// (in that order, so the machine knows the connection before its frames).
fn opened(
    tx: Sender<Msg>,
    stream: TcpStream,
    peer: SocketAddr,
    input: impl FnOnce(ConnId) -> Input,
) {
    let conn = next_conn_id();
    let writer = match ConnWriter::spawn(conn, &stream) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!("{peer}: cannot start a writer thread: {e}");
            return;
        }
    };
    let abort = stream.try_clone();
    let msg = Msg::Opened {
        conn,
        peer,
        writer,
        input: input(conn),
    };
    if tx.send(msg).is_err() {
        return;
    }
    let rx_tx = tx.clone();
    let r = spawn_reader(conn, stream, FrameDecoder::default(), move |ev| {
        let input = match ev {
            ConnEvent::Frame(payload) => Input::Frame { conn, payload },
            ConnEvent::BadFraming(error) => Input::BadFraming { conn, error },
            ConnEvent::Closed => Input::Closed { conn },
        };
        rx_tx.send(Msg::Input(input)).is_ok()
    });
    if let Err(e) = r {
        tracing::warn!("{peer}: cannot start a reader thread: {e}");
        if let Ok(s) = abort {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        let _ = tx.send(Msg::Input(Input::Closed { conn }));
    }
}

struct Conn {
    writer: ConnWriter,
    peer: SocketAddr,
}

struct Driver {
    tracker: Tracker,
    clock: Clock,
    tx: Sender<Msg>,
    conns: BTreeMap<ConnId, Conn>,
    storage: Option<StorageThread>,
    listener: Option<Listener>,
    sink: EventSink,
}

impl Driver {
    fn run(mut self, rx: Receiver<Msg>) -> Result<(), DriverError> {
        self.drain();
        let result = loop {
            let deadline = self.tracker.poll_timeout();
            let msg = match deadline {
                Some(d) => match rx.recv_timeout(self.clock.until(d)) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break Ok(()),
                },
                None => match rx.recv() {
                    Ok(m) => Some(m),
                    Err(_) => break Ok(()),
                },
            };
            if let Some(m) = msg
                && let Some(stop) = self.on_msg(m)
            {
                break stop;
            }
            // Check the clock, not the wake-up reason (quinn's drive_timer).
            let now = self.clock.now();
            if deadline.is_some_and(|d| d <= now) {
                self.tracker.handle_timeout(now);
                self.drain();
            }
        };
        self.shutdown();
        result
    }

    /// Handles one message; `Some` ends the loop with that result.
    fn on_msg(&mut self, m: Msg) -> Option<Result<(), DriverError>> {
        match m {
            Msg::Opened {
                conn,
                peer,
                writer,
                input,
            } => {
                tracing::debug!(conn, "connection with {peer} up");
                self.conns.insert(conn, Conn { writer, peer });
                self.feed(input);
            }
            Msg::Input(input) => {
                if self.known(&input) {
                    self.feed(input);
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
                    drop(c.writer.close());
                }
            }
            Output::Dial { tracker, addr } => self.dial(tracker, addr),
            Output::Persist {
                from_index,
                entries,
            } => self.store(StorageCmd::Persist {
                from_index,
                entries,
            }),
            Output::PersistSnapshot {
                at,
                data,
                reset_log,
            } => self.store(StorageCmd::Snapshot {
                at,
                data,
                reset_log,
            }),
            Output::Event(e) => {
                self.log_event(&e);
                (self.sink)(&e);
            }
        }
    }

    fn dial(&self, tracker: TrackerId, addr: SocketAddr) {
        tracing::debug!("dialing tracker {tracker} at {addr}");
        let tx = self.tx.clone();
        let spawned = thread::Builder::new()
            .name(format!("dial-{tracker}"))
            .spawn(move || match dial(addr, DIAL_TIMEOUT) {
                Ok(stream) => opened(tx, stream, addr, |conn| Input::Dialed { conn, tracker }),
                Err(e) => {
                    tracing::debug!("tracker {tracker} at {addr} unreachable: {e}");
                    let _ = tx.send(Msg::Input(Input::DialFailed { tracker }));
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start a dial thread: {e}");
            let _ = self.tx.send(Msg::Input(Input::DialFailed { tracker }));
        }
    }

    fn store(&self, cmd: StorageCmd) {
        if let Some((tx, _)) = &self.storage {
            // A failed send means the storage thread died; it reported why.
            let _ = tx.send(cmd);
        }
    }

    fn peer_of(&self, conn: ConnId) -> String {
        self.conns
            .get(&conn)
            .map(|c| c.peer.to_string())
            .unwrap_or_else(|| "?".into())
    }

    fn log_event(&self, e: &TrackerEvent) {
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
                tracing::warn!(conn = *conn, "rejected input from {peer}: {error}; closing")
            }
            TrackerEvent::Repl(r) => log_repl(r),
            TrackerEvent::Console(_) => {}
        }
    }

    /// Stops accepting, makes storage durable, closes every connection.
    fn shutdown(&mut self) {
        if let Some(l) = self.listener.take() {
            l.stop();
        }
        if let Some((tx, t)) = self.storage.take() {
            drop(tx);
            match t.join() {
                Ok(Ok(())) => tracing::info!("storage flushed"),
                Ok(Err(e)) => tracing::error!("storage: {e}"),
                Err(_) => tracing::error!("storage thread panicked"),
            }
        }
        let writers: Vec<JoinHandle<()>> = std::mem::take(&mut self.conns)
            .into_values()
            .filter_map(|c| c.writer.close())
            .collect();
        let until = std::time::Instant::now() + CLOSE_FLUSH_WAIT;
        for w in writers {
            while !w.is_finished() && std::time::Instant::now() < until {
                thread::sleep(Duration::from_millis(5));
            }
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
            tracing::warn!("divergent op {:?} no longer applies: {reason}", op.kind)
        }
        ReplEvent::PeerError { peer, what } => {
            tracing::warn!("tracker {peer}: {}", what.as_str())
        }
    }
}
