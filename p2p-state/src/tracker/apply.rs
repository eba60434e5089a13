//! `apply`: the only code that changes the tracker state.
//!
//! Deterministic and total: the op carries every value (hash, token, key,
//! time), so applying the same log gives the same state everywhere. An op
//! that no longer fits (`check.rs`) changes nothing and answers the error.
//! The outcome of an op with an origin is stored for retries, and an origin
//! already stored is never applied again.

use std::collections::BTreeMap;

use p2p_proto::{
    ClientId, FileMeta, FileName, GroupName, KeyId, Op, OpKind, Origin, Outcome, PieceSet, Reply,
    SeederKey, SessionToken, UserName,
};

use super::limits::{CONFLICTS_MAX, OUTCOME_CLIENTS_MAX, OUTCOMES_PER_CLIENT_MAX};
use super::state::{Conflict, Group, Registered, Session, SharedFile, TrackerState, User};

impl TrackerState {
    /// Applies `op` and returns its outcome (stored under `op.origin`). An op
    /// whose origin already has a stored outcome changes nothing and returns
    /// that outcome.
    pub fn apply(&mut self, op: &Op) -> Outcome {
        if let Some(stored) = op.origin.and_then(|o| self.stored_outcome(&o).cloned()) {
            return stored;
        }
        let outcome = match self.check(&op.kind) {
            Ok(()) => Ok(self.mutate(op.at_ms, &op.kind)),
            Err(e) => Err(e),
        };
        if let Some(origin) = op.origin {
            self.record_outcome(origin, op.at_ms, outcome.clone());
        }
        outcome
    }

    /// Carries out a checked op.
    fn mutate(&mut self, at_ms: u64, kind: &OpKind) -> Reply {
        use OpKind::*;
        match kind {
            Noop => {}
            CreateUser {
                user,
                password_hash,
            } => {
                let password_hash = password_hash.0.clone();
                self.users.insert(user.clone(), User { password_hash });
                self.user_skeletons
                    .entry(super::names::skeleton(user.as_str()))
                    .or_insert_with(|| user.clone());
            }
            Login {
                user,
                token,
                seeder_key,
                client,
                key,
            } => return self.login(at_ms, user, *token, *seeder_key, (*client, *key)),
            Logout { token } | ExpireSession { token } => self.end_session(token),
            SetOnline { token, online } => {
                let s = self.sessions.get_mut(token).expect("checked");
                if s.online != *online {
                    s.online = *online;
                    s.online_ms = at_ms;
                }
            }
            RegisterSeeder { token, addr } => {
                self.sessions.get_mut(token).expect("checked").addr = Some(*addr);
                return Reply::SeederAt { addr: *addr };
            }
            RecordConflict { op, reason } => self.record_conflict(at_ms, op, reason),
            _ => return self.mutate_group(kind),
        }
        Reply::Done
    }

    /// Carries out a checked op on a group, its members or its files.
    fn mutate_group(&mut self, kind: &OpKind) -> Reply {
        use OpKind::*;
        match kind {
            CreateGroup { owner, group } => {
                self.groups.insert(group.clone(), Group::new(owner.clone()));
            }
            RequestJoin { user, group } => {
                let g = self.group_mut(group);
                g.pending.insert(user.clone(), g.next_seq);
                g.next_seq += 1;
            }
            AcceptJoin { group, user } => {
                let g = self.group_mut(group);
                g.pending.remove(user);
                g.members.insert(user.clone(), g.next_seq);
                g.next_seq += 1;
            }
            RejectJoin { group, user } => {
                self.group_mut(group).pending.remove(user);
            }
            LeaveGroup { user, group } => return self.leave(user, group),
            ShareFile { user, group, meta } => return self.share(user, group, meta),
            HavePieces {
                user,
                group,
                file,
                pieces,
            } => self.add_pieces(user, group, file, pieces),
            StopShare { user, group, file } => {
                let f = self.group_mut(group).files.get_mut(file).expect("checked");
                f.sources.remove(user);
            }
            _ => unreachable!("mutate handles user and session ops"),
        }
        Reply::Done
    }

    fn group_mut(&mut self, group: &GroupName) -> &mut Group {
        self.groups.get_mut(group).expect("checked: group exists")
    }

    /// Opens a session, ending the user's previous one (takeover).
    fn login(
        &mut self,
        at_ms: u64,
        user: &UserName,
        token: SessionToken,
        seeder_key: SeederKey,
        (client, key): (ClientId, KeyId),
    ) -> Reply {
        if let Some(old) = self.user_sessions.get(user).copied() {
            self.end_session(&old);
        }
        self.withdraw_sources(user);
        let session = Session {
            user: user.clone(),
            client,
            key,
            seeder_key,
            online: true,
            addr: None,
            login_ms: at_ms,
            online_ms: at_ms,
        };
        self.sessions.insert(token, session);
        self.user_sessions.insert(user.clone(), token);
        Reply::LoggedIn {
            user: user.clone(),
            token,
            seeder_key,
        }
    }

    /// A new session starts with no sources: what the user's previous
    /// client held says nothing about the client now logging in (it may
    /// have an empty data folder). The client re-announces its shares and
    /// partial downloads right after its login.
    fn withdraw_sources(&mut self, user: &UserName) {
        for g in self.groups.values_mut() {
            if !g.members.contains_key(user) {
                continue;
            }
            for f in g.files.values_mut() {
                f.sources.remove(user);
            }
        }
    }

    fn end_session(&mut self, token: &SessionToken) {
        if let Some(s) = self.sessions.remove(token) {
            let removed = self.user_sessions.remove(&s.user);
            debug_assert_eq!(removed, Some(*token));
        }
    }

    /// A member leaves (and stops sourcing the group's files), or a pending
    /// requester cancels.
    fn leave(&mut self, user: &UserName, group: &GroupName) -> Reply {
        let g = self.group_mut(group);
        if g.pending.remove(user).is_some() {
            return Reply::Done;
        }
        g.members.remove(user);
        for f in g.files.values_mut() {
            f.sources.remove(user);
        }
        if g.owner != *user {
            return Reply::Left {
                new_owner: None,
                deleted: false,
            };
        }
        match g.successor(user).cloned() {
            Some(next) => {
                g.owner = next.clone();
                Reply::Left {
                    new_owner: Some(next),
                    deleted: false,
                }
            }
            None => {
                let g = self.groups.remove(group).expect("checked");
                self.piece_hashes -= hashes_in(&g);
                for f in g.files.values() {
                    self.unregister(f);
                }
                Reply::Left {
                    new_owner: None,
                    deleted: true,
                }
            }
        }
    }

    fn share(&mut self, user: &UserName, group: &GroupName, meta: &FileMeta) -> Reply {
        let full = PieceSet::full(meta.piece_count());
        let g = self.group_mut(group);
        if let Some(f) = g.files.get_mut(&meta.name) {
            f.sources.insert(user.clone(), full);
            return Reply::Shared { new_file: false };
        }
        let file = SharedFile {
            meta: meta.clone(),
            registered_by: user.clone(),
            sources: BTreeMap::from([(user.clone(), full)]),
        };
        g.files.insert(meta.name.clone(), file);
        let hashes = meta.piece_hashes.len() as u64;
        self.piece_hashes += hashes;
        let r = self.registered.entry(user.clone()).or_default();
        r.files += 1;
        r.piece_hashes += hashes;
        Reply::Shared { new_file: true }
    }

    /// Takes a deleted file off its registrant's quotas.
    fn unregister(&mut self, f: &SharedFile) {
        let r = self
            .registered
            .get_mut(&f.registered_by)
            .expect("a file counts against its registrant");
        r.files -= 1;
        r.piece_hashes -= f.meta.piece_hashes.len() as u64;
        if r.files == 0 {
            self.registered.remove(&f.registered_by);
        }
    }

    fn add_pieces(&mut self, user: &UserName, group: &GroupName, file: &FileName, p: &PieceSet) {
        let f = self.group_mut(group).files.get_mut(file).expect("checked");
        f.sources
            .entry(user.clone())
            .or_insert_with(|| PieceSet::empty(p.len()))
            .union_with(p);
    }

    /// Adds to the conflict log: once per request (a second record of the
    /// same request, re-submitted by two trackers, changes nothing).
    fn record_conflict(&mut self, at_ms: u64, op: &Op, reason: &p2p_proto::TrackerError) {
        if op.origin.is_some() && self.conflicts.iter().any(|c| c.op.origin == op.origin) {
            return;
        }
        if self.conflicts.len() >= CONFLICTS_MAX {
            self.conflicts.pop_front();
        }
        self.conflicts.push_back(Conflict {
            op: op.clone(),
            reason: reason.clone(),
            at_ms,
        });
    }

    /// Stores `outcome` under `origin`, keeping the bounds of `limits.rs`.
    fn record_outcome(&mut self, origin: Origin, at_ms: u64, outcome: Outcome) {
        let who = (origin.client, origin.key);
        if !self.outcomes.contains_key(&who) && self.outcomes.len() >= OUTCOME_CLIENTS_MAX {
            self.forget_least_recent_client();
        }
        let c = self.outcomes.entry(who).or_default();
        c.last_ms = c.last_ms.max(at_ms);
        c.by_id.insert(origin.id, outcome);
        while c.by_id.len() > OUTCOMES_PER_CLIENT_MAX {
            c.by_id.pop_first();
        }
    }

    fn forget_least_recent_client(&mut self) {
        let oldest = self
            .outcomes
            .iter()
            .min_by_key(|(id, c)| (c.last_ms, **id))
            .map(|(id, _)| *id);
        if let Some(id) = oldest {
            self.outcomes.remove(&id);
        }
    }
}

impl Group {
    /// A new group: `owner` is its only member.
    pub(super) fn new(owner: UserName) -> Self {
        Group {
            members: BTreeMap::from([(owner.clone(), 0)]),
            owner,
            pending: BTreeMap::new(),
            next_seq: 1,
            files: BTreeMap::new(),
        }
    }
}

/// What the files of every group hold, by registrant (no zero entries).
pub(super) fn registered_in<'a>(
    groups: impl Iterator<Item = &'a Group>,
) -> BTreeMap<UserName, Registered> {
    let mut m = BTreeMap::<UserName, Registered>::new();
    for f in groups.flat_map(|g| g.files.values()) {
        let r = m.entry(f.registered_by.clone()).or_default();
        r.files += 1;
        r.piece_hashes += f.meta.piece_hashes.len() as u64;
    }
    m
}

/// Piece hashes held by the files of `g`.
pub(super) fn hashes_in(g: &Group) -> u64 {
    g.files
        .values()
        .map(|f| f.meta.piece_hashes.len() as u64)
        .sum()
}
