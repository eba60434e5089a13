//! The client driver on threads: one machine thread owns the [`Core`]
//! (the [`ClientNode`](p2p_state::client::node::ClientNode) and the
//! execution of its outputs, shared with every runtime), waits on a
//! channel with `recv_timeout(deadline - now)` and hands what arrived to
//! [`Core::turn`]. Connection threads (from [`crate::conn`]) move frames
//! (piece frames are hashed on their reader thread, so verification uses
//! every core); a pool of [`DISK_WORKERS`] threads runs the disk
//! [`Job`]s; a connector thread per dial (TCP, then the TLS handshake),
//! a handshake thread per accepted peer ([`TlsAcceptor`]); the caller
//! (the CLI) sends commands through the [`ClientHandle`] and waits for
//! answers.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;

use p2p_proto::FrameDecoder;
use p2p_state::client::node as cn;
use p2p_state::client::session::SessionConn;
use runtime_common::Woke;
pub use runtime_common::client::{
    ClientHandle, ClientOptions, DISK_WORKERS, Job, Status, hash_file, hash_file_with_progress,
    run_job,
};
use runtime_common::client::{ClientIo, Core, Ev, peer_input, prepare, tracker_input};

use crate::conn::{self, ConnEvent, ConnWriter, KeyId, Listener, Session, Tls, TlsAcceptor};
use crate::wait::recv_until;

type Tx = Sender<Ev<ConnWriter>>;

/// Starts the client: binds the seeder port, loads the share table, starts
/// the machine thread (which connects to the first tracker).
pub fn start(opts: ClientOptions) -> io::Result<ClientHandle> {
    let (p, listener) = prepare(opts)?;
    let tls = p.tls();
    let (tx, rx) = mpsc::channel();
    let accept_tx = tx.clone();
    let acceptor = TlsAcceptor::new(tls.clone());
    let listener = Listener::spawn(listener, move |stream, addr| {
        let tx = accept_tx.clone();
        acceptor.accept(stream, addr, move |stream, addr, session| {
            let conn = conn::next_conn_id();
            let closed = Ev::Input(cn::Input::PeerClosed { conn });
            let sink = input_sink(tx.clone(), move |ev| peer_input(conn, ev));
            let up = |writer, peer| Ev::PeerUp {
                conn,
                writer,
                inbound: Some(addr.ip()),
                peer,
            };
            // No writer thread: the machine never hears of it.
            attach(&tx, stream, session, conn, up, sink, None, closed);
        });
    })?;
    let io = Threads {
        tls,
        tx: tx.clone(),
        disk: DiskPool::start(tx.clone()),
    };
    let (mut core, parts) = Core::new(p, io);
    let machine = thread::Builder::new()
        .name("client".into())
        .spawn(move || {
            run(&mut core, rx);
            listener.stop();
        })?;
    let send = move |m| tx.send(Ev::Handle(m)).is_ok();
    let join = move || {
        let _ = machine.join();
    };
    Ok(ClientHandle::new(send, join, parts))
}

/// The machine thread's loop.
fn run(core: &mut Core<Threads>, rx: Receiver<Ev<ConnWriter>>) {
    loop {
        let ev = match recv_until(&rx, core.clock(), core.poll_timeout()) {
            Woke::Msg(ev) => Some(ev),
            Woke::Timeout => None,
            Woke::Closed => return,
        };
        if !core.turn(ev) {
            return;
        }
    }
}

/// A reader sink that wraps each event into the machine's input.
fn input_sink(
    tx: Tx,
    input: impl Fn(ConnEvent) -> cn::Input + Send + 'static,
) -> impl FnMut(ConnEvent) -> bool + Send + 'static {
    move |ev| tx.send(Ev::Input(input(ev))).is_ok()
}

/// The effects threads run for the machine.
struct Threads {
    tls: Tls,
    tx: Tx,
    disk: DiskPool,
}

impl ClientIo for Threads {
    type Writer = ConnWriter;

    fn connect_tracker(&mut self, conn: SessionConn, addr: SocketAddr) {
        dial(&self.tx, &self.tls, addr, move |tx, res| {
            let failed = Ev::Input(cn::Input::TrackerConnectFailed { conn });
            let closed = Ev::Input(cn::Input::TrackerClosed { conn });
            let Ok((stream, session, id)) = res else {
                let _ = tx.send(failed);
                return;
            };
            let sink = input_sink(tx.clone(), move |ev| tracker_input(conn, ev));
            let up = |writer, peer| Ev::TrackerUp { conn, writer, peer };
            attach(tx, stream, session, id, up, sink, Some(failed), closed);
        })
    }

    fn connect_peer(&mut self, conn: u64, addr: SocketAddr) {
        dial(&self.tx, &self.tls, addr, move |tx, res| {
            let failed = Ev::Input(cn::Input::PeerConnectFailed { conn });
            let closed = Ev::Input(cn::Input::PeerClosed { conn });
            let Ok((stream, session, id)) = res else {
                let _ = tx.send(failed);
                return;
            };
            let sink = input_sink(tx.clone(), move |ev| peer_input(conn, ev));
            let up = |writer, peer| Ev::PeerUp {
                conn,
                writer,
                inbound: None,
                peer,
            };
            attach(tx, stream, session, id, up, sink, Some(failed), closed);
        })
    }

    fn disk(&mut self, job: Job) {
        let _ = self.disk.tx.send(job);
    }
}

type Dialed = (TcpStream, Arc<Session>, conn::ConnId);

/// Connects and runs the TLS handshake on a short-lived thread; `then`
/// runs there with the result.
fn dial<F>(tx: &Tx, tls: &Tls, addr: SocketAddr, then: F)
where
    F: FnOnce(&Tx, io::Result<Dialed>) + Send + 'static,
{
    let tx = tx.clone();
    let tls = tls.clone();
    let _ = thread::Builder::new().name("dial".into()).spawn(move || {
        let r = conn::dial_tls(addr, &tls).map(|(s, t)| (s, t, conn::next_conn_id()));
        if let Err(e) = &r {
            tracing::debug!("{addr}: {e}");
        }
        then(&tx, r);
    });
}

/// Hands a fresh connection (its handshake done) to the machine thread:
/// its writer first, with the peer's key (so the machine knows the
/// connection before anything is read from it), then its reader.
#[allow(clippy::too_many_arguments)]
fn attach<S>(
    tx: &Tx,
    stream: TcpStream,
    session: Arc<Session>,
    id: conn::ConnId,
    up: impl FnOnce(ConnWriter, KeyId) -> Ev<ConnWriter>,
    sink: S,
    failed: Option<Ev<ConnWriter>>,
    closed: Ev<ConnWriter>,
) where
    S: FnMut(ConnEvent) -> bool + Send + 'static,
{
    let Ok(writer) = conn::spawn_writer(id, &stream, session.clone()) else {
        if let Some(f) = failed {
            let _ = tx.send(f);
        }
        return;
    };
    let wake = writer.wake_handle();
    let _ = tx.send(up(writer, session.peer()));
    if conn::spawn_reader(id, stream, session, wake, FrameDecoder::default(), sink).is_err() {
        let _ = tx.send(closed);
    }
}

/// Disk worker threads fed by one queue.
struct DiskPool {
    tx: Sender<Job>,
}

impl DiskPool {
    fn start(events: Tx) -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..DISK_WORKERS {
            let rx = rx.clone();
            let events = events.clone();
            let _ = thread::Builder::new()
                .name(format!("disk-{i}"))
                .spawn(move || {
                    loop {
                        let job = match rx.lock().expect("disk queue").recv() {
                            Ok(j) => j,
                            Err(_) => return,
                        };
                        if events.send(Ev::Disk(run_job(job))).is_err() {
                            return;
                        }
                    }
                });
        }
        DiskPool { tx }
    }
}
