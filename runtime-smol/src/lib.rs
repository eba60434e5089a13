//! Driver on smol / async-io: the same machines as runtime-std, on an async executor.
//!
//! Filled in by the runtime issues; the crate exists so the dependency
//! direction `bins -> runtime-* -> p2p-state -> p2p-proto` holds from the start.
