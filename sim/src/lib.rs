//! The deterministic simulation of the whole system (issue 7, issue 14
//! §2) lives in this crate's test `tests/sim/` (see its `main.rs`):
//!
//! ```text
//! cargo test -p p2p-sim --test sim                       # everything
//! SIM_SEED=<n> cargo test -p p2p-sim --test sim -- sim_seeds --nocapture
//! ```
//!
//! It is a crate of its own, not a test of `p2p-state`, so that it can
//! drive the driver cores of `runtime-common` (which depends on
//! `p2p-state`) over simulated I/O. This library is empty.
