//! Wire format of the p2p group file-sharing system.
//!
//! - [`frame`]: `[u32 length][payload]` framing with an incremental decoder;
//! - [`hello`]: the first frame on every connection (magic, version, role);
//! - [`msg`]: every message, one enum per channel (client↔tracker,
//!   tracker↔tracker, peer↔peer), with a hand-written canonical encoding;
//! - [`types`]: validated names, ids, hashes, piece sets, metadata, tickets;
//! - [`limits`]: every bound the wire format puts on a peer;
//! - [`codec`]: the [`Wire`] trait and the bounds-checked [`Reader`].
//!
//! No I/O and no state: this crate turns bytes into values and back, and
//! refuses bad bytes with a typed error, never a panic.

pub mod codec;
pub mod frame;
pub mod hello;
pub mod limits;
pub mod msg;
pub mod types;

#[cfg(any(test, feature = "strategies"))]
pub mod strategies;

#[doc(hidden)]
pub mod fuzzing;

pub use codec::{DecodeError, Reader, Wire};
pub use frame::{FrameDecoder, FrameError, encode_frame};
pub use hello::{Hello, PROTOCOL_VERSION, Role};
pub use msg::Text;
pub use msg::client::{
    ClientRequest, FromTracker, Outcome, Reply, Request, TrackerError, TrackerStatus,
};
pub use msg::peer::{PeerMsg, RejectReason};
pub use msg::repl::{Entry, EpochStart, Op, OpKind, Origin, ReplMsg};
pub use types::*;

/// Encodes `msg` as one frame appended to `out`.
pub fn encode_msg<M: Wire>(msg: &M, out: &mut bytes::BytesMut) {
    let at = out.len();
    out.extend_from_slice(&[0; limits::FRAME_HEADER_LEN]);
    msg.encode(out);
    let len = (out.len() - at - limits::FRAME_HEADER_LEN) as u32;
    debug_assert!(
        len > 0 && len <= limits::FRAME_LEN_MAX,
        "message of {len} bytes does not fit a frame"
    );
    out[at..at + limits::FRAME_HEADER_LEN].copy_from_slice(&len.to_be_bytes());
}
