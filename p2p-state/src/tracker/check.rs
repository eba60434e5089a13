//! Whether an op still fits the state: the one set of rules shared by
//! `prepare` (before an op is created), `apply` (an op that no longer fits is
//! a no-op with this error) and `revalidate` (ops from a divergent log).
//!
//! Order of checks, so a user learns no more than they may: the group
//! exists, then membership, then the file, then the specific conflict, then
//! limits: the user's own quotas first (what they can act on), then the
//! group's and the tracker's. Quotas are counted from the replicated state
//! (groups owned, requests pending, `TrackerState::registered_by`), so every
//! tracker decides the same.

use p2p_proto::{FileMeta, FileName, GroupName, OpKind, PieceSet, TrackerError, UserName};

use super::limits::{self, what};
use super::names;
use super::password;
use super::state::{Group, SharedFile, TrackerState};

pub(super) fn limit(what: &str) -> TrackerError {
    TrackerError::LimitReached { what: what.into() }
}

pub(super) fn bad(reason: &str) -> TrackerError {
    TrackerError::BadRequest {
        reason: reason.into(),
    }
}

impl TrackerState {
    /// `Ok` if `kind` can be applied to the current state; otherwise the
    /// error `apply` would answer with (and change nothing).
    pub(super) fn check(&self, kind: &OpKind) -> Result<(), TrackerError> {
        use OpKind::*;
        match kind {
            Noop | RecordConflict { .. } => Ok(()),
            CreateUser {
                user,
                password_hash,
            } => self.check_create_user(user, &password_hash.0),
            Login { user, token, .. } => {
                self.known_user(user)?;
                match self.sessions.contains_key(token) {
                    true => Err(bad("session token already in use")),
                    false => Ok(()),
                }
            }
            Logout { token }
            | ExpireSession { token }
            | SetOnline { token, .. }
            | RegisterSeeder { token, .. } => match self.sessions.contains_key(token) {
                true => Ok(()),
                false => Err(TrackerError::SessionUnknown),
            },
            CreateGroup { owner, group } => self.check_create_group(owner, group),
            RequestJoin { user, group } => self.check_request_join(user, group),
            AcceptJoin { group, user } => {
                let g = self.pending_request(group, user)?;
                match g.members.len() >= limits::MEMBERS_PER_GROUP_MAX {
                    true => Err(limit(what::MEMBERS)),
                    false => Ok(()),
                }
            }
            RejectJoin { group, user } => self.pending_request(group, user).map(|_| ()),
            LeaveGroup { user, group } => {
                let g = self.existing_group(group)?;
                match g.members.contains_key(user) || g.pending.contains_key(user) {
                    true => Ok(()),
                    false => Err(TrackerError::NotMember {
                        group: group.clone(),
                    }),
                }
            }
            ShareFile { user, group, meta } => self.check_share(user, group, meta),
            HavePieces {
                user,
                group,
                file,
                pieces,
            } => self.check_have_pieces(user, group, file, pieces),
            StopShare { user, group, file } => {
                let f = self.member_file(user, group, file)?;
                match f.sources.contains_key(user) {
                    true => Ok(()),
                    false => Err(TrackerError::NotSharing {
                        group: group.clone(),
                        file: file.clone(),
                    }),
                }
            }
        }
    }

    pub(super) fn known_user(&self, user: &UserName) -> Result<(), TrackerError> {
        match self.users.contains_key(user) {
            true => Ok(()),
            false => Err(TrackerError::UnknownUser { user: user.clone() }),
        }
    }

    pub(super) fn existing_group(&self, group: &GroupName) -> Result<&Group, TrackerError> {
        self.groups
            .get(group)
            .ok_or_else(|| TrackerError::NoSuchGroup {
                group: group.clone(),
            })
    }

    /// The group, if it exists and `user` is a member.
    pub(super) fn member_group(
        &self,
        user: &UserName,
        group: &GroupName,
    ) -> Result<&Group, TrackerError> {
        let g = self.existing_group(group)?;
        match g.members.contains_key(user) {
            true => Ok(g),
            false => Err(TrackerError::NotMember {
                group: group.clone(),
            }),
        }
    }

    /// The group, if it exists and `user` owns it.
    pub(super) fn owned_group(
        &self,
        user: &UserName,
        group: &GroupName,
    ) -> Result<&Group, TrackerError> {
        let g = self.existing_group(group)?;
        match g.owner == *user {
            true => Ok(g),
            false => Err(TrackerError::NotOwner {
                group: group.clone(),
            }),
        }
    }

    /// The file, if the group exists, `user` is a member and the file exists.
    pub(super) fn member_file(
        &self,
        user: &UserName,
        group: &GroupName,
        file: &FileName,
    ) -> Result<&SharedFile, TrackerError> {
        self.member_group(user, group)?
            .files
            .get(file)
            .ok_or_else(|| TrackerError::NoSuchFile {
                group: group.clone(),
                file: file.clone(),
            })
    }

    fn check_create_user(&self, user: &UserName, phc: &str) -> Result<(), TrackerError> {
        self.user_can_be_created(user)?;
        password::check_phc(phc).map_err(|e| bad(&e.to_string()))
    }

    /// The name is free and there is room (checked before hashing).
    pub(super) fn user_can_be_created(&self, user: &UserName) -> Result<(), TrackerError> {
        if self.users.contains_key(user) {
            return Err(TrackerError::UserExists { user: user.clone() });
        }
        if let Some(existing) = self.user_skeletons.get(&names::skeleton(user.as_str())) {
            return Err(TrackerError::UserTooSimilar {
                user: user.clone(),
                existing: existing.clone(),
            });
        }
        match self.users.len() >= limits::USERS_MAX {
            true => Err(limit(what::USERS)),
            false => Ok(()),
        }
    }

    fn check_create_group(&self, owner: &UserName, group: &GroupName) -> Result<(), TrackerError> {
        self.known_user(owner)?;
        if self.groups.contains_key(group) {
            return Err(TrackerError::GroupExists {
                group: group.clone(),
            });
        }
        if let Some(existing) = names::lookalike(group.as_str(), self.groups.keys()) {
            return Err(TrackerError::GroupTooSimilar {
                group: group.clone(),
                existing: existing.clone(),
            });
        }
        let owned = self.groups.values().filter(|g| g.owner == *owner).count();
        if owned >= limits::GROUPS_OWNED_PER_USER_MAX {
            return Err(limit(what::GROUPS_OWNED));
        }
        match self.groups.len() >= limits::GROUPS_MAX {
            true => Err(limit(what::GROUPS)),
            false => Ok(()),
        }
    }

    fn check_request_join(&self, user: &UserName, group: &GroupName) -> Result<(), TrackerError> {
        self.known_user(user)?;
        let g = self.existing_group(group)?;
        let group = group.clone();
        if g.members.contains_key(user) {
            return Err(TrackerError::AlreadyMember { group });
        }
        if g.pending.contains_key(user) {
            return Err(TrackerError::AlreadyRequested { group });
        }
        let asked = self
            .groups
            .values()
            .filter(|g| g.pending.contains_key(user));
        if asked.count() >= limits::PENDING_PER_USER_MAX {
            return Err(limit(what::PENDING_USER));
        }
        match g.pending.len() >= limits::PENDING_PER_GROUP_MAX {
            true => Err(limit(what::PENDING)),
            false => Ok(()),
        }
    }

    fn pending_request(&self, group: &GroupName, user: &UserName) -> Result<&Group, TrackerError> {
        let g = self.existing_group(group)?;
        match g.pending.contains_key(user) {
            true => Ok(g),
            false => Err(TrackerError::NoSuchRequest {
                group: group.clone(),
                user: user.clone(),
            }),
        }
    }

    fn check_share(
        &self,
        user: &UserName,
        group: &GroupName,
        meta: &FileMeta,
    ) -> Result<(), TrackerError> {
        meta.validate().map_err(|e| bad(&e.to_string()))?;
        if crate::hash::meta_root(meta) != meta.file_hash {
            return Err(TrackerError::FileHashMismatch {
                file: meta.name.clone(),
            });
        }
        let g = self.member_group(user, group)?;
        let Some(f) = g.files.get(&meta.name) else {
            if let Some(existing) = names::lookalike(meta.name.as_str(), g.files.keys()) {
                return Err(TrackerError::FileTooSimilar {
                    file: meta.name.clone(),
                    existing: existing.clone(),
                });
            }
            return self.room_for_file(user, g, meta);
        };
        if f.meta != *meta {
            return Err(TrackerError::FileConflict {
                group: group.clone(),
                file: meta.name.clone(),
            });
        }
        room_for_source(f, user)
    }

    /// Room for a new file registered by `user`: their quotas first, then
    /// the group's and the tracker's limits.
    fn room_for_file(
        &self,
        user: &UserName,
        g: &Group,
        meta: &FileMeta,
    ) -> Result<(), TrackerError> {
        let mine = self.registered_by(user);
        if mine.files >= limits::FILES_PER_USER_MAX {
            return Err(limit(what::FILES_USER));
        }
        let new = meta.piece_hashes.len() as u64;
        if mine.piece_hashes + new > limits::PIECE_HASHES_PER_USER_MAX {
            return Err(limit(what::PIECE_HASHES_USER));
        }
        if g.files.len() >= limits::FILES_PER_GROUP_MAX {
            return Err(limit(what::FILES));
        }
        let hashes = self.piece_hashes + new;
        match hashes > limits::PIECE_HASHES_TOTAL_MAX {
            true => Err(limit(what::PIECE_HASHES)),
            false => Ok(()),
        }
    }

    fn check_have_pieces(
        &self,
        user: &UserName,
        group: &GroupName,
        file: &FileName,
        pieces: &PieceSet,
    ) -> Result<(), TrackerError> {
        let f = self.member_file(user, group, file)?;
        if pieces.len() != f.meta.piece_count() {
            return Err(bad("the piece set does not match the file's piece count"));
        }
        if pieces.is_empty() {
            return Err(bad("the piece set is empty"));
        }
        room_for_source(f, user)
    }
}

/// `user` is already a source of `f`, or there is room for one more.
fn room_for_source(f: &SharedFile, user: &UserName) -> Result<(), TrackerError> {
    let full = f.sources.len() >= limits::SOURCES_PER_FILE_MAX;
    match full && !f.sources.contains_key(user) {
        true => Err(limit(what::SOURCES)),
        false => Ok(()),
    }
}
