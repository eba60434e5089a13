//! Driver on `std::net` and threads: feeds the p2p-state machines and
//! executes their outputs (docs/STYLE.md §2.3).
//!
//! - [`conn`]: per-connection reader and writer threads, listener, dialing
//!   (protocol-free, shared with the client driver);
//! - [`tracker`]: the tracker driver itself;
//! - [`client`]: the client driver;
//! - [`wait`]: the machine loops' wait (channel or deadline).
//!
//! What both runtimes share lives in `runtime-common` and is re-exported
//! here: [`clock`], [`tracker_info`], [`cli`], [`present`], [`storage`].

pub mod client;
pub mod conn;
pub mod tracker;
pub mod wait;

pub use runtime_common::{Clock, TrackerInfo, TrackerInfoError};
pub use runtime_common::{cli, clock, present, storage, tracker_info};
