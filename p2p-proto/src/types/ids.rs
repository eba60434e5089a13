//! Fixed-size ids and numbers on the wire: hashes, client ids, session
//! tokens, seeder keys, MACs, key ids (with their fingerprint text form),
//! request and tracker ids, and log positions.

use bytes::{BufMut, BytesMut};
use std::fmt;

use crate::codec::{DecodeError, Reader, Wire};

macro_rules! bytes_type {
    ($(#[$doc:meta])* $name:ident, $n:literal, $field:literal, redact: $redact:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub [u8; $n]);

        impl $name {
            /// Lower-case hex of all bytes.
            pub fn to_hex(&self) -> String {
                self.0.iter().map(|b| format!("{b:02x}")).collect()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                if $redact {
                    write!(f, "{}({}..)", stringify!($name), &self.to_hex()[..8])
                } else {
                    write!(f, "{}({})", stringify!($name), self.to_hex())
                }
            }
        }

        impl Wire for $name {
            const MIN_LEN: usize = $n;
            fn encode(&self, w: &mut BytesMut) {
                w.put_slice(&self.0);
            }
            fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
                Ok($name(r.array($field)?))
            }
        }
    };
}

bytes_type!(
    /// A SHA-1 digest (of a piece, of a file, of a tracker state).
    Sha1Hash, 20, "sha1", redact: false);
bytes_type!(
    /// A random id a client process picks at start; with a [`RequestId`] it
    /// names a request uniquely across trackers and retries.
    ClientId, 16, "client id", redact: false);
bytes_type!(
    /// A random 128-bit session token issued at login. Debug shows a prefix.
    SessionToken, 16, "session token", redact: true);
bytes_type!(
    /// A random key the tracker gives a seeder at login; tickets for that
    /// seeder are MACs under it. Debug shows a prefix.
    SeederKey, 32, "seeder key", redact: true);
bytes_type!(
    /// A ticket's MAC (HMAC-SHA256).
    Mac, 32, "mac", redact: false);
bytes_type!(
    /// A node's identity: the SHA-256 of its public key (the DER
    /// SubjectPublicKeyInfo its TLS handshake presents as a raw public
    /// key, RFC 7250). Every tracker and client has one. Its text form,
    /// the *fingerprint*, is 64 hex digits ([`fmt::Display`],
    /// [`KeyId::from_fingerprint`]).
    KeyId, 32, "key id", redact: false);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Why a text is not a key fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a key fingerprint (64 hex digits, as `--fingerprint` prints it)")]
pub struct FingerprintError {
    pub text: String,
}

impl KeyId {
    /// Parses a fingerprint: exactly 64 hex digits, either case.
    pub fn from_fingerprint(text: &str) -> Result<KeyId, FingerprintError> {
        let err = || FingerprintError {
            text: text.chars().take(80).collect(),
        };
        let digits = text.as_bytes();
        if digits.len() != 64 {
            return Err(err());
        }
        let mut key = [0u8; 32];
        for (i, pair) in digits.chunks_exact(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16).ok_or_else(err)?;
            let lo = (pair[1] as char).to_digit(16).ok_or_else(err)?;
            key[i] = (hi * 16 + lo) as u8;
        }
        Ok(KeyId(key))
    }
}

impl fmt::Display for Sha1Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

macro_rules! int_type {
    ($(#[$doc:meta])* $name:ident, $t:ty, $put:ident, $get:ident, $n:literal, $field:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
        pub struct $name(pub $t);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl Wire for $name {
            const MIN_LEN: usize = $n;
            fn encode(&self, w: &mut BytesMut) {
                w.$put(self.0);
            }
            fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
                Ok($name(r.$get($field)?))
            }
        }
    };
}

int_type!(
    /// A client's request number; the response echoes it.
    RequestId, u64, put_u64, u64, 8, "request id");
int_type!(
    /// A tracker's number: its line in `tracker_info.txt`, counted from 1.
    TrackerId, u16, put_u16, u16, 2, "tracker id");

/// A position in the replicated op log: the epoch of the primary that
/// created the entry, and its index (from 1; 0 means "before the first").
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct LogPos {
    pub epoch: u64,
    pub index: u64,
}

impl Wire for LogPos {
    const MIN_LEN: usize = 16;
    fn encode(&self, w: &mut BytesMut) {
        w.put_u64(self.epoch);
        w.put_u64(self.index);
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(LogPos {
            epoch: r.u64("epoch")?,
            index: r.u64("index")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_is_64_hex_digits_and_parses_back() {
        let key = KeyId(core::array::from_fn(|i| (i * 7 + 1) as u8));
        let text = key.to_string();
        assert_eq!(text.len(), 64);
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(KeyId::from_fingerprint(&text), Ok(key));
        assert_eq!(KeyId::from_fingerprint(&text.to_uppercase()), Ok(key));
    }

    #[test]
    fn a_fingerprint_of_the_wrong_length_or_with_non_hex_is_refused() {
        let good = "ab".repeat(32);
        for bad in [
            String::new(),
            good[..63].to_string(),
            format!("{good}0"),
            format!("{}zz", &good[..62]),
            format!("{}é", &good[..62]),
            format!(" {}", &good[..63]),
        ] {
            let err = KeyId::from_fingerprint(&bad).unwrap_err();
            assert!(err.to_string().contains("64 hex digits"), "{err}");
        }
    }
}
