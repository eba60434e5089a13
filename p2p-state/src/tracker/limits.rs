//! Capacity limits of the tracker's replicated state, units last.
//!
//! These are constants, not configuration: `apply` enforces them, and it must
//! decide the same on every tracker, so two trackers with different settings
//! would diverge. Each limit a client can push against returns
//! `TrackerError::LimitReached` with the text in [`what`], never a panic.
//! The list limits match the wire's reply limits in `p2p_proto::limits`, so
//! every listing fits one reply.

use p2p_proto::limits::{
    FILE_PIECES_MAX, LIST_LEN_MAX, MEMBERS_PER_REPLY_MAX, PEERS_PER_REPLY_MAX,
};

/// Most registered users.
pub const USERS_MAX: usize = 100_000;
/// Most groups (all of them fit one `list_groups` reply).
pub const GROUPS_MAX: usize = LIST_LEN_MAX;
/// Most members of one group, owner included.
pub const MEMBERS_PER_GROUP_MAX: usize = MEMBERS_PER_REPLY_MAX;
/// Most pending join requests in one group (all fit one `list_requests`).
pub const PENDING_PER_GROUP_MAX: usize = LIST_LEN_MAX;
/// Most files in one group (all fit one `list_files` reply).
pub const FILES_PER_GROUP_MAX: usize = LIST_LEN_MAX;
/// Most sources (full seeders and partial holders) of one file. Sources
/// are members, so this is below the member limit to mean anything; a
/// `get_peers` reply lists at most `PEERS_PER_REPLY` of them anyway.
pub const SOURCES_PER_FILE_MAX: usize = 512;
/// Most piece hashes held across all files: 1 Mi hashes is 20 MiB of state
/// and 512 GiB of shared data at the production piece size.
pub const PIECE_HASHES_TOTAL_MAX: u64 = 1024 * 1024;

// Per-user quotas: what one account may hold of a shared limit, far below
// it, so no single account can exhaust a limit every user shares. Each is
// computed from the replicated state alone (`check.rs`), so every tracker
// decides the same.

/// Most groups one user may own when creating another (a group handed over
/// by a leaving owner is never refused, so a user may end up above it).
pub const GROUPS_OWNED_PER_USER_MAX: usize = GROUPS_MAX / 32;
/// Most join requests one user may have pending, across all groups.
pub const PENDING_PER_USER_MAX: usize = 32;
/// Most files one user may have registered (shared first), across all
/// groups; a file counts against whoever registered it for as long as it
/// exists (until its group is deleted).
pub const FILES_PER_USER_MAX: usize = 256;
/// Most piece hashes the files one user registered may hold: 64 Ki hashes,
/// 32 GiB of shared data at the production piece size, room for the
/// largest file (`FILE_PIECES_MAX`) twice over.
pub const PIECE_HASHES_PER_USER_MAX: u64 = PIECE_HASHES_TOTAL_MAX / 16;

const _: () = {
    assert!(GROUPS_OWNED_PER_USER_MAX * 16 <= GROUPS_MAX);
    assert!(PENDING_PER_USER_MAX * 16 <= PENDING_PER_GROUP_MAX * GROUPS_MAX);
    assert!(FILES_PER_USER_MAX * 4 <= FILES_PER_GROUP_MAX);
    assert!(PIECE_HASHES_PER_USER_MAX * 16 <= PIECE_HASHES_TOTAL_MAX);
    assert!(PIECE_HASHES_PER_USER_MAX >= 2 * FILE_PIECES_MAX as u64);
};

/// Stored write outcomes kept per client (the lowest request id is evicted
/// first): a retry is answered from the record while it is among these.
pub const OUTCOMES_PER_CLIENT_MAX: usize = 32;
/// Clients whose outcomes are kept; past it the client whose last write is
/// the oldest (then the lowest client id) is forgotten.
pub const OUTCOME_CLIENTS_MAX: usize = 4096;
/// Highest argon2 memory cost (KiB) a stored password hash may ask for, so a
/// bad hash cannot make a login allocate without bound.
pub const ARGON2_M_KIB_MAX: u32 = 1024 * 1024;
/// Highest argon2 time cost a stored password hash may ask for.
pub const ARGON2_T_MAX: u32 = 64;
/// Highest argon2 parallelism a stored password hash may ask for.
pub const ARGON2_P_MAX: u32 = 16;
/// Conflict records kept (the oldest dropped first), for the console's
/// `conflicts`.
pub const CONFLICTS_MAX: usize = 1000;
/// Peers in one `get_peers` reply (the wire limit).
pub const PEERS_PER_REPLY: usize = PEERS_PER_REPLY_MAX;

/// The user-facing text of each limit, for `LimitReached { what }`: which
/// limit (its name in the README's "Limits and security") and what to do.
pub mod what {
    pub const USERS: &str = "the tracker has the most users it can hold (USERS_MAX, 100000)";
    pub const GROUPS: &str =
        "the tracker has the most groups it can hold (GROUPS_MAX, 1024); ask its operator";
    pub const MEMBERS: &str =
        "the group has the most members it can hold (MEMBERS_PER_GROUP_MAX, 1024)";
    pub const PENDING: &str = "the group has the most pending join requests it can hold \
        (PENDING_PER_GROUP_MAX, 1024); ask its owner to answer some";
    pub const FILES: &str = "the group has the most files it can hold (FILES_PER_GROUP_MAX, 1024)";
    pub const SOURCES: &str =
        "the file has the most sources it can list (SOURCES_PER_FILE_MAX, 512)";
    pub const PIECE_HASHES: &str = "the tracker holds the most file metadata it can \
        (PIECE_HASHES_TOTAL_MAX, 1048576 piece hashes); ask its operator";
    pub const GROUPS_OWNED: &str = "you own the most groups one user may create \
        (GROUPS_OWNED_PER_USER_MAX, 32); leave one you own first";
    pub const PENDING_USER: &str = "you have the most pending join requests one user may have \
        (PENDING_PER_USER_MAX, 32); wait for answers or cancel one with leave_group";
    pub const FILES_USER: &str = "you registered the most files one user may \
        (FILES_PER_USER_MAX, 256); a file counts until its group is deleted";
    pub const PIECE_HASHES_USER: &str = "the files you registered hold the most piece hashes \
        one user may (PIECE_HASHES_PER_USER_MAX, 65536, 32 GiB at 512 KiB pieces); \
        a file counts until its group is deleted";
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The numbers the texts quote are the limits' values.
    #[test]
    fn texts_quote_the_limits() {
        for (text, n) in [
            (what::USERS, USERS_MAX as u64),
            (what::GROUPS, GROUPS_MAX as u64),
            (what::MEMBERS, MEMBERS_PER_GROUP_MAX as u64),
            (what::PENDING, PENDING_PER_GROUP_MAX as u64),
            (what::FILES, FILES_PER_GROUP_MAX as u64),
            (what::SOURCES, SOURCES_PER_FILE_MAX as u64),
            (what::PIECE_HASHES, PIECE_HASHES_TOTAL_MAX),
            (what::GROUPS_OWNED, GROUPS_OWNED_PER_USER_MAX as u64),
            (what::PENDING_USER, PENDING_PER_USER_MAX as u64),
            (what::FILES_USER, FILES_PER_USER_MAX as u64),
            (what::PIECE_HASHES_USER, PIECE_HASHES_PER_USER_MAX),
        ] {
            assert!(
                text.contains(&format!(", {n}")),
                "{text} does not quote {n}"
            );
        }
    }
}
