//! TLS 1.3 on every connection (issue 15), written once for both runtimes:
//! each node's long-term identity on disk ([`Identity`]), the rustls
//! configurations built from it ([`Tls`]), the handshake as a sans-IO
//! step machine ([`Handshake`]: the runtime moves its bytes and enforces
//! [`TLS_HANDSHAKE_TIMEOUT`]), and the established connection
//! ([`Session`]) that a connection's reader and writer share.
//!
//! What is on the wire: TLS 1.3 only (rustls with the `ring` provider),
//! AES-128-GCM, AES-256-GCM, then ChaCha20-Poly1305; RFC 7250 raw public
//! keys both ways (no X.509), so both ends always present their Ed25519
//! key and prove it with the handshake signature. No session tickets, no
//! resumption, no 0-RTT. The TLS layer accepts *any* key: who is
//! acceptable at the other end (a pinned tracker, a ticket's downloader)
//! is decided by the state machines, which get the peer's [`KeyId`] with
//! the connection's first input.
//!
//! A [`Session`] is the rustls connection behind a mutex. No socket I/O
//! happens under the lock: the reader reads ciphertext from the socket
//! into its own buffer, then under the lock feeds it to rustls and copies
//! the plaintext into its [`Deframer`] ([`Session::receive`]); the writer
//! encrypts queued frames under the lock into its own buffer
//! ([`Session::seal`]) and writes that to the socket outside it. When the
//! reader leaves rustls with something to send (an alert, a key update)
//! it wakes the writer.//!
//! The files: `identity.rs` (the key on disk), `config.rs` (the rustls
//! configurations), `verify.rs` (the raw-key verifier both ends use),
//! `slots.rs` (the bound on handshakes at once), `session.rs` (the
//! handshake and the established connection); the limits are here.

use std::io::{self, ErrorKind};
use std::time::Duration;

mod config;
mod identity;
mod session;
mod slots;
mod verify;

pub use config::{ClientStream, Tls};
pub use identity::{IDENTITY_FILE, Identity, IdentityError, key_id_of};
pub use p2p_proto::KeyId;
pub use session::{Handshake, Received, Session};
pub use slots::{HandshakeSlot, HandshakeSlots};

/// How long a TLS handshake may take, from the TCP connection being up to
/// both sides having verified each other; a peer that connects and says
/// nothing is cut after this.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Most handshakes a listener runs at once; a connection accepted beyond
/// that is closed at once (each waiting handshake holds a thread on the
/// std runtime and a socket on both). Handshakes take milliseconds, so
/// this bounds peers that connect and stall, while leaving room for a
/// crowd of clients failing over to this tracker at the same moment.
pub const TLS_HANDSHAKES_MAX: usize = 256;
/// Most of those from one source address (issue 16 §3): one host that
/// connects and stalls cannot hold every handshake slot.
pub const TLS_HANDSHAKES_PER_ADDR_MAX: usize = 16;
/// The writer encrypts about this many bytes before writing them out.
pub const TLS_WRITE_CHUNK_LEN: usize = 256 * 1024;
/// Ciphertext read from a socket per `read` call.
pub const TLS_READ_CHUNK_LEN: usize = 64 * 1024;

/// A TLS error as an `io::Error` (what the runtimes' loops deal in).
fn tls_err(e: rustls::Error) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, e)
}

#[cfg(test)]
pub(crate) mod tests;
