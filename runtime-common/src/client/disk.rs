//! The client's disk side, the same for every runtime: plain blocking
//! file I/O that a driver runs off its machine loop (on worker threads, or
//! on smol's blocking pool).
//!
//! - [`hash_file`]: piece and whole-file SHA-1 of a file to share, on every
//!   core, reading with `pread`;
//! - [`prepare_dest`]: `<dest>.part` and its record of verified pieces
//!   (`<dest>.part.pieces`); on resume every piece the record claims is
//!   re-hashed, so a torn record can cost a piece, never a wrong byte;
//! - [`Job`] / [`run_job`]: one piece of disk work for the machine
//!   (prepare, positioned write + record, whole-file hash, rename into
//!   place, positioned read for the seeder, saving the share table), and
//!   the input it produces;
//! - the share table (`DATA_DIR/shares`): loaded at start, saved after a
//!   share succeeds.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;

use bytes::Bytes;
use p2p_proto::{FileMeta, GroupName, PieceSet, Text, Wire};
use p2p_state::client::node::{self as cn, ClientNode};
use p2p_state::hash::{Sha1Stream, sha1};
use p2p_state::seeder::ShareId;

/// Hashes a file in pieces, on every core, reading with `pread`.
pub fn hash_file(path: &Path, piece_len: u32) -> io::Result<FileMeta> {
    hash_file_with_progress(path, piece_len, &|_| {})
}

/// [`hash_file`], calling `progress` with the bytes hashed so far (from the
/// hashing threads, about once per piece).
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
    let n = FileMeta::pieces_for(size, piece_len) as usize;
    if size > p2p_proto::limits::FILE_LEN_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "file too large to share (12 GiB at most)",
        ));
    }
    let workers = thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .min(n.max(1));
    let per = n.div_ceil(workers.max(1)).max(1);
    let mut piece_hashes = vec![p2p_proto::Sha1Hash::default(); n];
    let done = std::sync::atomic::AtomicU64::new(0);
    let done = &done;
    thread::scope(|s| -> io::Result<()> {
        let mut jobs = Vec::new();
        for (w, out) in piece_hashes.chunks_mut(per).enumerate() {
            let file = &file;
            jobs.push(s.spawn(move || -> io::Result<()> {
                let mut buf = vec![0u8; piece_len as usize];
                for (k, h) in out.iter_mut().enumerate() {
                    let i = (w * per + k) as u64;
                    let off = i * piece_len as u64;
                    let len = (size - off).min(piece_len as u64) as usize;
                    file.read_exact_at(&mut buf[..len], off)?;
                    *h = sha1(&buf[..len]);
                    done.fetch_add(len as u64, std::sync::atomic::Ordering::Relaxed);
                    progress(done.load(std::sync::atomic::Ordering::Relaxed));
                }
                Ok(())
            }));
        }
        for j in jobs {
            j.join()
                .map_err(|_| io::Error::other("hashing thread panicked"))??;
        }
        Ok(())
    })?;
    // The whole-file hash needs the bytes in order: one more pass.
    let file_hash = hash_whole(&file, size)?;
    Ok(FileMeta {
        name,
        size,
        piece_len,
        piece_hashes,
        file_hash,
    })
}

pub fn hash_whole(file: &File, size: u64) -> io::Result<p2p_proto::Sha1Hash> {
    let mut s = Sha1Stream::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    while off < size {
        let len = (size - off).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..len], off)?;
        s.update(&buf[..len]);
        off += len as u64;
    }
    Ok(s.finish())
}

/// A file of this client's shares, re-announced after a restart.
const SHARES_FILE: &str = "shares";

/// Paths behind the machine's ids (shares and download destinations),
/// filled by the handle and read by the machine loop.
#[derive(Debug, Default)]
pub struct Paths {
    pub shares: BTreeMap<u64, (PathBuf, GroupName)>,
    pub dests: BTreeMap<u64, PathBuf>,
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

/// The share table on disk: one line per share, `group \t path \t meta hex`.
pub fn load_shares(dir: &Path, node: &mut ClientNode, paths: &Arc<Mutex<Paths>>) {
    let Ok(text) = fs::read_to_string(dir.join(SHARES_FILE)) else {
        return;
    };
    let mut p = paths.lock().expect("paths");
    for line in text.lines() {
        let mut parts = line.splitn(3, '\t');
        let (Some(g), Some(path), Some(hex)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let (Ok(group), Some(bytes)) = (GroupName::new(g), unhex(hex)) else {
            continue;
        };
        let Ok(meta) = FileMeta::from_bytes(Bytes::from(bytes)) else {
            continue;
        };
        let path = PathBuf::from(path);
        // A file that changed since it was shared is not served.
        if fs::metadata(&path).map(|m| m.len()).ok() != Some(meta.size) {
            tracing::warn!(
                "{} changed since it was shared; not serving it",
                path.display()
            );
            continue;
        }
        let id = p.next_id();
        if node.add_local_share(ShareId(id), group.clone(), meta) {
            p.shares.insert(id, (path, group));
        }
    }
}

/// The share table's text: every share the machine holds whose path is
/// known.
pub fn shares_text(node: &ClientNode, paths: &Mutex<Paths>) -> String {
    let p = paths.lock().expect("paths");
    let mut out = String::new();
    for (id, (group, meta)) in node.shares() {
        if let Some((path, _)) = p.shares.get(&id.0) {
            let hex: String = meta.to_bytes().iter().map(|b| format!("{b:02x}")).collect();
            out.push_str(&format!("{group}\t{}\t{hex}\n", path.display()));
        }
    }
    out
}

fn save_shares(dir: &Path, text: &str) {
    let tmp = dir.join(format!("{SHARES_FILE}.tmp"));
    if fs::write(&tmp, text)
        .and_then(|_| fs::rename(&tmp, dir.join(SHARES_FILE)))
        .is_err()
    {
        tracing::warn!("could not save the share table in {}", dir.display());
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// An open download destination.
#[derive(Debug)]
pub struct DlFile {
    pub file: Arc<File>,
    pub part: PathBuf,
    pub dest: PathBuf,
    pub record: Arc<Mutex<(File, PieceSet)>>,
}

/// Disk work off the machine loop.
#[derive(Debug)]
pub enum Job {
    Prepare {
        dl: u64,
        dest: PathBuf,
        meta: FileMeta,
    },
    Write {
        dl: u64,
        file: Arc<File>,
        record: Arc<Mutex<(File, PieceSet)>>,
        index: u32,
        offset: u64,
        data: Bytes,
    },
    Hash {
        dl: u64,
        file: Arc<File>,
    },
    Finalize {
        dl: u64,
        part: PathBuf,
        dest: PathBuf,
    },
    Read {
        conn: u64,
        file: Arc<File>,
        index: u32,
        offset: u64,
        len: u32,
    },
    /// Replaces the share table in `dir` with `text` (see [`shares_text`]).
    SaveShares {
        dir: PathBuf,
        text: String,
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
        Job::Prepare { dl, dest, meta } => match prepare_dest(&dest, &meta) {
            Ok((file, have)) => JobDone::Prepared {
                dl,
                file: Box::new(file),
                have,
            },
            Err(e) => JobDone::Input(cn::Input::DestFailed {
                dl,
                reason: text(format!("{}: {e}", dest.display())),
            }),
        },
        Job::Write {
            dl,
            file,
            record,
            index,
            offset,
            data,
        } => {
            let r = file.write_all_at(&data, offset).and_then(|_| {
                let mut rec = record.lock().expect("record");
                rec.1.insert(index);
                let bytes = rec.1.to_bytes();
                rec.0.write_all_at(&bytes, 0)
            });
            JobDone::Input(match r {
                Ok(()) => cn::Input::PieceWritten { dl, index },
                Err(e) => cn::Input::WriteFailed {
                    dl,
                    index,
                    reason: text(e),
                },
            })
        }
        Job::Hash { dl, file } => match file.metadata().and_then(|m| hash_whole(&file, m.len())) {
            Ok(hash) => JobDone::Input(cn::Input::FileHashed { dl, hash }),
            Err(e) => JobDone::Input(cn::Input::FinalizeFailed {
                dl,
                reason: text(e),
            }),
        },
        Job::Finalize { dl, part, dest } => {
            let record = record_path(&part);
            JobDone::Input(match fs::rename(&part, &dest) {
                Ok(()) => {
                    let _ = fs::remove_file(record);
                    cn::Input::Finalized { dl }
                }
                Err(e) => cn::Input::FinalizeFailed {
                    dl,
                    reason: text(e),
                },
            })
        }
        Job::Read {
            conn,
            file,
            index,
            offset,
            len,
        } => {
            let mut buf = vec![0u8; len as usize];
            JobDone::Input(match file.read_exact_at(&mut buf, offset) {
                Ok(()) => cn::Input::PieceRead {
                    conn,
                    index,
                    data: Bytes::from(buf),
                },
                Err(_) => cn::Input::ReadFailed { conn, index },
            })
        }
        Job::SaveShares { dir, text } => {
            save_shares(&dir, &text);
            JobDone::Nothing
        }
    }
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

/// Opens or creates `<dest>.part` and its record; re-hashes every piece the
/// record claims, keeping only those that verify.
pub fn prepare_dest(dest: &Path, meta: &FileMeta) -> io::Result<(DlFile, PieceSet)> {
    let part = part_path(dest);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&part)?;
    if file.metadata()?.len() != meta.size {
        file.set_len(meta.size)?;
    }
    let rec_path = record_path(&part);
    let rec = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&rec_path)?;
    let claimed = fs::read(&rec_path)
        .ok()
        .and_then(|b| PieceSet::from_bytes(Bytes::from(b)).ok())
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
    rec.set_len(0)?;
    rec.write_all_at(&have.to_bytes(), 0)?;
    let dl = DlFile {
        file: Arc::new(file),
        part,
        dest: dest.to_path_buf(),
        record: Arc::new(Mutex::new((rec, have.clone()))),
    };
    Ok((dl, have))
}
