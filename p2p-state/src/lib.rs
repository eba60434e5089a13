//! Pure state machines of the p2p group file-sharing system: tracker (state,
//! ops, replication), client session, download scheduler, seeder.
//!
//! No sockets, threads, clocks, files or OS randomness: time comes in as
//! [`Instant`], randomness from seeds, and every effect goes out as an output.

#![warn(unreachable_pub)]

// The public surface (ARCHITECTURE.md, "API boundaries"): the two machines
// a driver runs and what executing their outputs needs, the sub-machines
// the simulation and tests drive alone, and the fuzz bodies. Everything
// else is an internal step, private to the crate.
pub mod client;
pub mod download;
pub mod fuzzing;
pub mod hash;
pub mod seeder;
pub mod ticket;
pub mod tracker;

mod machine;
mod rate;
mod time;
mod timer;

pub use machine::Machine;
pub use time::{Duration, Instant};
