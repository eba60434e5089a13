//! What a runtime plugs into the shared drivers, and the driver code
//! written once on top of it (quinn's `Runtime` trait beside its
//! endpoint driver). A runtime ([`Runtime`]) says how a connection's
//! reader and writer run, how it dials, where blocking work runs and what
//! its channels are; everything else is here:
//!
//! - [`attach`]: a connection whose handshake is done gets its writer,
//!   is registered with the machine, then gets its reader (in that order,
//!   so the machine knows a connection before its frames);
//! - [`spawn_workers`]: a pool of blocking workers fed by one queue (the
//!   tracker's password workers, the client's disk workers);
//! - [`TrackerEffects`], [`ClientEffects`]: the effects of the tracker's
//!   and the client's `Core` (dials, storage, password work, disk jobs).
//!
//! A runtime keeps its machine loop (a thread blocking on its channel, a
//! task racing it against a timer), its listener and its shutdown.

use std::fs::File;
use std::io;
use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use bytes::Bytes;
use p2p_proto::TrackerId;
use p2p_state::client::node as cn;
use p2p_state::client::session::SessionConn;
use p2p_state::tracker::node::Input;
use p2p_state::tracker::password::PasswordWork;

use crate::client::{
    ClientIo, DISK_WORKERS, DlFile, Ev, Job, JobDone, PeerSink, run_job, tracker_input,
};
use crate::conn::{
    ConnId, ConnWriter, EventSink, FRAME_TIMEOUT, FileRange, WriterRuntime, WriterWake,
    next_conn_id,
};
use crate::storage::{DataDir, StorageCmd, run_storage};
use crate::tls::{Handshake, HandshakeSlots, KeyId, Session, Tls};
#[cfg(doc)]
use crate::tls::{TLS_HANDSHAKE_TIMEOUT, TLS_HANDSHAKES_MAX, TLS_HANDSHAKES_PER_ADDR_MAX};
use crate::tracker::{
    DriverError, Msg, Recovered, TrackerIo, TrackerOptions, conn_input, password_workers, recover,
};

/// What a runtime supplies to the shared drivers.
pub trait Runtime: WriterRuntime + Sized {
    /// A connected socket, its TLS handshake done.
    type Stream: Send + 'static;
    /// The sending end of a machine's channel (unbounded).
    type Sender<T: Send + 'static>: Clone + Send + 'static;
    /// Queues `m` without waiting; `false` if the receiver has gone.
    fn send<T: Send + 'static>(tx: &Self::Sender<T>, m: T) -> bool;
    /// Starts the writer of `stream` (`conn` names it).
    fn spawn_writer(
        conn: ConnId,
        stream: &Self::Stream,
        session: Arc<Session>,
    ) -> io::Result<ConnWriter<Self>>;
    /// Starts the reader of `stream`, handing its events to `sink` and
    /// ending with [`ConnEvent::Closed`]; a frame that has begun must be
    /// whole within `frame_timeout`.
    fn spawn_reader<F>(
        conn: ConnId,
        stream: Self::Stream,
        session: Arc<Session>,
        wake: WriterWake<Self>,
        frame_timeout: Duration,
        sink: F,
    ) -> io::Result<()>
    where
        F: EventSink + Send + 'static;
    /// Connects to `addr` and runs the TLS handshake as its client, off
    /// the caller's thread; then `then` runs with the stream and the
    /// session, or why it failed.
    fn dial<F>(addr: SocketAddr, tls: &Tls, then: F)
    where
        F: FnOnce(io::Result<(Self::Stream, Arc<Session>)>) + Send + 'static;
    /// Runs the server side of the TLS handshake `hs` on an accepted
    /// `stream`, within [`TLS_HANDSHAKE_TIMEOUT`], off the caller's
    /// thread; then `then` runs with the stream and the session, or why
    /// it failed.
    fn handshake<F>(stream: Self::Stream, hs: Handshake, then: F)
    where
        F: FnOnce(Self::Stream, io::Result<Arc<Session>>) + Send + 'static;
    /// Shuts `stream` down both ways.
    fn close(stream: &Self::Stream);
    /// Runs `work`, which may block as long as it likes, on a thread of
    /// its own or a blocking pool (`name` names a thread).
    fn spawn_blocking(name: String, work: impl FnOnce() + Send + 'static) -> io::Result<()>;
}

/// Runs the handshakes of accepted connections, each off the accept loop
/// ([`Runtime::handshake`]) so it never waits for one, at most
/// [`TLS_HANDSHAKES_MAX`] at once and [`TLS_HANDSHAKES_PER_ADDR_MAX`]
/// from one address ([`HandshakeSlots`]).
#[derive(Debug)]
pub struct TlsAcceptor<R> {
    tls: Tls,
    slots: HandshakeSlots,
    runtime: PhantomData<fn() -> R>,
}

impl<R> Clone for TlsAcceptor<R> {
    fn clone(&self) -> Self {
        TlsAcceptor {
            tls: self.tls.clone(),
            slots: self.slots.clone(),
            runtime: PhantomData,
        }
    }
}

impl<R: Runtime> TlsAcceptor<R> {
    pub fn new(tls: Tls) -> Self {
        TlsAcceptor {
            tls,
            slots: HandshakeSlots::default(),
            runtime: PhantomData,
        }
    }

    /// Handshakes running now.
    pub fn running(&self) -> usize {
        self.slots.running()
    }

    /// Starts the handshake of `stream` (accepted from `addr`); when it
    /// succeeds, `ready` runs where the handshake ran. Over the limit, or
    /// when the handshake fails or times out, the connection is closed.
    pub fn accept<F>(&self, stream: R::Stream, addr: SocketAddr, ready: F)
    where
        F: FnOnce(R::Stream, SocketAddr, Arc<Session>) + Send + 'static,
    {
        let Some(slot) = self.slots.take(addr) else {
            R::close(&stream);
            return;
        };
        R::handshake(stream, self.tls.accept(), move |stream, r| {
            drop(slot);
            match r {
                Ok(session) => ready(stream, addr, session),
                Err(e) => {
                    tracing::debug!("{addr}: TLS handshake failed: {e}");
                    R::close(&stream);
                }
            }
        });
    }
}

/// How [`attach`] went.
#[derive(Debug)]
pub enum Attach {
    /// Writer and reader run; the machine has the connection.
    Up,
    /// The machine's channel is gone: nobody to read for.
    Unheard,
    /// The writer could not start; the machine never heard of the
    /// connection (dropping the stream closes it).
    NoWriter(io::Error),
    /// The reader could not start, after the machine got the connection:
    /// tell it the connection closed (it then drops the writer, which
    /// shuts the socket down).
    NoReader(io::Error),
}

/// A connection is up and its TLS handshake done: starts its writer,
/// hands it to `up` with the peer's key (which registers it with the
/// machine; `false`: nobody listens), then starts its reader feeding
/// `sink`. `conn` names the threads.
pub fn attach<R: Runtime>(
    conn: ConnId,
    stream: R::Stream,
    session: Arc<Session>,
    frame_timeout: Duration,
    up: impl FnOnce(ConnWriter<R>, KeyId) -> bool,
    sink: impl EventSink + Send + 'static,
) -> Attach {
    let writer = match R::spawn_writer(conn, &stream, session.clone()) {
        Ok(w) => w,
        Err(e) => return Attach::NoWriter(e),
    };
    let wake = writer.wake_handle();
    if !up(writer, session.peer()) {
        return Attach::Unheard;
    }
    match R::spawn_reader(conn, stream, session, wake, frame_timeout, sink) {
        Ok(()) => Attach::Up,
        Err(e) => Attach::NoReader(e),
    }
}

/// Starts `n` workers (named `name-k`) on blocking threads that take jobs
/// from one queue in turn and hand each to `work`; a worker stops when
/// `work` returns `false` or the queue's sender (returned) is dropped.
pub fn spawn_workers<R: Runtime, J: Send + 'static>(
    n: usize,
    name: &str,
    work: impl Fn(J) -> bool + Clone + Send + 'static,
) -> io::Result<mpsc::Sender<J>> {
    let (jobs, queue) = mpsc::channel::<J>();
    let queue = Arc::new(Mutex::new(queue));
    for k in 0..n {
        let (queue, work) = (queue.clone(), work.clone());
        R::spawn_blocking(format!("{name}-{k}"), move || {
            loop {
                let next = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
                let Ok(job) = next else { return };
                if !work(job) {
                    return;
                }
            }
        })?;
    }
    Ok(jobs)
}

/// Recovers a tracker for a runtime whose connections take
/// `fds_per_conn` descriptors each: its client connection cap budgeted
/// from the descriptor limit ([`crate::fds::budget_client_conns`]), then
/// [`recover`]; with the readers' frame deadline
/// (`NodeConfig::frame_timeout`).
pub fn recover_tracker(
    mut opts: TrackerOptions,
    fds_per_conn: u64,
) -> Result<(Recovered, Duration), DriverError> {
    crate::fds::budget_client_conns(&mut opts.node, fds_per_conn);
    let frame_timeout = Duration::from_millis(opts.node.frame_timeout.as_millis());
    Ok((recover(opts)?, frame_timeout))
}

/// The sending end of the tracker machine's channel.
pub type TrackerTx<R> = <R as Runtime>::Sender<Msg<ConnWriter<R>>>;

/// The storage loop ([`run_storage`]) for `data`, reporting to the
/// tracker machine: run it on a blocking thread and keep its result
/// (shutdown waits for it).
pub fn storage_work<R: Runtime>(
    data: DataDir,
    cmds: mpsc::Receiver<StorageCmd>,
    tx: TrackerTx<R>,
) -> impl FnOnce() -> io::Result<()> + Send + 'static {
    move || {
        let done = tx.clone();
        let r = run_storage(data, cmds, move |index| {
            R::send(&done, Msg::Input(Input::Persisted { index }));
        });
        if let Err(e) = &r {
            let failed = io::Error::new(e.kind(), e.to_string());
            R::send(&tx, Msg::StorageFailed(failed));
        }
        r
    }
}

/// The tracker's effects on any runtime: dials, storage, password work.
pub struct TrackerEffects<R: Runtime> {
    tls: Tls,
    tx: TrackerTx<R>,
    /// The readers' frame deadline (`NodeConfig::frame_timeout`).
    frame_timeout: Duration,
    /// The storage loop's queue (dropped at shutdown: the loop then
    /// flushes and ends).
    storage: Option<mpsc::Sender<StorageCmd>>,
    /// Queue of the password workers (they stop when it is dropped).
    passwords: mpsc::Sender<(u64, PasswordWork)>,
}

impl<R: Runtime> TrackerEffects<R> {
    /// Starts the password workers; the storage loop is the runtime's
    /// (it waits for it at shutdown), fed through `storage`.
    pub fn new(
        tls: Tls,
        tx: TrackerTx<R>,
        frame_timeout: Duration,
        storage: mpsc::Sender<StorageCmd>,
    ) -> io::Result<Self> {
        let done = tx.clone();
        let passwords = spawn_workers::<R, (u64, PasswordWork)>(
            password_workers(),
            "password",
            move |(job, work)| {
                R::send(
                    &done,
                    Msg::Input(Input::PasswordDone {
                        job,
                        done: work.run(),
                    }),
                );
                true
            },
        )?;
        Ok(TrackerEffects {
            tls,
            tx,
            frame_timeout,
            storage: Some(storage),
            passwords,
        })
    }

    /// Closes the storage loop's queue: it flushes what it has and ends.
    pub fn stop_storage(&mut self) {
        self.storage = None;
    }
}

impl<R: Runtime> TrackerIo for TrackerEffects<R> {
    type Writer = ConnWriter<R>;

    fn dial(&mut self, tracker: TrackerId, addr: SocketAddr) {
        let tx = self.tx.clone();
        let frame_timeout = self.frame_timeout;
        R::dial(addr, &self.tls, move |r| match r {
            Ok((stream, session)) => {
                let input = |conn, peer| Input::Dialed {
                    conn,
                    tracker,
                    peer,
                };
                tracker_opened::<R>(&tx, stream, session, addr, frame_timeout, input);
            }
            Err(e) => {
                tracing::debug!("tracker {tracker} at {addr} unreachable: {e}");
                R::send(&tx, Msg::Input(Input::DialFailed { tracker }));
            }
        });
    }

    fn store(&mut self, cmd: StorageCmd) {
        if let Some(tx) = &self.storage {
            // A failed send means the storage loop died; it reported why.
            let _ = tx.send(cmd);
        }
    }

    fn password(&mut self, job: u64, work: PasswordWork) {
        let _ = self.passwords.send((job, work));
    }
}

/// A tracker's connection is up (accepted from `peer`, or dialled) and its
/// handshake done: [`attach`] it, its reader's events becoming the
/// machine's inputs; `input` makes the machine's news of it from the
/// connection id and the peer's key.
pub fn tracker_opened<R: Runtime>(
    tx: &TrackerTx<R>,
    stream: R::Stream,
    session: Arc<Session>,
    peer: SocketAddr,
    frame_timeout: Duration,
    input: impl FnOnce(ConnId, KeyId) -> Input,
) {
    let conn = next_conn_id();
    let up = |writer, key| {
        let input = input(conn, key);
        R::send(
            tx,
            Msg::Opened {
                conn,
                peer,
                writer,
                input,
            },
        )
    };
    let events = tx.clone();
    let sink = move |ev| R::send(&events, Msg::Input(conn_input(conn, ev)));
    match attach::<R>(conn, stream, session, frame_timeout, up, sink) {
        Attach::Up | Attach::Unheard => {}
        Attach::NoWriter(e) => tracing::warn!("{peer}: cannot start a connection writer: {e}"),
        Attach::NoReader(e) => {
            tracing::warn!("{peer}: cannot start a connection reader: {e}");
            R::send(tx, Msg::Input(Input::Closed { conn }));
        }
    }
}

/// The sending end of the client machine's channel.
pub type ClientTx<R> = <R as Runtime>::Sender<Ev<ConnWriter<R>>>;

/// The client's effects on any runtime: dials to trackers and peers, and
/// [`DISK_WORKERS`] workers running disk jobs.
pub struct ClientEffects<R: Runtime> {
    tls: Tls,
    tx: ClientTx<R>,
    disk: mpsc::Sender<Job>,
}

impl<R: Runtime> ClientEffects<R> {
    /// Starts the disk workers; each reports `Ev::Disk` (they stop when
    /// the machine drops its effects).
    pub fn new(tls: Tls, tx: ClientTx<R>) -> io::Result<Self> {
        let done_tx = tx.clone();
        let disk = spawn_workers::<R, Job>(DISK_WORKERS, "disk", move |job| {
            match run_job(job) {
                // A served piece's read-ahead, a saved share table: the
                // loop has nothing to learn, so it is not woken.
                JobDone::Nothing => true,
                done => R::send(&done_tx, Ev::Disk(done)),
            }
        })?;
        Ok(ClientEffects { tls, tx, disk })
    }
}

impl<R: Runtime> ClientIo for ClientEffects<R> {
    type Writer = ConnWriter<R>;
    type Part = Arc<DlFile>;
    type File = Arc<File>;

    fn connect_tracker(&mut self, conn: SessionConn, addr: SocketAddr) {
        let up = move |writer, peer| Ev::TrackerUp { conn, writer, peer };
        let mut send = input_sender::<R>(&self.tx);
        let sink = move |ev| send(tracker_input(conn, ev));
        let failed = cn::Input::TrackerConnectFailed { conn };
        let closed = cn::Input::TrackerClosed { conn };
        client_dial::<R>(&self.tx, &self.tls, addr, up, sink, failed, closed);
    }

    fn connect_peer(&mut self, conn: cn::PeerConnId, addr: SocketAddr) {
        let up = move |writer, peer| Ev::PeerUp {
            conn,
            writer,
            inbound: None,
            peer,
        };
        let sink = PeerSink::new(conn, input_sender::<R>(&self.tx));
        let failed = cn::Input::PeerConnectFailed { conn };
        let closed = cn::Input::PeerClosed { conn };
        client_dial::<R>(&self.tx, &self.tls, addr, up, sink, failed, closed);
    }

    fn disk(&mut self, job: Job) {
        if let Job::Write { part, .. } = &job {
            part.gate.queued(std::time::Instant::now());
        }
        let _ = self.disk.send(job);
    }

    fn part_file(part: &Arc<DlFile>) -> Arc<File> {
        part.file.clone()
    }

    fn send_file(w: &ConnWriter<R>, head: Bytes, range: FileRange) -> bool {
        w.send_file(head, range)
    }
}

/// What a client connection's reader hands the machine loop: its inputs.
fn input_sender<R: Runtime>(tx: &ClientTx<R>) -> impl FnMut(cn::Input) -> bool + Send + 'static {
    let tx = tx.clone();
    move |input| R::send(&tx, Ev::Input(input))
}

/// Dials `addr` for the client machine: `up` registers the connection
/// and `sink` takes its reader's events, or `failed` is reported.
fn client_dial<R: Runtime>(
    tx: &ClientTx<R>,
    tls: &Tls,
    addr: SocketAddr,
    up: impl FnOnce(ConnWriter<R>, KeyId) -> Ev<ConnWriter<R>> + Send + 'static,
    sink: impl EventSink + Send + 'static,
    failed: cn::Input,
    closed: cn::Input,
) {
    let tx = tx.clone();
    R::dial(addr, tls, move |r| match r {
        Ok((stream, session)) => {
            let (name, failed) = (next_conn_id(), Some(failed));
            client_attach::<R>(&tx, name, stream, session, up, sink, failed, closed);
        }
        Err(e) => {
            tracing::debug!("{addr}: {e}");
            R::send(&tx, Ev::Input(failed));
        }
    });
}

/// A peer connected to the client's seeder port from `addr`, its
/// handshake done: hands it to the machine.
pub fn peer_accepted<R: Runtime>(
    tx: &ClientTx<R>,
    stream: R::Stream,
    session: Arc<Session>,
    addr: SocketAddr,
) {
    let name = next_conn_id();
    let conn = cn::PeerConnId::Inbound(p2p_state::seeder::ConnId(name));
    let inbound: Option<IpAddr> = Some(addr.ip());
    let up = move |writer, peer| Ev::PeerUp {
        conn,
        writer,
        inbound,
        peer,
    };
    let sink = PeerSink::new(conn, input_sender::<R>(tx));
    let closed = cn::Input::PeerClosed { conn };
    // No writer: the machine never hears of it.
    client_attach::<R>(tx, name, stream, session, up, sink, None, closed);
}

/// [`attach`] for the client machine (`name` names the threads):
/// `failed` is reported if no writer starts (`None`: the machine does not
/// know the connection yet), `closed` if no reader does.
#[allow(clippy::too_many_arguments)]
fn client_attach<R: Runtime>(
    tx: &ClientTx<R>,
    name: ConnId,
    stream: R::Stream,
    session: Arc<Session>,
    up: impl FnOnce(ConnWriter<R>, KeyId) -> Ev<ConnWriter<R>>,
    sink: impl EventSink + Send + 'static,
    failed: Option<cn::Input>,
    closed: cn::Input,
) {
    let register = |writer, peer| R::send(tx, up(writer, peer));
    match attach::<R>(name, stream, session, FRAME_TIMEOUT, register, sink) {
        Attach::Up | Attach::Unheard => {}
        Attach::NoWriter(e) => {
            tracing::warn!("cannot start a connection writer: {e}");
            if let Some(f) = failed {
                R::send(tx, Ev::Input(f));
            }
        }
        Attach::NoReader(e) => {
            tracing::warn!("cannot start a connection reader: {e}");
            R::send(tx, Ev::Input(closed));
        }
    }
}
