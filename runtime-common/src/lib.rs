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
//! - [`cli`]: the client's command language (parsing, password lines);
//! - [`present`]: every line the user reads on the console (answers,
//!   download lines, progress, news, the tracker's console);
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
pub mod present;
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

/// Most outputs one turn of a driver core executes in a debug build: more
/// is a machine feeding itself without end (a livelock), which would
/// hang a simulation or a test instead of failing it. Release builds
/// only count.
pub const TURN_OUTPUTS_MAX: usize = 1_000_000;

/// Counts one output executed in the current turn of `core` (see
/// [`TURN_OUTPUTS_MAX`]).
#[inline]
pub(crate) fn count_turn_output(n: &mut usize, core: &str) {
    *n += 1;
    debug_assert!(
        *n <= TURN_OUTPUTS_MAX,
        "the {core} core executed over {TURN_OUTPUTS_MAX} outputs in one turn: a livelock"
    );
}

#[cfg(test)]
mod turn_tests {
    use super::*;

    #[test]
    fn a_turn_may_execute_up_to_its_bound() {
        let mut n = 0;
        for _ in 0..TURN_OUTPUTS_MAX {
            count_turn_output(&mut n, "test");
        }
        assert_eq!(n, TURN_OUTPUTS_MAX);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "a livelock")]
    fn one_output_past_the_bound_is_a_livelock() {
        let mut n = TURN_OUTPUTS_MAX;
        count_turn_output(&mut n, "test");
    }
}
