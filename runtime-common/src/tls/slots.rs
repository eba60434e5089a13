//! [`HandshakeSlots`]: the bound on accepted connections still in their
//! TLS handshake, [`TLS_HANDSHAKES_MAX`] in all and
//! [`TLS_HANDSHAKES_PER_ADDR_MAX`] from one address.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use super::{TLS_HANDSHAKES_MAX, TLS_HANDSHAKES_PER_ADDR_MAX};

/// The handshakes of accepted connections running now, at most
/// [`TLS_HANDSHAKES_MAX`] in all and [`TLS_HANDSHAKES_PER_ADDR_MAX`] from
/// one address; each runtime's acceptor takes a slot before it starts
/// one, so a crowd of silent peers cannot hold more, and one host cannot
/// take them all.
#[derive(Debug, Clone, Default)]
pub struct HandshakeSlots(Arc<Mutex<Slots>>);

#[derive(Debug, Default)]
struct Slots {
    running: usize,
    per_addr: BTreeMap<IpAddr, usize>,
    /// Refusals logged, rate-limited (a flood must not fill the log).
    log: crate::log_limit::LogLimit,
}

/// One running handshake; its slot is free again when this drops (the
/// handshake ended, or its thread or task could not start).
#[derive(Debug)]
pub struct HandshakeSlot(Arc<Mutex<Slots>>, IpAddr);

impl HandshakeSlots {
    /// A slot for the handshake of the connection from `addr`; `None`
    /// (and a warning) when all are taken, or all of its address's: the
    /// caller closes it.
    pub fn take(&self, addr: std::net::SocketAddr) -> Option<HandshakeSlot> {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let from = s.per_addr.get(&addr.ip()).copied().unwrap_or(0);
        let full = s.running >= TLS_HANDSHAKES_MAX;
        if full || from >= TLS_HANDSHAKES_PER_ADDR_MAX {
            use crate::log_limit::{Admit, with_suppressed};
            if let Admit::Log { suppressed } = s.log.admit(std::time::Instant::now()) {
                let line = if full {
                    format!(
                        "{addr}: {TLS_HANDSHAKES_MAX} TLS handshakes already running \
                         (TLS_HANDSHAKES_MAX); connection closed"
                    )
                } else {
                    format!(
                        "{addr}: {TLS_HANDSHAKES_PER_ADDR_MAX} TLS handshakes from {} already \
                         running (TLS_HANDSHAKES_PER_ADDR_MAX); connection closed",
                        addr.ip()
                    )
                };
                tracing::warn!("{}", with_suppressed(format_args!("{line}"), suppressed));
            }
            return None;
        }
        s.running += 1;
        s.per_addr.insert(addr.ip(), from + 1);
        Some(HandshakeSlot(self.0.clone(), addr.ip()))
    }

    /// Handshakes running now.
    pub fn running(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).running
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        s.running -= 1;
        if let Some(n) = s.per_addr.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                s.per_addr.remove(&self.1);
            }
        }
    }
}
