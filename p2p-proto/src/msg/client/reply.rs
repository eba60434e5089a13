//! Tracker → client, a request's success: [`Reply`], and the
//! [`TrackerStatus`] a `status` request answers with.

use bytes::{BufMut, BytesMut};
use std::net::SocketAddr;

use crate::codec::{DecodeError, Reader, Wire, put_list, put_option};
use crate::limits::{LIST_LEN_MAX, MEMBERS_PER_REPLY_MAX, PEERS_PER_REPLY_MAX};
use crate::msg::{tag, unknown};
use crate::types::*;

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
