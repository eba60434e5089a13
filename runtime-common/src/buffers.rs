//! Reusable buffers for piece data, so the hot path of a download or an
//! upload does not allocate, zero and fault in half a megabyte of fresh
//! memory per piece.
//!
//! A buffer is taken with [`take`], filled (by a socket read or a
//! positioned file read) and handed on as [`Bytes`] with [`freeze`]: when
//! the last `Bytes` over it is dropped (after the piece was written to
//! disk, or sent to a peer), the buffer goes back to a process-wide pool
//! of at most [`POOL_BUFFERS_MAX`] buffers; beyond that it is freed.
//! Memory stays bounded by the pieces in flight plus that pool.
//!
//! A pooled buffer keeps whatever bytes it held: every user exposes only
//! the range it has filled ([`freeze`] takes that range), so no byte of an
//! earlier piece can leak into a later one.
//!
//! Buffers can also be placed for `O_DIRECT` ([`aligned_start`]): the
//! disk writes a piece straight from its buffer only when the piece's
//! bytes start on a [`DIRECT_ALIGN`] boundary.

use std::ops::Range;
use std::sync::Mutex;

use bytes::Bytes;

/// Buffers the pool keeps for reuse (at 512 KiB pieces: 8 MiB).
pub const POOL_BUFFERS_MAX: usize = 16;

/// Alignment of `O_DIRECT` transfers: buffer address, file offset and
/// length (the largest logical block size in common use).
pub const DIRECT_ALIGN: usize = 4096;

static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// A buffer of at least `len` bytes (its contents are unspecified: fill
/// what you expose). Reused from the pool when one is large enough.
pub fn take(len: usize) -> Vec<u8> {
    let reused = POOL.lock().ok().and_then(|mut p| {
        let i = p.iter().position(|b| b.len() >= len)?;
        Some(p.swap_remove(i))
    });
    reused.unwrap_or_else(|| vec![0; len])
}

/// Hands `buf[range]` on as [`Bytes`] without copying; the buffer returns
/// to the pool when the last of them is dropped. Panics if `range` is not
/// within `buf` (a caller's bug, like slicing).
pub fn freeze(buf: Vec<u8>, range: Range<usize>) -> Bytes {
    Bytes::from_owner(Pooled(buf)).slice(range)
}

/// Where in `buf` to start writing so that byte `at` of what is written
/// lands on a [`DIRECT_ALIGN`] boundary; `buf` needs `DIRECT_ALIGN - 1`
/// spare bytes for it.
pub fn aligned_start(buf: &[u8], at: usize) -> usize {
    let target = buf.as_ptr().wrapping_add(at);
    target.align_offset(DIRECT_ALIGN).min(DIRECT_ALIGN - 1)
}

/// Returns a buffer from [`take`] that was not frozen (kept if the pool
/// has room).
pub fn give_back(buf: Vec<u8>) {
    if let Ok(mut p) = POOL.lock()
        && p.len() < POOL_BUFFERS_MAX
    {
        p.push(buf);
    }
}

/// Buffers in the pool now.
pub fn pooled() -> usize {
    POOL.lock().map_or(0, |p| p.len())
}

/// A buffer owned by [`Bytes`] that goes back to the pool when dropped.
struct Pooled(Vec<u8>);

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        give_back(std::mem::take(&mut self.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The pool is process-wide and tests run in parallel: these tests
    // check what holds whatever else is running, not exact pool counts.

    #[test]
    fn a_buffer_comes_back_when_its_last_bytes_are_dropped() {
        let mut buf = take(100_000);
        buf[..5].copy_from_slice(b"hello");
        let ptr = buf.as_ptr();
        let b = freeze(buf, 1..5);
        assert_eq!(&b[..], b"ello");
        let c = b.clone();
        drop(b);
        assert_eq!(&c[..], b"ello", "a clone keeps the bytes alive");
        drop(c);
        // The pool now holds that buffer (unless it was full); a
        // buffer of that size is reused rather than allocated.
        let mut seen = false;
        let mut held = Vec::new();
        for _ in 0..=POOL_BUFFERS_MAX {
            let again = take(100_000);
            seen |= again.as_ptr() == ptr;
            held.push(again);
        }
        assert!(seen || pooled() == POOL_BUFFERS_MAX, "reused");
    }

    #[test]
    fn the_pool_is_bounded() {
        let bufs: Vec<Bytes> = (0..3 * POOL_BUFFERS_MAX)
            .map(|_| freeze(take(1000), 0..1000))
            .collect();
        drop(bufs);
        assert!(pooled() <= POOL_BUFFERS_MAX);
    }

    #[test]
    fn aligned_start_places_the_given_byte_on_a_boundary() {
        for at in [0, 1, 13, 4095, 4096, 10_000] {
            let buf = take(at + 2 * DIRECT_ALIGN);
            let s = aligned_start(&buf, at);
            assert!(s < DIRECT_ALIGN);
            assert_eq!(buf[s + at..].as_ptr().align_offset(DIRECT_ALIGN), 0);
        }
    }
}
