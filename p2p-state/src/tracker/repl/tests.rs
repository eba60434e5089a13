//! Replication scenarios on a toy replicated state, wired in memory: a
//! deterministic mini-cluster with FIFO links, instant disks, partitions,
//! crashes and restarts from disk.

use super::*;
use crate::hash::sha1;
use bytes::BufMut;
use p2p_proto::{ClientId, GroupName, RequestId, UserName, Wire};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A set of group names; `CreateGroup` of an existing name is refused.
#[derive(Default, Debug, Clone, PartialEq)]
pub(crate) struct Toy {
    names: BTreeSet<String>,
    recorded: BTreeMap<Origin, Outcome>,
    applied: u64,
    /// Conflict records applied (request, reason), once per request.
    conflicts: Vec<(Op, TrackerError)>,
}

impl Replicated for Toy {
    fn apply(&mut self, op: &Op) -> Outcome {
        self.applied += 1;
        let out = match &op.kind {
            OpKind::CreateGroup { group, .. } => {
                if self.names.insert(group.to_string()) {
                    Ok(p2p_proto::Reply::Done)
                } else {
                    Err(TrackerError::GroupExists {
                        group: group.clone(),
                    })
                }
            }
            OpKind::RecordConflict { op, reason } => {
                if !self.conflicts.iter().any(|(o, _)| o.origin == op.origin) {
                    self.conflicts.push(((**op).clone(), reason.clone()));
                }
                Ok(p2p_proto::Reply::Done)
            }
            _ => Ok(p2p_proto::Reply::Done),
        };
        if let Some(o) = op.origin {
            self.recorded.insert(o, out.clone());
        }
        out
    }
    fn digest(&self) -> Sha1Hash {
        sha1(&self.encode_snapshot())
    }
    fn encode_snapshot(&self) -> Bytes {
        let mut w = BytesMut::new();
        w.put_u64(self.applied);
        w.put_u32(self.names.len() as u32);
        for n in &self.names {
            GroupName::new(n.clone()).unwrap().encode(&mut w);
        }
        w.put_u32(self.recorded.len() as u32);
        for (o, out) in &self.recorded {
            o.encode(&mut w);
            out.encode(&mut w);
        }
        w.put_u32(self.conflicts.len() as u32);
        for (op, reason) in &self.conflicts {
            op.encode(&mut w);
            reason.encode(&mut w);
        }
        w.freeze()
    }
    fn decode_snapshot(b: Bytes) -> Result<Self, DecodeError> {
        let mut r = p2p_proto::Reader::new(b);
        let applied = r.u64("applied")?;
        let mut t = Toy {
            applied,
            ..Toy::default()
        };
        for _ in 0..r.count("names", 1 << 20, 3)? {
            t.names.insert(GroupName::decode(&mut r)?.to_string());
        }
        for _ in 0..r.count("recorded", 1 << 20, 26)? {
            let o = Origin::decode(&mut r)?;
            t.recorded.insert(o, Outcome::decode(&mut r)?);
        }
        for _ in 0..r.count("conflicts", 1 << 20, 11)? {
            let op = Op::decode(&mut r)?;
            t.conflicts.push((op, TrackerError::decode(&mut r)?));
        }
        r.finish()?;
        Ok(t)
    }
    fn revalidate(&self, op: &Op) -> Result<(), TrackerError> {
        match &op.kind {
            OpKind::CreateGroup { group, .. } if self.names.contains(group.as_str()) => {
                Err(TrackerError::GroupExists {
                    group: group.clone(),
                })
            }
            _ => Ok(()),
        }
    }
    fn recorded(&self, origin: &Origin) -> Option<Outcome> {
        self.recorded.get(origin).cloned()
    }
    fn conflict_of(&self, origin: &Origin) -> Option<TrackerError> {
        self.conflicts
            .iter()
            .find(|(op, _)| op.origin.as_ref() == Some(origin))
            .map(|(_, r)| r.clone())
    }
}

#[derive(Default, Clone)]
struct Disk {
    snapshot: Option<(LogPos, Bytes)>,
    entries: Vec<Entry>,
    resubmit: Vec<Entry>,
}

impl Disk {
    fn recovered(self) -> Durable<Toy> {
        Durable {
            snapshot: self
                .snapshot
                .map(|(at, b)| Snapshot::decode(at, b).expect("own snapshot decodes")),
            entries: self.entries,
            resubmit: self.resubmit,
        }
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
        let r = Repl::recover(c, disk.recovered(), self.now);
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
                ReplOutput::Persist {
                    from_index,
                    entries,
                } => {
                    let d = &mut self.nodes[id as usize - 1].disk;
                    d.entries.retain(|e| e.pos.index < from_index);
                    let last = entries
                        .last()
                        .map(|e| e.pos.index)
                        .unwrap_or(from_index - 1);
                    d.entries.extend(entries);
                    let now = self.now;
                    self.node(id).handle_input(now, ReplInput::Persisted(last));
                }
                ReplOutput::PersistSnapshot {
                    at,
                    data,
                    reset_log,
                } => {
                    let d = &mut self.nodes[id as usize - 1].disk;
                    d.snapshot = Some((at, data));
                    if reset_log {
                        d.entries.clear();
                    } else {
                        d.entries.retain(|e| e.pos.index > at.index);
                    }
                }
                ReplOutput::PersistResubmit { entries } => {
                    self.nodes[id as usize - 1].disk.resubmit = entries;
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

#[test]
fn lowest_id_becomes_primary_and_writes_replicate() {
    let mut c = Cluster::new(2);
    c.run(2000);
    assert_eq!(c.primary(), Some(1));
    assert_eq!(epoch_primary(c.get(1).epoch()), Some(TrackerId(1)));
    c.write(1, "g1", 1).unwrap();
    c.run(100);
    assert_eq!(c.outcome(1, 1), Some(&Ok(p2p_proto::Reply::Done)));
    assert_eq!(c.names(2), vec!["g1"]);
    c.assert_converged();
    assert!(c.get(2).can_serve_reads());
}

#[test]
fn primary_answers_only_after_the_backup_acked() {
    let mut c = Cluster::new(2);
    c.run(2000);
    c.write(1, "g1", 7).unwrap();
    // Nothing delivered yet: the backup has not acked, no answer.
    assert_eq!(c.outcome(1, 7), None);
    assert!(
        c.get(1).state().names.is_empty(),
        "primary applied before the ack"
    );
    c.run(50);
    assert!(c.outcome(1, 7).is_some());
}

#[test]
fn backup_forwards_writes_and_reads_its_own_write() {
    let mut c = Cluster::new(2);
    c.run(2000);
    c.write(2, "g2", 5).unwrap();
    c.run(100);
    assert_eq!(c.outcome(2, 5), Some(&Ok(p2p_proto::Reply::Done)));
    // The backup answered only once it had applied the op itself.
    assert_eq!(c.names(2), vec!["g2"]);
    c.write(2, "g2", 6).unwrap();
    c.run(100);
    assert!(matches!(
        c.outcome(2, 6),
        Some(Err(TrackerError::GroupExists { .. }))
    ));
    c.assert_converged();
}

#[test]
fn backup_takes_over_when_the_primary_dies() {
    let mut c = Cluster::new(2);
    c.run(2000);
    c.write(1, "before", 1).unwrap();
    c.run(100);
    c.crash(1);
    c.run(3000);
    assert_eq!(c.primary(), Some(2));
    assert_eq!(epoch_round(c.get(2).epoch()), 2);
    c.write(2, "after", 2).unwrap();
    c.run(100);
    assert_eq!(c.outcome(2, 2), Some(&Ok(p2p_proto::Reply::Done)));
    assert_eq!(c.names(2), vec!["after", "before"]);
}

#[test]
fn restarted_tracker_recovers_from_disk_and_catches_up_by_suffix() {
    let mut c = Cluster::new(2);
    c.run(2000);
    for i in 0..5 {
        c.write(1, &format!("a{i}"), i).unwrap();
    }
    c.run(200);
    c.crash(2);
    for i in 5..10 {
        c.write(1, &format!("a{i}"), i).unwrap();
    }
    c.run(200);
    c.restart(2);
    c.run(2000);
    c.assert_converged();
    assert_eq!(c.names(2).len(), 10);
    assert!(
        !c.nodes[1]
            .events
            .iter()
            .any(|e| matches!(e, ReplEvent::SnapshotInstalled { .. }))
    );
    assert!(c.get(2).can_serve_reads());
    // Recovery from its own disk alone gives the same state as before.
    let disk = c.nodes[1].disk.clone();
    let r: Repl<Toy> = Repl::recover(cfg(2, 2), disk.recovered(), c.now);
    assert_eq!(r.state().digest(), c.get(2).state().digest());
}

#[test]
fn rejoin_far_behind_catches_up_by_snapshot() {
    let mut c = Cluster::with_cfg(2, |cfg| {
        cfg.snapshot_every = 10;
        cfg.log_keep = 2;
    });
    c.run(2000);
    c.crash(2);
    for i in 0..40 {
        c.write(1, &format!("s{i}"), i).unwrap();
    }
    c.run(200);
    assert!(
        c.get(1).log().start().index > 0,
        "primary compacted its log"
    );
    // Restart from an empty disk: needs the snapshot.
    c.nodes[1].disk = Disk::default();
    c.restart(2);
    c.run(2000);
    assert!(
        c.nodes[1]
            .events
            .iter()
            .any(|e| matches!(e, ReplEvent::SnapshotInstalled { .. }))
    );
    c.assert_converged();
    assert_eq!(c.names(2).len(), 40);
    c.write(2, "after", 99).unwrap();
    c.run(200);
    assert_eq!(c.outcome(2, 99), Some(&Ok(p2p_proto::Reply::Done)));
}

#[test]
fn partition_heal_resubmits_divergent_ops_and_records_conflicts() {
    let mut c = Cluster::new(2);
    c.run(2000);
    c.write(1, "common", 1).unwrap();
    c.run(100);
    c.partition(&[1]);
    c.run(3000);
    assert_eq!(
        c.get(2).role(),
        Role::Primary,
        "the cut-off backup took over"
    );
    // Both sides accept writes; "dup" conflicts.
    c.write(1, "only1", 10).unwrap();
    c.write(1, "dup", 11).unwrap();
    c.write(2, "only2", 20).unwrap();
    c.write(2, "dup", 21).unwrap();
    c.run(100);
    assert!(c.outcome(1, 11).is_some() && c.outcome(2, 21).is_some());
    c.heal();
    c.run(3000);
    c.assert_converged();
    // Tracker 2 has the higher epoch: it wins; tracker 1's "only1" came back,
    // its "dup" is a recorded conflict.
    assert_eq!(c.primary(), Some(2));
    assert_eq!(c.names(1), vec!["common", "dup", "only1", "only2"]);
    let conflicts = &c.get(2).state().conflicts;
    assert_eq!(conflicts.len(), 1, "{}", c.tail());
    assert!(matches!(conflicts[0].1, TrackerError::GroupExists { .. }));
    // Replicated: tracker 1 holds the same conflict log.
    assert_eq!(&c.get(1).state().conflicts, conflicts);
    assert!(c.nodes[0].events.iter().any(|e| matches!(
        e,
        ReplEvent::Diverged {
            resubmitting: 2,
            ..
        }
    )));
}

#[test]
fn retried_resubmission_is_not_applied_twice() {
    let mut c = Cluster::new(2);
    c.run(2000);
    c.partition(&[1]);
    c.run(3000);
    c.write(1, "x", 10).unwrap();
    c.run(100);
    // The client of tracker 1 retried on tracker 2 before the heal.
    let req = ClientRequest {
        client: ClientId([1; 16]),
        id: RequestId(10),
        session: None,
        req: p2p_proto::Request::CreateGroup {
            group: GroupName::new("x").unwrap(),
        },
    };
    let (origin, kind) = toy_op(&req);
    let now = c.now;
    assert_eq!(c.get(2).role(), Role::Primary);
    let input = ReplInput::Propose {
        origin: Some(origin),
        kind,
        tag: Some(10),
    };
    c.node(2).handle_input(now, input);
    c.drain(2);
    c.run(100);
    c.heal();
    c.run(3000);
    c.assert_converged();
    assert_eq!(c.get(2).state().conflicts.len(), 0);
    assert_eq!(c.get(2).state().applied, c.get(1).state().applied);
    let creates = c
        .get(2)
        .log()
        .range(1, u64::MAX)
        .filter(|e| matches!(e.op.kind, OpKind::CreateGroup { .. }))
        .count();
    assert_eq!(creates, 1, "the same request applied twice");
}

#[test]
fn three_trackers_survive_primary_crash_and_restart() {
    let mut c = Cluster::new(3);
    c.run(2000);
    assert_eq!(c.primary(), Some(1));
    for i in 0..5 {
        c.write(3, &format!("w{i}"), i).unwrap();
    }
    c.run(300);
    c.crash(1);
    c.run(3000);
    assert_eq!(c.primary(), Some(2));
    for i in 5..10 {
        c.write(3, &format!("w{i}"), i).unwrap();
    }
    c.run(300);
    c.restart(1);
    c.run(3000);
    c.assert_converged();
    assert_eq!(c.names(1).len(), 10);
    // Tracker 1 came back with a lower epoch: it follows, it does not preempt.
    assert_eq!(c.primary(), Some(2));
}

#[test]
fn a_write_in_flight_at_primary_change_is_abandoned_not_lost() {
    let mut c = Cluster::new(2);
    c.run(2000);
    c.write(2, "f", 3).unwrap();
    // Kill the primary before the forward is delivered.
    c.crash(1);
    assert_eq!(c.nodes[1].abandoned, vec![3]);
    c.run(3000);
    // The client retries with the same id on the new primary.
    c.write(2, "f", 3).unwrap();
    c.run(100);
    assert_eq!(c.outcome(2, 3), Some(&Ok(p2p_proto::Reply::Done)));
}

fn random_run(seed: u64, n: u16) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut c = Cluster::new(n);
    c.run(2000);
    let mut id = 0;
    for _ in 0..60 {
        match rng.random_range(0..10) {
            0 => {
                let a = rng.random_range(1..=n);
                if c.is_up(a) && (1..=n).filter(|&i| c.is_up(i)).count() > 1 {
                    c.crash(a);
                }
            }
            1 => {
                let a = rng.random_range(1..=n);
                if !c.is_up(a) {
                    c.restart(a);
                }
            }
            2 => {
                let side: Vec<u16> = (1..=n).filter(|_| rng.random_bool(0.5)).collect();
                c.partition(&side);
            }
            3 => c.heal(),
            _ => {
                let a = rng.random_range(1..=n);
                if c.is_up(a) {
                    id += 1;
                    let _ = c.write(a, &format!("n{}", rng.random_range(0..30)), id);
                }
            }
        }
        c.run(rng.random_range(0..1500));
    }
    for i in 1..=n {
        if !c.is_up(i) {
            c.restart(i);
        }
    }
    c.heal();
    c.run(10_000);
    c.assert_converged();
    assert!(
        c.primary().is_some(),
        "no primary after healing\n{}",
        c.tail()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_faults_converge_two_trackers(seed in any::<u64>()) {
        random_run(seed, 2);
    }
    #[test]
    fn random_faults_converge_three_trackers(seed in any::<u64>()) {
        random_run(seed, 3);
    }
}

#[test]
fn epoch_numbers_order_rounds_then_lower_ids() {
    let a = make_epoch(3, TrackerId(1)).unwrap();
    let b = make_epoch(3, TrackerId(2)).unwrap();
    let c = make_epoch(4, TrackerId(9)).unwrap();
    assert!(a > b && c > a);
    assert_eq!(epoch_primary(b), Some(TrackerId(2)));
    assert_eq!(epoch_round(c), 4);
    assert_eq!(epoch_primary(0), None);
}

/// Partitions `[1]` from `[2]` until tracker 2 leads a higher epoch, writes
/// `only1` on tracker 1's side, heals, and steps until tracker 1 replaced
/// its divergent log (its re-submission may still be on the wire).
fn diverge_two_trackers() -> Cluster {
    let mut c = Cluster::new(2);
    c.run(2000);
    c.write(1, "common", 1).unwrap();
    c.run(100);
    c.partition(&[1]);
    c.run(3000);
    assert_eq!(c.get(2).role(), Role::Primary);
    c.write(1, "only1", 10).unwrap();
    c.write(2, "only2", 20).unwrap();
    c.run(100);
    assert!(c.outcome(1, 10).is_some(), "tracker 1 answered its client");
    c.heal();
    let until = c.now + Duration(3000);
    for _ in 0..10_000 {
        let diverged = c.nodes[0]
            .events
            .iter()
            .any(|e| matches!(e, ReplEvent::SnapshotInstalled { .. }));
        if diverged || !c.step(until) {
            break;
        }
    }
    assert_eq!(c.get(1).resubmit_pending(), 1, "{}", c.tail());
    assert_eq!(
        c.nodes[0].disk.resubmit.len(),
        1,
        "queued on disk before the log was replaced"
    );
    c
}

#[test]
fn a_joiner_that_crashes_before_its_resubmission_is_answered_resends_it_after_restart() {
    let mut c = diverge_two_trackers();
    // The re-submission dies with the connection.
    c.crash(1);
    c.run(500);
    c.restart(1);
    c.run(3000);
    c.assert_converged();
    assert_eq!(c.names(2), vec!["common", "only1", "only2"], "{}", c.tail());
    assert_eq!(c.get(1).resubmit_pending(), 0);
    assert!(
        c.nodes[0].disk.resubmit.is_empty(),
        "answered: dropped on disk too"
    );
}

#[test]
fn a_joiner_whose_primary_dies_resubmits_its_queue_to_the_next_one() {
    let mut c = diverge_two_trackers();
    c.crash(2);
    c.run(3000);
    assert_eq!(c.primary(), Some(1));
    assert_eq!(c.names(1), vec!["common", "only1", "only2"], "{}", c.tail());
    assert_eq!(c.get(1).resubmit_pending(), 0);
    assert!(c.nodes[0].disk.resubmit.is_empty());
    c.restart(2);
    c.run(3000);
    c.assert_converged();
}

#[test]
fn an_answered_resubmission_is_not_sent_again() {
    let mut c = diverge_two_trackers();
    c.run(3000);
    c.assert_converged();
    assert_eq!(c.get(1).resubmit_pending(), 0);
    // Reconnecting (a new catch-up, in sync again) re-sends nothing.
    c.disconnect(1, 2);
    c.connect(1, 2);
    c.run(2000);
    let resubmits = c.trace.iter().filter(|l| l.contains("Resubmit")).count();
    assert_eq!(resubmits, 1, "{}", c.tail());
}

#[test]
fn unconfirmed_entries_survive_snapshots_and_restarts() {
    let mut c = Cluster::with_cfg(2, |cfg| {
        cfg.snapshot_every = 5;
        cfg.log_keep = 1;
    });
    c.run(2000);
    c.write(1, "common", 1).unwrap();
    c.run(200);
    let confirmed = c.get(1).confirmed();
    assert!(confirmed >= 2, "both trackers hold the start: {confirmed}");
    c.crash(2);
    for i in 0..12 {
        c.write(1, &format!("n{i}"), 100 + i).unwrap();
        c.run(50);
    }
    let origin = |id: u64| Origin {
        client: ClientId([1; 16]),
        key: p2p_proto::KeyId::default(),
        id: RequestId(id),
    };
    // Tracker 1 snapshotted, but kept every entry tracker 2 does not hold.
    assert!(c.nodes[0].disk.snapshot.is_some());
    assert_eq!(c.get(1).confirmed(), confirmed);
    assert!(c.get(1).log().start().index <= confirmed);
    assert!(c.get(1).log().index_of(&origin(100)).is_some());
    // ... and so does its disk: the snapshot carries them as its tail.
    c.crash(1);
    c.restart(1);
    assert!(c.get(1).log().start().index <= confirmed);
    assert!(c.get(1).log().index_of(&origin(100)).is_some());
    assert_eq!(c.names(1).len(), 13);
    // Once tracker 2 holds them too, they may go.
    c.restart(2);
    c.run(3000);
    c.assert_converged();
    for i in 0..6 {
        c.write(1, &format!("m{i}"), 200 + i).unwrap();
        c.run(50);
    }
    assert!(c.get(1).confirmed() > confirmed);
    assert!(
        c.get(1).log().index_of(&origin(100)).is_none(),
        "start {:?} confirmed {} applied {} primary {:?}",
        c.get(1).log().start(),
        c.get(1).confirmed(),
        c.get(1).applied(),
        c.primary()
    );
}

#[test]
fn a_backup_waiting_for_a_snapshot_takes_over_when_the_primary_dies() {
    let mut c = Cluster::new(2);
    c.run(2000);
    c.partition(&[1]);
    c.run(3000);
    c.write(1, "only1", 10).unwrap();
    c.run(100);
    c.heal();
    // Deliver until tracker 1 has been told a snapshot is coming, then the
    // primary dies before sending it.
    let until = c.now + Duration(3000);
    for _ in 0..10_000 {
        let told = c
            .trace
            .iter()
            .any(|l| l.contains("2->1 CatchUp") && l.contains("snapshot: true"));
        if told || !c.step(until) {
            break;
        }
    }
    assert!(c.get(1).pending_fork.is_some(), "{}", c.tail());
    c.crash(2);
    c.run(3000);
    assert_eq!(c.primary(), Some(1), "{}", c.tail());
    assert_eq!(c.names(1), vec!["only1"]);
}

// ------------------------------------------------------------ silent peers (issue 17)

/// The primary goes silent both ways (no close): the backup takes over
/// exactly between `peer_timeout` and `peer_timeout + heartbeat` after the
/// last message it heard from it, never before.
#[test]
fn a_silent_primary_is_replaced_within_the_peer_timeout_plus_a_heartbeat() {
    let mut c = Cluster::new(2);
    c.run(2000);
    c.write(1, "before", 1).unwrap();
    c.run(100);
    c.mute(1, 2);
    c.mute(2, 1);
    let heard = c.last_heard[&(1, 2)];
    let cfg = cfg(2, 2);
    let took = c
        .run_until(5000, |c| c.get(2).role() == Role::Primary)
        .expect("t2 never took over from a silent t1");
    let after = took.saturating_since(heard);
    assert!(
        after >= cfg.peer_timeout && after.0 <= cfg.peer_timeout.0 + cfg.heartbeat.0,
        "took over {after:?} after t1's last message\n{}",
        c.tail()
    );
    assert!(c.silent_events(2) >= 1);
    // It serves: its own write commits without the silent tracker.
    c.write(2, "during", 2).unwrap();
    c.run(50);
    assert_eq!(c.outcome(2, 2), Some(&Ok(p2p_proto::Reply::Done)));
}

/// Trackers that talk keep each other: over a long idle spell (no writes,
/// so nothing but heartbeats and alives), nobody is given up, even with
/// the peer timeout just above the heartbeat interval.
#[test]
fn idle_trackers_stay_connected_with_the_timeout_just_above_the_heartbeat() {
    let mut c = Cluster::with_cfg(3, |r| r.peer_timeout = Duration(r.heartbeat.0 + 1));
    c.run(30_000);
    for id in 1..=3 {
        assert_eq!(c.silent_events(id), 0, "t{id} gave a peer up\n{}", c.tail());
    }
    assert_eq!(c.primary(), Some(1));
}

/// With three trackers, the primary going silent leaves the two backups
/// hearing each other (backups send `Alive`): the lower id takes over and
/// the other follows it; nobody starts a rival epoch.
#[test]
fn three_trackers_elect_the_lowest_survivor_when_the_primary_goes_silent() {
    let mut c = Cluster::new(3);
    c.run(2000);
    for o in [2, 3] {
        c.mute(1, o);
        c.mute(o, 1);
    }
    c.run(3000);
    assert_eq!(c.get(2).role(), Role::Primary, "{}", c.tail());
    assert_eq!(c.get(3).role(), Role::Backup);
    assert_eq!(c.get(3).primary(), Some(TrackerId(2)));
    assert_eq!(c.silent_events(3), 1, "t3 gave up only t1\n{}", c.tail());
    let epochs: Vec<u64> = c.primaries.keys().copied().collect();
    assert_eq!(epochs.len(), 2, "one new epoch only: {epochs:?}");
}

/// Only the primary's traffic is lost (it still hears the backup): the
/// backup takes over, and once the link heals the trackers settle on one
/// primary with one log, keeping the writes both answered.
#[test]
fn a_primary_heard_by_nobody_is_replaced_and_the_heal_converges() {
    let mut c = Cluster::new(2);
    c.run(2000);
    c.mute(1, 2);
    let took = c.run_until(3000, |c| c.get(2).role() == Role::Primary);
    assert!(took.is_some(), "t2 never took over\n{}", c.tail());
    c.write(2, "on-2", 2).unwrap();
    c.run(100);
    assert_eq!(c.outcome(2, 2), Some(&Ok(p2p_proto::Reply::Done)));
    c.unmute_all();
    c.heal();
    c.run(5000);
    c.assert_converged();
    assert!(c.names(1).contains(&"on-2".to_string()), "{}", c.tail());
}
