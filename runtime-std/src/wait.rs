//! The machine loops' wait: the first of a message on the channel and the
//! machine's deadline (raft-rs `single_mem_node`: `recv_timeout`).

use std::sync::mpsc::{Receiver, RecvTimeoutError};

use p2p_state::Instant;
use runtime_common::{Clock, Woke};

/// Waits for a message on `rx` until `deadline` (none: for a message only).
pub fn recv_until<T>(rx: &Receiver<T>, clock: &Clock, deadline: Option<Instant>) -> Woke<T> {
    match deadline {
        Some(d) => match rx.recv_timeout(clock.until(d)) {
            Ok(m) => Woke::Msg(m),
            Err(RecvTimeoutError::Timeout) => Woke::Timeout,
            Err(RecvTimeoutError::Disconnected) => Woke::Closed,
        },
        None => match rx.recv() {
            Ok(m) => Woke::Msg(m),
            Err(_) => Woke::Closed,
        },
    }
}
