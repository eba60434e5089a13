//! The canonical encoding of a whole [`TrackerState`]: what a snapshot holds,
//! what the digest hashes, and what a catching-up tracker receives.
//!
//! Layout (primitives as in `p2p_proto::codec`), format version 4:
//! ```text
//! u8 version
//! users:    u32 n, n × (name, string password_hash)
//! sessions: u32 n, n × (token, user, client, key, seeder_key, bool online,
//!                       option<addr>, u64 login_ms, u64 online_ms)
//! groups:   u32 n, n × (name, owner, u64 next_seq, members, pending, files)
//!   members, pending: u32 n, n × (user, u64 seq)
//!   files:            u32 n, n × (FileMeta, registered_by,
//!                                 u32 m, m × (user, PieceSet))
//! outcomes: u32 n, n × (client, key, u64 last_ms, u32 m, m × (request id, Outcome))
//! ```
//! Every map is written in key order, and decoding refuses keys out of
//! order, counts above the limits and states that break an invariant, so
//! `encode(decode(b)) == b` for every accepted `b` and a snapshot from a
//! peer can never build a state `apply` could not have built.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use p2p_proto::codec::{put_bool, put_option, put_string};
use p2p_proto::limits::PASSWORD_HASH_LEN_MAX;
use p2p_proto::{
    ClientId, DecodeError, FileMeta, GroupName, KeyId, Op, OpKind, Outcome, PieceSet, Reader,
    RequestId, SessionToken, TrackerError, UserName, Wire,
};

use super::apply::{hashes_in, registered_in};
use super::limits;
use super::password;
use super::state::{ClientOutcomes, Conflict, Group, Session, SharedFile, TrackerState, User};

/// Version of the state encoding (first byte of every snapshot). 3: sessions
/// and stored outcomes carry the client's key (issue 15). 4: a file names
/// who registered it, for the per-user quotas (issue 16).
pub(super) const STATE_FORMAT_VERSION: u8 = 4;

fn invalid(reason: &'static str) -> DecodeError {
    DecodeError::Invalid {
        field: "tracker state",
        reason,
    }
}

fn put_len(w: &mut BytesMut, n: usize) {
    w.put_u32(u32::try_from(n).expect("counts are bounded by the limits"));
}

impl TrackerState {
    /// The canonical encoding of the whole state.
    pub fn encode_snapshot(&self) -> Bytes {
        let mut w = BytesMut::new();
        w.put_u8(STATE_FORMAT_VERSION);
        put_len(&mut w, self.users.len());
        for (name, u) in &self.users {
            name.encode(&mut w);
            put_string(&mut w, &u.password_hash);
        }
        put_len(&mut w, self.sessions.len());
        for (token, s) in &self.sessions {
            token.encode(&mut w);
            encode_session(s, &mut w);
        }
        put_len(&mut w, self.groups.len());
        for (name, g) in &self.groups {
            name.encode(&mut w);
            encode_group(g, &mut w);
        }
        put_len(&mut w, self.outcomes.len());
        for ((client, key), c) in &self.outcomes {
            client.encode(&mut w);
            key.encode(&mut w);
            w.put_u64(c.last_ms);
            put_len(&mut w, c.by_id.len());
            for (id, o) in &c.by_id {
                id.encode(&mut w);
                o.encode(&mut w);
            }
        }
        put_len(&mut w, self.conflicts.len());
        for c in &self.conflicts {
            c.op.encode(&mut w);
            c.reason.encode(&mut w);
            w.put_u64(c.at_ms);
        }
        w.freeze()
    }

    /// Decodes [`TrackerState::encode_snapshot`]'s output. Refuses (never
    /// panics on) anything `encode_snapshot` could not have produced.
    pub fn decode_snapshot(b: Bytes) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        if r.u8("state format version")? != STATE_FORMAT_VERSION {
            return Err(invalid("unknown state format version"));
        }
        let mut st = TrackerState {
            users: sorted_map(&mut r, "users", limits::USERS_MAX, 5, decode_user)?,
            sessions: sorted_map(&mut r, "sessions", limits::USERS_MAX, 112, |r| {
                Ok((SessionToken::decode(r)?, decode_session(r)?))
            })?,
            groups: sorted_map(&mut r, "groups", limits::GROUPS_MAX, 26, |r| {
                Ok((GroupName::decode(r)?, decode_group(r)?))
            })?,
            outcomes: sorted_map(&mut r, "outcomes", limits::OUTCOME_CLIENTS_MAX, 60, |r| {
                let who = (ClientId::decode(r)?, KeyId::decode(r)?);
                Ok((who, decode_outcomes(r)?))
            })?,
            conflicts: {
                let n = r.count("conflicts", limits::CONFLICTS_MAX, Op::MIN_LEN + 9)?;
                let mut v = std::collections::VecDeque::with_capacity(n);
                for _ in 0..n {
                    let op = Op::decode(&mut r)?;
                    if matches!(op.kind, OpKind::RecordConflict { .. }) {
                        return Err(invalid("a conflict record in the conflict log"));
                    }
                    v.push_back(Conflict {
                        op,
                        reason: TrackerError::decode(&mut r)?,
                        at_ms: r.u64("conflict time")?,
                    });
                }
                v
            },
            ..TrackerState::default()
        };
        r.finish()?;
        st.rebuild_derived()?;
        st.violation().map_err(invalid)?;
        Ok(st)
    }

    /// Recomputes what is not encoded: the user -> session index, the
    /// piece-hash total, what each user registered and the user-name
    /// skeletons.
    fn rebuild_derived(&mut self) -> Result<(), DecodeError> {
        for user in self.users.keys() {
            self.user_skeletons
                .entry(super::names::skeleton(user.as_str()))
                .or_insert_with(|| user.clone());
        }
        for (token, s) in &self.sessions {
            if self.user_sessions.insert(s.user.clone(), *token).is_some() {
                return Err(invalid("two sessions for one user"));
            }
        }
        self.piece_hashes = self.groups.values().map(hashes_in).sum();
        self.registered = registered_in(self.groups.values());
        Ok(())
    }
}

fn encode_session(s: &Session, w: &mut BytesMut) {
    s.user.encode(w);
    s.client.encode(w);
    s.key.encode(w);
    s.seeder_key.encode(w);
    put_bool(w, s.online);
    put_option(w, &s.addr);
    w.put_u64(s.login_ms);
    w.put_u64(s.online_ms);
}

fn encode_group(g: &Group, w: &mut BytesMut) {
    g.owner.encode(w);
    w.put_u64(g.next_seq);
    for seqs in [&g.members, &g.pending] {
        put_len(w, seqs.len());
        for (user, seq) in seqs {
            user.encode(w);
            w.put_u64(*seq);
        }
    }
    put_len(w, g.files.len());
    for f in g.files.values() {
        f.meta.encode(w);
        f.registered_by.encode(w);
        put_len(w, f.sources.len());
        for (user, pieces) in &f.sources {
            user.encode(w);
            pieces.encode(w);
        }
    }
}

/// A `u32` count (checked against `max` and the bytes left), then that many
/// items whose keys must strictly increase.
fn sorted_map<K: Ord, V>(
    r: &mut Reader,
    field: &'static str,
    max: usize,
    item_min_len: usize,
    mut item: impl FnMut(&mut Reader) -> Result<(K, V), DecodeError>,
) -> Result<BTreeMap<K, V>, DecodeError> {
    let n = r.count(field, max, item_min_len)?;
    let mut m = BTreeMap::new();
    for _ in 0..n {
        let (k, v) = item(r)?;
        if m.last_key_value().is_some_and(|(last, _)| *last >= k) {
            return Err(invalid("keys are not in strictly increasing order"));
        }
        m.insert(k, v);
    }
    Ok(m)
}

fn decode_user(r: &mut Reader) -> Result<(UserName, User), DecodeError> {
    let name = UserName::decode(r)?;
    let password_hash = r.string("password hash", PASSWORD_HASH_LEN_MAX)?;
    password::check_phc(&password_hash).map_err(|_| invalid("unusable password hash"))?;
    Ok((name, User { password_hash }))
}

fn decode_session(r: &mut Reader) -> Result<Session, DecodeError> {
    Ok(Session {
        user: Wire::decode(r)?,
        client: Wire::decode(r)?,
        key: Wire::decode(r)?,
        seeder_key: Wire::decode(r)?,
        online: r.bool("online")?,
        addr: r.option("seeder address")?,
        login_ms: r.u64("login time")?,
        online_ms: r.u64("online time")?,
    })
}

fn decode_group(r: &mut Reader) -> Result<Group, DecodeError> {
    let owner = UserName::decode(r)?;
    let next_seq = r.u64("next sequence number")?;
    let members = decode_seqs(r, "members", limits::MEMBERS_PER_GROUP_MAX)?;
    let pending = decode_seqs(r, "pending", limits::PENDING_PER_GROUP_MAX)?;
    let files = sorted_map(
        r,
        "files",
        limits::FILES_PER_GROUP_MAX,
        FileMeta::MIN_LEN + UserName::MIN_LEN + 4,
        |r| {
            let f = decode_file(r)?;
            Ok((f.meta.name.clone(), f))
        },
    )?;
    Ok(Group {
        owner,
        members,
        pending,
        next_seq,
        files,
    })
}

fn decode_seqs(
    r: &mut Reader,
    field: &'static str,
    max: usize,
) -> Result<BTreeMap<UserName, u64>, DecodeError> {
    sorted_map(r, field, max, UserName::MIN_LEN + 8, |r| {
        Ok((UserName::decode(r)?, r.u64("sequence number")?))
    })
}

fn decode_file(r: &mut Reader) -> Result<SharedFile, DecodeError> {
    let meta = FileMeta::decode(r)?;
    let registered_by = UserName::decode(r)?;
    let sources = sorted_map(
        r,
        "sources",
        limits::SOURCES_PER_FILE_MAX,
        UserName::MIN_LEN + PieceSet::MIN_LEN,
        |r| Ok((UserName::decode(r)?, PieceSet::decode(r)?)),
    )?;
    Ok(SharedFile {
        meta,
        registered_by,
        sources,
    })
}

fn decode_outcomes(r: &mut Reader) -> Result<ClientOutcomes, DecodeError> {
    let last_ms = r.u64("last write time")?;
    let by_id = sorted_map(
        r,
        "client outcomes",
        limits::OUTCOMES_PER_CLIENT_MAX,
        RequestId::MIN_LEN + Outcome::MIN_LEN,
        |r| Ok((RequestId::decode(r)?, Outcome::decode(r)?)),
    )?;
    Ok(ClientOutcomes { last_ms, by_id })
}

#[cfg(test)]
mod tests;
