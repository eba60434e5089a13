//! The wire format's bounds, units last: every length and count a peer
//! can put in a message. (Bounds that belong to one machine or driver live
//! beside it; ARCHITECTURE.md, "Limits", lists where.)
//!
//! Decoders check these *before* allocating. Changing one is a protocol
//! change: bump [`crate::PROTOCOL_VERSION`] when a limit shrinks.

/// Size of one piece in production. Files are split into pieces of this size
/// (the last one may be shorter).
pub const PIECE_LEN: u32 = 512 * 1024;
/// Smallest piece size a file may declare (the simulator uses small pieces).
pub const PIECE_LEN_MIN: u32 = 1024;
/// Largest piece size a file may declare.
pub const PIECE_LEN_MAX: u32 = PIECE_LEN;

/// Room for everything in a frame that is not piece bytes.
pub const FRAME_OVERHEAD_MAX: u32 = 4 * 1024;
/// Largest frame payload accepted on any connection (one piece plus headers).
pub const FRAME_LEN_MAX: u32 = PIECE_LEN_MAX + FRAME_OVERHEAD_MAX;
/// Bytes in the frame length prefix.
pub const FRAME_HEADER_LEN: usize = 4;

/// Longest user, group or file name, in bytes of UTF-8.
pub const NAME_LEN_MAX: usize = 64;
/// Longest password, in bytes of UTF-8.
pub const PASSWORD_LEN_MAX: usize = 128;
/// Longest free-text field (reasons, messages), in bytes of UTF-8.
pub const TEXT_LEN_MAX: usize = 512;
/// Longest stored password hash (an argon2 PHC string), in bytes.
pub const PASSWORD_HASH_LEN_MAX: usize = 256;

/// Most pieces a shared file may have: 24 Ki pieces of 512 KiB is a 12 GiB
/// file, and its 20-byte hashes still fit in one frame.
pub const FILE_PIECES_MAX: u32 = 24 * 1024;
/// Largest file that can be shared, in bytes.
pub const FILE_LEN_MAX: u64 = FILE_PIECES_MAX as u64 * PIECE_LEN_MAX as u64;

/// Most entries in one listing reply (groups, files, requests).
pub const LIST_LEN_MAX: usize = 1024;
/// Most peers in one peer-list reply.
pub const PEERS_PER_REPLY_MAX: usize = 50;
/// Most members listed for one group in a reply.
pub const MEMBERS_PER_REPLY_MAX: usize = 1024;

/// Most log entries in one replication `Append` (also bounded by frame size).
pub const APPEND_ENTRIES_MAX: usize = 1024;
/// Most epoch-start records in a tracker `Join`.
pub const EPOCH_STARTS_MAX: usize = 4096;
/// Largest piece of a snapshot carried in one frame.
pub const SNAPSHOT_CHUNK_LEN_MAX: u32 = 256 * 1024;
/// Most trackers in one replicated group.
pub const TRACKERS_MAX: usize = 16;
