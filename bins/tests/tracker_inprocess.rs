//! The tracker driver in-process, on each runtime: a one-tracker group on
//! 127.0.0.1:0 takes writes from a raw client, answers the console through
//! the event sink, shuts down cleanly, and a restart on the same data
//! directory (on the same runtime, or the other one) comes back with the
//! same state digest.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use p2p_proto::{
    ClientId, ClientRequest, FrameDecoder, FromTracker, Hello, Outcome, Password, Reply, Request,
    RequestId, Role, TrackerError, TrackerId, UserName, Wire, encode_msg,
};
use p2p_state::tracker::node::{ConsoleCmd, NodeConfig, TrackerEvent};
use p2p_state::tracker::state::TrackerConfig;
use runtime::Runtime;
use runtime_common::tracker::{TrackerHandle, TrackerOptions};

use bins::runtime;

fn start(rt: Runtime, dir: &Path) -> (TrackerHandle, Receiver<TrackerEvent>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let node = NodeConfig::new(
        TrackerId(1),
        vec![(TrackerId(1), addr)],
        TrackerConfig::test(),
    );
    let (tx, rx) = mpsc::channel();
    let opts = TrackerOptions {
        node,
        data_dir: dir.to_path_buf(),
        listener,
        seed: Some(7),
    };
    let h = rt
        .start_tracker(
            opts,
            Box::new(move |e| {
                let _ = tx.send(e.clone());
            }),
        )
        .unwrap();
    (h, rx)
}

struct Client {
    s: runtime_common::tls::ClientStream,
    _id: tempfile::TempDir,
    dec: FrameDecoder,
    buf: BytesMut,
    next: u64,
}

impl Client {
    fn connect(addr: SocketAddr) -> Self {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let id = tempfile::tempdir().unwrap();
        let tls = runtime_common::tls::Identity::load_or_create(id.path())
            .unwrap()
            .tls();
        let s = tls.connect_blocking(s).unwrap().0;
        let mut c = Client {
            s,
            _id: id,
            dec: FrameDecoder::default(),
            buf: BytesMut::new(),
            next: 1,
        };
        c.write(&Hello::new(Role::Client));
        Hello::from_bytes(c.frame()).unwrap();
        c
    }

    fn write<M: Wire>(&mut self, m: &M) {
        let mut b = BytesMut::new();
        encode_msg(m, &mut b);
        self.s.write_all(&b).unwrap();
    }

    fn frame(&mut self) -> bytes::Bytes {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(f) = self.dec.decode(&mut self.buf).unwrap() {
                return f;
            }
            let n = self.s.read(&mut chunk).unwrap();
            assert!(n > 0, "closed");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn call(&mut self, req: Request) -> Outcome {
        let id = self.next;
        self.next += 1;
        let start = Instant::now();
        loop {
            self.write(&ClientRequest {
                client: ClientId([5; 16]),
                id: RequestId(id),
                session: None,
                req: req.clone(),
            });
            let outcome = loop {
                if let FromTracker::Response { id: r, outcome } =
                    FromTracker::from_bytes(self.frame()).unwrap()
                    && r.0 == id
                {
                    break outcome;
                }
            };
            if outcome == Err(TrackerError::NotReady) && start.elapsed() < Duration::from_secs(10) {
                thread::sleep(Duration::from_millis(50));
                continue;
            }
            return outcome;
        }
    }

    fn digest(&mut self) -> p2p_proto::Sha1Hash {
        match self.call(Request::Status) {
            Ok(Reply::Status(s)) => s.digest,
            o => panic!("{o:?}"),
        }
    }
}

fn console_lines(rx: &Receiver<TrackerEvent>) -> Vec<String> {
    let until = Instant::now() + Duration::from_secs(10);
    while let Ok(e) = rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
        if let TrackerEvent::Console(answer) = e {
            return runtime_common::present::console_lines(&answer);
        }
    }
    panic!("no console answer");
}

#[test]
fn on_std() {
    persists_answers_the_console_and_recovers(Runtime::Std, Runtime::Std);
}

#[test]
fn on_smol() {
    persists_answers_the_console_and_recovers(Runtime::Smol, Runtime::Smol);
}

#[test]
fn on_std_then_smol() {
    persists_answers_the_console_and_recovers(Runtime::Std, Runtime::Smol);
}

/// A single tracker on `first`, restarted on `then`.
fn persists_answers_the_console_and_recovers(first: Runtime, then: Runtime) {
    let dir = tempfile::tempdir().unwrap();
    let (h, rx) = start(first, dir.path());
    let mut c = Client::connect(h.local_addr());
    let r = c.call(Request::CreateUser {
        user: UserName::new("dave").unwrap(),
        password: Password::new("pw").unwrap(),
    });
    assert_eq!(r, Ok(Reply::Done));
    let before = c.digest();
    assert!(h.control().console(ConsoleCmd::Status));
    let lines = console_lines(&rx);
    assert!(lines[0].starts_with("tracker 1 (primary)"), "{lines:?}");
    assert_eq!(lines[1], format!("state digest {before}"));
    h.shutdown().unwrap();
    assert!(std::fs::metadata(dir.path().join("log")).unwrap().len() > 0);

    let (h, _rx) = start(then, dir.path());
    let mut c = Client::connect(h.local_addr());
    c.next = 100; // fresh request ids: (client, id) names a request across restarts
    assert_eq!(c.digest(), before);
    let r = c.call(Request::CreateUser {
        user: UserName::new("dave").unwrap(),
        password: Password::new("pw").unwrap(),
    });
    assert!(matches!(r, Err(TrackerError::UserExists { .. })), "{r:?}");
    h.shutdown().unwrap();
}
