//! The one certificate verifier, for both ends: [`AnyRawKey`] accepts any
//! raw public key whose TLS 1.3 handshake signature verifies; which key
//! is acceptable is the state machines' decision, not the TLS layer's.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls13_signature_with_raw_key};
use rustls::pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// Why a peer that sends a certificate chain is refused.
const NO_CHAIN: &str = "a raw key has no chain";

/// Accepts any raw public key whose handshake signature verifies: which
/// key is acceptable is the state machines' decision, not the TLS layer's.
#[derive(Debug)]
pub(super) struct AnyRawKey {
    pub(super) algs: WebPkiSupportedAlgorithms,
}

impl AnyRawKey {
    /// A raw public key stands alone: a peer that sends a chain with it is
    /// refused (both ends' first check).
    fn no_chain(intermediates: &[CertificateDer<'_>]) -> Result<(), rustls::Error> {
        if !intermediates.is_empty() {
            return Err(rustls::Error::General(NO_CHAIN.into()));
        }
        Ok(())
    }
}

/// The methods [`ServerCertVerifier`] and [`ClientCertVerifier`] share,
/// the same at both ends: TLS 1.3 signatures by the raw key only.
macro_rules! signature_checks {
    () => {
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
            let spki = SubjectPublicKeyInfoDer::from(cert.as_ref());
            verify_tls13_signature_with_raw_key(message, &spki, dss, &self.algs)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.algs.supported_schemes()
        }

        fn requires_raw_public_keys(&self) -> bool {
            true
        }
    };
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
        Self::no_chain(intermediates).map(|()| ServerCertVerified::assertion())
    }

    signature_checks!();
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
        Self::no_chain(intermediates).map(|()| ClientCertVerified::assertion())
    }

    signature_checks!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::internal::msgs::codec::{Codec, Reader};
    use rustls::pki_types::ServerName;
    use rustls::{CertificateError, crypto::ring::default_provider};

    fn verifier() -> AnyRawKey {
        AnyRawKey {
            algs: default_provider().signature_verification_algorithms,
        }
    }

    /// The shape of an X.509 certificate (tbsCertificate, algorithm,
    /// signature), which is not a SubjectPublicKeyInfo.
    fn x509_shaped() -> CertificateDer<'static> {
        let mut der = vec![0x30, 0x4f];
        der.extend([0x30, 0x03, 0x02, 0x01, 0x00]); // tbsCertificate
        der.extend([0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70]); // Ed25519
        der.extend([0x03, 0x41, 0x00]); // the signature's bit string
        der.extend([0u8; 64]);
        CertificateDer::from(der)
    }

    /// An Ed25519 signature as the handshake carries it.
    fn ed25519_dss() -> DigitallySignedStruct {
        let mut wire = vec![0x08, 0x07, 0x00, 0x40];
        wire.extend([0u8; 64]);
        DigitallySignedStruct::read(&mut Reader::init(&wire)).unwrap()
    }

    #[test]
    fn a_chain_is_refused_at_both_ends() {
        let v = verifier();
        let key = x509_shaped();
        let chain = [x509_shaped()];
        let name = ServerName::try_from("p2p").unwrap();
        let now = UnixTime::since_unix_epoch(std::time::Duration::from_secs(1));
        let server = v.verify_server_cert(&key, &chain, &name, &[], now);
        assert_eq!(server.unwrap_err(), rustls::Error::General(NO_CHAIN.into()));
        let client = v.verify_client_cert(&key, &chain, now);
        assert_eq!(client.unwrap_err(), rustls::Error::General(NO_CHAIN.into()));
        assert!(v.verify_server_cert(&key, &[], &name, &[], now).is_ok());
        assert!(v.verify_client_cert(&key, &[], now).is_ok());
    }

    #[test]
    fn an_end_entity_that_is_not_a_raw_key_is_refused_at_both_ends() {
        let v = verifier();
        let (cert, dss) = (x509_shaped(), ed25519_dss());
        let bad = rustls::Error::InvalidCertificate(CertificateError::BadEncoding);
        let server = ServerCertVerifier::verify_tls13_signature(&v, b"hs", &cert, &dss);
        assert_eq!(server.unwrap_err(), bad);
        let client = ClientCertVerifier::verify_tls13_signature(&v, b"hs", &cert, &dss);
        assert_eq!(client.unwrap_err(), bad);
        assert!(ServerCertVerifier::requires_raw_public_keys(&v));
        assert!(ClientCertVerifier::requires_raw_public_keys(&v));
    }
}
