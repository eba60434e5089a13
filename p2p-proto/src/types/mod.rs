//! Value types shared by the messages: validated names, ids, hashes, piece
//! sets, file metadata and tickets. Each lives in its own file; this module
//! re-exports them all, so users write `p2p_proto::types::UserName` (or
//! `p2p_proto::UserName`) and never the file.
//!
//! - `names.rs`: the name rule and [`UserName`], [`GroupName`], [`FileName`];
//! - `password.rs`: [`Password`] and [`PasswordHash`];
//! - `ids.rs`: fixed-size ids and numbers ([`Sha1Hash`], [`KeyId`] and its
//!   fingerprint, [`SessionToken`], [`RequestId`], [`LogPos`], ...);
//! - `pieces.rs`: [`PieceSet`];
//! - `file_meta.rs`: [`FileMeta`];
//! - `ticket.rs`: [`Ticket`] and [`PeerInfo`];
//! - `summary.rs`: the listing lines [`GroupSummary`] and [`FileSummary`].

mod file_meta;
mod ids;
mod names;
mod password;
mod pieces;
mod summary;
mod ticket;

pub use file_meta::FileMeta;
pub use ids::{
    ClientId, FingerprintError, KeyId, LogPos, Mac, RequestId, SeederKey, SessionToken, Sha1Hash,
    TrackerId,
};
pub use names::{
    FileName, GroupName, NameError, NameKind, UserName, normalize_name, validate_name,
};
pub use password::{Password, PasswordHash};
pub use pieces::PieceSet;
pub use summary::{FileSummary, GroupSummary};
pub use ticket::{PeerInfo, Ticket};
