//! The client driver on smol: one task owns the [`Core`] (the
//! [`ClientNode`](p2p_state::client::node::ClientNode) and the execution
//! of its outputs, shared with runtime-std), races its channel against
//! `Timer::at(deadline)` and hands what arrived to [`Core::turn`].
//! Reader and writer tasks move frames (piece frames are hashed in their
//! reader task, off the machine task); [`DISK_WORKERS`] tasks take the
//! disk [`Job`]s in turn and run each on smol's blocking pool; a task per
//! dial; the caller (the CLI) sends commands through the [`ClientHandle`]
//! and waits for answers on its own thread.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use p2p_proto::FrameDecoder;
use p2p_state::client::node as cn;
use p2p_state::client::session::SessionConn;
use runtime_common::Woke;
pub use runtime_common::client::{
    ClientHandle, ClientOptions, DISK_WORKERS, Job, Status, hash_file, hash_file_with_progress,
    run_job,
};
use runtime_common::client::{ClientIo, Core, Ev, peer_input, prepare, tracker_input};
use smol::Async;
use smol::channel::{self, Receiver, Sender};

use crate::conn::{self, ConnEvent, ConnWriter, KeyId, Session, Tls, TlsAcceptor, next_conn_id};
use crate::exec::{self, recv_until};

type Tx = Sender<Ev<ConnWriter>>;

/// Starts the client: binds the seeder port, loads the share table, starts
/// the machine task (which connects to the first tracker).
pub fn start(opts: ClientOptions) -> io::Result<ClientHandle> {
    let (p, listener) = prepare(opts)?;
    let tls = p.tls();
    let (tx, rx) = channel::unbounded();
    let accept_tx = tx.clone();
    let acceptor = TlsAcceptor::new(tls.clone());
    let listener = conn::spawn_listener(listener, move |stream, addr| {
        let tx = accept_tx.clone();
        acceptor.accept(stream, addr, move |stream, addr, session| {
            let conn = next_conn_id();
            let up = |writer, peer| Ev::PeerUp {
                conn,
                writer,
                inbound: Some(addr.ip()),
                peer,
            };
            attach(&tx, stream, session, up, move |ev| peer_input(conn, ev));
        });
    })?;
    let io = Tasks {
        tls,
        tx: tx.clone(),
        disk: spawn_disk_workers(tx.clone()),
    };
    let (mut core, parts) = Core::new(p, io);
    let machine = exec::spawn(async move {
        run(&mut core, rx).await;
        listener.cancel().await;
    });
    let send = move |m| tx.try_send(Ev::Handle(m)).is_ok();
    let join = move || {
        let _ = exec::join(machine);
    };
    Ok(ClientHandle::new(send, join, parts))
}

/// The machine task's loop.
async fn run(core: &mut Core<Tasks>, rx: Receiver<Ev<ConnWriter>>) {
    loop {
        let ev = match recv_until(&rx, core.clock(), core.poll_timeout()).await {
            Woke::Msg(ev) => Some(ev),
            Woke::Timeout => None,
            Woke::Closed => return,
        };
        if !core.turn(ev) {
            return;
        }
    }
}

/// Hands a fresh connection (its handshake done) to the machine task: its
/// writer first, with the peer's key (so the machine knows the connection
/// before anything is read from it), then its reader, whose events become
/// inputs through `input`.
fn attach(
    tx: &Tx,
    stream: Async<TcpStream>,
    session: Arc<Session>,
    up: impl FnOnce(ConnWriter, KeyId) -> Ev<ConnWriter>,
    input: impl Fn(ConnEvent) -> cn::Input + Send + 'static,
) {
    let stream = Arc::new(stream);
    let writer = conn::spawn_writer(stream.clone(), session.clone());
    let wake = writer.wake_handle();
    if tx.try_send(up(writer, session.peer())).is_err() {
        return;
    }
    let tx = tx.clone();
    conn::spawn_reader(stream, session, wake, FrameDecoder::default(), move |ev| {
        tx.try_send(Ev::Input(input(ev))).is_ok()
    });
}

/// Tasks that take disk jobs in turn and run each on the blocking pool:
/// at most [`DISK_WORKERS`] at once, as on the std runtime. They end when
/// the machine task drops the queue.
fn spawn_disk_workers(events: Tx) -> Sender<Job> {
    let (tx, rx) = channel::unbounded::<Job>();
    for _ in 0..DISK_WORKERS {
        let rx = rx.clone();
        let events = events.clone();
        exec::spawn(async move {
            while let Ok(job) = rx.recv().await {
                let done = smol::unblock(move || run_job(job)).await;
                if events.try_send(Ev::Disk(done)).is_err() {
                    return;
                }
            }
        })
        .detach();
    }
    tx
}

/// The effects tasks run for the machine.
struct Tasks {
    tls: Tls,
    tx: Tx,
    disk: Sender<Job>,
}

impl Tasks {
    /// Connects and runs the TLS handshake in a task; then `up` registers
    /// the writer and `input` wraps the reader's events, or `failed` is
    /// reported.
    fn connect(
        &self,
        addr: SocketAddr,
        up: impl FnOnce(ConnWriter, KeyId) -> Ev<ConnWriter> + Send + 'static,
        input: impl Fn(ConnEvent) -> cn::Input + Send + 'static,
        failed: cn::Input,
    ) {
        let tx = self.tx.clone();
        let tls = self.tls.clone();
        exec::spawn(async move {
            match conn::dial_tls(addr, &tls).await {
                Ok((stream, session)) => attach(&tx, stream, session, up, input),
                Err(e) => {
                    tracing::debug!("{addr}: {e}");
                    let _ = tx.try_send(Ev::Input(failed));
                }
            }
        })
        .detach();
    }
}

impl ClientIo for Tasks {
    type Writer = ConnWriter;

    fn connect_tracker(&mut self, conn: SessionConn, addr: SocketAddr) {
        let up = move |writer, peer| Ev::TrackerUp { conn, writer, peer };
        let failed = cn::Input::TrackerConnectFailed { conn };
        self.connect(addr, up, move |ev| tracker_input(conn, ev), failed);
    }

    fn connect_peer(&mut self, conn: u64, addr: SocketAddr) {
        let up = move |writer, peer| Ev::PeerUp {
            conn,
            writer,
            inbound: None,
            peer,
        };
        let failed = cn::Input::PeerConnectFailed { conn };
        self.connect(addr, up, move |ev| peer_input(conn, ev), failed);
    }

    fn disk(&mut self, job: Job) {
        let _ = self.disk.try_send(job);
    }
}
