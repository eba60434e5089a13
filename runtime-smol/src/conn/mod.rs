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
use runtime_common::conn::{
    ConnReader, EventSink, Held, QueuedLen, WriteState, WriterMsg, WriterRuntime, read_if_holding,
};
use runtime_common::runtime::Runtime;
use runtime_common::tls::Handshake;
pub use runtime_common::tls::{
    KeyId, Session, TLS_HANDSHAKE_TIMEOUT, TLS_HANDSHAKES_MAX, TLS_HANDSHAKES_PER_ADDR_MAX, Tls,
};
use smol::channel::{self, Receiver, Sender, TryRecvError};
use smol::future::FutureExt;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::{Async, Task, Timer};

use crate::deadline::Deadline;
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
    F: EventSink + Send + 'static,
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
    F: EventSink + Send + 'static,
{
    exec::spawn(async move {
        let reader = ConnReader::new(&session, decoder, frame_timeout);
        read_loop(&stream, &session, &wake, reader, &mut sink).await;
        sink.event(ConnEvent::Closed);
    })
    .detach();
}

/// Runs `r` on an async socket until it stops (EOF, an error, bad
/// framing, a frame past its deadline, or a sink that stops listening):
/// each read races the frame's deadline (one lazily re-armed timer).
async fn read_loop<F: EventSink>(
    stream: &Async<TcpStream>,
    session: &Session,
    wake: &WriterWake,
    mut r: ConnReader,
    sink: &mut F,
) {
    let mut reader = stream;
    let mut deadline = Deadline::default();
    loop {
        r.receive(session);
        while let Some(e) = r.next_event() {
            if let ConnEvent::Frame(_) = e {
                // About to wait for the machine: nothing may stay held.
                if !wake.flow().may_read() && !sink.waiting() {
                    return;
                }
                if wake.flow().before_frame().await {
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
        match read_if_holding(stream.get_ref(), &mut r, sink) {
            Held::Read => continue,
            Held::Stop => return,
            Held::Wait => {}
        }
        let read = async {
            loop {
                match reader.read(r.read_buf()).await {
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    res => return res,
                }
            }
        };
        let at = next.left.map(|left| Instant::now() + left);
        match deadline.run(at, read).await {
            Some(Ok(0)) => return r.finish(&mut |e| sink.event(e)),
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
        F: EventSink + Send + 'static,
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
/// (its file ranges read on this thread: a disk job started each range's
/// read-ahead when the piece was queued, so the pages are usually cached
/// by now) fails if it takes longer than [`WRITE_TIMEOUT`] (one lazily
/// re-armed timer, [`Deadline`]).
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
    let mut deadline = Deadline::default();
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
        let at = Some(Instant::now() + WRITE_TIMEOUT);
        let r = deadline
            .run(at, write)
            .await
            .unwrap_or_else(write_timed_out);
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
    write_timed_out()
}

fn write_timed_out() -> io::Result<()> {
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
mod tests;
