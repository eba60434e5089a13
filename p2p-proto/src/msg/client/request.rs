//! Client → tracker: [`ClientRequest`], the envelope every request travels
//! in (client id, request id, session token), and [`Request`], what is asked.

use bytes::{BufMut, BytesMut};
use std::net::SocketAddr;

use crate::codec::{DecodeError, Reader, Wire, put_option};
use crate::msg::{tag, unknown};
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
