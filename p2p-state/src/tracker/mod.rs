//! The tracker: replicated state of users, sessions, groups and files.
//!
//! - `state` and friends: the application state, commands turned into ops,
//!   deterministic `apply`, digest, snapshots, on-disk record encoding;
//! - `repl`: the replication machine (primary, backups, catch-up, heal).

pub mod login_guard;
pub mod node;
pub mod repl;

// --- state, commands, apply, storage (owned by the tracker-state work) ---
pub mod apply;
pub mod check;
pub mod invariants;
pub mod limits;
pub mod names;
pub mod password;
pub mod prepare;
pub mod read;
pub mod snapshot;
pub mod state;
pub mod storage;
// --- end ---
