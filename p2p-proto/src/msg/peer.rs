//! Peer ↔ peer: a downloader opens a connection to a seeder for one file,
//! shows its ticket, learns which pieces the seeder has, and asks for whole
//! pieces, several at a time. Either side may announce new pieces.

use bytes::{BufMut, Bytes, BytesMut};

use super::{Text, tag, unknown};
use crate::codec::{DecodeError, Reader, Wire, put_option};
use crate::limits::PIECE_LEN_MAX;
use crate::types::*;

/// Why a seeder refused a request or a connection.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum RejectReason {
    #[error("no ticket shown (open the file first)")]
    NoTicket,
    #[error("ticket does not verify")]
    BadTicket,
    #[error("ticket expired (ask the tracker for fresh peers)")]
    Expired,
    #[error("ticket is for another seeder or user")]
    WrongParty,
    #[error("this peer does not share that file")]
    UnknownFile,
    #[error("piece {index} is not held here")]
    NoSuchPiece { index: u32 },
    #[error("too many requests in flight (slow down)")]
    Busy,
    /// The connection's TLS key is not the ticket's `downloader_key`: the
    /// ticket was issued to another client.
    #[error("ticket was issued to another client key than this connection's")]
    WrongKey,
}

impl Wire for RejectReason {
    const MIN_LEN: usize = 1;
    fn encode(&self, w: &mut BytesMut) {
        use RejectReason::*;
        match self {
            NoTicket => w.put_u8(1),
            BadTicket => w.put_u8(2),
            Expired => w.put_u8(3),
            WrongParty => w.put_u8(4),
            UnknownFile => w.put_u8(5),
            NoSuchPiece { index } => {
                w.put_u8(6);
                w.put_u32(*index);
            }
            Busy => w.put_u8(7),
            WrongKey => w.put_u8(8),
        }
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        use RejectReason::*;
        Ok(match tag(r, "reject reason")? {
            1 => NoTicket,
            2 => BadTicket,
            3 => Expired,
            4 => WrongParty,
            5 => UnknownFile,
            6 => NoSuchPiece {
                index: r.u32("piece index")?,
            },
            7 => Busy,
            8 => WrongKey,
            t => return Err(unknown("reject reason", t)),
        })
    }
}

/// Everything peers say to each other.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum PeerMsg {
    /// Downloader → seeder, first: the file wanted and the permission.
    Open { ticket: Ticket },
    /// Seeder → downloader, answer to `Open`: the pieces held now.
    Have { pieces: PieceSet },
    /// Either way: one more piece is held.
    HavePiece { index: u32 },
    /// Downloader → seeder: send this whole piece.
    Request { index: u32 },
    /// Downloader → seeder: no longer needed (endgame duplicate).
    Cancel { index: u32 },
    /// Seeder → downloader: a whole piece.
    Piece { index: u32, data: Bytes },
    /// Seeder → downloader: refused; `index` is `None` for the whole
    /// connection (which the seeder then closes).
    Reject {
        index: Option<u32>,
        reason: RejectReason,
    },
    /// The connection broke the protocol and is being closed.
    Fatal { reason: Text },
}

impl PeerMsg {
    /// Bytes of a `Piece` message before its data, for drivers that write
    /// the header and the piece bytes with one vectored write.
    pub const PIECE_HEADER_LEN: usize = 1 + 4 + 4;

    /// If `payload` is a well-formed `Piece` message, its index and data
    /// (zero-copy). Drivers use it to hash piece data off the machine's
    /// thread before handing it over.
    pub fn split_piece(payload: &Bytes) -> Option<(u32, Bytes)> {
        if payload.first() != Some(&6) {
            return None;
        }
        match PeerMsg::from_bytes(payload.clone()) {
            Ok(PeerMsg::Piece { index, data }) => Some((index, data)),
            _ => None,
        }
    }

    /// Encodes the header of a `Piece` message carrying `len` data bytes.
    pub fn piece_header(index: u32, len: u32) -> [u8; Self::PIECE_HEADER_LEN] {
        let mut h = [0u8; Self::PIECE_HEADER_LEN];
        h[0] = 6;
        h[1..5].copy_from_slice(&index.to_be_bytes());
        h[5..9].copy_from_slice(&len.to_be_bytes());
        h
    }
}

impl Wire for PeerMsg {
    const MIN_LEN: usize = 1;
    fn encode(&self, w: &mut BytesMut) {
        use PeerMsg::*;
        match self {
            Open { ticket } => {
                w.put_u8(1);
                ticket.encode(w);
            }
            Have { pieces } => {
                w.put_u8(2);
                pieces.encode(w);
            }
            HavePiece { index } => {
                w.put_u8(3);
                w.put_u32(*index);
            }
            Request { index } => {
                w.put_u8(4);
                w.put_u32(*index);
            }
            Cancel { index } => {
                w.put_u8(5);
                w.put_u32(*index);
            }
            Piece { index, data } => {
                w.put_slice(&PeerMsg::piece_header(*index, data.len() as u32));
                w.put_slice(data);
            }
            Reject { index, reason } => {
                w.put_u8(7);
                put_option(w, index);
                reason.encode(w);
            }
            Fatal { reason } => {
                w.put_u8(8);
                reason.encode(w);
            }
        }
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        use PeerMsg::*;
        Ok(match tag(r, "peer message")? {
            1 => Open {
                ticket: Wire::decode(r)?,
            },
            2 => Have {
                pieces: Wire::decode(r)?,
            },
            3 => HavePiece {
                index: r.u32("piece index")?,
            },
            4 => Request {
                index: r.u32("piece index")?,
            },
            5 => Cancel {
                index: r.u32("piece index")?,
            },
            6 => Piece {
                index: r.u32("piece index")?,
                data: r.blob("piece data", PIECE_LEN_MAX as usize)?,
            },
            7 => Reject {
                index: r.option("piece index")?,
                reason: Wire::decode(r)?,
            },
            8 => Fatal {
                reason: Wire::decode(r)?,
            },
            t => return Err(unknown("peer message", t)),
        })
    }
}
