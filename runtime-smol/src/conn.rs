//! TCP connections as tasks: a reader task per socket that cuts the byte
//! stream into frames ([`Deframer`]), a writer task per socket fed by a
//! channel of encoded frames and file ranges (joined into batched writes
//! with [`collect_batch`]; ranges sent with `sendfile`), an accept loop,
//! and dialing with a timeout.
//!
//! The same contract as runtime-std's `conn`: nothing here knows a
//! protocol; readers hand [`ConnEvent`]s to a sink the driver supplies and
//! end with exactly one [`ConnEvent::Closed`]; writers take whole frames.

use std::io::{self, ErrorKind};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use p2p_proto::FrameDecoder;
use runtime_common::conn::{
    Batch, Deframer, FileRange, QueuedLen, WriterMsg, collect_batch, send_file_range,
};
pub use runtime_common::conn::{
    ConnEvent, ConnId, DIAL_TIMEOUT, FrameSink, READ_CHUNK_LEN, WRITE_QUEUE_LEN_MAX, WRITE_TIMEOUT,
    next_conn_id,
};
use smol::channel::{self, Receiver, Sender, TryRecvError};
use smol::future::FutureExt;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::{Async, Task, Timer};

use crate::exec;

/// A connection's socket, shared by its reader and writer tasks.
pub type Stream = Arc<Async<TcpStream>>;

/// Connects to `addr`, giving up after `timeout`.
pub async fn dial(addr: SocketAddr, timeout: Duration) -> io::Result<Async<TcpStream>> {
    let connect = Async::<TcpStream>::connect(addr);
    let late = async {
        Timer::after(timeout).await;
        Err(io::Error::new(ErrorKind::TimedOut, "connect timed out"))
    };
    let stream = connect.or(late).await?;
    stream.get_ref().set_nodelay(true)?;
    Ok(stream)
}

/// Starts a task that reads `stream`, decodes frames and hands each event
/// to `sink`. The sink returns `false` when nobody listens any more, which
/// stops the reader. Ends with [`ConnEvent::Closed`].
pub fn spawn_reader<F>(stream: Stream, decoder: FrameDecoder, mut sink: F)
where
    F: FnMut(ConnEvent) -> bool + Send + 'static,
{
    exec::spawn(async move {
        read_loop(&stream, decoder, &mut sink).await;
        sink(ConnEvent::Closed);
    })
    .detach();
}

/// Reads until EOF, an error, bad framing or a sink that stops listening.
async fn read_loop<F: FnMut(ConnEvent) -> bool>(
    stream: &Async<TcpStream>,
    decoder: FrameDecoder,
    sink: &mut F,
) {
    let mut frames = Deframer::new(decoder);
    let mut reader = stream;
    loop {
        match reader.read(frames.read_buf()).await {
            Ok(0) => return frames.finish(sink),
            Ok(n) if !frames.filled(n, sink) => return,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// The sending half of a connection: frames queue to a writer task.
///
/// [`ConnWriter::close`] (or dropping it) lets the writer send what is
/// queued, then shuts the socket down, which also ends its reader.
/// [`ConnWriter::abort`] shuts it down at once.
#[derive(Debug)]
pub struct ConnWriter {
    tx: Sender<WriterMsg>,
    queued: QueuedLen,
    stream: Stream,
    task: Option<Task<()>>,
}

impl ConnWriter {
    /// Starts the writer task for `stream`.
    pub fn spawn(stream: Stream) -> Self {
        let (tx, rx) = channel::unbounded();
        let queued = QueuedLen::default();
        let task = exec::spawn(write_loop(stream.clone(), rx, queued.clone()));
        ConnWriter {
            tx,
            queued,
            stream,
            task: Some(task),
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
    /// the writer sends with `sendfile` (see [`FrameSink::send_file`]).
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
        let sent =
            self.tx.try_send(first).is_ok() && rest.is_none_or(|m| self.tx.try_send(m).is_ok());
        if !sent {
            self.queued.sub(len);
        }
        sent
    }

    /// Bytes queued and not yet written.
    pub fn queued_len(&self) -> usize {
        self.queued.get()
    }

    /// Sends what is queued, then shuts the socket down. Awaiting the task
    /// waits for that; dropping it stops the writer.
    pub fn close(mut self) -> Option<Task<()>> {
        let _ = self.tx.try_send(WriterMsg::Close);
        self.task.take()
    }

    /// Shuts the socket down now, dropping whatever is queued.
    pub fn abort(&self) {
        let _ = self.stream.get_ref().shutdown(Shutdown::Both);
    }
}

impl Drop for ConnWriter {
    fn drop(&mut self) {
        let _ = self.tx.try_send(WriterMsg::Close);
        if let Some(t) = self.task.take() {
            t.detach();
        }
    }
}

impl FrameSink for ConnWriter {
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
        if let Some(t) = ConnWriter::close(self) {
            t.detach();
        }
    }
    fn abort(&self) {
        ConnWriter::abort(self)
    }
}

async fn write_loop(stream: Stream, rx: Receiver<WriterMsg>, queued: QueuedLen) {
    let mut batch = Batch::default();
    let next = || match rx.try_recv() {
        Ok(m) => Some(m),
        Err(TryRecvError::Empty) => None,
        Err(TryRecvError::Closed) => Some(WriterMsg::Close),
    };
    loop {
        let (closing, len) = match rx.recv().await {
            Ok(first) => collect_batch(first, next, &mut batch),
            Err(_) => (true, 0),
        };
        if !batch.is_empty() {
            let r = write_all(&stream, &mut batch).await;
            queued.sub(len);
            if r.is_err() {
                break;
            }
        }
        if closing {
            break;
        }
    }
    let _ = stream.get_ref().shutdown(Shutdown::Both);
}

/// Writes all of `batch`: vectored writes (large parts from their own
/// buffers), `sendfile` for file ranges (on this thread: the disk job
/// that checked the range also started its read-ahead, so the pages are
/// usually cached by now), failing if it takes longer than
/// [`WRITE_TIMEOUT`]. A file that ends early fails the connection
/// (`WriteZero`): its frame cannot be finished.
async fn write_all(stream: &Async<TcpStream>, batch: &mut Batch) -> io::Result<()> {
    let write = async {
        let mut writer = stream;
        while !batch.is_empty() {
            let sent = match batch.front_file() {
                Some(range) => stream.write_with(|s| send_file_range(s, range)).await,
                None => writer.write_vectored(&batch.slices()).await,
            };
            match sent {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => batch.advance(n),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    };
    let late = async {
        Timer::after(WRITE_TIMEOUT).await;
        Err(io::Error::new(ErrorKind::TimedOut, "write timed out"))
    };
    write.or(late).await
}

/// Accepts connections on `listener`, handing each (prepared) stream and
/// its peer address to `on_accept`, until the task is cancelled.
pub fn spawn_listener<F>(listener: TcpListener, mut on_accept: F) -> io::Result<Task<()>>
where
    F: FnMut(Async<TcpStream>, SocketAddr) + Send + 'static,
{
    let listener = Async::new(listener)?;
    Ok(exec::spawn(async move {
        loop {
            let accepted = listener.accept().await.and_then(|(s, peer)| {
                s.get_ref().set_nodelay(true)?;
                Ok((s, peer))
            });
            match accepted {
                Ok((s, peer)) => on_accept(s, peer),
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    // Out of descriptors and the like: do not spin.
                    Timer::after(Duration::from_millis(50)).await;
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use p2p_proto::{FrameError, encode_frame};
    use std::sync::mpsc;

    fn pair() -> (Stream, Stream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let a = exec::join(exec::spawn(dial(addr, DIAL_TIMEOUT)))
            .unwrap()
            .unwrap();
        let (b, _) = l.accept().unwrap();
        (Arc::new(a), Arc::new(Async::new(b).unwrap()))
    }

    fn reader(stream: Stream) -> mpsc::Receiver<ConnEvent> {
        let (tx, rx) = mpsc::channel();
        spawn_reader(stream, FrameDecoder::default(), move |e| tx.send(e).is_ok());
        rx
    }

    fn next(rx: &mpsc::Receiver<ConnEvent>) -> ConnEvent {
        rx.recv_timeout(Duration::from_secs(5))
            .expect("an event in time")
    }

    #[test]
    fn frames_cross_in_order_and_close_flushes_first() {
        let (a, b) = pair();
        let events = reader(b);
        let w = ConnWriter::spawn(a);
        for i in 1..=100u8 {
            let mut f = BytesMut::new();
            encode_frame(&vec![i; i as usize * 100], &mut f);
            assert!(w.send(f.freeze()));
        }
        // A large frame in two parts, its body from its own buffer.
        let body = Bytes::from(vec![9u8; 500_000]);
        let head = Bytes::copy_from_slice(&p2p_proto::frame::frame_header(body.len()));
        assert!(w.send_parts(head, body.clone()));
        exec::join(w.close().unwrap());
        for i in 1..=100u8 {
            assert_eq!(
                next(&events),
                ConnEvent::Frame(Bytes::from(vec![i; i as usize * 100]))
            );
        }
        assert_eq!(next(&events), ConnEvent::Frame(body));
        assert_eq!(next(&events), ConnEvent::Closed);
    }

    #[test]
    fn a_huge_length_prefix_is_refused_and_eof_mid_frame_is_bad_framing() {
        use std::io::Write;
        let (a, b) = pair();
        let events = reader(b);
        a.get_ref().write_all(&[0xff, 0xff, 0xff, 0xff]).unwrap();
        assert!(matches!(
            next(&events),
            ConnEvent::BadFraming(FrameError::TooLong { .. })
        ));
        assert_eq!(next(&events), ConnEvent::Closed);
        let (a, b) = pair();
        let events = reader(b);
        a.get_ref().write_all(&[0, 0, 0, 9, 1, 2]).unwrap();
        a.get_ref().shutdown(Shutdown::Write).unwrap();
        assert!(matches!(
            next(&events),
            ConnEvent::BadFraming(FrameError::Truncated { .. })
        ));
        assert_eq!(next(&events), ConnEvent::Closed);
    }

    #[test]
    fn abort_ends_the_reader_at_once() {
        let (a, _b) = pair();
        let events = reader(a.clone());
        let w = ConnWriter::spawn(a);
        w.abort();
        assert_eq!(next(&events), ConnEvent::Closed);
    }

    #[test]
    fn listener_accepts_until_cancelled() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = mpsc::channel();
        let task = spawn_listener(l, move |_s, peer| {
            let _ = tx.send(peer);
        })
        .unwrap();
        let c = TcpStream::connect(addr).unwrap();
        let peer = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(peer, c.local_addr().unwrap());
        exec::join(exec::spawn(task.cancel()));
        assert!(TcpStream::connect(addr).is_err(), "the socket is closed");
    }
}
