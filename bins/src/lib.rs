//! What the `bins` binaries (and their end-to-end tests) share: the choice
//! of driver ([`runtime`]), how download progress is shown ([`progress`]),
//! the client's background news lines ([`news`]) and its command history
//! ([`history`]). The binaries themselves are `src/bin/*.rs`.

pub mod history;
pub mod news;
pub mod progress;
pub mod runtime;
