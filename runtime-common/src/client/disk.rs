//! The client's disk side, the same for every runtime: plain blocking
//! file I/O that a driver runs off its machine loop (on worker threads, or
//! on smol's blocking pool).
//!
//! - [`hash_file`]: the piece hashes of a file to share, on every core,
//!   reading whole pieces with `pread`, and its file hash (the root of
//!   its piece hashes, [`file_root`]);
//! - [`prepare_dest`]: `<dest>.part` and its record of verified pieces
//!   (`<dest>.part.pieces`); on resume every piece the record claims is
//!   re-hashed, so a torn record can cost a piece, never a wrong byte;
//! - [`Job`] / [`run_job`]: one piece of disk work for the machine
//!   (prepare, positioned write + record, rename into place, checking a
//!   piece to serve is in its file and starting its read-ahead, saving the
//!   share table), and the input it produces;
//! - [`write_piece`]: pieces go to the part file through the page cache,
//!   each handed to writeback at once and its pages dropped soon after
//!   ([`CacheTrim`]: the cache holds a few MiB of a download, never the
//!   whole file, and a write waits for the device only every
//!   [`CACHE_TRIM_LAG`] pieces), or, when asked (`--direct-writes`), with
//!   `O_DIRECT` straight from the piece's buffer where the file system
//!   allows it (anything that does not fit the alignment rules takes the
//!   buffered write). README, "Writing pieces to disk", has the figures
//!   that chose the default;
//! - the share table (`DATA_DIR/shares`, format in
//!   [`p2p_state::client::shares`]): loaded at start (a damaged one is set
//!   aside as `shares.damaged`, never half-read), saved after a share
//!   succeeds, through a temporary file, both 0600 (the data directory's
//!   rule, [`crate::private`]).

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

/// Hashes a file to share: every piece's SHA-1, on every core, then the
/// file hash, [`file_root`] of the size, piece length and piece hashes.
pub fn hash_file(path: &Path, piece_len: u32) -> io::Result<FileMeta> {
    hash_file_with_progress(path, piece_len, &|_| {})
}

/// [`hash_file`], calling `progress` with the bytes hashed so far (from the
/// hashing threads, once per piece).
pub fn hash_file_with_progress(
    path: &Path,
    piece_len: u32,
    progress: &(dyn Fn(u64) + Sync),
) -> io::Result<FileMeta> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"))?;
    let name = p2p_proto::FileName::new(name)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    if size > p2p_proto::limits::FILE_LEN_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "file too large to share (12 GiB at most)",
        ));
    }
    let workers = thread::available_parallelism().map_or(2, |n| n.get());
    let piece_hashes = hash_pieces(&file, size, piece_len, workers, progress)?;
    Ok(FileMeta {
        name,
        size,
        piece_len,
        file_hash: file_root(size, piece_len, &piece_hashes),
        piece_hashes,
    })
}

/// The SHA-1 of every piece of the first `size` bytes of `file`, hashed by
/// `workers` threads that take the next piece as they finish one (whole
/// pieces read with `pread`, one piece buffer per thread: memory is
/// bounded by threads x piece, never by the file).
pub fn hash_pieces(
    file: &File,
    size: u64,
    piece_len: u32,
    workers: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> io::Result<Vec<Sha1Hash>> {
    let n = FileMeta::pieces_for(size, piece_len) as usize;
    let next = AtomicUsize::new(0);
    let done = AtomicU64::new(0);
    let work = || -> io::Result<Vec<(usize, Sha1Hash)>> {
        let mut buf = vec![0u8; (piece_len as u64).min(size) as usize];
        let mut out = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= n {
                return Ok(out);
            }
            let off = i as u64 * u64::from(piece_len);
            let len = (size - off).min(u64::from(piece_len)) as usize;
            if let Err(e) = file.read_exact_at(&mut buf[..len], off) {
                next.store(n, Ordering::Relaxed); // the others stop too
                return Err(e);
            }
            out.push((i, sha1(&buf[..len])));
            progress(done.fetch_add(len as u64, Ordering::Relaxed) + len as u64);
        }
    };
    let parts = thread::scope(|s| {
        let threads: Vec<_> = (0..workers.clamp(1, n.max(1)))
            .map(|_| s.spawn(work))
            .collect();
        threads
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| Err(io::Error::other("hashing thread panicked")))
            })
            .collect::<io::Result<Vec<_>>>()
    })?;
    let mut hashes = vec![Sha1Hash::default(); n];
    for (i, h) in parts.into_iter().flatten() {
        hashes[i] = h;
    }
    Ok(hashes)
}

/// A file of this client's shares, re-announced after a restart.
const SHARES_FILE: &str = "shares";

/// Paths behind the machine's ids (shares and download destinations),
/// filled by the handle and read by the machine loop.
#[derive(Debug, Default)]
pub struct Paths {
    pub shares: BTreeMap<u64, (PathBuf, GroupName)>,
    /// Each destination, and whether an existing file there may be
    /// replaced (`download_file ... --force`).
    pub dests: BTreeMap<u64, (PathBuf, bool)>,
    pub next: u64,
}

impl Paths {
    /// Share ids from the table and from the handle start here (the low
    /// ids are the machine's).
    pub fn new() -> Self {
        Paths {
            next: 1 << 32,
            ..Paths::default()
        }
    }

    /// A fresh id.
    pub fn next_id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }
}

/// Loads the share table (format: [`shares`]) and registers each share
/// whose file still has its size. A table that cannot be trusted whole
/// (damaged, or from an older version) is not half-read: it is renamed to
/// `shares.damaged`, a warning says so and what to do, and its path is
/// returned.
pub fn load_shares(
    dir: &Path,
    node: &mut ClientNode,
    paths: &Arc<Mutex<Paths>>,
) -> Option<PathBuf> {
    let table = dir.join(SHARES_FILE);
    let bytes = match fs::read(&table) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!("cannot read the share table {}: {e}", table.display());
            return None;
        }
    };
    let entries = match shares::decode(&bytes) {
        Ok(entries) => entries,
        Err(e) => {
            let aside = dir.join(format!("{SHARES_FILE}.damaged"));
            let moved = fs::rename(&table, &aside);
            tracing::warn!(
                "the share table {} was not read: {e}; {}; nothing is shared until you run upload_file again",
                table.display(),
                match moved {
                    Ok(()) => format!("it was set aside as {}", aside.display()),
                    Err(e) => format!("it could not be set aside ({e})"),
                },
            );
            return Some(aside);
        }
    };
    let mut p = paths.lock().expect("paths");
    for e in entries {
        let path = PathBuf::from(OsString::from_vec(e.path));
        // A file that changed since it was shared is not served.
        if fs::metadata(&path).map(|m| m.len()).ok() != Some(e.meta.size) {
            tracing::warn!(
                "{} changed since it was shared; not serving it",
                path.display()
            );
            continue;
        }
        let id = p.next_id();
        if node.add_local_share(ShareId::Upload(id), e.group.clone(), e.meta) {
            p.shares.insert(id, (path, e.group));
        }
    }
    None
}

/// The share table's bytes: every share the machine holds whose path is
/// known.
pub fn shares_bytes(node: &ClientNode, paths: &Mutex<Paths>) -> Vec<u8> {
    let p = paths.lock().expect("paths");
    let entries: Vec<ShareEntry> = node
        .shares()
        .filter_map(|(id, (group, meta))| {
            let (path, _) = p.shares.get(&id.upload()?)?;
            Some(ShareEntry {
                group: group.clone(),
                path: path.as_os_str().as_bytes().to_vec(),
                meta: meta.clone(),
            })
        })
        .collect();
    shares::encode(&entries)
}

fn save_shares(dir: &Path, bytes: &[u8]) {
    let tmp = dir.join(format!("{SHARES_FILE}.tmp"));
    let written = crate::private::write(&tmp, bytes);
    if let Err(e) = written.and_then(|_| fs::rename(&tmp, dir.join(SHARES_FILE))) {
        tracing::warn!(
            "could not save the share table in {}: {e}; shares will not be re-announced after a restart",
            dir.display()
        );
    }
}

/// An open download destination.
#[derive(Debug)]
pub struct DlFile {
    pub file: Arc<File>,
    /// The same file opened with `O_DIRECT`, when the file system allows
    /// it (see [`write_piece`]).
    pub direct: Option<Arc<File>>,
    /// Pieces written through the page cache, whose pages are dropped
    /// once written back (see [`CacheTrim`]).
    pub trim: Arc<CacheTrim>,
    pub part: PathBuf,
    pub dest: PathBuf,
    /// The directory it is written in, held open (see [`DestDir`]).
    pub dir: Arc<DestDir>,
    pub record: Arc<Mutex<(File, PieceSet)>>,
}

/// Disk work off the machine loop.
#[derive(Debug)]
pub enum Job {
    Prepare {
        dl: u64,
        dest: PathBuf,
        meta: FileMeta,
        /// Also open the part file with `O_DIRECT` (see [`write_piece`]).
        direct_io: bool,
        /// Replace an existing destination file.
        overwrite: bool,
    },
    Write {
        dl: u64,
        file: Arc<File>,
        direct: Option<Arc<File>>,
        trim: Arc<CacheTrim>,
        record: Arc<Mutex<(File, PieceSet)>>,
        index: u32,
        offset: u64,
        data: Bytes,
    },
    Finalize {
        dl: u64,
        dir: Arc<DestDir>,
    },
    /// A piece to serve: the file must hold its bytes; the connection's
    /// writer then sends them with `sendfile`.
    Serve {
        conn: u64,
        file: Arc<File>,
        index: u32,
        offset: u64,
        len: u32,
    },
    /// Replaces the share table in `dir` with `bytes` (see [`shares_bytes`]).
    SaveShares {
        dir: PathBuf,
        bytes: Vec<u8>,
    },
}

/// What a finished job tells the machine loop.
#[derive(Debug)]
pub enum JobDone {
    Input(cn::Input),
    /// A destination was opened (and its claimed pieces re-verified).
    Prepared {
        dl: u64,
        file: Box<DlFile>,
        have: PieceSet,
    },
    /// Nothing to report.
    Nothing,
}

fn text(e: impl std::fmt::Display) -> Text {
    Text::new(e.to_string())
}

/// Runs one job (blocking file I/O).
pub fn run_job(job: Job) -> JobDone {
    match job {
        Job::Prepare {
            dl,
            dest,
            meta,
            direct_io,
            overwrite,
        } => match prepare_dest(&dest, &meta, direct_io, overwrite) {
            Ok((file, have)) => JobDone::Prepared {
                dl,
                file: Box::new(file),
                have,
            },
            Err(e) => JobDone::Input(cn::Input::DestFailed {
                dl,
                reason: text(e),
            }),
        },
        Job::Write {
            dl,
            file,
            direct,
            trim,
            record,
            index,
            offset,
            data,
        } => {
            if let Some(d) = test_write_delay() {
                thread::sleep(d);
            }
            let r =
                write_piece(&file, direct.as_deref(), Some(&trim), &data, offset).and_then(|_| {
                    let mut rec = record.lock().expect("record");
                    rec.1.insert(index);
                    let bytes = rec.1.to_bytes();
                    rec.0.write_all_at(&bytes, 0)
                });
            crate::trace::disk_done(data.len() as u64);
            drop(data);
            JobDone::Input(match r {
                Ok(()) => {
                    crate::trace::add(&crate::trace::PIECES_WRITTEN, 1);
                    cn::Input::PieceWritten { dl, index }
                }
                Err(e) => cn::Input::WriteFailed {
                    dl,
                    index,
                    reason: text(e),
                },
            })
        }
        Job::Finalize { dl, dir } => JobDone::Input(match dir.finalize() {
            Ok(()) => cn::Input::Finalized { dl },
            Err(e) => cn::Input::FinalizeFailed {
                dl,
                reason: text(e),
            },
        }),
        Job::Serve {
            conn,
            file,
            index,
            offset,
            len,
        } => JobDone::Input(match check_serve(&file, offset, len) {
            Ok(()) => cn::Input::PieceInFile { conn, index },
            Err(_) => cn::Input::ReadFailed { conn, index },
        }),
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

/// A download written through the page cache waits for the device
/// (`fdatasync`) after this many pieces, then drops the pages written
/// ([`CacheTrim`]): 16 MiB at 512 KiB pieces.
pub const CACHE_TRIM_LAG: usize = 32;

/// Keeps a download written through the page cache from filling it, and
/// the device busy from the first piece: each piece written is handed to
/// the kernel's writeback at once (`posix_fadvise(DONTNEED)` on dirty
/// pages starts their writeback, and drops those already clean); every
/// [`CACHE_TRIM_LAG`] pieces, one disk worker waits for the file's
/// writeback (`fdatasync`, by then mostly done) and drops the file's
/// clean pages. So the cache holds about [`CACHE_TRIM_LAG`] pieces of a
/// download whatever its size and whatever the device's speed, and a
/// slow device slows the writes instead of filling memory. Shared by
/// the disk workers of one download.
#[derive(Debug, Default)]
pub struct CacheTrim {
    /// Pieces written since the last wait.
    since: AtomicUsize,
    /// Held by the worker waiting for writeback (one at a time).
    waiting: Mutex<()>,
}

impl CacheTrim {
    /// `len` bytes at `offset` of `file` were just written through the cache.
    pub fn written(&self, file: &File, offset: u64, len: u64) -> io::Result<()> {
        let drop_pages = |off: u64, len: u64| {
            rustix::fs::fadvise(
                file,
                off,
                std::num::NonZeroU64::new(len),
                rustix::fs::Advice::DontNeed,
            )
        };
        drop_pages(offset, len)?;
        if self.since.fetch_add(1, Ordering::AcqRel) + 1 < CACHE_TRIM_LAG {
            return Ok(());
        }
        // Another worker is already waiting: it will catch this too.
        let Ok(_w) = self.waiting.try_lock() else {
            return Ok(());
        };
        self.since.store(0, Ordering::Release);
        file.sync_data()?;
        drop_pages(0, 0)?;
        Ok(())
    }

    /// Pieces written since the last wait for the device.
    pub fn pending(&self) -> usize {
        self.since.load(Ordering::Acquire)
    }
}

/// Writes `data` at `offset` of a part file: through `direct` (the file
/// opened with `O_DIRECT`) when offset and length are multiples of
/// [`DIRECT_ALIGN`] (every whole piece; a buffer that is not aligned is
/// copied into an aligned pooled one first), otherwise, or if the direct write
/// is refused as invalid, through the ordinary `file`, then handed to
/// `trim` if given (see [`CacheTrim`]).
pub fn write_piece(
    file: &File,
    direct: Option<&File>,
    trim: Option<&CacheTrim>,
    data: &[u8],
    offset: u64,
) -> io::Result<()> {
    let fits =
        data.len().is_multiple_of(DIRECT_ALIGN) && offset.is_multiple_of(DIRECT_ALIGN as u64);
    if let Some(d) = direct.filter(|_| fits && !data.is_empty()) {
        let r = if data.as_ptr().align_offset(DIRECT_ALIGN) == 0 {
            d.write_all_at(data, offset)
        } else {
            let mut buf = buffers::take(data.len() + DIRECT_ALIGN);
            let at = buffers::aligned_start(&buf, 0);
            buf[at..at + data.len()].copy_from_slice(data);
            let r = d.write_all_at(&buf[at..at + data.len()], offset);
            buffers::give_back(buf);
            r
        };
        match r {
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {}
            r => return r,
        }
    }
    file.write_all_at(data, offset)?;
    match trim {
        Some(t) => t.written(file, offset, data.len() as u64),
        None => Ok(()),
    }
}

/// Checks that `file` holds `len` bytes at `offset`, and asks the kernel
/// to start reading them into the page cache (`posix_fadvise` WILLNEED),
/// so the `sendfile` that follows rarely waits for the disk (on smol it
/// runs on an executor thread).
fn check_serve(file: &File, offset: u64, len: u32) -> io::Result<()> {
    let end = offset + u64::from(len);
    if file.metadata()?.len() < end {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let len = std::num::NonZeroU64::new(u64::from(len));
    rustix::fs::fadvise(file, offset, len, rustix::fs::Advice::WillNeed)?;
    Ok(())
}

pub fn part_path(dest: &Path) -> PathBuf {
    let mut s = dest.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

pub fn record_path(part: &Path) -> PathBuf {
    let mut s = part.as_os_str().to_owned();
    s.push(".pieces");
    PathBuf::from(s)
}

/// Why a download's destination could not be prepared or put in place.
/// The text says what happened and what to do.
#[derive(Debug, thiserror::Error)]
pub enum DestError {
    #[error(
        "{} already exists; add --force to replace it, or choose another destination",
        path.display()
    )]
    Exists { path: PathBuf },
    #[error(
        "{} is {kind}, not a regular file; refusing to write through it (remove it, or choose another destination)",
        path.display()
    )]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error(
        "{} has other hard links; refusing to write into it (remove it, or choose another destination)",
        path.display()
    )]
    Linked { path: PathBuf },
    #[error(
        "{} belongs to another user; refusing to write into it (remove it, or choose another destination)",
        path.display()
    )]
    NotOwned { path: PathBuf },
    #[error(
        "not enough free space in {}: the file needs {} more, {} are free; free some space or choose another destination",
        dir.display(),
        crate::cli::bytes(*need),
        crate::cli::bytes(*free)
    )]
    NoSpace { dir: PathBuf, need: u64, free: u64 },
    #[error("{} has no file name; name the file to write", path.display())]
    NoName { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

impl DestError {
    fn io(path: &Path, e: impl Into<io::Error>) -> Self {
        DestError::Io {
            path: path.to_path_buf(),
            source: e.into(),
        }
    }
}

/// The directory a download is written in, held open: every file of the
/// download (`<name>.part`, `<name>.part.pieces`, `<name>`) is opened,
/// renamed and removed relative to it, never by a path that a planted
/// symbolic link could redirect.
#[derive(Debug)]
pub struct DestDir {
    fd: OwnedFd,
    /// The directory's path, for messages.
    path: PathBuf,
    /// The destination's file name.
    name: OsString,
    /// Replace an existing destination file (`download_file ... --force`).
    overwrite: bool,
}

impl DestDir {
    /// Opens the directory of `dest`.
    pub fn open(dest: &Path, overwrite: bool) -> Result<Self, DestError> {
        let name = dest
            .file_name()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| DestError::NoName {
                path: dest.to_path_buf(),
            })?
            .to_owned();
        let path = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let fd =
            rustix::fs::open(&path, flags, Mode::empty()).map_err(|e| DestError::io(&path, e))?;
        Ok(DestDir {
            fd,
            path,
            name,
            overwrite,
        })
    }

    fn named(&self, suffix: &str) -> OsString {
        let mut n = self.name.clone();
        n.push(suffix);
        n
    }

    fn shown(&self, name: &OsStr) -> PathBuf {
        self.path.join(name)
    }

    /// Refuses an existing destination unless asked to replace it, and
    /// never replaces a directory.
    fn check_dest(&self) -> Result<(), DestError> {
        let path = self.shown(&self.name);
        match rustix::fs::statat(&self.fd, self.name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(DestError::io(&path, e)),
            Ok(st) => {
                let kind = rustix::fs::FileType::from_raw_mode(st.st_mode as _);
                if kind == rustix::fs::FileType::Directory {
                    Err(DestError::NotRegular {
                        path,
                        kind: "a directory",
                    })
                } else if self.overwrite {
                    Ok(())
                } else {
                    Err(DestError::Exists { path })
                }
            }
        }
    }

    /// Creates `name` in the directory (`O_CREAT | O_EXCL | O_NOFOLLOW`),
    /// or reopens it if it exists, only if it is a regular file of this
    /// user's with no other links (`O_NOFOLLOW`, then checked on the open
    /// descriptor). `true` with the file when it was created.
    fn open_file(&self, name: &OsStr) -> Result<(File, bool), DestError> {
        let path = self.shown(name);
        // O_NONBLOCK: opening a planted FIFO must not wait for a writer
        // (cleared again below on the regular file this must be).
        let flags =
            OFlags::RDWR | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::NONBLOCK;
        let create = flags | OFlags::CREATE | OFlags::EXCL;
        let (fd, created) =
            match rustix::fs::openat(&self.fd, name, create, Mode::from_raw_mode(0o666)) {
                Ok(fd) => (fd, true),
                Err(rustix::io::Errno::EXIST) => {
                    match rustix::fs::openat(&self.fd, name, flags, Mode::empty()) {
                        Ok(fd) => (fd, false),
                        Err(rustix::io::Errno::LOOP) => {
                            return Err(DestError::NotRegular {
                                path,
                                kind: "a symbolic link",
                            });
                        }
                        Err(rustix::io::Errno::ISDIR) => {
                            return Err(DestError::NotRegular {
                                path,
                                kind: "a directory",
                            });
                        }
                        Err(rustix::io::Errno::NXIO) => {
                            return Err(DestError::NotRegular {
                                path,
                                kind: "a socket or device",
                            });
                        }
                        Err(e) => return Err(DestError::io(&path, e)),
                    }
                }
                Err(e) => return Err(DestError::io(&path, e)),
            };
        let file = File::from(fd);
        let meta = file.metadata().map_err(|e| DestError::io(&path, e))?;
        let ft = meta.file_type();
        if !ft.is_file() {
            let kind = if ft.is_fifo() {
                "a FIFO"
            } else if ft.is_dir() {
                "a directory"
            } else {
                "a socket or device"
            };
            return Err(DestError::NotRegular { path, kind });
        }
        // A file this call created is ours whatever the file system says
        // its owner is (root on NFS with root_squash).
        if !created && meta.nlink() > 1 {
            return Err(DestError::Linked { path });
        }
        if !created && meta.uid() != rustix::process::geteuid().as_raw() {
            return Err(DestError::NotOwned { path });
        }
        let fl = rustix::fs::fcntl_getfl(&file).map_err(|e| DestError::io(&path, e))?;
        rustix::fs::fcntl_setfl(&file, fl - OFlags::NONBLOCK)
            .map_err(|e| DestError::io(&path, e))?;
        Ok((file, created))
    }

    /// The part file opened again with `O_DIRECT` (and `O_NOFOLLOW`),
    /// only if it is still the very file `file` is; `None` where the
    /// file system refuses `O_DIRECT` (tmpfs before Linux 6.6, some FUSE
    /// file systems).
    fn open_direct(&self, name: &OsStr, file: &File) -> Option<File> {
        let flags = OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::DIRECT;
        let direct = File::from(rustix::fs::openat(&self.fd, name, flags, Mode::empty()).ok()?);
        let (a, b) = (file.metadata().ok()?, direct.metadata().ok()?);
        ((a.dev(), a.ino()) == (b.dev(), b.ino())).then_some(direct)
    }

    /// Sets the part file's length to `size`, allocating its blocks up
    /// front (`fallocate`), after checking the file system has room for
    /// what is not allocated yet: a full disk is reported before anything
    /// is fetched. File systems without `fallocate` get a sparse file.
    fn allocate(&self, file: &File, size: u64) -> Result<(), DestError> {
        let part = self.shown(&self.named(".part"));
        let meta = file.metadata().map_err(|e| DestError::io(&part, e))?;
        let need = size.saturating_sub(meta.blocks().saturating_mul(512));
        let vfs = rustix::fs::fstatvfs(&self.fd).map_err(|e| DestError::io(&self.path, e))?;
        let free = (vfs.f_bavail as u64).saturating_mul(vfs.f_frsize as u64);
        check_space(&self.path, need, free)?;
        if meta.len() > size {
            file.set_len(size).map_err(|e| DestError::io(&part, e))?;
        }
        if size == 0 {
            return Ok(());
        }
        match rustix::fs::fallocate(file, FallocateFlags::empty(), 0, size) {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::NOSPC) => Err(DestError::NoSpace {
                dir: self.path.clone(),
                need,
                free,
            }),
            Err(_) if meta.len() == size => Ok(()),
            Err(_) => file.set_len(size).map_err(|e| DestError::io(&part, e)),
        }
    }

    /// Puts the finished part file in place: renamed within the directory
    /// (a rename never follows a link), never over an existing file unless
    /// asked to (`RENAME_NOREPLACE`, or a check just before on file
    /// systems without it); then removes the piece record.
    pub fn finalize(&self) -> Result<(), DestError> {
        let part = self.named(".part");
        let dest = self.name.as_os_str();
        let r = if self.overwrite {
            rustix::fs::renameat(&self.fd, &part, &self.fd, dest)
        } else {
            match rustix::fs::renameat_with(&self.fd, &part, &self.fd, dest, RenameFlags::NOREPLACE)
            {
                Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
                    self.check_dest()?;
                    rustix::fs::renameat(&self.fd, &part, &self.fd, dest)
                }
                r => r,
            }
        };
        match r {
            Ok(()) => {}
            Err(rustix::io::Errno::EXIST) => {
                return Err(DestError::Exists {
                    path: self.shown(dest),
                });
            }
            Err(e) => return Err(DestError::io(&self.shown(&part), e)),
        }
        let _ = rustix::fs::unlinkat(&self.fd, self.named(".part.pieces"), AtFlags::empty());
        Ok(())
    }
}

/// The free-space rule: a download starts only if the file system has at
/// least the bytes the part file still lacks (`need <= free`).
fn check_space(dir: &Path, need: u64, free: u64) -> Result<(), DestError> {
    if need > free {
        return Err(DestError::NoSpace {
            dir: dir.to_path_buf(),
            need,
            free,
        });
    }
    Ok(())
}

/// Opens or creates `<dest>.part` and its record, both relative to the
/// destination's directory and never through a symbolic link or into a
/// file that is not this user's own regular file (see
/// [`DestDir::open_file`]); refuses an existing destination unless
/// `overwrite`; checks free space and allocates the part file; re-hashes
/// every piece the record claims, keeping only those that verify. With
/// `direct_io`, also opens the part file with `O_DIRECT` where the file
/// system allows it.
pub fn prepare_dest(
    dest: &Path,
    meta: &FileMeta,
    direct_io: bool,
    overwrite: bool,
) -> Result<(DlFile, PieceSet), DestError> {
    let dir = DestDir::open(dest, overwrite)?;
    dir.check_dest()?;
    let part_name = dir.named(".part");
    let part = dir.shown(&part_name);
    let rec_name = dir.named(".part.pieces");
    let rec_path = dir.shown(&rec_name);
    let (file, fresh) = dir.open_file(&part_name)?;
    let (mut rec, _) = dir.open_file(&rec_name)?;
    dir.allocate(&file, meta.size)?;
    let mut claimed_bytes = Vec::new();
    if !fresh {
        rec.read_to_end(&mut claimed_bytes)
            .map_err(|e| DestError::io(&rec_path, e))?;
    }
    let claimed = PieceSet::from_bytes(Bytes::from(claimed_bytes))
        .ok()
        .filter(|s| s.len() == meta.piece_count())
        .unwrap_or_else(|| PieceSet::empty(meta.piece_count()));
    let mut have = PieceSet::empty(meta.piece_count());
    let mut buf = vec![0u8; meta.piece_len as usize];
    for i in claimed.iter() {
        let len = meta.piece_size(i) as usize;
        if file
            .read_exact_at(&mut buf[..len], meta.piece_offset(i))
            .is_ok()
            && sha1(&buf[..len]) == meta.piece_hashes[i as usize]
        {
            have.insert(i);
        }
    }
    rec.set_len(0).map_err(|e| DestError::io(&rec_path, e))?;
    rec.write_all_at(&have.to_bytes(), 0)
        .map_err(|e| DestError::io(&rec_path, e))?;
    let direct = direct_io
        .then(|| dir.open_direct(&part_name, &file))
        .flatten()
        .map(Arc::new);
    let dl = DlFile {
        file: Arc::new(file),
        direct,
        trim: Arc::default(),
        part,
        dest: dest.to_path_buf(),
        dir: Arc::new(dir),
        record: Arc::new(Mutex::new((rec, have.clone()))),
    };
    Ok((dl, have))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// The definition, one piece after the other from the bytes in memory.
    fn sequential(data: &[u8], piece_len: u32) -> (Vec<Sha1Hash>, Sha1Hash) {
        let pieces: Vec<Sha1Hash> = data.chunks(piece_len as usize).map(sha1).collect();
        let root = file_root(data.len() as u64, piece_len, &pieces);
        (pieces, root)
    }

    fn file_of(dir: &Path, len: usize) -> (PathBuf, Vec<u8>) {
        let data: Vec<u8> = (0..len as u64)
            .map(|i| (i.wrapping_mul(0x9e37_79b9) >> 7) as u8)
            .collect();
        let path = dir.join(format!("f-{len}.bin"));
        File::create(&path).unwrap().write_all(&data).unwrap();
        (path, data)
    }

    #[test]
    fn parallel_hashing_matches_the_sequential_definition() {
        let dir = tempfile::tempdir().unwrap();
        for piece_len in [1024u32, p2p_proto::limits::PIECE_LEN] {
            let p = piece_len as usize;
            for len in [0, 1, p - 1, p, p + 1, 5 * p + 17] {
                let (path, data) = file_of(dir.path(), len);
                let (pieces, root) = sequential(&data, piece_len);
                let file = File::open(&path).unwrap();
                for workers in [1, 2, 3, 8] {
                    let got = hash_pieces(&file, len as u64, piece_len, workers, &|_| {}).unwrap();
                    assert_eq!(got, pieces, "len {len}, piece {p}, {workers} threads");
                }
                let meta = hash_file(&path, piece_len).unwrap();
                assert_eq!(meta.piece_hashes, pieces, "len {len}, piece {p}");
                assert_eq!(meta.file_hash, root, "len {len}, piece {p}");
                assert_eq!((meta.size, meta.piece_len), (len as u64, piece_len));
                meta.validate().unwrap();
            }
        }
    }

    /// The destination gets every byte exactly, whichever way each piece
    /// goes: an aligned whole piece (straight from its buffer with
    /// `O_DIRECT`), a whole piece whose buffer is not aligned (copied to
    /// an aligned one first), and a short last piece (the buffered file).
    #[test]
    fn pieces_land_byte_exact_through_direct_and_buffered_writes() {
        let dir = tempfile::tempdir().unwrap();
        let piece = 64 * 1024usize;
        let size = 3 * piece + 1000;
        let data: Vec<u8> = (0..size as u32).map(|i| (i % 251) as u8).collect();
        let pieces: Vec<Sha1Hash> = data.chunks(piece).map(sha1).collect();
        let meta = FileMeta {
            name: p2p_proto::FileName::new("f.bin").unwrap(),
            size: size as u64,
            piece_len: piece as u32,
            file_hash: file_root(size as u64, piece as u32, &pieces),
            piece_hashes: pieces,
        };
        let dest = dir.path().join("f.bin");
        let (dl, have) = prepare_dest(&dest, &meta, true, false).unwrap();
        assert!(have.is_empty());
        // Asked not to, it never opens the file with O_DIRECT.
        let (buffered, _) = prepare_dest(&dir.path().join("g.bin"), &meta, false, false).unwrap();
        assert!(buffered.direct.is_none());
        // Where the file system has O_DIRECT (ext4, xfs, btrfs: the CI
        // machine's /tmp), it is used.
        if dl.direct.is_none() {
            eprintln!(
                "note: no O_DIRECT on {}; buffered only",
                dir.path().display()
            );
        }
        let direct = dl.direct.as_deref();
        // Piece 0 from an aligned pooled buffer.
        let mut buf = buffers::take(piece + DIRECT_ALIGN);
        let at = buffers::aligned_start(&buf, 0);
        buf[at..at + piece].copy_from_slice(&data[..piece]);
        let aligned = buffers::freeze(buf, at..at + piece);
        assert_eq!(aligned.as_ptr().align_offset(DIRECT_ALIGN), 0);
        write_piece(&dl.file, direct, None, &aligned, 0).unwrap();
        // Piece 2, then piece 1, from buffers one byte off alignment.
        for i in [2usize, 1] {
            let mut v = vec![0u8; piece + 1];
            let off = usize::from(v.as_ptr().align_offset(DIRECT_ALIGN) == 0);
            v[off..off + piece].copy_from_slice(&data[i * piece..(i + 1) * piece]);
            let unaligned = &v[off..off + piece];
            assert_ne!(unaligned.as_ptr().align_offset(DIRECT_ALIGN), 0);
            write_piece(&dl.file, direct, None, unaligned, (i * piece) as u64).unwrap();
        }
        // The short tail.
        let tail = &data[3 * piece..];
        write_piece(&dl.file, direct, Some(&dl.trim), tail, (3 * piece) as u64).unwrap();
        assert_eq!(fs::read(&dl.part).unwrap(), data);
    }

    /// Buffered writes handed to a [`CacheTrim`] land byte-exact, and it
    /// waits for the device every [`CACHE_TRIM_LAG`] pieces.
    #[test]
    fn cache_trim_keeps_the_bytes_and_at_most_its_lag() {
        let dir = tempfile::tempdir().unwrap();
        let piece = 4096;
        let n = CACHE_TRIM_LAG + 5;
        let data: Vec<u8> = (0..n * piece).map(|i| (i % 253) as u8).collect();
        let path = dir.path().join("f");
        let file = File::create(&path).unwrap();
        let trim = CacheTrim::default();
        for (i, chunk) in data.chunks(piece).enumerate().rev() {
            write_piece(&file, None, Some(&trim), chunk, (i * piece) as u64).unwrap();
            assert!(trim.pending() < CACHE_TRIM_LAG);
        }
        assert_eq!(trim.pending(), 5, "waited once, after {CACHE_TRIM_LAG}");
        assert_eq!(fs::read(&path).unwrap(), data);
    }

    /// A small file's metadata (pieces of 1 KiB).
    fn meta_of(data: &[u8]) -> FileMeta {
        let pieces: Vec<Sha1Hash> = data.chunks(1024).map(sha1).collect();
        FileMeta {
            name: p2p_proto::FileName::new("f.bin").unwrap(),
            size: data.len() as u64,
            piece_len: 1024,
            file_hash: file_root(data.len() as u64, 1024, &pieces),
            piece_hashes: pieces,
        }
    }

    /// A symbolic link planted as `<dest>.part` or `<dest>.part.pieces`
    /// (pointing at a victim file) is refused with an error that names it;
    /// the victim keeps every byte.
    #[test]
    fn planted_symlinks_are_refused_and_the_victim_is_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let meta = meta_of(&[7u8; 5000]);
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious bytes").unwrap();
        for suffix in [".part", ".part.pieces"] {
            let dest = dir.path().join(format!("d{}.bin", suffix.len()));
            let trap = PathBuf::from(format!("{}{suffix}", dest.display()));
            std::os::unix::fs::symlink(&victim, &trap).unwrap();
            let err = prepare_dest(&dest, &meta, false, false).unwrap_err();
            assert!(
                matches!(&err, DestError::NotRegular { path, kind: "a symbolic link" } if *path == trap),
                "{err:?}"
            );
            assert!(err.to_string().contains("refusing"), "{err}");
            assert_eq!(fs::read(&victim).unwrap(), b"precious bytes");
        }
    }

    /// A FIFO (opening it must not hang), a directory, a file with another
    /// hard link: none is written into.
    #[test]
    fn part_files_that_are_not_plain_files_of_ours_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let meta = meta_of(&[7u8; 5000]);
        let d = rustix::fs::open(dir.path(), OFlags::DIRECTORY, Mode::empty()).unwrap();
        rustix::fs::mknodat(
            &d,
            "fifo.bin.part",
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let err = prepare_dest(&dir.path().join("fifo.bin"), &meta, false, false).unwrap_err();
        assert!(
            matches!(err, DestError::NotRegular { kind: "a FIFO", .. }),
            "{err:?}"
        );
        fs::create_dir(dir.path().join("dir.bin.part")).unwrap();
        let err = prepare_dest(&dir.path().join("dir.bin"), &meta, false, false).unwrap_err();
        assert!(
            matches!(
                err,
                DestError::NotRegular {
                    kind: "a directory",
                    ..
                }
            ),
            "{err:?}"
        );
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        fs::hard_link(&victim, dir.path().join("hl.bin.part")).unwrap();
        let err = prepare_dest(&dir.path().join("hl.bin"), &meta, false, false).unwrap_err();
        assert!(matches!(err, DestError::Linked { .. }), "{err:?}");
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        // Another user's file (only root can make one here).
        let theirs = dir.path().join("theirs.bin.part");
        fs::write(&theirs, b"planted").unwrap();
        if std::os::unix::fs::chown(&theirs, Some(54321), None).is_ok() {
            let err =
                prepare_dest(&dir.path().join("theirs.bin"), &meta, false, false).unwrap_err();
            assert!(matches!(err, DestError::NotOwned { .. }), "{err:?}");
            assert_eq!(fs::read(&theirs).unwrap(), b"planted");
        } else {
            eprintln!("note: not root; another user's part file not tried");
        }
    }

    /// An existing destination is kept unless asked to replace it, both
    /// when the download starts and when it is put in place; a part file
    /// left by an earlier run (a regular file of ours) is resumed.
    #[test]
    fn an_existing_destination_is_replaced_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let meta = meta_of(&data);
        let dest = dir.path().join("f.bin");
        fs::write(&dest, b"mine").unwrap();
        let err = prepare_dest(&dest, &meta, false, false).unwrap_err();
        assert!(
            matches!(&err, DestError::Exists { path } if *path == dest),
            "{err:?}"
        );
        assert!(err.to_string().contains("--force"), "{err}");
        assert!(!part_path(&dest).exists(), "nothing created");
        // Started while the destination was free; someone puts a file
        // there before the end: it is kept, the download fails.
        fs::remove_file(&dest).unwrap();
        let (dl, _) = prepare_dest(&dest, &meta, false, false).unwrap();
        dl.file.write_all_at(&data, 0).unwrap();
        fs::write(&dest, b"mine").unwrap();
        assert!(matches!(dl.dir.finalize(), Err(DestError::Exists { .. })));
        assert_eq!(fs::read(&dest).unwrap(), b"mine");
        // Resumed (the part file is reopened) with --force: replaced.
        let (dl, _) = prepare_dest(&dest, &meta, false, true).unwrap();
        assert_eq!(
            fs::read(&dl.part).unwrap(),
            data,
            "the part file was resumed"
        );
        dl.dir.finalize().unwrap();
        assert_eq!(fs::read(&dest).unwrap(), data);
        assert!(!part_path(&dest).exists());
        assert!(!record_path(&part_path(&dest)).exists());
        // A directory is never replaced.
        fs::create_dir(dir.path().join("d.bin")).unwrap();
        let err = prepare_dest(&dir.path().join("d.bin"), &meta, false, true).unwrap_err();
        assert!(
            matches!(
                err,
                DestError::NotRegular {
                    kind: "a directory",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    /// The part file gets its full length up front, and the free-space
    /// rule holds at its bound: exactly the free space is enough, one
    /// byte more is refused with a message saying what to do.
    #[test]
    fn space_is_checked_and_allocated_before_fetching() {
        let dir = tempfile::tempdir().unwrap();
        let meta = meta_of(&[1u8; 5000]);
        let (dl, _) = prepare_dest(&dir.path().join("f.bin"), &meta, false, false).unwrap();
        assert_eq!(dl.file.metadata().unwrap().len(), 5000);
        assert!(check_space(dir.path(), 1000, 1000).is_ok());
        let err = check_space(dir.path(), 1001, 1000).unwrap_err();
        assert!(matches!(
            err,
            DestError::NoSpace {
                need: 1001,
                free: 1000,
                ..
            }
        ));
        assert!(err.to_string().contains("free some space"), "{err}");
        // A file larger than the file system's free space is refused
        // before anything is written.
        let vfs = rustix::fs::statvfs(dir.path()).unwrap();
        let free = (vfs.f_bavail as u64).saturating_mul(vfs.f_frsize as u64);
        let mut huge = meta.clone();
        huge.size = free + (1 << 30);
        let dest = dir.path().join("huge.bin");
        let err = prepare_dest(&dest, &huge, false, false).unwrap_err();
        assert!(matches!(err, DestError::NoSpace { .. }), "{err:?}");
        assert_eq!(fs::metadata(part_path(&dest)).unwrap().len(), 0);
    }

    fn node() -> ClientNode {
        use p2p_state::client::node::ClientConfig;
        use p2p_state::client::session::SessionConfig;
        let addr = "127.0.0.1:9".parse().unwrap();
        let cfg = ClientConfig {
            session: SessionConfig::new(vec![addr], 0),
            seeder: Default::default(),
            download: Default::default(),
            seeder_addr: None,
        };
        ClientNode::new(cfg, 1, p2p_state::Instant(0))
    }

    /// A shared file whose name holds a newline and a tab (what forged a
    /// second record in the old line format) is saved and loaded back
    /// with its exact path, and nothing else appears.
    #[test]
    fn share_table_round_trips_any_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let data = vec![5u8; 3000];
        let path = dir.path().join("evil\ng1\trel.bin\t00");
        fs::write(&path, &data).unwrap();
        let mut meta = hash_file(&path, 1024).unwrap_or_else(|_| meta_of(&data));
        meta.name = p2p_proto::FileName::new("evil.bin").unwrap();
        let (mut a, paths) = (node(), Arc::new(Mutex::new(Paths::new())));
        let group = GroupName::new("g1").unwrap();
        assert!(a.add_local_share(ShareId::Upload(7), group.clone(), meta.clone()));
        paths
            .lock()
            .unwrap()
            .shares
            .insert(7, (path.clone(), group.clone()));
        save_shares(dir.path(), &shares_bytes(&a, &paths));
        let (mut b, paths) = (node(), Arc::new(Mutex::new(Paths::new())));
        assert_eq!(load_shares(dir.path(), &mut b, &paths), None);
        let loaded: Vec<_> = paths.lock().unwrap().shares.values().cloned().collect();
        assert_eq!(loaded, vec![(path, group)]);
        assert_eq!(b.shares().count(), 1);
    }

    /// The share table (where this client's files are) and its temporary
    /// file are 0600 with the usual umask, even over a loose stale
    /// temporary file.
    #[test]
    fn the_share_table_is_owner_only() {
        rustix::process::umask(Mode::from_raw_mode(0o022));
        let dir = tempfile::tempdir().unwrap();
        let (a, paths) = (node(), Arc::new(Mutex::new(Paths::new())));
        save_shares(dir.path(), &shares_bytes(&a, &paths));
        let mode = |n: &str| crate::private::mode_of(&dir.path().join(n)).unwrap();
        assert_eq!(mode(SHARES_FILE), 0o600);
        fs::remove_file(dir.path().join(SHARES_FILE)).unwrap();
        let tmp = dir.path().join(format!("{SHARES_FILE}.tmp"));
        fs::write(&tmp, b"stale").unwrap();
        fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        save_shares(dir.path(), &shares_bytes(&a, &paths));
        assert_eq!(mode(SHARES_FILE), 0o600);
    }

    /// A damaged table, and one in the old line format, are set aside as
    /// `shares.damaged` and nothing in them is trusted.
    #[test]
    fn a_damaged_share_table_is_set_aside_whole() {
        let dir = tempfile::tempdir().unwrap();
        let data = vec![5u8; 3000];
        let path = dir.path().join("a.bin");
        fs::write(&path, &data).unwrap();
        let meta = hash_file(&path, 1024).unwrap();
        let (mut a, paths) = (node(), Arc::new(Mutex::new(Paths::new())));
        let group = GroupName::new("g1").unwrap();
        assert!(a.add_local_share(ShareId::Upload(7), group.clone(), meta.clone()));
        paths
            .lock()
            .unwrap()
            .shares
            .insert(7, (path.clone(), group));
        let mut good = shares_bytes(&a, &paths);
        let last = good.len() - 1;
        good[last] ^= 1;
        let hex: String = meta.to_bytes().iter().map(|b| format!("{b:02x}")).collect();
        let old = format!("g1\t{}\t{hex}\n", path.display()).into_bytes();
        for table in [good, old] {
            fs::write(dir.path().join(SHARES_FILE), &table).unwrap();
            let (mut b, paths) = (node(), Arc::new(Mutex::new(Paths::new())));
            let aside = load_shares(dir.path(), &mut b, &paths).expect("set aside");
            assert_eq!(aside, dir.path().join("shares.damaged"));
            assert_eq!(fs::read(&aside).unwrap(), table, "kept as it was");
            assert!(!dir.path().join(SHARES_FILE).exists());
            assert!(paths.lock().unwrap().shares.is_empty());
            assert_eq!(b.shares().count(), 0);
        }
    }

    /// A piece to serve is checked against the file's length (a file
    /// that shrank since it was shared is a failed read, never a short
    /// piece); the bytes themselves go later, with `sendfile`.
    #[test]
    fn serving_checks_the_file_holds_the_piece() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = file_of(dir.path(), 10_000);
        let file = Arc::new(File::open(&path).unwrap());
        let serve = |offset: u64, len: u32| {
            let job = Job::Serve {
                conn: 3,
                file: file.clone(),
                index: 1,
                offset,
                len,
            };
            match run_job(job) {
                JobDone::Input(i) => i,
                other => panic!("{other:?}"),
            }
        };
        assert!(matches!(
            serve(5_000, 5_000),
            cn::Input::PieceInFile { conn: 3, index: 1 }
        ));
        assert!(matches!(
            serve(5_000, 5_001),
            cn::Input::ReadFailed { conn: 3, index: 1 }
        ));
    }

    #[test]
    fn progress_reaches_the_size_and_a_short_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = file_of(dir.path(), 10 * 1024 + 5);
        let max = AtomicU64::new(0);
        hash_file_with_progress(&path, 1024, &|n| {
            max.fetch_max(n, Ordering::Relaxed);
        })
        .unwrap();
        assert_eq!(max.load(Ordering::Relaxed), 10 * 1024 + 5);
        // The file is shorter than the size asked for: an error, not a
        // hash of zeros.
        let file = File::open(&path).unwrap();
        let r = hash_pieces(&file, 20 * 1024, 1024, 2, &|_| {});
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }
}
