//! Pure state machines of the p2p group file-sharing system: tracker (state,
//! ops, replication), client session, download scheduler, seeder.
//!
//! No sockets, threads, clocks, files or OS randomness: time comes in as
//! [`Instant`], randomness from seeds, and every effect goes out as an output.

pub mod client;
pub mod download;
pub mod fuzzing;
pub mod hash;
pub mod machine;
pub mod rate;
pub mod seeder;
pub mod ticket;
pub mod time;
pub mod timer;
pub mod tracker;

pub use machine::Machine;
pub use time::{Duration, Instant};
