//! Stand-in for `p2p_proto::KeyId` until the contract commit lands.
use std::fmt;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug)]
pub struct KeyId(pub [u8; 32]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a key fingerprint is 64 hex digits")]
pub struct FingerprintError;

impl KeyId {
    pub fn from_fingerprint(s: &str) -> Result<KeyId, FingerprintError> {
        let b = s.as_bytes();
        if b.len() != 64 {
            return Err(FingerprintError);
        }
        let mut out = [0u8; 32];
        for (i, pair) in b.chunks(2).enumerate() {
            let h = std::str::from_utf8(pair).map_err(|_| FingerprintError)?;
            out[i] = u8::from_str_radix(h, 16).map_err(|_| FingerprintError)?;
        }
        Ok(KeyId(out))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}
