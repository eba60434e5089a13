//! [`Tls`]: a node's rustls server and client configurations, built once
//! per process (TLS 1.3 only, our cipher suites, raw public keys both
//! ways, no resumption), which start every [`Handshake`]; and
//! [`Tls::connect_blocking`] for tests and tools.

use std::fmt;
use std::io::{self, ErrorKind};
use std::sync::Arc;

use rustls::client::{AlwaysResolvesClientRawPublicKeys, Resumption};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::ServerName;
use rustls::server::{AlwaysResolvesServerRawPublicKeys, NoServerSessionStorage};
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};

use super::verify::AnyRawKey;
use super::{Handshake, Identity, KeyId, key_id_of, tls_err};

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
