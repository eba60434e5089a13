//! A connection's TLS after [`Tls`](super::Tls) started it: the
//! [`Handshake`] as a sans-IO step machine (the runtime moves its bytes),
//! then the established [`Session`] its reader ([`Session::receive`]) and
//! writer ([`Session::seal`]) share, with no socket I/O under its lock.

use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::sync::{Arc, Mutex, MutexGuard};

use rustls::Connection;

use super::{KeyId, TLS_WRITE_CHUNK_LEN, key_id_of, tls_err};
use crate::conn::{Batch, ConnEvent, Deframer};

/// A handshake in progress, without I/O: the runtime loops
/// `output` → (done? stop) → read from the socket → `input`, within
/// [`TLS_HANDSHAKE_TIMEOUT`](super::TLS_HANDSHAKE_TIMEOUT), then calls [`Handshake::finish`].
pub struct Handshake {
    conn: Connection,
    /// Ciphertext that arrived after the handshake ended (the peer's first
    /// records), for the reader.
    early: Vec<u8>,
}

impl Handshake {
    pub(super) fn new(conn: Connection) -> Self {
        Handshake {
            conn,
            early: Vec::new(),
        }
    }

    /// Moves what the handshake has to send into `out`.
    pub fn output(&mut self, out: &mut Vec<u8>) {
        while self.conn.wants_write() {
            match self.conn.write_tls(out) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }

    /// Takes bytes read from the socket. An error is fatal (a failed
    /// verification, a protocol violation): send what [`Handshake::output`]
    /// still has (the alert), then close.
    pub fn input(&mut self, mut tls: &[u8]) -> io::Result<()> {
        while !tls.is_empty() {
            if !self.conn.is_handshaking() {
                self.early.extend_from_slice(tls);
                return Ok(());
            }
            if self.conn.read_tls(&mut tls)? == 0 {
                return Err(ErrorKind::UnexpectedEof.into());
            }
            self.conn.process_new_packets().map_err(tls_err)?;
        }
        Ok(())
    }

    /// Whether the handshake is over and everything it had to send was
    /// taken.
    pub fn is_done(&self) -> bool {
        !self.conn.is_handshaking() && !self.conn.wants_write()
    }

    /// The established connection and the peer's key.
    pub fn finish(self) -> io::Result<Arc<Session>> {
        if self.conn.is_handshaking() {
            return Err(io::Error::other("the TLS handshake is not finished"));
        }
        let peer = match self.conn.peer_certificates() {
            Some([spki]) => key_id_of(spki.as_ref()),
            _ => {
                return Err(io::Error::new(
                    ErrorKind::InvalidData,
                    "the peer presented no single raw public key",
                ));
            }
        };
        Ok(Arc::new(Session {
            conn: Mutex::new(self.conn),
            early: Mutex::new(self.early),
            peer,
        }))
    }
}

/// What [`Session::receive`] left to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// rustls has records to send (an alert, a key update): wake the writer.
    pub wants_write: bool,
    /// Stop reading: the peer closed the TLS stream (close_notify), or
    /// the plaintext is not valid framing (reported in the events).
    pub stop: bool,
}

/// An established TLS connection, shared by its reader and its writer.
pub struct Session {
    conn: Mutex<Connection>,
    early: Mutex<Vec<u8>>,
    peer: KeyId,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Session(peer {})", self.peer)
    }
}

impl Session {
    /// The key the peer proved it holds.
    pub fn peer(&self) -> KeyId {
        self.peer
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ciphertext that arrived with the end of the handshake: the reader
    /// passes it to [`Session::receive`] before reading the socket.
    pub fn take_early(&self) -> Vec<u8> {
        std::mem::take(&mut *self.early.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Ciphertext `tls` arrived: decrypts it into `frames`, adding every
    /// whole frame to `events` (a [`ConnEvent::BadFraming`] last if the
    /// plaintext is not valid framing). An error is a TLS failure: close.
    pub fn receive(
        &self,
        mut tls: &[u8],
        frames: &mut Deframer,
        events: &mut Vec<ConnEvent>,
    ) -> io::Result<Received> {
        crate::trace::add(&crate::trace::BYTES_RECEIVED, tls.len() as u64);
        let mut conn = self.lock();
        let mut push = |e| {
            events.push(e);
            true
        };
        loop {
            // Plaintext first (some may be left from the handshake).
            loop {
                match conn.reader().read(frames.read_buf()) {
                    Ok(0) => {
                        frames.finish(&mut push);
                        return Ok(Received {
                            wants_write: conn.wants_write(),
                            stop: true,
                        });
                    }
                    Ok(n) => {
                        if !frames.filled(n, &mut push) {
                            return Ok(Received {
                                wants_write: conn.wants_write(),
                                stop: true,
                            });
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            if tls.is_empty() {
                break;
            }
            if conn.read_tls(&mut tls)? == 0 {
                // close_notify was received earlier: nothing more counts.
                break;
            }
            if let Err(e) = conn.process_new_packets() {
                return Err(tls_err(e));
            }
        }
        Ok(Received {
            wants_write: conn.wants_write(),
            stop: false,
        })
    }

    /// Encrypts queued plaintext from `batch` (whose file ranges must have
    /// been loaded, [`Batch::load_files`]) into `out`, until the batch is
    /// empty or about [`TLS_WRITE_CHUNK_LEN`] bytes are in `out`; also
    /// takes whatever else rustls has to send. Write `out` to the socket
    /// afterwards, outside the lock.
    pub fn seal(&self, batch: &mut Batch, out: &mut Vec<u8>) -> io::Result<()> {
        let mut conn = self.lock();
        loop {
            while conn.wants_write() {
                if conn.write_tls(out)? == 0 {
                    break;
                }
            }
            if batch.is_empty() || out.len() >= TLS_WRITE_CHUNK_LEN {
                return Ok(());
            }
            let slices = batch.slices();
            if slices.is_empty() {
                return Err(io::Error::other("file range not loaded before sealing"));
            }
            let n = conn.writer().write_vectored(&slices)?;
            drop(slices);
            if n == 0 && !conn.wants_write() {
                return Err(ErrorKind::WriteZero.into());
            }
            batch.advance(n);
        }
    }

    /// Ends the TLS stream: the close_notify alert goes into `out`.
    pub fn close(&self, out: &mut Vec<u8>) {
        let mut conn = self.lock();
        conn.send_close_notify();
        while conn.wants_write() {
            match conn.write_tls(out) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}
