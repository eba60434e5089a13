//! What the `bins` binaries (and their end-to-end tests) share: the choice
//! of driver ([`runtime`]), how download progress is rendered
//! ([`progress`]) and the client's command history ([`history`]). The
//! binaries themselves are `src/bin/*.rs`; every line they print is
//! worded by `runtime_common::present`.

pub mod history;
pub mod progress;
pub mod runtime;
