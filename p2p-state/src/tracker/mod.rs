//! The tracker: replicated state of users, sessions, groups and files.
//!
//! - `state` and friends: the application state, commands turned into ops,
//!   deterministic `apply`, digest, snapshots, on-disk record encoding;
//! - `repl`: the replication machine (primary, backups, catch-up, heal);
//! - `node`: the tracker machine a driver runs, over both.

// What the drivers, the simulation and the tests use: the machines, the
// state they read, and the formats and work a driver carries out.
pub mod limits;
pub mod node;
pub mod password;
pub mod repl;
pub mod state;
pub mod storage;

// The state's internal steps (writes prepared and checked, ops applied,
// reads, names, invariants, the canonical encoding) and the node's login
// guard: private, reached through `TrackerState`, `Tracker` and their
// re-exports.
mod apply;
mod check;
mod invariants;
mod login_guard;
mod names;
mod prepare;
mod read;
mod snapshot;
