//! The pieces of `p2p-bench` (see `src/bin/p2p-bench.rs`).

pub mod baseline;
pub mod disk;
pub mod proc;
pub mod report;
pub mod swarm;
pub mod trace;
pub mod tracker_load;
