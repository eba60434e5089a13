//! Driver on `std::net` and threads: feeds the p2p-state machines and
//! executes their outputs (STYLE 2.3).
//!
//! - [`clock`]: milliseconds since the Unix epoch, never going backwards;
//! - [`conn`]: per-connection reader and writer threads, listener, dialing
//!   (protocol-free, shared with the client driver);
//! - [`tracker_info`]: parsing `tracker_info.txt`;
//! - [`storage`]: the tracker's data directory (op log, snapshots, recovery)
//!   and its group-committing storage thread;
//! - [`tracker`]: the tracker driver itself.

pub mod cli;
pub mod client;
pub mod clock;
pub mod conn;
pub mod storage;
pub mod tracker;
pub mod tracker_info;

pub use clock::Clock;
pub use tracker_info::{TrackerInfo, TrackerInfoError};
