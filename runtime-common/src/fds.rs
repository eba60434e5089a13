//! The process's descriptor budget (issue 16 §3): the soft
//! `RLIMIT_NOFILE` raised to the hard limit at start, and the tracker's
//! client connection cap derived from what that leaves once the tracker's
//! own needs are set aside, so a flood of clients never takes the
//! descriptors replication and the data directory need.

use p2p_state::tracker::node::CLIENT_CONNS_MAX;
use rustix::process::{Resource, getrlimit, setrlimit};

use crate::tls::TLS_HANDSHAKES_MAX;

/// Descriptors kept for everything but connections: the data directory's
/// files, the listener, dials in progress, the console and logs.
pub const FDS_RESERVED: u64 = 64;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (an unprivileged
/// process may) and returns the soft limit now in force; on failure the
/// old one stays, with a warning.
pub fn raise_nofile_limit() -> u64 {
    let lim = getrlimit(Resource::Nofile);
    let (soft, hard) = (lim.current, lim.maximum);
    if soft != hard {
        let mut new = lim;
        new.current = hard;
        match setrlimit(Resource::Nofile, new) {
            Ok(()) => return hard.unwrap_or(u64::MAX),
            Err(e) => tracing::warn!(
                "cannot raise the open-file limit from {soft:?} to {hard:?}: {e}; \
                 fewer client connections are allowed (raise `ulimit -n`)"
            ),
        }
    }
    soft.unwrap_or(u64::MAX)
}

/// The most client connections a tracker with `nofile` descriptors can
/// hold when each connection takes `fds_per_conn` of them: what is left
/// after [`FDS_RESERVED`], the [`TLS_HANDSHAKES_MAX`] handshakes that may
/// be running and `trackers` peer connections (two each: ours and
/// theirs), at most [`CLIENT_CONNS_MAX`].
pub fn client_conns_max(nofile: u64, fds_per_conn: u64, trackers: usize) -> usize {
    let fds_per_conn = fds_per_conn.max(1);
    let handshakes = TLS_HANDSHAKES_MAX as u64;
    let peers = 2 * trackers as u64 * fds_per_conn;
    let left = nofile.saturating_sub(FDS_RESERVED + handshakes + peers);
    let n = usize::try_from(left / fds_per_conn).unwrap_or(usize::MAX);
    n.min(CLIENT_CONNS_MAX)
}

/// Sets `node`'s client connection cap from the descriptors this process
/// has (after raising the soft limit), and says so when it is below the
/// default.
pub fn budget_client_conns(node: &mut p2p_state::tracker::node::NodeConfig, fds_per_conn: u64) {
    let nofile = raise_nofile_limit();
    let max = client_conns_max(nofile, fds_per_conn, node.trackers.len());
    if max < node.client_conns_max {
        tracing::warn!(
            "open-file limit {nofile}: at most {max} client connections \
             (raise `ulimit -n` for more)"
        );
        node.client_conns_max = max.max(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_room_for_the_tracker_itself() {
        // The common `ulimit -n 1024`, three descriptors a connection
        // (std runtime), two trackers.
        let n = client_conns_max(1024, 3, 2);
        assert_eq!(n, (1024 - 64 - 256 - 12) / 3);
        // At the bound: every client connection taken, the reserve intact.
        let used = n as u64 * 3 + 64 + 256 + 12;
        assert!(used <= 1024 && used + 3 > 1024);
        assert_eq!(client_conns_max(10, 1, 2), 0, "nothing left");
        assert_eq!(client_conns_max(u64::MAX, 1, 2), CLIENT_CONNS_MAX);
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let now = raise_nofile_limit();
        let lim = getrlimit(Resource::Nofile);
        assert_eq!(lim.current, lim.maximum);
        assert_eq!(Some(now), lim.current.or(Some(u64::MAX)));
    }
}
