//! The protocol-free parts of a connection that every driver shares: ids,
//! limits, what a reader reports, cutting a byte stream into frames, the
//! write queue's byte count and how queued frames are joined into one
//! write. The drivers add the plumbing (threads or tasks) around them;
//! every byte on the socket is TLS ([`crate::tls::Session`] sits between
//! these frames and the socket).
//!
//! Piece bytes are copied as little as TLS allows: a reader decrypts
//! into the body of a large frame straight from rustls ([`Deframer`]; a
//! pooled buffer from [`crate::buffers`], placed so the piece's data is
//! aligned for `O_DIRECT`), and a writer reads a piece served from disk
//! into a pooled buffer ([`FrameSink::send_file`], [`FileRange`],
//! [`Batch::load_files`]) and encrypts it from there; other large data is
//! encrypted from its own buffer ([`FrameSink::send_parts`], [`Batch`]).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IoSlice};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use event_listener::{Event, Listener};
use p2p_proto::limits::FRAME_HEADER_LEN;
use p2p_proto::{FrameDecoder, FrameError, PeerMsg};

use crate::buffers::{self, DIRECT_ALIGN};

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
/// disk can write it with `O_DIRECT` as it is.
pub const LARGE_FRAME_ALIGN_AT: usize = FRAME_HEADER_LEN + PeerMsg::PIECE_HEADER_LEN;
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

/// Cuts a byte stream into frames for a reader, and says where each read
/// should land ([`Deframer::read_buf`]): small frames arrive in a chunk of
/// [`READ_CHUNK_LEN`] bytes that can hold many of them and are copied out
/// of it, while the rest of a large frame (a piece) is read straight into
/// a pooled buffer sized from its header (already checked against the
/// frame limit), so piece bytes are never copied after the socket.
#[derive(Debug)]
pub struct Deframer {
    decoder: FrameDecoder,
    /// Bytes received and not yet handed out as frames.
    buf: BytesMut,
    /// Where reads land when no large frame is arriving.
    chunk: Vec<u8>,
    /// The large frame being read in place, if any.
    direct: Option<Direct>,
}

/// A large frame arriving in its own buffer: the frame (header included)
/// goes to `buf[start..start + need]`, and `have` bytes of it are there.
#[derive(Debug)]
struct Direct {
    buf: Vec<u8>,
    start: usize,
    have: usize,
    need: usize,
}

impl Deframer {
    pub fn new(decoder: FrameDecoder) -> Self {
        Deframer {
            decoder,
            buf: BytesMut::new(),
            chunk: vec![0; READ_CHUNK_LEN],
            direct: None,
        }
    }

    /// Where the next read should put its bytes; then call
    /// [`Deframer::filled`] with how many it read.
    pub fn read_buf(&mut self) -> &mut [u8] {
        if self.direct.is_none() {
            self.direct = self.start_direct();
        }
        match &mut self.direct {
            Some(d) => &mut d.buf[d.start + d.have..d.start + d.need],
            None => &mut self.chunk,
        }
    }

    /// `n` bytes were read into [`Deframer::read_buf`]: hands every whole
    /// frame to `sink`. `false`: stop reading (bad framing, or the sink
    /// stopped listening).
    pub fn filled<F: FnMut(ConnEvent) -> bool>(&mut self, n: usize, sink: &mut F) -> bool {
        match self.direct.take() {
            Some(mut d) if d.have + n < d.need => {
                d.have += n;
                self.direct = Some(d);
                true
            }
            Some(d) => {
                let payload = d.start + FRAME_HEADER_LEN..d.start + d.need;
                sink(ConnEvent::Frame(buffers::freeze(d.buf, payload)))
            }
            None => {
                self.buf.extend_from_slice(&self.chunk[..n]);
                self.decode_all(sink)
            }
        }
    }

    /// Takes `bytes` (however they were read) and hands every whole frame
    /// to `sink`; the same as reading them into [`Deframer::read_buf`].
    pub fn feed<F: FnMut(ConnEvent) -> bool>(&mut self, mut bytes: &[u8], sink: &mut F) -> bool {
        while !bytes.is_empty() {
            let to = self.read_buf();
            let n = to.len().min(bytes.len());
            to[..n].copy_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if !self.filled(n, sink) {
                return false;
            }
        }
        true
    }

    /// A large frame's header is in `buf` (and nothing after that frame:
    /// whole frames were handed out) and most of its body is still to
    /// come: move what arrived into a buffer of its own, placed so that
    /// byte [`LARGE_FRAME_ALIGN_AT`] is aligned. `None` for small frames,
    /// and for a bad header (left for the decoder to report).
    fn start_direct(&mut self) -> Option<Direct> {
        let header = self.buf.get(..FRAME_HEADER_LEN)?;
        let len = u32::from_be_bytes(header.try_into().ok()?);
        if len == 0 || len > self.decoder.len_max() {
            return None;
        }
        let need = FRAME_HEADER_LEN + len as usize;
        let have = self.buf.len();
        if need.saturating_sub(have) < DIRECT_READ_LEN_MIN {
            return None;
        }
        let mut buf = buffers::take(need + DIRECT_ALIGN);
        let start = buffers::aligned_start(&buf, LARGE_FRAME_ALIGN_AT);
        buf[start..start + have].copy_from_slice(&self.buf);
        self.buf.clear();
        Some(Direct {
            buf,
            start,
            have,
            need,
        })
    }

    fn decode_all<F: FnMut(ConnEvent) -> bool>(&mut self, sink: &mut F) -> bool {
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(frame)) => {
                    if !sink(ConnEvent::Frame(frame)) {
                        return false;
                    }
                }
                Ok(None) => return true,
                Err(e) => {
                    sink(ConnEvent::BadFraming(e));
                    return false;
                }
            }
        }
    }

    /// Whether part of a frame has arrived and the rest has not (the
    /// reader's [`FRAME_TIMEOUT`] runs).
    pub fn in_frame(&self) -> bool {
        self.direct.is_some() || !self.buf.is_empty()
    }

    /// The stream ended: a partial frame left over is bad framing.
    pub fn finish<F: FnMut(ConnEvent) -> bool>(&mut self, sink: &mut F) {
        if let Some(d) = self.direct.take() {
            sink(ConnEvent::BadFraming(FrameError::Truncated {
                have: d.have,
                need: d.need,
            }));
            return;
        }
        if let Err(e) = self.decoder.finish(&self.buf) {
            sink(ConnEvent::BadFraming(e));
        }
    }
}

/// A reader's clock for [`FRAME_TIMEOUT`]: started by a frame's first
/// byte, stopped when no frame is partly in.
#[derive(Debug, Default)]
pub struct FrameClock(Option<Instant>);

impl FrameClock {
    /// The time left for the frame now arriving, `None` if none is;
    /// [`Duration::ZERO`] once `timeout` has passed (the reader then
    /// stops, [`frame_timed_out`]).
    pub fn left(&mut self, frames: &Deframer, timeout: Duration) -> Option<Duration> {
        if !frames.in_frame() {
            self.0 = None;
            return None;
        }
        let began = *self.0.get_or_insert_with(Instant::now);
        Some(timeout.saturating_sub(began.elapsed()))
    }
}

/// Says why a reader stopped at its frame deadline.
pub fn frame_timed_out(timeout: Duration) {
    tracing::debug!(
        "a frame was not whole {timeout:?} after its first byte (FRAME_TIMEOUT: \
         the peer stalled or its link is too slow); connection closed"
    );
}

/// What a writer is asked to do.
#[derive(Debug)]
pub enum WriterMsg {
    /// Bytes to write: a whole frame, or a part of one whose other parts
    /// are queued right next to it.
    Frame(Bytes),
    /// A part of a frame that is a range of a file, read when its turn
    /// comes.
    File(FileRange),
    Close,
}

/// `len` bytes at `offset` of `file`, to be sent as they are.
#[derive(Debug, Clone)]
pub struct FileRange {
    pub file: Arc<File>,
    pub offset: u64,
    pub len: usize,
}

/// Bytes queued for a writer and not yet written, counted by the sending
/// half and the writer together; and the connection's backpressure: its
/// reader hands the machine no new frame while the replies queued pass
/// [`READ_PAUSE_QUEUE_LEN`] or [`FRAMES_UNHANDLED_MAX`] frames it handed
/// over are not handled yet ([`QueuedLen::wait_blocking`],
/// [`QueuedLen::wait`]). A peer that sends requests and never reads the
/// answers then stops being read (TCP pushes back on it), and what its
/// connection holds stays bounded: at most [`READ_PAUSE_QUEUE_LEN`] plus
/// the replies to [`FRAMES_UNHANDLED_MAX`] frames, plus a read chunk.
#[derive(Debug, Clone, Default)]
pub struct QueuedLen(Arc<Flow>);

#[derive(Debug, Default)]
struct Flow {
    /// Bytes queued for the writer.
    queued: AtomicUsize,
    /// The bound on `queued`; 0 is [`WRITE_QUEUE_LEN_MAX`].
    max: AtomicUsize,
    /// Frames the reader handed over that the machine has not handled.
    unhandled: AtomicUsize,
    /// The writer has ended: a paused reader must not wait for it.
    ended: AtomicBool,
    /// Rung when the reader may go on.
    go: Event,
}

/// See [`QueuedLen::writer_guard`].
#[derive(Debug)]
pub struct WriterGuard(QueuedLen);

impl Drop for WriterGuard {
    fn drop(&mut self) {
        self.0.writer_ended();
    }
}

/// Replies queued for a connection past which its reader pauses (issue 16
/// §2): the peer must read what it asked for before it is read again.
pub const READ_PAUSE_QUEUE_LEN: usize = 2 * 1024 * 1024;
/// Frames a connection's reader hands the machine before it waits for
/// them to be handled (so their replies are counted before more is read).
pub const FRAMES_UNHANDLED_MAX: usize = 8;

impl QueuedLen {
    /// Counts `len` more bytes; `false` (and nothing counted) if that
    /// would pass the bound ([`WRITE_QUEUE_LEN_MAX`] unless
    /// [`QueuedLen::set_max`] changed it).
    pub fn try_add(&self, len: usize) -> bool {
        let before = self.0.queued.fetch_add(len, Ordering::Relaxed);
        if before + len > self.max() {
            self.0.queued.fetch_sub(len, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// `len` bytes were written (or will never be).
    pub fn sub(&self, len: usize) {
        let before = self.0.queued.fetch_sub(len, Ordering::AcqRel);
        if before >= READ_PAUSE_QUEUE_LEN && before - len < READ_PAUSE_QUEUE_LEN {
            self.0.go.notify(usize::MAX);
        }
    }

    pub fn get(&self) -> usize {
        self.0.queued.load(Ordering::Relaxed)
    }

    /// The bound [`QueuedLen::try_add`] keeps.
    pub fn max(&self) -> usize {
        match self.0.max.load(Ordering::Relaxed) {
            0 => WRITE_QUEUE_LEN_MAX,
            m => m,
        }
    }

    /// Sets the bound (a peer tracker's connection,
    /// [`PEER_TRACKER_WRITE_QUEUE_LEN_MAX`]).
    pub fn set_max(&self, max: usize) {
        self.0.max.store(max.max(1), Ordering::Relaxed);
    }

    /// The reader hands the machine one frame.
    pub fn frame_read(&self) {
        self.0.unhandled.fetch_add(1, Ordering::AcqRel);
    }

    /// The machine has handled one frame of this connection (and queued
    /// its replies).
    pub fn frame_handled(&self) {
        let before = self.0.unhandled.fetch_sub(1, Ordering::AcqRel);
        if before == FRAMES_UNHANDLED_MAX {
            self.0.go.notify(usize::MAX);
        }
    }

    /// The writer has ended (the connection is going): a paused reader
    /// carries on, to find the socket closed.
    pub fn writer_ended(&self) {
        self.0.ended.store(true, Ordering::Release);
        self.0.go.notify(usize::MAX);
    }

    /// Held by a writer while it runs: when it ends (or its task is
    /// dropped), [`QueuedLen::writer_ended`].
    pub fn writer_guard(&self) -> WriterGuard {
        WriterGuard(self.clone())
    }

    /// Whether the reader may hand over another frame now.
    pub fn may_read(&self) -> bool {
        let f = &self.0;
        f.ended.load(Ordering::Acquire)
            || (f.queued.load(Ordering::Acquire) < READ_PAUSE_QUEUE_LEN
                && f.unhandled.load(Ordering::Acquire) < FRAMES_UNHANDLED_MAX)
    }

    /// Blocks the calling thread until [`QueuedLen::may_read`].
    pub fn wait_blocking(&self) {
        while !self.may_read() {
            let listener = self.0.go.listen();
            if self.may_read() {
                return;
            }
            listener.wait();
        }
    }

    /// Waits (in a task) until [`QueuedLen::may_read`].
    pub async fn wait(&self) {
        while !self.may_read() {
            let listener = self.0.go.listen();
            if self.may_read() {
                return;
            }
            listener.await;
        }
    }
}

/// Queued bytes at or above this length are written from their own buffer
/// (a vectored write); shorter ones are copied together first.
pub const WRITE_COPY_LEN_MAX: usize = 16 * 1024;
/// Most buffers handed to one vectored write.
const WRITE_SLICES_MAX: usize = 64;

/// What a writer sends next, in order: small frames copied into one
/// buffer, large ones (piece data) kept as they are, and file ranges
/// (read into memory by [`Batch::load_files`] before they are encrypted).
#[derive(Debug, Default)]
pub struct Batch {
    parts: VecDeque<Part>,
    small: BytesMut,
    len: usize,
}

#[derive(Debug)]
enum Part {
    Mem(Bytes),
    File(FileRange),
}

impl Batch {
    fn push(&mut self, b: Bytes) {
        self.len += b.len();
        if b.len() < WRITE_COPY_LEN_MAX {
            self.small.extend_from_slice(&b);
            return;
        }
        self.seal();
        self.parts.push_back(Part::Mem(b));
    }

    fn push_file(&mut self, r: FileRange) {
        self.len += r.len;
        self.seal();
        if r.len > 0 {
            self.parts.push_back(Part::File(r));
        }
    }

    /// Ends the run of small frames copied so far.
    fn seal(&mut self) {
        if !self.small.is_empty() {
            self.parts.push_back(Part::Mem(self.small.split().freeze()));
        }
    }

    /// Bytes not yet written.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The next buffers to write, in order, up to the next file range
    /// (empty when one is first: see [`Batch::front_file`]).
    pub fn slices(&self) -> Vec<IoSlice<'_>> {
        let parts = self.parts.iter().take(WRITE_SLICES_MAX);
        parts
            .map_while(|p| match p {
                Part::Mem(b) => Some(IoSlice::new(b)),
                Part::File(_) => None,
            })
            .collect()
    }

    /// Reads every file range into a pooled buffer of its own, so the
    /// whole batch is in memory for encryption. A file that ends early is
    /// an error (`UnexpectedEof`): the frame it belongs to cannot be
    /// finished, so the connection fails.
    pub fn load_files(&mut self) -> io::Result<()> {
        for part in self.parts.iter_mut() {
            if let Part::File(r) = part {
                let mut buf = buffers::take(r.len);
                r.file.read_exact_at(&mut buf[..r.len], r.offset)?;
                *part = Part::Mem(buffers::freeze(buf, 0..r.len));
            }
        }
        Ok(())
    }

    /// The file range to send next, if that is what comes first.
    pub fn front_file(&self) -> Option<&FileRange> {
        match self.parts.front() {
            Some(Part::File(r)) => Some(r),
            _ => None,
        }
    }

    /// `n` bytes of [`Batch::slices`] or of [`Batch::front_file`] were
    /// written.
    pub fn advance(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            let Some(front) = self.parts.front_mut() else {
                return;
            };
            let left = match front {
                Part::Mem(b) if n < b.len() => {
                    b.advance(n);
                    return;
                }
                Part::File(r) if n < r.len => {
                    r.offset += n as u64;
                    r.len -= n;
                    return;
                }
                Part::Mem(b) => b.len(),
                Part::File(r) => r.len,
            };
            n -= left;
            self.parts.pop_front();
        }
    }
}

/// Joins `first` and whatever else `next` has ready (up to the batch
/// budget) into `batch`; returns whether a close came and the frame bytes
/// taken. `next` returns `None` when nothing more is queued, and
/// `Some(WriterMsg::Close)` when the sending half has gone.
pub fn collect_batch(
    first: WriterMsg,
    mut next: impl FnMut() -> Option<WriterMsg>,
    batch: &mut Batch,
) -> (bool, usize) {
    let mut len = 0;
    let mut msg = Some(first);
    let mut closing = false;
    while let Some(m) = msg.take() {
        match m {
            WriterMsg::Frame(f) => {
                len += f.len();
                batch.push(f);
            }
            WriterMsg::File(r) => {
                len += r.len;
                batch.push_file(r);
            }
            WriterMsg::Close => {
                closing = true;
                break;
            }
        }
        if batch.len() >= WRITE_BATCH_LEN_MAX {
            break;
        }
        msg = next();
    }
    batch.seal();
    (closing, len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2p_proto::encode_frame;

    fn frame(payload: &[u8]) -> Bytes {
        let mut b = BytesMut::new();
        encode_frame(payload, &mut b);
        b.freeze()
    }

    #[test]
    fn frames_split_across_reads_come_out_whole_and_in_order() {
        let mut stream = Vec::new();
        for i in 1..=20u8 {
            stream.extend_from_slice(&frame(&vec![i; i as usize * 7]));
        }
        let mut d = Deframer::new(FrameDecoder::default());
        let mut got = Vec::new();
        for chunk in stream.chunks(13) {
            assert!(d.feed(chunk, &mut |e| {
                got.push(e);
                true
            }));
        }
        d.finish(&mut |e| {
            got.push(e);
            true
        });
        let want: Vec<ConnEvent> = (1..=20u8)
            .map(|i| ConnEvent::Frame(Bytes::from(vec![i; i as usize * 7])))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_large_frame_is_read_in_place_between_small_ones() {
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let mut stream = Vec::new();
        stream.extend_from_slice(&frame(b"small"));
        stream.extend_from_slice(&frame(&big));
        stream.extend_from_slice(&frame(b"after"));
        let mut d = Deframer::new(FrameDecoder::default());
        let mut got = Vec::new();
        let mut sink = |e| {
            got.push(e);
            true
        };
        // The first read holds the small frame and the big one's start.
        let first = 1000;
        assert!(d.feed(&stream[..first], &mut sink));
        // The rest of the big frame goes straight into its own buffer,
        // however the socket splits it.
        let mut at = first;
        let mut landed = Vec::new();
        let end = 4 + 5 + 4 + big.len();
        while at < end {
            let to = d.read_buf();
            assert!(to.len() >= end - at, "sized for the whole frame");
            let n = (end - at).min(70_001);
            to[..n].copy_from_slice(&stream[at..at + n]);
            landed.push(to.as_ptr() as usize);
            at += n;
            assert!(d.filled(n, &mut sink));
        }
        assert!(d.feed(&stream[at..], &mut sink));
        let want: Vec<ConnEvent> = [&b"small"[..], &big, b"after"]
            .iter()
            .map(|p| ConnEvent::Frame(Bytes::copy_from_slice(p)))
            .collect();
        assert_eq!(got, want);
        let ConnEvent::Frame(f) = &got[1] else {
            unreachable!()
        };
        let span = f.as_ptr() as usize..f.as_ptr() as usize + f.len();
        assert!(
            landed.iter().all(|p| span.contains(p)),
            "read in place, never copied"
        );
        let data = &f[LARGE_FRAME_ALIGN_AT - FRAME_HEADER_LEN..];
        assert_eq!(
            data.as_ptr().align_offset(DIRECT_ALIGN),
            0,
            "a piece's data lands aligned for O_DIRECT"
        );
    }

    #[test]
    fn a_stream_cut_inside_a_large_frame_reports_what_arrived() {
        let big = vec![1u8; 200_000];
        let f = frame(&big);
        let mut d = Deframer::new(FrameDecoder::default());
        let mut got = Vec::new();
        let mut sink = |e| {
            got.push(e);
            true
        };
        assert!(d.feed(&f[..150_000], &mut sink));
        d.finish(&mut sink);
        assert_eq!(
            got,
            vec![ConnEvent::BadFraming(FrameError::Truncated {
                have: 150_000,
                need: 200_004
            })]
        );
    }

    #[test]
    fn bad_framing_and_a_truncated_tail_are_reported() {
        let mut d = Deframer::new(FrameDecoder::default());
        let mut got = Vec::new();
        assert!(!d.feed(&[0xff; 4], &mut |e| {
            got.push(e);
            true
        }));
        assert!(matches!(
            got[..],
            [ConnEvent::BadFraming(FrameError::TooLong { .. })]
        ));
        let mut d = Deframer::new(FrameDecoder::default());
        got.clear();
        assert!(d.feed(&[0, 0, 0, 9, 1], &mut |_| true));
        d.finish(&mut |e| {
            got.push(e);
            true
        });
        assert!(matches!(
            got[..],
            [ConnEvent::BadFraming(FrameError::Truncated { .. })]
        ));
    }

    /// Writes `batch` out the way a writer does, at most `step` bytes per
    /// write; returns what was written.
    fn write_all(batch: &mut Batch, step: usize) -> Vec<u8> {
        let mut out = Vec::new();
        while !batch.is_empty() {
            let mut n = 0;
            for s in batch.slices() {
                let k = s.len().min(step - n);
                out.extend_from_slice(&s[..k]);
                n += k;
                if n == step {
                    break;
                }
            }
            batch.advance(n);
        }
        out
    }

    #[test]
    fn large_parts_are_written_from_their_own_buffers_in_order() {
        let head = Bytes::from_static(b"head");
        let body = Bytes::from((0..100_000u32).map(|i| i as u8).collect::<Vec<u8>>());
        let mut q = vec![
            WriterMsg::Frame(body.clone()),
            WriterMsg::Frame(Bytes::from_static(b"tail")),
        ]
        .into_iter();
        let mut batch = Batch::default();
        let r = collect_batch(WriterMsg::Frame(head), || q.next(), &mut batch);
        assert_eq!(r, (false, 4 + 100_000 + 4));
        let slices = batch.slices();
        assert_eq!(slices.len(), 3);
        assert_eq!(slices[1].as_ptr(), body.as_ptr(), "not copied");
        drop(slices);
        let mut want = b"head".to_vec();
        want.extend_from_slice(&body);
        want.extend_from_slice(b"tail");
        assert_eq!(write_all(&mut batch, 7_777), want, "short writes resume");
        assert!(batch.is_empty() && batch.slices().is_empty());
    }

    /// File ranges are read into memory in their place among the frames
    /// (then written like any bytes, resuming after short writes); a file
    /// that ends early is an error.
    #[test]
    fn file_ranges_are_loaded_in_order() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let src_path = dir.path().join("share.bin");
        let src: Vec<u8> = (0..300_000u32).map(|i| (i % 249) as u8).collect();
        File::create(&src_path).unwrap().write_all(&src).unwrap();
        let file = Arc::new(File::open(&src_path).unwrap());
        let range = |offset: u64, len: usize| FileRange {
            file: file.clone(),
            offset,
            len,
        };
        let mut q = vec![
            WriterMsg::File(range(10, 200_000)),
            WriterMsg::Frame(Bytes::from_static(b"mid")),
            WriterMsg::File(range(250_000, 50_000)),
        ]
        .into_iter();
        let mut batch = Batch::default();
        let r = collect_batch(
            WriterMsg::Frame(Bytes::from_static(b"head")),
            || q.next(),
            &mut batch,
        );
        assert_eq!(r, (false, 4 + 200_000 + 3 + 50_000));
        assert!(batch.slices().len() == 1, "stops at the first file range");
        batch.load_files().unwrap();
        assert!(batch.front_file().is_none());
        let mut want = b"head".to_vec();
        want.extend_from_slice(&src[10..200_010]);
        want.extend_from_slice(b"mid");
        want.extend_from_slice(&src[250_000..]);
        assert_eq!(write_all(&mut batch, 65_536), want);
        // Past the end of the file: the range cannot be filled.
        let mut q = std::iter::empty();
        collect_batch(WriterMsg::File(range(299_990, 20)), || q.next(), &mut batch);
        let e = batch.load_files().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    /// A connection's queue takes bytes up to `WRITE_QUEUE_LEN_MAX` and
    /// not one more; a peer tracker's, raised, up to its own bound.
    #[test]
    fn the_write_queue_is_bounded_and_a_peer_trackers_raised() {
        let q = QueuedLen::default();
        assert!(q.try_add(WRITE_QUEUE_LEN_MAX - 1));
        assert!(q.try_add(1), "at the bound");
        assert!(!q.try_add(1), "one byte past the bound");
        assert_eq!(q.get(), WRITE_QUEUE_LEN_MAX, "a refused add is not counted");
        q.set_max(PEER_TRACKER_WRITE_QUEUE_LEN_MAX);
        assert!(q.try_add(PEER_TRACKER_WRITE_QUEUE_LEN_MAX - WRITE_QUEUE_LEN_MAX));
        assert!(!q.try_add(1));
        // What backpressure lets a peer make us queue fits well within it.
        let frame_max = p2p_proto::limits::FRAME_LEN_MAX as usize;
        let replies = READ_PAUSE_QUEUE_LEN + FRAMES_UNHANDLED_MAX * frame_max;
        assert!(2 * replies <= WRITE_QUEUE_LEN_MAX);
    }

    /// The reader may go on below both bounds, pauses at either, and a
    /// waiting reader is let go by the writer draining, by the machine
    /// handling a frame, or by the writer ending.
    #[test]
    fn the_reader_pauses_at_either_bound_and_is_let_go() {
        let q = QueuedLen::default();
        assert!(q.try_add(READ_PAUSE_QUEUE_LEN - 1));
        assert!(q.may_read(), "one byte below the queue bound");
        assert!(q.try_add(1));
        assert!(!q.may_read(), "at the queue bound");
        let waiter = {
            let q = q.clone();
            std::thread::spawn(move || q.wait_blocking())
        };
        q.sub(1);
        waiter.join().unwrap();
        for _ in 0..FRAMES_UNHANDLED_MAX - 1 {
            q.frame_read();
        }
        assert!(q.may_read(), "one frame below the bound");
        q.frame_read();
        assert!(!q.may_read(), "at the unhandled-frames bound");
        let waiter = {
            let q = q.clone();
            std::thread::spawn(move || q.wait_blocking())
        };
        q.frame_handled();
        waiter.join().unwrap();
        q.frame_read();
        assert!(!q.may_read());
        drop(q.writer_guard());
        assert!(q.may_read(), "a writer that ended holds nobody back");
    }

    #[test]
    fn a_batch_stops_at_close_or_the_budget() {
        let mut q = vec![
            WriterMsg::Frame(Bytes::from_static(b"bb")),
            WriterMsg::Close,
        ]
        .into_iter();
        let mut batch = Batch::default();
        let r = collect_batch(
            WriterMsg::Frame(Bytes::from_static(b"a")),
            || q.next(),
            &mut batch,
        );
        assert_eq!(r, (true, 3));
        assert_eq!(write_all(&mut batch, usize::MAX), b"abb");
        let big = Bytes::from(vec![0u8; WRITE_BATCH_LEN_MAX]);
        let mut q = std::iter::repeat_with(|| WriterMsg::Frame(Bytes::from_static(b"x")));
        let r = collect_batch(WriterMsg::Frame(big), || q.next(), &mut batch);
        assert_eq!(r, (false, WRITE_BATCH_LEN_MAX));
        let queued = QueuedLen::default();
        assert!(queued.try_add(WRITE_QUEUE_LEN_MAX));
        assert!(!queued.try_add(1));
        queued.sub(WRITE_QUEUE_LEN_MAX);
        assert_eq!(queued.get(), 0);
    }
}
