//! What the `bins` binaries (and their end-to-end tests) share: the choice
//! of driver ([`runtime`]) and how download progress is shown
//! ([`progress`]). The binaries themselves are `src/bin/*.rs`.

pub mod progress;
pub mod runtime;
