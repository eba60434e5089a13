//! Data directories that hold secrets: the tracker's (password hashes,
//! session tokens, seeder keys in its log and snapshot) and the client's
//! (its share table, its command history, its identity and pins).
//!
//! - A data directory is created [`DIR_MODE`] (0700), and every file in it
//!   [`FILE_MODE`] (0600), temporary files included, whatever the umask.
//! - At start ([`open_dir`]) a directory or a file in it that the group or
//!   others may use is tightened, with a warning that says so: it was left
//!   by an older version or by hand, and what it holds may have been read.
//!   The identity key ([`IDENTITY_KEY`]) is the exception: it is never
//!   tightened here, because its loader refuses a key others could read
//!   (the key may have leaked, so a new one is the fix, not a chmod).

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of a data directory: its owner only.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file in a data directory: its owner only.
pub const FILE_MODE: u32 = 0o600;
/// The identity key's file name; the key is left to its own loader.
pub use crate::tls::IDENTITY_FILE as IDENTITY_KEY;

/// The permission bits the group and others must not have.
const GROUP_OTHER: u32 = 0o077;

/// Creates `dir` (and missing parents, all 0700) if needed, then tightens
/// it and every file directly in it that the group or others may use, with
/// a warning naming each; `what` says what the directory holds, for the
/// warning. Fails if `dir` is not a directory or cannot be changed.
pub fn open_dir(dir: &Path, what: &str) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    let meta = fs::metadata(dir)?;
    if !meta.is_dir() {
        return Err(io::Error::other(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    tighten(dir, meta.mode(), DIR_MODE, what)?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name() == IDENTITY_KEY {
            continue;
        }
        // Not followed: a link's target is not ours to change.
        let meta = entry.metadata()?;
        if meta.is_file() {
            tighten(&entry.path(), meta.mode(), FILE_MODE, what)?;
        }
    }
    Ok(())
}

/// Sets `path` to `mode` if its `old` mode lets the group or others in.
fn tighten(path: &Path, old: u32, mode: u32, what: &str) -> io::Result<()> {
    if old & GROUP_OTHER == 0 {
        return Ok(());
    }
    fs::set_permissions(path, Permissions::from_mode(mode))?;
    tracing::warn!(
        "{} was open to its group or others (mode {:o}); set to {mode:o}: it holds {what}, check who could have read it",
        path.display(),
        old & 0o7777,
    );
    Ok(())
}

/// Creates (or truncates) `path` for writing, mode 0600. A file that was
/// already there keeps its inode, so its mode is set again here.
pub fn create(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)?;
    restrict(&f)?;
    Ok(f)
}

/// Opens `path` for reading and writing, creating it 0600 if needed.
pub fn open_rw(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)
}

/// Writes `bytes` to a new or truncated 0600 file at `path`.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    create(path)?.write_all(bytes)
}

/// Sets an open file to 0600 if it is not already.
pub fn restrict(f: &File) -> io::Result<()> {
    if f.metadata()?.mode() & GROUP_OTHER != 0 {
        f.set_permissions(Permissions::from_mode(FILE_MODE))?;
    }
    Ok(())
}

/// The permission bits of `path` (for tests and checks).
pub fn mode_of(path: &Path) -> io::Result<u32> {
    Ok(fs::symlink_metadata(path)?.mode() & 0o7777)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_directory_and_its_files_are_owner_only() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        open_dir(&dir, "tests").unwrap();
        assert_eq!(mode_of(&dir).unwrap(), DIR_MODE);
        assert_eq!(mode_of(&tmp.path().join("a")).unwrap(), DIR_MODE);
        write(&dir.join("f"), b"x").unwrap();
        assert_eq!(mode_of(&dir.join("f")).unwrap(), FILE_MODE);
        drop(open_rw(&dir.join("g")).unwrap());
        assert_eq!(mode_of(&dir.join("g")).unwrap(), FILE_MODE);
    }

    /// `create` over a file that others could read leaves it 0600.
    #[test]
    fn rewriting_an_open_file_tightens_it() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("f");
        fs::write(&p, b"old").unwrap();
        fs::set_permissions(&p, Permissions::from_mode(0o644)).unwrap();
        write(&p, b"new").unwrap();
        assert_eq!(mode_of(&p).unwrap(), FILE_MODE);
        assert_eq!(fs::read(&p).unwrap(), b"new");
    }

    /// At start a loose directory and its files are tightened; the
    /// identity key is left to its loader (which refuses a loose one),
    /// and a file that is already private is not touched.
    #[test]
    fn loose_modes_are_tightened_at_start_but_not_the_identity_key() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        fs::set_permissions(dir, Permissions::from_mode(0o755)).unwrap();
        for (name, mode) in [("log", 0o644), (IDENTITY_KEY, 0o644), ("x", 0o400)] {
            fs::write(dir.join(name), b"x").unwrap();
            fs::set_permissions(dir.join(name), Permissions::from_mode(mode)).unwrap();
        }
        open_dir(dir, "tests").unwrap();
        assert_eq!(mode_of(dir).unwrap(), DIR_MODE);
        assert_eq!(mode_of(&dir.join("log")).unwrap(), FILE_MODE);
        assert_eq!(mode_of(&dir.join(IDENTITY_KEY)).unwrap(), 0o644);
        assert_eq!(mode_of(&dir.join("x")).unwrap(), 0o400);
    }

    #[test]
    fn a_file_in_place_of_the_directory_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("f");
        fs::write(&p, b"x").unwrap();
        assert!(open_dir(&p, "tests").is_err());
    }
}
