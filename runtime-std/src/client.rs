//! The client driver on threads: one machine thread owns the [`Core`]
//! (the [`ClientNode`](p2p_state::client::node::ClientNode) and the
//! execution of its outputs, shared with every runtime), waits on a
//! channel with `recv_timeout(deadline - now)` and hands what arrived to
//! [`Core::turn`]. Connection threads (from [`crate::conn`]) move frames
//! (piece frames are hashed on their reader thread, so verification uses
//! every core); a pool of [`DISK_WORKERS`] threads runs the disk
//! [`Job`]s; a connector thread per dial; the caller (the CLI) sends
//! commands through the [`ClientHandle`] and waits for answers.

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

use crate::conn::{self, ConnEvent, ConnWriter, Listener};
use crate::wait::recv_until;

type Tx = Sender<Ev<ConnWriter>>;

/// Starts the client: binds the seeder port, loads the share table, starts
/// the machine thread (which connects to the first tracker).
pub fn start(opts: ClientOptions) -> io::Result<ClientHandle> {
    let (p, listener) = prepare(opts)?;
    let (tx, rx) = mpsc::channel();
    let accept_tx = tx.clone();
    let listener = Listener::spawn(listener, move |stream, _peer| {
        let conn = conn::next_conn_id();
        let Ok(writer) = ConnWriter::spawn(conn, &stream) else {
            return;
        };
        // Register the connection before its reader can report anything.
        let _ = accept_tx.send(Ev::PeerUp {
            conn,
            writer,
            inbound: true,
        });
        let sink = input_sink(accept_tx.clone(), move |ev| peer_input(conn, ev));
        if conn::spawn_reader(conn, stream, FrameDecoder::default(), sink).is_err() {
            let _ = accept_tx.send(Ev::Input(cn::Input::PeerClosed { conn }));
        }
    })?;
    let io = Threads {
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
    tx: Tx,
    disk: DiskPool,
}

impl ClientIo for Threads {
    type Writer = ConnWriter;

    fn connect_tracker(&mut self, conn: SessionConn, addr: SocketAddr) {
        dial(&self.tx, addr, move |tx, res| {
            let failed = Ev::Input(cn::Input::TrackerConnectFailed { conn });
            let closed = Ev::Input(cn::Input::TrackerClosed { conn });
            let Ok((stream, id)) = res else {
                let _ = tx.send(failed);
                return;
            };
            let sink = input_sink(tx.clone(), move |ev| tracker_input(conn, ev));
            let up = |writer| Ev::TrackerUp { conn, writer };
            attach(tx, stream, id, up, sink, failed, closed);
        })
    }

    fn connect_peer(&mut self, conn: u64, addr: SocketAddr) {
        dial(&self.tx, addr, move |tx, res| {
            let failed = Ev::Input(cn::Input::PeerConnectFailed { conn });
            let closed = Ev::Input(cn::Input::PeerClosed { conn });
            let Ok((stream, id)) = res else {
                let _ = tx.send(failed);
                return;
            };
            let sink = input_sink(tx.clone(), move |ev| peer_input(conn, ev));
            let up = |writer| Ev::PeerUp {
                conn,
                writer,
                inbound: false,
            };
            attach(tx, stream, id, up, sink, failed, closed);
        })
    }

    fn disk(&mut self, job: Job) {
        let _ = self.disk.tx.send(job);
    }
}

/// Connects on a short-lived thread; `then` runs there with the result.
fn dial<F>(tx: &Tx, addr: SocketAddr, then: F)
where
    F: FnOnce(&Tx, io::Result<(TcpStream, conn::ConnId)>) + Send + 'static,
{
    let tx = tx.clone();
    let _ = thread::Builder::new().name("dial".into()).spawn(move || {
        let r = conn::dial(addr, conn::DIAL_TIMEOUT).map(|s| (s, conn::next_conn_id()));
        then(&tx, r);
    });
}

/// Hands a fresh connection to the machine thread: its writer first (so
/// the machine knows the connection before anything is read from it),
/// then its reader.
fn attach<S>(
    tx: &Tx,
    stream: TcpStream,
    id: conn::ConnId,
    up: impl FnOnce(ConnWriter) -> Ev<ConnWriter>,
    sink: S,
    failed: Ev<ConnWriter>,
    closed: Ev<ConnWriter>,
) where
    S: FnMut(ConnEvent) -> bool + Send + 'static,
{
    let Ok(writer) = ConnWriter::spawn(id, &stream) else {
        let _ = tx.send(failed);
        return;
    };
    let _ = tx.send(up(writer));
    if conn::spawn_reader(id, stream, FrameDecoder::default(), sink).is_err() {
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
