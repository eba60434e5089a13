//! TCP connections as tasks, every one TLS 1.3 ([`runtime_common::tls`]):
//! a handshake first (in the dialing task, or for an accepted connection
//! in a task of its own, [`TlsAcceptor`], both within
//! [`TLS_HANDSHAKE_TIMEOUT`]), then a reader task per socket that
//! decrypts and cuts the plaintext into frames ([`Deframer`]), a writer
//! task per socket fed by a channel of encoded frames and file ranges
//! (joined into batches with [`collect_batch`]; ranges read into pooled
//! buffers, then encrypted), an accept loop, and dialing with a timeout.
//!
//! The same contract as runtime-std's `conn`: nothing here knows a
//! protocol; readers hand [`ConnEvent`]s to a sink the driver supplies and
//! end with exactly one [`ConnEvent::Closed`]; writers take whole frames.

use std::io::{self, ErrorKind};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use p2p_proto::FrameDecoder;
pub use runtime_common::conn::{
    ConnEvent, ConnId, DIAL_TIMEOUT, FRAME_TIMEOUT, FRAMES_UNHANDLED_MAX, FileRange, FrameSink,
    READ_CHUNK_LEN, READ_PAUSE_QUEUE_LEN, WRITE_QUEUE_LEN_MAX, WRITE_TIMEOUT, next_conn_id,
};
use runtime_common::conn::{ConnReader, QueuedLen, WriteState, WriterMsg, WriterRuntime};
use runtime_common::runtime::Runtime;
use runtime_common::tls::Handshake;
pub use runtime_common::tls::{
    KeyId, Session, TLS_HANDSHAKE_TIMEOUT, TLS_HANDSHAKES_MAX, TLS_HANDSHAKES_PER_ADDR_MAX, Tls,
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

/// Connects to `addr` and runs the TLS handshake as its client: the
/// stream and the session, whose [`Session::peer`] is the key the peer
/// proved it holds.
pub async fn dial_tls(addr: SocketAddr, tls: &Tls) -> io::Result<(Async<TcpStream>, Arc<Session>)> {
    let stream = dial(addr, DIAL_TIMEOUT).await?;
    let session = handshake(&stream, tls.connect(addr), TLS_HANDSHAKE_TIMEOUT).await?;
    Ok((stream, session))
}

/// Runs `hs` over `stream`, failing with `TimedOut` if it is not done
/// within `timeout` (a peer that connects and says nothing).
pub async fn handshake(
    stream: &Async<TcpStream>,
    mut hs: Handshake,
    timeout: Duration,
) -> io::Result<Arc<Session>> {
    let run = async {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        let mut s = stream;
        loop {
            out.clear();
            hs.output(&mut out);
            if !out.is_empty() {
                s.write_all(&out).await?;
            }
            if hs.is_done() {
                return Ok(());
            }
            let n = match s.read(&mut buf).await {
                Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if let Err(e) = hs.input(&buf[..n]) {
                // Tell the peer why (the alert), if it listens.
                out.clear();
                hs.output(&mut out);
                let _ = s.write_all(&out).await;
                return Err(e);
            }
        }
    };
    let late = async {
        Timer::after(timeout).await;
        Err(io::Error::new(
            ErrorKind::TimedOut,
            "TLS handshake timed out",
        ))
    };
    run.or(late).await?;
    hs.finish()
}

/// Runs the handshakes of accepted connections, each in a task of its
/// own, at most [`TLS_HANDSHAKES_MAX`] at once.
pub type TlsAcceptor = runtime_common::runtime::TlsAcceptor<Tasks>;

/// Starts a task that reads `stream`, decrypts it with `session`, decodes
/// frames and hands each event to `sink`. The sink returns `false` when
/// nobody listens any more, which stops the reader. `wake` is the
/// connection's writer (it sends what rustls has to say, such as a key
/// update). Ends with [`ConnEvent::Closed`].
pub fn spawn_reader<F>(
    stream: Stream,
    session: Arc<Session>,
    wake: WriterWake,
    decoder: FrameDecoder,
    sink: F,
) where
    F: FnMut(ConnEvent) -> bool + Send + 'static,
{
    spawn_reader_timed(stream, session, wake, decoder, FRAME_TIMEOUT, sink)
}

/// [`spawn_reader`] with another frame deadline (the tracker's
/// `NodeConfig::frame_timeout`, tests).
pub fn spawn_reader_timed<F>(
    stream: Stream,
    session: Arc<Session>,
    wake: WriterWake,
    decoder: FrameDecoder,
    frame_timeout: Duration,
    mut sink: F,
) where
    F: FnMut(ConnEvent) -> bool + Send + 'static,
{
    exec::spawn(async move {
        let reader = ConnReader::new(&session, decoder, frame_timeout);
        read_loop(&stream, &session, &wake, reader, &mut sink).await;
        sink(ConnEvent::Closed);
    })
    .detach();
}

/// Runs `r` on an async socket until it stops (EOF, an error, bad
/// framing, a frame past its deadline, or a sink that stops listening):
/// each read races a timer set to the frame's time left.
async fn read_loop<F: FnMut(ConnEvent) -> bool>(
    stream: &Async<TcpStream>,
    session: &Session,
    wake: &WriterWake,
    mut r: ConnReader,
    sink: &mut F,
) {
    let mut reader = stream;
    loop {
        r.receive(session);
        while let Some(e) = r.next_event() {
            if let ConnEvent::Frame(_) = e
                && wake.flow().before_frame().await
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
        let read = async {
            loop {
                match reader.read(r.read_buf()).await {
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    res => return Some(res),
                }
            }
        };
        let res = match next.left {
            Some(left) => {
                read.or(async {
                    Timer::after(left).await;
                    None
                })
                .await
            }
            None => read.await,
        };
        match res {
            Some(Ok(0)) => return r.finish(sink),
            Some(Ok(n)) => r.read(n),
            Some(Err(_)) => return,
            None => return r.timed_out(),
        }
    }
}

/// The runtime of tasks on `Async` sockets, as runtime-common's shared
/// drivers see it: a task per reader, writer and dial, async channels,
/// and smol's blocking pool for blocking work.
#[derive(Debug)]
pub struct Tasks;

impl WriterRuntime for Tasks {
    type Tx = Sender<WriterMsg>;
    type Socket = Stream;
    type Handle = Task<()>;
    fn push(tx: &Self::Tx, m: WriterMsg) -> bool {
        tx.try_send(m).is_ok()
    }
    fn shutdown(socket: &Stream) {
        let _ = socket.get_ref().shutdown(Shutdown::Both);
    }
    fn detach(task: Task<()>) {
        task.detach();
    }
}

impl Runtime for Tasks {
    type Stream = Stream;
    type Sender<T: Send + 'static> = Sender<T>;
    fn send<T: Send + 'static>(tx: &Sender<T>, m: T) -> bool {
        tx.try_send(m).is_ok()
    }
    fn spawn_writer(_: ConnId, stream: &Stream, session: Arc<Session>) -> io::Result<ConnWriter> {
        Ok(spawn_writer(stream.clone(), session))
    }
    fn spawn_reader<F>(
        _: ConnId,
        stream: Stream,
        session: Arc<Session>,
        wake: WriterWake,
        frame_timeout: Duration,
        sink: F,
    ) -> io::Result<()>
    where
        F: FnMut(ConnEvent) -> bool + Send + 'static,
    {
        let decoder = FrameDecoder::default();
        spawn_reader_timed(stream, session, wake, decoder, frame_timeout, sink);
        Ok(())
    }
    fn dial<F>(addr: SocketAddr, tls: &Tls, then: F)
    where
        F: FnOnce(io::Result<(Stream, Arc<Session>)>) + Send + 'static,
    {
        let tls = tls.clone();
        exec::spawn(async move {
            let r = dial_tls(addr, &tls).await;
            then(r.map(|(stream, session)| (Arc::new(stream), session)));
        })
        .detach();
    }
    fn handshake<F>(stream: Stream, hs: Handshake, then: F)
    where
        F: FnOnce(Stream, io::Result<Arc<Session>>) + Send + 'static,
    {
        exec::spawn(async move {
            let r = handshake(&stream, hs, TLS_HANDSHAKE_TIMEOUT).await;
            then(stream, r);
        })
        .detach();
    }
    fn close(stream: &Stream) {
        let _ = stream.get_ref().shutdown(Shutdown::Both);
    }
    fn spawn_blocking(_: String, work: impl FnOnce() + Send + 'static) -> io::Result<()> {
        smol::unblock(work).detach();
        Ok(())
    }
}

/// The sending half of a connection: frames queue to a writer task
/// ([`runtime_common::conn::ConnWriter`]); [`spawn_writer`] starts it.
/// Awaiting the task [`ConnWriter::close`] gives back waits for the flush;
/// dropping it stops the writer.
pub type ConnWriter = runtime_common::conn::ConnWriter<Tasks>;
/// What a connection's reader holds of its writer.
pub type WriterWake = runtime_common::conn::WriterWake<Tasks>;

/// Starts the writer task for `stream`.
pub fn spawn_writer(stream: Stream, session: Arc<Session>) -> ConnWriter {
    let (tx, rx) = channel::unbounded();
    let queued = QueuedLen::default();
    let state = WriteState::new(queued.clone());
    let task = exec::spawn(write_loop(stream.clone(), session, rx, state));
    ConnWriter::new(tx, queued, stream, task)
}

/// Writes batches until a close, an error, or every sender gone; a batch
/// (its file ranges read on this thread: the disk job that checked each
/// range also started its read-ahead, so the pages are usually cached by
/// now) fails if it takes longer than [`WRITE_TIMEOUT`].
async fn write_loop(
    stream: Stream,
    session: Arc<Session>,
    rx: Receiver<WriterMsg>,
    mut w: WriteState,
) {
    let next = || match rx.try_recv() {
        Ok(m) => Some(m),
        Err(TryRecvError::Empty) => None,
        Err(TryRecvError::Closed) => Some(WriterMsg::Close),
    };
    let mut writer = &*stream;
    loop {
        w.take(rx.recv().await.ok(), next);
        let write = async {
            w.load()?;
            loop {
                let out = w.seal(&session)?;
                if out.is_empty() {
                    return Ok(());
                }
                writer.write_all(out).await?;
            }
        };
        let r: io::Result<()> = write.or(timed_out(WRITE_TIMEOUT)).await;
        let closing = w.done();
        if r.is_err() {
            break;
        }
        if closing {
            let notify = writer.write_all(w.close_notify(&session));
            let _ = notify.or(timed_out(WRITE_TIMEOUT)).await;
            break;
        }
    }
    let _ = stream.get_ref().shutdown(Shutdown::Both);
}

/// An error after `after`: the loser of a race against a write.
async fn timed_out(after: Duration) -> io::Result<()> {
    Timer::after(after).await;
    Err(io::Error::new(ErrorKind::TimedOut, "write timed out"))
}

/// Accepts connections on `listener`, handing each (prepared) stream and
/// its peer address to `on_accept`, until the task is cancelled.
pub fn spawn_listener<F>(listener: TcpListener, mut on_accept: F) -> io::Result<Task<()>>
where
    F: FnMut(Stream, SocketAddr) + Send + 'static,
{
    let listener = Async::new(listener)?;
    Ok(exec::spawn(async move {
        loop {
            let accepted = listener.accept().await.and_then(|(s, peer)| {
                s.get_ref().set_nodelay(true)?;
                Ok((s, peer))
            });
            match accepted {
                Ok((s, peer)) => on_accept(Arc::new(s), peer),
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
    use bytes::{Bytes, BytesMut};
    use p2p_proto::encode_frame;
    use runtime_common::tls::Identity;
    use std::fs::File;
    use std::sync::mpsc;
    use std::time::Instant;

    fn identity(dir: &tempfile::TempDir, name: &str) -> Identity {
        Identity::load_or_create(&dir.path().join(name)).unwrap()
    }

    type Side = (Stream, Arc<Session>);

    /// A connected pair with its TLS done: (dialer, acceptor).
    fn pair() -> (Side, Side, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let (ia, ib) = (identity(&dir, "a"), identity(&dir, "b"));
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let (ta, tb) = (ia.tls(), ib.tls());
        let a = exec::spawn(async move { dial_tls(addr, &ta).await.unwrap() });
        let (s, _) = l.accept().unwrap();
        let s = Async::new(s).unwrap();
        let b = exec::join(exec::spawn(async move {
            let session = handshake(&s, tb.accept(), TLS_HANDSHAKE_TIMEOUT)
                .await
                .unwrap();
            (s, session)
        }))
        .unwrap();
        let a = exec::join(a).unwrap();
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
        ((Arc::new(a.0), a.1), (Arc::new(b.0), b.1), dir)
    }

    fn start(side: Side) -> (ConnWriter, mpsc::Receiver<ConnEvent>) {
        let (stream, session) = side;
        let w = spawn_writer(stream.clone(), session.clone());
        let (tx, rx) = mpsc::channel();
        // Frames count as handled once in the channel (no machine here).
        let q = w.queued().clone();
        spawn_reader(
            stream,
            session,
            w.wake_handle(),
            FrameDecoder::default(),
            move |e| {
                q.frame_handled();
                tx.send(e).is_ok()
            },
        );
        (w, rx)
    }

    /// Issue 16 §1: a frame whose first bytes came must be whole within
    /// the frame deadline: one trickled in under it is read, one held
    /// short is cut at the deadline, not before.
    #[test]
    fn a_frame_held_short_is_cut_at_the_frame_deadline() {
        const TIMEOUT: Duration = Duration::from_millis(400);
        let (a, b, _dir) = pair();
        let wa = spawn_writer(a.0.clone(), a.1.clone());
        let (stream, session) = b;
        let wb = spawn_writer(stream.clone(), session.clone());
        let (tx, rx) = mpsc::channel();
        let (wake, q) = (wb.wake_handle(), wb.queued().clone());
        let decoder = FrameDecoder::default();
        spawn_reader_timed(stream, session, wake, decoder, TIMEOUT, move |e| {
            q.frame_handled();
            tx.send(e).is_ok()
        });
        let mut f = BytesMut::new();
        encode_frame(b"0123456789", &mut f);
        // In three parts over half the deadline: whole in time.
        for part in [&f[..3], &f[3..9], &f[9..]] {
            assert!(wa.send(Bytes::copy_from_slice(part)));
            std::thread::sleep(TIMEOUT / 6);
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

    /// Issue 16 §2: a peer that pipelines requests and never reads the
    /// replies stops being read once [`READ_PAUSE_QUEUE_LEN`] of replies
    /// are queued (plus the replies of [`FRAMES_UNHANDLED_MAX`] frames),
    /// and is read again, to the last request, once it drains them.
    #[test]
    fn a_peer_that_never_reads_its_replies_stops_being_read() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        const REQUESTS: usize = 300;
        const REPLY_LEN: usize = 64 * 1024;
        let (a, b, _dir) = pair();
        let wa = spawn_writer(a.0.clone(), a.1.clone());
        let (stream, session) = b;
        let wb = Arc::new(spawn_writer(stream.clone(), session.clone()));
        let handled = Arc::new(AtomicUsize::new(0));
        let (w, h) = (wb.clone(), handled.clone());
        // The "machine": every request gets a large reply, then is handled.
        let wake = wb.wake_handle();
        spawn_reader(stream, session, wake, FrameDecoder::default(), move |e| {
            if let ConnEvent::Frame(_) = e {
                let mut f = BytesMut::new();
                encode_frame(&vec![7u8; REPLY_LEN], &mut f);
                assert!(w.send(f.freeze()));
                h.fetch_add(1, Ordering::SeqCst);
                w.frame_handled();
            }
            true
        });
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
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(last.0 < REQUESTS, "paused before the last request");
        let bound = READ_PAUSE_QUEUE_LEN + FRAMES_UNHANDLED_MAX * (REPLY_LEN + 4);
        assert!(wb.queued_len() <= bound, "{} queued", wb.queued_len());
        assert!(wb.queued_len() >= READ_PAUSE_QUEUE_LEN - REPLY_LEN);
        // The peer reads its replies: every request gets its answer.
        let (tx, rx) = mpsc::channel();
        let (wake, q) = (wa.wake_handle(), wa.queued().clone());
        spawn_reader(a.0, a.1, wake, FrameDecoder::default(), move |e| {
            q.frame_handled();
            tx.send(e).is_ok()
        });
        for _ in 0..REQUESTS {
            assert!(matches!(next(&rx), ConnEvent::Frame(f) if f.len() == REPLY_LEN));
        }
        assert_eq!(handled.load(Ordering::SeqCst), REQUESTS);
    }

    fn next(rx: &mpsc::Receiver<ConnEvent>) -> ConnEvent {
        rx.recv_timeout(Duration::from_secs(5))
            .expect("an event in time")
    }

    #[test]
    fn frames_and_a_piece_from_a_file_cross_both_ways_and_close_flushes_first() {
        let (a, b, _dir) = pair();
        let (wa, ra) = start(a);
        let (wb, rb) = start(b);
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
        exec::join(wa.close().unwrap());
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

    #[test]
    fn abort_ends_the_reader_at_once() {
        let (a, _b, _dir) = pair();
        let (wa, ra) = start(a);
        wa.abort();
        assert_eq!(next(&ra), ConnEvent::Closed);
    }

    /// A peer that connects and says nothing is cut when
    /// [`TLS_HANDSHAKE_TIMEOUT`] runs out, not before; meanwhile the
    /// acceptor counts it against [`TLS_HANDSHAKES_MAX`].
    #[test]
    fn a_silent_peer_is_cut_at_the_handshake_timeout() {
        use std::io::Read;
        let dir = tempfile::tempdir().unwrap();
        let acceptor = TlsAcceptor::new(identity(&dir, "a").tls());
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut silent = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, from) = l.accept().unwrap();
        let t = Instant::now();
        acceptor.accept(Arc::new(Async::new(s).unwrap()), from, |_, _, _| {
            panic!("silent")
        });
        assert_eq!(acceptor.running(), 1);
        silent
            .set_read_timeout(Some(TLS_HANDSHAKE_TIMEOUT * 2))
            .unwrap();
        assert_eq!(silent.read(&mut [0; 8]).unwrap(), 0, "cut");
        let took = t.elapsed();
        assert!(took >= TLS_HANDSHAKE_TIMEOUT, "{took:?}");
        assert!(
            took < TLS_HANDSHAKE_TIMEOUT + Duration::from_secs(2),
            "{took:?}"
        );
        assert_eq!(acceptor.running(), 0);
    }

    /// The `k`th of a crowd of connections, as if from
    /// [`TLS_HANDSHAKES_PER_ADDR_MAX`] per host.
    fn spread(k: usize) -> SocketAddr {
        let host = (k / TLS_HANDSHAKES_PER_ADDR_MAX) as u8;
        SocketAddr::from(([10, 0, 0, host], 4000))
    }

    #[test]
    fn handshakes_beyond_the_limit_are_refused() {
        use std::io::Read;
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
            acceptor.accept(Arc::new(Async::new(s).unwrap()), from, |_, _, _| {
                panic!("silent")
            });
        }
        assert_eq!(acceptor.running(), TLS_HANDSHAKES_MAX);
        let mut extra = TcpStream::connect(addr).unwrap();
        let (s, _) = l.accept().unwrap();
        let from = spread(TLS_HANDSHAKES_MAX + TLS_HANDSHAKES_PER_ADDR_MAX);
        acceptor.accept(Arc::new(Async::new(s).unwrap()), from, |_, _, _| {
            panic!("refused")
        });
        extra
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        assert_eq!(extra.read(&mut [0; 8]).unwrap(), 0, "closed at once");
        assert_eq!(acceptor.running(), TLS_HANDSHAKES_MAX);
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
