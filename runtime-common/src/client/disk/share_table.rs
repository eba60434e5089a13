//! The share table on disk (`DATA_DIR/shares`): the paths behind the
//! machine's share ids, loading at start (a damaged table set aside) and
//! saving through a temporary file, 0600.

use super::*;

/// A file of this client's shares, re-announced after a restart.
pub(super) const SHARES_FILE: &str = "shares";

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

pub(super) fn save_shares(dir: &Path, bytes: &[u8]) {
    let tmp = dir.join(format!("{SHARES_FILE}.tmp"));
    let written = crate::private::write(&tmp, bytes);
    if let Err(e) = written.and_then(|_| fs::rename(&tmp, dir.join(SHARES_FILE))) {
        tracing::warn!(
            "could not save the share table in {}: {e}; shares will not be re-announced after a restart",
            dir.display()
        );
    }
}
