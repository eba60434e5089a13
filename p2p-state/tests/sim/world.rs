//! A deterministic world: tracker machines and client machines from
//! p2p-state on a simulated network and clock, all from one seed.
//!
//! Every byte between nodes goes through the real framing and message
//! codecs. Connections are FIFO byte pipes with a latency drawn per
//! connection; the clock jumps to the next event. Client disks are
//! in-memory files; piece data is real bytes, so hashes are real.

use bytes::{Bytes, BytesMut};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::SocketAddr;

use p2p_proto::{FileMeta, FileName, FrameDecoder, LogPos, PieceSet, TrackerId, encode_frame};
use p2p_state::client::node::{self as cn, ClientConfig, ClientNode, Command, CommandOk, PeerOut};
use p2p_state::client::session::{ClientError, SessionConfig};
use p2p_state::download::DownloadConfig;
use p2p_state::hash::{Sha1Stream, sha1};
use p2p_state::seeder::{SeederConfig, ShareId};
use p2p_state::tracker::node::{self as tn, NodeConfig, Tracker};
use p2p_state::tracker::state::TrackerConfig;
use p2p_state::{Duration, Instant};

pub type NodeIx = usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum End {
    /// A tracker's connection id.
    T(NodeIx, u64),
    /// A client's tracker-session connection.
    S(NodeIx, u64),
    /// A client's peer connection.
    P(NodeIx, u64),
}

#[derive(Default, Clone)]
pub struct TrackerDisk {
    pub snapshot: Option<(LogPos, Bytes)>,
    pub entries: Vec<p2p_proto::Entry>,
}

/// A client's files: shared originals by share id, destinations by dest id.
#[derive(Default)]
pub struct ClientDisk {
    pub shared: BTreeMap<u64, Vec<u8>>,
    pub parts: BTreeMap<u64, (Vec<u8>, PieceSet)>,
    pub finished: BTreeMap<u64, Vec<u8>>,
}

pub struct TrackerNode {
    pub m: Option<Tracker>,
    pub disk: TrackerDisk,
    pub addr: SocketAddr,
}

pub struct ClientHost {
    pub m: ClientNode,
    pub disk: ClientDisk,
    pub seeder_addr: SocketAddr,
    pub done: Vec<(u64, Result<CommandOk, ClientError>)>,
    pub events: Vec<cn::ClientEvent>,
    /// dl id -> dest id
    pub dests: BTreeMap<u64, u64>,
    pub metas: BTreeMap<u64, FileMeta>,
}

#[derive(PartialEq, Eq)]
struct Ev {
    at: Instant,
    seq: u64,
    to: End,
    bytes: Option<Bytes>,
}

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

pub struct World {
    pub rng: ChaCha8Rng,
    pub now: Instant,
    pub trackers: Vec<TrackerNode>,
    pub clients: Vec<ClientHost>,
    /// Each end's peer end and the link latency.
    links: BTreeMap<End, (End, Duration)>,
    decoders: BTreeMap<End, (FrameDecoder, BytesMut)>,
    /// Last delivery time per end (FIFO within a connection).
    last_at: BTreeMap<End, Instant>,
    queue: BinaryHeap<Ev>,
    seq: u64,
    next_conn: u64,
    pub trace: Vec<String>,
    pub latency_ms: (u64, u64),
}

pub fn tracker_addr(i: NodeIx) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1 + i as u8], 7000))
}
pub fn client_addr(i: NodeIx) -> SocketAddr {
    SocketAddr::from(([10, 1, (i / 200) as u8, 1 + (i % 200) as u8], 9000))
}

impl World {
    pub fn new(seed: u64, trackers: usize, clients: usize) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let now = Instant(1_700_000_000_000);
        let list: Vec<(TrackerId, SocketAddr)> = (0..trackers)
            .map(|i| (TrackerId(i as u16 + 1), tracker_addr(i)))
            .collect();
        let mut w = World {
            now,
            trackers: Vec::new(),
            clients: Vec::new(),
            links: BTreeMap::new(),
            decoders: BTreeMap::new(),
            last_at: BTreeMap::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            next_conn: 1,
            trace: Vec::new(),
            latency_ms: (1, 5),
            rng: ChaCha8Rng::seed_from_u64(0),
        };
        for i in 0..trackers {
            let cfg = NodeConfig::new(TrackerId(i as u16 + 1), list.clone(), TrackerConfig::test());
            let t = Tracker::new(cfg, rng.random(), now);
            w.trackers.push(TrackerNode {
                m: Some(t),
                disk: TrackerDisk::default(),
                addr: tracker_addr(i),
            });
        }
        for i in 0..clients {
            let first = i % trackers;
            let session = SessionConfig::new(list.iter().map(|(_, a)| *a).collect(), first);
            let cfg = ClientConfig {
                session,
                seeder: SeederConfig::default(),
                download: DownloadConfig::default(),
                seeder_addr: Some(client_addr(i)),
            };
            let m = ClientNode::new(cfg, rng.random(), now);
            w.clients.push(ClientHost {
                m,
                disk: ClientDisk::default(),
                seeder_addr: client_addr(i),
                done: vec![],
                events: vec![],
                dests: BTreeMap::new(),
                metas: BTreeMap::new(),
            });
        }
        w.rng = ChaCha8Rng::seed_from_u64(rng.random());
        for i in 0..trackers {
            w.drain_tracker(i);
        }
        for i in 0..clients {
            w.drain_client(i);
        }
        w
    }

    fn latency(&mut self) -> Duration {
        Duration(self.rng.random_range(self.latency_ms.0..=self.latency_ms.1))
    }

    fn link(&mut self, a: End, b: End) {
        let lat = self.latency();
        self.links.insert(a, (b, lat));
        self.links.insert(b, (a, lat));
    }

    /// Bytes written at `from` arrive at the other end after the link's latency.
    fn write(&mut self, from: End, bytes: Bytes) {
        let Some(&(to, lat)) = self.links.get(&from) else {
            return;
        };
        let at = (self.now + lat).max(self.last_at.get(&to).copied().unwrap_or(Instant(0)));
        self.last_at.insert(to, at);
        self.seq += 1;
        self.queue.push(Ev {
            at,
            seq: self.seq,
            to,
            bytes: Some(bytes),
        });
    }

    /// Closes a connection from `from`'s side; the other side hears of it.
    fn close(&mut self, from: End) {
        let Some((to, lat)) = self.links.remove(&from) else {
            return;
        };
        self.links.remove(&to);
        let at = (self.now + lat).max(self.last_at.get(&to).copied().unwrap_or(Instant(0)));
        self.seq += 1;
        self.queue.push(Ev {
            at,
            seq: self.seq,
            to,
            bytes: None,
        });
    }

    fn frame(payload: &[u8]) -> Bytes {
        let mut b = BytesMut::new();
        encode_frame(payload, &mut b);
        b.freeze()
    }

    // ------------------------------------------------------------ trackers

    fn tracker_input(&mut self, i: NodeIx, input: tn::Input) {
        let now = self.now;
        if let Some(t) = self.trackers[i].m.as_mut() {
            t.handle_input(now, input);
            self.drain_tracker(i);
        }
    }

    fn drain_tracker(&mut self, i: NodeIx) {
        loop {
            let Some(o) = self.trackers[i].m.as_mut().and_then(|t| t.poll_output()) else {
                return;
            };
            match o {
                tn::Output::Send { conn, msg } => {
                    let mut b = BytesMut::new();
                    msg.encode_frame(&mut b);
                    self.write(End::T(i, conn), b.freeze());
                }
                tn::Output::Close { conn, .. } => self.close(End::T(i, conn)),
                tn::Output::Dial { tracker, .. } => {
                    let j = tracker.0 as usize - 1;
                    if self.trackers[j].m.is_none() {
                        self.tracker_input(i, tn::Input::DialFailed { tracker });
                        continue;
                    }
                    let (a, b) = (self.next_conn, self.next_conn + 1);
                    self.next_conn += 2;
                    self.link(End::T(i, a), End::T(j, b));
                    self.tracker_input(
                        j,
                        tn::Input::Accepted {
                            conn: b,
                            addr: tracker_addr(i),
                        },
                    );
                    self.tracker_input(i, tn::Input::Dialed { conn: a, tracker });
                }
                tn::Output::Persist {
                    from_index,
                    entries,
                } => {
                    let d = &mut self.trackers[i].disk;
                    d.entries.retain(|e| e.pos.index < from_index);
                    let last = entries
                        .last()
                        .map(|e| e.pos.index)
                        .unwrap_or(from_index - 1);
                    d.entries.extend(entries);
                    self.tracker_input(i, tn::Input::Persisted { index: last });
                }
                tn::Output::PersistSnapshot {
                    at,
                    data,
                    reset_log,
                } => {
                    let d = &mut self.trackers[i].disk;
                    d.snapshot = Some((at, data));
                    if reset_log {
                        d.entries.clear();
                    } else {
                        d.entries.retain(|e| e.pos.index > at.index);
                    }
                }
                tn::Output::Event(e) => self.trace.push(format!("{:?} t{} {e:?}", self.now, i + 1)),
            }
        }
    }

    // ------------------------------------------------------------ clients

    pub fn client_input(&mut self, c: NodeIx, input: cn::Input) {
        let now = self.now;
        self.clients[c].m.handle_input(now, input);
        self.drain_client(c);
    }

    fn drain_client(&mut self, c: NodeIx) {
        while let Some(o) = self.clients[c].m.poll_output() {
            self.client_output(c, o);
        }
    }

    fn client_output(&mut self, c: NodeIx, o: cn::Output) {
        match o {
            cn::Output::TrackerConnect { conn, addr } => {
                let Some(j) = self
                    .trackers
                    .iter()
                    .position(|t| t.addr == addr && t.m.is_some())
                else {
                    return self.client_input(c, cn::Input::TrackerConnectFailed { conn });
                };
                let tconn = self.next_conn;
                self.next_conn += 1;
                self.link(End::S(c, conn), End::T(j, tconn));
                self.tracker_input(
                    j,
                    tn::Input::Accepted {
                        conn: tconn,
                        addr: client_addr(c),
                    },
                );
                self.client_input(c, cn::Input::TrackerConnected { conn });
            }
            cn::Output::TrackerSend { conn, frame } => {
                self.write(End::S(c, conn), Self::frame(&frame))
            }
            cn::Output::TrackerClose { conn } => self.close(End::S(c, conn)),
            cn::Output::PeerConnect { conn, addr } => {
                let Some(k) = self.clients.iter().position(|h| h.seeder_addr == addr) else {
                    return self.client_input(c, cn::Input::PeerConnectFailed { conn });
                };
                let pconn = self.next_conn;
                self.next_conn += 1;
                self.link(End::P(c, conn), End::P(k, pconn));
                self.client_input(k, cn::Input::PeerAccepted { conn: pconn });
                self.client_input(c, cn::Input::PeerConnected { conn });
            }
            cn::Output::PeerSend { conn, msg } => {
                let mut b = BytesMut::new();
                match msg {
                    PeerOut::Hello(h) => p2p_proto::encode_msg(&h, &mut b),
                    PeerOut::Msg(m) => p2p_proto::encode_msg(&m, &mut b),
                }
                self.write(End::P(c, conn), b.freeze());
            }
            cn::Output::PeerClose { conn } => self.close(End::P(c, conn)),
            cn::Output::PrepareDest { dl, dest, meta } => {
                let h = &mut self.clients[c];
                h.dests.insert(dl, dest);
                h.metas.insert(dl, meta.clone());
                let (data, have) = h.disk.parts.entry(dest).or_insert_with(|| {
                    (
                        vec![0; meta.size as usize],
                        PieceSet::empty(meta.piece_count()),
                    )
                });
                if data.len() != meta.size as usize {
                    *data = vec![0; meta.size as usize];
                    *have = PieceSet::empty(meta.piece_count());
                }
                let have = have.clone();
                self.client_input(c, cn::Input::DestReady { dl, have });
            }
            cn::Output::WritePiece {
                dl,
                index,
                offset,
                data,
            } => {
                let h = &mut self.clients[c];
                let dest = h.dests[&dl];
                let (buf, have) = h.disk.parts.get_mut(&dest).expect("prepared");
                buf[offset as usize..offset as usize + data.len()].copy_from_slice(&data);
                have.insert(index);
                self.client_input(c, cn::Input::PieceWritten { dl, index });
            }
            cn::Output::HashFile { dl } => {
                let h = &self.clients[c];
                let mut s = Sha1Stream::new();
                s.update(&h.disk.parts[&h.dests[&dl]].0);
                let hash = s.finish();
                self.client_input(c, cn::Input::FileHashed { dl, hash });
            }
            cn::Output::Finalize { dl } => {
                let h = &mut self.clients[c];
                let dest = h.dests[&dl];
                let (data, _) = h.disk.parts.remove(&dest).expect("part file");
                h.disk.finished.insert(dest, data);
                self.client_input(c, cn::Input::Finalized { dl });
            }
            cn::Output::ReadPiece {
                conn,
                share,
                index,
                offset,
                len,
            } => {
                let h = &self.clients[c];
                let src = if share.0 >= cn::OUTBOUND {
                    let dest = h
                        .dests
                        .get(&(share.0 & !cn::OUTBOUND))
                        .copied()
                        .unwrap_or(u64::MAX);
                    h.disk
                        .parts
                        .get(&dest)
                        .map(|p| &p.0)
                        .or(h.disk.finished.get(&dest))
                } else {
                    h.disk.shared.get(&share.0)
                };
                let input = match src {
                    Some(f) if (offset + len as u64) as usize <= f.len() => cn::Input::PieceRead {
                        conn,
                        index,
                        data: Bytes::copy_from_slice(
                            &f[offset as usize..(offset + len as u64) as usize],
                        ),
                    },
                    _ => cn::Input::ReadFailed { conn, index },
                };
                self.client_input(c, input);
            }
            cn::Output::Done { tag, result } => self.clients[c].done.push((tag, result)),
            cn::Output::Event(e) => {
                self.trace.push(format!("{:?} c{c} {e:?}", self.now));
                self.clients[c].events.push(e);
            }
        }
    }

    // ------------------------------------------------------------ delivery

    fn deliver(&mut self, to: End, bytes: Option<Bytes>) {
        let Some(bytes) = bytes else {
            self.decoders.remove(&to);
            return match to {
                End::T(i, conn) => self.tracker_input(i, tn::Input::Closed { conn }),
                End::S(c, conn) => self.client_input(c, cn::Input::TrackerClosed { conn }),
                End::P(c, conn) => self.client_input(c, cn::Input::PeerClosed { conn }),
            };
        };
        if !self.links.contains_key(&to) {
            return; // closed meanwhile
        }
        let (dec, buf) = self
            .decoders
            .entry(to)
            .or_insert_with(|| (FrameDecoder::default(), BytesMut::new()));
        buf.extend_from_slice(&bytes);
        let mut frames = Vec::new();
        let mut bad = None;
        loop {
            match dec.decode(buf) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => {
                    bad = Some(e);
                    break;
                }
            }
        }
        for payload in frames {
            match to {
                End::T(i, conn) => self.tracker_input(i, tn::Input::Frame { conn, payload }),
                End::S(c, conn) => self.client_input(c, cn::Input::TrackerFrame { conn, payload }),
                End::P(c, conn) => {
                    // The driver's fast path: pieces are hashed off the machine.
                    let input = match p2p_proto::PeerMsg::split_piece(&payload) {
                        Some((index, data)) => cn::Input::PeerPiece {
                            conn,
                            index,
                            sha1: sha1(&data),
                            data,
                        },
                        None => cn::Input::PeerFrame { conn, payload },
                    };
                    self.client_input(c, input);
                }
            }
        }
        if let (Some(error), End::T(i, conn)) = (bad, to) {
            self.tracker_input(i, tn::Input::BadFraming { conn, error });
        }
    }

    /// The next event: a delivery or a machine deadline. False if none
    /// is due by `until`.
    fn step(&mut self, until: Instant) -> bool {
        let deadline = self.next_deadline();
        let delivery = self.queue.peek().map(|e| e.at);
        let next = match (delivery, deadline) {
            (Some(d), Some((t, _))) => d.min(t),
            (Some(d), None) => d,
            (None, Some((t, _))) => t,
            (None, None) => return false,
        };
        if next > until {
            return false;
        }
        self.now = self.now.max(next);
        if delivery == Some(next) {
            let ev = self.queue.pop().expect("peeked");
            self.deliver(ev.to, ev.bytes);
        } else if let Some((_, who)) = deadline {
            let now = self.now;
            match who {
                Who::Tracker(i) => {
                    if let Some(t) = self.trackers[i].m.as_mut() {
                        t.handle_timeout(now);
                    }
                    self.drain_tracker(i);
                }
                Who::Client(c) => {
                    self.clients[c].m.handle_timeout(now);
                    self.drain_client(c);
                }
            }
        }
        true
    }

    fn next_deadline(&self) -> Option<(Instant, Who)> {
        let t = self.trackers.iter().enumerate().filter_map(|(i, t)| {
            t.m.as_ref()
                .and_then(|m| m.poll_timeout())
                .map(|d| (d, Who::Tracker(i)))
        });
        let c = self
            .clients
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.m.poll_timeout().map(|d| (d, Who::Client(i))));
        t.chain(c).min()
    }

    /// Runs `ms` of simulated time (bounded in steps).
    pub fn run(&mut self, ms: u64) {
        let until = self.now + Duration(ms);
        for _ in 0..5_000_000 {
            if !self.step(until) {
                self.now = self.now.max(until);
                return;
            }
        }
        panic!("livelock before {until:?}");
    }

    /// Runs until `done` holds or `ms` pass; true if it held.
    pub fn run_until(&mut self, ms: u64, mut done: impl FnMut(&World) -> bool) -> bool {
        let until = self.now + Duration(ms);
        for _ in 0..5_000_000 {
            if done(self) {
                return true;
            }
            if !self.step(until) {
                self.now = self.now.max(until);
                return done(self);
            }
        }
        panic!("livelock before {until:?}");
    }

    // ------------------------------------------------------------ faults

    pub fn crash_tracker(&mut self, i: NodeIx) {
        self.trackers[i].m = None;
        let ends: Vec<End> = self
            .links
            .keys()
            .copied()
            .filter(|e| matches!(e, End::T(j, _) if *j == i))
            .collect();
        for e in ends {
            self.close(e);
        }
        self.trace.push(format!("{:?} crash t{}", self.now, i + 1));
    }

    #[allow(dead_code)]
    pub fn restart_tracker(&mut self, i: NodeIx) {
        let list: Vec<(TrackerId, SocketAddr)> = (0..self.trackers.len())
            .map(|k| (TrackerId(k as u16 + 1), tracker_addr(k)))
            .collect();
        let cfg = NodeConfig::new(TrackerId(i as u16 + 1), list, TrackerConfig::test());
        let d = self.trackers[i].disk.clone();
        let seed = self.rng.random();
        let t =
            Tracker::recover(cfg, seed, self.now, d.snapshot, d.entries).expect("own disk decodes");
        self.trackers[i].m = Some(t);
        self.drain_tracker(i);
        self.trace
            .push(format!("{:?} restart t{}", self.now, i + 1));
    }

    // ------------------------------------------------------------ commands

    /// Issues a command at client `c` and runs until it is answered.
    pub fn cmd(&mut self, c: NodeIx, cmd: Command) -> Result<CommandOk, ClientError> {
        self.seq += 1;
        let tag = self.seq;
        self.client_input(c, cn::Input::Command { tag, cmd });
        let ok = self.run_until(30_000, |w| w.clients[c].done.iter().any(|(t, _)| *t == tag));
        assert!(ok, "command at client {c} not answered\n{}", self.tail());
        self.clients[c]
            .done
            .iter()
            .find(|(t, _)| *t == tag)
            .map(|(_, r)| r.clone())
            .expect("answered")
    }

    /// Puts `data` on client `c`'s disk and shares it with `group`.
    pub fn share(
        &mut self,
        c: NodeIx,
        group: &str,
        name: &str,
        data: &[u8],
        piece_len: u32,
    ) -> Result<CommandOk, ClientError> {
        let meta = meta_of(name, data, piece_len);
        let share = 1 + self.clients[c].disk.shared.len() as u64;
        self.clients[c].disk.shared.insert(share, data.to_vec());
        let group = p2p_proto::GroupName::new(group).expect("group name");
        self.cmd(
            c,
            Command::Share {
                group,
                meta,
                share: ShareId(share),
            },
        )
    }

    pub fn tail(&self) -> String {
        let n = self.trace.len();
        self.trace[n.saturating_sub(60)..].join("\n")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Who {
    Tracker(NodeIx),
    Client(NodeIx),
}

/// What a driver computes when sharing a file.
pub fn meta_of(name: &str, data: &[u8], piece_len: u32) -> FileMeta {
    let piece_hashes = if data.is_empty() {
        vec![]
    } else {
        data.chunks(piece_len as usize).map(sha1).collect()
    };
    FileMeta {
        name: FileName::new(name).expect("file name"),
        size: data.len() as u64,
        piece_len,
        piece_hashes,
        file_hash: sha1(data),
    }
}
