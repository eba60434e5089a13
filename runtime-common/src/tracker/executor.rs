//! [`Core`]: the tracker machine and what the driver knows beside it
//! (connections, pins, clock); it feeds the machine and executes its
//! outputs (the list is in the module doc of `tracker`).

use super::log::log_repl;
use super::*;

struct Conn<W> {
    writer: W,
    peer: SocketAddr,
    /// The key the peer proved in the TLS handshake.
    key: KeyId,
}

/// The machine and what the driver knows beside it. The runtimes run it
/// on the [`Clock`] and record pins with a [`Pinner`]; the simulation
/// (`sim/`) runs the same core on its simulated clock, disk and network.
pub struct Core<R: TrackerIo, C: Now = Clock, P: Pins = Pinner> {
    tracker: Tracker,
    pins: P,
    clock: C,
    conns: BTreeMap<ConnId, Conn<R::Writer>>,
    io: R,
    sink: EventSink,
    /// Refused connections and bad input logged, rate-limited (a flood
    /// must not fill the log).
    refusals: crate::log_limit::LogLimit,
}

impl<R: TrackerIo, C: Now, P: Pins> Core<R, C, P> {
    /// Runs the machine's first outputs (dials to the other trackers).
    pub fn new(tracker: Tracker, pins: P, clock: C, io: R, sink: EventSink) -> Self {
        let mut core = Core {
            tracker,
            pins,
            clock,
            conns: BTreeMap::new(),
            io,
            sink,
            refusals: Default::default(),
        };
        core.drain();
        core
    }

    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// The machine, to look at (the simulation's checkers).
    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    /// When the loop must wake up if nothing arrives.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.tracker.poll_timeout().map(|(t, _)| t)
    }

    /// One turn of the loop: the message that woke it (`None`: the wait
    /// timed out), then the machine's deadline if the clock has passed it
    /// (quinn's drive_timer: trust the clock, not the wake-up reason).
    /// `Some` ends the loop with that result.
    pub fn turn(&mut self, msg: Option<Msg<R::Writer>>) -> Option<Result<(), DriverError>> {
        if let Some(m) = msg
            && let Some(stop) = self.on_msg(m)
        {
            return Some(stop);
        }
        let now = self.clock.now();
        if let Some((d, why)) = self.tracker.poll_timeout()
            && d <= now
        {
            tracing::trace!("deadline: {why:?}");
            self.tracker.handle_timeout(now);
            self.drain();
        }
        None
    }

    /// For shutdown: the runtime's effects and every open writer.
    pub fn into_parts(self) -> (R, Vec<R::Writer>) {
        let writers = self.conns.into_values().map(|c| c.writer).collect();
        (self.io, writers)
    }

    /// Handles one message; `Some` ends the loop with that result.
    fn on_msg(&mut self, m: Msg<R::Writer>) -> Option<Result<(), DriverError>> {
        match m {
            Msg::Opened {
                conn,
                peer,
                writer,
                input,
            } => {
                tracing::debug!(conn, "connection with {peer} up");
                let (key, dialed) = match &input {
                    Input::Dialed { peer, .. } => (*peer, true),
                    Input::Accepted { peer, .. } => (*peer, false),
                    _ => unreachable!("a connection opens with Dialed or Accepted"),
                };
                // A peer tracker's connection may carry a whole snapshot.
                if dialed || self.is_tracker_key(key) {
                    writer.set_queue_max(PEER_TRACKER_WRITE_QUEUE_LEN_MAX);
                }
                self.conns.insert(conn, Conn { writer, peer, key });
                self.feed(input);
            }
            Msg::Input(input) => {
                if self.known(&input) {
                    let frame_of = match &input {
                        Input::Frame { conn, .. } => Some(*conn),
                        _ => None,
                    };
                    self.feed(input);
                    // Its replies are queued: the reader may go on.
                    if let Some(c) = frame_of.and_then(|c| self.conns.get(&c)) {
                        c.writer.frame_handled();
                    }
                }
            }
            Msg::StorageFailed(e) => {
                tracing::error!("storage failed: {e}; stopping");
                return Some(Err(DriverError::StorageFailed(e)));
            }
            Msg::Shutdown => {
                tracing::info!("shutting down");
                return Some(Ok(()));
            }
        }
        None
    }

    /// Drops input for connections already closed here (frames still in the
    /// channel when the machine closed it); forgets a connection on `Closed`.
    fn known(&mut self, input: &Input) -> bool {
        match input {
            Input::Frame { conn, .. } | Input::BadFraming { conn, .. } => {
                self.conns.contains_key(conn)
            }
            Input::Closed { conn } => match self.conns.remove(conn) {
                Some(c) => {
                    tracing::debug!(conn, "connection with {} closed by the peer", c.peer);
                    true
                }
                None => false,
            },
            _ => true,
        }
    }

    fn feed(&mut self, input: Input) {
        let now = self.clock.now();
        self.tracker.handle_input(now, input);
        self.drain();
    }

    fn drain(&mut self) {
        let mut n = 0;
        while let Some(o) = self.tracker.poll_output() {
            crate::count_turn_output(&mut n, "tracker");
            self.execute(o);
        }
    }

    /// Runs one output. Never blocks and never calls the machine.
    fn execute(&mut self, o: Output) {
        match o {
            Output::Send { conn, msg } => {
                let Some(c) = self.conns.get(&conn) else {
                    tracing::trace!(conn, "send on a closed connection dropped");
                    return;
                };
                let mut frame = BytesMut::new();
                msg.encode_frame(&mut frame);
                if !c.writer.send(frame.freeze()) {
                    tracing::warn!(
                        conn,
                        "{}: send queue full or writer gone; connection cut",
                        c.peer
                    );
                }
            }
            Output::Close { conn, why } => {
                if let Some(c) = self.conns.remove(&conn) {
                    tracing::debug!(conn, "closing connection with {}: {}", c.peer, why.as_str());
                    c.writer.close();
                }
            }
            Output::Dial { tracker, addr } => {
                tracing::debug!("dialing tracker {tracker} at {addr}");
                self.io.dial(tracker, addr)
            }
            Output::Persist(write) => self.io.store(StorageCmd::Persist(write)),
            Output::Password { job, work } => self.io.password(job, work),
            Output::PinTracker { tracker, key } => {
                self.pins.pin(usize::from(tracker.0).saturating_sub(1), key);
                for c in self.conns.values().filter(|c| c.key == key) {
                    c.writer.set_queue_max(PEER_TRACKER_WRITE_QUEUE_LEN_MAX);
                }
            }
            Output::Event(e) => {
                self.log_event(&e);
                (self.sink)(&e);
            }
        }
    }

    fn peer_of(&self, conn: ConnId) -> String {
        self.conns
            .get(&conn)
            .map(|c| c.peer.to_string())
            .unwrap_or_else(|| "?".into())
    }

    /// Whether `key` is pinned for one of the group's trackers.
    fn is_tracker_key(&self, key: KeyId) -> bool {
        (1..=self.pins.addrs().len())
            .filter_map(|i| u16::try_from(i).ok())
            .any(|i| self.tracker.pinned_key(TrackerId(i)) == Some(key))
    }

    fn log_event(&mut self, e: &TrackerEvent) {
        match e {
            TrackerEvent::ConnectedToTracker { tracker } => {
                tracing::info!("connected to peer tracker {tracker}")
            }
            TrackerEvent::DisconnectedFromTracker { tracker } => {
                tracing::warn!("lost the connection to peer tracker {tracker}")
            }
            TrackerEvent::ClientConnected { conn, addr } => {
                tracing::info!(conn = *conn, "client connected from {addr}")
            }
            TrackerEvent::ClientGone { conn } => {
                tracing::info!(conn = *conn, "client disconnected")
            }
            TrackerEvent::BadInput { conn, addr, error } => {
                let peer = addr
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| self.peer_of(*conn));
                if let Admit::Log { suppressed } = self.refusals.admit(std::time::Instant::now()) {
                    let line = format_args!("rejected input from {peer}: {error}; closing");
                    tracing::warn!(conn = *conn, "{}", with_suppressed(line, suppressed))
                }
            }
            TrackerEvent::TrackerKeyRefused(r) => tracing::error!("{r}"),
            TrackerEvent::Repl(r) => log_repl(r),
            TrackerEvent::Console(_) => {}
        }
    }
}
