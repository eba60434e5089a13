//! The tracker's application state: users, sessions, groups, files, and the
//! stored outcome of each client's recent writes. It is replicated: every
//! tracker holds the same value, built only by [`TrackerState::apply`].
//!
//! How a client request flows (the replication machine drives this):
//! - a read ([`Request::is_write`] false) is answered by
//!   `TrackerState::read` (`read.rs`);
//! - a write goes through `TrackerState::prepare_step` (`prepare.rs`) on the
//!   primary: authorization, validation against the current state, and the
//!   random values drawn (salt, token, seeder key). It yields an [`OpKind`];
//!   the caller wraps it in an [`Op`] with the time and the request's origin;
//! - every tracker applies the op with [`TrackerState::apply`] (`apply.rs`),
//!   which re-checks it (`check.rs`) and is the only code that changes state;
//! - `TrackerState::revalidate` re-checks an op from a divergent log after a
//!   partition heals.
//!
//! Other files: `limits.rs` (capacity constants), `password.rs` (argon2id),
//! `snapshot.rs` (canonical encoding, digest), `invariants.rs`, `storage.rs`
//! (log records and snapshot files on disk, as pure encode/decode).
//!
//! Decisions (the issue left them to us):
//! - **One session per user; a new login takes over.** Logging in while the
//!   user has a session ends the old one: its token stops working
//!   (`SessionUnknown`) and its seeding is withdrawn until the new session
//!   registers a seeder address. A login sent with a valid session of a
//!   *different* user is refused with `AlreadyLoggedIn`; a stale token on a
//!   login or create_user is ignored.
//! - **Sources belong to a user's current session.** A user's sources (full
//!   seeders and partial holders) are listed (`get_peers`) and counted
//!   (`list_files`) only while the user has a session that is online and
//!   has a registered seeder address; they survive going offline and a
//!   resume on another tracker (the same client), but a login (a new
//!   session, maybe from a client with an empty data folder) withdraws
//!   them all. The client re-announces what it really holds (its share
//!   table and partial downloads) right after each login, so a user counts
//!   as a seeder only while a client of theirs announces the file.
//! - **A file is registered before `RegisterSeeder`** is allowed; it just has
//!   no visible source until then.
//! - **A file with no sources left keeps its metadata**, so `list_files`
//!   still shows it (with zero seeders) and a member who still has the bytes
//!   can share them again (same content) without a conflict.
//! - **Piece reports only grow**: `have_pieces` adds to what the user is known
//!   to hold (reordered or duplicated reports are harmless); an empty set is
//!   a bad request. `stop_share` removes the user as a source entirely.
//! - **Leaving a group**: a member leaves and stops being a source of its
//!   files. The owner leaving hands ownership to the longest-standing
//!   remaining member (join order = order of acceptance; the creator first);
//!   an owner alone deletes the group with its files and pending requests.
//!   A user with a pending request who "leaves" cancels the request (reply
//!   `Done`).
//! - **Sessions are bound to the client's key.** A login records the TLS
//!   key of the connection it came on (`Session::key`); resuming the
//!   session and every request in it must come on a connection with that
//!   key (`SessionKeyMismatch` otherwise), so a token alone is worth
//!   nothing to anyone else. `logout` ends the session.
//! - **Sessions have two lifetimes** ([`TrackerConfig::session_idle_ms`],
//!   [`TrackerConfig::session_max_ms`]): a session offline (no client
//!   connection on any tracker) for the idle lifetime, or older than the
//!   absolute one, is refused at once (`SessionUnknown`) and ended by an
//!   `ExpireSession` op the primary proposes.
//! - **Retries**: the outcome of every op with an origin is stored under
//!   `(client, key, request id)` (the key of the connection it came on). `prepare` answers a stored request from the
//!   record, and `apply` never applies an origin twice (a duplicate op gets
//!   the stored outcome); a request on a connection with another key
//!   never sees or pre-empts them. At most [`OUTCOMES_PER_CLIENT_MAX`] outcomes are kept
//!   per client (lowest request id evicted) and [`OUTCOME_CLIENTS_MAX`]
//!   clients (least recently active evicted): dedup is guaranteed within
//!   those bounds only.
//! - **Limits** are constants (`limits.rs`), because `apply` enforces them
//!   and must decide the same on every tracker.
//! - `apply` does not re-check who issued an op: ownership for accept/reject
//!   is checked by `prepare` only (the op does not name the owner).

use std::collections::BTreeMap;
use std::net::SocketAddr;

#[cfg(doc)]
use p2p_proto::Request;
use p2p_proto::{
    ClientId, FileMeta, FileName, GroupName, KeyId, Op, OpKind, Origin, Outcome, PieceSet,
    RequestId, SeederKey, SessionToken, Sha1Hash, UserName,
};

use crate::time::Instant;

#[cfg(doc)]
use super::limits::{OUTCOME_CLIENTS_MAX, OUTCOMES_PER_CLIENT_MAX};

/// Costs and lifetimes of one tracker. None of it changes what `apply` does,
/// so trackers may differ in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackerConfig {
    /// argon2id memory cost of new password hashes, in KiB (at least 8).
    pub argon2_m_kib: u32,
    /// argon2id passes over memory (at least 1).
    pub argon2_t: u32,
    /// argon2id lanes (at least 1; `argon2_m_kib >= 8 * argon2_p`).
    pub argon2_p: u32,
    /// How long a ticket issued by `get_peers` stays valid (downloaders
    /// fetch new ones as needed).
    pub ticket_ttl_ms: u64,
    /// A session whose client has been offline (connected to no tracker)
    /// this long is over.
    pub session_idle_ms: u64,
    /// A session this old (since its login) is over, online or not.
    pub session_max_ms: u64,
}

/// How long a ticket stays valid by default: minutes, so a leaked ticket
/// is soon worthless (it names the downloader's key anyway).
pub const TICKET_LIFETIME_MS: u64 = 5 * 60 * 1000;
/// Default idle lifetime of a session: an hour offline.
pub const SESSION_IDLE_MS: u64 = 60 * 60 * 1000;
/// Default absolute lifetime of a session: seven days from login.
pub const SESSION_MAX_MS: u64 = 7 * 24 * 60 * 60 * 1000;

impl TrackerConfig {
    /// The OWASP-recommended argon2id cost (19 MiB, 2 passes, 1 lane),
    /// tickets valid for [`TICKET_LIFETIME_MS`], sessions for
    /// [`SESSION_IDLE_MS`] offline and [`SESSION_MAX_MS`] in all.
    pub fn production() -> Self {
        TrackerConfig {
            argon2_m_kib: 19 * 1024,
            argon2_t: 2,
            argon2_p: 1,
            ticket_ttl_ms: TICKET_LIFETIME_MS,
            session_idle_ms: SESSION_IDLE_MS,
            session_max_ms: SESSION_MAX_MS,
        }
    }

    /// The cheapest cost argon2 accepts (8 KiB, 1 pass, 1 lane), for tests
    /// and the simulator. Hashes stay real argon2id PHC strings.
    pub fn test() -> Self {
        TrackerConfig {
            argon2_m_kib: 8,
            argon2_t: 1,
            argon2_p: 1,
            ticket_ttl_ms: 60 * 1000,
            session_idle_ms: SESSION_IDLE_MS,
            session_max_ms: SESSION_MAX_MS,
        }
    }

    /// Is session `s` past one of its lifetimes at `now`?
    pub fn session_expired(&self, now: Instant, s: &Session) -> bool {
        let now = now.as_millis();
        let too_old = now.saturating_sub(s.login_ms) >= self.session_max_ms;
        let idle = !s.online && now.saturating_sub(s.online_ms) >= self.session_idle_ms;
        too_old || idle
    }
}

/// A registered user.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct User {
    /// An argon2id PHC string (algorithm, cost, salt and hash).
    pub password_hash: String,
}

/// A logged-in session (at most one per user).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Session {
    pub user: UserName,
    /// The client process that logged in.
    pub client: ClientId,
    /// The TLS key of that client (also its seeder's): the session answers
    /// only to connections with this key, and tickets name it.
    pub key: KeyId,
    /// Tickets for this user's seeder are MACs under this key.
    pub seeder_key: SeederKey,
    /// The client is connected to some tracker (as last reported by an op).
    pub online: bool,
    /// Where this client's seeder listens, once registered.
    pub addr: Option<SocketAddr>,
    /// Op time of the login.
    pub login_ms: u64,
    /// Op time `online` last changed (the login counts as a change).
    pub online_ms: u64,
}

impl Session {
    /// Sources of this session's user are listed only while this is true.
    pub fn serving(&self) -> Option<SocketAddr> {
        self.addr.filter(|_| self.online)
    }
}

/// A group: owner, members in join order, pending requests, files.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Group {
    pub owner: UserName,
    /// Member -> join sequence number (lower joined earlier).
    pub members: BTreeMap<UserName, u64>,
    /// Requester -> request sequence number (lower asked earlier).
    pub pending: BTreeMap<UserName, u64>,
    /// Next sequence number for a join or request.
    pub next_seq: u64,
    pub files: BTreeMap<FileName, SharedFile>,
}

impl Group {
    /// Members other than `leaving`, longest-standing first.
    pub fn successor(&self, leaving: &UserName) -> Option<&UserName> {
        self.members
            .iter()
            .filter(|(u, _)| *u != leaving)
            .min_by_key(|(_, seq)| **seq)
            .map(|(u, _)| u)
    }

    /// Members, longest-standing first (when the owner leaves, the first
    /// other member becomes the owner: [`Group::successor`]).
    pub fn members_in_order(&self) -> Vec<UserName> {
        let mut v: Vec<_> = self.members.iter().collect();
        v.sort_by_key(|(_, seq)| **seq);
        v.into_iter().map(|(u, _)| u.clone()).collect()
    }

    /// Pending requesters, oldest request first.
    pub fn pending_in_order(&self) -> Vec<UserName> {
        let mut v: Vec<_> = self.pending.iter().collect();
        v.sort_by_key(|(_, seq)| **seq);
        v.into_iter().map(|(u, _)| u.clone()).collect()
    }
}

/// A file shared in a group and who holds which of its pieces.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SharedFile {
    pub meta: FileMeta,
    /// Who shared it first: the file and its piece hashes count against
    /// this user's quotas (`FILES_PER_USER_MAX`, `PIECE_HASHES_PER_USER_MAX`)
    /// for as long as it exists, whoever sources it.
    pub registered_by: UserName,
    /// User -> pieces held (never empty; full = a full seeder).
    pub sources: BTreeMap<UserName, PieceSet>,
}

/// What the files one user registered hold (`SharedFile::registered_by`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Registered {
    pub files: usize,
    pub piece_hashes: u64,
}

/// The stored outcomes of one client's recent writes.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct ClientOutcomes {
    /// Op time of the last write recorded for this client.
    pub last_ms: u64,
    pub by_id: BTreeMap<RequestId, Outcome>,
}

/// One step of [`TrackerState::prepare_step`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) enum Step {
    /// Prepared (or answered).
    Ready(Prepared),
    /// Run this argon2 work, then prepare again with its result.
    Password(super::password::PasswordWork),
}

/// A divergent client op that no longer applied after a partition healed.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Conflict {
    pub op: Op,
    pub reason: p2p_proto::TrackerError,
    /// Op time of the record.
    pub at_ms: u64,
}

/// What `prepare` made of a write.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) enum Prepared {
    /// Accepted: log and replicate this op, then apply it.
    Op(OpKind),
    /// Answer now, without an op: the stored outcome of a retried request,
    /// or the answer to a read passed to `prepare`.
    Done(Outcome),
}

/// The replicated application state of a tracker. `BTreeMap`s only, so
/// iteration order (and with it every encoding and digest) is canonical.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct TrackerState {
    pub(super) users: BTreeMap<UserName, User>,
    pub(super) sessions: BTreeMap<SessionToken, Session>,
    pub(super) groups: BTreeMap<GroupName, Group>,
    /// Stored outcomes by (client id, client key) of the requests.
    pub(super) outcomes: BTreeMap<(ClientId, KeyId), ClientOutcomes>,
    /// Divergent client ops that no longer applied after a partition
    /// healed, oldest first (at most [`super::limits::CONFLICTS_MAX`]).
    pub(super) conflicts: std::collections::VecDeque<Conflict>,
    /// Derived (not encoded): user -> that user's session token.
    pub(super) user_sessions: BTreeMap<UserName, SessionToken>,
    /// Derived (not encoded): piece hashes held across all files.
    pub(super) piece_hashes: u64,
    /// Derived (not encoded): user -> what the files that user registered
    /// hold (users with none are absent), for the per-user quotas.
    pub(super) registered: BTreeMap<UserName, Registered>,
    /// Derived (not encoded): user-name skeleton -> the user that has it
    /// (see `names.rs`), so a lookalike name is found without
    /// comparing against every user.
    pub(super) user_skeletons: BTreeMap<String, UserName>,
}

impl TrackerState {
    /// An empty state: no users, sessions, groups or outcomes.
    pub fn new() -> Self {
        Self::default()
    }

    /// SHA-1 over the canonical encoding of the whole state: equal on two
    /// trackers exactly when their states are equal.
    pub fn digest(&self) -> Sha1Hash {
        crate::hash::sha1(&self.encode_snapshot())
    }

    /// Panics if an invariant is broken (see `invariants.rs`).
    pub fn check_invariants(&self) {
        if let Err(what) = self.violation() {
            panic!("tracker state invariant broken: {what}");
        }
    }

    pub fn user(&self, name: &UserName) -> Option<&User> {
        self.users.get(name)
    }

    pub fn users(&self) -> impl Iterator<Item = (&UserName, &User)> {
        self.users.iter()
    }

    /// The user a session token belongs to, if the session exists.
    pub fn session_user(&self, token: &SessionToken) -> Option<&UserName> {
        self.sessions.get(token).map(|s| &s.user)
    }

    pub fn session(&self, token: &SessionToken) -> Option<&Session> {
        self.sessions.get(token)
    }

    /// Every session, in token order (`Session::online`, `Session::client`
    /// and `Session::online_ms` tell which are live and since when).
    pub fn sessions(&self) -> impl Iterator<Item = (&SessionToken, &Session)> {
        self.sessions.iter()
    }

    /// The session of `user`, if logged in.
    pub fn user_session(&self, user: &UserName) -> Option<(&SessionToken, &Session)> {
        let token = self.user_sessions.get(user)?;
        self.sessions.get(token).map(|s| (token, s))
    }

    /// What the files `user` registered hold (zero if none).
    pub fn registered_by(&self, user: &UserName) -> Registered {
        self.registered.get(user).copied().unwrap_or_default()
    }

    pub fn group(&self, name: &GroupName) -> Option<&Group> {
        self.groups.get(name)
    }

    pub fn groups(&self) -> impl Iterator<Item = (&GroupName, &Group)> {
        self.groups.iter()
    }

    /// The conflict log, oldest first.
    pub fn conflicts(&self) -> impl Iterator<Item = &Conflict> {
        self.conflicts.iter()
    }

    /// The stored outcome of a request, if it was applied and is still kept.
    pub fn stored_outcome(&self, origin: &Origin) -> Option<&Outcome> {
        self.outcomes
            .get(&(origin.client, origin.key))?
            .by_id
            .get(&origin.id)
    }

    /// Re-checks an op from a divergent log before it is re-submitted after a
    /// partition heals: `Err` is the conflict to record. An op whose origin
    /// already has a stored outcome is `Ok` (applying it again is a no-op
    /// that returns the stored outcome).
    pub(crate) fn revalidate(&self, op: &Op) -> Result<(), p2p_proto::TrackerError> {
        if op.origin.is_some_and(|o| self.stored_outcome(&o).is_some()) {
            return Ok(());
        }
        self.check(&op.kind)
    }
}

#[cfg(test)]
pub(super) mod testkit;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_files;
#[cfg(test)]
mod tests_groups;
#[cfg(test)]
mod tests_keys;
#[cfg(test)]
mod tests_names;
#[cfg(test)]
mod tests_prop;
