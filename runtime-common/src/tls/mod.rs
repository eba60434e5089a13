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
//! it wakes the writer.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{AlwaysResolvesClientRawPublicKeys, Resumption};
use rustls::crypto::{
    CryptoProvider, WebPkiSupportedAlgorithms, verify_tls13_signature_with_raw_key,
};
use rustls::pki_types::{
    CertificateDer, PrivatePkcs8KeyDer, ServerName, SubjectPublicKeyInfoDer, UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{AlwaysResolvesServerRawPublicKeys, NoServerSessionStorage};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, ClientConnection, Connection, DigitallySignedStruct, DistinguishedName,
    ServerConfig, ServerConnection, SignatureScheme,
};
use sha2::{Digest, Sha256};

use crate::conn::{Batch, ConnEvent, Deframer};
pub use p2p_proto::KeyId;

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
/// The key file in a node's data directory.
pub const IDENTITY_FILE: &str = "identity.key";
/// An Ed25519 PKCS#8 document is 83..=85 bytes; a key file larger than
/// this is not one of ours.
const IDENTITY_FILE_LEN_MAX: u64 = 4096;

/// A node's key fingerprint: SHA-256 of its SubjectPublicKeyInfo DER.
pub fn key_id_of(spki_der: &[u8]) -> KeyId {
    KeyId(Sha256::digest(spki_der).into())
}

/// Why an identity could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot create the directory {dir} for the identity key: {source}")]
    Dir { dir: PathBuf, source: io::Error },
    #[error("cannot {what} the identity key {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "the identity key {path} can be read by others (mode {mode:o}); \
         run `chmod 600 {path}` (and consider the key leaked: delete it to \
         make a new one, then re-pin this node's new fingerprint where it was pinned)"
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error(
        "the identity key {path} is not a regular file (a symbolic link or \
         something else); replace it with the key file itself, or delete it \
         to make a new key"
    )]
    NotAFile { path: PathBuf },
    #[error(
        "the identity key {path} belongs to user {owner}, not to this process's \
         user {me}; run the node as its owner, or `chown` the file"
    )]
    NotOurs { path: PathBuf, owner: u32, me: u32 },
    #[error(
        "the identity key {path} is not an Ed25519 PKCS#8 key ({why}); move it \
         away to make a new key (peers that pinned the old one must then be told \
         the new fingerprint)"
    )]
    BadKey { path: PathBuf, why: String },
}

/// A node's long-term key pair (Ed25519), kept in its data directory.
pub struct Identity {
    key: Arc<CertifiedKey>,
    key_id: KeyId,
    path: PathBuf,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the private key.
        write!(f, "Identity({}, {})", self.key_id, self.path.display())
    }
}

impl Identity {
    /// Loads `dir/identity.key`, or creates it (the directory 0700 if it
    /// is new, the file 0600, created exclusively). Refuses a key file
    /// that group or others can read, that is not a regular file, or that
    /// another user owns.
    pub fn load_or_create(dir: &Path) -> Result<Identity, IdentityError> {
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| IdentityError::Dir {
                    dir: dir.to_path_buf(),
                    source,
                })?;
        }
        let path = dir.join(IDENTITY_FILE);
        let io_err = |what, source| IdentityError::Io {
            what,
            path: path.clone(),
            source,
        };
        match fs::symlink_metadata(&path) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => match create(&path) {
                Ok(()) => {}
                // Another process made it first: use theirs.
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err("create", e)),
            },
            Err(e) => return Err(io_err("inspect", e)),
        }
        let meta = fs::symlink_metadata(&path).map_err(|e| io_err("inspect", e))?;
        if !meta.file_type().is_file() {
            return Err(IdentityError::NotAFile { path });
        }
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            return Err(IdentityError::NotOurs {
                path,
                owner: meta.uid(),
                me,
            });
        }
        if meta.mode() & 0o077 != 0 {
            return Err(IdentityError::TooOpen {
                path,
                mode: meta.mode() & 0o7777,
            });
        }
        let mut der = Vec::new();
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .and_then(|f| f.take(IDENTITY_FILE_LEN_MAX + 1).read_to_end(&mut der))
            .map_err(|e| io_err("read", e))?;
        Self::from_pkcs8(der, path)
    }

    fn from_pkcs8(der: Vec<u8>, path: PathBuf) -> Result<Identity, IdentityError> {
        let bad = |why: String| IdentityError::BadKey {
            path: path.clone(),
            why,
        };
        if der.len() as u64 > IDENTITY_FILE_LEN_MAX {
            return Err(bad(format!("longer than {IDENTITY_FILE_LEN_MAX} bytes")));
        }
        let signing = rustls::crypto::ring::sign::any_eddsa_type(&PrivatePkcs8KeyDer::from(der))
            .map_err(|e| bad(e.to_string()))?;
        let spki = signing
            .public_key()
            .ok_or_else(|| bad("no public key".into()))?
            .as_ref()
            .to_vec();
        let key_id = key_id_of(&spki);
        let key = CertifiedKey::new(vec![CertificateDer::from(spki)], signing);
        Ok(Identity {
            key: Arc::new(key),
            key_id,
            path,
        })
    }

    /// This node's key fingerprint (what peers pin).
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// Where the key is kept.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The TLS configurations of this identity (build once per process).
    pub fn tls(&self) -> Tls {
        Tls::new(self)
    }
}

/// Makes a new key file at `path`: 0600, created exclusively, synced,
/// and its directory synced, before anything uses it.
fn create(path: &Path) -> io::Result<()> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| io::Error::other("no OS randomness for a new key"))?;
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let written = f.write_all(pkcs8.as_ref()).and_then(|()| f.sync_all());
    if let Err(e) = written {
        drop(f);
        let _ = fs::remove_file(path);
        return Err(e);
    }
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The cipher suites we offer and accept, in order of preference (AES-GCM
/// first: hardware AES is much faster than ChaCha20 where it exists).
fn provider() -> Arc<CryptoProvider> {
    use rustls::crypto::ring::cipher_suite as cs;
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites = vec![
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS13_CHACHA20_POLY1305_SHA256,
    ];
    Arc::new(p)
}

/// A node's rustls configurations, built once per process and shared by
/// every connection: as a server (accepted connections) and as a client
/// (dialed ones), both presenting the node's raw public key and requiring
/// the peer's.
#[derive(Clone)]
pub struct Tls {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    key_id: KeyId,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tls({})", self.key_id)
    }
}

impl Tls {
    pub fn new(id: &Identity) -> Tls {
        let provider = provider();
        let verifier = Arc::new(AnyRawKey {
            algs: provider.signature_verification_algorithms,
        });
        let tls13 = &[&rustls::version::TLS13];
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(tls13)
            .expect("the ring provider supports TLS 1.3")
            .with_client_cert_verifier(verifier.clone())
            .with_cert_resolver(Arc::new(AlwaysResolvesServerRawPublicKeys::new(
                id.key.clone(),
            )));
        server.session_storage = Arc::new(NoServerSessionStorage {});
        server.send_tls13_tickets = 0;
        server.max_early_data_size = 0;
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(tls13)
            .expect("the ring provider supports TLS 1.3")
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_cert_resolver(Arc::new(AlwaysResolvesClientRawPublicKeys::new(
                id.key.clone(),
            )));
        client.resumption = Resumption::disabled();
        client.enable_early_data = false;
        Tls {
            server: Arc::new(server),
            client: Arc::new(client),
            key_id: id.key_id,
        }
    }

    /// This node's own key.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The handshake of a connection we accepted.
    pub fn accept(&self) -> Handshake {
        let conn = ServerConnection::new(self.server.clone()).expect("a valid server config");
        Handshake::new(conn.into())
    }

    /// The handshake of a connection we dialed to `peer`. (No name is
    /// sent or checked: the peer is known by its key alone.)
    pub fn connect(&self, peer: std::net::SocketAddr) -> Handshake {
        let name = ServerName::IpAddress(peer.ip().into());
        let conn = ClientConnection::new(self.client.clone(), name).expect("a valid client config");
        Handshake::new(conn.into())
    }
}

/// A blocking TLS client stream, for tests and tools that speak the
/// protocol by hand (the runtimes use [`Handshake`] and [`Session`]).
pub type ClientStream = rustls::StreamOwned<ClientConnection, std::net::TcpStream>;

impl Tls {
    /// Runs the client handshake on `stream` (blocking, bounded by the
    /// stream's own timeouts): the stream to read and write plaintext
    /// through, and the key the server proved it holds.
    pub fn connect_blocking(
        &self,
        mut stream: std::net::TcpStream,
    ) -> io::Result<(ClientStream, KeyId)> {
        let name = ServerName::IpAddress(stream.peer_addr()?.ip().into());
        let mut conn = ClientConnection::new(self.client.clone(), name).map_err(tls_err)?;
        while conn.is_handshaking() {
            conn.complete_io(&mut stream)?;
        }
        while conn.wants_write() {
            conn.write_tls(&mut stream)?;
        }
        let peer = match conn.peer_certificates() {
            Some([spki]) => key_id_of(spki.as_ref()),
            _ => return Err(io::Error::new(ErrorKind::InvalidData, "no raw public key")),
        };
        Ok((rustls::StreamOwned::new(conn, stream), peer))
    }
}

/// Accepts any raw public key whose handshake signature verifies: which
/// key is acceptable is the state machines' decision, not the TLS layer's.
#[derive(Debug)]
struct AnyRawKey {
    algs: WebPkiSupportedAlgorithms,
}

impl AnyRawKey {
    fn verify13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let spki = SubjectPublicKeyInfoDer::from(cert.as_ref());
        verify_tls13_signature_with_raw_key(message, &spki, dss, &self.algs)
    }
}

impl ServerCertVerifier for AnyRawKey {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if !intermediates.is_empty() {
            return Err(rustls::Error::General("a raw key has no chain".into()));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::PeerIncompatible::Tls12NotOffered.into())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

impl ClientCertVerifier for AnyRawKey {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if !intermediates.is_empty() {
            return Err(rustls::Error::General("a raw key has no chain".into()));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::PeerIncompatible::Tls12NotOffered.into())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

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

/// A TLS error as an `io::Error` (what the runtimes' loops deal in).
fn tls_err(e: rustls::Error) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, e)
}

/// A handshake in progress, without I/O: the runtime loops
/// `output` → (done? stop) → read from the socket → `input`, within
/// [`TLS_HANDSHAKE_TIMEOUT`], then calls [`Handshake::finish`].
pub struct Handshake {
    conn: Connection,
    /// Ciphertext that arrived after the handshake ended (the peer's first
    /// records), for the reader.
    early: Vec<u8>,
}

impl Handshake {
    fn new(conn: Connection) -> Self {
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

#[cfg(test)]
pub(crate) mod tests;
