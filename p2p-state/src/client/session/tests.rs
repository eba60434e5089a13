//! The session's own failure detection at its bounds (issue 17): a tracker
//! that goes silent (no close, no refusal) is left on the session's
//! deadlines alone, and the session resumes on the next one.

use std::net::SocketAddr;

use p2p_proto::{
    ClientRequest, FromTracker, Hello, KeyId, Reply, Request, Role, SessionToken, UserName, Wire,
};

use super::*;

const T0: Instant = Instant(1_000_000);

fn addrs() -> Vec<SocketAddr> {
    vec![
        SocketAddr::from(([127, 0, 0, 1], 9901)),
        SocketAddr::from(([127, 0, 0, 1], 9902)),
    ]
}

struct H {
    s: ClientSession,
    now: Instant,
    out: Vec<SessionOutput>,
}

impl H {
    fn new() -> Self {
        let s = ClientSession::new(SessionConfig::new(addrs(), 0), 1, T0);
        let mut h = H {
            s,
            now: T0,
            out: Vec::new(),
        };
        h.drain();
        h
    }

    fn cfg(&self) -> &SessionConfig {
        &self.s.cfg
    }

    fn drain(&mut self) {
        while let Some(o) = self.s.poll_output() {
            self.out.push(o);
        }
    }

    /// Fires every deadline due by `until`, in order; the clock ends there.
    fn run_until(&mut self, until: Instant) {
        for _ in 0..1000 {
            match self.s.poll_timeout() {
                Some((t, _)) if t <= until => {
                    self.now = self.now.max(t);
                    self.s.handle_timeout(self.now);
                    self.drain();
                }
                _ => break,
            }
        }
        self.now = self.now.max(until);
    }

    /// The connection attempt the session asked for last (conn, tracker).
    fn last_connect(&self) -> Option<(SessionConn, SocketAddr)> {
        self.out.iter().rev().find_map(|o| match o {
            SessionOutput::Connect { conn, addr } => Some((*conn, *addr)),
            _ => None,
        })
    }

    fn connects(&self) -> usize {
        let dial = |o: &&SessionOutput| matches!(o, SessionOutput::Connect { .. });
        self.out.iter().filter(dial).count()
    }

    /// Connects and hears the tracker's hello on the last attempt.
    fn up(&mut self) -> SessionConn {
        let (conn, _) = self.last_connect().expect("a dial");
        let peer = KeyId([0x54; 32]);
        self.input(SessionInput::Connected { conn, peer });
        let payload = Hello::new(Role::Server).to_bytes();
        self.input(SessionInput::Frame { conn, payload });
        conn
    }

    /// The requests sent since output `from`.
    fn sent(&self, from: usize) -> Vec<ClientRequest> {
        self.out[from..]
            .iter()
            .filter_map(|o| match o {
                SessionOutput::Send {
                    msg: TrackerOut::Request(r),
                    ..
                } => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    fn answer(&mut self, conn: SessionConn, req: &ClientRequest, reply: Reply) {
        let f = FromTracker::Response {
            id: req.id,
            outcome: Ok(reply),
        };
        let payload = f.to_bytes();
        self.input(SessionInput::Frame { conn, payload });
    }

    /// One input, then every output it caused.
    fn input(&mut self, input: SessionInput) {
        self.s.handle_input(self.now, input);
        self.drain();
    }

    fn command(&mut self, tag: CommandTag, req: Request) {
        self.input(SessionInput::Command { tag, req });
    }
}

#[test]
fn an_idle_session_leaves_a_silent_tracker_at_ping_plus_request_timeout() {
    let mut h = H::new();
    h.up();
    let bound = h.now + h.cfg().ping_interval + h.cfg().request_timeout;
    // Idle: a ping goes out, the tracker says nothing, no close comes.
    h.run_until(Instant(bound.0 - 1));
    assert_eq!(h.connects(), 1, "left the tracker before the bound");
    assert!(
        h.sent(0).iter().any(|r| r.req == Request::Ping),
        "an idle session pings"
    );
    h.run_until(bound);
    assert_eq!(h.last_connect().map(|(_, a)| a), Some(addrs()[1]));
}

#[test]
fn a_request_unanswered_by_its_deadline_moves_to_the_next_tracker_still_logged_in() {
    let mut h = H::new();
    let conn = h.up();
    let from = h.out.len();
    h.command(1, Request::ListGroups);
    let req = h.sent(from).pop().expect("the command went out");
    // Log in first, so a switch must resume the session.
    let token = SessionToken([5; 16]);
    h.s.token = Some(token);
    h.s.user = Some(UserName::new("alice").unwrap());
    let sent_at = h.now;
    h.run_until(Instant(sent_at.0 + h.cfg().request_timeout.0 - 1));
    assert_eq!(h.connects(), 1, "gave up before the request deadline");
    h.run_until(sent_at + h.cfg().request_timeout);
    assert_eq!(h.last_connect().map(|(_, a)| a), Some(addrs()[1]));
    // On the next tracker: resume first, then the same request again.
    let from = h.out.len();
    let conn2 = h.up();
    assert_ne!(conn, conn2);
    let sent = h.sent(from);
    assert_eq!(sent[0].req, Request::Resume);
    assert_eq!(sent[0].session, Some(token));
    let resume = sent[0].clone();
    let user = UserName::new("alice").unwrap();
    h.answer(conn2, &resume, Reply::Resumed { user });
    let again = h.sent(from).pop().expect("re-sent");
    assert_eq!((again.id, again.req), (req.id, req.req));
}

/// Seed 498 found it: a tracker host vanished between the connection and
/// its hello, and a command issued meanwhile cancelled the hello deadline;
/// the session then waited for good.
#[test]
fn a_tracker_that_never_says_hello_is_left_at_the_deadline() {
    let mut h = H::new();
    let (conn, _) = h.last_connect().unwrap();
    let peer = KeyId([0x54; 32]);
    h.input(SessionInput::Connected { conn, peer });
    let deadline = h.now + h.cfg().request_timeout;
    h.now = Instant(h.now.0 + 10);
    h.command(1, Request::ListGroups);
    h.run_until(Instant(deadline.0 - 1));
    assert_eq!(h.connects(), 1);
    h.run_until(deadline);
    assert_eq!(h.last_connect().map(|(_, a)| a), Some(addrs()[1]));
}

#[test]
fn a_dial_that_never_completes_is_given_up_at_the_deadline() {
    let mut h = H::new();
    // Neither connected nor refused: the host is gone, the OS still tries.
    let deadline = h.now + h.cfg().request_timeout;
    h.run_until(Instant(deadline.0 - 1));
    assert_eq!(h.connects(), 1);
    h.run_until(deadline);
    assert_eq!(h.connects(), 2);
    assert_eq!(h.last_connect().map(|(_, a)| a), Some(addrs()[1]));
}

// ------------------------------------------------------------ tracker keys (issue 15)

const KEY_A: KeyId = KeyId([0xa1; 32]);
const KEY_B: KeyId = KeyId([0xb2; 32]);

impl H {
    fn with_pins(pins: Vec<Option<KeyId>>) -> Self {
        let mut cfg = SessionConfig::new(addrs(), 0);
        cfg.tracker_keys = pins;
        let s = ClientSession::new(cfg, 1, T0);
        let mut h = H {
            s,
            now: T0,
            out: Vec::new(),
        };
        h.drain();
        h
    }

    /// Fires deadlines until the session dials again.
    fn until_dial(&mut self) {
        let before = self.connects();
        for _ in 0..100 {
            if self.connects() > before {
                return;
            }
            let (t, _) = self.s.poll_timeout().expect("a deadline");
            self.run_until(t);
        }
        panic!("the session never dialed again");
    }

    fn pins_out(&self) -> Vec<(usize, KeyId)> {
        self.out
            .iter()
            .filter_map(|o| match o {
                SessionOutput::PinTracker { index, key } => Some((*index, *key)),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn a_tracker_with_another_key_than_its_pin_hears_nothing_and_the_session_fails_over() {
    let mut h = H::with_pins(vec![Some(KEY_A), None]);
    h.command(1, Request::ListGroups);
    let (conn, addr) = h.last_connect().unwrap();
    assert_eq!(addr, addrs()[0]);
    let from = h.out.len();
    h.input(SessionInput::Connected { conn, peer: KEY_B });
    let after = &h.out[from..];
    assert!(
        !after
            .iter()
            .any(|o| matches!(o, SessionOutput::Send { .. })),
        "not even a hello to an impostor: {after:?}"
    );
    assert!(after.contains(&SessionOutput::Close { conn }));
    let refused = after.iter().find_map(|o| match o {
        SessionOutput::Event(SessionEvent::TrackerKeyRefused(m)) => Some(m.clone()),
        _ => None,
    });
    let m = refused.expect("the user is told");
    let text = m.to_string();
    for part in [
        "127.0.0.1:9901",
        &KEY_B.to_string(),
        &KEY_A.to_string(),
        "known_trackers",
        "update that line",
    ] {
        assert!(text.contains(part), "{part:?} missing from {text}");
    }
    assert!(h.pins_out().is_empty(), "a pin is never overwritten");
    assert_eq!(h.s.tracker_key(0), Some(KEY_A));
    // Failed over to the next tracker, which is trusted on first use.
    let (conn2, addr2) = h.last_connect().unwrap();
    assert_eq!(addr2, addrs()[1]);
    assert_ne!(conn2, conn);
    let conn2 = h.up();
    let req = h
        .sent(0)
        .pop()
        .expect("the command went to the next tracker");
    assert_eq!(req.req, Request::ListGroups);
    assert_eq!(h.pins_out(), vec![(1, KeyId([0x54; 32]))]);
    h.answer(conn2, &req, Reply::Groups(vec![]));
    assert!(h.out.iter().any(|o| matches!(
        o,
        SessionOutput::Done {
            tag: 1,
            result: Ok(_)
        }
    )));
}

#[test]
fn an_unpinned_tracker_is_pinned_once_then_held_to_its_key() {
    let mut h = H::with_pins(vec![None, None]);
    let (conn, _) = h.last_connect().unwrap();
    h.input(SessionInput::Connected { conn, peer: KEY_A });
    assert_eq!(h.pins_out(), vec![(0, KEY_A)]);
    assert!(
        h.out
            .iter()
            .any(|o| matches!(o, SessionOutput::Send { .. })),
        "hello sent once the key is pinned"
    );
    assert_eq!(h.s.tracker_key(0), Some(KEY_A));
    // The connection drops; tracker 1 is unreachable; back at tracker 0.
    h.input(SessionInput::Closed { conn });
    let (c1, a1) = h.last_connect().unwrap();
    assert_eq!(a1, addrs()[1]);
    h.input(SessionInput::ConnectFailed { conn: c1 });
    h.until_dial();
    let (c0, a0) = h.last_connect().unwrap();
    assert_eq!(a0, addrs()[0]);
    h.input(SessionInput::Connected {
        conn: c0,
        peer: KEY_A,
    });
    assert_eq!(h.pins_out().len(), 1, "the same key is not pinned again");
    h.input(SessionInput::Closed { conn: c0 });
    let (c1, _) = h.last_connect().unwrap();
    h.input(SessionInput::ConnectFailed { conn: c1 });
    h.until_dial();
    let (c0, _) = h.last_connect().unwrap();
    let from = h.out.len();
    h.input(SessionInput::Connected {
        conn: c0,
        peer: KEY_B,
    });
    assert!(
        h.out[from..]
            .iter()
            .any(|o| matches!(o, SessionOutput::Event(SessionEvent::TrackerKeyRefused(_)))),
        "a key learned on first use is held like a configured one"
    );
    assert_eq!(h.pins_out().len(), 1);
}
