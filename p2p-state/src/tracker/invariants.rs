//! What must always hold of a [`TrackerState`]. `check_invariants` asserts
//! it (tests, the simulator, debug builds); `decode_snapshot` refuses a state
//! that breaks it. Each rule states what must hold and what must not:
//! - every session's user exists, and the user -> session index has exactly
//!   the sessions (at most one per user);
//! - every group has its owner among its members; no pending requester is a
//!   member; every member and requester is a registered user; join sequence
//!   numbers are distinct and below `next_seq`;
//! - every file is stored under its own name with valid metadata; every
//!   source is a current member and holds a piece set of the file's length,
//!   not empty unless the file has no pieces (an empty file);
//! - the piece-hash total and the per-registrant index match the files;
//!   every file's registrant is a user within the per-user file and
//!   piece-hash quotas; every count is within the limits of `limits.rs`; every stored client has one to the limit of
//!   outcomes.

use std::collections::BTreeSet;

use super::apply::{hashes_in, registered_in};
use super::limits::*;
use super::state::{Group, SharedFile, TrackerState};

type Check = Result<(), &'static str>;

fn ensure(ok: bool, what: &'static str) -> Check {
    if ok { Ok(()) } else { Err(what) }
}

impl TrackerState {
    /// The first broken invariant, if any.
    pub(super) fn violation(&self) -> Check {
        ensure(self.users.len() <= USERS_MAX, "more users than the limit")?;
        ensure(
            self.groups.len() <= GROUPS_MAX,
            "more groups than the limit",
        )?;
        ensure(
            self.user_skeletons.len() <= self.users.len()
                && self
                    .user_skeletons
                    .values()
                    .all(|u| self.users.contains_key(u)),
            "user-name skeleton index names an unknown user",
        )?;
        self.sessions_violation()?;
        for g in self.groups.values() {
            self.group_violation(g)?;
        }
        let total: u64 = self.groups.values().map(hashes_in).sum();
        ensure(total == self.piece_hashes, "piece-hash total out of date")?;
        ensure(
            total <= PIECE_HASHES_TOTAL_MAX,
            "more piece hashes than the limit",
        )?;
        self.registered_violation()?;
        self.outcomes_violation()
    }

    /// The per-user index matches the files; nobody registered more than
    /// the per-user quotas (only `ShareFile` adds to them).
    fn registered_violation(&self) -> Check {
        ensure(
            registered_in(self.groups.values()) == self.registered,
            "registered-files index out of date",
        )?;
        for (user, r) in &self.registered {
            ensure(
                self.users.contains_key(user),
                "a file registered by an unknown user",
            )?;
            ensure(
                r.files <= FILES_PER_USER_MAX,
                "a user registered more files than the quota",
            )?;
            ensure(
                r.piece_hashes <= PIECE_HASHES_PER_USER_MAX,
                "a user registered more piece hashes than the quota",
            )?;
        }
        Ok(())
    }

    fn sessions_violation(&self) -> Check {
        ensure(
            self.user_sessions.len() == self.sessions.len(),
            "session index and sessions differ in size",
        )?;
        for (token, s) in &self.sessions {
            ensure(
                self.users.contains_key(&s.user),
                "session of an unknown user",
            )?;
            ensure(
                self.user_sessions.get(&s.user) == Some(token),
                "session index does not point at the session",
            )?;
        }
        Ok(())
    }

    fn group_violation(&self, g: &Group) -> Check {
        ensure(
            g.members.contains_key(&g.owner),
            "group owner is not a member",
        )?;
        ensure(
            g.members.len() <= MEMBERS_PER_GROUP_MAX,
            "more members than the limit",
        )?;
        ensure(
            g.pending.len() <= PENDING_PER_GROUP_MAX,
            "more pending requests than the limit",
        )?;
        let mut seqs = BTreeSet::new();
        for (user, seq) in g.members.iter().chain(&g.pending) {
            ensure(self.users.contains_key(user), "group lists an unknown user")?;
            ensure(*seq < g.next_seq, "join sequence number not yet issued")?;
            ensure(seqs.insert(*seq), "join sequence number used twice")?;
        }
        for user in g.pending.keys() {
            ensure(
                !g.members.contains_key(user),
                "pending request from a member",
            )?;
        }
        ensure(
            g.files.len() <= FILES_PER_GROUP_MAX,
            "more files than the limit",
        )?;
        for (name, f) in &g.files {
            ensure(*name == f.meta.name, "file stored under another name")?;
            file_violation(g, f)?;
        }
        Ok(())
    }

    fn outcomes_violation(&self) -> Check {
        ensure(
            self.conflicts.len() <= super::limits::CONFLICTS_MAX,
            "more conflict records than the limit",
        )?;
        ensure(
            self.outcomes.len() <= OUTCOME_CLIENTS_MAX,
            "outcomes kept for more clients than the limit",
        )?;
        for c in self.outcomes.values() {
            ensure(!c.by_id.is_empty(), "client kept with no outcome")?;
            ensure(
                c.by_id.len() <= OUTCOMES_PER_CLIENT_MAX,
                "more outcomes kept for a client than the limit",
            )?;
        }
        Ok(())
    }
}

fn file_violation(g: &Group, f: &SharedFile) -> Check {
    ensure(f.meta.validate().is_ok(), "invalid file metadata")?;
    ensure(
        f.sources.len() <= SOURCES_PER_FILE_MAX,
        "more sources than the limit",
    )?;
    for (user, pieces) in &f.sources {
        ensure(g.members.contains_key(user), "a source is not a member")?;
        ensure(
            pieces.len() == f.meta.piece_count(),
            "source piece set of the wrong length",
        )?;
        ensure(
            !pieces.is_empty() || f.meta.piece_count() == 0,
            "source holds no piece",
        )?;
    }
    Ok(())
}
