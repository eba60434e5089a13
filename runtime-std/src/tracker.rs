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
//! and the storage thread running [`run_storage`](crate::storage::run_storage)
//! (group commit, then `Persisted { index }`). The machine hears of a
//! connection only once its handshake is done, with the peer's key. What
//! the effects do is runtime-common's ([`TrackerEffects`]); this file
//! holds the threads and the waits.

use std::io;
use std::sync::mpsc::{self, Receiver};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use p2p_state::tracker::node::Input;
use runtime_common::Woke;
use runtime_common::runtime::{TrackerEffects, recover_tracker, storage_work, tracker_opened};
use runtime_common::tracker::{CLOSE_FLUSH_WAIT, Core, Msg, Recovered};
pub use runtime_common::tracker::{
    DriverError, EventSink, TrackerControl, TrackerHandle, TrackerOptions,
};

use crate::conn::{ConnWriter, Listener, Threads, TlsAcceptor};
use crate::wait::recv_until;

/// Descriptors a connection takes here: the socket, its writer's clone and the clone kept to abort it.
const FDS_PER_CONN: u64 = 3;

type Storage = JoinHandle<io::Result<()>>;

/// Recovers the tracker from its data directory and starts its threads.
pub fn start(opts: TrackerOptions, sink: EventSink) -> Result<TrackerHandle, DriverError> {
    let (r, frame_timeout) = recover_tracker(opts, FDS_PER_CONN)?;
    let Recovered { tracker, tls, .. } = r;
    let id = tracker.id();
    let (tx, rx) = mpsc::channel();
    let (storage_tx, cmds) = mpsc::channel();
    let storage = thread::Builder::new()
        .name("storage".into())
        .spawn(storage_work::<Threads>(r.data, cmds, tx.clone()))?;
    let accept_tx = tx.clone();
    let acceptor = TlsAcceptor::new(tls.clone());
    let listener = Listener::spawn(r.listener, move |stream, addr| {
        let tx = accept_tx.clone();
        acceptor.accept(stream, addr, move |stream, addr, session| {
            let input = |conn, peer| Input::Accepted { conn, addr, peer };
            tracker_opened::<Threads>(&tx, stream, session, addr, frame_timeout, input);
        });
    })?;
    let io = TrackerEffects::new(tls, tx.clone(), frame_timeout, storage_tx)?;
    let core = Core::new(tracker, r.pins, r.clock, io, sink);
    let thread = thread::Builder::new()
        .name(format!("tracker-{id}"))
        .spawn(move || run(core, rx, listener, storage))?;
    let control = TrackerControl::new(move |c| tx.send(c.into()).is_ok());
    Ok(TrackerHandle::new(control, r.addr, move || {
        thread.join().unwrap_or(Err(DriverError::Panicked))
    }))
}

/// The machine thread's loop.
fn run(
    mut core: Core<TrackerEffects<Threads>>,
    rx: Receiver<Msg<ConnWriter>>,
    listener: Listener,
    storage: Storage,
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
    shutdown(core, listener, storage);
    result
}

/// Stops accepting, makes storage durable, closes every connection.
fn shutdown(core: Core<TrackerEffects<Threads>>, listener: Listener, storage: Storage) {
    listener.stop();
    let (mut io, writers) = core.into_parts();
    io.stop_storage();
    match storage.join() {
        Ok(Ok(())) => tracing::info!("storage flushed"),
        Ok(Err(e)) => tracing::error!("storage: {e}"),
        Err(_) => tracing::error!("storage thread panicked"),
    }
    let writers: Vec<JoinHandle<()>> = writers.into_iter().filter_map(|w| w.close()).collect();
    let until = Instant::now() + CLOSE_FLUSH_WAIT;
    for w in writers {
        while !w.is_finished() && Instant::now() < until {
            thread::sleep(Duration::from_millis(5));
        }
    }
}
