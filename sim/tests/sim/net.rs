//! The simulated network: connections as FIFO byte pipes between two ends,
//! each with its own latency (and, for slow links, a bandwidth), one event
//! queue ordered by `(time, seq)`, partitions that cut any set of hosts from
//! the rest, and connection loss.
//!
//! Silent loss (issue 17) comes in two shapes, neither with a close event:
//! a *silent partition* black-holes traffic across it in one or both
//! directions (what is written is held, as TCP retransmits it, and arrives
//! after the heal; a connection attempt across times out), and a *vanished
//! host* (power lost, cable pulled) takes its ends with it while its peers
//! hear nothing: what they write goes nowhere, until the host is back and
//! answers their next segment with a reset.
//!
//! Bytes are delivered in order within a connection and may overtake each
//! other across connections. A graceful close delivers what was written
//! before it, then `Closed`; an abortive one (a drop, a partition, a crash)
//! loses what is in flight and each side hears `Closed` after a detection
//! delay. Writes may be chopped into chunks so decoders see partial frames.

use bytes::{Bytes, BytesMut};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use p2p_proto::{FrameDecoder, FrameError, TrackerId};
use p2p_state::Instant;
use p2p_state::client::node::PeerConnId;

use crate::swarm::Swarm;

pub type NodeIx = usize;

/// One end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum End {
    /// A tracker's connection (ids from the world, never reused).
    T(NodeIx, u64),
    /// A client's tracker-session connection: (client, incarnation, conn).
    S(NodeIx, u32, u64),
    /// A client's peer connection: (client, incarnation, conn).
    P(NodeIx, u32, PeerConnId),
    /// A rogue peer's connection.
    R(u64),
}

/// A machine on the network (what partitions and crashes act on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Host {
    Tracker(NodeIx),
    Client(NodeIx),
    Rogue,
}

impl End {
    pub fn host(self) -> Host {
        match self {
            End::T(i, _) => Host::Tracker(i),
            End::S(c, _, _) | End::P(c, _, _) => Host::Client(c),
            End::R(_) => Host::Rogue,
        }
    }
}

/// Who waits for the result of a connection attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialer {
    Tracker(NodeIx, u32, TrackerId),
    Session(NodeIx, u32, u64),
    Peer(NodeIx, u32, PeerConnId),
}

#[derive(Debug)]
pub enum EvKind {
    Bytes {
        to: End,
        bytes: Bytes,
    },
    Closed {
        to: End,
    },
    DialFailed(Dialer),
    /// The oldest pending disk write of a tracker incarnation is durable.
    DiskDone {
        tracker: NodeIx,
        inc: u32,
    },
    /// A rogue connection has said its piece and hangs up.
    RogueClose {
        id: u64,
    },
    /// A tracker incarnation's argon2 work is done (it ran "off thread").
    PasswordDone {
        tracker: NodeIx,
        inc: u32,
        job: u64,
        done: p2p_state::tracker::password::PasswordDone,
    },
}

#[derive(Debug)]
pub struct Ev {
    pub at: Instant,
    seq: u64,
    pub kind: EvKind,
}

impl PartialEq for Ev {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Ev {}
impl Ord for Ev {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}
impl PartialOrd for Ev {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

struct Link {
    peer: End,
    lat_ms: u64,
    /// 0: no bandwidth limit.
    bytes_per_ms: u64,
    /// When the sender's last byte leaves (bandwidth queueing).
    busy_until: u64,
    /// Broken (abortively): nothing more is delivered either way.
    dead: bool,
    /// The peer closed its end: what we write goes nowhere.
    peer_open: bool,
    /// The peer's host vanished: writes go nowhere, nothing is heard.
    orphan: bool,
    /// Written to since it became an orphan (a retransmission is pending).
    orphan_wrote: bool,
    /// The peer's host is back: the next write is answered with a reset.
    rst: bool,
}

/// Which way a silent partition loses traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hole {
    /// Nothing crosses.
    Both,
    /// Nothing leaves the cut side; what comes in arrives.
    Out,
    /// Nothing reaches the cut side; what it sends arrives.
    In,
}

/// A silent partition: `side` cut from the rest, traffic across held.
#[derive(Debug, Clone)]
struct Silent {
    side: BTreeSet<Host>,
    hole: Hole,
    /// Held bytes are delivered from here on (the heal).
    until: u64,
}

#[derive(Clone, Debug, Default)]
pub struct NetStats {
    pub writes: u64,
    pub bytes: u64,
    pub dropped_bytes: u64,
    pub max_queue: usize,
    pub max_in_flight: u64,
}

/// Most bytes queued toward one end before the run counts as unbounded.
pub const IN_FLIGHT_BYTES_MAX: u64 = 64 << 20;
/// Most events queued at once.
pub const QUEUE_LEN_MAX: usize = 4_000_000;

pub struct Net {
    rng: ChaCha8Rng,
    latency_ms: (u64, u64),
    slow_pct: u32,
    slow_extra_ms: (u64, u64),
    slow_bytes_per_ms: u64,
    chop_pct: u32,
    detect_ms: (u64, u64),
    links: BTreeMap<End, Link>,
    bufs: BTreeMap<End, (FrameDecoder, BytesMut)>,
    /// Last delivery time per end (FIFO within a connection).
    last_at: BTreeMap<End, Instant>,
    in_flight: BTreeMap<End, u64>,
    queue: BinaryHeap<Ev>,
    seq: u64,
    next_conn: u64,
    /// Hosts cut off from the rest (symmetric); `None` when healed.
    cut: Option<BTreeSet<Host>>,
    /// A silent partition; `None` when healed.
    silent: Option<Silent>,
    /// Hosts that vanished and are not back.
    dark: BTreeSet<Host>,
    pub stats: NetStats,
}

impl Net {
    pub fn new(s: &Swarm) -> Self {
        Net {
            rng: ChaCha8Rng::seed_from_u64(s.net_seed),
            latency_ms: s.latency_ms,
            slow_pct: s.slow_pct,
            slow_extra_ms: s.slow_extra_ms,
            slow_bytes_per_ms: s.slow_bytes_per_ms,
            chop_pct: s.chop_pct,
            detect_ms: s.detect_ms,
            links: BTreeMap::new(),
            bufs: BTreeMap::new(),
            last_at: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            next_conn: 1,
            cut: None,
            silent: None,
            dark: BTreeSet::new(),
            stats: NetStats::default(),
        }
    }

    /// A connection id no end has used.
    pub fn fresh_conn(&mut self) -> u64 {
        let c = self.next_conn;
        self.next_conn += 1;
        c
    }

    pub fn latency(&mut self) -> u64 {
        self.rng.random_range(self.latency_ms.0..=self.latency_ms.1)
    }

    pub fn detect_delay(&mut self) -> u64 {
        self.rng.random_range(self.detect_ms.0..=self.detect_ms.1)
    }

    /// Can `a` and `b` open a connection (both directions pass)?
    pub fn reachable(&self, a: Host, b: Host) -> bool {
        if self.dark.contains(&a) || self.dark.contains(&b) {
            return false;
        }
        if self.held_until(a, b).is_some() || self.held_until(b, a).is_some() {
            return false;
        }
        match &self.cut {
            None => true,
            _ if a == Host::Rogue || b == Host::Rogue => true,
            Some(cut) => cut.contains(&a) == cut.contains(&b),
        }
    }

    /// Does what `a` sends reach `b` now (no cut, no hole that way)?
    pub fn passes(&self, a: Host, b: Host) -> bool {
        let cut = match &self.cut {
            Some(cut) if a != Host::Rogue && b != Host::Rogue => {
                cut.contains(&a) != cut.contains(&b)
            }
            _ => false,
        };
        !cut && self.held_until(a, b).is_none() && !self.dark.contains(&b)
    }

    /// Until when traffic from `a` to `b` is black-holed, if it is.
    fn held_until(&self, a: Host, b: Host) -> Option<u64> {
        let s = self.silent.as_ref()?;
        if a == Host::Rogue || b == Host::Rogue {
            return None;
        }
        let (ia, ib) = (s.side.contains(&a), s.side.contains(&b));
        let held = match s.hole {
            Hole::Both => ia != ib,
            Hole::Out => ia && !ib,
            Hole::In => !ia && ib,
        };
        held.then_some(s.until)
    }

    pub fn is_partitioned(&self) -> bool {
        self.cut.is_some() || self.silent.is_some()
    }

    /// Has `host` vanished (and is not back yet)?
    pub fn is_dark(&self, host: Host) -> bool {
        self.dark.contains(&host)
    }

    /// Opens a connection between `a` and `b`.
    pub fn connect(&mut self, a: End, b: End) {
        let mut lat_ms = self.latency();
        let mut bytes_per_ms = 0;
        if self.rng.random_range(0..100) < self.slow_pct {
            lat_ms += self
                .rng
                .random_range(self.slow_extra_ms.0..=self.slow_extra_ms.1);
            bytes_per_ms = self.slow_bytes_per_ms.max(1);
        }
        for (x, y) in [(a, b), (b, a)] {
            debug_assert!(!self.links.contains_key(&x), "end {x:?} reused");
            self.links.insert(
                x,
                Link {
                    peer: y,
                    lat_ms,
                    bytes_per_ms,
                    busy_until: 0,
                    dead: false,
                    peer_open: true,
                    orphan: false,
                    orphan_wrote: false,
                    rst: false,
                },
            );
        }
    }

    /// Can `end` still receive bytes (not closed, not broken)?
    pub fn is_open(&self, end: End) -> bool {
        self.links.get(&end).is_some_and(|l| !l.dead)
    }

    /// The other end of `end`'s connection.
    pub fn peer_of(&self, end: End) -> Option<End> {
        self.links.get(&end).map(|l| l.peer)
    }

    /// Every live end, in order (for picking a connection to drop).
    pub fn live_ends(&self) -> Vec<End> {
        self.links
            .iter()
            .filter(|(_, l)| !l.dead && l.peer_open)
            .map(|(e, _)| *e)
            .collect()
    }

    fn push(&mut self, at: Instant, kind: EvKind) {
        self.seq += 1;
        self.queue.push(Ev {
            at,
            seq: self.seq,
            kind,
        });
        self.stats.max_queue = self.stats.max_queue.max(self.queue.len());
    }

    pub fn schedule(&mut self, at: Instant, kind: EvKind) {
        self.push(at, kind);
    }

    /// Bytes written at `from` reach the other end later, in order.
    pub fn write(&mut self, now: Instant, from: End, bytes: Bytes) {
        let held = self
            .links
            .get(&from)
            .and_then(|l| self.held_until(from.host(), l.peer.host()));
        let Some(l) = self.links.get_mut(&from) else {
            self.stats.dropped_bytes += bytes.len() as u64;
            return;
        };
        if l.dead || !l.peer_open {
            self.stats.dropped_bytes += bytes.len() as u64;
            return;
        }
        if l.rst {
            // The vanished host is back and knows no such connection.
            l.dead = true;
            let at = now + p2p_state::Duration(2 * l.lat_ms);
            self.stats.dropped_bytes += bytes.len() as u64;
            self.push(at, EvKind::Closed { to: from });
            return;
        }
        if l.orphan {
            l.orphan_wrote = true;
            self.stats.dropped_bytes += bytes.len() as u64;
            return;
        }
        let n = bytes.len() as u64;
        let transfer = n.checked_div(l.bytes_per_ms).unwrap_or(0);
        let start = l.busy_until.max(now.0);
        l.busy_until = start + transfer;
        let to = l.peer;
        let mut at = Instant(l.busy_until + l.lat_ms);
        if let Some(until) = held {
            // Black-holed: TCP retransmits it after the heal.
            at = at.max(Instant(until + l.lat_ms));
        }
        let at = at.max(self.last_at.get(&to).copied().unwrap_or(Instant(0)));
        self.last_at.insert(to, at);
        self.stats.writes += 1;
        self.stats.bytes += n;
        let q = self.in_flight.entry(to).or_default();
        *q += n;
        self.stats.max_in_flight = self.stats.max_in_flight.max(*q);
        if n > 1 && self.rng.random_range(0..100) < self.chop_pct {
            let cut = self.rng.random_range(1..n as usize);
            self.push(
                at,
                EvKind::Bytes {
                    to,
                    bytes: bytes.slice(..cut),
                },
            );
            self.push(
                at,
                EvKind::Bytes {
                    to,
                    bytes: bytes.slice(cut..),
                },
            );
        } else {
            self.push(at, EvKind::Bytes { to, bytes });
        }
    }

    /// `from` closes its end: the peer gets what was written, then `Closed`.
    pub fn close(&mut self, now: Instant, from: End) {
        let Some(l) = self.links.remove(&from) else {
            return;
        };
        self.bufs.remove(&from);
        self.last_at.remove(&from);
        let peer = l.peer;
        let lat = l.lat_ms;
        let Some(p) = self.links.get_mut(&peer) else {
            return;
        };
        if p.dead || !p.peer_open {
            return;
        }
        p.peer_open = false;
        let mut at = now + p2p_state::Duration(lat);
        if let Some(until) = self.held_until(from.host(), peer.host()) {
            at = at.max(Instant(until + lat));
        }
        let at = at.max(self.last_at.get(&peer).copied().unwrap_or(Instant(0)));
        self.push(at, EvKind::Closed { to: peer });
    }

    /// Breaks the connection of `end` abortively: in-flight bytes are lost
    /// and each side notices after a detection delay.
    pub fn kill(&mut self, now: Instant, end: End) {
        let peer = match self.links.get(&end) {
            Some(l) => l.peer,
            None => return,
        };
        for e in [end, peer] {
            let d = self.detect_delay();
            if let Some(l) = self.links.get_mut(&e)
                && !l.dead
            {
                l.dead = true;
                let at = now + p2p_state::Duration(l.lat_ms + d);
                self.push(at, EvKind::Closed { to: e });
            }
        }
    }

    /// `host` is gone: its ends vanish, its peers notice after a while.
    pub fn drop_host(&mut self, now: Instant, host: Host) {
        let ends: Vec<End> = self
            .links
            .keys()
            .copied()
            .filter(|e| e.host() == host)
            .collect();
        for e in ends {
            let l = self.links.remove(&e).expect("listed");
            self.bufs.remove(&e);
            self.last_at.remove(&e);
            let d = self.detect_delay();
            if let Some(p) = self.links.get_mut(&l.peer)
                && !p.dead
            {
                p.dead = true;
                let at = now + p2p_state::Duration(p.lat_ms + d);
                self.push(at, EvKind::Closed { to: l.peer });
            }
        }
    }

    /// `host` vanishes without a word: its ends are gone, its peers hear
    /// nothing and what they write is lost (until it is back: see
    /// [`Net::host_back`]); connection attempts to it time out.
    pub fn vanish_host(&mut self, host: Host) {
        let ends: Vec<End> = self
            .links
            .keys()
            .copied()
            .filter(|e| e.host() == host)
            .collect();
        for e in ends {
            let l = self.links.remove(&e).expect("listed");
            self.bufs.remove(&e);
            self.last_at.remove(&e);
            if let Some(p) = self.links.get_mut(&l.peer) {
                p.orphan = true;
            }
        }
        self.dark.insert(host);
    }

    /// A vanished `host` runs again: a peer still holding a connection to
    /// it is reset, soon if it has data waiting for retransmission, else at
    /// its next write.
    pub fn host_back(&mut self, now: Instant, host: Host) {
        if !self.dark.remove(&host) {
            return;
        }
        let mut due = Vec::new();
        for (e, l) in self.links.iter_mut() {
            if l.orphan && !l.dead && l.peer.host() == host {
                l.orphan = false;
                l.rst = true;
                if l.orphan_wrote {
                    l.dead = true;
                    due.push((*e, l.lat_ms));
                }
            }
        }
        for (e, lat) in due {
            let d = self.detect_delay();
            self.push(
                now + p2p_state::Duration(2 * lat + d),
                EvKind::Closed { to: e },
            );
        }
    }

    /// Black-holes traffic between `side` and the rest (per `hole`) until
    /// `until`: no connection breaks, nobody hears a close.
    pub fn partition_silent(&mut self, side: BTreeSet<Host>, hole: Hole, until: Instant) {
        self.silent = Some(Silent {
            side,
            hole,
            until: until.0,
        });
    }

    /// Cuts `side` from every other host (symmetric); links across break.
    pub fn partition(&mut self, now: Instant, side: BTreeSet<Host>) {
        self.cut = Some(side);
        let across: Vec<End> = self
            .links
            .iter()
            .filter(|(e, l)| !l.dead && !self.reachable(e.host(), l.peer.host()))
            .map(|(e, _)| *e)
            .collect();
        for e in across {
            self.kill(now, e);
        }
    }

    pub fn heal(&mut self) {
        self.cut = None;
        self.silent = None;
    }

    pub fn peek_at(&self) -> Option<Instant> {
        self.queue.peek().map(|e| e.at)
    }

    pub fn pop(&mut self) -> Option<Ev> {
        let ev = self.queue.pop()?;
        if let EvKind::Bytes { to, bytes } = &ev.kind
            && let Some(q) = self.in_flight.get_mut(to)
        {
            *q = q.saturating_sub(bytes.len() as u64);
            if *q == 0 {
                self.in_flight.remove(to);
            }
        }
        Some(ev)
    }

    pub fn queue_len(&self) -> usize {
        self.queue.len()
    }

    /// Feeds bytes that arrived at `to` to its frame decoder; the whole
    /// frames, and the framing error that ends the stream if any.
    pub fn receive(&mut self, to: End, bytes: &[u8]) -> (Vec<Bytes>, Option<FrameError>) {
        let (dec, buf) = self
            .bufs
            .entry(to)
            .or_insert_with(|| (FrameDecoder::default(), BytesMut::new()));
        buf.extend_from_slice(bytes);
        let mut frames = Vec::new();
        for _ in 0..100_000 {
            match dec.decode(buf) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => return (frames, None),
                Err(e) => return (frames, Some(e)),
            }
        }
        panic!("more than 100000 frames in one delivery");
    }

    /// A `Closed` event for `to` came due: true if its machine should hear
    /// it (it had not closed the connection itself).
    pub fn closed_delivered(&mut self, to: End) -> bool {
        self.bufs.remove(&to);
        self.last_at.remove(&to);
        self.links.remove(&to).is_some()
    }

    /// Bytes queued toward any single end, at most (bounded-queue check).
    pub fn worst_in_flight(&self) -> u64 {
        self.in_flight.values().copied().max().unwrap_or(0)
    }
}
