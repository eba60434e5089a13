//! A connection's writer, written once for both runtimes: the sending
//! half ([`ConnWriter`]: the queue bound, aborting a stalled connection,
//! close and drop) and the writer's work without its socket
//! ([`WriteState`]: queued messages joined into a batch, file ranges read,
//! the batch encrypted in chunks for the runtime to write, the queue count
//! lowered when it is out). A runtime supplies the channel, the thread or
//! task, and the waiting write ([`WriterRuntime`]).

use std::fmt;
use std::io;

use bytes::Bytes;

use super::{Batch, FileRange, FrameSink, QueuedLen, WriterGuard, WriterMsg, collect_batch};
#[cfg(doc)]
use super::{WRITE_QUEUE_LEN_MAX, WRITE_TIMEOUT};
use crate::tls::Session;

/// What a runtime plugs into [`ConnWriter`]: how messages reach its
/// writer, what the writer runs on, and how the socket is shut down.
pub trait WriterRuntime: fmt::Debug + Send + 'static {
    /// The sending end of the writer's queue (unbounded).
    type Tx: Clone + fmt::Debug + Send + Sync + 'static;
    /// The socket, or a handle on it, kept to shut it down.
    type Socket: fmt::Debug + Send + Sync + 'static;
    /// The running writer (a thread, a task), given back by
    /// [`ConnWriter::close`] to be waited for.
    type Handle: fmt::Debug + Send + 'static;
    /// Queues `m` without waiting; `false` if the writer has gone.
    fn push(tx: &Self::Tx, m: WriterMsg) -> bool;
    /// Shuts the socket down both ways (which also ends its reader).
    fn shutdown(socket: &Self::Socket);
    /// Lets the writer run on with nobody waiting for it.
    fn detach(handle: Self::Handle);
}

/// The sending half of a connection: frames queue to its writer.
///
/// [`ConnWriter::close`] (or dropping it) lets the writer send what is
/// queued, then ends the TLS stream and shuts the socket down, which also
/// ends its reader. [`ConnWriter::abort`] shuts it down at once.
#[derive(Debug)]
pub struct ConnWriter<R: WriterRuntime> {
    tx: R::Tx,
    queued: QueuedLen,
    socket: R::Socket,
    handle: Option<R::Handle>,
}

impl<R: WriterRuntime> ConnWriter<R> {
    /// The sending half of a writer the runtime has started: `tx` feeds
    /// it, `queued` is the count it shares with it ([`WriteState::new`]),
    /// `socket` is kept to abort.
    pub fn new(tx: R::Tx, queued: QueuedLen, socket: R::Socket, handle: R::Handle) -> Self {
        ConnWriter {
            tx,
            queued,
            socket,
            handle: Some(handle),
        }
    }

    /// What the connection's reader uses to wake this writer and to wait
    /// for backpressure.
    pub fn wake_handle(&self) -> WriterWake<R> {
        WriterWake {
            tx: self.tx.clone(),
            queued: self.queued.clone(),
        }
    }

    /// Queues one encoded frame. `false` if the writer has gone or its queue
    /// is over [`WRITE_QUEUE_LEN_MAX`] (the connection is then aborted).
    pub fn send(&self, frame: Bytes) -> bool {
        self.send_parts(frame, Bytes::new())
    }

    /// Queues one frame given as its start and the rest; the rest is
    /// written from its own buffer (see [`FrameSink::send_parts`]).
    pub fn send_parts(&self, head: Bytes, body: Bytes) -> bool {
        let len = head.len() + body.len();
        let body = (!body.is_empty()).then_some(WriterMsg::Frame(body));
        self.queue(len, WriterMsg::Frame(head), body)
    }

    /// Queues one frame given as its start and a range of a file, which
    /// the writer reads into a pooled buffer and encrypts when its turn
    /// comes (see [`FrameSink::send_file`]).
    pub fn send_file(&self, head: Bytes, range: FileRange) -> bool {
        let len = head.len() + range.len;
        self.queue(len, WriterMsg::Frame(head), Some(WriterMsg::File(range)))
    }

    /// Queues the parts of one frame, `len` bytes in all; over the queue
    /// limit the connection is aborted instead.
    fn queue(&self, len: usize, first: WriterMsg, rest: Option<WriterMsg>) -> bool {
        if !self.queued.try_add(len) {
            self.abort();
            return false;
        }
        let sent = R::push(&self.tx, first) && rest.is_none_or(|m| R::push(&self.tx, m));
        if !sent {
            self.queued.sub(len);
        }
        sent
    }

    /// Bytes queued and not yet written.
    pub fn queued_len(&self) -> usize {
        self.queued.get()
    }

    /// The queue count and backpressure this writer shares with its reader.
    pub fn queued(&self) -> &QueuedLen {
        &self.queued
    }

    /// Sends what is queued, then shuts the socket down. Waiting for the
    /// handle waits for that.
    pub fn close(mut self) -> Option<R::Handle> {
        R::push(&self.tx, WriterMsg::Close);
        self.handle.take()
    }

    /// Shuts the socket down now, dropping whatever is queued.
    pub fn abort(&self) {
        self.queued.writer_ended();
        R::shutdown(&self.socket);
    }
}

impl<R: WriterRuntime> Drop for ConnWriter<R> {
    fn drop(&mut self) {
        R::push(&self.tx, WriterMsg::Close);
        if let Some(h) = self.handle.take() {
            R::detach(h);
        }
    }
}

impl<R: WriterRuntime> FrameSink for ConnWriter<R> {
    fn send(&self, frame: Bytes) -> bool {
        ConnWriter::send(self, frame)
    }
    fn send_parts(&self, head: Bytes, body: Bytes) -> bool {
        ConnWriter::send_parts(self, head, body)
    }
    fn send_file(&self, head: Bytes, range: FileRange) -> bool {
        ConnWriter::send_file(self, head, range)
    }
    fn close(self) {
        if let Some(h) = ConnWriter::close(self) {
            R::detach(h);
        }
    }
    fn abort(&self) {
        ConnWriter::abort(self)
    }
    fn frame_handled(&self) {
        self.queued.frame_handled()
    }
    fn set_queue_max(&self, max: usize) {
        self.queued.set_max(max)
    }
}

/// What a connection's reader holds of its writer: a way to wake it, so
/// it sends what rustls has queued, and the backpressure it waits on.
#[derive(Debug)]
pub struct WriterWake<R: WriterRuntime> {
    tx: R::Tx,
    queued: QueuedLen,
}

impl<R: WriterRuntime> Clone for WriterWake<R> {
    fn clone(&self) -> Self {
        WriterWake {
            tx: self.tx.clone(),
            queued: self.queued.clone(),
        }
    }
}

impl<R: WriterRuntime> WriterWake<R> {
    /// Wakes the writer: it flushes what rustls has to send.
    pub fn wake(&self) {
        // An empty frame: nothing to encrypt, but the writer flushes.
        R::push(&self.tx, WriterMsg::Frame(Bytes::new()));
    }

    /// The connection's backpressure ([`QueuedLen::may_read`]).
    pub fn flow(&self) -> &QueuedLen {
        &self.queued
    }
}

/// The writer's work between its queue and its socket: a runtime's writer
/// takes the next batch ([`WriteState::take`]), reads its file ranges
/// ([`WriteState::load`]), writes each chunk [`WriteState::seal`] gives
/// until it is empty (within [`WRITE_TIMEOUT`]), then calls
/// [`WriteState::done`]; on a close it writes
/// [`WriteState::close_notify`] and shuts the socket down. The queue count
/// is lowered as batches go out, and a paused reader is let go when the
/// writer ends (however it ends: the state holds a [`WriterGuard`]).
#[derive(Debug)]
pub struct WriteState {
    batch: Batch,
    /// Ciphertext to write; reused for every chunk.
    out: Vec<u8>,
    queued: QueuedLen,
    /// Frame bytes in the batch being written.
    len: usize,
    closing: bool,
    _ended: WriterGuard,
}

impl WriteState {
    /// The state of the writer counting into `queued` (its
    /// [`ConnWriter`]'s).
    pub fn new(queued: QueuedLen) -> Self {
        WriteState {
            batch: Batch::default(),
            out: Vec::new(),
            _ended: queued.writer_guard(),
            queued,
            len: 0,
            closing: false,
        }
    }

    /// Joins `first` (`None`: every sender has gone, which closes) and
    /// whatever `next` has ready into the next batch. `next` returns
    /// `None` when nothing more is queued, and `Some(WriterMsg::Close)`
    /// when the sending half has gone.
    pub fn take(&mut self, first: Option<WriterMsg>, next: impl FnMut() -> Option<WriterMsg>) {
        (self.closing, self.len) = match first {
            Some(m) => collect_batch(m, next, &mut self.batch),
            None => (true, 0),
        };
    }

    /// Reads the batch's file ranges into pooled buffers (see
    /// [`Batch::load_files`]); an error fails the connection.
    pub fn load(&mut self) -> io::Result<()> {
        self.batch.load_files()
    }

    /// The next ciphertext to write for this batch (with whatever else
    /// rustls has to send); empty when the batch is out.
    pub fn seal(&mut self, session: &Session) -> io::Result<&[u8]> {
        self.out.clear();
        session.seal(&mut self.batch, &mut self.out)?;
        Ok(&self.out)
    }

    /// The batch is written, or failed: its bytes leave the queue count.
    /// `true` when the writer is to close (write
    /// [`WriteState::close_notify`], then shut the socket down).
    pub fn done(&mut self) -> bool {
        self.queued.sub(std::mem::take(&mut self.len));
        self.closing
    }

    /// The end of the TLS stream (close_notify), to write last.
    pub fn close_notify(&mut self, session: &Session) -> &[u8] {
        self.out.clear();
        session.close(&mut self.out);
        &self.out
    }
}
