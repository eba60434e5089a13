//! The one SHA-1 used everywhere (pieces, whole files, state digests).
//! The sha1 crate picks the hardware path (SHA-NI) by itself at run time.

use p2p_proto::Sha1Hash;
use sha1::{Digest, Sha1};

/// SHA-1 of `data`.
pub fn sha1(data: &[u8]) -> Sha1Hash {
    Sha1Hash(Sha1::digest(data).into())
}

/// Incremental SHA-1, for whole-file hashes computed piece by piece.
#[derive(Clone, Default)]
pub struct Sha1Stream(Sha1);

impl Sha1Stream {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    pub fn finish(self) -> Sha1Hash {
        Sha1Hash(self.0.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector_and_streaming_agree() {
        assert_eq!(
            sha1(b"abc").to_hex(),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        let mut s = Sha1Stream::new();
        s.update(b"a");
        s.update(b"bc");
        assert_eq!(s.finish(), sha1(b"abc"));
    }
}
