//! Cutting a connection's plaintext into frames ([`Deframer`]): small
//! frames are copied out of a read chunk, the body of a large one (a
//! piece) is read straight into a pooled buffer, aligned for `O_DIRECT`.

use bytes::BytesMut;
use p2p_proto::limits::FRAME_HEADER_LEN;
use p2p_proto::{FrameDecoder, FrameError};

use super::{ConnEvent, DIRECT_READ_LEN_MIN, LARGE_FRAME_ALIGN_AT, READ_CHUNK_LEN};
use crate::buffers::{self, DIRECT_ALIGN};

/// Cuts a byte stream into frames for a reader, and says where each read
/// should land ([`Deframer::read_buf`]): small frames arrive in a chunk of
/// [`READ_CHUNK_LEN`] bytes that can hold many of them and are copied out
/// of it, while the rest of a large frame (a piece) is read straight into
/// a pooled buffer sized from its header (already checked against the
/// frame limit), so piece bytes are never copied after the socket.
#[derive(Debug)]
pub struct Deframer {
    decoder: FrameDecoder,
    /// Bytes received and not yet handed out as frames.
    buf: BytesMut,
    /// Where reads land when no large frame is arriving.
    chunk: Vec<u8>,
    /// The large frame being read in place, if any.
    direct: Option<Direct>,
}

/// A large frame arriving in its own buffer: the frame (header included)
/// goes to `buf[start..start + need]`, and `have` bytes of it are there.
#[derive(Debug)]
struct Direct {
    buf: Vec<u8>,
    start: usize,
    have: usize,
    need: usize,
}

impl Deframer {
    pub fn new(decoder: FrameDecoder) -> Self {
        Deframer {
            decoder,
            buf: BytesMut::new(),
            chunk: vec![0; READ_CHUNK_LEN],
            direct: None,
        }
    }

    /// Where the next read should put its bytes; then call
    /// [`Deframer::filled`] with how many it read.
    pub fn read_buf(&mut self) -> &mut [u8] {
        if self.direct.is_none() {
            self.direct = self.start_direct();
        }
        match &mut self.direct {
            Some(d) => &mut d.buf[d.start + d.have..d.start + d.need],
            None => &mut self.chunk,
        }
    }

    /// `n` bytes were read into [`Deframer::read_buf`]: hands every whole
    /// frame to `sink`. `false`: stop reading (bad framing, or the sink
    /// stopped listening).
    pub fn filled<F: FnMut(ConnEvent) -> bool>(&mut self, n: usize, sink: &mut F) -> bool {
        match self.direct.take() {
            Some(mut d) if d.have + n < d.need => {
                d.have += n;
                self.direct = Some(d);
                true
            }
            Some(d) => {
                let payload = d.start + FRAME_HEADER_LEN..d.start + d.need;
                sink(ConnEvent::Frame(buffers::freeze(d.buf, payload)))
            }
            None => {
                self.buf.extend_from_slice(&self.chunk[..n]);
                self.decode_all(sink)
            }
        }
    }

    /// Takes `bytes` (however they were read) and hands every whole frame
    /// to `sink`; the same as reading them into [`Deframer::read_buf`].
    pub fn feed<F: FnMut(ConnEvent) -> bool>(&mut self, mut bytes: &[u8], sink: &mut F) -> bool {
        while !bytes.is_empty() {
            let to = self.read_buf();
            let n = to.len().min(bytes.len());
            to[..n].copy_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if !self.filled(n, sink) {
                return false;
            }
        }
        true
    }

    /// A large frame's header is in `buf` (and nothing after that frame:
    /// whole frames were handed out) and most of its body is still to
    /// come: move what arrived into a buffer of its own, placed so that
    /// byte [`LARGE_FRAME_ALIGN_AT`] is aligned. `None` for small frames,
    /// and for a bad header (left for the decoder to report).
    fn start_direct(&mut self) -> Option<Direct> {
        let header = self.buf.get(..FRAME_HEADER_LEN)?;
        let len = u32::from_be_bytes(header.try_into().ok()?);
        if len == 0 || len > self.decoder.len_max() {
            return None;
        }
        let need = FRAME_HEADER_LEN + len as usize;
        let have = self.buf.len();
        if need.saturating_sub(have) < DIRECT_READ_LEN_MIN {
            return None;
        }
        let mut buf = buffers::take(need + DIRECT_ALIGN);
        let start = buffers::aligned_start(&buf, LARGE_FRAME_ALIGN_AT);
        buf[start..start + have].copy_from_slice(&self.buf);
        self.buf.clear();
        Some(Direct {
            buf,
            start,
            have,
            need,
        })
    }

    fn decode_all<F: FnMut(ConnEvent) -> bool>(&mut self, sink: &mut F) -> bool {
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(frame)) => {
                    if !sink(ConnEvent::Frame(frame)) {
                        return false;
                    }
                }
                Ok(None) => return true,
                Err(e) => {
                    sink(ConnEvent::BadFraming(e));
                    return false;
                }
            }
        }
    }

    /// Whether part of a frame has arrived and the rest has not (the
    /// reader's [`FRAME_TIMEOUT`] runs).
    pub fn in_frame(&self) -> bool {
        self.direct.is_some() || !self.buf.is_empty()
    }

    /// The stream ended: a partial frame left over is bad framing.
    pub fn finish<F: FnMut(ConnEvent) -> bool>(&mut self, sink: &mut F) {
        if let Some(d) = self.direct.take() {
            sink(ConnEvent::BadFraming(FrameError::Truncated {
                have: d.have,
                need: d.need,
            }));
            return;
        }
        if let Err(e) = self.decoder.finish(&self.buf) {
            sink(ConnEvent::BadFraming(e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use p2p_proto::encode_frame;

    fn frame(payload: &[u8]) -> Bytes {
        let mut b = BytesMut::new();
        encode_frame(payload, &mut b);
        b.freeze()
    }

    #[test]
    fn frames_split_across_reads_come_out_whole_and_in_order() {
        let mut stream = Vec::new();
        for i in 1..=20u8 {
            stream.extend_from_slice(&frame(&vec![i; i as usize * 7]));
        }
        let mut d = Deframer::new(FrameDecoder::default());
        let mut got = Vec::new();
        for chunk in stream.chunks(13) {
            assert!(d.feed(chunk, &mut |e| {
                got.push(e);
                true
            }));
        }
        d.finish(&mut |e| {
            got.push(e);
            true
        });
        let want: Vec<ConnEvent> = (1..=20u8)
            .map(|i| ConnEvent::Frame(Bytes::from(vec![i; i as usize * 7])))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_large_frame_is_read_in_place_between_small_ones() {
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let mut stream = Vec::new();
        stream.extend_from_slice(&frame(b"small"));
        stream.extend_from_slice(&frame(&big));
        stream.extend_from_slice(&frame(b"after"));
        let mut d = Deframer::new(FrameDecoder::default());
        let mut got = Vec::new();
        let mut sink = |e| {
            got.push(e);
            true
        };
        // The first read holds the small frame and the big one's start.
        let first = 1000;
        assert!(d.feed(&stream[..first], &mut sink));
        // The rest of the big frame goes straight into its own buffer,
        // however the socket splits it.
        let mut at = first;
        let mut landed = Vec::new();
        let end = 4 + 5 + 4 + big.len();
        while at < end {
            let to = d.read_buf();
            assert!(to.len() >= end - at, "sized for the whole frame");
            let n = (end - at).min(70_001);
            to[..n].copy_from_slice(&stream[at..at + n]);
            landed.push(to.as_ptr() as usize);
            at += n;
            assert!(d.filled(n, &mut sink));
        }
        assert!(d.feed(&stream[at..], &mut sink));
        let want: Vec<ConnEvent> = [&b"small"[..], &big, b"after"]
            .iter()
            .map(|p| ConnEvent::Frame(Bytes::copy_from_slice(p)))
            .collect();
        assert_eq!(got, want);
        let ConnEvent::Frame(f) = &got[1] else {
            unreachable!()
        };
        let span = f.as_ptr() as usize..f.as_ptr() as usize + f.len();
        assert!(
            landed.iter().all(|p| span.contains(p)),
            "read in place, never copied"
        );
        let data = &f[LARGE_FRAME_ALIGN_AT - FRAME_HEADER_LEN..];
        assert_eq!(
            data.as_ptr().align_offset(DIRECT_ALIGN),
            0,
            "a piece's data lands aligned for O_DIRECT"
        );
    }

    #[test]
    fn a_stream_cut_inside_a_large_frame_reports_what_arrived() {
        let big = vec![1u8; 200_000];
        let f = frame(&big);
        let mut d = Deframer::new(FrameDecoder::default());
        let mut got = Vec::new();
        let mut sink = |e| {
            got.push(e);
            true
        };
        assert!(d.feed(&f[..150_000], &mut sink));
        d.finish(&mut sink);
        assert_eq!(
            got,
            vec![ConnEvent::BadFraming(FrameError::Truncated {
                have: 150_000,
                need: 200_004
            })]
        );
    }

    #[test]
    fn bad_framing_and_a_truncated_tail_are_reported() {
        let mut d = Deframer::new(FrameDecoder::default());
        let mut got = Vec::new();
        assert!(!d.feed(&[0xff; 4], &mut |e| {
            got.push(e);
            true
        }));
        assert!(matches!(
            got[..],
            [ConnEvent::BadFraming(FrameError::TooLong { .. })]
        ));
        let mut d = Deframer::new(FrameDecoder::default());
        got.clear();
        assert!(d.feed(&[0, 0, 0, 9, 1], &mut |_| true));
        d.finish(&mut |e| {
            got.push(e);
            true
        });
        assert!(matches!(
            got[..],
            [ConnEvent::BadFraming(FrameError::Truncated { .. })]
        ));
    }
}
