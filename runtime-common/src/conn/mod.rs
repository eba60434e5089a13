//! The protocol-free parts of a connection, written once for both
//! runtimes: ids, limits, what a reader reports, and the reader and the
//! writer without their sockets. A runtime adds only the waiting (a
//! thread blocking on `read`/`write`, a task awaiting readiness) around
//! them; every byte on the socket is TLS ([`crate::tls::Session`] sits
//! between these frames and the socket).
//!
//! - [`deframe`]: a byte stream into frames ([`Deframer`]);
//! - [`reader`]: a connection's reader, sans-IO ([`ConnReader`]: decrypt,
//!   cut frames, the frame deadline);
//! - [`flow`]: the write queue's byte count and the reader's
//!   backpressure ([`QueuedLen`]);
//! - [`batch`]: what a writer is asked to send and how queued frames
//!   are joined into one write ([`collect_batch`], [`Batch`]);
//! - [`writer`]: the sending half ([`ConnWriter`]) and the writer's work
//!   ([`WriteState`]), over a runtime's channel and thread or task
//!   ([`WriterRuntime`]).
//!
//! Piece bytes are copied as little as TLS allows: a reader decrypts
//! into the body of a large frame straight from rustls ([`Deframer`]; a
//! pooled buffer from [`crate::buffers`], placed so the piece's data is
//! aligned for `O_DIRECT`), and a writer reads a piece served from disk
//! into a pooled buffer ([`FrameSink::send_file`], [`FileRange`],
//! [`Batch::load_files`]) and encrypts it from there; other large data is
//! encrypted from its own buffer ([`FrameSink::send_parts`], [`Batch`]).

use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use p2p_proto::{FrameError, PeerMsg};

use crate::buffers;
#[cfg(doc)]
use crate::buffers::DIRECT_ALIGN;

pub mod batch;
pub mod deframe;
pub mod flow;
pub mod reader;
pub mod writer;

pub use batch::{Batch, FileRange, WRITE_COPY_LEN_MAX, WriterMsg, collect_batch};
pub use deframe::Deframer;
pub use flow::{FRAMES_UNHANDLED_MAX, QueuedLen, READ_PAUSE_QUEUE_LEN, WriterGuard};
pub use reader::{ConnReader, FrameClock, NextRead, frame_timed_out};
pub use writer::{ConnWriter, WriteState, WriterRuntime, WriterWake};

#[cfg(test)]
mod tests;

/// A connection's number, unique within the process.
pub type ConnId = u64;

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// A fresh connection id (process-wide counter).
pub fn next_conn_id() -> ConnId {
    NEXT_CONN.fetch_add(1, Ordering::Relaxed)
}

/// Bytes read from a socket per `read` call, when no large frame is
/// arriving (see [`Deframer`]).
pub const READ_CHUNK_LEN: usize = 64 * 1024;
/// A frame with at least this many bytes still to come is read straight
/// into its own buffer.
pub const DIRECT_READ_LEN_MIN: usize = 64 * 1024;
/// The byte of a large frame placed on a [`DIRECT_ALIGN`] boundary: large
/// frames are pieces, and this is where a piece's data begins, so the
/// disk can write it with `O_DIRECT` as it is: right after the piece
/// frame's head ([`PeerMsg::PIECE_FRAME_HEAD_LEN`]).
pub const LARGE_FRAME_ALIGN_AT: usize = PeerMsg::PIECE_FRAME_HEAD_LEN;
/// Queued frames are joined into writes of at most about this many bytes.
pub const WRITE_BATCH_LEN_MAX: usize = 1024 * 1024;
/// Bytes queued for one writer before the connection is cut as stalled.
/// Backpressure bounds what a connection's peer can make us queue: the
/// replies waiting when its reader pauses ([`READ_PAUSE_QUEUE_LEN`],
/// 2 MiB) plus the replies to the frames in hand ([`FRAMES_UNHANDLED_MAX`]
/// of at most a frame each, 8 x 516 KiB); a seeder queues at most its
/// 8 requested pieces per connection (4 MiB). That is under 7 MiB; 16 MiB
/// leaves room for what a node sends unasked (notices, pings) and cuts a
/// peer that stops reading long before it costs much. A peer tracker's
/// connection gets [`PEER_TRACKER_WRITE_QUEUE_LEN_MAX`].
pub const WRITE_QUEUE_LEN_MAX: usize = 16 * 1024 * 1024;
/// [`WRITE_QUEUE_LEN_MAX`] of a peer tracker's connection (its key pinned):
/// a catch-up queues a whole snapshot of the state at once, tens of MiB
/// for a full tracker.
pub const PEER_TRACKER_WRITE_QUEUE_LEN_MAX: usize = 256 * 1024 * 1024;
/// A write that makes no progress for this long fails the connection.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// A frame that has started to arrive must be whole within this (issue 16
/// §1: a peer that sends a frame's first bytes and then trickles or stops
/// holds a buffer and a connection; it is cut instead). A 516 KiB piece
/// frame gets it whole over a link of 26 KiB/s.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a dial may take.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(3);

/// What a connection's reader reports.
#[derive(Debug, Clone, PartialEq)]
pub enum ConnEvent {
    /// One whole frame's payload.
    Frame(Bytes),
    /// The stream is not valid framing; the reader has stopped reading.
    BadFraming(FrameError),
    /// The connection is gone (always the reader's last event).
    Closed,
}

/// Where a connection's reader hands its events, in order: any
/// `FnMut(ConnEvent) -> bool` (`false`: nobody listens any more, the
/// reader stops), or a sink that may hold an event back for a moment and
/// must be told before the reader waits (the client's peer connections
/// hash piece frames two at a time, `client::PeerSink`).
pub trait EventSink {
    /// Takes the next event; `false` to stop the reader.
    fn event(&mut self, e: ConnEvent) -> bool;
    /// Whether an event is held back: the reader then reads only what is
    /// already in the socket before [`EventSink::waiting`].
    fn holding(&self) -> bool {
        false
    }
    /// The reader is about to wait (for the socket, or for the machine to
    /// catch up): hand over anything held. `false` to stop the reader.
    fn waiting(&mut self) -> bool {
        true
    }
}

impl<F: FnMut(ConnEvent) -> bool> EventSink for F {
    fn event(&mut self, e: ConnEvent) -> bool {
        self(e)
    }
}

/// What a reader does next when its sink may hold an event back
/// ([`read_if_holding`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// More has been read into the reader: decrypt it before anything.
    Read,
    /// Nothing is held (any more): read, waiting as usual.
    Wait,
    /// The reader stops (the peer closed, the read failed, or nobody
    /// listens).
    Stop,
}

/// With an event held back by `sink`, reads what has already arrived on
/// `socket` into `r` without waiting; when nothing has, the sink hands
/// the event over before the reader waits ([`EventSink::waiting`]).
pub fn read_if_holding<S: EventSink>(
    socket: impl std::os::fd::AsFd,
    r: &mut ConnReader,
    sink: &mut S,
) -> Held {
    if !sink.holding() {
        return Held::Wait;
    }
    match read_now(socket, r.read_buf()) {
        Some(Ok(0)) => {
            r.finish(&mut |e| sink.event(e));
            Held::Stop
        }
        Some(Ok(n)) => {
            r.read(n);
            Held::Read
        }
        Some(Err(_)) => Held::Stop,
        None if sink.waiting() => Held::Wait,
        None => Held::Stop,
    }
}

/// Reads what is already in `socket`'s receive queue into `buf` without
/// waiting (`MSG_DONTWAIT`, whether the socket blocks or not): `None` if
/// nothing is there yet, else the read's result (0: the peer closed).
pub fn read_now(socket: impl std::os::fd::AsFd, buf: &mut [u8]) -> Option<std::io::Result<usize>> {
    use rustix::io::Errno;
    match rustix::net::recv(socket, buf, rustix::net::RecvFlags::DONTWAIT) {
        Ok((n, _)) => Some(Ok(n)),
        Err(Errno::AGAIN | Errno::INTR) => None,
        Err(e) => Some(Err(e.into())),
    }
}

/// The sending half of a connection, whatever runs it.
pub trait FrameSink: Send + 'static {
    /// Queues one encoded frame. `false` if the writer has gone or its
    /// queue is over [`WRITE_QUEUE_LEN_MAX`] (the connection is then aborted).
    fn send(&self, frame: Bytes) -> bool;
    /// Queues one frame given as its start and the rest (a piece's
    /// headers and its data), so the data is written from its own buffer
    /// without being copied into a frame first.
    fn send_parts(&self, head: Bytes, body: Bytes) -> bool {
        let mut frame = BytesMut::with_capacity(head.len() + body.len());
        frame.extend_from_slice(&head);
        frame.extend_from_slice(&body);
        self.send(frame.freeze())
    }
    /// Queues one frame given as its start and a range of a file (a piece
    /// served from disk): the runtimes' writers read the range into a
    /// pooled buffer when its turn comes ([`Batch::load_files`]) and
    /// encrypt it from there. This default reads it on the caller's
    /// thread and sends it as [`FrameSink::send_parts`] (for sinks that
    /// are not sockets); a short file aborts the connection, as a writer
    /// does when the file ends early.
    fn send_file(&self, head: Bytes, range: FileRange) -> bool {
        let mut buf = buffers::take(range.len);
        match range
            .file
            .read_exact_at(&mut buf[..range.len], range.offset)
        {
            Ok(()) => self.send_parts(head, buffers::freeze(buf, 0..range.len)),
            Err(_) => {
                self.abort();
                false
            }
        }
    }
    /// Sends what is queued, then shuts the socket down (which also ends
    /// its reader).
    fn close(self);
    /// Shuts the socket down now, dropping whatever is queued.
    fn abort(&self);
    /// The machine has handled one frame this connection's reader handed
    /// over (backpressure, [`QueuedLen`]); sinks that are not sockets
    /// ignore it.
    fn frame_handled(&self) {}
    /// Raises this connection's write queue bound to `max` (a peer
    /// tracker's, [`PEER_TRACKER_WRITE_QUEUE_LEN_MAX`]); sinks that are
    /// not sockets ignore it.
    fn set_queue_max(&self, _max: usize) {}
}
