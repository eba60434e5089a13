//! The tracker driver on threads (docs/STYLE.md §2.3): one machine thread owns the
//! [`Core`] (the [`Tracker`](p2p_state::tracker::node::Tracker) and the
//! execution of its outputs, shared with every runtime), waits on a
//! channel with `recv_timeout(deadline - now)`, and hands what arrived to
//! [`Core::turn`].
//!
//! Around it: a listener thread, handing each accepted connection to a
//! TLS handshake thread ([`TlsAcceptor`]); a reader thread (frames →
//! `Frame` / `BadFraming` / `Closed`) and a writer thread per connection;
//! a short-lived connector thread per dial (TCP, then the TLS handshake);
//! and the storage thread running [`run_storage`] (group commit, then
//! `Persisted { index }`). The machine hears of a connection only once
//! its handshake is done, with the peer's key.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use p2p_proto::{FrameDecoder, TrackerId};
use p2p_state::tracker::node::Input;
use p2p_state::tracker::password::PasswordWork;
use runtime_common::Woke;
use runtime_common::tracker::{
    CLOSE_FLUSH_WAIT, Core, Msg, Recovered, TrackerIo, conn_input, password_workers, recover,
    run_password_worker,
};
pub use runtime_common::tracker::{
    DriverError, EventSink, TrackerControl, TrackerHandle, TrackerOptions,
};

use crate::conn::{
    ConnId, ConnWriter, KeyId, Listener, Session, Tls, TlsAcceptor, dial_tls, next_conn_id,
    spawn_reader_timed, spawn_writer,
};
use crate::storage::{DataDir, StorageCmd, run_storage};
use crate::wait::recv_until;

type Tx = Sender<Msg<ConnWriter>>;

/// Descriptors a connection takes here: the socket, its writer's clone and the clone kept to abort it.
const FDS_PER_CONN: u64 = 3;

/// Recovers the tracker from its data directory and starts its threads.
pub fn start(mut opts: TrackerOptions, sink: EventSink) -> Result<TrackerHandle, DriverError> {
    runtime_common::fds::budget_client_conns(&mut opts.node, FDS_PER_CONN);
    let frame_timeout = std::time::Duration::from_millis(opts.node.frame_timeout.as_millis());
    let Recovered {
        tracker,
        tls,
        pins,
        data,
        clock,
        listener,
        addr,
    } = recover(opts)?;
    let id = tracker.id();
    let (tx, rx) = mpsc::channel();
    let storage = spawn_storage(data, tx.clone())?;
    let accept_tx = tx.clone();
    let acceptor = TlsAcceptor::new(tls.clone());
    let listener = Listener::spawn(listener, move |stream, addr| {
        let tx = accept_tx.clone();
        acceptor.accept(stream, addr, move |stream, addr, session| {
            opened(
                tx,
                stream,
                session,
                addr,
                frame_timeout,
                |conn, peer: KeyId| Input::Accepted { conn, addr, peer },
            );
        });
    })?;
    let io = Threads {
        tls,
        tx: tx.clone(),
        frame_timeout,
        storage: Some(storage),
        passwords: spawn_password_workers(&tx)?,
    };
    let core = Core::new(tracker, pins, clock, io, sink);
    let thread = thread::Builder::new()
        .name(format!("tracker-{id}"))
        .spawn(move || run(core, rx, listener))?;
    let control = TrackerControl::new(move |c| tx.send(c.into()).is_ok());
    Ok(TrackerHandle::new(control, addr, move || {
        thread.join().unwrap_or(Err(DriverError::Panicked))
    }))
}

/// The machine thread's loop.
fn run(
    mut core: Core<Threads>,
    rx: Receiver<Msg<ConnWriter>>,
    listener: Listener,
) -> Result<(), DriverError> {
    let result = loop {
        let msg = match recv_until(&rx, core.clock(), core.poll_timeout()) {
            Woke::Msg(m) => Some(m),
            Woke::Timeout => None,
            Woke::Closed => break Ok(()),
        };
        if let Some(stop) = core.turn(msg) {
            break stop;
        }
    };
    shutdown(core, listener);
    result
}

/// Stops accepting, makes storage durable, closes every connection.
fn shutdown(core: Core<Threads>, listener: Listener) {
    listener.stop();
    let (mut io, writers) = core.into_parts();
    if let Some((tx, t)) = io.storage.take() {
        drop(tx);
        match t.join() {
            Ok(Ok(())) => tracing::info!("storage flushed"),
            Ok(Err(e)) => tracing::error!("storage: {e}"),
            Err(_) => tracing::error!("storage thread panicked"),
        }
    }
    let writers: Vec<JoinHandle<()>> = writers.into_iter().filter_map(|w| w.close()).collect();
    let until = std::time::Instant::now() + CLOSE_FLUSH_WAIT;
    for w in writers {
        while !w.is_finished() && std::time::Instant::now() < until {
            thread::sleep(Duration::from_millis(5));
        }
    }
}

type StorageThread = (Sender<StorageCmd>, JoinHandle<io::Result<()>>);

fn spawn_storage(data: DataDir, tx: Tx) -> io::Result<StorageThread> {
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

/// The effects threads run for the machine.
struct Threads {
    tls: Tls,
    tx: Tx,
    storage: Option<StorageThread>,
    /// The readers' frame deadline (`NodeConfig::frame_timeout`).
    frame_timeout: std::time::Duration,
    /// Queue of the password workers (they stop when it is dropped).
    passwords: mpsc::Sender<(u64, PasswordWork)>,
}

impl TrackerIo for Threads {
    type Writer = ConnWriter;

    fn dial(&mut self, tracker: TrackerId, addr: SocketAddr) {
        let tx = self.tx.clone();
        let tls = self.tls.clone();
        let frame_timeout = self.frame_timeout;
        let spawned = thread::Builder::new()
            .name(format!("dial-{tracker}"))
            .spawn(move || match dial_tls(addr, &tls) {
                Ok((stream, session)) => {
                    opened(tx, stream, session, addr, frame_timeout, |conn, peer| {
                        Input::Dialed {
                            conn,
                            tracker,
                            peer,
                        }
                    })
                }
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

    fn store(&mut self, cmd: StorageCmd) {
        if let Some((tx, _)) = &self.storage {
            // A failed send means the storage thread died; it reported why.
            let _ = tx.send(cmd);
        }
    }

    fn password(&mut self, job: u64, work: PasswordWork) {
        let _ = self.passwords.send((job, work));
    }
}

/// Starts the password workers; each reports `PasswordDone` to the machine.
fn spawn_password_workers(tx: &Tx) -> io::Result<mpsc::Sender<(u64, PasswordWork)>> {
    let (jobs, queue) = mpsc::channel();
    let queue = Arc::new(Mutex::new(queue));
    for k in 0..password_workers() {
        let (queue, tx) = (queue.clone(), tx.clone());
        thread::Builder::new()
            .name(format!("password-{k}"))
            .spawn(move || {
                run_password_worker(queue, |job, done| {
                    let _ = tx.send(Msg::Input(Input::PasswordDone { job, done }));
                })
            })?;
    }
    Ok(jobs)
}

/// A connection is up and its TLS handshake done: start its writer,
/// register it, then start its reader (in that order, so the machine knows
/// the connection before its frames). `input` makes the machine's input
/// from the connection id and the peer's key.
fn opened(
    tx: Tx,
    stream: TcpStream,
    session: Arc<Session>,
    peer: SocketAddr,
    frame_timeout: std::time::Duration,
    input: impl FnOnce(ConnId, KeyId) -> Input,
) {
    let conn = next_conn_id();
    let key = session.peer();
    let writer = match spawn_writer(conn, &stream, session.clone()) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!("{peer}: cannot start a writer thread: {e}");
            return;
        }
    };
    let abort = stream.try_clone();
    let wake = writer.wake_handle();
    let msg = Msg::Opened {
        conn,
        peer,
        writer,
        input: input(conn, key),
    };
    if tx.send(msg).is_err() {
        return;
    }
    let rx_tx = tx.clone();
    let r = spawn_reader_timed(
        conn,
        stream,
        session,
        wake,
        FrameDecoder::default(),
        frame_timeout,
        move |ev| rx_tx.send(Msg::Input(conn_input(conn, ev))).is_ok(),
    );
    if let Err(e) = r {
        tracing::warn!("{peer}: cannot start a reader thread: {e}");
        if let Ok(s) = abort {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        let _ = tx.send(Msg::Input(Input::Closed { conn }));
    }
}
