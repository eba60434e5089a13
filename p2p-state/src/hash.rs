//! The one SHA-1 used everywhere (pieces, file hashes, state digests).
//! The sha1 crate picks the hardware path (SHA-NI) by itself at run time.
//!
//! A file is named by its **file hash** ([`file_root`]): the SHA-1 of a
//! canonical encoding of its size, its piece length and every piece hash
//! in order, the way BitTorrent's info-hash commits to content through
//! piece hashes. Every piece is checked against its piece hash, so a file
//! whose pieces all verified against hashes the root commits to is the
//! file: nothing needs to read the whole file again. And unlike a SHA-1
//! of the whole byte stream, it is computed from piece hashes that can be
//! made in parallel on every core.

use p2p_proto::{FileMeta, Sha1Hash};
use sha1::{Digest, Sha1};

/// SHA-1 of `data`.
pub fn sha1(data: &[u8]) -> Sha1Hash {
    Sha1Hash(Sha1::digest(data).into())
}

/// The file hash of a file of `size` bytes cut in pieces of `piece_len`
/// bytes whose SHA-1s are `piece_hashes`: SHA-1 over `size` as a u64
/// big-endian, `piece_len` as a u32 big-endian, then the 20 bytes of each
/// piece hash in order. This is the one definition; every place that makes
/// or checks a file hash calls it.
pub fn file_root(size: u64, piece_len: u32, piece_hashes: &[Sha1Hash]) -> Sha1Hash {
    let mut s = Sha1::new();
    s.update(size.to_be_bytes());
    s.update(piece_len.to_be_bytes());
    for h in piece_hashes {
        s.update(h.0);
    }
    Sha1Hash(s.finalize().into())
}

/// [`file_root`] of `meta`'s size, piece length and piece hashes (what its
/// `file_hash` must be).
pub fn meta_root(meta: &FileMeta) -> Sha1Hash {
    file_root(meta.size, meta.piece_len, &meta.piece_hashes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_known_vector() {
        assert_eq!(
            sha1(b"abc").to_hex(),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }

    /// Vectors computed independently (Python's hashlib over
    /// `struct.pack(">QI", size, piece_len) + b"".join(piece_hashes)`).
    #[test]
    fn file_root_known_vectors() {
        assert_eq!(
            file_root(0, 512 * 1024, &[]).to_hex(),
            "b7fc8756847437e04a1d5f741506dddb24450f2a"
        );
        assert_eq!(
            file_root(3, 512 * 1024, &[sha1(b"abc")]).to_hex(),
            "632709b034a5dcef2a85add169b0d3982564ea83"
        );
        let pieces = [sha1(&[b'a'; 1024]), sha1(b"bbbbb")];
        assert_eq!(
            file_root(1029, 1024, &pieces).to_hex(),
            "956d5cddf29f1681ce91afa715c69a5c915ed040"
        );
    }

    #[test]
    fn file_root_commits_to_every_field() {
        let pieces = [sha1(b"x"), sha1(b"y")];
        let base = file_root(2048, 1024, &pieces);
        assert_ne!(base, file_root(2047, 1024, &pieces), "size");
        assert_ne!(base, file_root(2048, 2048, &pieces), "piece length");
        assert_ne!(
            base,
            file_root(2048, 1024, &[pieces[1], pieces[0]]),
            "order"
        );
        assert_ne!(base, file_root(2048, 1024, &pieces[..1]), "count");
    }
}
