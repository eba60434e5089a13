//! [`FileMeta`]: what the tracker knows about a shared file (size, piece
//! length, piece hashes), its consistency check and piece arithmetic.

use bytes::{BufMut, BytesMut};

use super::{FileName, Sha1Hash};
use crate::codec::{DecodeError, Reader, Wire, put_list};
use crate::limits::{FILE_LEN_MAX, FILE_PIECES_MAX, PIECE_LEN_MAX, PIECE_LEN_MIN};

/// What the tracker knows about a shared file: enough to fetch and verify it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct FileMeta {
    pub name: FileName,
    pub size: u64,
    pub piece_len: u32,
    pub piece_hashes: Vec<Sha1Hash>,
    pub file_hash: Sha1Hash,
}

impl FileMeta {
    /// Checks the numbers agree: piece length a power of two within limits,
    /// size within limits, exactly `ceil(size / piece_len)` piece hashes.
    pub fn validate(&self) -> Result<(), DecodeError> {
        let bad = |reason| DecodeError::Invalid {
            field: "file metadata",
            reason,
        };
        if !self.piece_len.is_power_of_two()
            || !(PIECE_LEN_MIN..=PIECE_LEN_MAX).contains(&self.piece_len)
        {
            return Err(bad(
                "piece length must be a power of two from 1 KiB to 512 KiB",
            ));
        }
        if self.size > FILE_LEN_MAX {
            return Err(DecodeError::TooLong {
                field: "file size",
                len: self.size,
                max: FILE_LEN_MAX,
            });
        }
        if Self::pieces_for(self.size, self.piece_len) != self.piece_hashes.len() as u64 {
            return Err(bad("piece count does not match size / piece length"));
        }
        Ok(())
    }

    pub fn pieces_for(size: u64, piece_len: u32) -> u64 {
        size.div_ceil(piece_len.max(1) as u64)
    }

    pub fn piece_count(&self) -> u32 {
        self.piece_hashes.len() as u32
    }

    /// Byte offset of piece `i` in the file.
    pub fn piece_offset(&self, i: u32) -> u64 {
        i as u64 * self.piece_len as u64
    }

    /// Length of piece `i` (the last one may be short); 0 if out of range.
    pub fn piece_size(&self, i: u32) -> u32 {
        let start = self.piece_offset(i);
        if i >= self.piece_count() {
            return 0;
        }
        (self.size - start).min(self.piece_len as u64) as u32
    }
}

impl Wire for FileMeta {
    const MIN_LEN: usize = 3 + 8 + 4 + 4 + 20;
    fn encode(&self, w: &mut BytesMut) {
        self.name.encode(w);
        w.put_u64(self.size);
        w.put_u32(self.piece_len);
        put_list(w, &self.piece_hashes);
        self.file_hash.encode(w);
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let m = FileMeta {
            name: FileName::decode(r)?,
            size: r.u64("file size")?,
            piece_len: r.u32("piece length")?,
            piece_hashes: r.list("piece hashes", FILE_PIECES_MAX as usize)?,
            file_hash: Sha1Hash::decode(r)?,
        };
        m.validate()?;
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_meta_piece_arithmetic() {
        let m = FileMeta {
            name: FileName::new("f").unwrap(),
            size: 1024 * 2 + 5,
            piece_len: 1024,
            piece_hashes: vec![Sha1Hash::default(); 3],
            file_hash: Sha1Hash::default(),
        };
        m.validate().unwrap();
        assert_eq!(m.piece_size(0), 1024);
        assert_eq!(m.piece_size(2), 5);
        assert_eq!(m.piece_size(3), 0);
        assert_eq!(m.piece_offset(2), 2048);
        let mut bad = m.clone();
        bad.piece_hashes.pop();
        assert!(bad.validate().is_err());
        let mut bad = m.clone();
        bad.piece_len = 1000;
        assert!(bad.validate().is_err());
        assert!(FileMeta::from_bytes(bad.to_bytes()).is_err());
    }
}
