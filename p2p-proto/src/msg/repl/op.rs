//! The replicated op ([`Op`]: what changes, [`OpKind`], and the request
//! it answers, [`Origin`]) and its codec.
//!
//! An op carries every value `apply` needs (salted hashes, tokens, keys,
//! the primary's clock), so applying a log is deterministic everywhere.

use bytes::{BufMut, BytesMut};
use std::net::SocketAddr;

use crate::codec::{DecodeError, Reader, Wire, put_option, put_string};
use crate::limits::PASSWORD_HASH_LEN_MAX;
use crate::msg::client::TrackerError;
use crate::msg::{tag, unknown};
use crate::types::*;

/// The request an op answers: a retry of it gets the stored outcome.
/// `key` is the TLS key of the connection the request came on (the
/// tracker's, never the client's claim), so only the same client key can
/// read or pre-empt a stored outcome.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Origin {
    pub client: ClientId,
    pub key: KeyId,
    pub id: RequestId,
}

impl Wire for Origin {
    const MIN_LEN: usize = 16 + 32 + 8;
    fn encode(&self, w: &mut BytesMut) {
        self.client.encode(w);
        self.key.encode(w);
        self.id.encode(w);
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Origin {
            client: Wire::decode(r)?,
            key: Wire::decode(r)?,
            id: Wire::decode(r)?,
        })
    }
}

/// One replicated change.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Op {
    /// The primary's clock when it accepted the op (ms since the Unix epoch).
    pub at_ms: u64,
    pub origin: Option<Origin>,
    pub kind: OpKind,
}

impl Wire for Op {
    const MIN_LEN: usize = 8 + 1 + 1;
    fn encode(&self, w: &mut BytesMut) {
        w.put_u64(self.at_ms);
        put_option(w, &self.origin);
        self.kind.encode(w);
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Op {
            at_ms: r.u64("op time")?,
            origin: r.option("op origin")?,
            kind: Wire::decode(r)?,
        })
    }
}

/// What an op changes. Validation happened on the primary; `apply` only
/// re-checks what it must to stay total (a stale op is a no-op, not a panic).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum OpKind {
    /// A new epoch's first entry.
    Noop,
    CreateUser {
        user: UserName,
        /// An argon2id PHC string (salt and cost inside).
        password_hash: PasswordHash,
    },
    /// Opens a session, ending any other session of the same user. `key`
    /// is the TLS key the client logged in with: the session answers only
    /// to it.
    Login {
        user: UserName,
        token: SessionToken,
        seeder_key: SeederKey,
        client: ClientId,
        key: KeyId,
    },
    Logout {
        token: SessionToken,
    },
    /// Ends a session the client abandoned (no tracker contact for the grace
    /// period), withdrawing its seeding.
    ExpireSession {
        token: SessionToken,
    },
    /// A session's client came or went (seeding shown or hidden).
    SetOnline {
        token: SessionToken,
        online: bool,
    },
    RegisterSeeder {
        token: SessionToken,
        addr: SocketAddr,
    },
    CreateGroup {
        owner: UserName,
        group: GroupName,
    },
    RequestJoin {
        user: UserName,
        group: GroupName,
    },
    AcceptJoin {
        group: GroupName,
        user: UserName,
    },
    RejectJoin {
        group: GroupName,
        user: UserName,
    },
    LeaveGroup {
        user: UserName,
        group: GroupName,
    },
    ShareFile {
        user: UserName,
        group: GroupName,
        meta: FileMeta,
    },
    HavePieces {
        user: UserName,
        group: GroupName,
        file: FileName,
        pieces: PieceSet,
    },
    StopShare {
        user: UserName,
        group: GroupName,
        file: FileName,
    },
    /// A divergent client op that no longer applies after a partition
    /// healed, and why: kept in the replicated conflict log (the tracker
    /// console's `conflicts`). `op` is never itself a `RecordConflict` (the
    /// decoder refuses nesting, so decoding is never recursive).
    RecordConflict {
        op: Box<Op>,
        reason: TrackerError,
    },
}

impl Wire for OpKind {
    const MIN_LEN: usize = 1;
    fn encode(&self, w: &mut BytesMut) {
        use OpKind::*;
        match self {
            Noop => w.put_u8(1),
            CreateUser {
                user,
                password_hash,
            } => {
                w.put_u8(2);
                user.encode(w);
                put_string(w, &password_hash.0);
            }
            Login {
                user,
                token,
                seeder_key,
                client,
                key,
            } => {
                w.put_u8(3);
                user.encode(w);
                token.encode(w);
                seeder_key.encode(w);
                client.encode(w);
                key.encode(w);
            }
            Logout { token } => {
                w.put_u8(4);
                token.encode(w);
            }
            ExpireSession { token } => {
                w.put_u8(5);
                token.encode(w);
            }
            SetOnline { token, online } => {
                w.put_u8(6);
                token.encode(w);
                crate::codec::put_bool(w, *online);
            }
            RegisterSeeder { token, addr } => {
                w.put_u8(7);
                token.encode(w);
                addr.encode(w);
            }
            CreateGroup { owner, group } => {
                w.put_u8(8);
                owner.encode(w);
                group.encode(w);
            }
            RequestJoin { user, group } => {
                w.put_u8(9);
                user.encode(w);
                group.encode(w);
            }
            AcceptJoin { group, user } => {
                w.put_u8(10);
                group.encode(w);
                user.encode(w);
            }
            RejectJoin { group, user } => {
                w.put_u8(11);
                group.encode(w);
                user.encode(w);
            }
            LeaveGroup { user, group } => {
                w.put_u8(12);
                user.encode(w);
                group.encode(w);
            }
            ShareFile { user, group, meta } => {
                w.put_u8(13);
                user.encode(w);
                group.encode(w);
                meta.encode(w);
            }
            HavePieces {
                user,
                group,
                file,
                pieces,
            } => {
                w.put_u8(14);
                user.encode(w);
                group.encode(w);
                file.encode(w);
                pieces.encode(w);
            }
            StopShare { user, group, file } => {
                w.put_u8(15);
                user.encode(w);
                group.encode(w);
                file.encode(w);
            }
            RecordConflict { op, reason } => {
                w.put_u8(16);
                op.encode(w);
                reason.encode(w);
            }
        }
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        use OpKind::*;
        Ok(match tag(r, "op")? {
            1 => Noop,
            2 => CreateUser {
                user: Wire::decode(r)?,
                password_hash: PasswordHash(r.string("password hash", PASSWORD_HASH_LEN_MAX)?),
            },
            3 => Login {
                user: Wire::decode(r)?,
                token: Wire::decode(r)?,
                seeder_key: Wire::decode(r)?,
                client: Wire::decode(r)?,
                key: Wire::decode(r)?,
            },
            4 => Logout {
                token: Wire::decode(r)?,
            },
            5 => ExpireSession {
                token: Wire::decode(r)?,
            },
            6 => SetOnline {
                token: Wire::decode(r)?,
                online: r.bool("online")?,
            },
            7 => RegisterSeeder {
                token: Wire::decode(r)?,
                addr: Wire::decode(r)?,
            },
            8 => CreateGroup {
                owner: Wire::decode(r)?,
                group: Wire::decode(r)?,
            },
            9 => RequestJoin {
                user: Wire::decode(r)?,
                group: Wire::decode(r)?,
            },
            10 => AcceptJoin {
                group: Wire::decode(r)?,
                user: Wire::decode(r)?,
            },
            11 => RejectJoin {
                group: Wire::decode(r)?,
                user: Wire::decode(r)?,
            },
            12 => LeaveGroup {
                user: Wire::decode(r)?,
                group: Wire::decode(r)?,
            },
            13 => ShareFile {
                user: Wire::decode(r)?,
                group: Wire::decode(r)?,
                meta: Wire::decode(r)?,
            },
            14 => HavePieces {
                user: Wire::decode(r)?,
                group: Wire::decode(r)?,
                file: Wire::decode(r)?,
                pieces: Wire::decode(r)?,
            },
            15 => StopShare {
                user: Wire::decode(r)?,
                group: Wire::decode(r)?,
                file: Wire::decode(r)?,
            },
            16 => {
                // One level only: peek at the inner op's kind tag (after its
                // time and origin) before decoding it.
                let at_ms = r.u64("op time")?;
                let origin = r.option("op origin")?;
                if r.peek_u8("op")? == 16 {
                    return Err(DecodeError::Invalid {
                        field: "conflict record",
                        reason: "holds another conflict record",
                    });
                }
                let kind = Wire::decode(r)?;
                RecordConflict {
                    op: Box::new(Op {
                        at_ms,
                        origin,
                        kind,
                    }),
                    reason: Wire::decode(r)?,
                }
            }
            t => return Err(unknown("op", t)),
        })
    }
}
