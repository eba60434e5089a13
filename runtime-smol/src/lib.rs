//! Driver on smol / async-io: the same machines as runtime-std, with the
//! same public shape, on an async executor (docs/STYLE.md §2.3).
//!
//! - [`exec`]: the process-wide executor, driven by a few threads, and the
//!   wait every machine loop does (its channel raced against a timer);
//! - [`deadline`]: the lazily re-armed timer every loop races its waits
//!   against (a reader's frame deadline, a writer's batch, a machine's
//!   next timeout);
//! - [`conn`]: per-connection reader and writer tasks on
//!   `Async<TcpStream>`, the accept loop, dialing;
//! - [`tracker`], [`client`]: the drivers. One task owns each machine
//!   (through `runtime_common`'s `Core`, which executes its outputs);
//!   storage and file I/O run on smol's blocking pool, never on the
//!   executor's threads.
//!
//! What both runtimes share lives in `runtime-common` and is re-exported
//! here: [`clock`], [`tracker_info`], [`cli`], [`present`], [`storage`].

pub mod client;
pub mod conn;
pub mod deadline;
pub mod exec;
pub mod tracker;

pub use runtime_common::{Clock, TrackerInfo, TrackerInfoError};
pub use runtime_common::{cli, clock, present, storage, tracker_info};
