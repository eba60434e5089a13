//! Capacity limits of the tracker's replicated state, units last.
//!
//! These are constants, not configuration: `apply` enforces them, and it must
//! decide the same on every tracker, so two trackers with different settings
//! would diverge. Each limit a client can push against returns
//! `TrackerError::LimitReached` with the text in [`what`], never a panic.
//! The list limits match the wire's reply limits in `p2p_proto::limits`, so
//! every listing fits one reply.

use p2p_proto::limits::{LIST_LEN_MAX, MEMBERS_PER_REPLY_MAX, PEERS_PER_REPLY_MAX};

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

/// The user-facing text of each limit, for `LimitReached { what }`.
pub mod what {
    pub const USERS: &str = "the tracker has the most users it can hold";
    pub const GROUPS: &str = "the tracker has the most groups it can hold";
    pub const MEMBERS: &str = "the group has the most members it can hold";
    pub const PENDING: &str = "the group has the most pending join requests it can hold";
    pub const FILES: &str = "the group has the most files it can hold";
    pub const SOURCES: &str = "the file has the most sources it can list";
    pub const PIECE_HASHES: &str = "the tracker holds the most file metadata it can";
}
