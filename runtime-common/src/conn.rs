//! The protocol-free parts of a connection that every driver shares: ids,
//! limits, what a reader reports, cutting a byte stream into frames, the
//! write queue's byte count and how queued frames are joined into one
//! write. The drivers add the plumbing (threads or tasks) around them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use p2p_proto::{FrameDecoder, FrameError};

/// A connection's number, unique within the process.
pub type ConnId = u64;

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// A fresh connection id (process-wide counter).
pub fn next_conn_id() -> ConnId {
    NEXT_CONN.fetch_add(1, Ordering::Relaxed)
}

/// Bytes read from a socket per `read` call.
pub const READ_CHUNK_LEN: usize = 64 * 1024;
/// Queued frames are joined into writes of at most about this many bytes.
pub const WRITE_BATCH_LEN_MAX: usize = 1024 * 1024;
/// Bytes queued for one writer before the connection is cut as stalled.
pub const WRITE_QUEUE_LEN_MAX: usize = 256 * 1024 * 1024;
/// A write that makes no progress for this long fails the connection.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
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
    /// Sends what is queued, then shuts the socket down (which also ends
    /// its reader).
    fn close(self);
    /// Shuts the socket down now, dropping whatever is queued.
    fn abort(&self);
}

/// Cuts a byte stream into frames for a reader.
#[derive(Debug)]
pub struct Deframer {
    decoder: FrameDecoder,
    buf: BytesMut,
}

impl Deframer {
    pub fn new(decoder: FrameDecoder) -> Self {
        Deframer {
            decoder,
            buf: BytesMut::new(),
        }
    }

    /// Takes bytes just read and hands every whole frame to `sink`.
    /// `false`: stop reading (bad framing, or the sink stopped listening).
    pub fn feed<F: FnMut(ConnEvent) -> bool>(&mut self, bytes: &[u8], sink: &mut F) -> bool {
        self.buf.extend_from_slice(bytes);
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

    /// The stream ended: a partial frame left over is bad framing.
    pub fn finish<F: FnMut(ConnEvent) -> bool>(&mut self, sink: &mut F) {
        if let Err(e) = self.decoder.finish(&self.buf) {
            sink(ConnEvent::BadFraming(e));
        }
    }
}

/// What a writer is asked to do.
#[derive(Debug)]
pub enum WriterMsg {
    Frame(Bytes),
    Close,
}

/// Bytes queued for a writer and not yet written, counted by the sending
/// half and the writer together.
#[derive(Debug, Clone, Default)]
pub struct QueuedLen(Arc<AtomicUsize>);

impl QueuedLen {
    /// Counts `len` more bytes; `false` (and nothing counted) if that
    /// would pass [`WRITE_QUEUE_LEN_MAX`].
    pub fn try_add(&self, len: usize) -> bool {
        let before = self.0.fetch_add(len, Ordering::Relaxed);
        if before + len > WRITE_QUEUE_LEN_MAX {
            self.0.fetch_sub(len, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// `len` bytes were written (or will never be).
    pub fn sub(&self, len: usize) {
        self.0.fetch_sub(len, Ordering::Relaxed);
    }

    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// Joins `first` and whatever else `next` has ready (up to the batch
/// budget) into `batch`; returns whether a close came and the frame bytes
/// taken. `next` returns `None` when nothing more is queued, and
/// `Some(WriterMsg::Close)` when the sending half has gone.
pub fn collect_batch(
    first: WriterMsg,
    mut next: impl FnMut() -> Option<WriterMsg>,
    batch: &mut Vec<u8>,
) -> (bool, usize) {
    let mut len = 0;
    let mut msg = Some(first);
    while let Some(m) = msg.take() {
        match m {
            WriterMsg::Frame(f) => {
                len += f.len();
                batch.extend_from_slice(&f);
            }
            WriterMsg::Close => return (true, len),
        }
        if batch.len() >= WRITE_BATCH_LEN_MAX {
            break;
        }
        msg = next();
    }
    (false, len)
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

    #[test]
    fn a_batch_stops_at_close_or_the_budget() {
        let mut q = vec![
            WriterMsg::Frame(Bytes::from_static(b"bb")),
            WriterMsg::Close,
        ]
        .into_iter();
        let mut batch = Vec::new();
        let r = collect_batch(
            WriterMsg::Frame(Bytes::from_static(b"a")),
            || q.next(),
            &mut batch,
        );
        assert_eq!(r, (true, 3));
        assert_eq!(batch, b"abb");
        let big = Bytes::from(vec![0u8; WRITE_BATCH_LEN_MAX]);
        let mut q = std::iter::repeat_with(|| WriterMsg::Frame(Bytes::from_static(b"x")));
        batch.clear();
        let r = collect_batch(WriterMsg::Frame(big), || q.next(), &mut batch);
        assert_eq!(r, (false, WRITE_BATCH_LEN_MAX));
        let queued = QueuedLen::default();
        assert!(queued.try_add(WRITE_QUEUE_LEN_MAX));
        assert!(!queued.try_add(1));
        queued.sub(WRITE_QUEUE_LEN_MAX);
        assert_eq!(queued.get(), 0);
    }
}
