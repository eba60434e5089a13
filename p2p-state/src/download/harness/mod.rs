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
//!
//! The files: `mod.rs` (here) the world, its event queue and its step;
//! `scenario.rs` what a world is built from (seeders, their faults, the
//! file); `download_side.rs` the download's outputs carried out (links
//! opened, messages carried, the tracker's listing, the disk);
//! `seeder_side.rs` the seeders' outputs carried out, with their faults.

mod download_side;
mod scenario;
mod seeder_side;

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::SocketAddr;

use p2p_proto::{
    FileMeta, GroupName, Mac, PeerInfo, PeerMsg, PieceSet, SeederKey, Ticket, UserName,
};

use super::{Download, DownloadError, Input, Output, PeerId};
use crate::hash;
use crate::rate::TokenBucket;
use crate::seeder::{self, ConnId, Seeder, SeederConfig};
use crate::ticket;
use crate::time::{Duration, Instant};

use scenario::SHARE;
pub(crate) use scenario::{
    DOWNLOADER_KEY, Faults, IMPOSTOR_KEY, Scenario, SeederSpec, T0, make_file, seeder_key,
};

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

impl World {
    pub(crate) fn new(sc: Scenario) -> Self {
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

    pub(crate) fn file(&self) -> &Bytes {
        &self.file
    }

    pub(crate) fn disk(&self) -> &[u8] {
        &self.disk
    }

    pub(crate) fn seeder(&self, i: usize) -> &Seeder {
        &self.seeders[i].machine
    }

    /// Pieces each seeder served.
    pub(crate) fn served(&self) -> Vec<u64> {
        let served = |s: &SimSeeder| s.machine.stats().served.pieces;
        self.seeders.iter().map(served).collect()
    }

    // ------------------------------------------------------------ running

    /// Runs until the download finishes or `max_steps` steps have run.
    pub(crate) fn run(&mut self, max_steps: u64) -> Option<Result<(), DownloadError>> {
        while self.result.is_none() && self.steps < max_steps && self.step() {}
        self.result.clone()
    }

    /// Applies the earliest event or deadline; false if there is none.
    pub(crate) fn step(&mut self) -> bool {
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
    pub(crate) fn set_rates(&mut self, max_rate: Option<u64>, per_peer: Option<u64>) {
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
