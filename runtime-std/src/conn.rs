//! TCP connections on threads: a reader thread per socket that cuts the byte
//! stream into frames, a writer thread per socket fed by a channel of
//! encoded frames and file ranges (sent with `sendfile`), a listener
//! thread, and dialing with a timeout.
//!
//! Nothing here knows a protocol: readers hand [`ConnEvent`]s to a sink the
//! driver supplies (which wraps them into its machine's input), writers take
//! whole encoded frames. Every reader ends with exactly one
//! [`ConnEvent::Closed`]. Shared by the tracker driver and the client driver.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use bytes::Bytes;
use p2p_proto::FrameDecoder;
use runtime_common::conn::{
    Batch, Deframer, FileRange, QueuedLen, WriterMsg, collect_batch, send_file_range,
};
pub use runtime_common::conn::{
    ConnEvent, ConnId, DIAL_TIMEOUT, FrameSink, READ_CHUNK_LEN, WRITE_BATCH_LEN_MAX,
    WRITE_QUEUE_LEN_MAX, WRITE_TIMEOUT, next_conn_id,
};

/// Sets the options every connection gets (no Nagle delay, a write timeout).
pub fn prepare(stream: &TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))
}

/// Connects to `addr`, giving up after `timeout`.
pub fn dial(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    prepare(&stream)?;
    Ok(stream)
}

/// Starts a thread that reads `stream`, decodes frames and hands each event
/// to `sink`. The sink returns `false` when nobody listens any more, which
/// stops the reader. Ends with [`ConnEvent::Closed`].
pub fn spawn_reader<F>(
    conn: ConnId,
    stream: TcpStream,
    decoder: FrameDecoder,
    mut sink: F,
) -> io::Result<JoinHandle<()>>
where
    F: FnMut(ConnEvent) -> bool + Send + 'static,
{
    thread::Builder::new()
        .name(format!("conn-{conn}-rd"))
        .spawn(move || {
            read_loop(stream, decoder, &mut sink);
            sink(ConnEvent::Closed);
        })
}

/// Reads until EOF, an error, bad framing or a sink that stops listening.
fn read_loop<F: FnMut(ConnEvent) -> bool>(
    mut stream: TcpStream,
    decoder: FrameDecoder,
    sink: &mut F,
) {
    let mut frames = Deframer::new(decoder);
    loop {
        match stream.read(frames.read_buf()) {
            Ok(0) => return frames.finish(sink),
            Ok(n) if !frames.filled(n, sink) => return,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// The sending half of a connection: frames queue to a writer thread.
///
/// [`ConnWriter::close`] (or dropping it) lets the writer send what is
/// queued, then shuts the socket down, which also ends its reader.
/// [`ConnWriter::abort`] shuts it down at once.
#[derive(Debug)]
pub struct ConnWriter {
    tx: Sender<WriterMsg>,
    queued: QueuedLen,
    stream: TcpStream,
    thread: Option<JoinHandle<()>>,
}

impl ConnWriter {
    /// Starts the writer thread for `stream` (a clone of it is kept to abort).
    pub fn spawn(conn: ConnId, stream: &TcpStream) -> io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let queued = QueuedLen::default();
        let sock = stream.try_clone()?;
        let q = queued.clone();
        let thread = thread::Builder::new()
            .name(format!("conn-{conn}-wr"))
            .spawn(move || write_loop(sock, rx, &q))?;
        Ok(ConnWriter {
            tx,
            queued,
            stream: stream.try_clone()?,
            thread: Some(thread),
        })
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
        let sent = self.tx.send(first).is_ok() && rest.is_none_or(|m| self.tx.send(m).is_ok());
        if !sent {
            self.queued.sub(len);
        }
        sent
    }

    /// Bytes queued and not yet written.
    pub fn queued_len(&self) -> usize {
        self.queued.get()
    }

    /// Sends what is queued, then shuts the socket down. The handle joins
    /// the writer thread.
    pub fn close(mut self) -> Option<JoinHandle<()>> {
        let _ = self.tx.send(WriterMsg::Close);
        self.thread.take()
    }

    /// Shuts the socket down now, dropping whatever is queued.
    pub fn abort(&self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

impl Drop for ConnWriter {
    fn drop(&mut self) {
        let _ = self.tx.send(WriterMsg::Close);
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
        drop(ConnWriter::close(self));
    }
    fn abort(&self) {
        ConnWriter::abort(self)
    }
}

fn write_loop(mut stream: TcpStream, rx: Receiver<WriterMsg>, queued: &QueuedLen) {
    let mut batch = Batch::default();
    let next = || match rx.try_recv() {
        Ok(m) => Some(m),
        Err(TryRecvError::Empty) => None,
        Err(TryRecvError::Disconnected) => Some(WriterMsg::Close),
    };
    loop {
        let (closing, len) = match rx.recv() {
            Ok(first) => collect_batch(first, next, &mut batch),
            Err(_) => (true, 0),
        };
        if !batch.is_empty() {
            let r = write_batch(&mut stream, &mut batch);
            queued.sub(len);
            if r.is_err() {
                break;
            }
        }
        if closing {
            let _ = stream.flush();
            break;
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
}

/// Writes all of `batch`: vectored writes (large parts from their own
/// buffers), `sendfile` for file ranges. A file that ends early fails the
/// connection (`WriteZero`): its frame cannot be finished.
fn write_batch(stream: &mut TcpStream, batch: &mut Batch) -> io::Result<()> {
    while !batch.is_empty() {
        let sent = match batch.front_file() {
            Some(range) => send_file_range(&*stream, range),
            None => stream.write_vectored(&batch.slices()),
        };
        match sent {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => batch.advance(n),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A listener thread; [`Listener::stop`] ends it.
#[derive(Debug)]
pub struct Listener {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    /// Accepts connections on `listener`, handing each (prepared) stream and
    /// its peer address to `on_accept`.
    pub fn spawn<F>(listener: TcpListener, mut on_accept: F) -> io::Result<Self>
    where
        F: FnMut(TcpStream, SocketAddr) + Send + 'static,
    {
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::Builder::new()
            .name("listener".into())
            .spawn(move || {
                for r in listener.incoming() {
                    if flag.load(Ordering::Acquire) {
                        return;
                    }
                    match r.and_then(|s| prepare(&s).and_then(|_| Ok((s.peer_addr()?, s)))) {
                        Ok((peer, s)) => on_accept(s, peer),
                        Err(e) => {
                            tracing::warn!("accept failed: {e}");
                            // Out of descriptors and the like: do not spin.
                            thread::sleep(Duration::from_millis(50));
                        }
                    }
                }
            })?;
        Ok(Listener {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting (wakes the blocked `accept` with a connection to
    /// itself) and joins the thread.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        if TcpStream::connect_timeout(&wake, Duration::from_secs(1)).is_ok()
            && let Some(t) = self.thread.take()
        {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use p2p_proto::{FrameError, encode_frame};
    use std::time::Instant;

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = dial(l.local_addr().unwrap(), DIAL_TIMEOUT).unwrap();
        let (b, _) = l.accept().unwrap();
        (a, b)
    }

    fn reader(stream: TcpStream) -> Receiver<ConnEvent> {
        let (tx, rx) = mpsc::channel();
        spawn_reader(next_conn_id(), stream, FrameDecoder::default(), move |e| {
            tx.send(e).is_ok()
        })
        .unwrap();
        rx
    }

    fn next(rx: &Receiver<ConnEvent>) -> ConnEvent {
        rx.recv_timeout(Duration::from_secs(5))
            .expect("an event in time")
    }

    #[test]
    fn frames_cross_in_order_and_close_flushes_first() {
        let (a, b) = pair();
        let events = reader(b);
        let w = ConnWriter::spawn(1, &a).unwrap();
        for i in 1..=100u8 {
            let mut f = BytesMut::new();
            encode_frame(&vec![i; i as usize * 100], &mut f);
            assert!(w.send(f.freeze()));
        }
        // A large frame in two parts, its body from its own buffer.
        let body = Bytes::from(vec![9u8; 500_000]);
        let head = Bytes::copy_from_slice(&p2p_proto::frame::frame_header(body.len()));
        assert!(w.send_parts(head, body.clone()));
        let _ = w.close().map(|t| t.join());
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
    fn a_huge_length_prefix_is_refused_from_the_header_alone() {
        let (mut a, b) = pair();
        let events = reader(b);
        a.write_all(&[0xff, 0xff, 0xff, 0xff]).unwrap();
        assert!(matches!(
            next(&events),
            ConnEvent::BadFraming(FrameError::TooLong { .. })
        ));
        assert_eq!(next(&events), ConnEvent::Closed);
    }

    #[test]
    fn eof_mid_frame_is_bad_framing_then_closed() {
        let (mut a, b) = pair();
        let events = reader(b);
        a.write_all(&[0, 0, 0, 9, 1, 2]).unwrap();
        a.shutdown(Shutdown::Write).unwrap();
        assert!(matches!(
            next(&events),
            ConnEvent::BadFraming(FrameError::Truncated { .. })
        ));
        assert_eq!(next(&events), ConnEvent::Closed);
    }

    #[test]
    fn abort_ends_the_reader_at_once() {
        let (a, b) = pair();
        let events = reader(a.try_clone().unwrap());
        let w = ConnWriter::spawn(2, &a).unwrap();
        w.abort();
        assert_eq!(next(&events), ConnEvent::Closed);
        drop(b);
    }

    #[test]
    fn listener_accepts_and_stops() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let (tx, rx) = mpsc::channel();
        let listener = Listener::spawn(l, move |s, peer| {
            let _ = tx.send((s, peer));
        })
        .unwrap();
        let c = dial(listener.local_addr(), DIAL_TIMEOUT).unwrap();
        let (_s, peer) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(peer, c.local_addr().unwrap());
        let t = Instant::now();
        listener.stop();
        assert!(t.elapsed() < Duration::from_secs(2));
    }
}
