//! `known_trackers` in a node's data directory: tracker keys pinned on
//! first contact (trust on first use, as ssh's `known_hosts`), for
//! trackers whose `tracker_info.txt` line carries no fingerprint.
//!
//! Format: text, one line per pinned tracker, `<ip:port> <fingerprint>`;
//! blank lines and `#` comments are ignored. Written atomically (a
//! temporary file, synced, renamed over it, the directory synced), mode
//! 0600. At start a node merges it with `tracker_info.txt`
//! ([`tracker_keys`]); a tracker pinned to different keys in the two
//! files is refused with an error naming both files, since only the
//! operator can tell which key is right.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::tls::KeyId;
use crate::tracker_info::TrackerInfo;

/// The file's name in a data directory.
pub const KNOWN_TRACKERS_FILE: &str = "known_trackers";

/// Why the pins could not be loaded or merged.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error(
        "{path} line {line}: {text:?} is not `<ip:port> <fingerprint>`; \
         correct or delete that line"
    )]
    BadLine {
        path: PathBuf,
        line: usize,
        text: String,
    },
    #[error(
        "{path} pins {addr} twice, to different keys (lines {first} and {line}); \
         delete the wrong line"
    )]
    Twice {
        path: PathBuf,
        addr: SocketAddr,
        first: usize,
        line: usize,
    },
    #[error("{0}")]
    Conflict(Box<PinConflict>),
}

/// A tracker pinned to one key in the configuration (`tracker_info.txt`)
/// and to another in `known_trackers`.
#[derive(Debug, thiserror::Error)]
#[error(
    "tracker {n} ({addr}) has key {info_key} on {info_where}, but {known_path} \
     pinned it to {known_key} on first contact; refusing to start. If \
     {info_key} is the tracker's real key (check with `tracker \
     <tracker_info.txt> {n} --fingerprint` on its host), delete the {addr} line \
     of {known_path}; otherwise correct {info_where}"
)]
pub struct PinConflict {
    pub n: usize,
    pub addr: SocketAddr,
    pub info_key: KeyId,
    /// Where the other key was given: "line 3 of tracker_info.txt".
    pub info_where: String,
    pub known_key: KeyId,
    pub known_path: PathBuf,
}

/// The pins of one data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownTrackers {
    path: PathBuf,
    pins: Vec<(SocketAddr, KeyId)>,
}

impl KnownTrackers {
    /// Reads `dir/known_trackers` (none yet: no pins).
    pub fn load(dir: &Path) -> Result<KnownTrackers, PinError> {
        let path = dir.join(KNOWN_TRACKERS_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::NotFound => String::new(),
            Err(source) => return Err(PinError::Read { path, source }),
        };
        let mut pins: Vec<(SocketAddr, KeyId, usize)> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let body = raw.split('#').next().unwrap_or("").trim();
            if body.is_empty() {
                continue;
            }
            let bad = || PinError::BadLine {
                path: path.clone(),
                line,
                text: body.to_string(),
            };
            let words: Vec<&str> = body.split_whitespace().collect();
            let [addr, fp] = words[..] else {
                return Err(bad());
            };
            let addr: SocketAddr = addr.parse().map_err(|_| bad())?;
            let key = KeyId::from_fingerprint(fp).map_err(|_| bad())?;
            match pins.iter().find(|(a, _, _)| *a == addr) {
                Some((_, k, _)) if *k == key => {}
                Some((_, _, first)) => {
                    return Err(PinError::Twice {
                        path,
                        addr,
                        first: *first,
                        line,
                    });
                }
                None => pins.push((addr, key, line)),
            }
        }
        Ok(KnownTrackers {
            path,
            pins: pins.into_iter().map(|(a, k, _)| (a, k)).collect(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The key pinned for `addr`.
    pub fn get(&self, addr: SocketAddr) -> Option<KeyId> {
        self.pins.iter().find(|(a, _)| *a == addr).map(|(_, k)| *k)
    }

    /// Pins `addr` to `key` (replacing an older pin of that address) and
    /// rewrites the file atomically.
    pub fn pin(&mut self, addr: SocketAddr, key: KeyId) -> io::Result<()> {
        let mut pins = self.pins.clone();
        match pins.iter_mut().find(|(a, _)| *a == addr) {
            Some((_, k)) => *k = key,
            None => pins.push((addr, key)),
        }
        let mut text = String::from(
            "# Tracker keys pinned on first contact (see README, \"Identities and pinning\").\n",
        );
        for (a, k) in &pins {
            text.push_str(&format!("{a} {k}\n"));
        }
        write_atomically(&self.path, text.as_bytes())?;
        self.pins = pins;
        Ok(())
    }
}

/// Writes `path` as a whole or not at all: a 0600 temporary file beside
/// it, synced, renamed over it, then the directory synced.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("pins");
    let tmp = dir.join(format!(".{name}.tmp"));
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    let written = f.write_all(bytes).and_then(|()| f.sync_all());
    drop(f);
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    File::open(dir)?.sync_all()
}

/// The key each tracker of `info` must present (in its order): the
/// fingerprint on its line, else its pin in `known`, else `None` (trust on
/// first use). A tracker pinned to different keys in the two files is an
/// error telling which file to fix.
pub fn tracker_keys(
    info: &TrackerInfo,
    info_path: &Path,
    known: &KnownTrackers,
) -> Result<Vec<Option<KeyId>>, PinError> {
    merge_pins(info.addrs(), info.keys(), known, |i| {
        format!(
            "line {} of {}",
            info.line(i).unwrap_or(0),
            info_path.display()
        )
    })
}

/// `keys` (one per address of `addrs`, as configured) completed with the
/// pins of `known`; `place(i)` says where key `i` was configured, for the
/// error when the two disagree.
pub fn merge_pins(
    addrs: &[SocketAddr],
    keys: &[Option<KeyId>],
    known: &KnownTrackers,
    place: impl Fn(usize) -> String,
) -> Result<Vec<Option<KeyId>>, PinError> {
    let mut out = Vec::new();
    for (i, &addr) in addrs.iter().enumerate() {
        let given = keys.get(i).copied().flatten();
        out.push(match (given, known.get(addr)) {
            (Some(a), Some(b)) if a != b => {
                return Err(PinError::Conflict(Box::new(PinConflict {
                    n: i + 1,
                    addr,
                    info_key: a,
                    info_where: place(i),
                    known_key: b,
                    known_path: known.path.clone(),
                })));
            }
            (Some(a), _) => Some(a),
            (None, b) => b,
        });
    }
    Ok(out)
}

/// Where a driver core records the tracker keys pinned on first contact:
/// the data directory's `known_trackers` ([`Pinner`]) in the runtimes, the
/// simulated host's disk in the simulation (`sim/`).
pub trait Pins {
    /// The trackers, in `tracker_info.txt` order.
    fn addrs(&self) -> &[SocketAddr];
    /// Records that tracker `index` (from 0, in `tracker_info.txt` order)
    /// proved `key` on first contact.
    fn pin(&mut self, index: usize, key: KeyId);
}

impl Pins for Pinner {
    fn addrs(&self) -> &[SocketAddr] {
        Pinner::addrs(self)
    }
    fn pin(&mut self, index: usize, key: KeyId) {
        Pinner::pin(self, index, key)
    }
}

/// Where a node keeps the pins it learns, and the addresses they belong
/// to: what a driver needs to execute a `PinTracker` output.
#[derive(Debug, Clone)]
pub struct Pinner {
    known: KnownTrackers,
    /// Tracker addresses in `tracker_info.txt` order.
    addrs: Vec<SocketAddr>,
}

impl Pinner {
    pub fn new(known: KnownTrackers, addrs: Vec<SocketAddr>) -> Self {
        Pinner { known, addrs }
    }

    /// The trackers, in `tracker_info.txt` order.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Records that tracker `index` (from 0, in `tracker_info.txt` order)
    /// proved `key` on first contact, and says so loudly (a warning).
    pub fn pin(&mut self, index: usize, key: KeyId) {
        let Some(&addr) = self.addrs.get(index) else {
            debug_assert!(false, "PinTracker for tracker index {index} out of range");
            return;
        };
        let n = index + 1;
        match self.known.pin(addr, key) {
            Ok(()) => tracing::warn!(
                "pinned tracker {n} ({addr}) to key {key} on first contact (kept in {}); \
                 to pin explicitly add the fingerprint to its line in tracker_info.txt",
                self.known.path().display()
            ),
            Err(e) => tracing::error!(
                "pinned tracker {n} ({addr}) to key {key} on first contact, but cannot \
                 record it in {}: {e}; this run keeps the pin, the next trusts again on \
                 first contact: add the fingerprint to its line in tracker_info.txt",
                self.known.path().display()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn addr(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    #[test]
    fn pins_survive_a_reload_and_the_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let mut k = KnownTrackers::load(dir.path()).unwrap();
        assert_eq!(k.get(addr(1)), None);
        k.pin(addr(1), KeyId([1; 32])).unwrap();
        k.pin(addr(2), KeyId([2; 32])).unwrap();
        k.pin(addr(1), KeyId([3; 32])).unwrap();
        let again = KnownTrackers::load(dir.path()).unwrap();
        assert_eq!(again, k);
        assert_eq!(again.get(addr(1)), Some(KeyId([3; 32])));
        assert_eq!(again.get(addr(2)), Some(KeyId([2; 32])));
        let mode = fs::metadata(k.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let text = fs::read_to_string(k.path()).unwrap();
        assert!(text.contains(&format!("127.0.0.1:2 {}\n", "02".repeat(32))));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temp left");
    }

    #[test]
    fn a_pin_tracker_output_lands_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let known = KnownTrackers::load(dir.path()).unwrap();
        let mut pinner = Pinner::new(known, vec![addr(1), addr(2)]);
        pinner.pin(1, KeyId([7; 32]));
        let again = KnownTrackers::load(dir.path()).unwrap();
        assert_eq!(
            again.get(addr(2)),
            Some(KeyId([7; 32])),
            "tracker 2 = index 1"
        );
        assert_eq!(again.get(addr(1)), None);
    }

    #[test]
    fn bad_lines_and_double_pins_are_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KNOWN_TRACKERS_FILE);
        fs::write(&path, "127.0.0.1:1\n").unwrap();
        let e = KnownTrackers::load(dir.path()).unwrap_err();
        assert!(matches!(e, PinError::BadLine { line: 1, .. }), "{e}");
        assert!(e.to_string().contains("known_trackers line 1"), "{e}");
        fs::write(
            &path,
            format!(
                "# c\n127.0.0.1:1 {}\n127.0.0.1:1 {}\n",
                "aa".repeat(32),
                "bb".repeat(32)
            ),
        )
        .unwrap();
        let e = KnownTrackers::load(dir.path()).unwrap_err();
        assert!(
            matches!(
                e,
                PinError::Twice {
                    first: 2,
                    line: 3,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn tracker_info_and_pins_merge_and_a_conflict_names_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let a = "aa".repeat(32);
        let info =
            TrackerInfo::parse(&format!("127.0.0.1:1 {a}\n127.0.0.1:2\n127.0.0.1:3\n")).unwrap();
        let info_path = Path::new("tracker_info.txt");
        let mut known = KnownTrackers::load(dir.path()).unwrap();
        known.pin(addr(2), KeyId([0xcc; 32])).unwrap();
        known.pin(addr(1), KeyId([0xaa; 32])).unwrap();
        let keys = tracker_keys(&info, info_path, &known).unwrap();
        assert_eq!(
            keys,
            vec![Some(KeyId([0xaa; 32])), Some(KeyId([0xcc; 32])), None]
        );
        known.pin(addr(1), KeyId([0xbb; 32])).unwrap();
        let e = tracker_keys(&info, info_path, &known).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(&e, PinError::Conflict(c) if c.n == 1), "{msg}");
        assert!(msg.contains("correct line 1 of tracker_info.txt"), "{msg}");
        assert!(msg.contains("tracker_info.txt") && msg.contains("known_trackers"));
        assert!(msg.contains("refusing to start"), "{msg}");
    }
}
