//! Client ↔ tracker: [`ClientRequest`] up, [`FromTracker`] down.
//!
//! Every request carries the client's random [`ClientId`] and a
//! [`RequestId`]; together they name the request across retries and
//! trackers, so a retried write is answered from the tracker's record and
//! never applied twice. Requests made while logged in carry the session token.
//!
//! One file per message type, each with its codec: `request.rs`
//! ([`ClientRequest`], [`Request`]), `reply.rs` ([`Reply`],
//! [`TrackerStatus`]), `error.rs` ([`TrackerError`]); this file holds what
//! wraps them on the way down, [`Outcome`] and [`FromTracker`].

mod error;
mod reply;
mod request;

pub use error::TrackerError;
pub use reply::{Reply, TrackerStatus};
pub use request::{ClientRequest, Request};

use bytes::{BufMut, BytesMut};

use super::{Text, tag, unknown};
use crate::codec::{DecodeError, Reader, Wire, put_list};
use crate::limits::PEERS_PER_REPLY_MAX;
use crate::types::*;

/// A request's outcome, as carried in responses and stored for retries.
pub type Outcome = Result<Reply, TrackerError>;

impl Wire for Outcome {
    const MIN_LEN: usize = 2;
    fn encode(&self, w: &mut BytesMut) {
        match self {
            Ok(reply) => {
                w.put_u8(0);
                reply.encode(w);
            }
            Err(e) => {
                w.put_u8(1);
                e.encode(w);
            }
        }
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        match tag(r, "outcome")? {
            0 => Ok(Ok(Reply::decode(r)?)),
            1 => Ok(Err(TrackerError::decode(r)?)),
            t => Err(unknown("outcome", t)),
        }
    }
}

/// Everything a tracker sends a client.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum FromTracker {
    Response {
        id: RequestId,
        outcome: Outcome,
    },
    /// Unprompted news, e.g. the session was taken over by another login.
    Notice {
        text: Text,
    },
    /// The connection broke the protocol and is being closed.
    Fatal {
        reason: Text,
    },
    /// Unprompted: new sources of a file this client is downloading (it
    /// asked for the file's peers on this connection lately), each with a
    /// ticket for it, as in a `get_peers` reply. Sent when a member starts
    /// sharing the file or announces its first pieces, so downloaders meet
    /// within one tracker hop (README, "How a swarm shares a file").
    Peers {
        group: GroupName,
        file: FileName,
        peers: Vec<PeerInfo>,
    },
}

impl Wire for FromTracker {
    const MIN_LEN: usize = 1;
    fn encode(&self, w: &mut BytesMut) {
        match self {
            FromTracker::Response { id, outcome } => {
                w.put_u8(1);
                id.encode(w);
                outcome.encode(w);
            }
            FromTracker::Notice { text } => {
                w.put_u8(2);
                text.encode(w);
            }
            FromTracker::Fatal { reason } => {
                w.put_u8(3);
                reason.encode(w);
            }
            FromTracker::Peers { group, file, peers } => {
                w.put_u8(4);
                group.encode(w);
                file.encode(w);
                put_list(w, peers);
            }
        }
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(match tag(r, "tracker message")? {
            1 => FromTracker::Response {
                id: Wire::decode(r)?,
                outcome: Wire::decode(r)?,
            },
            2 => FromTracker::Notice {
                text: Wire::decode(r)?,
            },
            3 => FromTracker::Fatal {
                reason: Wire::decode(r)?,
            },
            4 => FromTracker::Peers {
                group: Wire::decode(r)?,
                file: Wire::decode(r)?,
                peers: r.list("peers", PEERS_PER_REPLY_MAX)?,
            },
            t => return Err(unknown("tracker message", t)),
        })
    }
}
