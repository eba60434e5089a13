//! A connection's reader, sans-IO ([`ConnReader`]): what was read from the
//! socket is decrypted and cut into frames here, and it says what to do
//! next (hand over these events, wake the writer, read again within this
//! much time, or stop). A runtime keeps only the wait: a thread blocks on
//! `read` with a read timeout, a task races `read` against a timer.
//!
//! The frame deadline ([`FRAME_TIMEOUT`]) runs on [`FrameClock`], fed the
//! `Instant` a runtime passes in. The backpressure decision (whether a
//! frame may be handed over now) is [`QueuedLen::may_read`]; a runtime
//! waits for it before each frame and calls [`ConnReader::paused`] when it
//! had to.

use std::time::{Duration, Instant};

use p2p_proto::FrameDecoder;

use super::{ConnEvent, Deframer};
#[cfg(doc)]
use super::{FRAME_TIMEOUT, QueuedLen};
use crate::tls::{Received, Session, TLS_READ_CHUNK_LEN};

/// A reader's clock for [`FRAME_TIMEOUT`]: started by a frame's first
/// byte, stopped when no frame is partly in.
#[derive(Debug, Default)]
pub struct FrameClock(Option<Instant>);

impl FrameClock {
    /// The time left at `now` for the frame now arriving, `None` if none
    /// is; [`Duration::ZERO`] once `timeout` has passed (the reader then
    /// stops, [`frame_timed_out`]).
    pub fn left(&mut self, now: Instant, frames: &Deframer, timeout: Duration) -> Option<Duration> {
        if !frames.in_frame() {
            self.0 = None;
            return None;
        }
        let began = *self.0.get_or_insert(now);
        Some(timeout.saturating_sub(now.saturating_duration_since(began)))
    }
}

/// Says why a reader stopped at its frame deadline.
pub fn frame_timed_out(timeout: Duration) {
    tracing::debug!(
        "a frame was not whole {timeout:?} after its first byte (FRAME_TIMEOUT: \
         the peer stalled or its link is too slow); connection closed"
    );
}

/// What a reader does once it has handed over the events of its last
/// read ([`ConnReader::next_read`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextRead {
    /// Wake the connection's writer first: rustls has records to send
    /// (an alert, a key update).
    pub wake_writer: bool,
    /// The time left for the frame partly in, within which the next read
    /// must bring the rest; `None`: between frames, a read may wait.
    pub left: Option<Duration>,
}

/// The reading half of a connection without its socket: ciphertext in
/// ([`ConnReader::read_buf`], [`ConnReader::read`]), frames out
/// ([`ConnReader::next_event`]), and the deadline of a frame partly in.
/// A runtime's loop:
///
/// ```text
/// loop {
///     r.receive(&session);
///     while let Some(e) = r.next_event() { wait for backpressure if a frame; hand e over }
///     let Some(next) = r.next_read(now) else { stop };
///     wake the writer if next.wake_writer; read into r.read_buf() within next.left
///     0 bytes: r.finish(sink), stop; n bytes: r.read(n); timed out: r.timed_out(), stop
/// }
/// ```
#[derive(Debug)]
pub struct ConnReader {
    frames: Deframer,
    clock: FrameClock,
    timeout: Duration,
    /// Events of the last decryption, last first (taken with `pop`).
    events: Vec<ConnEvent>,
    /// Ciphertext read from the socket.
    buf: Vec<u8>,
    /// Bytes of `buf` not yet decrypted.
    n: usize,
    /// What arrived with the handshake's end: decrypted first.
    early: Option<Vec<u8>>,
    /// What to do after the events of the last decryption.
    after: After,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    Read,
    WakeAndRead,
    Stop,
}

impl ConnReader {
    /// A reader for `session`'s connection, cutting frames with `decoder`;
    /// a frame that has begun must be whole within `frame_timeout`.
    pub fn new(session: &Session, decoder: FrameDecoder, frame_timeout: Duration) -> Self {
        ConnReader {
            frames: Deframer::new(decoder),
            clock: FrameClock::default(),
            timeout: frame_timeout,
            events: Vec::new(),
            buf: vec![0u8; TLS_READ_CHUNK_LEN],
            n: 0,
            early: Some(session.take_early()),
            after: After::Read,
        }
    }

    /// Decrypts what was read last (at first, what came with the end of
    /// the handshake) and cuts it into frames, for
    /// [`ConnReader::next_event`].
    pub fn receive(&mut self, session: &Session) {
        let tls = self.early.as_deref().unwrap_or(&self.buf[..self.n]);
        let r = session.receive(tls, &mut self.frames, &mut self.events);
        self.early = None;
        self.n = 0;
        self.events.reverse();
        self.after = match r {
            Ok(Received { stop: true, .. }) => After::Stop,
            Ok(Received {
                wants_write: true, ..
            }) => After::WakeAndRead,
            Ok(_) => After::Read,
            Err(e) => {
                tracing::debug!("TLS: {e}");
                After::Stop
            }
        };
    }

    /// The next event to hand over, in order. Before a
    /// [`ConnEvent::Frame`] the runtime waits until
    /// [`QueuedLen::may_read`] (and counts it,
    /// [`QueuedLen::frame_read`]).
    pub fn next_event(&mut self) -> Option<ConnEvent> {
        self.events.pop()
    }

    /// The frame just handed over had to wait for our side
    /// (backpressure): the frame arriving now starts its deadline afresh.
    pub fn paused(&mut self) {
        self.clock = FrameClock::default();
    }

    /// What to do at `now`, the events handed over: `None` to stop (the
    /// peer closed TLS, the framing is bad, TLS failed, or the frame
    /// partly in is past its deadline, which is logged).
    pub fn next_read(&mut self, now: Instant) -> Option<NextRead> {
        let wake_writer = match self.after {
            After::Stop => return None,
            After::Read => false,
            After::WakeAndRead => true,
        };
        let left = self.clock.left(now, &self.frames, self.timeout);
        if left == Some(Duration::ZERO) {
            self.timed_out();
            return None;
        }
        Some(NextRead { wake_writer, left })
    }

    /// Where the next read from the socket goes.
    pub fn read_buf(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// `n` bytes (more than 0) were read into [`ConnReader::read_buf`].
    pub fn read(&mut self, n: usize) {
        self.n = n;
    }

    /// The socket reached its end: a frame left partly in is bad framing,
    /// handed to `sink`. The reader stops.
    pub fn finish<F: FnMut(ConnEvent) -> bool>(&mut self, sink: &mut F) {
        self.frames.finish(sink)
    }

    /// The read did not bring the rest of the frame within
    /// [`NextRead::left`]: logs why the reader stops.
    pub fn timed_out(&self) {
        frame_timed_out(self.timeout)
    }
}
