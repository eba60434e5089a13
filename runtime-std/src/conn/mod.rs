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
use runtime_common::conn::{
    ConnReader, EventSink, Held, QueuedLen, WriteState, WriterMsg, WriterRuntime, read_if_holding,
};
use runtime_common::runtime::Runtime;
use runtime_common::tls::Handshake;
pub use runtime_common::tls::{
    KeyId, Session, TLS_HANDSHAKE_TIMEOUT, TLS_HANDSHAKES_MAX, TLS_HANDSHAKES_PER_ADDR_MAX, Tls,
};

/// Sets the options every connection gets (no Nagle delay, a write timeout).
pub fn set_options(stream: &TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))
}

/// Connects to `addr`, giving up after `timeout`.
pub fn dial(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    set_options(&stream)?;
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
    F: EventSink + Send + 'static,
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
    F: EventSink + Send + 'static,
{
    thread::Builder::new()
        .name(format!("conn-{conn}-rd"))
        .spawn(move || {
            let reader = ConnReader::new(&session, decoder, frame_timeout);
            read_loop(stream, &session, &wake, reader, &mut sink);
            sink.event(ConnEvent::Closed);
        })
}

/// Runs `r` on a blocking socket until it stops (EOF, an error, bad
/// framing, a frame past its deadline, or a sink that stops listening):
/// the read timeout is the frame's time left.
fn read_loop<F: EventSink>(
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
            if let ConnEvent::Frame(_) = e {
                // About to wait for the machine: nothing may stay held.
                if !wake.flow().may_read() && !sink.waiting() {
                    return;
                }
                if wake.flow().before_frame_blocking() {
                    r.paused();
                }
            }
            if !sink.event(e) {
                return;
            }
        }
        let Some(next) = r.next_read(Instant::now()) else {
            return;
        };
        if next.wake_writer {
            wake.wake();
        }
        match read_if_holding(&stream, &mut r, sink) {
            Held::Read => continue,
            Held::Stop => return,
            Held::Wait => {}
        }
        // A frame has its deadline; between frames a read may wait.
        if next.left.is_some() || timed {
            let _ = stream.set_read_timeout(next.left);
            timed = next.left.is_some();
        }
        let n = loop {
            match stream.read(r.read_buf()) {
                Ok(0) => return r.finish(&mut |e| sink.event(e)),
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
        F: EventSink + Send + 'static,
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
                    match r.and_then(|s| set_options(&s).and_then(|_| Ok((s.peer_addr()?, s)))) {
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
mod tests;
