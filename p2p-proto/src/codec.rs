//! Primitive encoding: the [`Wire`] trait, a bounds-checked [`Reader`], and
//! [`DecodeError`].
//!
//! Layout rules, used by every message:
//! - integers are big-endian, fixed width;
//! - `bool` is one byte, `0` or `1` (anything else is an error, so decoding
//!   then encoding gives back the input bytes exactly);
//! - `Option<T>` is a `0`/`1` tag, then `T`;
//! - strings are a `u16` byte length, then UTF-8; byte blobs a `u32` length;
//! - lists are a `u32` count, then the items. A count is checked against its
//!   limit *and* against the bytes left before anything is allocated.
//!
//! Decoding never panics, never reads past the frame and never allocates more
//! than the frame it holds.

use bytes::{BufMut, Bytes, BytesMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::types::NameError;

/// Why a payload could not be decoded. Blame: always the remote side.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("message ended early while reading {field}")]
    UnexpectedEnd { field: &'static str },
    #[error("unknown {what} tag {tag}")]
    UnknownTag { what: &'static str, tag: u8 },
    #[error("{field} has length {len}, more than the limit of {max}")]
    TooLong {
        field: &'static str,
        len: u64,
        max: u64,
    },
    #[error("{field} is not valid UTF-8")]
    BadUtf8 { field: &'static str },
    #[error("{0} bytes left over after the message")]
    TrailingBytes(usize),
    #[error("not a p2p-share connection (bad magic in hello)")]
    BadMagic,
    #[error(
        "peer speaks protocol version {theirs}, this build speaks {ours}; upgrade the older side"
    )]
    BadVersion { ours: u16, theirs: u16 },
    #[error("invalid {field}: {reason}")]
    Invalid {
        field: &'static str,
        reason: &'static str,
    },
    #[error(transparent)]
    BadName(#[from] NameError),
}

/// A value with a canonical binary encoding.
///
/// `decode(encode(v)) == v`, and for every input `decode` accepts,
/// `encode(decode(b)) == b` (the encoding is canonical).
pub trait Wire: Sized {
    /// The fewest bytes any value of this type encodes to. Used to reject a
    /// list count that the remaining bytes cannot possibly hold.
    const MIN_LEN: usize;
    fn encode(&self, w: &mut BytesMut);
    fn decode(r: &mut Reader) -> Result<Self, DecodeError>;

    /// Encodes into a fresh buffer.
    fn to_bytes(&self) -> Bytes {
        let mut w = BytesMut::new();
        self.encode(&mut w);
        w.freeze()
    }

    /// Decodes a whole payload; bytes left over are an error.
    fn from_bytes(payload: Bytes) -> Result<Self, DecodeError> {
        let mut r = Reader::new(payload);
        let v = Self::decode(&mut r)?;
        r.finish()?;
        Ok(v)
    }
}

/// A cursor over one frame's payload. Slices of it are zero-copy [`Bytes`].
#[derive(Debug, Clone)]
pub struct Reader {
    buf: Bytes,
}

impl Reader {
    pub fn new(buf: Bytes) -> Self {
        Reader { buf }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Fails unless every byte was consumed.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.buf.len() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }

    pub fn take(&mut self, n: usize, field: &'static str) -> Result<Bytes, DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::UnexpectedEnd { field });
        }
        Ok(self.buf.split_to(n))
    }

    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let b = self.take(N, field)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&b);
        Ok(out)
    }

    pub fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }
    /// The next byte, left unread.
    pub fn peek_u8(&self, field: &'static str) -> Result<u8, DecodeError> {
        self.buf
            .first()
            .copied()
            .ok_or(DecodeError::UnexpectedEnd { field })
    }
    pub fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }
    pub fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }
    pub fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    pub fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Invalid {
                field,
                reason: "boolean must be 0 or 1",
            }),
        }
    }

    /// A `u16`-length-prefixed UTF-8 string of at most `max` bytes.
    pub fn string(&mut self, field: &'static str, max: usize) -> Result<String, DecodeError> {
        let len = self.u16(field)? as usize;
        if len > max {
            return Err(DecodeError::TooLong {
                field,
                len: len as u64,
                max: max as u64,
            });
        }
        let b = self.take(len, field)?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError::BadUtf8 { field })
    }

    /// A `u32`-length-prefixed byte blob of at most `max` bytes (zero-copy).
    pub fn blob(&mut self, field: &'static str, max: usize) -> Result<Bytes, DecodeError> {
        let len = self.u32(field)? as usize;
        if len > max {
            return Err(DecodeError::TooLong {
                field,
                len: len as u64,
                max: max as u64,
            });
        }
        self.take(len, field)
    }

    /// A `u32` list count, checked against `max` and against the bytes left.
    pub fn count(
        &mut self,
        field: &'static str,
        max: usize,
        item_min_len: usize,
    ) -> Result<usize, DecodeError> {
        let n = self.u32(field)? as usize;
        if n > max {
            return Err(DecodeError::TooLong {
                field,
                len: n as u64,
                max: max as u64,
            });
        }
        if n.saturating_mul(item_min_len.max(1)) > self.remaining() && item_min_len > 0 {
            return Err(DecodeError::UnexpectedEnd { field });
        }
        Ok(n)
    }

    /// A list of at most `max` items.
    pub fn list<T: Wire>(
        &mut self,
        field: &'static str,
        max: usize,
    ) -> Result<Vec<T>, DecodeError> {
        let n = self.count(field, max, T::MIN_LEN)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(T::decode(self)?);
        }
        Ok(v)
    }

    pub fn option<T: Wire>(&mut self, field: &'static str) -> Result<Option<T>, DecodeError> {
        match self.bool(field)? {
            false => Ok(None),
            true => Ok(Some(T::decode(self)?)),
        }
    }

    pub fn socket_addr(&mut self, field: &'static str) -> Result<SocketAddr, DecodeError> {
        let ip = match self.u8(field)? {
            4 => IpAddr::V4(Ipv4Addr::from(self.array::<4>(field)?)),
            6 => IpAddr::V6(Ipv6Addr::from(self.array::<16>(field)?)),
            tag => return Err(DecodeError::UnknownTag { what: field, tag }),
        };
        Ok(SocketAddr::new(ip, self.u16(field)?))
    }
}

/// Writers for the primitive layouts; the mirror of [`Reader`].
pub fn put_bool(w: &mut BytesMut, v: bool) {
    w.put_u8(v as u8);
}

/// Writes a string; callers guarantee `s.len() <= u16::MAX` (all string
/// types are length-checked on construction).
pub fn put_string(w: &mut BytesMut, s: &str) {
    debug_assert!(s.len() <= u16::MAX as usize);
    w.put_u16(s.len() as u16);
    w.put_slice(s.as_bytes());
}

pub fn put_blob(w: &mut BytesMut, b: &[u8]) {
    debug_assert!(b.len() <= u32::MAX as usize);
    w.put_u32(b.len() as u32);
    w.put_slice(b);
}

pub fn put_list<T: Wire>(w: &mut BytesMut, items: &[T]) {
    debug_assert!(items.len() <= u32::MAX as usize);
    w.put_u32(items.len() as u32);
    for it in items {
        it.encode(w);
    }
}

pub fn put_option<T: Wire>(w: &mut BytesMut, v: &Option<T>) {
    match v {
        None => w.put_u8(0),
        Some(v) => {
            w.put_u8(1);
            v.encode(w);
        }
    }
}

/// Only the address and port are carried (IPv6 flow info and scope are not).
pub fn put_socket_addr(w: &mut BytesMut, a: &SocketAddr) {
    match a.ip() {
        IpAddr::V4(ip) => {
            w.put_u8(4);
            w.put_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            w.put_u8(6);
            w.put_slice(&ip.octets());
        }
    }
    w.put_u16(a.port());
}

impl Wire for u32 {
    const MIN_LEN: usize = 4;
    fn encode(&self, w: &mut BytesMut) {
        w.put_u32(*self);
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        r.u32("u32")
    }
}

impl Wire for u64 {
    const MIN_LEN: usize = 8;
    fn encode(&self, w: &mut BytesMut) {
        w.put_u64(*self);
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        r.u64("u64")
    }
}

impl Wire for SocketAddr {
    const MIN_LEN: usize = 7;
    fn encode(&self, w: &mut BytesMut) {
        put_socket_addr(w, self);
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        r.socket_addr("address")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bool_rejects_non_canonical() {
        let mut r = Reader::new(Bytes::from_static(&[2]));
        assert!(matches!(r.bool("b"), Err(DecodeError::Invalid { .. })));
    }

    #[test]
    fn count_over_limit_is_rejected_before_allocating() {
        let mut r = Reader::new(Bytes::from_static(&[0xff, 0xff, 0xff, 0xff]));
        let e = r.count("items", 10, 1).unwrap_err();
        assert_eq!(
            e,
            DecodeError::TooLong {
                field: "items",
                len: u32::MAX as u64,
                max: 10
            }
        );
    }

    #[test]
    fn count_larger_than_remaining_bytes_is_rejected() {
        // 5 items of at least 4 bytes each cannot fit in 3 bytes.
        let mut r = Reader::new(Bytes::from_static(&[0, 0, 0, 5, 1, 2, 3]));
        assert_eq!(
            r.count("items", 10, 4).unwrap_err(),
            DecodeError::UnexpectedEnd { field: "items" }
        );
    }

    #[test]
    fn string_over_limit_is_rejected() {
        let mut w = BytesMut::new();
        put_string(&mut w, "abcdef");
        let mut r = Reader::new(w.freeze());
        assert!(matches!(
            r.string("s", 5),
            Err(DecodeError::TooLong { len: 6, max: 5, .. })
        ));
    }

    #[test]
    fn string_rejects_bad_utf8() {
        let mut r = Reader::new(Bytes::from_static(&[0, 2, 0xff, 0xfe]));
        assert_eq!(r.string("s", 5), Err(DecodeError::BadUtf8 { field: "s" }));
    }

    #[test]
    fn blob_over_limit_is_rejected_before_reading() {
        let mut r = Reader::new(Bytes::from_static(&[0xff, 0xff, 0xff, 0xff]));
        assert!(matches!(r.blob("b", 100), Err(DecodeError::TooLong { .. })));
    }

    #[test]
    fn socket_addr_round_trips_v4_and_v6() {
        for a in ["127.0.0.1:9909", "[::1]:80"] {
            let a: SocketAddr = a.parse().unwrap();
            assert_eq!(SocketAddr::from_bytes(a.to_bytes()).unwrap(), a);
        }
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        assert_eq!(
            u32::from_bytes(Bytes::from_static(&[0, 0, 0, 1, 9])),
            Err(DecodeError::TrailingBytes(1))
        );
    }
}
