//! Fuzz bodies, kept in the library so targets in `fuzz/` are one-liners and
//! the same bodies run as regression tests over the committed corpus.

use bytes::BytesMut;

use crate::codec::Wire;
use crate::frame::FrameDecoder;
use crate::{ClientRequest, FromTracker, Hello, PeerMsg, ReplMsg};

/// Feeds `data` to a frame decoder in chunks whose sizes come from the first
/// byte; checks that no frame exceeds the limit and nothing is invented.
pub fn frame(data: &[u8]) {
    let Some((&step, data)) = data.split_first() else {
        return;
    };
    let step = step as usize % 64 + 1;
    let mut dec = FrameDecoder::new(4096);
    let mut buf = BytesMut::new();
    let mut out = 0usize;
    let mut failed = false;
    'feed: for chunk in data.chunks(step) {
        buf.extend_from_slice(chunk);
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(f)) => {
                    assert!(!f.is_empty() && f.len() <= 4096);
                    out += f.len() + 4;
                }
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break 'feed;
                }
            }
        }
    }
    assert!(out <= data.len());
    if !failed {
        // End of stream: leftovers are exactly a truncated frame.
        let leftover = buf.len();
        match dec.finish(&buf) {
            Ok(()) => assert_eq!(leftover, 0),
            Err(e) => assert!(leftover > 0, "{e}"),
        }
        assert_eq!(out + leftover, data.len(), "bytes lost or invented");
    }
}

/// Decodes `data` as `M`; whatever decodes must re-encode to the same bytes.
pub fn message<M: Wire + std::fmt::Debug + PartialEq>(data: &[u8]) {
    let bytes = bytes::Bytes::copy_from_slice(data);
    if let Ok(m) = M::from_bytes(bytes) {
        let again = m.to_bytes();
        assert_eq!(&again[..], data, "non-canonical encoding of {m:?}");
    }
}

pub fn client_msg(data: &[u8]) {
    message::<ClientRequest>(data)
}
pub fn tracker_msg(data: &[u8]) {
    message::<FromTracker>(data)
}
pub fn repl_msg(data: &[u8]) {
    message::<ReplMsg>(data)
}
pub fn peer_msg(data: &[u8]) {
    message::<PeerMsg>(data)
}
pub fn hello(data: &[u8]) {
    message::<Hello>(data)
}
