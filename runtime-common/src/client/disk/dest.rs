//! A download's destination: `<dest>.part` and its record of verified
//! pieces created safely relative to the directory's descriptor, free
//! space checked, resume by re-hashing, and the rename into place.

use super::*;

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

/// Why a download's destination could not be opened or put in place.
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
        crate::present::bytes(*need),
        crate::present::bytes(*free)
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
pub(super) fn check_space(dir: &Path, need: u64, free: u64) -> Result<(), DestError> {
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
/// every piece the record claims, keeping only those that verify. Unless
/// `mode` is [`WriteMode::PageCache`], also opens the part file with
/// `O_DIRECT` where the file system allows it; `window` is the
/// download's (see [`DirectGate`]).
pub fn open_dest(
    dest: &Path,
    meta: &FileMeta,
    mode: WriteMode,
    window: usize,
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
    let direct = (mode != WriteMode::PageCache)
        .then(|| dir.open_direct(&part_name, &file))
        .flatten()
        .map(Arc::new);
    let dl = DlFile {
        file: Arc::new(file),
        direct,
        mode,
        gate: DirectGate::new(window),
        trim: Arc::default(),
        cache_writer: Mutex::default(),
        part,
        dest: dest.to_path_buf(),
        dir: Arc::new(dir),
        record: Arc::new(Mutex::new((rec, have.clone()))),
    };
    Ok((dl, have))
}
