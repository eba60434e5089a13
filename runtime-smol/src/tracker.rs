//! The tracker driver on smol (docs/STYLE.md §2.3): one task owns the [`Core`]
//! (the [`Tracker`](p2p_state::tracker::node::Tracker) and the execution
//! of its outputs, shared with runtime-std) and races its channel against
//! `Timer::at(deadline)`, then hands what arrived to [`Core::turn`].
//!
//! Around it: an accept task, handing each accepted connection to a TLS
//! handshake task ([`TlsAcceptor`]); a reader and a writer task per
//! connection; a task per dial (TCP, then the TLS handshake); and the
//! storage loop ([`run_storage`], group commit, then
//! `Persisted { index }`) on smol's blocking pool, so fsyncs never stall
//! the executor.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};

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
use smol::channel::{self, Receiver, Sender};
use smol::future::FutureExt;
use smol::{Async, Task, Timer};

use crate::conn::{
    ConnId, ConnWriter, KeyId, Session, Tls, TlsAcceptor, dial_tls, next_conn_id, spawn_listener,
    spawn_reader_timed, spawn_writer,
};
use crate::exec::{self, recv_until};
use crate::storage::{DataDir, StorageCmd, run_storage};

type Tx = Sender<Msg<ConnWriter>>;

/// Descriptors a connection takes here: one socket shared by its reader and writer.
const FDS_PER_CONN: u64 = 1;

/// Recovers the tracker from its data directory and starts its tasks.
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
    let (tx, rx) = channel::unbounded();
    let storage = spawn_storage(data, tx.clone());
    let accept_tx = tx.clone();
    let acceptor = TlsAcceptor::new(tls.clone());
    let listener = spawn_listener(listener, move |stream, addr| {
        let tx = accept_tx.clone();
        acceptor.accept(stream, addr, move |stream, addr, session| {
            opened(
                &tx,
                stream,
                session,
                addr,
                frame_timeout,
                |conn, peer: KeyId| Input::Accepted { conn, addr, peer },
            );
        });
    })?;
    let io = Tasks {
        tls,
        tx: tx.clone(),
        frame_timeout,
        storage: Some(storage),
        passwords: spawn_password_workers(&tx),
    };
    let core = Core::new(tracker, pins, clock, io, sink);
    let task = exec::spawn(run(core, rx, listener));
    let control = TrackerControl::new(move |c| tx.try_send(c.into()).is_ok());
    Ok(TrackerHandle::new(control, addr, move || {
        exec::join(task).unwrap_or(Err(DriverError::Panicked))
    }))
}

/// The machine task's loop.
async fn run(
    mut core: Core<Tasks>,
    rx: Receiver<Msg<ConnWriter>>,
    listener: Task<()>,
) -> Result<(), DriverError> {
    let result = loop {
        let msg = match recv_until(&rx, core.clock(), core.poll_timeout()).await {
            Woke::Msg(m) => Some(m),
            Woke::Timeout => None,
            Woke::Closed => break Ok(()),
        };
        if let Some(stop) = core.turn(msg) {
            break stop;
        }
    };
    shutdown(core, listener).await;
    result
}

/// Stops accepting, makes storage durable, closes every connection.
async fn shutdown(core: Core<Tasks>, listener: Task<()>) {
    listener.cancel().await;
    let (mut io, writers) = core.into_parts();
    if let Some((tx, task)) = io.storage.take() {
        drop(tx);
        match task.await {
            Ok(()) => tracing::info!("storage flushed"),
            Err(e) => tracing::error!("storage: {e}"),
        }
    }
    let flushing: Vec<Task<()>> = writers.into_iter().filter_map(|w| w.close()).collect();
    let all = async {
        for t in flushing {
            t.await;
        }
    };
    let late = async {
        Timer::after(CLOSE_FLUSH_WAIT).await;
    };
    all.or(late).await;
}

type Storage = (std_mpsc::Sender<StorageCmd>, Task<io::Result<()>>);

/// The storage loop, on the blocking pool (it blocks on its queue and on
/// fsync).
fn spawn_storage(data: DataDir, tx: Tx) -> Storage {
    let (stx, srx) = std_mpsc::channel();
    let task = smol::unblock(move || {
        let done = tx.clone();
        let r = run_storage(data, srx, move |index| {
            let _ = done.try_send(Msg::Input(Input::Persisted { index }));
        });
        if let Err(e) = &r {
            let _ = tx.try_send(Msg::StorageFailed(io::Error::new(e.kind(), e.to_string())));
        }
        r
    });
    (stx, task)
}

/// The effects tasks run for the machine.
struct Tasks {
    tls: Tls,
    tx: Tx,
    storage: Option<Storage>,
    /// The readers' frame deadline (`NodeConfig::frame_timeout`).
    frame_timeout: std::time::Duration,
    /// Queue of the password workers (they stop when it is dropped).
    passwords: std_mpsc::Sender<(u64, PasswordWork)>,
}

impl TrackerIo for Tasks {
    type Writer = ConnWriter;

    fn dial(&mut self, tracker: TrackerId, addr: SocketAddr) {
        let tx = self.tx.clone();
        let tls = self.tls.clone();
        let frame_timeout = self.frame_timeout;
        exec::spawn(async move {
            match dial_tls(addr, &tls).await {
                Ok((stream, session)) => {
                    opened(&tx, stream, session, addr, frame_timeout, |conn, peer| {
                        Input::Dialed {
                            conn,
                            tracker,
                            peer,
                        }
                    })
                }
                Err(e) => {
                    tracing::debug!("tracker {tracker} at {addr} unreachable: {e}");
                    let _ = tx.try_send(Msg::Input(Input::DialFailed { tracker }));
                }
            }
        })
        .detach();
    }

    fn store(&mut self, cmd: StorageCmd) {
        if let Some((tx, _)) = &self.storage {
            // A failed send means the storage loop died; it reported why.
            let _ = tx.send(cmd);
        }
    }

    fn password(&mut self, job: u64, work: PasswordWork) {
        let _ = self.passwords.send((job, work));
    }
}

/// Starts the password workers on the blocking pool; each reports
/// `PasswordDone` to the machine.
fn spawn_password_workers(tx: &Tx) -> std_mpsc::Sender<(u64, PasswordWork)> {
    let (jobs, queue) = std_mpsc::channel();
    let queue = Arc::new(Mutex::new(queue));
    for _ in 0..password_workers() {
        let (queue, tx) = (queue.clone(), tx.clone());
        smol::unblock(move || {
            run_password_worker(queue, |job, done| {
                let _ = tx.try_send(Msg::Input(Input::PasswordDone { job, done }));
            })
        })
        .detach();
    }
    jobs
}

/// A connection is up and its TLS handshake done: start its writer,
/// register it, then start its reader (in that order, so the machine knows
/// the connection before its frames). `input` makes the machine's input
/// from the connection id and the peer's key.
fn opened(
    tx: &Tx,
    stream: Async<TcpStream>,
    session: Arc<Session>,
    peer: SocketAddr,
    frame_timeout: std::time::Duration,
    input: impl FnOnce(ConnId, KeyId) -> Input,
) {
    let conn = next_conn_id();
    let stream = Arc::new(stream);
    let key = session.peer();
    let writer = spawn_writer(stream.clone(), session.clone());
    let wake = writer.wake_handle();
    let msg = Msg::Opened {
        conn,
        peer,
        writer,
        input: input(conn, key),
    };
    if tx.try_send(msg).is_err() {
        return;
    }
    let tx = tx.clone();
    let decoder = FrameDecoder::default();
    spawn_reader_timed(stream, session, wake, decoder, frame_timeout, move |ev| {
        tx.try_send(Msg::Input(conn_input(conn, ev))).is_ok()
    });
}
