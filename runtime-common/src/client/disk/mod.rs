//! The client's disk side, the same for every runtime: plain blocking
//! file I/O that a driver runs off its machine loop (on worker threads, or
//! on smol's blocking pool).
//!
//! - [`hash_file`]: the piece hashes of a file to share, on every core,
//!   reading whole pieces with `pread`, and its file hash (the root of
//!   its piece hashes, [`file_root`]);
//! - [`open_dest`]: `<dest>.part` and its record of verified pieces
//!   (`<dest>.part.pieces`); on resume every piece the record claims is
//!   re-hashed, so a torn record can cost a piece, never a wrong byte;
//! - [`Job`] / [`run_job`]: one piece of disk work for the machine
//!   (opening a destination, positioned write + record, rename into place, opening a
//!   share's file to serve it, a served piece's read-ahead, saving the
//!   share table), and the input it produces;
//! - [`write_piece`]: pieces go to the part file with `O_DIRECT` straight
//!   from the piece's buffer where the file system allows it (anything
//!   that does not fit the alignment rules takes the buffered write)
//!   while the device keeps up ([`WriteMode::Auto`], [`DirectGate`]),
//!   otherwise through the page cache, each handed to the [`Writeback`]
//!   thread, which starts its writeback at once and drops written-back
//!   pages every [`CACHE_TRIM_LAG`] pieces ([`CacheTrim`]: the cache
//!   holds a few MiB of a download, never the whole file, and a write
//!   never waits for the device). README, "Writing pieces to disk", has
//!   the figures that chose the default;
//! - the share table (`DATA_DIR/shares`, format in
//!   [`p2p_state::client::shares`]): loaded at start (a damaged one is set
//!   aside as `shares.damaged`, never half-read), saved after a share
//!   succeeds, through a temporary file, both 0600 (the data directory's
//!   rule, [`crate::private`]).
//!
//! Files: `mod.rs` the jobs and [`run_job`]; `hash.rs`; `share_table.rs`;
//! `write.rs` (piece writes, [`CacheTrim`]); `dest.rs` (the part file, its
//! record and the destination's safety rules); `tests.rs`.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use bytes::Bytes;
use p2p_proto::{FileMeta, GroupName, PieceSet, Sha1Hash, Text, Wire};
use p2p_state::client::node::{self as cn, ClientNode};
use p2p_state::client::shares::{self, ShareEntry};
use p2p_state::hash::{file_root, sha1};
use p2p_state::seeder::ShareId;
use rustix::fs::{AtFlags, FallocateFlags, Mode, OFlags, RenameFlags};

use crate::buffers::{self, DIRECT_ALIGN};

mod dest;
mod hash;
mod share_table;
mod write;

pub use dest::*;
pub use hash::*;
pub use share_table::*;
pub use write::*;

/// An open download destination.
#[derive(Debug)]
pub struct DlFile {
    pub file: Arc<File>,
    /// The same file opened with `O_DIRECT`, when the mode uses it and
    /// the file system allows it (see [`write_piece`]).
    pub direct: Option<Arc<File>>,
    /// How pieces reach the device, and whether `O_DIRECT` still keeps up.
    pub mode: WriteMode,
    pub gate: DirectGate,
    /// Pieces written through the page cache, whose pages are dropped
    /// once written back (see [`CacheTrim`]).
    pub trim: Arc<CacheTrim>,
    /// Held by the disk worker writing a piece through the page cache
    /// ([`write_piece`]): one such writer per download. Every buffered write to a file takes
    /// its inode's lock exclusively, once per [`PAGE_CACHE_WRITE_CHUNK`];
    /// [`DISK_WORKERS`](crate::client::DISK_WORKERS) writing pieces of the
    /// same file side by side only take turns at that lock, and the ones
    /// waiting spin in the kernel (`rwsem_spin_on_owner`: 5% of the
    /// leecher's samples in a download of 1 GiB to the slow loop device,
    /// written through the page cache). Direct writes of allocated blocks
    /// share the inode's lock and still run side by side.
    pub cache_writer: Mutex<()>,
    pub part: PathBuf,
    pub dest: PathBuf,
    /// The directory it is written in, held open (see [`DestDir`]).
    pub dir: Arc<DestDir>,
    pub record: Arc<Mutex<(File, PieceSet)>>,
}

/// Disk work off the machine loop. `P` is an open part file and `F` an
/// open file pieces are served from: the runtimes' are real files (the
/// defaults, run by [`run_job`]); the client driver core is generic over
/// them (the simulation's are on its in-memory disk).
#[derive(Debug)]
pub enum Job<P = Arc<DlFile>, F = Arc<File>> {
    OpenDest {
        dl: u64,
        dest: PathBuf,
        meta: FileMeta,
        /// How its pieces reach the device.
        mode: WriteMode,
        /// The download's window (see [`DirectGate`]).
        window: usize,
        /// Replace an existing destination file.
        overwrite: bool,
    },
    /// Writes a verified piece at `offset` of the part file and records
    /// it in the part file's record.
    Write {
        dl: u64,
        part: P,
        index: u32,
        offset: u64,
        data: Bytes,
    },
    /// Renames the finished part file into place.
    Finalize { dl: u64, part: P },
    /// Opens uploaded share `share`'s file to serve it, and reads its
    /// length (`JobDone::ShareOpened`).
    OpenShare { share: u64, path: PathBuf },
    /// A piece being served: asks the kernel to start reading its range
    /// into the page cache (`posix_fadvise` WILLNEED), so the connection
    /// writer's read (`pread` into a pooled buffer) rarely waits for the
    /// disk. Reports nothing.
    ReadAhead { file: F, offset: u64, len: u32 },
    /// Replaces the share table in `dir` with `bytes` (see [`shares_bytes`]).
    SaveShares { dir: PathBuf, bytes: Vec<u8> },
}

/// What a finished job tells the machine loop (`P`, `F`: as in [`Job`]).
#[derive(Debug)]
pub enum JobDone<P = Arc<DlFile>, F = Arc<File>> {
    Input(cn::Input),
    /// A destination was opened (and its claimed pieces re-verified).
    DestOpened {
        dl: u64,
        file: P,
        have: PieceSet,
    },
    /// An uploaded share's file is open, with its length then (or could
    /// not be opened).
    ShareOpened {
        share: u64,
        opened: io::Result<(F, u64)>,
    },
    /// Nothing to report (the runtimes do not wake the loop for it).
    Nothing,
}

fn text(e: impl std::fmt::Display) -> Text {
    Text::new(e.to_string())
}

/// Runs one job (blocking file I/O).
pub fn run_job(job: Job) -> JobDone {
    match job {
        Job::OpenDest {
            dl,
            dest,
            meta,
            mode,
            window,
            overwrite,
        } => match open_dest(&dest, &meta, mode, window, overwrite) {
            Ok((file, have)) => JobDone::DestOpened {
                dl,
                file: Arc::new(file),
                have,
            },
            Err(e) => JobDone::Input(cn::Input::DestFailed {
                dl,
                reason: text(e),
            }),
        },
        Job::Write {
            dl,
            part,
            index,
            offset,
            data,
        } => {
            if let Some(d) = test_write_delay() {
                thread::sleep(d);
            }
            let direct = part.direct.is_some() && part.gate.direct(part.mode);
            let file = part.direct.as_deref().filter(|_| direct);
            let trim = Some(&*part.trim).filter(|_| part.gate.trims(part.mode));
            let started = std::time::Instant::now();
            let r = write_piece(&part.file, file, trim, &part.cache_writer, &data, offset);
            part.gate
                .end(part.mode, direct, started, std::time::Instant::now());
            let r = r.and_then(|_| {
                let mut rec = part.record.lock().expect("record");
                rec.1.insert(index);
                let bytes = rec.1.to_bytes();
                rec.0.write_all_at(&bytes, 0)
            });
            crate::trace::disk_done(data.len() as u64);
            drop(data);
            JobDone::Input(match r {
                Ok(()) => {
                    crate::trace::add(&crate::trace::PIECES_WRITTEN, 1);
                    if direct {
                        crate::trace::add(&crate::trace::PIECES_DIRECT, 1);
                    }
                    cn::Input::PieceWritten { dl, index }
                }
                Err(e) => cn::Input::WriteFailed {
                    dl,
                    index,
                    reason: text(e),
                },
            })
        }
        Job::Finalize { dl, part } => JobDone::Input(match part.dir.finalize() {
            Ok(()) => cn::Input::Finalized { dl },
            Err(e) => cn::Input::FinalizeFailed {
                dl,
                reason: text(e),
            },
        }),
        Job::OpenShare { share, path } => JobDone::ShareOpened {
            share,
            opened: File::open(path).and_then(|f| {
                let len = f.metadata()?.len();
                Ok((Arc::new(f), len))
            }),
        },
        Job::ReadAhead { file, offset, len } => {
            // Only advice: a failure costs the writer a wait, nothing more.
            let _ = read_ahead(&file, offset, len);
            JobDone::Nothing
        }
        Job::SaveShares { dir, bytes } => {
            save_shares(&dir, &bytes);
            JobDone::Nothing
        }
    }
}

/// Test hook, never set in normal use: when this environment variable
/// holds a number of milliseconds, every piece write takes that much
/// longer, as on a device slower than the network. The end-to-end test of
/// the disk queue's bound (`bins/tests/walkthrough.rs`) sets it.
pub const TEST_WRITE_DELAY_ENV: &str = "P2P_TEST_WRITE_DELAY_MS";

/// The delay [`TEST_WRITE_DELAY_ENV`] asks for (read once).
fn test_write_delay() -> Option<std::time::Duration> {
    static DELAY: std::sync::OnceLock<Option<std::time::Duration>> = std::sync::OnceLock::new();
    *DELAY.get_or_init(|| {
        let ms = std::env::var(TEST_WRITE_DELAY_ENV).ok()?.parse().ok()?;
        Some(std::time::Duration::from_millis(ms))
    })
}

/// Asks the kernel to start reading `len` bytes at `offset` of `file`
/// into the page cache (`posix_fadvise` WILLNEED), so the writer's read
/// that follows rarely waits for the disk.
fn read_ahead(file: &File, offset: u64, len: u32) -> io::Result<()> {
    let len = std::num::NonZeroU64::new(u64::from(len));
    rustix::fs::fadvise(file, offset, len, rustix::fs::Advice::WillNeed)?;
    Ok(())
}

#[cfg(test)]
mod tests;
