//! TCP connections on threads, every one TLS 1.3 ([`runtime_common::tls`]):
//! a handshake first (on the dialing thread, or for an accepted
//! connection on a thread of its own, [`TlsAcceptor`]), then a reader
//! thread per socket that decrypts and cuts the plaintext into frames,
//! a writer thread per socket fed by a channel of encoded frames and file
//! ranges (read into pooled buffers, encrypted, written), a listener
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
use std::time::{Duration, Instant};

use p2p_proto::FrameDecoder;
pub use runtime_common::conn::{
    ConnEvent, ConnId, DIAL_TIMEOUT, FRAME_TIMEOUT, FRAMES_UNHANDLED_MAX, FileRange, FrameSink,
    READ_CHUNK_LEN, READ_PAUSE_QUEUE_LEN, WRITE_BATCH_LEN_MAX, WRITE_QUEUE_LEN_MAX, WRITE_TIMEOUT,
    next_conn_id,
};
use runtime_common::conn::{ConnReader, QueuedLen, WriteState, WriterMsg, WriterRuntime};
use runtime_common::runtime::Runtime;
use runtime_common::tls::Handshake;
pub use runtime_common::tls::{
    KeyId, Session, TLS_HANDSHAKE_TIMEOUT, TLS_HANDSHAKES_MAX, TLS_HANDSHAKES_PER_ADDR_MAX, Tls,
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

/// Connects to `addr` and runs the TLS handshake as its client: the
/// stream and the session, whose [`Session::peer`] is the key the peer
/// proved it holds.
pub fn dial_tls(addr: SocketAddr, tls: &Tls) -> io::Result<(TcpStream, Arc<Session>)> {
    let stream = dial(addr, DIAL_TIMEOUT)?;
    let session = handshake(&stream, tls.connect(addr), TLS_HANDSHAKE_TIMEOUT)?;
    Ok((stream, session))
}

/// Runs `hs` over `stream`, failing with `TimedOut` if it is not done
/// within `timeout` (a peer that connects and says nothing).
pub fn handshake(
    stream: &TcpStream,
    mut hs: Handshake,
    timeout: Duration,
) -> io::Result<Arc<Session>> {
    let deadline = Instant::now() + timeout;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| io::Error::new(ErrorKind::TimedOut, "TLS handshake timed out"))
    };
    let mut out = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut s = stream;
    let result = loop {
        out.clear();
        hs.output(&mut out);
        if !out.is_empty() {
            s.set_write_timeout(Some(left()?))?;
            s.write_all(&out)?;
        }
        if hs.is_done() {
            break Ok(());
        }
        s.set_read_timeout(Some(left()?))?;
        let n = match s.read(&mut buf) {
            Ok(0) => break Err(io::Error::from(ErrorKind::UnexpectedEof)),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break Err(io::Error::new(
                    ErrorKind::TimedOut,
                    "TLS handshake timed out",
                ));
            }
            Err(e) => break Err(e),
        };
        if let Err(e) = hs.input(&buf[..n]) {
            // Tell the peer why (the alert), if it listens.
            out.clear();
            hs.output(&mut out);
            let _ = s.write_all(&out);
            break Err(e);
        }
    };
    result?;
    stream.set_read_timeout(None)?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    hs.finish()
}

/// Runs the handshakes of accepted connections, each on a thread of its
/// own, at most [`TLS_HANDSHAKES_MAX`] at once.
pub type TlsAcceptor = runtime_common::runtime::TlsAcceptor<Threads>;

/// Starts a thread that reads `stream`, decrypts it with `session`,
/// decodes frames and hands each event to `sink`. The sink returns
/// `false` when nobody listens any more, which stops the reader. `wake`
/// is the connection's writer (it sends what rustls has to say, such as
/// a key update). Ends with [`ConnEvent::Closed`].
pub fn spawn_reader<F>(
    conn: ConnId,
    stream: TcpStream,
    session: Arc<Session>,
    wake: WriterWake,
    decoder: FrameDecoder,
    sink: F,
) -> io::Result<JoinHandle<()>>
where
    F: FnMut(ConnEvent) -> bool + Send + 'static,
{
    spawn_reader_timed(conn, stream, session, wake, decoder, FRAME_TIMEOUT, sink)
}

/// [`spawn_reader`] with another frame deadline (the tracker's
/// `NodeConfig::frame_timeout`, tests).
pub fn spawn_reader_timed<F>(
    conn: ConnId,
    stream: TcpStream,
    session: Arc<Session>,
    wake: WriterWake,
    decoder: FrameDecoder,
    frame_timeout: Duration,
    mut sink: F,
) -> io::Result<JoinHandle<()>>
where
    F: FnMut(ConnEvent) -> bool + Send + 'static,
{
    thread::Builder::new()
        .name(format!("conn-{conn}-rd"))
        .spawn(move || {
            let reader = ConnReader::new(&session, decoder, frame_timeout);
            read_loop(stream, &session, &wake, reader, &mut sink);
            sink(ConnEvent::Closed);
        })
}

/// Runs `r` on a blocking socket until it stops (EOF, an error, bad
/// framing, a frame past its deadline, or a sink that stops listening):
/// the read timeout is the frame's time left.
fn read_loop<F: FnMut(ConnEvent) -> bool>(
    mut stream: TcpStream,
    session: &Session,
    wake: &WriterWake,
    mut r: ConnReader,
    sink: &mut F,
) {
    let mut timed = false;
    loop {
        r.receive(session);
        while let Some(e) = r.next_event() {
            if let ConnEvent::Frame(_) = e
                && wake.flow().before_frame_blocking()
            {
                r.paused();
            }
            if !sink(e) {
                return;
            }
        }
        let Some(next) = r.next_read(Instant::now()) else {
            return;
        };
        if next.wake_writer {
            wake.wake();
        }
        // A frame has its deadline; between frames a read may wait.
        if next.left.is_some() || timed {
            let _ = stream.set_read_timeout(next.left);
            timed = next.left.is_some();
        }
        let n = loop {
            match stream.read(r.read_buf()) {
                Ok(0) => return r.finish(sink),
                Ok(n) => break n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return r.timed_out();
                }
                Err(_) => return,
            }
        };
        r.read(n);
    }
}

/// The runtime of threads and blocking sockets, as runtime-common's
/// shared drivers see it: a thread per reader, writer and dial, mpsc
/// channels, and threads of their own for blocking work.
#[derive(Debug)]
pub struct Threads;

impl WriterRuntime for Threads {
    type Tx = Sender<WriterMsg>;
    type Socket = TcpStream;
    type Handle = JoinHandle<()>;
    fn push(tx: &Self::Tx, m: WriterMsg) -> bool {
        tx.send(m).is_ok()
    }
    fn shutdown(socket: &TcpStream) {
        let _ = socket.shutdown(Shutdown::Both);
    }
    fn detach(_: JoinHandle<()>) {}
}

impl Runtime for Threads {
    type Stream = TcpStream;
    type Sender<T: Send + 'static> = Sender<T>;
    fn send<T: Send + 'static>(tx: &Sender<T>, m: T) -> bool {
        tx.send(m).is_ok()
    }
    fn spawn_writer(
        conn: ConnId,
        stream: &TcpStream,
        session: Arc<Session>,
    ) -> io::Result<ConnWriter> {
        spawn_writer(conn, stream, session)
    }
    fn spawn_reader<F>(
        conn: ConnId,
        stream: TcpStream,
        session: Arc<Session>,
        wake: WriterWake,
        frame_timeout: Duration,
        sink: F,
    ) -> io::Result<()>
    where
        F: FnMut(ConnEvent) -> bool + Send + 'static,
    {
        let decoder = FrameDecoder::default();
        spawn_reader_timed(conn, stream, session, wake, decoder, frame_timeout, sink).map(drop)
    }
    fn dial<F>(addr: SocketAddr, tls: &Tls, then: F)
    where
        F: FnOnce(io::Result<(TcpStream, Arc<Session>)>) + Send + 'static,
    {
        // `then` runs once: on the dial thread, or here if none starts.
        let then = Arc::new(std::sync::Mutex::new(Some(then)));
        let (tls, on_thread) = (tls.clone(), then.clone());
        let spawned = thread::Builder::new().name("dial".into()).spawn(move || {
            let r = dial_tls(addr, &tls);
            if let Some(f) = on_thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
                f(r);
            }
        });
        if let Err(e) = spawned {
            tracing::warn!("cannot start a dial thread: {e}");
            if let Some(f) = then.lock().unwrap_or_else(|e| e.into_inner()).take() {
                f(Err(e));
            }
        }
    }
    fn handshake<F>(stream: TcpStream, hs: Handshake, then: F)
    where
        F: FnOnce(TcpStream, io::Result<Arc<Session>>) + Send + 'static,
    {
        let spawned = thread::Builder::new()
            .name("tls-accept".into())
            .spawn(move || {
                let r = handshake(&stream, hs, TLS_HANDSHAKE_TIMEOUT);
                then(stream, r);
            });
        if let Err(e) = spawned {
            // The stream is dropped (closed) with the thread's closure.
            tracing::warn!("cannot start a handshake thread: {e}");
        }
    }
    fn close(stream: &TcpStream) {
        let _ = stream.shutdown(Shutdown::Both);
    }
    fn spawn_blocking(name: String, work: impl FnOnce() + Send + 'static) -> io::Result<()> {
        thread::Builder::new().name(name).spawn(work).map(drop)
    }
}

/// The sending half of a connection: frames queue to a writer thread
/// ([`runtime_common::conn::ConnWriter`]); [`spawn_writer`] starts it.
pub type ConnWriter = runtime_common::conn::ConnWriter<Threads>;
/// What a connection's reader holds of its writer.
pub type WriterWake = runtime_common::conn::WriterWake<Threads>;

/// Starts the writer thread for `stream` (a clone of it is kept to abort).
pub fn spawn_writer(
    conn: ConnId,
    stream: &TcpStream,
    session: Arc<Session>,
) -> io::Result<ConnWriter> {
    let (tx, rx) = mpsc::channel();
    let queued = QueuedLen::default();
    let sock = stream.try_clone()?;
    let state = WriteState::new(queued.clone());
    let thread = thread::Builder::new()
        .name(format!("conn-{conn}-wr"))
        .spawn(move || write_loop(sock, &session, rx, state))?;
    Ok(ConnWriter::new(tx, queued, stream.try_clone()?, thread))
}

/// Writes batches on a blocking socket (its write timeout is
/// [`WRITE_TIMEOUT`]) until a close, an error, or every sender gone.
fn write_loop(
    mut stream: TcpStream,
    session: &Session,
    rx: Receiver<WriterMsg>,
    mut w: WriteState,
) {
    let next = || match rx.try_recv() {
        Ok(m) => Some(m),
        Err(TryRecvError::Empty) => None,
        Err(TryRecvError::Disconnected) => Some(WriterMsg::Close),
    };
    loop {
        w.take(rx.recv().ok(), next);
        let r = w.load().and_then(|()| {
            loop {
                let out = w.seal(session)?;
                if out.is_empty() {
                    return Ok(());
                }
                stream.write_all(out)?;
            }
        });
        let closing = w.done();
        if r.is_err() {
            break;
        }
        if closing {
            let _ = stream.write_all(w.close_notify(session));
            let _ = stream.flush();
            break;
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
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
    use bytes::{Bytes, BytesMut};
    use p2p_proto::encode_frame;
    use runtime_common::tls::Identity;
    use std::fs::File;
    use std::time::Instant;

    fn identity(dir: &tempfile::TempDir, name: &str) -> Identity {
        Identity::load_or_create(&dir.path().join(name)).unwrap()
    }

    /// A connected pair with its TLS done: (client side, server side).
    struct Pair {
        a: (TcpStream, Arc<Session>),
        b: (TcpStream, Arc<Session>),
        _dir: tempfile::TempDir,
    }

    fn pair() -> Pair {
        let dir = tempfile::tempdir().unwrap();
        let (ia, ib) = (identity(&dir, "a"), identity(&dir, "b"));
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = ib.tls();
        let t = thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            prepare(&s).unwrap();
            let session = handshake(&s, server.accept(), TLS_HANDSHAKE_TIMEOUT).unwrap();
            (s, session)
        });
        let a = dial_tls(addr, &ia.tls()).unwrap();
        let b = t.join().unwrap();
        assert_eq!(
            a.1.peer(),
            ib.key_id(),
            "the dialer sees the acceptor's key"
        );
        assert_eq!(
            b.1.peer(),
            ia.key_id(),
            "the acceptor sees the dialer's key"
        );
        Pair { a, b, _dir: dir }
    }

    /// Starts a writer and a reader on one side.
    fn start(side: (TcpStream, Arc<Session>)) -> (ConnWriter, Receiver<ConnEvent>) {
        let (stream, session) = side;
        let w = spawn_writer(next_conn_id(), &stream, session.clone()).unwrap();
        let (tx, rx) = mpsc::channel();
        let wake = w.wake_handle();
        // Frames count as handled once in the channel (no machine here).
        let q = w.queued().clone();
        spawn_reader(
            next_conn_id(),
            stream,
            session,
            wake,
            FrameDecoder::default(),
            move |e| {
                q.frame_handled();
                tx.send(e).is_ok()
            },
        )
        .unwrap();
        (w, rx)
    }

    fn next(rx: &Receiver<ConnEvent>) -> ConnEvent {
        rx.recv_timeout(Duration::from_secs(5))
            .expect("an event in time")
    }

    #[test]
    fn frames_and_a_piece_from_a_file_cross_both_ways_and_close_flushes_first() {
        let p = pair();
        let (wa, ra) = start(p.a);
        let (wb, rb) = start(p.b);
        for i in 1..=100u8 {
            let mut f = BytesMut::new();
            encode_frame(&vec![i; i as usize * 100], &mut f);
            assert!(wa.send(f.freeze()));
        }
        // A large frame in two parts, its body from its own buffer.
        let body = Bytes::from(vec![9u8; 500_000]);
        let head = Bytes::copy_from_slice(&p2p_proto::frame::frame_header(body.len()));
        assert!(wa.send_parts(head, body.clone()));
        // A 512 KiB piece served from a file, the other way.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("share");
        let piece: Vec<u8> = (0..512 * 1024u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, [&b"abc"[..], &piece].concat()).unwrap();
        let range = FileRange {
            file: Arc::new(File::open(&path).unwrap()),
            offset: 3,
            len: piece.len(),
        };
        let head = Bytes::copy_from_slice(&p2p_proto::frame::frame_header(piece.len()));
        assert!(wb.send_file(head, range));
        assert!(
            next(&ra) == ConnEvent::Frame(Bytes::from(piece)),
            "the piece"
        );
        let _ = wa.close().map(|t| t.join());
        for i in 1..=100u8 {
            assert_eq!(
                next(&rb),
                ConnEvent::Frame(Bytes::from(vec![i; i as usize * 100]))
            );
        }
        assert_eq!(next(&rb), ConnEvent::Frame(body));
        assert_eq!(next(&rb), ConnEvent::Closed);
        assert_eq!(next(&ra), ConnEvent::Closed);
    }

    /// Issue 16 §2: a peer that pipelines requests and never reads the
    /// replies stops being read once [`READ_PAUSE_QUEUE_LEN`] of replies
    /// are queued (plus the replies of [`FRAMES_UNHANDLED_MAX`] frames),
    /// and is read again, to the last request, once it drains them.
    #[test]
    fn a_peer_that_never_reads_its_replies_stops_being_read() {
        use std::sync::atomic::AtomicUsize;
        const REQUESTS: usize = 300;
        const REPLY_LEN: usize = 64 * 1024;
        let p = pair();
        let (wa, ra) = (
            spawn_writer(next_conn_id(), &p.a.0, p.a.1.clone()).unwrap(),
            p.a,
        );
        let (stream, session) = p.b;
        let wb = Arc::new(spawn_writer(next_conn_id(), &stream, session.clone()).unwrap());
        let handled = Arc::new(AtomicUsize::new(0));
        let (w, h) = (wb.clone(), handled.clone());
        // The "machine": every request gets a large reply, then is handled.
        let wake = wb.wake_handle();
        spawn_reader(
            next_conn_id(),
            stream,
            session,
            wake,
            FrameDecoder::default(),
            move |e| {
                if let ConnEvent::Frame(_) = e {
                    let mut f = BytesMut::new();
                    encode_frame(&vec![7u8; REPLY_LEN], &mut f);
                    assert!(w.send(f.freeze()));
                    h.fetch_add(1, Ordering::SeqCst);
                    w.frame_handled();
                }
                true
            },
        )
        .unwrap();
        for _ in 0..REQUESTS {
            let mut f = BytesMut::new();
            encode_frame(b"list_groups", &mut f);
            assert!(wa.send(f.freeze()));
        }
        // Wait until the reader has paused: nothing handled for 300 ms.
        let t = Instant::now();
        let mut last = (usize::MAX, Instant::now());
        while last.1.elapsed() < Duration::from_millis(300) {
            assert!(t.elapsed() < Duration::from_secs(10), "the reader pauses");
            let now = handled.load(Ordering::SeqCst);
            if now != last.0 {
                last = (now, Instant::now());
            }
            thread::sleep(Duration::from_millis(10));
        }
        assert!(last.0 < REQUESTS, "paused before the last request");
        let bound = READ_PAUSE_QUEUE_LEN + FRAMES_UNHANDLED_MAX * (REPLY_LEN + 4);
        assert!(wb.queued_len() <= bound, "{} queued", wb.queued_len());
        assert!(wb.queued_len() >= READ_PAUSE_QUEUE_LEN - REPLY_LEN);
        // The peer reads its replies: every request gets its answer.
        let (tx, rx) = mpsc::channel();
        let (wake, q) = (wa.wake_handle(), wa.queued().clone());
        spawn_reader(
            next_conn_id(),
            ra.0,
            ra.1,
            wake,
            FrameDecoder::default(),
            move |e| {
                q.frame_handled();
                tx.send(e).is_ok()
            },
        )
        .unwrap();
        for _ in 0..REQUESTS {
            assert!(matches!(next(&rx), ConnEvent::Frame(f) if f.len() == REPLY_LEN));
        }
        assert_eq!(handled.load(Ordering::SeqCst), REQUESTS);
    }

    /// Issue 16 §1: a frame whose first bytes came must be whole within
    /// the frame deadline: one trickled in under it is read, one held
    /// short is cut at the deadline, not before.
    #[test]
    fn a_frame_held_short_is_cut_at_the_frame_deadline() {
        const TIMEOUT: Duration = Duration::from_millis(400);
        let p = pair();
        let wa = spawn_writer(next_conn_id(), &p.a.0, p.a.1.clone()).unwrap();
        let (stream, session) = p.b;
        let wb = spawn_writer(next_conn_id(), &stream, session.clone()).unwrap();
        let (tx, rx) = mpsc::channel();
        let (wake, q) = (wb.wake_handle(), wb.queued().clone());
        let decoder = FrameDecoder::default();
        spawn_reader_timed(
            next_conn_id(),
            stream,
            session,
            wake,
            decoder,
            TIMEOUT,
            move |e| {
                q.frame_handled();
                tx.send(e).is_ok()
            },
        )
        .unwrap();
        let mut f = BytesMut::new();
        encode_frame(b"0123456789", &mut f);
        // In three parts over half the deadline: whole in time.
        for part in [&f[..3], &f[3..9], &f[9..]] {
            assert!(wa.send(Bytes::copy_from_slice(part)));
            thread::sleep(TIMEOUT / 6);
        }
        assert_eq!(
            next(&rx),
            ConnEvent::Frame(Bytes::from_static(b"0123456789"))
        );
        // Then 8 bytes short of whole, and nothing more.
        let t = Instant::now();
        assert!(wa.send(f.split_to(f.len() - 8).freeze()));
        assert_eq!(next(&rx), ConnEvent::Closed);
        let took = t.elapsed();
        assert!(took >= TIMEOUT, "{took:?}");
        assert!(took < TIMEOUT + Duration::from_secs(2), "{took:?}");
    }

    #[test]
    fn abort_ends_the_reader_at_once() {
        let p = pair();
        let (wa, ra) = start(p.a);
        wa.abort();
        assert_eq!(next(&ra), ConnEvent::Closed);
        drop(p.b);
    }

    /// A peer that connects and says nothing is cut when
    /// [`TLS_HANDSHAKE_TIMEOUT`] runs out, not before.
    #[test]
    fn a_silent_peer_is_cut_at_the_handshake_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let tls = identity(&dir, "a").tls();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let silent = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        let t = Instant::now();
        let e = handshake(&s, tls.accept(), TLS_HANDSHAKE_TIMEOUT).unwrap_err();
        let took = t.elapsed();
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
        assert!(took >= TLS_HANDSHAKE_TIMEOUT, "{took:?}");
        assert!(
            took < TLS_HANDSHAKE_TIMEOUT + Duration::from_secs(2),
            "{took:?}"
        );
        drop(silent);
    }

    /// The `k`th of a crowd of connections, as if from
    /// [`TLS_HANDSHAKES_PER_ADDR_MAX`] per host.
    fn spread(k: usize) -> SocketAddr {
        let host = (k / TLS_HANDSHAKES_PER_ADDR_MAX) as u8;
        SocketAddr::from(([10, 0, 0, host], 4000))
    }

    /// At most [`TLS_HANDSHAKES_MAX`] handshakes run at once; one more
    /// connection is closed at once, and a slot frees when one ends.
    #[test]
    fn handshakes_beyond_the_limit_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let acceptor = TlsAcceptor::new(identity(&dir, "a").tls());
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let mut silent = Vec::new();
        for k in 0..TLS_HANDSHAKES_MAX {
            silent.push(TcpStream::connect(addr).unwrap());
            let (s, _) = l.accept().unwrap();
            // As from many hosts, each at its own bound.
            let from = spread(k);
            acceptor.accept(s, from, |_, _, _| panic!("nobody completes"));
        }
        assert_eq!(acceptor.running(), TLS_HANDSHAKES_MAX);
        let mut extra = TcpStream::connect(addr).unwrap();
        let (s, _) = l.accept().unwrap();
        let from = spread(TLS_HANDSHAKES_MAX + TLS_HANDSHAKES_PER_ADDR_MAX);
        acceptor.accept(s, from, |_, _, _| panic!("refused"));
        extra
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        assert_eq!(extra.read(&mut [0; 8]).unwrap(), 0, "closed at once");
        assert_eq!(acceptor.running(), TLS_HANDSHAKES_MAX);
        // One gives up: its slot frees.
        drop(silent.pop());
        let t = Instant::now();
        while acceptor.running() == TLS_HANDSHAKES_MAX {
            assert!(t.elapsed() < Duration::from_secs(2), "a slot frees");
            thread::sleep(Duration::from_millis(5));
        }
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
