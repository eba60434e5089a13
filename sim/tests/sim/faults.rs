//! Fault injection: one fault every so often, its kind drawn by the swarm's
//! weights. Kinds: a connection lost, a partition (any set of hosts cut from
//! the rest, healed later), a tracker or a client crash (restarted later
//! from its disk), a clock jumping forward, and rogue peers that send a
//! tracker or a seeder garbage, broken frames, or forged tickets.
//!
//! Silent loss (issue 17): a share of partitions are silent (traffic across
//! black-holed one way or both, no connection closes) and a share of
//! crashes are vanishings (nobody hears a close). The scheduler notes when
//! a fault last changed what trackers and each client can reach, for the
//! liveness checks that count their bounds from there (`run.rs`).
//!
//! `heal_all` ends the safety phase: the partition heals, every crashed node
//! restarts, no new fault comes.

use bytes::{BufMut, Bytes, BytesMut};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};

use p2p_proto::{
    ClientId, ClientRequest, FileName, GroupName, Hello, Mac, PeerMsg, Request, RequestId, Role,
    SeederKey, SessionToken, Sha1Hash, Ticket, TrackerId, UserName, Wire,
};
use p2p_state::Instant;

use crate::net::{End, Hole, Host, NodeIx};
use crate::swarm::{FaultWeights, Swarm};
use crate::world::World;
use crate::world_client::{RogueTarget, frame_of};

/// Most a host's clock may run ahead of the world's.
const SKEW_MS_MAX: u64 = 30_000;

pub struct Faults {
    rng: ChaCha8Rng,
    w: FaultWeights,
    gap_ms: (u64, u64),
    partition_ms: (u64, u64),
    down_ms: (u64, u64),
    next_at: u64,
    restarts: BTreeSet<(u64, Host)>,
    heal_at: Option<u64>,
    silent_pct: u32,
    vanish_pct: u32,
    pub counts: BTreeMap<&'static str, u64>,
    enabled: bool,
    /// When a fault last changed what the trackers can reach (a tracker
    /// down or back, a partition or its heal, a tracker connection lost or
    /// replaced by an impostor's, a tracker's clock jumping).
    pub trackers_changed: u64,
    /// The same for each client (its crash or restart, its session
    /// connection lost, its clock jumping).
    pub client_changed: BTreeMap<NodeIx, u64>,
}

impl Faults {
    pub fn new(s: &Swarm, now: Instant) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(s.fault_seed);
        let enabled = s.faults.total() > 0;
        let first = rng.random_range(s.fault_gap_ms.0..=s.fault_gap_ms.1);
        Faults {
            rng,
            w: s.faults.clone(),
            gap_ms: s.fault_gap_ms,
            partition_ms: s.partition_ms,
            down_ms: s.down_ms,
            next_at: now.0.saturating_add(first),
            restarts: BTreeSet::new(),
            heal_at: None,
            silent_pct: s.silent_pct,
            vanish_pct: s.vanish_pct,
            counts: BTreeMap::new(),
            enabled,
            trackers_changed: now.0,
            client_changed: BTreeMap::new(),
        }
    }

    /// When the last fault touching client `c` or the trackers happened.
    pub fn changed_for(&self, c: NodeIx) -> u64 {
        let own = self.client_changed.get(&c).copied().unwrap_or(0);
        own.max(self.trackers_changed)
    }

    fn touched(&mut self, h: Host, now: u64) {
        match h {
            Host::Tracker(_) => self.trackers_changed = now,
            Host::Client(c) => {
                self.client_changed.insert(c, now);
            }
            Host::Rogue => {}
        }
    }

    pub fn next_at(&self) -> Option<Instant> {
        let fault = self.enabled.then_some(self.next_at);
        let restart = self.restarts.first().map(|(t, _)| *t);
        [fault, restart, self.heal_at]
            .into_iter()
            .flatten()
            .min()
            .map(Instant)
    }

    fn count(&mut self, kind: &'static str) {
        *self.counts.entry(kind).or_default() += 1;
    }

    /// Does whatever is due now: a heal, a restart, or a new fault.
    pub fn fire(&mut self, w: &mut World) {
        let now = w.now.0;
        if self.heal_at.is_some_and(|t| t <= now) {
            self.heal_at = None;
            w.net.heal();
            self.trackers_changed = now;
            trace!(w.trace, now, "HEAL");
            return;
        }
        if let Some(&(t, host)) = self.restarts.first()
            && t <= now
        {
            self.restarts.pop_first();
            restart(w, host);
            self.touched(host, now);
            return;
        }
        if self.enabled && self.next_at <= now {
            self.next_at = now + self.rng.random_range(self.gap_ms.0..=self.gap_ms.1);
            self.inject(w);
        }
    }

    /// The end of the safety phase: everything heals and restarts.
    pub fn heal_all(&mut self, w: &mut World) {
        self.enabled = false;
        self.heal_at = None;
        w.net.heal();
        self.trackers_changed = w.now.0;
        for (_, host) in std::mem::take(&mut self.restarts) {
            restart(w, host);
            self.touched(host, w.now.0);
        }
        trace!(w.trace, w.now.0, "HEAL ALL (quiet phase)");
    }

    fn inject(&mut self, w: &mut World) {
        let total = self.w.total();
        if total == 0 {
            return;
        }
        let mut r = self.rng.random_range(0..total);
        let kinds = [
            (self.w.conn_drop, 0),
            (self.w.partition, 1),
            (self.w.tracker_crash, 2),
            (self.w.client_crash, 3),
            (self.w.clock_jump, 4),
            (self.w.rogue_tracker, 5),
            (self.w.rogue_seeder, 6),
            (self.w.sniffed_ticket, 7),
            (self.w.hijack, 8),
        ];
        let mut kind = 0;
        for (weight, k) in kinds {
            if r < weight {
                kind = k;
                break;
            }
            r -= weight;
        }
        match kind {
            0 => self.drop_conn(w),
            1 => self.partition(w),
            2 => self.crash(w, true),
            3 => self.crash(w, false),
            4 => self.jump(w),
            5 => self.rogue_tracker(w),
            6 => self.rogue_seeder(w),
            7 => self.sniffed_ticket(w),
            _ => self.hijack(w),
        }
    }

    fn drop_conn(&mut self, w: &mut World) {
        let ends = w.net.live_ends();
        if ends.is_empty() {
            return;
        }
        let e = ends[self.rng.random_range(0..ends.len())];
        trace!(w.trace, w.now.0, "DROP {e:?}");
        for end in [Some(e), w.net.peer_of(e)].into_iter().flatten() {
            match end {
                End::T(..) => self.trackers_changed = w.now.0,
                End::S(c, ..) => self.touched(Host::Client(c), w.now.0),
                _ => {}
            }
        }
        w.net.kill(w.now, e);
        self.count("conn drop");
    }

    fn partition(&mut self, w: &mut World) {
        if w.net.is_partitioned() {
            return;
        }
        let hosts: Vec<Host> = (0..w.trackers.len())
            .map(Host::Tracker)
            .chain((0..w.clients.len()).map(Host::Client))
            .collect();
        let side: BTreeSet<Host> = match self.rng.random_range(0..3u32) {
            // One tracker alone (its clients cut off with the rest).
            0 => [Host::Tracker(self.rng.random_range(0..w.trackers.len()))].into(),
            // Trackers split, each with a share of the clients.
            1 => {
                let t = self.rng.random_range(0..w.trackers.len());
                hosts
                    .iter()
                    .copied()
                    .filter(|h| match h {
                        Host::Tracker(i) => *i == t,
                        _ => self.rng.random_ratio(1, 2),
                    })
                    .collect()
            }
            _ => hosts
                .iter()
                .copied()
                .filter(|_| self.rng.random_ratio(1, 2))
                .collect(),
        };
        if side.is_empty() || side.len() == hosts.len() {
            return;
        }
        let ms = self
            .rng
            .random_range(self.partition_ms.0..=self.partition_ms.1);
        self.heal_at = Some(w.now.0 + ms);
        self.trackers_changed = w.now.0;
        if self.silent_pct > 0 && self.rng.random_range(0..100) < self.silent_pct {
            let hole = [Hole::Both, Hole::Out, Hole::In][self.rng.random_range(0..3)];
            trace!(
                w.trace,
                w.now.0, "SILENT PARTITION {hole:?} {side:?} for {ms}ms"
            );
            w.net
                .partition_silent(side, hole, w.now + p2p_state::Duration(ms));
            self.count("silent partition");
            return;
        }
        trace!(w.trace, w.now.0, "PARTITION {side:?} for {ms}ms");
        w.net.partition(w.now, side);
        self.count("partition");
    }

    fn crash(&mut self, w: &mut World, tracker: bool) {
        let up: Vec<Host> = match tracker {
            true => (0..w.trackers.len())
                .filter(|&i| w.trackers[i].m().is_some())
                .map(Host::Tracker)
                .collect(),
            false => {
                // Half the time, a client with a download under way (its
                // restart must resume from the part file's record).
                let busy = |c: usize| !w.clients[c].dests.is_empty();
                let any = self.rng.random_ratio(1, 2);
                let up = |c: &usize| w.clients[*c].m().is_some();
                let mut v: Vec<usize> = (0..w.clients.len()).filter(up).collect();
                if !any && v.iter().any(|&c| busy(c)) {
                    v.retain(|&c| busy(c));
                }
                v.into_iter().map(Host::Client).collect()
            }
        };
        if up.is_empty() {
            return;
        }
        let h = up[self.rng.random_range(0..up.len())];
        let vanish = self.vanish_pct > 0 && self.rng.random_range(0..100) < self.vanish_pct;
        match (h, vanish) {
            (Host::Tracker(i), false) => w.crash_tracker(i),
            (Host::Client(c), false) => w.crash_client(c),
            (Host::Tracker(i), true) => w.vanish_tracker(i),
            (Host::Client(c), true) => w.vanish_client(c),
            (Host::Rogue, _) => return,
        }
        self.touched(h, w.now.0);
        let ms = self.rng.random_range(self.down_ms.0..=self.down_ms.1);
        self.restarts.insert((w.now.0 + ms, h));
        self.count(match (tracker, vanish) {
            (true, false) => "tracker crash",
            (false, false) => "client crash",
            (true, true) => "tracker vanished",
            (false, true) => "client vanished",
        });
    }

    fn jump(&mut self, w: &mut World) {
        let n = w.trackers.len() + w.clients.len();
        let k = self.rng.random_range(0..n);
        let h = if k < w.trackers.len() {
            Host::Tracker(k)
        } else {
            Host::Client(k - w.trackers.len())
        };
        let skew = match h {
            Host::Tracker(i) => w.trackers[i].skew_ms,
            Host::Client(c) => w.clients[c].skew_ms,
            Host::Rogue => 0,
        };
        let ms = self.rng.random_range(1..=5000).min(SKEW_MS_MAX - skew);
        if ms > 0 {
            w.jump_clock(h, ms);
            self.touched(h, w.now.0);
            self.count("clock jump");
        }
    }

    // ------------------------------------------------------------ rogues

    fn rogue_tracker(&mut self, w: &mut World) {
        let j = self.rng.random_range(0..w.trackers.len());
        let script = tracker_script(&mut self.rng, w.trackers.len());
        // Every other rogue is an impostor with its own random stream, so
        // the fault stream of a seed is the same either way.
        let script = crate::rogue_tracker::impostor_or(w, j, script);
        let hold = self.rng.random_range(0..=5000);
        if w.rogue_connect(RogueTarget::Tracker(j), script, hold) {
            // An impostor's tracker hello replaced the real connection
            // before trackers checked keys (seed 4699); with the planted
            // bug it still does.
            self.trackers_changed = w.now.0;
            self.count("rogue to tracker");
        }
    }

    fn rogue_seeder(&mut self, w: &mut World) {
        // Prefer a client that shares something: forged tickets for a real
        // file are what a seeder must refuse.
        let sharing: Vec<NodeIx> = (0..w.clients.len())
            .filter(|&c| w.clients[c].m().is_some() && !w.clients[c].shares.is_empty())
            .collect();
        let k = match sharing.is_empty() {
            true => self.rng.random_range(0..w.clients.len()),
            false => sharing[self.rng.random_range(0..sharing.len())],
        };
        let script = self.seeder_script(w, k);
        let hold = self.rng.random_range(0..=5000);
        if w.rogue_connect(RogueTarget::Seeder(k), script, hold) {
            self.count("rogue to seeder");
        }
    }

    /// A ticket sniffed from a real download, replayed from the rogue's
    /// own key to the seeder it names (`world_identity.rs`).
    fn sniffed_ticket(&mut self, w: &mut World) {
        let pick = self.rng.random();
        let hold = self.rng.random_range(0..=5000);
        if w.replay_sniffed(pick, hold) {
            self.count("sniffed ticket replayed");
        }
    }

    /// A client's next dials to a tracker it pinned reach an impostor
    /// (a hijacked address): refused, the session fails over.
    fn hijack(&mut self, w: &mut World) {
        let pick = self.rng.random();
        let n = self.rng.random_range(1..=3);
        if w.hijack_next_dials(pick, n) {
            let c = (pick % w.clients.len() as u64) as usize;
            self.touched(Host::Client(c), w.now.0);
            self.count("hijacked tracker address");
        }
    }

    fn seeder_script(&mut self, w: &World, k: NodeIx) -> Vec<Bytes> {
        let rng = &mut self.rng;
        let hello = frame_of(&Hello::new(Role::Peer));
        // Half the scripts show a forged or stale ticket for a real file.
        let kind = match rng.random_range(0..10u32) {
            k @ 0..4 => k,
            4..7 => 4,
            7..9 => 5,
            _ => 6,
        };
        let mut s = match kind {
            0 => return vec![garbage(rng)],
            1 => return vec![Bytes::copy_from_slice(&u32::MAX.to_be_bytes())],
            2 => vec![hello, framed_garbage(rng)],
            3 => vec![hello, frame_of(&PeerMsg::Request { index: 0 })],
            _ => vec![hello],
        };
        if kind >= 4 {
            let h = &w.clients[k];
            let (seeder, key) = h
                .identity
                .clone()
                .unwrap_or_else(|| (user("nobody"), SeederKey([7; 32])));
            let (group, file, file_hash) = match h.shares.values().next() {
                Some((g, m)) => (g.clone(), m.name.clone(), m.file_hash),
                None => (group("nog"), file("nofile"), Sha1Hash([9; 20])),
            };
            let now = w.seeder_now(k).0;
            let mut t = Ticket {
                downloader: user("mallory"),
                group,
                file,
                file_hash,
                seeder,
                downloader_key: crate::world::rogue_key(),
                seeder_key: crate::world::client_key(k),
                expires_ms: now + 60_000,
                mac: Mac::default(),
            };
            match kind {
                // A forged MAC.
                4 => rng.fill_bytes(&mut t.mac.0),
                // Signed with the real key, but long expired.
                5 => {
                    t.expires_ms = now.saturating_sub(1000);
                    p2p_state::ticket::sign(&key, &mut t);
                }
                // Signed with the real key, for a file it does not share.
                _ => {
                    t.file_hash = Sha1Hash([0xee; 20]);
                    p2p_state::ticket::sign(&key, &mut t);
                }
            }
            s.push(frame_of(&PeerMsg::Open { ticket: t }));
            for index in 0..4 {
                s.push(frame_of(&PeerMsg::Request { index }));
            }
        }
        s
    }
}

fn restart(w: &mut World, host: Host) {
    match host {
        Host::Tracker(i) if w.trackers[i].m().is_none() => w.restart_tracker(i),
        Host::Client(c) if w.clients[c].m().is_none() => w.restart_client(c),
        _ => {}
    }
}

fn user(s: &str) -> UserName {
    UserName::new(s).expect("user name")
}
fn group(s: &str) -> GroupName {
    GroupName::new(s).expect("group name")
}
fn file(s: &str) -> FileName {
    FileName::new(s).expect("file name")
}

fn garbage(rng: &mut ChaCha8Rng) -> Bytes {
    let mut b = vec![0u8; rng.random_range(1..=200)];
    rng.fill_bytes(&mut b);
    Bytes::from(b)
}

/// A well-formed frame around random bytes.
fn framed_garbage(rng: &mut ChaCha8Rng) -> Bytes {
    let body = garbage(rng);
    let mut b = BytesMut::new();
    b.put_u32(body.len() as u32);
    b.put_slice(&body);
    b.freeze()
}

/// Garbage, broken frames, or a plausible client or tracker that then
/// misbehaves.
fn tracker_script(rng: &mut ChaCha8Rng, trackers: usize) -> Vec<Bytes> {
    let client_hello = frame_of(&Hello::new(Role::Client));
    match rng.random_range(0..7u32) {
        0 => vec![garbage(rng)],
        1 => vec![Bytes::copy_from_slice(&u32::MAX.to_be_bytes())],
        2 => vec![Bytes::copy_from_slice(&0u32.to_be_bytes())],
        3 => vec![client_hello, framed_garbage(rng)],
        4 => {
            // Requests with a made-up session, then garbage.
            let mut id = [0u8; 16];
            rng.fill_bytes(&mut id);
            let req = |n: u64, req: Request| ClientRequest {
                client: ClientId(id),
                id: RequestId(n),
                session: Some(SessionToken([3; 16])),
                req,
            };
            vec![
                client_hello,
                frame_of(&req(1, Request::Resume)),
                frame_of(&req(2, Request::ListGroups)),
                frame_of(&req(
                    3,
                    Request::CreateGroup {
                        group: group("evil"),
                    },
                )),
                framed_garbage(rng),
            ]
        }
        5 => {
            // Claims to be a tracker of the group, then talks nonsense.
            let id = TrackerId(rng.random_range(1..=trackers as u16));
            vec![
                frame_of(&Hello::new(Role::Tracker(id))),
                framed_garbage(rng),
            ]
        }
        _ => {
            // A hello from a future protocol version.
            let mut h = BytesMut::new();
            let mut hello = Hello::new(Role::Client).to_bytes().to_vec();
            if hello.len() > 5 {
                hello[4] ^= 0x7f;
                hello[5] ^= 0x7f;
            }
            h.put_u32(hello.len() as u32);
            h.put_slice(&hello);
            vec![h.freeze()]
        }
    }
}
