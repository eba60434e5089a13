//! What a harness world is built from: the scenario (file, seeders,
//! latencies, resume, disk faults), each seeder's spec and faults, the
//! keys everyone proves, and the random file.

use bytes::Bytes;
use rand::RngCore;
use rand_chacha::ChaCha8Rng;

use p2p_proto::{FileMeta, FileName, KeyId, PieceSet};

use super::super::DownloadConfig;
use crate::hash;
use crate::seeder::ShareId;
use crate::time::{Duration, Instant};

/// Simulated wall clock at the start (tickets compare against Unix ms).
pub(crate) const T0: Instant = Instant(1_700_000_000_000);
/// The share id every simulated seeder uses for the file.
pub(super) const SHARE: ShareId = ShareId::Upload(1);
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
    pub(crate) fn new(seed: u64, file_len: usize, piece_len: u32, seeders: usize) -> Self {
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

    pub(crate) fn pieces(&self) -> u32 {
        FileMeta::pieces_for(self.file_len as u64, self.piece_len) as u32
    }
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
