//! Driver on std::net and threads: feeds the p2p-state machines and executes their outputs.
//!
//! Filled in by the runtime issues; the crate exists so the dependency
//! direction `bins -> runtime-* -> p2p-state -> p2p-proto` holds from the start.
