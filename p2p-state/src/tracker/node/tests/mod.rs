//! The tracker machine end to end in memory: N trackers and scripted
//! clients exchanging real encoded frames (hello, requests, replication),
//! with instant disks, crashes and restarts.
//!
//! The scenarios, by concern: `connections.rs` (hellos, caps, idle and
//! silent peers, bad framing), `requests.rs` (reads, writes, failover,
//! catch-up, password work), `sessions.rs` (online/offline, the client
//! session across trackers), `auth.rs` (identities: pinned tracker keys,
//! session keys, expiry), `login.rs` (login backoff and the password
//! queue).

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

mod auth;
mod connections;
mod login;
mod push;
mod requests;
mod sessions;

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
            Output::Persist(write) => {
                if let Some(index) = self.disks[i as usize - 1].apply(write) {
                    self.pending
                        .push_back((Owner::Tracker(i), Input::Persisted { index }));
                }
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
                SessionOutput::Send { conn, msg } => {
                    if let Some(&end) = self.session_ends.get(&(k, conn)) {
                        let mut b = BytesMut::new();
                        msg.encode_frame(&mut b);
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
