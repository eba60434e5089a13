//! The tracker driver on smol (docs/STYLE.md §2.3): one task owns the [`Core`]
//! (the [`Tracker`](p2p_state::tracker::node::Tracker) and the execution
//! of its outputs, shared with runtime-std) and races its channel against
//! its next deadline ([`Deadline`]), then hands what arrived to [`Core::turn`].
//!
//! Around it: an accept task, handing each accepted connection to a TLS
//! handshake task ([`TlsAcceptor`]); a reader and a writer task per
//! connection; a task per dial (TCP, then the TLS handshake); and the
//! storage loop ([`run_storage`](crate::storage::run_storage), group
//! commit, then `Persisted { index }`) on smol's blocking pool, so fsyncs
//! never stall the executor. What the effects do is runtime-common's
//! ([`TrackerEffects`]); this file holds the tasks and the waits.

use std::io;
use std::sync::mpsc as std_mpsc;

use p2p_state::tracker::node::Input;
use runtime_common::Woke;
use runtime_common::runtime::{TrackerEffects, recover_tracker, storage_work, tracker_opened};
use runtime_common::tracker::{CLOSE_FLUSH_WAIT, Core, Msg, Recovered};
pub use runtime_common::tracker::{
    DriverError, EventSink, TrackerControl, TrackerHandle, TrackerOptions,
};
use smol::channel::{self, Receiver};
use smol::future::FutureExt;
use smol::{Task, Timer};

use crate::conn::{ConnWriter, Tasks, TlsAcceptor, spawn_listener};
use crate::deadline::Deadline;
use crate::exec::{self, recv_until};

/// Descriptors a connection takes here: one socket shared by its reader and writer.
const FDS_PER_CONN: u64 = 1;

type Storage = Task<io::Result<()>>;

/// Recovers the tracker from its data directory and starts its tasks.
pub fn start(opts: TrackerOptions, sink: EventSink) -> Result<TrackerHandle, DriverError> {
    let (r, frame_timeout) = recover_tracker(opts, FDS_PER_CONN)?;
    let Recovered { tracker, tls, .. } = r;
    let (tx, rx) = channel::unbounded();
    let (storage_tx, cmds) = std_mpsc::channel();
    // On the blocking pool: it blocks on its queue and on fsync.
    let storage = smol::unblock(storage_work::<Tasks>(r.data, cmds, tx.clone()));
    let accept_tx = tx.clone();
    let acceptor = TlsAcceptor::new(tls.clone());
    let listener = spawn_listener(r.listener, move |stream, addr| {
        let tx = accept_tx.clone();
        acceptor.accept(stream, addr, move |stream, addr, session| {
            let input = |conn, peer| Input::Accepted { conn, addr, peer };
            tracker_opened::<Tasks>(&tx, stream, session, addr, frame_timeout, input);
        });
    })?;
    let io = TrackerEffects::new(tls, tx.clone(), frame_timeout, storage_tx)?;
    let core = Core::new(tracker, r.pins, r.clock, io, sink);
    let task = exec::spawn(run(core, rx, listener, storage));
    let control = TrackerControl::new(move |c| tx.try_send(c.into()).is_ok());
    Ok(TrackerHandle::new(control, r.addr, move || {
        exec::join(task).unwrap_or(Err(DriverError::Panicked))
    }))
}

/// The machine task's loop.
async fn run(
    mut core: Core<TrackerEffects<Tasks>>,
    rx: Receiver<Msg<ConnWriter>>,
    listener: Task<()>,
    storage: Storage,
) -> Result<(), DriverError> {
    let mut timer = Deadline::default();
    let result = loop {
        let msg = match recv_until(&rx, core.clock(), &mut timer, core.poll_timeout()).await {
            Woke::Msg(m) => Some(m),
            Woke::Timeout => None,
            Woke::Closed => break Ok(()),
        };
        if let Some(stop) = core.turn(msg) {
            break stop;
        }
    };
    shutdown(core, listener, storage).await;
    result
}

/// Stops accepting, makes storage durable, closes every connection.
async fn shutdown(core: Core<TrackerEffects<Tasks>>, listener: Task<()>, storage: Storage) {
    listener.cancel().await;
    let (mut io, writers) = core.into_parts();
    io.stop_storage();
    match storage.await {
        Ok(()) => tracing::info!("storage flushed"),
        Err(e) => tracing::error!("storage: {e}"),
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
