//! Replication scenarios on a toy replicated state, wired in memory: a
//! deterministic mini-cluster with FIFO links, instant disks, partitions,
//! crashes and restarts from disk (this file), driven by the tests of
//! each concern:
//! - `toy.rs`: the toy state (a set of group names, with a conflict log);
//! - `writes.rs`: proposing, forwarding, committing after acks;
//! - `epoch.rs`: epoch numbers and plausibility, takeover on a crash;
//! - `catch_up.rs`: recovery from disk, catch-up by suffix or snapshot,
//!   unconfirmed entries kept across snapshots;
//! - `resubmit.rs`: partition heal, divergent ops re-submitted durably,
//!   conflicts recorded;
//! - `liveness.rs`: silent peers (issue 17);
//! - `random.rs`: random faults on two and three trackers, then convergence.

mod catch_up;
mod epoch;
mod liveness;
mod random;
mod resubmit;
mod toy;
mod writes;

use super::*;
use crate::hash::sha1;
use bytes::{BufMut, BytesMut};
use p2p_proto::{ClientId, GroupName, RequestId, UserName, Wire};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use toy::Toy;

/// The in-memory data directory every tracker test uses.
type Disk = crate::tracker::storage::OnDisk;

/// What a restarted node recovers from `disk`.
fn recovered(disk: Disk) -> Durable<Toy> {
    Durable {
        snapshot: disk
            .snapshot
            .map(|(at, b)| Snapshot::decode(at, b).expect("own snapshot decodes")),
        entries: disk.entries,
        resubmit: disk.resubmit,
    }
}

struct Node {
    repl: Option<Repl<Toy>>,
    disk: Disk,
    events: Vec<ReplEvent>,
    applied: Vec<(u64, Outcome)>,
    abandoned: Vec<u64>,
    forwarded: Vec<(TrackerId, u64, ClientRequest)>,
}

/// A deterministic in-memory cluster.
struct Cluster {
    nodes: Vec<Node>,
    /// Links that are up (unordered pairs, lower id first).
    up: BTreeSet<(u16, u16)>,
    /// In-flight messages per directed link, FIFO.
    wires: BTreeMap<(u16, u16), VecDeque<ReplMsg>>,
    /// Directed links that black-hole what is sent (no close is heard).
    muted: BTreeSet<(u16, u16)>,
    /// When a message last arrived on each directed link.
    last_heard: BTreeMap<(u16, u16), Instant>,
    now: Instant,
    trace: Vec<String>,
    primaries: BTreeMap<u64, TrackerId>,
    /// Config changes of this cluster (applied again on restarts).
    tweak: Box<dyn Fn(&mut ReplConfig)>,
}

fn ids(n: u16) -> Vec<TrackerId> {
    (1..=n).map(TrackerId).collect()
}

fn cfg(id: u16, n: u16) -> ReplConfig {
    ReplConfig::new(TrackerId(id), ids(n))
}

impl Cluster {
    fn new(n: u16) -> Self {
        Self::with_cfg(n, |_| {})
    }

    fn with_cfg(n: u16, tweak: impl Fn(&mut ReplConfig) + 'static) -> Self {
        let now = Instant(1_000_000);
        let nodes = (1..=n)
            .map(|i| {
                let mut c = cfg(i, n);
                tweak(&mut c);
                Node {
                    repl: Some(Repl::new(c, now)),
                    disk: Disk::default(),
                    events: vec![],
                    applied: vec![],
                    abandoned: vec![],
                    forwarded: vec![],
                }
            })
            .collect();
        let mut c = Cluster {
            nodes,
            up: BTreeSet::new(),
            wires: BTreeMap::new(),
            muted: BTreeSet::new(),
            last_heard: BTreeMap::new(),
            now,
            trace: vec![],
            primaries: BTreeMap::new(),
            tweak: Box::new(tweak),
        };
        for a in 1..=n {
            for b in a + 1..=n {
                c.connect(a, b);
            }
        }
        c
    }

    fn node(&mut self, id: u16) -> &mut Repl<Toy> {
        self.nodes[id as usize - 1]
            .repl
            .as_mut()
            .expect("node is up")
    }

    fn get(&self, id: u16) -> &Repl<Toy> {
        self.nodes[id as usize - 1]
            .repl
            .as_ref()
            .expect("node is up")
    }

    fn is_up(&self, id: u16) -> bool {
        self.nodes[id as usize - 1].repl.is_some()
    }

    fn connect(&mut self, a: u16, b: u16) {
        if !self.is_up(a) || !self.is_up(b) || !self.up.insert((a.min(b), a.max(b))) {
            return;
        }
        let now = self.now;
        self.node(a)
            .handle_input(now, ReplInput::Connected(TrackerId(b)));
        self.drain(a);
        self.node(b)
            .handle_input(now, ReplInput::Connected(TrackerId(a)));
        self.drain(b);
    }

    fn disconnect(&mut self, a: u16, b: u16) {
        if !self.up.remove(&(a.min(b), a.max(b))) {
            return;
        }
        self.wires.remove(&(a, b));
        self.wires.remove(&(b, a));
        let now = self.now;
        for (x, y) in [(a, b), (b, a)] {
            if self.is_up(x) {
                self.node(x)
                    .handle_input(now, ReplInput::Disconnected(TrackerId(y)));
                self.drain(x);
            }
        }
    }

    fn partition(&mut self, side: &[u16]) {
        let n = self.nodes.len() as u16;
        for a in 1..=n {
            for b in a + 1..=n {
                if side.contains(&a) != side.contains(&b) {
                    self.disconnect(a, b);
                }
            }
        }
    }

    fn heal(&mut self) {
        let n = self.nodes.len() as u16;
        for a in 1..=n {
            for b in a + 1..=n {
                self.connect(a, b);
            }
        }
    }

    /// `a` closed its connection to silent `b` (already counted as gone
    /// at `a`): `b` hears the close unless `a`'s traffic is black-holed.
    fn close_silent(&mut self, a: u16, b: u16) {
        if !self.up.remove(&(a.min(b), a.max(b))) {
            return;
        }
        self.wires.remove(&(a, b));
        self.wires.remove(&(b, a));
        if self.is_up(b) && !self.muted.contains(&(a, b)) {
            let now = self.now;
            let input = ReplInput::Disconnected(TrackerId(a));
            self.node(b).handle_input(now, input);
            self.drain(b);
        }
    }

    /// Black-holes everything `a` sends to `b` from now on (no close).
    fn mute(&mut self, a: u16, b: u16) {
        self.muted.insert((a, b));
        self.wires.remove(&(a, b));
    }

    fn unmute_all(&mut self) {
        self.muted.clear();
    }

    /// Runs a millisecond at a time until `done` holds (the time it first
    /// did) or `ms` pass (`None`).
    fn run_until(&mut self, ms: u64, done: impl Fn(&Cluster) -> bool) -> Option<Instant> {
        for _ in 0..=ms {
            if done(self) {
                return Some(self.now);
            }
            self.run(1);
        }
        None
    }

    fn silent_events(&self, id: u16) -> usize {
        let silent = |e: &&ReplEvent| matches!(e, ReplEvent::PeerSilent { .. });
        self.nodes[id as usize - 1]
            .events
            .iter()
            .filter(silent)
            .count()
    }

    fn crash(&mut self, id: u16) {
        let n = self.nodes.len() as u16;
        for o in 1..=n {
            if o != id {
                self.disconnect(id, o);
            }
        }
        self.nodes[id as usize - 1].repl = None;
        self.trace.push(format!("{:?} crash {id}", self.now));
    }

    fn restart(&mut self, id: u16) {
        let n = self.nodes.len() as u16;
        let disk = self.nodes[id as usize - 1].disk.clone();
        let mut c = cfg(id, n);
        (self.tweak)(&mut c);
        let r = Repl::recover(c, recovered(disk), self.now);
        self.nodes[id as usize - 1].repl = Some(r);
        self.trace.push(format!("{:?} restart {id}", self.now));
        for o in 1..=n {
            if o != id {
                self.connect(id, o);
            }
        }
    }

    /// Executes a node's outputs: sends go on the wire, persistence is
    /// instant, events are recorded.
    fn drain(&mut self, id: u16) {
        // The node's outputs are taken out before each is executed:
        // persisting feeds the node again (the single-mutation rule).
        let mut outs = VecDeque::new();
        loop {
            outs.extend(crate::machine::drain(self.node(id)));
            let Some(out) = outs.pop_front() else { break };
            self.execute(id, out);
        }
        self.answer_forwards(id);
    }

    fn execute(&mut self, id: u16, out: ReplOutput) {
        {
            match out {
                ReplOutput::Send { to, msg } => {
                    let key = (id.min(to.0), id.max(to.0));
                    if self.up.contains(&key) && !self.muted.contains(&(id, to.0)) {
                        self.wires.entry((id, to.0)).or_default().push_back(msg);
                    }
                }
                ReplOutput::Persist(write) => {
                    if let Some(last) = self.nodes[id as usize - 1].disk.apply(write) {
                        let now = self.now;
                        self.node(id).handle_input(now, ReplInput::Persisted(last));
                    }
                }
                ReplOutput::Applied { tag, outcome, .. } => {
                    self.nodes[id as usize - 1].applied.push((tag, outcome));
                }
                ReplOutput::Abandoned { tag } => self.nodes[id as usize - 1].abandoned.push(tag),
                ReplOutput::Forwarded { from, fwd, req, .. } => {
                    self.nodes[id as usize - 1].forwarded.push((from, fwd, req));
                }
                ReplOutput::PeerSilent { peer } => self.close_silent(id, peer.0),
                ReplOutput::Event(e) => {
                    if let ReplEvent::BecamePrimary { epoch } = e {
                        let prev = self.primaries.insert(epoch, TrackerId(id));
                        assert!(prev.is_none(), "two primaries in epoch {epoch}");
                    }
                    self.trace.push(format!("{:?} t{id} {e:?}", self.now));
                    self.nodes[id as usize - 1].events.push(e);
                }
            }
        }
    }

    fn answer_forwards(&mut self, id: u16) {
        // The primary side of a forwarded write: prepare = propose as is.
        let fwds = std::mem::take(&mut self.nodes[id as usize - 1].forwarded);
        for (from, fwd, req) in fwds {
            let now = self.now;
            let (origin, kind) = toy_op(&req);
            let tag = (from.0 as u64) << 32 | fwd;
            let input = if self.get(id).role() == Role::Primary {
                ReplInput::Propose {
                    origin: Some(origin),
                    kind,
                    tag: Some(tag),
                }
            } else {
                ReplInput::ReplyForward {
                    to: from,
                    fwd,
                    index: 0,
                    outcome: Err(TrackerError::NotReady),
                }
            };
            self.node(id).handle_input(now, input);
            self.drain(id);
        }
        // Answer forwarded writes whose op applied here.
        let applied = std::mem::take(&mut self.nodes[id as usize - 1].applied);
        for (tag, outcome) in applied {
            if tag >> 32 != 0 && self.get(id).role() == Role::Primary {
                let (to, fwd) = (TrackerId((tag >> 32) as u16), tag & 0xffff_ffff);
                let index = self.get(id).applied();
                let input = ReplInput::ReplyForward {
                    to,
                    fwd,
                    index,
                    outcome,
                };
                let now = self.now;
                self.node(id).handle_input(now, input);
                self.drain(id);
            } else {
                self.nodes[id as usize - 1].applied.push((tag, outcome));
            }
        }
    }

    /// Delivers one message on the first non-empty link, or fires the
    /// earliest timer. Returns false when nothing is left to do before `until`.
    fn step(&mut self, until: Instant) -> bool {
        if let Some((&(a, b), _)) = self.wires.iter().find(|(_, q)| !q.is_empty()) {
            let msg = self.wires.get_mut(&(a, b)).unwrap().pop_front().unwrap();
            self.trace
                .push(format!("{:?} {a}->{b} {}", self.now, short(&msg)));
            let now = self.now;
            self.last_heard.insert((a, b), now);
            let from = TrackerId(a);
            self.node(b).handle_input(now, ReplInput::Msg { from, msg });
            self.drain(b);
            return true;
        }
        let next = (1..=self.nodes.len() as u16)
            .filter(|&i| self.is_up(i))
            .filter_map(|i| self.get(i).poll_timeout().map(|(t, _)| (t, i)))
            .min();
        match next {
            Some((t, i)) if t <= until => {
                self.now = self.now.max(t);
                let now = self.now;
                self.node(i).handle_timeout(now);
                self.drain(i);
                true
            }
            _ => {
                self.now = self.now.max(until);
                false
            }
        }
    }

    /// Runs for `ms` of simulated time (bounded in steps).
    fn run(&mut self, ms: u64) {
        let until = self.now + Duration(ms);
        for _ in 0..200_000 {
            if !self.step(until) {
                return;
            }
        }
        panic!(
            "livelock: 200k steps without reaching {until:?}\n{}",
            self.tail()
        );
    }

    fn tail(&self) -> String {
        let n = self.trace.len();
        self.trace[n.saturating_sub(40)..].join("\n")
    }

    fn primary(&self) -> Option<u16> {
        (1..=self.nodes.len() as u16)
            .filter(|&i| self.is_up(i))
            .find(|&i| self.get(i).role() == Role::Primary)
    }

    /// Proposes at the primary, or forwards from a backup, a CreateGroup.
    fn write(&mut self, at: u16, name: &str, id: u64) -> Result<(), TrackerError> {
        let req = ClientRequest {
            client: ClientId([at as u8; 16]),
            id: RequestId(id),
            session: None,
            req: p2p_proto::Request::CreateGroup {
                group: GroupName::new(name).unwrap(),
            },
        };
        let now = self.now;
        let r = if self.get(at).role() == Role::Primary {
            let (origin, kind) = toy_op(&req);
            let tag = Some(id);
            let input = ReplInput::Propose {
                origin: Some(origin),
                kind,
                tag,
            };
            self.node(at).handle_input(now, input);
            Ok(())
        } else if self.get(at).can_take_writes() {
            self.node(at).handle_input(
                now,
                ReplInput::Forward {
                    req,
                    key: p2p_proto::KeyId::default(),
                    tag: id,
                },
            );
            Ok(())
        } else {
            Err(TrackerError::NotReady)
        };
        self.drain(at);
        r
    }

    fn outcome(&self, at: u16, tag: u64) -> Option<&Outcome> {
        self.nodes[at as usize - 1]
            .applied
            .iter()
            .find(|(t, _)| *t == tag)
            .map(|(_, o)| o)
    }

    fn digests(&self) -> Vec<Sha1Hash> {
        (1..=self.nodes.len() as u16)
            .filter(|&i| self.is_up(i))
            .map(|i| self.get(i).state().digest())
            .collect()
    }

    fn assert_converged(&self) {
        let d = self.digests();
        assert!(
            d.windows(2).all(|w| w[0] == w[1]),
            "digests differ\n{}",
            self.tail()
        );
        let lasts: Vec<LogPos> = (1..=self.nodes.len() as u16)
            .filter(|&i| self.is_up(i))
            .map(|i| self.get(i).last())
            .collect();
        assert!(
            lasts.windows(2).all(|w| w[0] == w[1]),
            "logs differ: {lasts:?}\n{}",
            self.tail()
        );
    }

    fn names(&self, at: u16) -> Vec<String> {
        self.get(at).state().names.iter().cloned().collect()
    }
}

fn toy_op(req: &ClientRequest) -> (Origin, OpKind) {
    let p2p_proto::Request::CreateGroup { group } = &req.req else {
        unreachable!("the toy only creates groups")
    };
    (
        Origin {
            client: req.client,
            key: p2p_proto::KeyId::default(),
            id: req.id,
        },
        OpKind::CreateGroup {
            owner: UserName::new("u").unwrap(),
            group: group.clone(),
        },
    )
}

fn short(m: &ReplMsg) -> String {
    let s = format!("{m:?}");
    s.chars().take(120).collect()
}
