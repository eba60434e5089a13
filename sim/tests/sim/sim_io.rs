//! The simulated I/O the world gives the real tracker driver core
//! (`runtime_common::tracker::Core`): a clock the world sets, writers that
//! queue bytes for the simulated network, the storage and password
//! effects, and the pins file. Everything the core asks for lands, in
//! order, in the host's [`Effects`], which the world executes after each
//! turn of the core (`world_tracker.rs`). The clock and [`Effects`] serve
//! the client driver core's I/O too (`sim_client_io.rs`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use p2p_proto::{KeyId, TrackerId};
use p2p_state::Instant;
use p2p_state::tracker::node::{Persist, TrackerEvent};
use p2p_state::tracker::password::PasswordWork;
use runtime_common::clock::Now;
use runtime_common::conn::{ConnId, FrameSink};
use runtime_common::known_trackers::Pins;
use runtime_common::storage::StorageCmd;
use runtime_common::tracker::{Core, TrackerIo};

/// The real tracker driver core over the simulated I/O.
pub type TrackerCore = Core<SimTrackerIo, SimClock, SimPins>;

/// One thing a tracker core asked of its host.
pub enum Effect {
    /// Bytes (whole frames) for a connection.
    Write(ConnId, Bytes),
    /// Send what is queued, then shut the connection down.
    Close(ConnId),
    /// Shut the connection down now.
    Abort(ConnId),
    Dial(TrackerId),
    Store(Persist),
    Password {
        job: u64,
        work: PasswordWork,
    },
    /// The key tracker `TrackerId` proved on first contact, for the disk.
    Pin(TrackerId, KeyId),
    Event(TrackerEvent),
}

/// A host's effects in the order its core asked for them (shared by its
/// I/O, its writers, its pins and its event sink); `E`: a tracker's
/// [`Effect`] or a client's (`sim_client_io.rs`).
pub struct Effects<E = Effect>(Arc<Mutex<Vec<E>>>);

impl<E> Clone for Effects<E> {
    fn clone(&self) -> Self {
        Effects(self.0.clone())
    }
}

impl<E> Default for Effects<E> {
    fn default() -> Self {
        Effects(Arc::default())
    }
}

impl<E> Effects<E> {
    pub fn push(&self, e: E) {
        self.0.lock().expect("effects").push(e);
    }

    /// Takes every effect queued so far.
    pub fn take(&self) -> Vec<E> {
        std::mem::take(&mut *self.0.lock().expect("effects"))
    }
}

/// A host's clock: the world's time plus the host's skew, set by the
/// world before each turn of the core.
#[derive(Clone, Default)]
pub struct SimClock(Arc<AtomicU64>);

impl SimClock {
    pub fn set(&self, now: Instant) {
        self.0.store(now.0, Ordering::Relaxed);
    }
}

impl Now for SimClock {
    fn now(&self) -> Instant {
        Instant(self.0.load(Ordering::Relaxed))
    }
}

/// Pins go to the host's disk (the world keeps them across restarts).
pub struct SimPins {
    pub addrs: Vec<SocketAddr>,
    pub fx: Effects,
}

impl Pins for SimPins {
    fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }
    fn pin(&mut self, index: usize, key: KeyId) {
        let tracker = TrackerId(u16::try_from(index + 1).expect("tracker index"));
        self.fx.push(Effect::Pin(tracker, key));
    }
}

pub struct SimTrackerIo {
    pub fx: Effects,
}

impl TrackerIo for SimTrackerIo {
    type Writer = SimWriter;
    fn dial(&mut self, tracker: TrackerId, _: SocketAddr) {
        self.fx.push(Effect::Dial(tracker));
    }
    fn store(&mut self, cmd: StorageCmd) {
        match cmd {
            StorageCmd::Persist(p) => self.fx.push(Effect::Store(p)),
            // Only shutdown flushes; a simulated tracker stops by crashing.
            StorageCmd::Flush(_) => {}
        }
    }
    fn password(&mut self, job: u64, work: PasswordWork) {
        self.fx.push(Effect::Password { job, work });
    }
}

/// A connection's writer: its bytes go to the simulated network.
pub struct SimWriter {
    pub conn: ConnId,
    pub fx: Effects,
}

impl FrameSink for SimWriter {
    fn send(&self, frame: Bytes) -> bool {
        self.fx.push(Effect::Write(self.conn, frame));
        true
    }
    fn close(self) {
        self.fx.push(Effect::Close(self.conn));
    }
    fn abort(&self) {
        self.fx.push(Effect::Abort(self.conn));
    }
}
