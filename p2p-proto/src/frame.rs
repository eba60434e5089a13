//! Framing: `[u32 big-endian length][payload]`.
//!
//! [`FrameDecoder`] is incremental: the caller appends whatever bytes a read
//! returned to a `BytesMut` and calls [`FrameDecoder::decode`] until it
//! returns `Ok(None)`. The length is validated as soon as the 4 header bytes
//! are present, before anything is reserved (rustls-style), so a huge length
//! prefix costs nothing. Every error is fatal for that connection only.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::limits::{FRAME_HEADER_LEN, FRAME_LEN_MAX};

/// Why a byte stream is not a valid sequence of frames. Blame: remote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame length {len} exceeds the limit of {max} bytes")]
    TooLong { len: u32, max: u32 },
    #[error("zero-length frame")]
    Empty,
    #[error("connection closed in the middle of a frame ({have} of {need} bytes received)")]
    Truncated { have: usize, need: usize },
}

/// Incremental frame decoder with a per-connection length limit.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    len_max: u32,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new(FRAME_LEN_MAX)
    }
}

impl FrameDecoder {
    /// `len_max` is the largest payload accepted (clamped to
    /// [`FRAME_LEN_MAX`]).
    pub fn new(len_max: u32) -> Self {
        FrameDecoder {
            len_max: len_max.min(FRAME_LEN_MAX),
        }
    }

    pub fn len_max(&self) -> u32 {
        self.len_max
    }

    /// Takes one whole frame off the front of `buf`, if one is there.
    ///
    /// `Ok(None)`: more bytes are needed (and `buf` has been reserved for the
    /// rest of the current frame once its header is known).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        if buf.len() < FRAME_HEADER_LEN {
            return Ok(None);
        }
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if len == 0 {
            return Err(FrameError::Empty);
        }
        if len > self.len_max {
            return Err(FrameError::TooLong {
                len,
                max: self.len_max,
            });
        }
        let need = FRAME_HEADER_LEN + len as usize;
        if buf.len() < need {
            buf.reserve(need - buf.len());
            return Ok(None);
        }
        buf.advance(FRAME_HEADER_LEN);
        Ok(Some(buf.split_to(len as usize).freeze()))
    }

    /// Call at end of stream: leftover bytes mean the peer hung up mid-frame.
    pub fn finish(&self, buf: &BytesMut) -> Result<(), FrameError> {
        if buf.is_empty() {
            return Ok(());
        }
        let need = if buf.len() >= FRAME_HEADER_LEN {
            FRAME_HEADER_LEN + u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize
        } else {
            FRAME_HEADER_LEN
        };
        Err(FrameError::Truncated {
            have: buf.len(),
            need,
        })
    }
}

/// Appends one frame holding `payload` to `out`.
///
/// Panics in debug builds if the payload is empty or over [`FRAME_LEN_MAX`]:
/// every message type is bounded so that this cannot happen.
pub fn encode_frame(payload: &[u8], out: &mut BytesMut) {
    debug_assert!(!payload.is_empty(), "empty frame");
    debug_assert!(payload.len() <= FRAME_LEN_MAX as usize, "frame too long");
    out.reserve(FRAME_HEADER_LEN + payload.len());
    out.put_u32(payload.len() as u32);
    out.put_slice(payload);
}

/// Writes only the 4-byte header for a payload of `len` bytes, for drivers
/// that send a piece's bytes straight from their own buffer (vectored write).
pub fn frame_header(len: usize) -> [u8; FRAME_HEADER_LEN] {
    debug_assert!(len > 0 && len <= FRAME_LEN_MAX as usize);
    (len as u32).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stream(frames: &[Vec<u8>]) -> BytesMut {
        let mut out = BytesMut::new();
        for f in frames {
            encode_frame(f, &mut out);
        }
        out
    }

    fn decode_all(dec: &mut FrameDecoder, buf: &mut BytesMut) -> Vec<Bytes> {
        let mut got = Vec::new();
        while let Some(f) = dec.decode(buf).unwrap() {
            got.push(f);
        }
        got
    }

    #[test]
    fn every_strict_prefix_needs_more() {
        let whole = stream(&[b"hello".to_vec()]);
        for cut in 0..whole.len() {
            let mut buf = BytesMut::from(&whole[..cut]);
            assert_eq!(
                FrameDecoder::default().decode(&mut buf),
                Ok(None),
                "cut {cut}"
            );
        }
        let mut buf = whole.clone();
        assert_eq!(
            FrameDecoder::default().decode(&mut buf).unwrap().unwrap(),
            &b"hello"[..]
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn many_frames_in_one_buffer_and_trailing_bytes_survive() {
        let mut buf = stream(&[b"a".to_vec(), b"bc".to_vec(), b"def".to_vec()]);
        buf.extend_from_slice(&[0, 0]); // start of a fourth header
        let got = decode_all(&mut FrameDecoder::default(), &mut buf);
        assert_eq!(got, vec![&b"a"[..], &b"bc"[..], &b"def"[..]]);
        assert_eq!(&buf[..], &[0, 0]);
    }

    #[test]
    fn limit_is_inclusive_and_checked_from_the_header_alone() {
        let mut dec = FrameDecoder::new(100);
        let mut at = BytesMut::from(&100u32.to_be_bytes()[..]);
        assert_eq!(dec.decode(&mut at), Ok(None));
        let mut over = BytesMut::from(&101u32.to_be_bytes()[..]);
        assert_eq!(
            dec.decode(&mut over),
            Err(FrameError::TooLong { len: 101, max: 100 })
        );
    }

    #[test]
    fn huge_length_prefix_is_rejected_without_reserving() {
        let mut buf = BytesMut::from(&u32::MAX.to_be_bytes()[..]);
        let cap = buf.capacity();
        assert!(matches!(
            FrameDecoder::default().decode(&mut buf),
            Err(FrameError::TooLong { .. })
        ));
        assert_eq!(buf.capacity(), cap);
    }

    #[test]
    fn default_limit_fits_a_whole_piece() {
        let mut buf = BytesMut::from(&(crate::limits::PIECE_LEN + 64).to_be_bytes()[..]);
        assert_eq!(FrameDecoder::default().decode(&mut buf), Ok(None));
    }

    #[test]
    fn zero_length_frame_is_an_error() {
        let mut buf = BytesMut::from(&[0u8, 0, 0, 0][..]);
        assert_eq!(
            FrameDecoder::default().decode(&mut buf),
            Err(FrameError::Empty)
        );
    }

    #[test]
    fn truncated_stream_is_reported_at_eof() {
        let dec = FrameDecoder::default();
        assert_eq!(dec.finish(&BytesMut::new()), Ok(()));
        assert_eq!(
            dec.finish(&BytesMut::from(&[0u8, 0][..])),
            Err(FrameError::Truncated { have: 2, need: 4 })
        );
        assert_eq!(
            dec.finish(&BytesMut::from(&[0u8, 0, 0, 9, 1][..])),
            Err(FrameError::Truncated { have: 5, need: 13 })
        );
    }

    proptest! {
        #[test]
        fn rechunked_stream_decodes_to_the_same_frames(
            frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 0..20),
            cuts in proptest::collection::vec(1usize..64, 0..200),
        ) {
            let whole = stream(&frames);
            let mut dec = FrameDecoder::default();
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            let mut pos = 0;
            let mut cuts = cuts.into_iter();
            while pos < whole.len() {
                let n = cuts.next().unwrap_or(whole.len()).min(whole.len() - pos);
                buf.extend_from_slice(&whole[pos..pos + n]);
                pos += n;
                got.extend(decode_all(&mut dec, &mut buf));
            }
            prop_assert!(buf.is_empty());
            prop_assert_eq!(got.len(), frames.len());
            for (g, f) in got.iter().zip(&frames) {
                prop_assert_eq!(&g[..], &f[..]);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let mut dec = FrameDecoder::new(1000);
            let mut buf = BytesMut::from(&data[..]);
            let before = buf.len();
            while let Ok(Some(f)) = dec.decode(&mut buf) {
                prop_assert!(!f.is_empty() && f.len() <= 1000);
            }
            prop_assert!(buf.len() <= before);
        }
    }
}
