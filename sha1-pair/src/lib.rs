//! The SHA-1s of two messages of the same length at once, for the
//! download path's piece checks ([`sha1_pair`]). The workspace's one
//! crate with unsafe code (see its Cargo.toml): the 16-byte loads and
//! stores of the SIMD registers, and the call into code compiled for
//! SHA-NI once the CPU is known to have it.
//!
//! One SHA-1 cannot use the CPU's SHA-1 unit fully: every
//! `sha1rnds4` (four rounds) needs the result of the one before, and on
//! this project's machines (AMD EPYC, SHA-NI) that chain is
//! latency-bound: a chain of dependent `sha1rnds4` ran at 1.61 ns each,
//! two independent chains interleaved at 0.80 ns each. So two pieces
//! hashed with their rounds interleaved go about 1.6x as fast as one
//! after the other (2.8 against 1.7 GB/s on one core, 512 KiB pieces, a
//! quiet machine); the sha1 crate, which hashes one message at a time,
//! is the reference the tests compare with and the fallback where the
//! instructions are missing or the lengths differ.

use sha1::{Digest, Sha1};

/// A SHA-1 digest.
pub type Digest20 = [u8; 20];

/// SHA-1 of `data` with the sha1 crate (one message at a time).
pub fn sha1(data: &[u8]) -> Digest20 {
    Sha1::digest(data).into()
}

/// SHA-1 of `a` and of `b`: interleaved on the SHA-NI instructions when
/// the CPU has them and the lengths are equal, else one after the other
/// with the sha1 crate.
pub fn sha1_pair(a: &[u8], b: &[u8]) -> (Digest20, Digest20) {
    #[cfg(target_arch = "x86_64")]
    if a.len() == b.len() && x86::available() {
        // SAFETY: the CPU has every instruction `pair` is compiled for
        // (checked just above).
        #[allow(unsafe_code)]
        return unsafe { x86::pair(a, b) };
    }
    (sha1(a), sha1(b))
}

/// Whether [`sha1_pair`] interleaves on this CPU (for equal lengths).
pub fn interleaved() -> bool {
    #[cfg(target_arch = "x86_64")]
    return x86::available();
    #[cfg(not(target_arch = "x86_64"))]
    return false;
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86 {
    use std::arch::x86_64::*;

    use super::Digest20;

    const IV: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];

    /// Whether the CPU has SHA-NI and what [`pair`] uses beside it.
    pub fn available() -> bool {
        is_x86_feature_detected!("sha")
            && is_x86_feature_detected!("sse2")
            && is_x86_feature_detected!("ssse3")
            && is_x86_feature_detected!("sse4.1")
    }

    /// The final block(s) of a message of `len` bytes whose whole blocks
    /// came before: the `len % 64` bytes of `tail`, the 0x80 byte, zeros,
    /// and the length in bits, big-endian (one block, or two when fewer
    /// than 9 bytes are left in the first).
    fn padded(tail: &[u8], len: usize) -> ([[u8; 64]; 2], usize) {
        let mut out = [[0u8; 64]; 2];
        let flat = out.as_flattened_mut();
        flat[..tail.len()].copy_from_slice(tail);
        flat[tail.len()] = 0x80;
        let blocks = if tail.len() < 56 { 1 } else { 2 };
        let bits = (len as u64).wrapping_mul(8).to_be_bytes();
        flat[blocks * 64 - 8..blocks * 64].copy_from_slice(&bits);
        (out, blocks)
    }

    fn digest(state: &[u32; 5]) -> Digest20 {
        let mut out = [0u8; 20];
        for (o, w) in out.chunks_exact_mut(4).zip(state) {
            o.copy_from_slice(&w.to_be_bytes());
        }
        out
    }

    /// SHA-1 of `a` and `b`, of equal length.
    ///
    /// # Safety
    /// The CPU must have the instructions [`available`] checks.
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    pub unsafe fn pair(a: &[u8], b: &[u8]) -> (Digest20, Digest20) {
        debug_assert_eq!(a.len(), b.len());
        let (sa, sb) = (&mut IV.clone(), &mut IV.clone());
        let (blocks_a, tail_a) = a.as_chunks::<64>();
        let (blocks_b, tail_b) = b.as_chunks::<64>();
        // SAFETY: the caller vouches for the instructions.
        unsafe { compress(sa, sb, blocks_a, blocks_b) };
        let (pad_a, n) = padded(tail_a, a.len());
        let (pad_b, _) = padded(tail_b, b.len());
        // SAFETY: as above.
        unsafe { compress(sa, sb, &pad_a[..n], &pad_b[..n]) };
        (digest(sa), digest(sb))
    }

    /// Advances state `sa` over `a`'s blocks and `sb` over `b`'s (as many
    /// of each), the two lanes' rounds interleaved: the standard SHA-NI
    /// block function (Intel's SHA extensions paper), written twice over.
    ///
    /// In each lane `abcd` is A..D (A in the top dword) and `e` carries E
    /// in its top dword; each step runs four rounds with `sha1rnds4` on
    /// the message words plus E (`sha1nexte` derives the next E from the
    /// state four rounds back), and the schedule makes words 16..80 with
    /// `sha1msg1` / `sha1msg2`.
    // (The schedule writes its last words back like the others; they are
    // never read.)
    #[allow(unused_assignments)]
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    unsafe fn compress(sa: &mut [u32; 5], sb: &mut [u32; 5], a: &[[u8; 64]], b: &[[u8; 64]]) {
        // Big-endian words: reverse the bytes of the 16-byte load.
        let swap = _mm_set_epi64x(0x0001_0203_0405_0607, 0x0809_0A0B_0C0D_0E0F);
        let load_state = |s: &[u32; 5]| {
            // SAFETY: `s` holds 5 u32s; the load reads the first 4.
            let abcd = unsafe { _mm_loadu_si128(s.as_ptr().cast()) };
            (
                _mm_shuffle_epi32(abcd, 0b0001_1011),
                _mm_set_epi32(s[4] as i32, 0, 0, 0),
            )
        };
        let words = |block: &[u8; 64]| {
            let p: *const __m128i = block.as_ptr().cast();
            // SAFETY: 4 loads of 16 bytes within the 64-byte block.
            unsafe {
                [
                    _mm_shuffle_epi8(_mm_loadu_si128(p), swap),
                    _mm_shuffle_epi8(_mm_loadu_si128(p.add(1)), swap),
                    _mm_shuffle_epi8(_mm_loadu_si128(p.add(2)), swap),
                    _mm_shuffle_epi8(_mm_loadu_si128(p.add(3)), swap),
                ]
            }
        };
        let (mut abcd_a, mut e_a) = load_state(sa);
        let (mut abcd_b, mut e_b) = load_state(sb);
        for (block_a, block_b) in a.iter().zip(b) {
            let (mut wa, mut wb) = (words(block_a), words(block_b));
            // Rounds 0..4: `y` is the state after the latest four
            // rounds, `x` the one before.
            let (mut xa, mut xb) = (abcd_a, abcd_b);
            let mut ya = _mm_sha1rnds4_epu32(xa, _mm_add_epi32(e_a, wa[0]), 0);
            let mut yb = _mm_sha1rnds4_epu32(xb, _mm_add_epi32(e_b, wb[0]), 0);
            macro_rules! rounds4 {
                ($f:literal, $wa:expr, $wb:expr) => {{
                    let na = _mm_sha1rnds4_epu32(ya, _mm_sha1nexte_epu32(xa, $wa), $f);
                    let nb = _mm_sha1rnds4_epu32(yb, _mm_sha1nexte_epu32(xb, $wb), $f);
                    (xa, ya, xb, yb) = (ya, na, yb, nb);
                }};
            }
            // Words 4i..4i+4 for i >= 4, in place of words 4(i-4)...
            macro_rules! schedule {
                ($w:ident, $i:literal) => {{
                    let next = _mm_sha1msg2_epu32(
                        _mm_xor_si128(
                            _mm_sha1msg1_epu32($w[$i % 4], $w[($i + 1) % 4]),
                            $w[($i + 2) % 4],
                        ),
                        $w[($i + 3) % 4],
                    );
                    $w[$i % 4] = next;
                    next
                }};
            }
            macro_rules! scheduled_rounds4 {
                ($f:literal, $i:literal) => {{
                    let (na, nb) = (schedule!(wa, $i), schedule!(wb, $i));
                    rounds4!($f, na, nb);
                }};
            }
            rounds4!(0, wa[1], wb[1]);
            rounds4!(0, wa[2], wb[2]);
            rounds4!(0, wa[3], wb[3]);
            scheduled_rounds4!(0, 0);
            scheduled_rounds4!(1, 1);
            scheduled_rounds4!(1, 2);
            scheduled_rounds4!(1, 3);
            scheduled_rounds4!(1, 4);
            scheduled_rounds4!(1, 5);
            scheduled_rounds4!(2, 6);
            scheduled_rounds4!(2, 7);
            scheduled_rounds4!(2, 8);
            scheduled_rounds4!(2, 9);
            scheduled_rounds4!(2, 10);
            scheduled_rounds4!(3, 11);
            scheduled_rounds4!(3, 12);
            scheduled_rounds4!(3, 13);
            scheduled_rounds4!(3, 14);
            scheduled_rounds4!(3, 15);
            abcd_a = _mm_add_epi32(abcd_a, ya);
            e_a = _mm_sha1nexte_epu32(xa, e_a);
            abcd_b = _mm_add_epi32(abcd_b, yb);
            e_b = _mm_sha1nexte_epu32(xb, e_b);
        }
        let store = |s: &mut [u32; 5], abcd: __m128i, e: __m128i| {
            let abcd = _mm_shuffle_epi32(abcd, 0b0001_1011);
            // SAFETY: `s` holds 5 u32s; the store writes the first 4.
            unsafe { _mm_storeu_si128(s.as_mut_ptr().cast(), abcd) };
            s[4] = _mm_extract_epi32(e, 3) as u32;
        };
        store(sa, abcd_a, e_a);
        store(sb, abcd_b, e_b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `sha1_pair(a, b)`, and the interleaved path itself wherever the
    /// CPU has it (this project's machines do), as the sha1 crate has
    /// them.
    fn both(a: &[u8], b: &[u8]) -> (Digest20, Digest20) {
        let r = sha1_pair(a, b);
        #[cfg(target_arch = "x86_64")]
        if a.len() == b.len() && x86::available() {
            // SAFETY: checked just above.
            #[allow(unsafe_code)]
            let direct = unsafe { x86::pair(a, b) };
            assert_eq!(direct, r);
        }
        r
    }

    /// Every length around the padding's edges (55, 56 and 63 bytes
    /// left in the last block), equal-length pairs against the sha1
    /// crate; unequal lengths take the fallback and agree too.
    #[test]
    fn pairs_match_the_sha1_crate_at_every_padding_edge() {
        for len in (0..=200).chain([511, 512, 4096, 524_287, 524_288]) {
            let a: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let b: Vec<u8> = (0..len).map(|i| (i * 13 + 1) as u8).collect();
            assert_eq!(both(&a, &b), (sha1(&a), sha1(&b)), "length {len}");
            assert_eq!(both(&a, &a), (sha1(&a), sha1(&a)), "length {len}, twice");
        }
        assert_eq!(
            sha1_pair(b"abc", b""),
            (sha1(b"abc"), sha1(b"")),
            "lengths differ"
        );
        let hex: String = both(b"abc", b"abc")
            .0
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, "a9993e364706816aba3e25717850c26c9cd0d89d");
    }

    proptest! {
        #[test]
        fn random_pairs_match_the_sha1_crate(
            (a, b) in (0usize..3000).prop_flat_map(|n| (
                proptest::collection::vec(any::<u8>(), n),
                proptest::collection::vec(any::<u8>(), n),
            ))
        ) {
            prop_assert_eq!(both(&a, &b), (sha1(&a), sha1(&b)));
        }
    }
}
