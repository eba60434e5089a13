//! Issue 16 §4 and §5 against the real tracker driver, on each runtime: one
//! account at its group quota leaves others able to create groups, and
//! guessing a password backs the user name off (the right password
//! included) without holding back another user. A one-tracker group on
//! 127.0.0.1:0, raw clients; a few hundred milliseconds each.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use p2p_proto::{
    ClientId, ClientRequest, FrameDecoder, FromTracker, GroupName, Hello, Outcome, Password, Reply,
    Request, RequestId, Role, SessionToken, TrackerError, TrackerId, UserName, Wire, encode_msg,
};
use p2p_state::tracker::limits::GROUPS_OWNED_PER_USER_MAX;
use p2p_state::tracker::node::{LOGIN_FAILURES_FREE_PER_USER, NodeConfig};
use p2p_state::tracker::state::TrackerConfig;
use runtime::Runtime;
use runtime_common::tracker::{TrackerHandle, TrackerOptions};

use bins::runtime;

/// How long any one answer may take before the test fails.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

fn start(rt: Runtime, dir: &std::path::Path) -> TrackerHandle {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let node = NodeConfig::new(
        TrackerId(1),
        vec![(TrackerId(1), addr)],
        TrackerConfig::test(),
    );
    let opts = TrackerOptions {
        node,
        data_dir: dir.to_path_buf(),
        listener,
        seed: Some(7),
    };
    rt.start_tracker(opts, Box::new(|_| {})).unwrap()
}

struct Client {
    s: runtime_common::tls::ClientStream,
    _id: tempfile::TempDir,
    dec: FrameDecoder,
    buf: BytesMut,
    client: ClientId,
    session: Option<SessionToken>,
    next: u64,
}

impl Client {
    fn connect(addr: SocketAddr, n: u8) -> Self {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(ANSWER_TIMEOUT)).unwrap();
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
            client: ClientId([n; 16]),
            session: None,
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
            let n = self
                .s
                .read(&mut chunk)
                .expect("an answer within ANSWER_TIMEOUT");
            assert!(n > 0, "closed");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends `req` and waits for its answer; `NotReady` (the tracker
    /// still starting) is retried until [`ANSWER_TIMEOUT`].
    fn call(&mut self, req: Request) -> Outcome {
        let id = self.next;
        self.next += 1;
        let start = Instant::now();
        loop {
            let outcome = self.once(id, req.clone());
            if outcome == Err(TrackerError::NotReady) && start.elapsed() < ANSWER_TIMEOUT {
                thread::sleep(Duration::from_millis(50));
                continue;
            }
            if let Ok(Reply::LoggedIn { token, .. }) = &outcome {
                self.session = Some(*token);
            }
            return outcome;
        }
    }

    fn once(&mut self, id: u64, req: Request) -> Outcome {
        self.write(&ClientRequest {
            client: self.client,
            id: RequestId(id),
            session: self.session,
            req,
        });
        loop {
            if let FromTracker::Response { id: r, outcome } =
                FromTracker::from_bytes(self.frame()).unwrap()
                && r.0 == id
            {
                return outcome;
            }
        }
    }

    fn login(&mut self, user: &str, password: &str) -> Outcome {
        self.call(Request::Login {
            user: UserName::new(user).unwrap(),
            password: Password::new(password).unwrap(),
        })
    }

    fn sign_up(&mut self, user: &str, password: &str) {
        let create = Request::CreateUser {
            user: UserName::new(user).unwrap(),
            password: Password::new(password).unwrap(),
        };
        assert_eq!(self.call(create), Ok(Reply::Done));
        assert!(matches!(
            self.login(user, password),
            Ok(Reply::LoggedIn { .. })
        ));
    }

    fn create_group(&mut self, g: &str) -> Outcome {
        self.call(Request::CreateGroup {
            group: GroupName::new(g).unwrap(),
        })
    }
}

fn one_account_cannot_exhaust_the_groups(rt: Runtime) {
    let dir = tempfile::tempdir().unwrap();
    let h = start(rt, dir.path());
    let mut m = Client::connect(h.local_addr(), 1);
    m.sign_up("mallory", "pm");
    for i in 0..GROUPS_OWNED_PER_USER_MAX {
        assert_eq!(m.create_group(&format!("m{i}")), Ok(Reply::Done));
    }
    match m.create_group("one-more") {
        Err(TrackerError::LimitReached { what }) => {
            assert!(
                what.to_string().contains("GROUPS_OWNED_PER_USER_MAX"),
                "{what}"
            )
        }
        other => panic!("mallory past the quota: {other:?}"),
    }
    let mut b = Client::connect(h.local_addr(), 2);
    b.sign_up("bob", "pb");
    assert_eq!(b.create_group("bobs"), Ok(Reply::Done));
    h.shutdown().unwrap();
}

fn guessing_backs_the_name_off_but_not_others(rt: Runtime) {
    let dir = tempfile::tempdir().unwrap();
    let h = start(rt, dir.path());
    Client::connect(h.local_addr(), 1).sign_up("alice", "right");
    Client::connect(h.local_addr(), 2).sign_up("bob", "pb");
    let mut m = Client::connect(h.local_addr(), 3);
    for _ in 0..=LOGIN_FAILURES_FREE_PER_USER {
        assert_eq!(
            m.login("alice", "guess"),
            Err(TrackerError::WrongUserOrPassword)
        );
    }
    let refused = m.login("alice", "right");
    assert!(
        matches!(refused, Err(TrackerError::LoginBackoff { retry_after_secs }) if retry_after_secs >= 1),
        "the right password right after the guesses: {refused:?}"
    );
    let text = refused.unwrap_err().to_string();
    assert!(text.contains("retry in"), "{text}");
    let mut b = Client::connect(h.local_addr(), 4);
    assert!(matches!(b.login("bob", "pb"), Ok(Reply::LoggedIn { .. })));
    h.shutdown().unwrap();
}

#[test]
fn quota_on_std() {
    one_account_cannot_exhaust_the_groups(Runtime::Std);
}

#[test]
fn quota_on_smol() {
    one_account_cannot_exhaust_the_groups(Runtime::Smol);
}

#[test]
fn login_backoff_on_std() {
    guessing_backs_the_name_off_but_not_others(Runtime::Std);
}

#[test]
fn login_backoff_on_smol() {
    guessing_backs_the_name_off_but_not_others(Runtime::Smol);
}
