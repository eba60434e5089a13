//! The tracker: replicated state of users, sessions, groups and files.
//!
//! - `state` and friends: the application state, commands turned into ops,
//!   deterministic `apply`, digest, snapshots, on-disk record encoding;
//! - `repl`: the replication machine (primary, backups, catch-up, heal).

pub mod repl;

pub mod state;
