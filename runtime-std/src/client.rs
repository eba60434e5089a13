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
//! answers. What the effects do is runtime-common's ([`ClientEffects`]);
//! this file holds the threads and the wait.

use std::io;
use std::sync::mpsc::{self, Receiver};
use std::thread;

use runtime_common::Woke;
pub use runtime_common::client::{
    ClientHandle, ClientOptions, DISK_WORKERS, Job, Status, hash_file, hash_file_with_progress,
    run_job,
};
use runtime_common::client::{Core, Ev, setup};
use runtime_common::runtime::{ClientEffects, peer_accepted};

use crate::conn::{ConnWriter, Listener, Threads, TlsAcceptor};
use crate::wait::recv_until;

/// Starts the client: binds the seeder port, loads the share table, starts
/// the machine thread (which connects to the first tracker).
pub fn start(opts: ClientOptions) -> io::Result<ClientHandle> {
    let (p, listener) = setup(opts)?;
    let tls = p.tls();
    let (tx, rx) = mpsc::channel();
    let accept_tx = tx.clone();
    let acceptor = TlsAcceptor::new(tls.clone());
    let listener = Listener::spawn(listener, move |stream, addr| {
        let tx = accept_tx.clone();
        acceptor.accept(stream, addr, move |stream, addr, session| {
            peer_accepted::<Threads>(&tx, stream, session, addr);
        });
    })?;
    let io = ClientEffects::new(tls, tx.clone())?;
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
fn run(core: &mut Core<ClientEffects<Threads>>, rx: Receiver<Ev<ConnWriter>>) {
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
