//! The shared reader and writer, tested once without sockets: a TLS pair
//! in memory, the writer's [`WriteState`] sealing on one side, the
//! [`ConnReader`] taking the ciphertext in chunks on the other, and the
//! time fed in. The runtimes' own tests only check that their loops
//! honour what these decide (over loopback).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use p2p_proto::{FrameDecoder, FrameError, encode_frame};

use super::*;
use crate::tls::{Identity, Session, Tls};

/// Two sessions in memory, their handshake done: (client, server).
fn pair() -> (Arc<Session>, Arc<Session>) {
    let dir = tempfile::tempdir().unwrap();
    let tls = |n: &str| -> Tls { Identity::load_or_create(&dir.path().join(n)).unwrap().tls() };
    crate::tls::tests::handshake(&tls("a"), &tls("b"))
}

fn frame(payload: &[u8]) -> Bytes {
    let mut b = BytesMut::new();
    encode_frame(payload, &mut b);
    b.freeze()
}

/// Everything a writer sends for `msgs` (one batch), as ciphertext.
fn written(w: &mut WriteState, from: &Session, msgs: Vec<WriterMsg>) -> (Vec<u8>, bool) {
    let mut q = msgs.into_iter();
    let first = q.next();
    w.take(first, || q.next());
    w.load().unwrap();
    let mut wire = Vec::new();
    loop {
        let out = w.seal(from).unwrap();
        if out.is_empty() {
            break;
        }
        wire.extend_from_slice(out);
    }
    let closing = w.done();
    if closing {
        wire.extend_from_slice(w.close_notify(from));
    }
    (wire, closing)
}

/// Feeds `wire` to `r` in reads of at most `step` bytes, the way a
/// runtime's loop does, at `now`; returns the events handed over and
/// whether the reader would read on.
fn read(
    r: &mut ConnReader,
    to: &Session,
    wire: &[u8],
    step: usize,
    now: Instant,
) -> (Vec<ConnEvent>, bool) {
    let mut got = Vec::new();
    let mut chunks = wire.chunks(step);
    loop {
        r.receive(to);
        while let Some(e) = r.next_event() {
            got.push(e);
        }
        if r.next_read(now).is_none() {
            return (got, false);
        }
        let Some(c) = chunks.next() else {
            return (got, true);
        };
        r.read_buf()[..c.len()].copy_from_slice(c);
        r.read(c.len());
    }
}

/// Frames, a large frame in two parts and a piece from a file cross in
/// order whatever the socket's chunks; a close ends the TLS stream after
/// them, and the queue count goes back to zero as the batch goes out.
#[test]
fn a_batch_crosses_whole_and_in_order_and_a_close_ends_the_stream() {
    use std::io::Write;
    let (a, b) = pair();
    let queued = QueuedLen::default();
    let mut w = WriteState::new(queued.clone());
    let mut r = ConnReader::new(&b, FrameDecoder::default(), FRAME_TIMEOUT);
    let mut file = tempfile::NamedTempFile::new().unwrap();
    let piece: Vec<u8> = (0..512 * 1024u32).map(|i| (i % 251) as u8).collect();
    file.write_all(&[&b"abc"[..], &piece].concat()).unwrap();
    let range = FileRange {
        file: Arc::new(file.reopen().unwrap()),
        offset: 3,
        len: piece.len(),
    };
    let body = Bytes::from(vec![9u8; 100_000]);
    let msgs = vec![
        WriterMsg::Frame(frame(b"hello")),
        WriterMsg::Frame(Bytes::copy_from_slice(&p2p_proto::frame::frame_header(
            body.len(),
        ))),
        WriterMsg::Frame(body.clone()),
        WriterMsg::Frame(Bytes::copy_from_slice(&p2p_proto::frame::frame_header(
            piece.len(),
        ))),
        WriterMsg::File(range),
        WriterMsg::Close,
    ];
    let total = 9 + 4 + body.len() + 4 + piece.len();
    assert!(queued.try_add(total));
    let (wire, closing) = written(&mut w, &a, msgs);
    assert!(closing, "the close came");
    assert_eq!(queued.get(), 0, "the batch left the queue count");
    let (got, reads_on) = read(&mut r, &b, &wire, 7_001, Instant::now());
    let want: Vec<ConnEvent> = [&b"hello"[..], &body, &piece]
        .iter()
        .map(|p| ConnEvent::Frame(Bytes::copy_from_slice(p)))
        .collect();
    assert!(got == want, "frames whole and in order");
    assert!(!reads_on, "close_notify stops the reader");
}

/// A length prefix over the limit is refused from the header alone, and
/// the reader stops; a stream that ends inside a frame is bad framing.
#[test]
fn bad_framing_and_a_stream_ended_mid_frame_stop_the_reader() {
    let (a, b) = pair();
    let mut w = WriteState::new(QueuedLen::default());
    let mut r = ConnReader::new(&b, FrameDecoder::default(), FRAME_TIMEOUT);
    let huge = WriterMsg::Frame(Bytes::from_static(&[0xff, 0xff, 0xff, 0xff]));
    let (wire, _) = written(&mut w, &a, vec![huge]);
    let (got, reads_on) = read(&mut r, &b, &wire, 1 << 16, Instant::now());
    assert!(matches!(
        got[..],
        [ConnEvent::BadFraming(FrameError::TooLong { .. })]
    ));
    assert!(!reads_on);

    let (a, b) = pair();
    let mut w = WriteState::new(QueuedLen::default());
    let mut r = ConnReader::new(&b, FrameDecoder::default(), FRAME_TIMEOUT);
    let short = WriterMsg::Frame(Bytes::from_static(&[0, 0, 0, 9, 1, 2]));
    let (wire, _) = written(&mut w, &a, vec![short]);
    let (got, reads_on) = read(&mut r, &b, &wire, 1 << 16, Instant::now());
    assert!(got.is_empty() && reads_on, "waits for the rest");
    let mut got = Vec::new();
    r.finish(&mut |e| {
        got.push(e);
        true
    });
    assert!(matches!(
        got[..],
        [ConnEvent::BadFraming(FrameError::Truncated { .. })]
    ));
}

/// Bytes that are not TLS records: no frame gets through, the reader stops.
#[test]
fn plaintext_stops_the_reader() {
    let (_a, b) = pair();
    let mut r = ConnReader::new(&b, FrameDecoder::default(), FRAME_TIMEOUT);
    let (got, reads_on) = read(
        &mut r,
        &b,
        &frame(b"not encrypted"),
        1 << 16,
        Instant::now(),
    );
    assert!(got.is_empty() && !reads_on);
}

/// [`FRAME_TIMEOUT`] runs from a frame's first byte: the reader is told
/// the time left, reads on up to the deadline and stops at it; between
/// frames it may wait; a frame held by our own backpressure
/// ([`ConnReader::paused`]) does not count against the next.
#[test]
fn a_frame_must_be_whole_within_its_deadline_from_its_first_byte() {
    const TIMEOUT: Duration = Duration::from_millis(400);
    let (a, b) = pair();
    let mut w = WriteState::new(QueuedLen::default());
    let mut r = ConnReader::new(&b, FrameDecoder::default(), TIMEOUT);
    let t0 = Instant::now();
    let f = frame(b"0123456789");
    let (wire, _) = written(&mut w, &a, vec![WriterMsg::Frame(f.slice(..3))]);
    let (got, _) = read(&mut r, &b, &wire, 1 << 16, t0);
    assert!(got.is_empty());
    let left = |r: &mut ConnReader, at| r.next_read(at).map(|n| n.left);
    assert_eq!(left(&mut r, t0), Some(Some(TIMEOUT)), "the clock starts");
    assert_eq!(left(&mut r, t0 + TIMEOUT / 4), Some(Some(TIMEOUT * 3 / 4)));
    let just_before = t0 + TIMEOUT - Duration::from_millis(1);
    assert_eq!(
        left(&mut r, just_before),
        Some(Some(Duration::from_millis(1)))
    );
    // The rest arrives in time: whole, and no deadline between frames.
    let (wire, _) = written(&mut w, &a, vec![WriterMsg::Frame(f.slice(3..))]);
    let (got, _) = read(&mut r, &b, &wire, 1 << 16, just_before);
    assert_eq!(
        got,
        vec![ConnEvent::Frame(Bytes::from_static(b"0123456789"))]
    );
    assert_eq!(
        left(&mut r, t0 + TIMEOUT * 10),
        Some(None),
        "no frame partly in"
    );
    // The next frame's clock starts at its own first byte, and cuts at
    // the deadline exactly.
    let t1 = t0 + TIMEOUT * 20;
    let (wire, _) = written(&mut w, &a, vec![WriterMsg::Frame(f.slice(..5))]);
    read(&mut r, &b, &wire, 1 << 16, t1);
    assert_eq!(left(&mut r, t1 + TIMEOUT / 2), Some(Some(TIMEOUT / 2)));
    r.paused();
    let t2 = t1 + TIMEOUT * 2;
    assert_eq!(
        left(&mut r, t2),
        Some(Some(TIMEOUT)),
        "restarted after a pause"
    );
    assert_eq!(left(&mut r, t2 + TIMEOUT), None, "cut at the deadline");
}

/// A runtime in memory: the queue is a `VecDeque`, shutting the socket
/// down is counted.
#[derive(Debug)]
struct Mem;

#[derive(Debug, Default)]
struct MemSocket {
    shutdowns: AtomicUsize,
}

type MemTx = Arc<Mutex<Option<VecDeque<WriterMsg>>>>;

impl WriterRuntime for Mem {
    type Tx = MemTx;
    type Socket = Arc<MemSocket>;
    type Handle = ();
    fn push(tx: &MemTx, m: WriterMsg) -> bool {
        match &mut *tx.lock().unwrap() {
            Some(q) => {
                q.push_back(m);
                true
            }
            None => false,
        }
    }
    fn shutdown(socket: &Arc<MemSocket>) {
        socket.shutdowns.fetch_add(1, Ordering::SeqCst);
    }
    fn detach(_: ()) {}
}

fn mem_writer() -> (ConnWriter<Mem>, MemTx, Arc<MemSocket>) {
    let tx: MemTx = Arc::new(Mutex::new(Some(VecDeque::new())));
    let socket = Arc::new(MemSocket::default());
    let w = ConnWriter::new(tx.clone(), QueuedLen::default(), socket.clone(), ());
    (w, tx, socket)
}

/// The sending half queues a piece's parts next to each other and counts
/// them; past [`WRITE_QUEUE_LEN_MAX`] it aborts the connection instead;
/// once its writer has gone a send fails and is not counted; dropping it
/// asks the writer to flush and close.
#[test]
fn the_sending_half_queues_counts_and_aborts_past_its_bound() {
    let (w, tx, socket) = mem_writer();
    let body = Bytes::from(vec![1u8; 1000]);
    assert!(w.send_parts(Bytes::from_static(b"head"), body.clone()));
    assert!(w.send(Bytes::from_static(b"x")));
    assert_eq!(w.queued_len(), 4 + 1000 + 1);
    {
        let q = tx.lock().unwrap();
        let q = q.as_ref().unwrap();
        assert_eq!(q.len(), 3, "head, body, frame");
        assert!(
            matches!(&q[1], WriterMsg::Frame(b) if b.as_ptr() == body.as_ptr()),
            "not copied"
        );
    }
    assert!(
        !w.send(Bytes::from(vec![0u8; WRITE_QUEUE_LEN_MAX])),
        "past the bound"
    );
    assert_eq!(socket.shutdowns.load(Ordering::SeqCst), 1, "aborted");
    assert!(
        w.queued().may_read(),
        "a paused reader is let go to find it closed"
    );
    assert_eq!(w.queued_len(), 1005, "the refused frame is not counted");

    let (w, tx, _) = mem_writer();
    *tx.lock().unwrap() = None;
    assert!(!w.send(Bytes::from_static(b"x")), "the writer has gone");
    assert_eq!(w.queued_len(), 0);

    let (w, tx, _) = mem_writer();
    drop(w);
    let q = tx.lock().unwrap();
    assert!(matches!(q.as_ref().unwrap().back(), Some(WriterMsg::Close)));
}

/// A writer that ends however it ends lets a paused reader go.
#[test]
fn a_writer_that_ends_lets_its_paused_reader_go() {
    let queued = QueuedLen::default();
    let w = WriteState::new(queued.clone());
    assert!(queued.try_add(READ_PAUSE_QUEUE_LEN));
    assert!(!queued.may_read());
    drop(w);
    assert!(queued.may_read());
    assert!(!queued.before_frame_blocking(), "no wait once it ended");
}

#[test]
fn a_piece_frames_data_begins_at_the_aligned_byte() {
    let data = Bytes::from(vec![7u8; 100]);
    let mut frame = BytesMut::new();
    p2p_proto::encode_msg(
        &PeerMsg::Piece {
            index: 3,
            data: data.clone(),
        },
        &mut frame,
    );
    assert_eq!(&frame[LARGE_FRAME_ALIGN_AT..], &data[..]);
    let head = PeerMsg::piece_frame_head(3, data.len() as u32);
    assert_eq!(&frame[..LARGE_FRAME_ALIGN_AT], &head[..]);
}

/// `read_now` never waits: nothing in the socket is `None`, what has
/// arrived is read, the peer's close reads as 0, on a blocking socket.
#[test]
fn read_now_takes_only_what_has_arrived() {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    let mut buf = [0u8; 16];
    let t = std::time::Instant::now();
    assert!(super::read_now(&server, &mut buf).is_none());
    assert!(
        t.elapsed() < std::time::Duration::from_secs(1),
        "did not wait"
    );
    client.write_all(b"hello").unwrap();
    // Loopback delivers at once; bounded in case the machine is slow.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let n = loop {
        match super::read_now(&server, &mut buf) {
            Some(r) => break r.unwrap(),
            None if std::time::Instant::now() < deadline => std::thread::yield_now(),
            None => panic!("5 bytes sent on loopback never arrived"),
        }
    };
    assert_eq!(&buf[..n], b"hello");
    drop(client);
    let end = loop {
        match super::read_now(&server, &mut buf) {
            Some(r) => break r.unwrap(),
            None if std::time::Instant::now() < deadline => std::thread::yield_now(),
            None => panic!("the close never arrived"),
        }
    };
    assert_eq!(end, 0);
}
