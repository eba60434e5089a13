//! Peer ↔ peer: a downloader opens a connection to a seeder for one file,
//! shows its ticket, learns which pieces the seeder has, and asks for whole
//! pieces, several at a time. Either side may announce new pieces.

use bytes::{BufMut, Bytes, BytesMut};

use super::{Text, tag, unknown};
use crate::codec::{DecodeError, Reader, Wire, put_option};
use crate::frame::frame_header;
use crate::limits::{FRAME_HEADER_LEN, PIECE_LEN_MAX};
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

/// The first byte of each [`RejectReason`] on the wire, shared by its
/// encoder and decoder; like [`Tag`], numbered from 1 in declaration
/// order (append only; `msg/tests.rs` pins them).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
enum ReasonTag {
    NoTicket = 1,
    BadTicket,
    Expired,
    WrongParty,
    UnknownFile,
    NoSuchPiece,
    Busy,
    WrongKey,
}

impl ReasonTag {
    const ALL: [ReasonTag; 8] = [
        ReasonTag::NoTicket,
        ReasonTag::BadTicket,
        ReasonTag::Expired,
        ReasonTag::WrongParty,
        ReasonTag::UnknownFile,
        ReasonTag::NoSuchPiece,
        ReasonTag::Busy,
        ReasonTag::WrongKey,
    ];

    fn of(byte: u8) -> Option<ReasonTag> {
        ReasonTag::ALL.into_iter().find(|t| *t as u8 == byte)
    }
}

impl Wire for RejectReason {
    const MIN_LEN: usize = 1;
    fn encode(&self, w: &mut BytesMut) {
        use RejectReason::*;
        let t = match self {
            NoTicket => ReasonTag::NoTicket,
            BadTicket => ReasonTag::BadTicket,
            Expired => ReasonTag::Expired,
            WrongParty => ReasonTag::WrongParty,
            UnknownFile => ReasonTag::UnknownFile,
            NoSuchPiece { .. } => ReasonTag::NoSuchPiece,
            Busy => ReasonTag::Busy,
            WrongKey => ReasonTag::WrongKey,
        };
        w.put_u8(t as u8);
        if let NoSuchPiece { index } = self {
            w.put_u32(*index);
        }
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        use RejectReason::*;
        let t = tag(r, "reject reason")?;
        let Some(t) = ReasonTag::of(t) else {
            return Err(unknown("reject reason", t));
        };
        Ok(match t {
            ReasonTag::NoTicket => NoTicket,
            ReasonTag::BadTicket => BadTicket,
            ReasonTag::Expired => Expired,
            ReasonTag::WrongParty => WrongParty,
            ReasonTag::UnknownFile => UnknownFile,
            ReasonTag::NoSuchPiece => NoSuchPiece {
                index: r.u32("piece index")?,
            },
            ReasonTag::Busy => Busy,
            ReasonTag::WrongKey => WrongKey,
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

/// The first byte of each [`PeerMsg`] on the wire: the one table the
/// encoder, the decoder and the piece frame's header
/// ([`PeerMsg::piece_frame_head`]) read. Tags follow the declaration
/// order from 1; never reorder or remove a variant (that would change the
/// wire format; `msg/tests.rs` pins every tag's byte), only append.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
enum Tag {
    Open = 1,
    Have,
    HavePiece,
    Request,
    Cancel,
    Piece,
    Reject,
    Fatal,
}

impl Tag {
    const ALL: [Tag; 8] = [
        Tag::Open,
        Tag::Have,
        Tag::HavePiece,
        Tag::Request,
        Tag::Cancel,
        Tag::Piece,
        Tag::Reject,
        Tag::Fatal,
    ];

    fn of(byte: u8) -> Option<Tag> {
        Tag::ALL.into_iter().find(|t| *t as u8 == byte)
    }
}

/// Writes the start of a `Piece` message carrying `len` data bytes (its
/// tag, index and data length), into whatever buffer: the encoder's, or
/// the fixed array of [`PeerMsg::piece_frame_head`].
fn put_piece_head(w: &mut impl BufMut, index: u32, len: u32) {
    w.put_u8(Tag::Piece as u8);
    w.put_u32(index);
    w.put_u32(len);
}

impl PeerMsg {
    /// Bytes of a `Piece` message before its data (tag, index, data
    /// length).
    pub const PIECE_HEADER_LEN: usize = 1 + 4 + 4;
    /// Bytes of a `Piece` frame before its data: the frame's length
    /// prefix, then [`PeerMsg::PIECE_HEADER_LEN`].
    pub const PIECE_FRAME_HEAD_LEN: usize = FRAME_HEADER_LEN + Self::PIECE_HEADER_LEN;

    /// If `payload` is a well-formed `Piece` message, its index and data
    /// (zero-copy). Drivers use it to hash piece data off the machine's
    /// thread before handing it over.
    pub fn split_piece(payload: &Bytes) -> Option<(u32, Bytes)> {
        if payload.first() != Some(&(Tag::Piece as u8)) {
            return None;
        }
        match PeerMsg::from_bytes(payload.clone()) {
            Ok(PeerMsg::Piece { index, data }) => Some((index, data)),
            _ => None,
        }
    }

    /// The bytes of a whole `Piece { index, data }` frame that come before
    /// its `len` data bytes: what [`crate::encode_msg`] writes for that
    /// message, up to the data, built by the same encoder. Drivers send it
    /// followed by the data from its own buffer, or from a file, so piece
    /// data is never copied into a frame.
    pub fn piece_frame_head(index: u32, len: u32) -> [u8; Self::PIECE_FRAME_HEAD_LEN] {
        let mut head = [0u8; Self::PIECE_FRAME_HEAD_LEN];
        let mut w = &mut head[..];
        w.put_slice(&frame_header(Self::PIECE_HEADER_LEN + len as usize));
        put_piece_head(&mut w, index, len);
        debug_assert!(w.is_empty(), "the head is filled");
        head
    }
}

impl Wire for PeerMsg {
    const MIN_LEN: usize = 1;
    fn encode(&self, w: &mut BytesMut) {
        use PeerMsg::*;
        match self {
            Open { ticket } => {
                w.put_u8(Tag::Open as u8);
                ticket.encode(w);
            }
            Have { pieces } => {
                w.put_u8(Tag::Have as u8);
                pieces.encode(w);
            }
            HavePiece { index } => {
                w.put_u8(Tag::HavePiece as u8);
                w.put_u32(*index);
            }
            Request { index } => {
                w.put_u8(Tag::Request as u8);
                w.put_u32(*index);
            }
            Cancel { index } => {
                w.put_u8(Tag::Cancel as u8);
                w.put_u32(*index);
            }
            Piece { index, data } => {
                put_piece_head(w, *index, data.len() as u32);
                w.put_slice(data);
            }
            Reject { index, reason } => {
                w.put_u8(Tag::Reject as u8);
                put_option(w, index);
                reason.encode(w);
            }
            Fatal { reason } => {
                w.put_u8(Tag::Fatal as u8);
                reason.encode(w);
            }
        }
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        use PeerMsg::*;
        let t = tag(r, "peer message")?;
        let Some(t) = Tag::of(t) else {
            return Err(unknown("peer message", t));
        };
        Ok(match t {
            Tag::Open => Open {
                ticket: Wire::decode(r)?,
            },
            Tag::Have => Have {
                pieces: Wire::decode(r)?,
            },
            Tag::HavePiece => HavePiece {
                index: r.u32("piece index")?,
            },
            Tag::Request => Request {
                index: r.u32("piece index")?,
            },
            Tag::Cancel => Cancel {
                index: r.u32("piece index")?,
            },
            Tag::Piece => Piece {
                index: r.u32("piece index")?,
                data: r.blob("piece data", PIECE_LEN_MAX as usize)?,
            },
            Tag::Reject => Reject {
                index: r.option("piece index")?,
                reason: Wire::decode(r)?,
            },
            Tag::Fatal => Fatal {
                reason: Wire::decode(r)?,
            },
        })
    }
}
