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
                SessionOutput::Send { frame, .. } => ClientRequest::from_bytes(frame.clone()).ok(),
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
