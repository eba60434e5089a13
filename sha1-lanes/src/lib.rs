//! The SHA-1s of up to four messages of the same length at once, for
//! the download path's piece checks and the hashing of a file to share
//! ([`sha1_each`]). The workspace's one crate with unsafe code (see its
//! Cargo.toml): the 16-byte loads and stores of the SIMD registers, and
//! the call into code compiled for SHA-NI once the CPU is known to have
//! it.
//!
//! One SHA-1 cannot use the CPU's SHA-1 unit fully: every `sha1rnds4`
//! (four rounds) needs the result of the one before, and on this
//! project's machines (AMD EPYC, SHA-NI) that chain is latency-bound.
//! Measured on one core (a loop of `sha1rnds4` per chain, chains
//! interleaved): 1.49 ns each with one chain, 0.77 with two, 0.61 with
//! three, 0.50 with four. Whole 512 KiB messages hashed with their
//! rounds interleaved: 2.0 GB/s one at a time, 3.7 two, 4.6 three, 5.5
//! four at once (a quiet machine). Four lanes use all sixteen SIMD
//! registers the SHA instructions can name (a few values spill to the
//! stack, and it is still the fastest); more lanes would spill on every
//! step. The sha1 crate, which hashes one message at a time, is the
//! reference the tests compare with and the path for a message alone,
//! for lengths that differ, and where the instructions are missing.

use sha1::{Digest, Sha1};

/// A SHA-1 digest.
pub type Digest20 = [u8; 20];

/// The most messages hashed at once: [`sha1_each`] takes them in groups
/// of this many.
pub const LANES: usize = 4;

/// SHA-1 of `data` with the sha1 crate (one message at a time).
pub fn sha1(data: &[u8]) -> Digest20 {
    Sha1::digest(data).into()
}

/// The SHA-1 of each of `msgs`, in order: in groups of up to [`LANES`],
/// the messages of a group that have its first one's length hashed with
/// their rounds interleaved on the SHA-NI instructions when the CPU has
/// them, any other alone with the sha1 crate.
pub fn sha1_each(msgs: &[&[u8]]) -> Vec<Digest20> {
    let mut out = vec![[0u8; 20]; msgs.len()];
    for (group, digests) in msgs.chunks(LANES).zip(out.chunks_mut(LANES)) {
        let len = group[0].len();
        let mut same = [0usize; LANES];
        let mut n = 0;
        for (k, m) in group.iter().enumerate() {
            if m.len() == len {
                same[n] = k;
                n += 1;
            } else {
                digests[k] = sha1(m);
            }
        }
        let same = &same[..n];
        let pick = |k: usize| group[same[k]];
        let got: &[Digest20] = &match n {
            4 => interleaved::<4>(|k| pick(k)).to_vec(),
            3 => interleaved::<3>(|k| pick(k)).to_vec(),
            2 => interleaved::<2>(|k| pick(k)).to_vec(),
            _ => vec![sha1(pick(0))],
        };
        for (&k, d) in same.iter().zip(got) {
            digests[k] = *d;
        }
    }
    out
}

/// The SHA-1s of the `N` messages `msg(0..N)`, of equal length:
/// interleaved where the CPU has the instructions, else one by one.
fn interleaved<'a, const N: usize>(msg: impl Fn(usize) -> &'a [u8]) -> [Digest20; N] {
    let msgs: [&[u8]; N] = std::array::from_fn(msg);
    #[cfg(target_arch = "x86_64")]
    if x86::available() {
        // SAFETY: the CPU has every instruction `lanes` is compiled for
        // (checked just above); the lengths are equal (the caller's
        // promise, checked in debug builds).
        #[allow(unsafe_code)]
        return unsafe { x86::lanes(msgs) };
    }
    msgs.map(sha1)
}

/// Whether [`sha1_each`] interleaves on this CPU (for equal lengths).
pub fn interleaves() -> bool {
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

    /// Whether the CPU has SHA-NI and what [`lanes`] uses beside it.
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

    /// SHA-1 of each of `msgs`, all of one length.
    ///
    /// # Safety
    /// The CPU must have the instructions [`available`] checks.
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    pub unsafe fn lanes<const N: usize>(msgs: [&[u8]; N]) -> [Digest20; N] {
        let len = msgs[0].len();
        debug_assert!(msgs.iter().all(|m| m.len() == len));
        let mut states = [IV; N];
        let blocks = msgs.map(|m| m.as_chunks::<64>().0);
        // SAFETY: the caller vouches for the instructions.
        unsafe { compress(&mut states, blocks) };
        let pads = msgs.map(|m| padded(m.as_chunks::<64>().1, len));
        let n = pads[0].1;
        let tails: [&[[u8; 64]]; N] = std::array::from_fn(|i| &pads[i].0[..n]);
        // SAFETY: as above.
        unsafe { compress(&mut states, tails) };
        states.map(|s| digest(&s))
    }

    /// Advances each lane's state over its blocks (as many in every
    /// lane), the lanes' rounds interleaved: the standard SHA-NI block
    /// function (Intel's SHA extensions paper), each step written once
    /// for all lanes (`N` is a constant: the loops over the lanes unroll).
    ///
    /// In each lane `abcd` is A..D (A in the top dword) and `e` carries E
    /// in its top dword; each step runs four rounds with `sha1rnds4` on
    /// the message words plus E (`sha1nexte` derives the next E from the
    /// state four rounds back), and the schedule makes words 16..80 with
    /// `sha1msg1` / `sha1msg2`.
    // (The schedule writes its last words back like the others; they are
    // never read.)
    // (Indexes, not iterators: each step reads and writes several arrays
    // at the same lane, and block `k` of every lane.)
    #[allow(unused_assignments, clippy::needless_range_loop)]
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    unsafe fn compress<const N: usize>(states: &mut [[u32; 5]; N], blocks: [&[[u8; 64]]; N]) {
        // Big-endian words: reverse the bytes of the 16-byte load.
        let swap = _mm_set_epi64x(0x0001_0203_0405_0607, 0x0809_0A0B_0C0D_0E0F);
        let zero = _mm_setzero_si128();
        let (mut abcd, mut e) = ([zero; N], [zero; N]);
        for i in 0..N {
            // SAFETY: a state holds 5 u32s; the load reads the first 4.
            let s = unsafe { _mm_loadu_si128(states[i].as_ptr().cast()) };
            abcd[i] = _mm_shuffle_epi32(s, 0b0001_1011);
            e[i] = _mm_set_epi32(states[i][4] as i32, 0, 0, 0);
        }
        let count = blocks[0].len();
        debug_assert!(blocks.iter().all(|b| b.len() == count));
        for k in 0..count {
            let mut w = [[zero; 4]; N];
            for i in 0..N {
                let p: *const __m128i = blocks[i][k].as_ptr().cast();
                for (j, word) in w[i].iter_mut().enumerate() {
                    // SAFETY: 4 loads of 16 bytes within the 64-byte block.
                    *word = _mm_shuffle_epi8(unsafe { _mm_loadu_si128(p.add(j)) }, swap);
                }
            }
            // Rounds 0..4: `y` is the state after the latest four
            // rounds, `x` the one before.
            let mut x = abcd;
            let mut y = [zero; N];
            for i in 0..N {
                y[i] = _mm_sha1rnds4_epu32(x[i], _mm_add_epi32(e[i], w[i][0]), 0);
            }
            // Four rounds in every lane with function `$f` on word group
            // `$j` (of the 4 kept in `w`, `$j % 4`).
            macro_rules! rounds4 {
                ($f:literal, $j:expr) => {{
                    for i in 0..N {
                        let next =
                            _mm_sha1rnds4_epu32(y[i], _mm_sha1nexte_epu32(x[i], w[i][$j % 4]), $f);
                        (x[i], y[i]) = (y[i], next);
                    }
                }};
            }
            // Words 4j..4j+4 for j >= 4, in place of words 4(j-4)..,
            // then their four rounds.
            macro_rules! scheduled_rounds4 {
                ($f:literal, $j:literal) => {{
                    for wi in w.iter_mut() {
                        wi[$j % 4] = _mm_sha1msg2_epu32(
                            _mm_xor_si128(
                                _mm_sha1msg1_epu32(wi[$j % 4], wi[($j + 1) % 4]),
                                wi[($j + 2) % 4],
                            ),
                            wi[($j + 3) % 4],
                        );
                    }
                    rounds4!($f, $j);
                }};
            }
            rounds4!(0, 1);
            rounds4!(0, 2);
            rounds4!(0, 3);
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
            for i in 0..N {
                abcd[i] = _mm_add_epi32(abcd[i], y[i]);
                e[i] = _mm_sha1nexte_epu32(x[i], e[i]);
            }
        }
        for i in 0..N {
            let a = _mm_shuffle_epi32(abcd[i], 0b0001_1011);
            // SAFETY: a state holds 5 u32s; the store writes the first 4.
            unsafe { _mm_storeu_si128(states[i].as_mut_ptr().cast(), a) };
            states[i][4] = _mm_extract_epi32(e[i], 3) as u32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `sha1_each` of `msgs`, and the interleaved path itself for every
    /// lane count wherever the CPU has it (this project's machines do),
    /// checked against the sha1 crate.
    fn check(msgs: &[&[u8]]) {
        let want: Vec<Digest20> = msgs.iter().map(|m| sha1(m)).collect();
        assert_eq!(sha1_each(msgs), want);
        #[cfg(target_arch = "x86_64")]
        if x86::available() && msgs.iter().all(|m| m.len() == msgs[0].len()) {
            let got = match msgs.len() {
                4 => direct::<4>(msgs),
                3 => direct::<3>(msgs),
                2 => direct::<2>(msgs),
                1 => direct::<1>(msgs),
                _ => return,
            };
            assert_eq!(got, want, "{} lanes", msgs.len());
        }
    }

    /// The interleaved path itself, `N` lanes.
    #[cfg(target_arch = "x86_64")]
    fn direct<const N: usize>(msgs: &[&[u8]]) -> Vec<Digest20> {
        let msgs: [&[u8]; N] = msgs.try_into().unwrap();
        // SAFETY: `check` calls this only where the CPU has the
        // instructions and the lengths are equal.
        #[allow(unsafe_code)]
        unsafe { x86::lanes(msgs) }.to_vec()
    }

    /// Every length around the padding's edges (55, 56 and 63 bytes
    /// left in the last block), one to four messages of equal length
    /// against the sha1 crate, the same message in every lane too.
    #[test]
    fn lanes_match_the_sha1_crate_at_every_padding_edge() {
        for len in (0..=200).chain([511, 512, 4096, 524_287, 524_288]) {
            let m: Vec<Vec<u8>> = (0..LANES)
                .map(|k| (0..len).map(|i| (i * (7 + 6 * k) + k) as u8).collect())
                .collect();
            let m: Vec<&[u8]> = m.iter().map(|v| v.as_slice()).collect();
            for n in 1..=LANES {
                check(&m[..n]);
                check(&vec![m[0]; n]);
            }
        }
        let hex: String = sha1_each(&[b"abc", b"abc", b"abc", b"abc"])[3]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, "a9993e364706816aba3e25717850c26c9cd0d89d");
    }

    /// Lengths that differ (a file's short last piece among whole ones,
    /// in any place), and more messages than lanes: every digest in its
    /// place.
    #[test]
    fn mixed_lengths_and_many_messages_keep_their_order() {
        let whole: Vec<u8> = (0..4096u32).map(|i| (i * 31) as u8).collect();
        let short = &whole[..1000];
        for at in 0..LANES {
            let mut msgs = vec![&whole[..]; LANES];
            msgs[at] = short;
            check(&msgs);
        }
        check(&[short, &whole, &whole]);
        let many: Vec<&[u8]> = (0..11).map(|k| &whole[k * 3..k * 3 + 2000]).collect();
        check(&many);
        check(&[]);
    }

    proptest! {
        #[test]
        fn random_groups_match_the_sha1_crate(
            msgs in (1usize..=LANES, 0usize..3000).prop_flat_map(|(n, len)| {
                proptest::collection::vec(proptest::collection::vec(any::<u8>(), len), n)
            })
        ) {
            let msgs: Vec<&[u8]> = msgs.iter().map(|v| v.as_slice()).collect();
            check(&msgs);
        }
    }
}
