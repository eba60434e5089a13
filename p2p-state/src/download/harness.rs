//! A mini-simulation for tests: one [`Download`] wired to N real [`Seeder`]
//! machines in memory, with a fake clock, a network of FIFO links (latency
//! and bandwidth per seeder), a simulated disk and tracker, and per-seeder
//! faults. Everything comes from one seed; nothing sleeps.
//!
//! Oracles kept while it runs (tests assert on them):
//! - every `WritePiece` carries exactly the file's true bytes (checked
//!   here: a bad write panics at once, naming the piece);
//! - how many times each piece was written, which requests went to a peer
//!   lacking the piece, the largest in-flight counts seen;
//! - `check_invariants` of every machine after every step.
//!
//! Written for reuse by the whole-system simulator: it uses only the public
//! API of `download` and `seeder` plus `crate::hash` and `crate::ticket`.

use bytes::Bytes;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::SocketAddr;

use p2p_proto::{
    FileMeta, FileName, GroupName, KeyId, Mac, PeerInfo, PeerMsg, PieceSet, SeederKey, Ticket,
    UserName,
};

use super::{Download, DownloadConfig, DownloadError, Input, Output, PeerId};
use crate::hash;
use crate::rate::TokenBucket;
use crate::seeder::{self, ConnId, Seeder, SeederConfig, ShareId};
use crate::ticket;
use crate::time::{Duration, Instant};

/// Simulated wall clock at the start (tickets compare against Unix ms).
pub(crate) const T0: Instant = Instant(1_700_000_000_000);
/// The share id every simulated seeder uses for the file.
const SHARE: ShareId = ShareId::Upload(1);
/// The downloading client's TLS key (the tracker names it in tickets).
pub(crate) const DOWNLOADER_KEY: KeyId = KeyId([0x44; 32]);

/// Seeder `i`'s TLS key.
pub(crate) fn seeder_key(i: usize) -> KeyId {
    let mut k = [0x53; 32];
    k[1..9].copy_from_slice(&(i as u64).to_be_bytes());
    KeyId(k)
}

/// The key an impostor proves.
pub(crate) const IMPOSTOR_KEY: KeyId = KeyId([0x52; 32]);

/// How one seeder misbehaves (all off by default).
#[derive(Clone, Debug, Default)]
pub(crate) struct Faults {
    /// Corrupt every n-th piece it sends (1 = every piece).
    pub corrupt_every: Option<u32>,
    /// Break the connection after sending this many pieces (once).
    pub close_after: Option<u32>,
    /// Swallow every piece it sends (requests time out).
    pub drop_pieces: bool,
    /// Connections to it fail.
    pub unreachable: bool,
    /// The tracker signs its tickets with a key it does not hold.
    pub wrong_key: bool,
    /// Not listed and unreachable until this long after the start.
    pub appears_after: Option<Duration>,
    /// Whoever answers at its address proves another key than the one the
    /// tracker vouches for (a hijacked address).
    pub impostor: bool,
}

/// One simulated seeder.
#[derive(Clone, Debug)]
pub(crate) struct SeederSpec {
    pub pieces: PieceSet,
    pub latency_ms: u64,
    /// Link speed from the seeder to the downloader.
    pub bytes_per_ms: u64,
    pub faults: Faults,
}

/// Everything a world is built from.
#[derive(Clone, Debug)]
pub(crate) struct Scenario {
    pub seed: u64,
    pub file_len: usize,
    pub piece_len: u32,
    pub seeders: Vec<SeederSpec>,
    pub cfg: DownloadConfig,
    /// Pieces already on disk (resume).
    pub resume: Vec<u32>,
    /// The disk fails writing this piece.
    pub write_fail: Option<u32>,
    pub tracker_latency_ms: u64,
    pub disk_latency_ms: u64,
    pub ticket_ttl: Duration,
}

impl Scenario {
    /// `seeders` honest full seeders, 1 ms apart, 1 MB/s... 10 MB/s links.
    pub fn new(seed: u64, file_len: usize, piece_len: u32, seeders: usize) -> Self {
        let pieces = FileMeta::pieces_for(file_len as u64, piece_len) as u32;
        let spec = |i: usize| SeederSpec {
            pieces: PieceSet::full(pieces),
            latency_ms: 1 + i as u64,
            bytes_per_ms: 1000 * (1 + i as u64 * 3),
            faults: Faults::default(),
        };
        Scenario {
            seed,
            file_len,
            piece_len,
            seeders: (0..seeders).map(spec).collect(),
            cfg: DownloadConfig::default(),
            resume: Vec::new(),
            write_fail: None,
            tracker_latency_ms: 5,
            disk_latency_ms: 1,
            ticket_ttl: Duration::from_secs(600),
        }
    }

    pub fn pieces(&self) -> u32 {
        FileMeta::pieces_for(self.file_len as u64, self.piece_len) as u32
    }
}

struct SimSeeder {
    machine: Seeder,
    user: UserName,
    addr: SocketAddr,
    /// The key the tracker signs this seeder's tickets with.
    tracker_key: SeederKey,
    spec: SeederSpec,
    sent_pieces: u32,
    closed_once: bool,
}

/// One connection: both ends and when each direction is free again.
struct Link {
    seeder: usize,
    conn: ConnId,
    /// The download still reads from it (it has not disconnected).
    down_open: bool,
    /// The seeder still reads from it (it has not closed).
    seeder_open: bool,
    up_free: Instant,
    down_free: Instant,
}

enum Event {
    ToDownload(Input),
    ToSeeder(usize, seeder::Input),
    /// Seeder `i`'s driver serves a piece (a `Serve` done): the bytes go
    /// out on the connection, then the seeder hears `Served`.
    Serve {
        i: usize,
        conn: ConnId,
        index: u32,
        range: std::ops::Range<usize>,
    },
}

/// What the oracles saw.
#[derive(Clone, Debug, Default)]
pub(crate) struct Record {
    /// `WritePiece` count per piece.
    pub writes: BTreeMap<u32, u32>,
    /// Requests sent to a peer that did not hold the piece.
    pub requests_to_lacking: u32,
    pub max_in_flight: usize,
    pub max_peer_in_flight: usize,
    pub announces: Vec<PieceSet>,
    pub tracker_asks: Vec<Instant>,
    pub cancels_sent: u32,
    pub disconnects: Vec<(PeerId, String)>,
    /// One line per download output, for determinism checks.
    pub trace: Vec<String>,
}

/// The simulated world. See the module docs.
pub(crate) struct World {
    pub now: Instant,
    pub download: Download,
    pub record: Record,
    pub result: Option<Result<(), DownloadError>>,
    pub steps: u64,
    /// The client node's global download limit, if the test sets one:
    /// the world grants requests from it as `ClientNode` does.
    pub global: Option<TokenBucket>,
    file: Bytes,
    meta: FileMeta,
    group: GroupName,
    seeders: Vec<SimSeeder>,
    disk: Vec<u8>,
    links: BTreeMap<PeerId, Link>,
    by_conn: BTreeMap<(usize, ConnId), PeerId>,
    next_conn: u64,
    events: BinaryHeap<Reverse<(Instant, u64)>>,
    payloads: BTreeMap<u64, Event>,
    seq: u64,
    rng: ChaCha8Rng,
    sc: Scenario,
}

/// Random file bytes and their metadata.
pub(crate) fn make_file(rng: &mut ChaCha8Rng, len: usize, piece_len: u32) -> (Bytes, FileMeta) {
    let mut data = vec![0u8; len];
    rng.fill_bytes(&mut data);
    let piece_hashes: Vec<_> = data.chunks(piece_len as usize).map(hash::sha1).collect();
    let meta = FileMeta {
        name: FileName::new("data.bin").expect("valid"),
        size: len as u64,
        piece_len,
        file_hash: hash::file_root(len as u64, piece_len, &piece_hashes),
        piece_hashes,
    };
    (Bytes::from(data), meta)
}

impl World {
    pub fn new(sc: Scenario) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(sc.seed);
        let (file, meta) = make_file(&mut rng, sc.file_len, sc.piece_len);
        let group = GroupName::new("g").expect("valid");
        let seeders = (0..sc.seeders.len())
            .map(|i| Self::make_seeder(&mut rng, i, &sc, &group, &meta))
            .collect();
        let mut disk = vec![0u8; sc.file_len];
        let mut have = PieceSet::empty(meta.piece_count());
        for &i in &sc.resume {
            have.insert(i);
            let r = piece_range(&meta, i);
            disk[r.clone()].copy_from_slice(&file[r]);
        }
        let dl_seed = rng.random();
        let download = Download::new(
            sc.cfg.clone(),
            group.clone(),
            meta.clone(),
            have,
            dl_seed,
            T0,
        );
        let mut w = World {
            now: T0,
            download,
            record: Record::default(),
            result: None,
            steps: 0,
            global: sc.cfg.max_rate.map(|r| TokenBucket::new(T0, r)),
            file,
            meta,
            group,
            seeders,
            disk,
            links: BTreeMap::new(),
            by_conn: BTreeMap::new(),
            next_conn: 1,
            events: BinaryHeap::new(),
            payloads: BTreeMap::new(),
            seq: 0,
            rng,
            sc,
        };
        w.drain();
        w.grant();
        w
    }

    fn make_seeder(
        rng: &mut ChaCha8Rng,
        i: usize,
        sc: &Scenario,
        group: &GroupName,
        meta: &FileMeta,
    ) -> SimSeeder {
        let spec = sc.seeders[i].clone();
        let user = UserName::new(format!("s{i}")).expect("valid");
        let key = SeederKey(rng.random());
        let tracker_key = if spec.faults.wrong_key {
            SeederKey(rng.random())
        } else {
            key
        };
        // Drawn as when the seeder took a seed, so scenarios stay the same.
        let _: u64 = rng.random();
        let now = T0;
        let mut machine = Seeder::new(SeederConfig::default(), now);
        machine.set_identity(now, user.clone(), key);
        machine
            .add_share(now, SHARE, group.clone(), meta, spec.pieces.clone())
            .expect("valid share");
        let addr = SocketAddr::from(([10, 0, 0, i as u8 + 1], 7000));
        SimSeeder {
            machine,
            user,
            addr,
            tracker_key,
            spec,
            sent_pieces: 0,
            closed_once: false,
        }
    }

    pub fn file(&self) -> &Bytes {
        &self.file
    }

    pub fn disk(&self) -> &[u8] {
        &self.disk
    }

    pub fn seeder(&self, i: usize) -> &Seeder {
        &self.seeders[i].machine
    }

    /// Pieces each seeder served.
    pub fn served(&self) -> Vec<u64> {
        let served = |s: &SimSeeder| s.machine.stats().served.pieces;
        self.seeders.iter().map(served).collect()
    }

    // ------------------------------------------------------------ running

    /// Runs until the download finishes or `max_steps` steps have run.
    pub fn run(&mut self, max_steps: u64) -> Option<Result<(), DownloadError>> {
        while self.result.is_none() && self.steps < max_steps && self.step() {}
        self.result.clone()
    }

    /// Applies the earliest event or deadline; false if there is none.
    pub fn step(&mut self) -> bool {
        let ev = self.events.peek().map(|Reverse((t, _))| *t);
        let dl = self.download.poll_timeout().map(|(t, _)| t);
        let sd = (0..self.seeders.len())
            .filter_map(|i| self.seeders[i].machine.poll_timeout().map(|(t, _)| (t, i)))
            .min();
        let grant = self
            .global
            .as_ref()
            .filter(|_| self.download.wants_request())
            .map(TokenBucket::ready_at);
        let next = [ev, dl, sd.map(|(t, _)| t), grant]
            .into_iter()
            .flatten()
            .min();
        let Some(at) = next else {
            return false;
        };
        self.now = self.now.max(at);
        self.steps += 1;
        if ev == Some(at) {
            let Reverse((_, seq)) = self.events.pop().expect("peeked");
            match self.payloads.remove(&seq).expect("payload") {
                Event::ToDownload(input) => self.download.handle_input(self.now, input),
                Event::ToSeeder(i, input) => self.seeders[i].machine.handle_input(self.now, input),
                Event::Serve {
                    i,
                    conn,
                    index,
                    range,
                } => {
                    let data = self.file.slice(range);
                    self.seeder_sends(i, conn, PeerMsg::Piece { index, data });
                    let served = seeder::Input::Served { conn, index };
                    self.seeders[i].machine.handle_input(self.now, served);
                }
            }
        } else if dl == Some(at) {
            self.download.handle_timeout(self.now);
        } else if let Some((_, i)) = sd {
            self.seeders[i].machine.handle_timeout(self.now);
        }
        self.drain();
        self.grant();
        self.observe();
        true
    }

    /// Grants requests under the global limit while its bucket allows.
    fn grant(&mut self) {
        while let Some(b) = &mut self.global {
            if !self.download.wants_request() || !b.ready(self.now) {
                return;
            }
            let bytes = self.download.allow_request(self.now);
            b.take(self.now, bytes);
            self.drain();
        }
    }

    /// Sets the download's rate limits (the global bucket is the world's).
    pub fn set_rates(&mut self, max_rate: Option<u64>, per_peer: Option<u64>) {
        self.global = max_rate.map(|r| TokenBucket::new(self.now, r));
        self.download.set_rates(self.now, max_rate, per_peer);
        self.drain();
        self.grant();
    }

    fn observe(&mut self) {
        self.download.check_invariants();
        for s in &self.seeders {
            s.machine.check_invariants();
        }
        let r = &mut self.record;
        r.max_in_flight = r.max_in_flight.max(self.download.in_flight());
        for &p in self.links.keys() {
            r.max_peer_in_flight = r.max_peer_in_flight.max(self.download.peer_in_flight(p));
        }
    }

    fn schedule(&mut self, at: Instant, ev: Event) {
        self.seq += 1;
        self.events.push(Reverse((at, self.seq)));
        self.payloads.insert(self.seq, ev);
    }

    fn drain(&mut self) {
        while let Some(out) = self.download.poll_output() {
            self.record
                .trace
                .push(format!("{:?} {}", self.now, describe(&out)));
            self.on_download_output(out);
        }
        for i in 0..self.seeders.len() {
            while let Some(out) = self.seeders[i].machine.poll_output() {
                self.on_seeder_output(i, out);
            }
        }
    }

    // ------------------------------------------------------------ download side

    fn on_download_output(&mut self, out: Output) {
        let later = |ms: u64| self.now + Duration(ms);
        match out {
            Output::Connect { peer, addr } => self.connect(peer, addr),
            Output::Send { peer, msg } => self.download_sends(peer, msg),
            Output::Disconnect { peer, reason } => {
                self.record.disconnects.push((peer, reason.to_string()));
                self.download_closes(peer);
            }
            Output::WritePiece {
                index,
                offset,
                data,
            } => self.write(index, offset, &data),
            Output::AnnounceHave { pieces } => self.record.announces.push(pieces),
            Output::AskTrackerForPeers => {
                self.record.tracker_asks.push(self.now);
                let list = self.listing();
                let at = later(self.sc.tracker_latency_ms);
                self.schedule(at, Event::ToDownload(Input::Peers(list)));
            }
            Output::Finished(r) => self.result = Some(r),
        }
    }

    fn online(&self, i: usize) -> bool {
        let f = &self.seeders[i].spec.faults;
        f.appears_after.is_none_or(|d| self.now >= T0 + d)
    }

    /// The tracker's answer: every online seeder, with a fresh ticket.
    fn listing(&self) -> Vec<PeerInfo> {
        let me = UserName::new("d").expect("valid");
        let expires_ms = (self.now + self.sc.ticket_ttl).as_millis();
        (0..self.seeders.len())
            .filter(|&i| self.online(i))
            .map(|i| {
                let s = &self.seeders[i];
                let mut t = Ticket {
                    downloader: me.clone(),
                    group: self.group.clone(),
                    file: self.meta.name.clone(),
                    file_hash: self.meta.file_hash,
                    seeder: s.user.clone(),
                    downloader_key: DOWNLOADER_KEY,
                    seeder_key: seeder_key(i),
                    expires_ms,
                    mac: Mac::default(),
                };
                ticket::sign(&s.tracker_key, &mut t);
                PeerInfo {
                    user: s.user.clone(),
                    addr: s.addr,
                    pieces: s.spec.pieces.clone(),
                    ticket: t,
                }
            })
            .collect()
    }

    fn connect(&mut self, peer: PeerId, addr: SocketAddr) {
        let found = (0..self.seeders.len()).find(|&i| self.seeders[i].addr == addr);
        let Some(i) = found.filter(|&i| self.online(i) && !self.seeders[i].spec.faults.unreachable)
        else {
            let at = self.now + Duration(1);
            return self.schedule(at, Event::ToDownload(Input::ConnectFailed { peer }));
        };
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        let lat = Duration(self.seeders[i].spec.latency_ms);
        let link = Link {
            seeder: i,
            conn,
            down_open: true,
            seeder_open: true,
            up_free: self.now + lat,
            down_free: self.now + lat + lat,
        };
        self.links.insert(peer, link);
        self.by_conn.insert((i, conn), peer);
        let peer_key = DOWNLOADER_KEY;
        self.schedule(
            self.now + lat,
            Event::ToSeeder(
                i,
                seeder::Input::Opened {
                    conn,
                    peer: peer_key,
                    addr: std::net::IpAddr::from([10, 0, 0, 1]),
                },
            ),
        );
        let key = if self.seeders[i].spec.faults.impostor {
            IMPOSTOR_KEY
        } else {
            seeder_key(i)
        };
        let ev = Event::ToDownload(Input::Connected { peer, key });
        self.schedule(self.now + lat + lat, ev);
    }

    fn download_sends(&mut self, peer: PeerId, msg: PeerMsg) {
        if let (PeerMsg::Request { index }, Some(l)) = (&msg, self.links.get(&peer)) {
            let holds = self.seeders[l.seeder].spec.pieces.contains(*index);
            self.record.requests_to_lacking += u32::from(!holds);
        }
        self.record.cancels_sent += u32::from(matches!(msg, PeerMsg::Cancel { .. }));
        let Some(l) = self.links.get_mut(&peer).filter(|l| l.down_open) else {
            return;
        };
        let lat = Duration(self.seeders[l.seeder].spec.latency_ms);
        l.up_free = l.up_free.max(self.now + lat);
        let (at, i, conn) = (l.up_free, l.seeder, l.conn);
        self.schedule(at, Event::ToSeeder(i, seeder::Input::Msg { conn, msg }));
    }

    fn download_closes(&mut self, peer: PeerId) {
        let Some(l) = self.links.get_mut(&peer).filter(|l| l.down_open) else {
            return;
        };
        l.down_open = false;
        let lat = Duration(self.seeders[l.seeder].spec.latency_ms);
        let at = l.up_free.max(self.now + lat);
        let (i, conn) = (l.seeder, l.conn);
        if l.seeder_open {
            self.schedule(at, Event::ToSeeder(i, seeder::Input::Closed { conn }));
        }
    }

    fn write(&mut self, index: u32, offset: u64, data: &Bytes) {
        let r = piece_range(&self.meta, index);
        assert_eq!(
            offset as usize, r.start,
            "piece {index} written at a wrong offset"
        );
        assert!(
            data[..] == self.file[r.clone()],
            "piece {index} written with bytes that are not the file's"
        );
        *self.record.writes.entry(index).or_default() += 1;
        self.disk[r].copy_from_slice(data);
        let at = self.now + Duration(self.sc.disk_latency_ms);
        let input = if self.sc.write_fail == Some(index) {
            let reason = "No space left on device (os error 28)".into();
            Input::WriteFailed { index, reason }
        } else {
            Input::PieceWritten { index }
        };
        self.schedule(at, Event::ToDownload(input));
    }

    // ------------------------------------------------------------ seeder side

    fn on_seeder_output(&mut self, i: usize, out: seeder::Output) {
        match out {
            seeder::Output::Send { conn, msg } => self.seeder_sends(i, conn, msg),
            seeder::Output::Serve {
                conn,
                index,
                offset,
                len,
                ..
            } => {
                // As the real drivers do: the bytes go out from the file
                // (here after the disk's latency), then `Served`.
                let at = self.now + Duration(self.sc.disk_latency_ms);
                let (o, n) = (offset as usize, len as usize);
                let range = o..o + n;
                let serve = Event::Serve {
                    i,
                    conn,
                    index,
                    range,
                };
                self.schedule(at, serve);
            }
            seeder::Output::Close { conn, .. } => self.seeder_closes(i, conn),
        }
    }

    fn seeder_sends(&mut self, i: usize, conn: ConnId, msg: PeerMsg) {
        let Some(&peer) = self.by_conn.get(&(i, conn)) else {
            return;
        };
        let input = match msg {
            PeerMsg::Piece { index, data } => {
                let Some(data) = self.apply_faults(i, data) else {
                    return;
                };
                let sha1 = hash::sha1(&data);
                Input::Piece {
                    peer,
                    index,
                    data,
                    sha1,
                }
            }
            msg => Input::Msg { peer, msg },
        };
        let bytes = match &input {
            Input::Piece { data, .. } => data.len() as u64,
            _ => 16,
        };
        let s = &self.seeders[i].spec;
        let (lat, bw) = (Duration(s.latency_ms), s.bytes_per_ms.max(1));
        let l = self.links.get_mut(&peer).expect("linked");
        let start = l.down_free.max(self.now);
        l.down_free = start + Duration(bytes.div_ceil(bw));
        let at = l.down_free + lat;
        if l.down_open {
            self.schedule(at, Event::ToDownload(input));
        }
        self.maybe_break(i, conn);
    }

    /// Faults on a piece leaving seeder `i`: swallowed, corrupted or sent.
    fn apply_faults(&mut self, i: usize, data: Bytes) -> Option<Bytes> {
        let s = &mut self.seeders[i];
        s.sent_pieces += 1;
        let f = &s.spec.faults;
        if f.drop_pieces {
            return None;
        }
        let every = f.corrupt_every.map(|n| n.max(1));
        if every.is_none_or(|n| !s.sent_pieces.is_multiple_of(n)) {
            return Some(data);
        }
        let mut v = data.to_vec();
        let at = self.rng.random_range(0..v.len());
        v[at] ^= 0x5a;
        Some(Bytes::from(v))
    }

    fn maybe_break(&mut self, i: usize, conn: ConnId) {
        let s = &mut self.seeders[i];
        let due = s
            .spec
            .faults
            .close_after
            .is_some_and(|n| s.sent_pieces >= n);
        if due && !s.closed_once {
            s.closed_once = true;
            let at = self.now + Duration(1);
            self.schedule(at, Event::ToSeeder(i, seeder::Input::Closed { conn }));
            self.seeder_closes(i, conn);
        }
    }

    fn seeder_closes(&mut self, i: usize, conn: ConnId) {
        let Some(&peer) = self.by_conn.get(&(i, conn)) else {
            return;
        };
        let l = self.links.get_mut(&peer).expect("linked");
        if !l.seeder_open {
            return;
        }
        l.seeder_open = false;
        let lat = Duration(self.seeders[i].spec.latency_ms);
        let at = l.down_free.max(self.now) + lat;
        if l.down_open {
            self.schedule(at, Event::ToDownload(Input::Closed { peer }));
        }
    }
}

fn piece_range(meta: &FileMeta, i: u32) -> std::ops::Range<usize> {
    let start = meta.piece_offset(i) as usize;
    start..start + meta.piece_size(i) as usize
}

/// A download output in one short line (piece bytes left out).
fn describe(out: &Output) -> String {
    match out {
        Output::WritePiece {
            index,
            offset,
            data,
        } => {
            format!("WritePiece {index} @{offset} +{}", data.len())
        }
        Output::Send {
            peer,
            msg: PeerMsg::Open { .. },
        } => format!("Send {peer} Open"),
        other => format!("{other:?}"),
    }
}
