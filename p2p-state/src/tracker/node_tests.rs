//! The tracker machine end to end in memory: N trackers and scripted
//! clients exchanging real encoded frames (hello, requests, replication),
//! with instant disks, crashes and restarts.

use bytes::BytesMut;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;

use p2p_proto::{
    ClientId, ClientRequest, FrameDecoder, FromTracker, GroupName, Hello, KeyId, Outcome, Password,
    Reply, Request, RequestId, Role as WireRole, SessionToken, TrackerError, TrackerId, UserName,
    Wire, encode_msg,
};

use super::*;
use crate::client::session::*;
use crate::machine::drain;
use crate::time::{Duration, Instant};
use crate::tracker::state::TrackerConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Owner {
    Tracker(u16),
    Client(u16),
    Session(u16),
}

type Disk = OnDisk;

struct Net {
    trackers: Vec<Option<Tracker>>,
    disks: Vec<Disk>,
    /// Connection end -> (owner, the other end).
    ends: BTreeMap<ConnId, (Owner, ConnId)>,
    decoders: BTreeMap<ConnId, (FrameDecoder, BytesMut)>,
    /// Messages received by clients, per connection end.
    inbox: BTreeMap<ConnId, Vec<FromTracker>>,
    hellos: BTreeMap<ConnId, Vec<Hello>>,
    pending: VecDeque<(Owner, Input)>,
    events: Vec<(u16, TrackerEvent)>,
    sessions: Vec<ClientSession>,
    /// Session k's connection number -> net end, and back.
    session_ends: BTreeMap<(u16, SessionConn), ConnId>,
    done: Vec<(u16, CommandTag, Result<Reply, ClientError>)>,
    session_events: Vec<(u16, SessionEvent)>,
    next_conn: ConnId,
    now: Instant,
    /// Password work held back instead of run at once (`Some`), to see the
    /// tracker serve others meanwhile.
    held_passwords: Option<Vec<(u16, u64, PasswordWork)>>,
    /// Ends whose writes are black-holed (no close is ever heard).
    muted: BTreeSet<ConnId>,
}

fn addr_of(t: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7000 + t))
}

/// The TLS key of the node numbered like [`addr_of`]: trackers 1.., clients
/// and sessions 100 + k.
fn key_of(t: u16) -> KeyId {
    let mut k = [0x4b; 32];
    k[..2].copy_from_slice(&t.to_be_bytes());
    KeyId(k)
}

fn node_cfg(id: u16, n: u16) -> NodeConfig {
    let trackers = (1..=n).map(|i| (TrackerId(i), addr_of(i))).collect();
    let mut c = NodeConfig::new(TrackerId(id), trackers, TrackerConfig::test());
    c.offline_grace = Duration::from_millis(500);
    c
}

impl Net {
    fn new(n: u16) -> Self {
        Self::new_with(n, |_| {})
    }

    /// [`Net::new`] with every tracker's config changed by `tweak`.
    fn new_with(n: u16, tweak: impl Fn(&mut NodeConfig)) -> Self {
        let now = Instant(1_700_000_000_000);
        let mut net = Net {
            trackers: (1..=n)
                .map(|i| {
                    let mut cfg = node_cfg(i, n);
                    tweak(&mut cfg);
                    Some(Tracker::new(cfg, i as u64, now))
                })
                .collect(),
            disks: vec![Disk::default(); n as usize],
            ends: BTreeMap::new(),
            decoders: BTreeMap::new(),
            inbox: BTreeMap::new(),
            hellos: BTreeMap::new(),
            pending: VecDeque::new(),
            events: vec![],
            sessions: vec![],
            session_ends: BTreeMap::new(),
            done: vec![],
            session_events: vec![],
            next_conn: 1,
            held_passwords: None,
            muted: BTreeSet::new(),
            now,
        };
        for i in 1..=n {
            net.drain(i);
        }
        net.settle();
        net
    }

    fn t(&mut self, i: u16) -> &mut Tracker {
        self.trackers[i as usize - 1].as_mut().expect("tracker up")
    }

    fn pair(&mut self, a: Owner, b: Owner) -> (ConnId, ConnId) {
        let (x, y) = (self.next_conn, self.next_conn + 1);
        self.next_conn += 2;
        self.ends.insert(x, (a, y));
        self.ends.insert(y, (b, x));
        (x, y)
    }

    fn drain(&mut self, i: u16) {
        while let Some(o) = self.trackers[i as usize - 1]
            .as_mut()
            .and_then(|t| t.poll_output())
        {
            self.execute(i, o);
        }
    }

    fn execute(&mut self, i: u16, o: Output) {
        match o {
            Output::Send { conn, msg } => {
                let mut buf = BytesMut::new();
                msg.encode_frame(&mut buf);
                self.deliver(conn, buf);
            }
            Output::Close { conn, .. } => self.close(conn),
            Output::Dial { tracker, .. } => {
                let target = tracker.0;
                if self.trackers[target as usize - 1].is_none() {
                    self.pending
                        .push_back((Owner::Tracker(i), Input::DialFailed { tracker }));
                    return;
                }
                let (a, b) = self.pair(Owner::Tracker(i), Owner::Tracker(target));
                self.pending.push_back((
                    Owner::Tracker(target),
                    Input::Accepted {
                        conn: b,
                        addr: addr_of(i),
                        peer: key_of(i),
                    },
                ));
                self.pending.push_back((
                    Owner::Tracker(i),
                    Input::Dialed {
                        conn: a,
                        tracker,
                        peer: key_of(target),
                    },
                ));
            }
            Output::Persist {
                from_index,
                entries,
            } => {
                let d = &mut self.disks[i as usize - 1];
                d.entries.retain(|e| e.pos.index < from_index);
                let last = entries
                    .last()
                    .map(|e| e.pos.index)
                    .unwrap_or(from_index - 1);
                d.entries.extend(entries);
                self.pending
                    .push_back((Owner::Tracker(i), Input::Persisted { index: last }));
            }
            Output::PersistSnapshot {
                at,
                data,
                reset_log,
            } => {
                let d = &mut self.disks[i as usize - 1];
                d.snapshot = Some((at, data));
                if reset_log {
                    d.entries.clear();
                } else {
                    d.entries.retain(|e| e.pos.index > at.index);
                }
            }
            Output::PersistResubmit { entries } => {
                self.disks[i as usize - 1].resubmit = entries;
            }
            Output::Password { job, work } => {
                if let Some(held) = self.held_passwords.as_mut() {
                    return held.push((i, job, work));
                }
                let done = work.run();
                self.pending
                    .push_back((Owner::Tracker(i), Input::PasswordDone { job, done }));
            }
            Output::PinTracker { .. } => {}
            Output::Event(e) => self.events.push((i, e)),
        }
    }

    /// Bytes written on end `from` arrive at the other end.
    fn deliver(&mut self, from: ConnId, bytes: BytesMut) {
        if self.muted.contains(&from) {
            return;
        }
        let Some(&(_, to)) = self.ends.get(&from) else {
            return;
        };
        let Some(&(owner, _)) = self.ends.get(&to) else {
            return;
        };
        let (dec, buf) = self
            .decoders
            .entry(to)
            .or_insert_with(|| (FrameDecoder::default(), BytesMut::new()));
        buf.extend_from_slice(&bytes);
        let mut frames = vec![];
        while let Ok(Some(f)) = dec.decode(buf) {
            frames.push(f);
        }
        for payload in frames {
            match owner {
                Owner::Tracker(_) => self
                    .pending
                    .push_back((owner, Input::Frame { conn: to, payload })),
                Owner::Session(k) => {
                    let sc = self.session_conn(k, to);
                    let now = self.now;
                    self.sessions[k as usize]
                        .handle_input(now, SessionInput::Frame { conn: sc, payload });
                    self.drain_session(k);
                }
                Owner::Client(_) => {
                    if let Ok(h) = Hello::from_bytes(payload.clone()) {
                        self.hellos.entry(to).or_default().push(h);
                    } else {
                        let m =
                            FromTracker::from_bytes(payload).expect("tracker sends valid frames");
                        self.inbox.entry(to).or_default().push(m);
                    }
                }
            }
        }
    }

    fn close(&mut self, end: ConnId) {
        if self.muted.contains(&end) {
            self.ends.remove(&end); // the close is black-holed too
            return;
        }
        let Some((_, other)) = self.ends.remove(&end) else {
            return;
        };
        match self.ends.remove(&other) {
            Some((owner @ Owner::Tracker(_), _)) => self
                .pending
                .push_back((owner, Input::Closed { conn: other })),
            Some((Owner::Session(k), _)) => {
                let sc = self.session_conn(k, other);
                let now = self.now;
                self.sessions[k as usize].handle_input(now, SessionInput::Closed { conn: sc });
                self.drain_session(k);
            }
            _ => {}
        }
    }

    fn session_conn(&self, k: u16, end: ConnId) -> SessionConn {
        self.session_ends
            .iter()
            .find(|(key, e)| key.0 == k && **e == end)
            .map(|(key, _)| key.1)
            .unwrap_or(0)
    }

    fn add_session(&mut self, first: u16) -> u16 {
        let n = self.trackers.len() as u16;
        let cfg = SessionConfig::new((1..=n).map(addr_of).collect(), first as usize - 1);
        let k = self.sessions.len() as u16;
        self.sessions
            .push(ClientSession::new(cfg, 1000 + k as u64, self.now));
        self.drain_session(k);
        self.settle();
        k
    }

    fn drain_session(&mut self, k: u16) {
        // The session's outputs are taken out before each is executed:
        // executing one may feed it again (the single-mutation rule).
        let mut outs = VecDeque::new();
        loop {
            outs.extend(drain(&mut self.sessions[k as usize]));
            let Some(o) = outs.pop_front() else { return };
            self.session_output(k, o);
        }
    }

    fn session_output(&mut self, k: u16, o: SessionOutput) {
        {
            match o {
                SessionOutput::Connect { conn, addr } => {
                    let t = addr.port() - 7000;
                    let now = self.now;
                    if self.trackers[t as usize - 1].is_none() {
                        self.sessions[k as usize]
                            .handle_input(now, SessionInput::ConnectFailed { conn });
                        return;
                    }
                    let (c, s) = self.pair(Owner::Session(k), Owner::Tracker(t));
                    self.session_ends.insert((k, conn), c);
                    self.pending.push_back((
                        Owner::Tracker(t),
                        Input::Accepted {
                            conn: s,
                            addr: addr_of(100 + k),
                            peer: key_of(100 + k),
                        },
                    ));
                    let peer = key_of(t);
                    self.sessions[k as usize]
                        .handle_input(now, SessionInput::Connected { conn, peer });
                }
                SessionOutput::Send { conn, frame } => {
                    if let Some(&end) = self.session_ends.get(&(k, conn)) {
                        let mut b = BytesMut::new();
                        p2p_proto::encode_frame(&frame, &mut b);
                        self.deliver(end, b);
                    }
                }
                SessionOutput::Close { conn } => {
                    if let Some(end) = self.session_ends.remove(&(k, conn)) {
                        self.close(end);
                    }
                }
                SessionOutput::Done { tag, result } => self.done.push((k, tag, result)),
                SessionOutput::Event(e) => self.session_events.push((k, e)),
                SessionOutput::PinTracker { .. } => {}
            }
        }
    }

    fn command(&mut self, k: u16, tag: CommandTag, req: Request) {
        let now = self.now;
        self.sessions[k as usize].handle_input(now, SessionInput::Command { tag, req });
        self.drain_session(k);
    }

    fn result(&self, k: u16, tag: CommandTag) -> Vec<Result<Reply, ClientError>> {
        self.done
            .iter()
            .filter(|(s, t, _)| *s == k && *t == tag)
            .map(|(_, _, r)| r.clone())
            .collect()
    }

    /// Processes queued inputs until none are left.
    fn settle(&mut self) {
        for _ in 0..100_000 {
            let Some((owner, input)) = self.pending.pop_front() else {
                return;
            };
            if let Owner::Tracker(i) = owner
                && self.trackers[i as usize - 1].is_some()
            {
                let now = self.now;
                self.t(i).handle_input(now, input);
                self.drain(i);
            }
        }
        panic!("did not settle");
    }

    /// Advances simulated time by `ms`, firing timers in order.
    fn run(&mut self, ms: u64) {
        let until = self.now + Duration(ms);
        for _ in 0..100_000 {
            self.settle();
            let trackers = (1..=self.trackers.len() as u16).filter_map(|i| {
                self.trackers[i as usize - 1]
                    .as_ref()
                    .and_then(|t| t.poll_timeout())
                    .map(|(t, _)| (t, Owner::Tracker(i)))
            });
            let sessions = (0..self.sessions.len() as u16).filter_map(|k| {
                self.sessions[k as usize]
                    .poll_timeout()
                    .map(|(t, _)| (t, Owner::Session(k)))
            });
            let next = trackers.chain(sessions).min();
            match next {
                Some((t, owner)) if t <= until => {
                    self.now = self.now.max(t);
                    let now = self.now;
                    match owner {
                        Owner::Tracker(i) => {
                            self.t(i).handle_timeout(now);
                            self.drain(i);
                        }
                        Owner::Session(k) => {
                            self.sessions[k as usize].handle_timeout(now);
                            self.drain_session(k);
                        }
                        Owner::Client(_) => {}
                    }
                }
                _ => {
                    self.now = until;
                    return;
                }
            }
        }
        panic!("livelock");
    }

    fn crash(&mut self, i: u16) {
        self.trackers[i as usize - 1] = None;
        let mine: Vec<ConnId> = self
            .ends
            .iter()
            .filter(|(_, (o, _))| *o == Owner::Tracker(i))
            .map(|(&c, _)| c)
            .collect();
        for c in mine {
            self.close(c);
        }
        self.settle();
    }

    fn restart(&mut self, i: u16) {
        let n = self.trackers.len() as u16;
        let d = self.disks[i as usize - 1].clone();
        let t = Tracker::recover(node_cfg(i, n), 100 + i as u64, self.now, d).unwrap();
        self.trackers[i as usize - 1] = Some(t);
        self.drain(i);
        self.settle();
        // Lower-numbered trackers redial on their own; nudge them now.
        self.run(1000);
    }

    /// A client connection to tracker `t`, hello done.
    fn connect_client(&mut self, client: u16, t: u16) -> ConnId {
        self.connect_client_from(client, t, SocketAddr::from(([127, 0, 0, 1], 9000 + client)))
    }

    /// A client connection to tracker `t` the tracker sees come from `addr`.
    fn connect_client_from(&mut self, client: u16, t: u16, addr: SocketAddr) -> ConnId {
        let (c, s) = self.pair(Owner::Client(client), Owner::Tracker(t));
        let peer = key_of(100 + client);
        self.pending.push_back((
            Owner::Tracker(t),
            Input::Accepted {
                conn: s,
                addr,
                peer,
            },
        ));
        self.settle();
        let mut b = BytesMut::new();
        encode_msg(&Hello::new(WireRole::Client), &mut b);
        self.deliver(c, b);
        self.settle();
        c
    }

    fn raw(&mut self, conn: ConnId, bytes: &[u8]) {
        self.deliver(conn, BytesMut::from(bytes));
        self.settle();
    }

    fn digests(&self) -> Vec<p2p_proto::Sha1Hash> {
        self.trackers
            .iter()
            .flatten()
            .map(|t| t.state().digest())
            .collect()
    }
}

/// A scripted client: one tracker connection at a time, like the real one.
struct Client {
    id: u16,
    conn: ConnId,
    client: ClientId,
    token: Option<SessionToken>,
    next: u64,
}

impl Client {
    fn new(net: &mut Net, id: u16, t: u16) -> Self {
        let conn = net.connect_client(id, t);
        Client {
            id,
            conn,
            client: ClientId([id as u8; 16]),
            token: None,
            next: 1,
        }
    }

    fn send_id(&mut self, net: &mut Net, id: u64, req: Request) {
        let r = ClientRequest {
            client: self.client,
            id: RequestId(id),
            session: self.token,
            req,
        };
        let mut b = BytesMut::new();
        encode_msg(&r, &mut b);
        net.deliver(self.conn, b);
    }

    fn response(&self, net: &Net, id: u64) -> Option<Outcome> {
        net.inbox
            .get(&self.conn)?
            .iter()
            .rev()
            .find_map(|m| match m {
                FromTracker::Response { id: r, outcome } if r.0 == id => Some(outcome.clone()),
                _ => None,
            })
    }

    /// Creates user `user` and logs in as it (both must succeed).
    fn sign_up(&mut self, net: &mut Net, user: &str, password: &str) {
        let create = Request::CreateUser {
            user: u(user),
            password: pw(password),
        };
        assert!(self.call(net, create).is_ok(), "create_user {user}");
        let login = Request::Login {
            user: u(user),
            password: pw(password),
        };
        assert!(self.call(net, login).is_ok(), "login {user}");
    }

    /// Sends a request and runs the network until it is answered.
    fn call(&mut self, net: &mut Net, req: Request) -> Outcome {
        let id = self.next;
        self.next += 1;
        self.send_id(net, id, req);
        for _ in 0..50 {
            net.run(20);
            if let Some(o) = self.response(net, id) {
                if let Ok(Reply::LoggedIn { token, .. }) = &o {
                    self.token = Some(*token);
                }
                return o;
            }
        }
        panic!("no answer to request {id} of client {}", self.id);
    }

    fn move_to(&mut self, net: &mut Net, t: u16) {
        net.close(self.conn);
        net.settle();
        self.conn = net.connect_client(self.id, t);
    }
}

fn u(s: &str) -> UserName {
    UserName::new(s).unwrap()
}
fn g(s: &str) -> GroupName {
    GroupName::new(s).unwrap()
}
fn pw(s: &str) -> Password {
    Password::new(s).unwrap()
}

fn setup() -> Net {
    let mut net = Net::new(2);
    net.run(3000);
    assert!(net.t(1).is_primary(), "tracker 1 should lead");
    net
}

#[test]
fn trackers_connect_and_print_the_seed_line() {
    let net = setup();
    assert!(net.events.iter().any(|(i, e)| *i == 2
        && *e
            == TrackerEvent::ConnectedToTracker {
                tracker: TrackerId(1)
            }));
    assert!(net.events.iter().any(|(i, e)| *i == 1
        && *e
            == TrackerEvent::ConnectedToTracker {
                tracker: TrackerId(2)
            }));
}

#[test]
fn user_flow_on_the_primary_and_the_backup_converges() {
    let mut net = setup();
    let mut a = Client::new(&mut net, 1, 1);
    assert_eq!(
        a.call(
            &mut net,
            Request::CreateUser {
                user: u("alice"),
                password: pw("pw")
            }
        ),
        Ok(Reply::Done)
    );
    assert!(matches!(
        a.call(
            &mut net,
            Request::Login {
                user: u("alice"),
                password: pw("pw")
            }
        ),
        Ok(Reply::LoggedIn { .. })
    ));
    assert_eq!(
        a.call(&mut net, Request::CreateGroup { group: g("g1") }),
        Ok(Reply::Done)
    );
    // A second client on the backup: its writes are forwarded.
    let mut b = Client::new(&mut net, 2, 2);
    assert_eq!(
        b.call(
            &mut net,
            Request::CreateUser {
                user: u("bob"),
                password: pw("pw")
            }
        ),
        Ok(Reply::Done)
    );
    assert!(matches!(
        b.call(
            &mut net,
            Request::Login {
                user: u("bob"),
                password: pw("pw")
            }
        ),
        Ok(Reply::LoggedIn { .. })
    ));
    assert_eq!(
        b.call(&mut net, Request::JoinGroup { group: g("g1") }),
        Ok(Reply::Done)
    );
    // The backup reads its own write at once.
    let Ok(Reply::Groups(gs)) = b.call(&mut net, Request::ListGroups) else {
        panic!()
    };
    assert!(gs[0].pending);
    assert_eq!(
        a.call(
            &mut net,
            Request::AcceptRequest {
                group: g("g1"),
                user: u("bob")
            }
        ),
        Ok(Reply::Done)
    );
    net.run(500);
    let d = net.digests();
    assert_eq!(d[0], d[1]);
    let Ok(Reply::Status(s)) = b.call(&mut net, Request::Status) else {
        panic!()
    };
    assert!(s.in_sync && s.primary == Some(TrackerId(1)));
    // A backup answers a read such as list_members from its own state.
    assert_eq!(
        b.call(&mut net, Request::ListMembers { group: g("g1") }),
        Ok(Reply::Members(vec![u("alice"), u("bob")]))
    );
}

#[test]
fn client_fails_over_without_logging_in_again() {
    let mut net = setup();
    let mut a = Client::new(&mut net, 1, 1);
    a.sign_up(&mut net, "alice", "pw");
    net.crash(1);
    a.move_to(&mut net, 2);
    // Until tracker 2 has taken over, writes get NotReady; the client retries.
    net.run(3000);
    assert!(net.t(2).is_primary());
    assert_eq!(
        a.call(&mut net, Request::Resume),
        Ok(Reply::Resumed { user: u("alice") })
    );
    assert_eq!(
        a.call(&mut net, Request::CreateGroup { group: g("after") }),
        Ok(Reply::Done)
    );
}

#[test]
fn a_retried_write_after_failover_is_applied_once() {
    let mut net = setup();
    let mut a = Client::new(&mut net, 1, 1);
    a.sign_up(&mut net, "alice", "pw");
    // Sent, applied and replicated, but the answer is lost with tracker 1.
    a.send_id(&mut net, 77, Request::CreateGroup { group: g("once") });
    net.run(200);
    net.crash(1);
    a.move_to(&mut net, 2);
    net.run(3000);
    a.send_id(&mut net, 77, Request::CreateGroup { group: g("once") });
    net.run(200);
    assert_eq!(
        a.response(&net, 77),
        Some(Ok(Reply::Done)),
        "the stored outcome, not GroupExists"
    );
}

#[test]
fn restarted_tracker_recovers_and_catches_up() {
    let mut net = setup();
    let mut a = Client::new(&mut net, 1, 1);
    a.call(
        &mut net,
        Request::CreateUser {
            user: u("alice"),
            password: pw("pw"),
        },
    )
    .unwrap();
    net.crash(2);
    a.call(
        &mut net,
        Request::Login {
            user: u("alice"),
            password: pw("pw"),
        },
    )
    .unwrap();
    a.call(
        &mut net,
        Request::CreateGroup {
            group: g("while-down"),
        },
    )
    .unwrap();
    net.restart(2);
    net.run(2000);
    let d = net.digests();
    assert_eq!(d[0], d[1]);
    assert!(net.t(2).state().group(&g("while-down")).is_some());
}

#[test]
fn garbage_and_huge_length_prefix_close_only_that_connection() {
    let mut net = setup();
    let mut a = Client::new(&mut net, 1, 1);
    let bad = Client::new(&mut net, 2, 1);
    net.raw(bad.conn, &[0, 0, 0, 3, 0xff, 0xff, 0xff]);
    assert!(matches!(
        net.inbox[&bad.conn].last(),
        Some(FromTracker::Fatal { .. })
    ));
    assert!(!net.ends.contains_key(&bad.conn), "bad connection closed");
    assert!(
        net.events
            .iter()
            .any(|(_, e)| matches!(e, TrackerEvent::BadInput { .. }))
    );
    // The tracker keeps serving others.
    assert_eq!(
        a.call(
            &mut net,
            Request::CreateUser {
                user: u("alice"),
                password: pw("pw")
            }
        ),
        Ok(Reply::Done)
    );
}

/// Issue 16 §1: a client connection that goes silent is closed at
/// [`CLIENT_IDLE_TIMEOUT`], not before; any request restarts its clock.
#[test]
fn a_silent_client_connection_is_closed_at_the_idle_timeout() {
    let mut net = setup();
    let mut a = Client::new(&mut net, 1, 1);
    let idle = CLIENT_IDLE_TIMEOUT.as_millis();
    net.run(idle - 1);
    assert!(net.ends.contains_key(&a.conn), "open just before the bound");
    a.send_id(&mut net, 99, Request::Ping);
    net.settle();
    assert_eq!(a.response(&net, 99), Some(Ok(Reply::Pong)));
    net.run(idle - 1);
    assert!(
        net.ends.contains_key(&a.conn),
        "a request restarts the clock"
    );
    net.run(1);
    assert!(!net.ends.contains_key(&a.conn), "closed at the bound");
    assert!(matches!(
        net.inbox[&a.conn].last(),
        Some(FromTracker::Fatal { reason }) if reason.as_str().contains("silent for 30 s")
    ));
}

/// Issue 16 §3: at most [`CONNS_PER_ADDR_MAX`] connections from one
/// address; one more is refused, another address is still served, and a
/// slot frees when one closes.
#[test]
fn connections_from_one_address_are_capped() {
    let mut net = setup();
    let from = SocketAddr::from(([10, 0, 0, 7], 5000));
    let conns: Vec<ConnId> = (0..CONNS_PER_ADDR_MAX as u16)
        .map(|k| net.connect_client_from(200 + k, 1, from))
        .collect();
    assert!(
        conns.iter().all(|c| net.ends.contains_key(c)),
        "all at the bound served"
    );
    let extra = net.connect_client_from(199, 1, from);
    assert!(!net.ends.contains_key(&extra), "one past the bound refused");
    let other = net.connect_client_from(198, 1, SocketAddr::from(([10, 0, 0, 8], 5000)));
    assert!(net.ends.contains_key(&other), "another address is served");
    net.close(conns[0]);
    net.settle();
    let again = net.connect_client_from(197, 1, from);
    assert!(net.ends.contains_key(&again), "a slot freed");
}

/// Issue 16 §3: at most `client_conns_max` accepted connections in all
/// (one more refused at once, with the limit in its reason), while a peer
/// tracker (its key pinned) still gets in.
#[test]
fn accepted_connections_are_capped_but_a_peer_tracker_gets_in() {
    let mut net = Net::new_with(2, |c| c.client_conns_max = 3);
    let conns: Vec<ConnId> = (0..3).map(|k| net.connect_client(10 + k, 2)).collect();
    assert!(
        conns.iter().all(|c| net.ends.contains_key(c)),
        "at the bound"
    );
    let extra = net.connect_client(20, 2);
    assert!(!net.ends.contains_key(&extra), "one past the bound refused");
    assert!(matches!(
        net.inbox[&extra].last(),
        Some(FromTracker::Fatal { reason }) if reason.as_str().contains("at most 3")
    ));
    // Tracker 1 (pinned on first contact) connects again: not refused.
    let (_c, s) = net.pair(Owner::Tracker(1), Owner::Tracker(2));
    net.pending.push_back((
        Owner::Tracker(2),
        Input::Accepted {
            conn: s,
            addr: addr_of(1),
            peer: key_of(1),
        },
    ));
    net.settle();
    assert!(net.ends.contains_key(&s), "a peer tracker is not capped");
}

#[test]
fn wrong_version_gets_our_hello_then_close() {
    let mut net = setup();
    let (c, s) = net.pair(Owner::Client(9), Owner::Tracker(1));
    net.pending.push_back((
        Owner::Tracker(1),
        Input::Accepted {
            conn: s,
            addr: addr_of(99),
            peer: key_of(99),
        },
    ));
    net.settle();
    let mut b = BytesMut::new();
    encode_msg(
        &Hello {
            version: 99,
            role: WireRole::Client,
        },
        &mut b,
    );
    net.deliver(c, b);
    net.settle();
    assert_eq!(net.hellos[&c][0].version, p2p_proto::PROTOCOL_VERSION);
    assert!(!net.ends.contains_key(&c));
    let err = net.events.iter().find_map(|(_, e)| match e {
        TrackerEvent::BadInput { error, .. } => Some(error.clone()),
        _ => None,
    });
    assert!(err.unwrap().contains("version 99"));
}

#[test]
fn a_dropped_client_goes_offline_after_the_grace_and_back_on_return() {
    let mut net = setup();
    let mut a = Client::new(&mut net, 1, 2);
    a.sign_up(&mut net, "alice", "pw");
    let token = a.token.unwrap();
    net.close(a.conn);
    net.settle();
    net.run(2000);
    assert!(
        !net.t(1).state().session(&token).unwrap().online,
        "offline on the primary"
    );
    a.conn = net.connect_client(1, 2);
    a.call(&mut net, Request::Ping).unwrap();
    net.run(500);
    assert!(
        net.t(1).state().session(&token).unwrap().online,
        "back online"
    );
    let d = net.digests();
    assert_eq!(d[0], d[1]);
}

#[test]
fn a_seeder_address_is_the_observed_ip_with_the_stated_port() {
    let mut net = setup();
    // Through the backup (the write is forwarded) and on the primary.
    for (id, t, seen, stated) in [
        (1, 2, "10.1.2.3:50000", "127.0.0.1:7001"),
        (2, 1, "[::ffff:10.9.9.9]:50001", "0.0.0.0:7002"),
        (3, 1, "[2001:db8::5]:50002", "192.0.2.77:7003"),
    ] {
        let seen: SocketAddr = seen.parse().unwrap();
        let conn = net.connect_client_from(id, t, seen);
        let mut c = Client {
            id,
            conn,
            client: ClientId([id as u8; 16]),
            token: None,
            next: 1,
        };
        c.sign_up(&mut net, &format!("user{id}"), "pw");
        let stated: SocketAddr = stated.parse().unwrap();
        assert!(
            c.call(&mut net, Request::RegisterSeeder { addr: stated })
                .is_ok()
        );
        net.run(500);
        let want = SocketAddr::new(seen.ip().to_canonical(), stated.port());
        let token = c.token.unwrap();
        for t in 1..=2 {
            assert_eq!(
                net.t(t).state().session(&token).unwrap().addr,
                Some(want),
                "tracker {t}, client {id}"
            );
        }
    }
}

#[test]
fn reads_on_an_unsynced_backup_say_not_ready() {
    let mut net = Net::new(2);
    // Before any election nobody is in sync.
    let mut a = Client::new(&mut net, 1, 2);
    a.send_id(&mut net, 1, Request::ListGroups);
    net.settle();
    assert_eq!(a.response(&net, 1), Some(Err(TrackerError::NotReady)));
}

// ---------------------------------------------------------------- client session

fn login_session(net: &mut Net, first: u16) -> u16 {
    let k = net.add_session(first);
    net.command(
        k,
        1,
        Request::CreateUser {
            user: u("carol"),
            password: pw("pw"),
        },
    );
    net.command(
        k,
        2,
        Request::Login {
            user: u("carol"),
            password: pw("pw"),
        },
    );
    net.run(500);
    assert_eq!(net.result(k, 1), vec![Ok(Reply::Done)]);
    assert!(matches!(net.result(k, 2)[..], [Ok(Reply::LoggedIn { .. })]));
    k
}

#[test]
fn session_command_in_flight_when_the_tracker_dies_completes_once_elsewhere() {
    let mut net = setup();
    let k = login_session(&mut net, 1);
    // Sent to tracker 1, which dies before answering.
    net.command(
        k,
        3,
        Request::CreateGroup {
            group: g("g-failover"),
        },
    );
    net.crash(1);
    net.run(6000);
    assert_eq!(
        net.result(k, 3),
        vec![Ok(Reply::Done)],
        "exactly one answer"
    );
    assert!(
        net.session_events
            .iter()
            .any(|(_, e)| matches!(e, SessionEvent::FailedOver { .. }))
    );
    assert!(
        net.session_events
            .iter()
            .any(|(_, e)| matches!(e, SessionEvent::Resumed { .. }))
    );
    assert!(net.t(2).state().group(&g("g-failover")).is_some());
    // Still logged in: a command needing the session works.
    net.command(
        k,
        4,
        Request::JoinGroup {
            group: g("g-failover"),
        },
    );
    net.run(1000);
    assert!(matches!(
        net.result(k, 4)[..],
        [Err(ClientError::Tracker(
            TrackerError::AlreadyMember { .. }
        ))]
    ));
}

#[test]
fn session_applied_but_unanswered_write_is_not_applied_twice() {
    let mut net = setup();
    let k = login_session(&mut net, 1);
    net.command(k, 3, Request::CreateGroup { group: g("once") });
    // Let it replicate, then lose tracker 1 before the client reads the answer.
    for _ in 0..200 {
        net.settle();
        if net.t(2).state().group(&g("once")).is_some() {
            break;
        }
    }
    net.crash(1);
    net.run(6000);
    assert_eq!(net.result(k, 3).len(), 1);
    assert!(
        matches!(net.result(k, 3)[0], Ok(Reply::Done)),
        "{:?}",
        net.result(k, 3)
    );
}

#[test]
fn session_with_no_tracker_fails_commands_clearly_and_recovers() {
    let mut net = setup();
    let k = login_session(&mut net, 2);
    net.crash(1);
    net.crash(2);
    net.command(k, 5, Request::ListGroups);
    net.run(10_000);
    let r = net.result(k, 5);
    assert_eq!(r.len(), 1);
    let msg = r[0].clone().unwrap_err().to_string();
    assert!(msg.starts_with("no tracker reachable"), "{msg}");
    assert!(
        net.session_events
            .iter()
            .any(|(_, e)| *e == SessionEvent::Unreachable)
    );
    net.restart(1);
    net.restart(2);
    net.run(8000);
    net.command(k, 6, Request::ListGroups);
    net.run(3000);
    assert!(
        matches!(net.result(k, 6)[..], [Ok(Reply::Groups(_))]),
        "{:?}",
        net.result(k, 6)
    );
}

#[test]
fn session_rides_out_an_election_with_not_ready_retries() {
    let mut net = setup();
    let k = login_session(&mut net, 2);
    net.crash(1);
    // Tracker 2 answers NotReady until it takes over; the client waits it out.
    net.command(
        k,
        7,
        Request::CreateGroup {
            group: g("during-election"),
        },
    );
    net.run(6000);
    assert_eq!(net.result(k, 7), vec![Ok(Reply::Done)]);
}

#[test]
fn a_refused_client_connection_also_goes_offline_after_the_grace() {
    let mut net = setup();
    let mut a = Client::new(&mut net, 1, 1);
    a.sign_up(&mut net, "alice", "pw");
    let token = a.token.unwrap();
    assert!(net.t(1).state().session(&token).unwrap().online);
    // The client's connection then breaks the protocol and is refused.
    net.raw(a.conn, &[0, 0, 0, 2, 0xee, 0xee]);
    assert!(!net.ends.contains_key(&a.conn), "refused and closed");
    net.run(2000);
    assert!(
        !net.t(1).state().session(&token).unwrap().online,
        "withdrawn after the grace"
    );
}

#[test]
fn a_login_waits_for_its_password_check_off_thread_while_others_are_served() {
    let mut net = setup();
    let mut a = Client::new(&mut net, 1, 1);
    let create = Request::CreateUser {
        user: u("alice"),
        password: pw("pw"),
    };
    assert!(a.call(&mut net, create).is_ok());
    net.held_passwords = Some(Vec::new());
    a.send_id(
        &mut net,
        10,
        Request::Login {
            user: u("alice"),
            password: pw("pw"),
        },
    );
    net.run(200);
    assert_eq!(a.response(&net, 10), None, "waits for its password check");
    let held = net.held_passwords.clone().unwrap();
    assert!(matches!(held[..], [(1, _, PasswordWork::Verify { .. })]));
    // Meanwhile the tracker answers everybody else.
    let mut b = Client::new(&mut net, 2, 1);
    assert!(b.call(&mut net, Request::Ping).is_ok());
    // The check comes back: the login goes through.
    let (t, job, work) = held[0].clone();
    net.held_passwords = None;
    net.pending.push_back((
        Owner::Tracker(t),
        Input::PasswordDone {
            job,
            done: work.run(),
        },
    ));
    net.run(200);
    assert!(matches!(
        a.response(&net, 10),
        Some(Ok(Reply::LoggedIn { .. }))
    ));
    // A wrong password comes back refused the same way.
    let wrong = Request::Login {
        user: u("alice"),
        password: pw("nope"),
    };
    let mut c = Client::new(&mut net, 3, 2);
    assert_eq!(
        c.call(&mut net, wrong),
        Err(TrackerError::WrongUserOrPassword)
    );
}

/// Issue 17: the link between the trackers goes silent (no close). Each
/// gives the other up on its own deadline, closes that connection and the
/// lower id redials; the backup becomes primary meanwhile.
#[test]
fn trackers_close_and_redial_a_silent_peer_and_the_backup_takes_over() {
    let mut net = setup();
    net.run(2000);
    assert!(net.t(1).is_primary());
    let tracker_ends: Vec<ConnId> = net
        .ends
        .iter()
        .filter(|(_, (o, other))| {
            matches!(o, Owner::Tracker(_))
                && matches!(net.ends.get(other), Some((Owner::Tracker(_), _)))
        })
        .map(|(e, _)| *e)
        .collect();
    assert_eq!(tracker_ends.len(), 2, "one connection between the trackers");
    net.muted.extend(tracker_ends);
    net.events.clear();
    net.run(1500);
    assert!(net.t(2).is_primary(), "t2 did not take over a silent t1");
    for (i, peer) in [(1, 2), (2, 1)] {
        let gone = TrackerEvent::DisconnectedFromTracker {
            tracker: TrackerId(peer),
        };
        assert!(
            net.events.iter().any(|(t, e)| *t == i && *e == gone),
            "t{i} did not drop the silent t{peer}: {:?}",
            net.events
        );
    }
    // The lower id dials again, over a fresh connection that works.
    net.run(3000);
    let back = TrackerEvent::ConnectedToTracker {
        tracker: TrackerId(2),
    };
    assert!(
        net.events.iter().any(|(t, e)| *t == 1 && *e == back),
        "t1 never redialled t2: {:?}",
        net.events
    );
    net.run(3000);
    assert_eq!(net.digests()[0], net.digests()[1]);
    let primaries = (1..=2).filter(|&i| net.t(i).is_primary()).count();
    assert_eq!(primaries, 1);
}

#[path = "node_auth_tests.rs"]
mod auth_tests;
#[path = "node_login_tests.rs"]
mod login_tests;
