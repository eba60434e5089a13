//! Swarm parameters: one u64 seed draws the whole scenario (TigerBeetle's
//! VOPR style). Node counts, link latencies, fault kinds and their weights,
//! the workload's size and pace, and one child seed per node, drawn in a
//! fixed order so a seed replays bit for bit.
//!
//! Each seed turns some fault kinds off entirely (weight 0): a run that
//! only drops connections explores different interleavings than one that
//! only partitions, and a mix of everything hides the rare paths.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Test-only switches that plant bugs in the machines (checker teeth).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bugs {
    /// A backup skips applying one op in a hundred.
    pub follower_skips_op: bool,
    /// The download scheduler writes pieces without checking their hash.
    pub scheduler_skips_verify: bool,
    /// The seeder serves any `Open`, ticket or not.
    pub seeder_ignores_tickets: bool,
    /// Trackers accept a peer tracker whatever key it proves.
    pub tracker_skips_key_check: bool,
    /// The seeder serves a valid ticket whoever shows it (no check that
    /// the connection's key is the ticket's downloader key).
    pub seeder_skips_key_check: bool,
}

/// Relative weights of the fault kinds (0 = never in this run).
#[derive(Clone, Debug, Default)]
pub struct FaultWeights {
    pub conn_drop: u32,
    pub partition: u32,
    pub tracker_crash: u32,
    pub client_crash: u32,
    pub clock_jump: u32,
    pub rogue_tracker: u32,
    pub rogue_seeder: u32,
    /// A rogue replays a ticket sniffed from a real download, from its own
    /// key (`world_identity.rs`).
    pub sniffed_ticket: u32,
    /// A client's next dials to a tracker it pinned land at an impostor.
    pub hijack: u32,
}

impl FaultWeights {
    pub fn total(&self) -> u32 {
        self.conn_drop
            + self.partition
            + self.tracker_crash
            + self.client_crash
            + self.clock_jump
            + self.rogue_tracker
            + self.rogue_seeder
            + self.sniffed_ticket
            + self.hijack
    }
}

#[derive(Clone, Debug)]
pub struct Swarm {
    pub seed: u64,
    pub trackers: usize,
    pub clients: usize,
    /// One-way latency of a link, drawn per connection.
    pub latency_ms: (u64, u64),
    /// Percent of connections that are slow (extra latency, low bandwidth).
    pub slow_pct: u32,
    pub slow_extra_ms: (u64, u64),
    /// Bandwidth of a slow link in bytes per millisecond.
    pub slow_bytes_per_ms: u64,
    /// Percent of writes chopped into several chunks (partial reads).
    pub chop_pct: u32,
    /// Tracker disk: time to make a log append durable (0 = at once).
    pub disk_ms: (u64, u64),
    /// Time a broken connection takes to be noticed.
    pub detect_ms: (u64, u64),
    /// Time between two faults, and the weights of their kinds.
    pub fault_gap_ms: (u64, u64),
    pub faults: FaultWeights,
    pub partition_ms: (u64, u64),
    pub down_ms: (u64, u64),
    /// Percent of partitions that are silent (traffic black-holed, no
    /// close event), and of crashes where the host vanishes silently.
    pub silent_pct: u32,
    pub vanish_pct: u32,
    /// Clients that serve corrupt bytes for some pieces.
    pub corrupt: Vec<usize>,
    /// Actions each client's user takes in the safety phase.
    pub actions: (u32, u32),
    pub think_ms: (u64, u64),
    /// Upper bound of the safety phase and of the quiet (liveness) phase.
    pub safety_ms: u64,
    pub quiet_ms: u64,
    pub tracker_seeds: Vec<u64>,
    pub client_seeds: Vec<u64>,
    pub net_seed: u64,
    pub fault_seed: u64,
    pub workload_seed: u64,
    pub bugs: Bugs,
}

fn range(rng: &mut ChaCha8Rng, lo: u64, hi: u64) -> u64 {
    rng.random_range(lo..=hi)
}

/// A percentage that is zero in about a third of the runs.
fn pct(rng: &mut ChaCha8Rng) -> u32 {
    if rng.random_ratio(1, 3) {
        0
    } else {
        rng.random_range(10..=100)
    }
}

/// A weight that is zero in about a third of the runs.
fn weight(rng: &mut ChaCha8Rng, max: u32) -> u32 {
    if rng.random_ratio(1, 3) {
        0
    } else {
        rng.random_range(1..=max)
    }
}

impl Swarm {
    /// The scenario seed `seed` stands for.
    pub fn from_seed(seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let trackers = if rng.random_ratio(1, 2) { 2 } else { 3 };
        // Most runs are small, so a CI batch holds many seeds; a few are big.
        let clients = match rng.random_range(0..100u32) {
            0..60 => range(&mut rng, 2, 6),
            60..88 => range(&mut rng, 7, 20),
            88..97 => range(&mut rng, 21, 50),
            _ => range(&mut rng, 51, 100),
        } as usize;
        let lat_lo = range(&mut rng, 1, 10);
        let lat_hi = lat_lo + range(&mut rng, 0, 80);
        let calm = rng.random_ratio(1, 10);
        let faults = if calm {
            FaultWeights::default()
        } else {
            FaultWeights {
                conn_drop: weight(&mut rng, 10),
                partition: weight(&mut rng, 6),
                tracker_crash: weight(&mut rng, 4),
                client_crash: weight(&mut rng, 4),
                clock_jump: weight(&mut rng, 4),
                rogue_tracker: weight(&mut rng, 3),
                rogue_seeder: weight(&mut rng, 3),
                sniffed_ticket: 0,
                hijack: 0,
            }
        };
        let gap_lo = range(&mut rng, 200, 3000);
        // Two runs in three have corrupt seeders: about one client in three.
        let corrupt = match rng.random_ratio(2, 3) {
            true => (0..clients).filter(|_| rng.random_ratio(1, 3)).collect(),
            false => Vec::new(),
        };
        let disk_hi = if rng.random_ratio(1, 2) {
            0
        } else {
            range(&mut rng, 1, 30)
        };
        let mut s = Swarm {
            seed,
            trackers,
            clients,
            latency_ms: (lat_lo, lat_hi),
            slow_pct: rng.random_range(0..=20),
            slow_extra_ms: (50, range(&mut rng, 50, 1500)),
            slow_bytes_per_ms: range(&mut rng, 16, 512),
            chop_pct: rng.random_range(0..=50),
            disk_ms: (0, disk_hi),
            detect_ms: (0, range(&mut rng, 0, 3000)),
            fault_gap_ms: (gap_lo, gap_lo + range(&mut rng, 0, 8000)),
            faults,
            partition_ms: (500, range(&mut rng, 500, 20_000)),
            down_ms: (100, range(&mut rng, 100, 15_000)),
            silent_pct: 0,
            vanish_pct: 0,
            corrupt,
            actions: (2, range(&mut rng, 4, 30) as u32),
            think_ms: (10, range(&mut rng, 50, 3000)),
            safety_ms: 300_000,
            quiet_ms: 300_000,
            tracker_seeds: Vec::new(),
            client_seeds: Vec::new(),
            net_seed: 0,
            fault_seed: 0,
            workload_seed: 0,
            bugs: Bugs::default(),
        };
        s.draw_child_seeds(&mut rng);
        // Drawn last, so the draws above (and seeds found before silent
        // loss existed) keep their scenario where these are zero.
        s.silent_pct = pct(&mut rng);
        s.vanish_pct = pct(&mut rng);
        // Identity faults (issue 15), drawn after those for the same reason.
        if !calm {
            s.faults.sniffed_ticket = weight(&mut rng, 3);
            s.faults.hijack = weight(&mut rng, 2);
        }
        s
    }

    /// No faults, short links: for hand-written scenarios.
    pub fn calm(seed: u64, trackers: usize, clients: usize) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut s = Swarm {
            seed,
            trackers,
            clients,
            latency_ms: (1, 5),
            slow_pct: 0,
            slow_extra_ms: (0, 0),
            slow_bytes_per_ms: 0,
            chop_pct: 0,
            disk_ms: (0, 0),
            detect_ms: (0, 0),
            fault_gap_ms: (u64::MAX / 4, u64::MAX / 4),
            faults: FaultWeights::default(),
            partition_ms: (0, 0),
            down_ms: (0, 0),
            silent_pct: 0,
            vanish_pct: 0,
            corrupt: Vec::new(),
            actions: (0, 0),
            think_ms: (10, 100),
            safety_ms: 60_000,
            quiet_ms: 60_000,
            tracker_seeds: Vec::new(),
            client_seeds: Vec::new(),
            net_seed: 0,
            fault_seed: 0,
            workload_seed: 0,
            bugs: Bugs::default(),
        };
        s.draw_child_seeds(&mut rng);
        s
    }

    /// Child seeds in a fixed order: trackers by id, clients by index,
    /// then the network, the fault scheduler and the workload.
    fn draw_child_seeds(&mut self, rng: &mut ChaCha8Rng) {
        self.tracker_seeds = (0..self.trackers).map(|_| rng.random()).collect();
        self.client_seeds = (0..self.clients).map(|_| rng.random()).collect();
        self.net_seed = rng.random();
        self.fault_seed = rng.random();
        self.workload_seed = rng.random();
    }

    /// One line for failure reports.
    pub fn summary(&self) -> String {
        let f = &self.faults;
        format!(
            "{} trackers, {} clients, latency {:?} ms, slow {}%, chop {}%, disk {:?} ms, \
             faults every {:?} ms (drop {} part {} tcrash {} ccrash {} clock {} rogue-t {} rogue-s {} \
             sniffed {} hijack {}), \
             silent partitions {}%, vanishing hosts {}%, corrupt seeders {:?}, actions {:?}",
            self.trackers,
            self.clients,
            self.latency_ms,
            self.slow_pct,
            self.chop_pct,
            self.disk_ms,
            self.fault_gap_ms,
            f.conn_drop,
            f.partition,
            f.tracker_crash,
            f.client_crash,
            f.clock_jump,
            f.rogue_tracker,
            f.rogue_seeder,
            f.sniffed_ticket,
            f.hijack,
            self.silent_pct,
            self.vanish_pct,
            self.corrupt,
            self.actions,
        )
    }
}

/// A seed for incarnation `inc` of a node whose first seed is `seed`.
pub fn child_seed(seed: u64, inc: u32) -> u64 {
    let mut x = seed ^ (u64::from(inc).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x
}
