//! Tracker → client, a request's refusal: [`TrackerError`], whose
//! `Display` is the text the user sees.

use bytes::{BufMut, BytesMut};

use crate::codec::{DecodeError, Reader, Wire};
use crate::msg::{Text, tag, unknown};
use crate::types::*;

/// Why a tracker refused a request. Each says what happened and what to do;
/// `Display` is the text the user sees after `error: `.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum TrackerError {
    #[error("user {user} already exists (pick another name, or login)")]
    UserExists { user: UserName },
    #[error("no user named {user} (create_user first)")]
    UnknownUser { user: UserName },
    /// A login with an unknown user or a wrong password: one answer, so
    /// an answer does not tell which user names exist.
    #[error("wrong user name or password (check both; create_user if you have no account)")]
    WrongUserOrPassword,
    #[error("not logged in (login first)")]
    NotLoggedIn,
    #[error("already logged in as {user} (logout first)")]
    AlreadyLoggedIn { user: UserName },
    #[error("session expired or ended elsewhere (login again)")]
    SessionUnknown,
    /// The session was opened by a client with another TLS key: a token
    /// is only good on the connection of the client that logged in.
    #[error("this session belongs to another client's key (login again from this client)")]
    SessionKeyMismatch,
    #[error("group {group} already exists (pick another name, or join_group)")]
    GroupExists { group: GroupName },
    #[error("no group named {group} (list_groups shows them)")]
    NoSuchGroup { group: GroupName },
    #[error("not a member of group {group} (ask the owner to accept your join request)")]
    NotMember { group: GroupName },
    #[error("only the owner of group {group} can do that")]
    NotOwner { group: GroupName },
    #[error("already a member of group {group}")]
    AlreadyMember { group: GroupName },
    #[error("a join request for group {group} is already pending (wait for the owner)")]
    AlreadyRequested { group: GroupName },
    #[error("no pending request from {user} in group {group} (list_requests shows them)")]
    NoSuchRequest { group: GroupName, user: UserName },
    #[error("no file named {file} in group {group} (list_files shows them)")]
    NoSuchFile { group: GroupName, file: FileName },
    #[error(
        "group {group} already has a different file named {file} (rename yours, or share the same content)"
    )]
    FileConflict { group: GroupName, file: FileName },
    #[error("you are not sharing {file} in group {group}")]
    NotSharing { group: GroupName, file: FileName },
    #[error("no seeder is online for {file} in group {group} (try again later)")]
    NoSeeders { group: GroupName, file: FileName },
    #[error("tracker is catching up with its peers (retry shortly)")]
    NotReady,
    #[error("limit reached: {what}")]
    LimitReached { what: Text },
    #[error("bad request: {reason}")]
    BadRequest { reason: Text },
    #[error(
        "the file hash of {file} does not match its size, piece size and piece hashes (hash it again with an up-to-date client)"
    )]
    FileHashMismatch { file: FileName },
    #[error("user name {user} looks like the existing user {existing} (pick a name that does not)")]
    UserTooSimilar { user: UserName, existing: UserName },
    #[error(
        "group name {group} looks like the existing group {existing} (pick a name that does not, or join_group {existing})"
    )]
    GroupTooSimilar {
        group: GroupName,
        existing: GroupName,
    },
    #[error("file name {file} looks like {existing}, already in that group (rename your file)")]
    FileTooSimilar { file: FileName, existing: FileName },
    /// Too many failed logins for this user name or from this address:
    /// refused without a password check until the backoff passes.
    #[error(
        "too many failed logins for this user name or from your address: retry in {retry_after_secs} s"
    )]
    LoginBackoff { retry_after_secs: u64 },
}

impl Wire for TrackerError {
    const MIN_LEN: usize = 1;
    fn encode(&self, w: &mut BytesMut) {
        use TrackerError::*;
        match self {
            UserExists { user } => {
                w.put_u8(1);
                user.encode(w);
            }
            UnknownUser { user } => {
                w.put_u8(2);
                user.encode(w);
            }
            WrongUserOrPassword => w.put_u8(3),
            NotLoggedIn => w.put_u8(4),
            AlreadyLoggedIn { user } => {
                w.put_u8(5);
                user.encode(w);
            }
            SessionUnknown => w.put_u8(6),
            GroupExists { group } => {
                w.put_u8(7);
                group.encode(w);
            }
            NoSuchGroup { group } => {
                w.put_u8(8);
                group.encode(w);
            }
            NotMember { group } => {
                w.put_u8(9);
                group.encode(w);
            }
            NotOwner { group } => {
                w.put_u8(10);
                group.encode(w);
            }
            AlreadyMember { group } => {
                w.put_u8(11);
                group.encode(w);
            }
            AlreadyRequested { group } => {
                w.put_u8(12);
                group.encode(w);
            }
            NoSuchRequest { group, user } => {
                w.put_u8(13);
                group.encode(w);
                user.encode(w);
            }
            NoSuchFile { group, file } => {
                w.put_u8(14);
                group.encode(w);
                file.encode(w);
            }
            FileConflict { group, file } => {
                w.put_u8(15);
                group.encode(w);
                file.encode(w);
            }
            NotSharing { group, file } => {
                w.put_u8(16);
                group.encode(w);
                file.encode(w);
            }
            NoSeeders { group, file } => {
                w.put_u8(17);
                group.encode(w);
                file.encode(w);
            }
            NotReady => w.put_u8(18),
            LimitReached { what } => {
                w.put_u8(19);
                what.encode(w);
            }
            BadRequest { reason } => {
                w.put_u8(20);
                reason.encode(w);
            }
            FileHashMismatch { file } => {
                w.put_u8(21);
                file.encode(w);
            }
            UserTooSimilar { user, existing } => {
                w.put_u8(22);
                user.encode(w);
                existing.encode(w);
            }
            GroupTooSimilar { group, existing } => {
                w.put_u8(23);
                group.encode(w);
                existing.encode(w);
            }
            FileTooSimilar { file, existing } => {
                w.put_u8(24);
                file.encode(w);
                existing.encode(w);
            }
            SessionKeyMismatch => w.put_u8(25),
            LoginBackoff { retry_after_secs } => {
                w.put_u8(26);
                w.put_u64(*retry_after_secs);
            }
        }
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        use TrackerError::*;
        Ok(match tag(r, "tracker error")? {
            1 => UserExists {
                user: Wire::decode(r)?,
            },
            2 => UnknownUser {
                user: Wire::decode(r)?,
            },
            3 => WrongUserOrPassword,
            4 => NotLoggedIn,
            5 => AlreadyLoggedIn {
                user: Wire::decode(r)?,
            },
            6 => SessionUnknown,
            7 => GroupExists {
                group: Wire::decode(r)?,
            },
            8 => NoSuchGroup {
                group: Wire::decode(r)?,
            },
            9 => NotMember {
                group: Wire::decode(r)?,
            },
            10 => NotOwner {
                group: Wire::decode(r)?,
            },
            11 => AlreadyMember {
                group: Wire::decode(r)?,
            },
            12 => AlreadyRequested {
                group: Wire::decode(r)?,
            },
            13 => NoSuchRequest {
                group: Wire::decode(r)?,
                user: Wire::decode(r)?,
            },
            14 => NoSuchFile {
                group: Wire::decode(r)?,
                file: Wire::decode(r)?,
            },
            15 => FileConflict {
                group: Wire::decode(r)?,
                file: Wire::decode(r)?,
            },
            16 => NotSharing {
                group: Wire::decode(r)?,
                file: Wire::decode(r)?,
            },
            17 => NoSeeders {
                group: Wire::decode(r)?,
                file: Wire::decode(r)?,
            },
            18 => NotReady,
            19 => LimitReached {
                what: Wire::decode(r)?,
            },
            20 => BadRequest {
                reason: Wire::decode(r)?,
            },
            21 => FileHashMismatch {
                file: Wire::decode(r)?,
            },
            22 => UserTooSimilar {
                user: Wire::decode(r)?,
                existing: Wire::decode(r)?,
            },
            23 => GroupTooSimilar {
                group: Wire::decode(r)?,
                existing: Wire::decode(r)?,
            },
            24 => FileTooSimilar {
                file: Wire::decode(r)?,
                existing: Wire::decode(r)?,
            },
            25 => SessionKeyMismatch,
            26 => LoginBackoff {
                retry_after_secs: r.u64("retry after")?,
            },
            t => return Err(unknown("tracker error", t)),
        })
    }
}
