//! The loopback tests of the thread runtime's connections: that its loops
//! honour what runtime-common's reader and writer decide (frames and a
//! piece cross, a close flushes first, the reader pauses and is let go,
//! a frame held short is cut at its deadline, abort), and its TLS
//! handshakes (deadline, limit) and listener. The decisions themselves are
//! tested once, in memory, in `runtime_common::conn`.

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
        set_options(&s).unwrap();
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
