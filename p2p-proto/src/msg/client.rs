//! Client ↔ tracker: [`ClientRequest`] up, [`FromTracker`] down.
//!
//! Every request carries the client's random [`ClientId`] and a
//! [`RequestId`]; together they name the request across retries and
//! trackers, so a retried write is answered from the tracker's record and
//! never applied twice. Requests made while logged in carry the session token.

use bytes::{BufMut, BytesMut};
use std::net::SocketAddr;

use super::{Text, tag, unknown};
use crate::codec::{DecodeError, Reader, Wire, put_list, put_option};
use crate::limits::{LIST_LEN_MAX, MEMBERS_PER_REPLY_MAX, PEERS_PER_REPLY_MAX};
use crate::types::*;

/// One request from a client.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ClientRequest {
    pub client: ClientId,
    pub id: RequestId,
    pub session: Option<SessionToken>,
    pub req: Request,
}

impl Wire for ClientRequest {
    const MIN_LEN: usize = 16 + 8 + 1 + 1;
    fn encode(&self, w: &mut BytesMut) {
        self.client.encode(w);
        self.id.encode(w);
        put_option(w, &self.session);
        self.req.encode(w);
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(ClientRequest {
            client: ClientId::decode(r)?,
            id: RequestId::decode(r)?,
            session: r.option("session")?,
            req: Request::decode(r)?,
        })
    }
}

/// What a user (or the client on its behalf) asks of a tracker.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Request {
    CreateUser {
        user: UserName,
        password: Password,
    },
    Login {
        user: UserName,
        password: Password,
    },
    /// Re-attach to an existing session after failover or reconnect.
    Resume,
    Logout,
    CreateGroup {
        group: GroupName,
    },
    JoinGroup {
        group: GroupName,
    },
    LeaveGroup {
        group: GroupName,
    },
    ListGroups,
    ListRequests {
        group: GroupName,
    },
    AcceptRequest {
        group: GroupName,
        user: UserName,
    },
    RejectRequest {
        group: GroupName,
        user: UserName,
    },
    /// Share a file: register its metadata (or become another seeder of it).
    UploadFile {
        group: GroupName,
        meta: FileMeta,
    },
    ListFiles {
        group: GroupName,
    },
    /// The metadata needed to fetch and verify a file.
    GetFile {
        group: GroupName,
        file: FileName,
    },
    /// Current sources of a file, each with a ticket for the asking user.
    GetPeers {
        group: GroupName,
        file: FileName,
    },
    StopShare {
        group: GroupName,
        file: FileName,
    },
    /// A downloader now holds these pieces and can serve them.
    HavePieces {
        group: GroupName,
        file: FileName,
        pieces: PieceSet,
    },
    /// Where this client's seeder listens.
    RegisterSeeder {
        addr: SocketAddr,
    },
    Ping,
    /// Replication status and state digest (for operators and tests).
    Status,
    /// The members of a group, for its members only (owner included).
    ListMembers {
        group: GroupName,
    },
}

impl Wire for Request {
    const MIN_LEN: usize = 1;
    fn encode(&self, w: &mut BytesMut) {
        use Request::*;
        match self {
            CreateUser { user, password } => {
                w.put_u8(1);
                user.encode(w);
                password.encode(w);
            }
            Login { user, password } => {
                w.put_u8(2);
                user.encode(w);
                password.encode(w);
            }
            Resume => w.put_u8(3),
            Logout => w.put_u8(4),
            CreateGroup { group } => {
                w.put_u8(5);
                group.encode(w);
            }
            JoinGroup { group } => {
                w.put_u8(6);
                group.encode(w);
            }
            LeaveGroup { group } => {
                w.put_u8(7);
                group.encode(w);
            }
            ListGroups => w.put_u8(8),
            ListRequests { group } => {
                w.put_u8(9);
                group.encode(w);
            }
            AcceptRequest { group, user } => {
                w.put_u8(10);
                group.encode(w);
                user.encode(w);
            }
            RejectRequest { group, user } => {
                w.put_u8(11);
                group.encode(w);
                user.encode(w);
            }
            UploadFile { group, meta } => {
                w.put_u8(12);
                group.encode(w);
                meta.encode(w);
            }
            ListFiles { group } => {
                w.put_u8(13);
                group.encode(w);
            }
            GetFile { group, file } => {
                w.put_u8(14);
                group.encode(w);
                file.encode(w);
            }
            GetPeers { group, file } => {
                w.put_u8(15);
                group.encode(w);
                file.encode(w);
            }
            StopShare { group, file } => {
                w.put_u8(16);
                group.encode(w);
                file.encode(w);
            }
            HavePieces {
                group,
                file,
                pieces,
            } => {
                w.put_u8(17);
                group.encode(w);
                file.encode(w);
                pieces.encode(w);
            }
            RegisterSeeder { addr } => {
                w.put_u8(18);
                addr.encode(w);
            }
            Ping => w.put_u8(19),
            Status => w.put_u8(20),
            ListMembers { group } => {
                w.put_u8(21);
                group.encode(w);
            }
        }
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        use Request::*;
        Ok(match tag(r, "request")? {
            1 => CreateUser {
                user: Wire::decode(r)?,
                password: Wire::decode(r)?,
            },
            2 => Login {
                user: Wire::decode(r)?,
                password: Wire::decode(r)?,
            },
            3 => Resume,
            4 => Logout,
            5 => CreateGroup {
                group: Wire::decode(r)?,
            },
            6 => JoinGroup {
                group: Wire::decode(r)?,
            },
            7 => LeaveGroup {
                group: Wire::decode(r)?,
            },
            8 => ListGroups,
            9 => ListRequests {
                group: Wire::decode(r)?,
            },
            10 => AcceptRequest {
                group: Wire::decode(r)?,
                user: Wire::decode(r)?,
            },
            11 => RejectRequest {
                group: Wire::decode(r)?,
                user: Wire::decode(r)?,
            },
            12 => UploadFile {
                group: Wire::decode(r)?,
                meta: Wire::decode(r)?,
            },
            13 => ListFiles {
                group: Wire::decode(r)?,
            },
            14 => GetFile {
                group: Wire::decode(r)?,
                file: Wire::decode(r)?,
            },
            15 => GetPeers {
                group: Wire::decode(r)?,
                file: Wire::decode(r)?,
            },
            16 => StopShare {
                group: Wire::decode(r)?,
                file: Wire::decode(r)?,
            },
            17 => HavePieces {
                group: Wire::decode(r)?,
                file: Wire::decode(r)?,
                pieces: Wire::decode(r)?,
            },
            18 => RegisterSeeder {
                addr: Wire::decode(r)?,
            },
            19 => Ping,
            20 => Status,
            21 => ListMembers {
                group: Wire::decode(r)?,
            },
            t => return Err(unknown("request", t)),
        })
    }
}

impl Request {
    /// True for requests that change replicated state (sent to the primary).
    pub fn is_write(&self) -> bool {
        use Request::*;
        !matches!(
            self,
            ListGroups
                | ListRequests { .. }
                | ListFiles { .. }
                | ListMembers { .. }
                | GetFile { .. }
                | GetPeers { .. }
                | Ping
                | Status
                | Resume
        )
    }
}

/// A tracker's replication status, for operators and tests.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TrackerStatus {
    pub id: TrackerId,
    pub epoch: u64,
    pub primary: Option<TrackerId>,
    pub last: LogPos,
    pub applied: u64,
    pub digest: Sha1Hash,
    pub in_sync: bool,
}

impl Wire for TrackerStatus {
    const MIN_LEN: usize = 2 + 8 + 1 + 16 + 8 + 20 + 1;
    fn encode(&self, w: &mut BytesMut) {
        self.id.encode(w);
        w.put_u64(self.epoch);
        put_option(w, &self.primary);
        self.last.encode(w);
        w.put_u64(self.applied);
        self.digest.encode(w);
        crate::codec::put_bool(w, self.in_sync);
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(TrackerStatus {
            id: Wire::decode(r)?,
            epoch: r.u64("epoch")?,
            primary: r.option("primary")?,
            last: Wire::decode(r)?,
            applied: r.u64("applied")?,
            digest: Wire::decode(r)?,
            in_sync: r.bool("in sync")?,
        })
    }
}

/// A successful answer.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Reply {
    /// The command took effect (or, for a retry, had already).
    Done,
    LoggedIn {
        user: UserName,
        token: SessionToken,
        seeder_key: SeederKey,
    },
    Resumed {
        user: UserName,
    },
    Groups(Vec<GroupSummary>),
    Requests(Vec<UserName>),
    Files(Vec<FileSummary>),
    File(FileMeta),
    Peers(Vec<PeerInfo>),
    Pong,
    Status(TrackerStatus),
    /// `leave_group`: ownership passed on, or the group was deleted.
    Left {
        new_owner: Option<UserName>,
        deleted: bool,
    },
    /// `upload_file`: a new file, or another seeder for a known one.
    Shared {
        new_file: bool,
    },
    /// `RegisterSeeder`: the address the tracker recorded, which peers
    /// will dial (the IP it sees the client connect from, the stated port).
    SeederAt {
        addr: SocketAddr,
    },
    /// `list_members`: a group's members in name order, owner included
    /// (at most `MEMBERS_PER_REPLY_MAX`, the tracker's member limit).
    Members(Vec<UserName>),
}

impl Wire for Reply {
    const MIN_LEN: usize = 1;
    fn encode(&self, w: &mut BytesMut) {
        use Reply::*;
        match self {
            Done => w.put_u8(1),
            LoggedIn {
                user,
                token,
                seeder_key,
            } => {
                w.put_u8(2);
                user.encode(w);
                token.encode(w);
                seeder_key.encode(w);
            }
            Resumed { user } => {
                w.put_u8(3);
                user.encode(w);
            }
            Groups(v) => {
                w.put_u8(4);
                put_list(w, v);
            }
            Requests(v) => {
                w.put_u8(5);
                put_list(w, v);
            }
            Files(v) => {
                w.put_u8(6);
                put_list(w, v);
            }
            File(m) => {
                w.put_u8(7);
                m.encode(w);
            }
            Peers(v) => {
                w.put_u8(8);
                put_list(w, v);
            }
            Pong => w.put_u8(9),
            Status(s) => {
                w.put_u8(10);
                s.encode(w);
            }
            Left { new_owner, deleted } => {
                w.put_u8(11);
                put_option(w, new_owner);
                crate::codec::put_bool(w, *deleted);
            }
            Shared { new_file } => {
                w.put_u8(12);
                crate::codec::put_bool(w, *new_file);
            }
            SeederAt { addr } => {
                w.put_u8(13);
                addr.encode(w);
            }
            Members(v) => {
                w.put_u8(14);
                put_list(w, v);
            }
        }
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        use Reply::*;
        Ok(match tag(r, "reply")? {
            1 => Done,
            2 => LoggedIn {
                user: Wire::decode(r)?,
                token: Wire::decode(r)?,
                seeder_key: Wire::decode(r)?,
            },
            3 => Resumed {
                user: Wire::decode(r)?,
            },
            4 => Groups(r.list("groups", LIST_LEN_MAX)?),
            5 => Requests(r.list("requests", LIST_LEN_MAX)?),
            6 => Files(r.list("files", LIST_LEN_MAX)?),
            7 => File(Wire::decode(r)?),
            8 => Peers(r.list("peers", PEERS_PER_REPLY_MAX)?),
            9 => Pong,
            10 => Status(Wire::decode(r)?),
            11 => Left {
                new_owner: r.option("new owner")?,
                deleted: r.bool("deleted")?,
            },
            12 => Shared {
                new_file: r.bool("new file")?,
            },
            13 => SeederAt {
                addr: Wire::decode(r)?,
            },
            14 => Members(r.list("members", MEMBERS_PER_REPLY_MAX)?),
            t => return Err(unknown("reply", t)),
        })
    }
}

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
