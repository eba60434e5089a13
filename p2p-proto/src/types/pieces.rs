//! [`PieceSet`]: which pieces of a file a peer holds, as a bitfield with
//! one canonical encoding.

use bytes::{BufMut, BytesMut};
use std::fmt;

use crate::codec::{DecodeError, Reader, Wire};
use crate::limits::FILE_PIECES_MAX;

/// Which pieces of a file a peer holds. Bits beyond `len` are always zero,
/// so two equal sets have equal encodings.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct PieceSet {
    len: u32,
    bits: Vec<u8>,
}

impl fmt::Debug for PieceSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PieceSet({}/{})", self.count(), self.len)
    }
}

impl PieceSet {
    /// No piece of `len` (clamped to [`FILE_PIECES_MAX`]).
    pub fn empty(len: u32) -> Self {
        let len = len.min(FILE_PIECES_MAX);
        PieceSet {
            len,
            bits: vec![0; len.div_ceil(8) as usize],
        }
    }

    /// Every piece of `len`.
    pub fn full(len: u32) -> Self {
        let mut s = PieceSet::empty(len);
        for i in 0..s.len {
            s.insert(i);
        }
        s
    }

    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }

    pub fn contains(&self, i: u32) -> bool {
        i < self.len && self.bits[(i / 8) as usize] & (0x80 >> (i % 8)) != 0
    }

    /// Adds piece `i`; returns false if `i` is out of range.
    pub fn insert(&mut self, i: u32) -> bool {
        if i >= self.len {
            return false;
        }
        self.bits[(i / 8) as usize] |= 0x80 >> (i % 8);
        true
    }

    pub fn remove(&mut self, i: u32) {
        if i < self.len {
            self.bits[(i / 8) as usize] &= !(0x80 >> (i % 8));
        }
    }

    pub fn count(&self) -> u32 {
        self.bits.iter().map(|b| b.count_ones()).sum()
    }

    pub fn is_full(&self) -> bool {
        self.count() == self.len
    }

    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len).filter(|&i| self.contains(i))
    }

    /// Adds every piece of `other` (same length) to `self`.
    pub fn union_with(&mut self, other: &PieceSet) {
        if other.len == self.len {
            for (a, b) in self.bits.iter_mut().zip(&other.bits) {
                *a |= b;
            }
        }
    }
}

impl Wire for PieceSet {
    const MIN_LEN: usize = 5;
    /// `u32` length, then a form tag: `1` = all pieces (no bits follow),
    /// `0` = a bitfield of `ceil(len / 8)` bytes, most significant bit first.
    fn encode(&self, w: &mut BytesMut) {
        w.put_u32(self.len);
        if self.len > 0 && self.is_full() {
            w.put_u8(1);
        } else {
            w.put_u8(0);
            w.put_slice(&self.bits);
        }
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let len = r.u32("piece set length")?;
        if len > FILE_PIECES_MAX {
            return Err(DecodeError::TooLong {
                field: "piece set",
                len: len as u64,
                max: FILE_PIECES_MAX as u64,
            });
        }
        let bad = |reason| DecodeError::Invalid {
            field: "piece set",
            reason,
        };
        match r.u8("piece set form")? {
            1 if len > 0 => Ok(PieceSet::full(len)),
            1 => Err(bad("empty set in the full form")),
            0 => {
                let bits = r.take(len.div_ceil(8) as usize, "piece set bits")?.to_vec();
                let set = PieceSet { len, bits };
                let tail = len % 8;
                if tail != 0 && set.bits[set.bits.len() - 1] & (0xff >> tail) != 0 {
                    return Err(bad("bits set beyond the last piece"));
                }
                if len > 0 && set.is_full() {
                    return Err(bad("a full set must use the full form"));
                }
                Ok(set)
            }
            tag => Err(DecodeError::UnknownTag {
                what: "piece set form",
                tag,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piece_set_basics() {
        let mut s = PieceSet::empty(10);
        assert!(s.insert(9) && !s.insert(10));
        assert!(s.contains(9) && !s.contains(8));
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![9]);
        assert!(PieceSet::full(10).is_full());
        assert_eq!(
            PieceSet::from_bytes(PieceSet::full(10).to_bytes()).unwrap(),
            PieceSet::full(10)
        );
        assert_eq!(PieceSet::from_bytes(s.to_bytes()).unwrap(), s);
    }

    #[test]
    fn piece_set_rejects_stray_bits_and_non_canonical_full() {
        // len 3, bitfield form, bit 4 set (beyond the end)
        let b = bytes::Bytes::from_static(&[0, 0, 0, 3, 0, 0b0000_1000]);
        assert!(matches!(
            PieceSet::from_bytes(b),
            Err(DecodeError::Invalid { .. })
        ));
        let b = bytes::Bytes::from_static(&[0, 0, 0, 3, 0, 0b1110_0000]);
        assert!(matches!(
            PieceSet::from_bytes(b),
            Err(DecodeError::Invalid { .. })
        ));
        let b = bytes::Bytes::from_static(&[0xff, 0, 0, 3, 0]);
        assert!(matches!(
            PieceSet::from_bytes(b),
            Err(DecodeError::TooLong { .. })
        ));
    }
}
