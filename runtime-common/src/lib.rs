//! What every driver shares, so it lives once: nothing here owns a thread,
//! a socket or an executor.
//!
//! - [`buffers`]: pooled piece buffers, aligned for `O_DIRECT`;
//! - [`clock`]: milliseconds since the Unix epoch, never going backwards;
//! - [`tracker_info`]: parsing `tracker_info.txt`;
//! - [`tls`]: identities on disk and TLS 1.3 on every connection;
//! - [`known_trackers`]: tracker keys pinned on first contact;
//! - [`listen`]: where a tracker listens (its line, or `--listen`);
//! - [`log_limit`]: rate-limited log lines for what remote peers cause
//!   (refused connections and handshakes);
//! - [`cli`]: the client's command language and the text it prints;
//! - [`private`]: data directories that hold secrets (0700, files 0600,
//!   loose modes tightened at start);
//! - [`storage`]: the tracker's data directory (op log, snapshots,
//!   recovery) and the group-committing storage loop a driver runs on a
//!   blocking thread;
//! - [`runtime`]: what a runtime plugs in ([`runtime::Runtime`]) and the
//!   driver code written once on top of it: attaching a connection, worker
//!   pools, the tracker's and the client's effects;
//! - [`trace`]: a client's data-path counters, written to a file every
//!   10 ms with `client --trace`.

pub mod buffers;
pub mod cli;
pub mod client;
pub mod clock;
pub mod conn;
pub mod fds;
pub mod known_trackers;
pub mod listen;
pub mod log_limit;
pub mod private;
pub mod runtime;
pub mod storage;
pub mod tls;
pub mod trace;
pub mod tracker;
pub mod tracker_info;
pub mod web;

pub use clock::Clock;

/// What woke a machine loop (each runtime's wait returns it).
#[derive(Debug)]
pub enum Woke<T> {
    Msg(T),
    /// The machine's deadline came first.
    Timeout,
    /// Every sender has gone.
    Closed,
}
pub use tracker_info::{TrackerInfo, TrackerInfoError};
