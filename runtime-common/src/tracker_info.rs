//! `tracker_info.txt`: the list of trackers, one `ip:port` a line; line N
//! (counting only address lines, from 1) is tracker N. A line may carry
//! the tracker's key fingerprint after the address (`127.0.0.1:9901
//! <64 hex digits>`, what `tracker ... --fingerprint` prints): that
//! tracker is then pinned to that key; a line without one is trusted on
//! first contact (see [`crate::known_trackers`]).
//!
//! Blank lines and lines starting with `#` are ignored (so is anything after
//! a `#` on an address line). A line that is not an `ip:port` (with an
//! optional fingerprint) is an error naming its line number. Shared by the
//! tracker and the client.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use p2p_proto::TrackerId;
use p2p_proto::limits::TRACKERS_MAX;

use crate::tls::KeyId;

/// Why a tracker list could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TrackerInfoError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("line {line}: {text:?} is not an ip:port address ({error})")]
    BadLine {
        line: usize,
        text: String,
        error: std::net::AddrParseError,
    },
    #[error(
        "line {line}: {text:?} is not a key fingerprint (64 hex digits, as \
         `tracker <tracker_info.txt> <n> --fingerprint` prints it)"
    )]
    BadFingerprint { line: usize, text: String },
    #[error(
        "line {line}: {text:?} has more than an address and a fingerprint \
         (use # for comments)"
    )]
    ExtraText { line: usize, text: String },
    #[error("line {line}: {addr} is listed twice (first on line {first})")]
    Duplicate {
        line: usize,
        first: usize,
        addr: SocketAddr,
    },
    #[error("no tracker address in the file")]
    Empty,
    #[error("{count} trackers listed; at most {TRACKERS_MAX} are supported")]
    TooMany { count: usize },
    #[error(
        "tracker number {n} is out of range: the file lists {count} tracker(s), numbered from 1"
    )]
    OutOfRange { n: usize, count: usize },
}

/// The trackers of a group, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackerInfo {
    addrs: Vec<SocketAddr>,
    /// The fingerprint on each line, if any (same order as `addrs`).
    keys: Vec<Option<KeyId>>,
    /// The file line of each tracker (for messages).
    lines: Vec<usize>,
}

impl TrackerInfo {
    /// Parses the file's text.
    pub fn parse(text: &str) -> Result<Self, TrackerInfoError> {
        let mut addrs: Vec<(SocketAddr, usize, Option<KeyId>)> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let body = raw.split('#').next().unwrap_or("").trim();
            if body.is_empty() {
                continue;
            }
            let mut words = body.split_whitespace();
            let addr_text = words.next().unwrap_or("");
            let addr: SocketAddr =
                addr_text
                    .parse()
                    .map_err(|error| TrackerInfoError::BadLine {
                        line,
                        text: addr_text.to_string(),
                        error,
                    })?;
            let key = match words.next() {
                None => None,
                Some(fp) => Some(KeyId::from_fingerprint(fp).map_err(|_| {
                    TrackerInfoError::BadFingerprint {
                        line,
                        text: fp.to_string(),
                    }
                })?),
            };
            if words.next().is_some() {
                return Err(TrackerInfoError::ExtraText {
                    line,
                    text: body.to_string(),
                });
            }
            if let Some(&(_, first, _)) = addrs.iter().find(|(a, _, _)| *a == addr) {
                return Err(TrackerInfoError::Duplicate { line, first, addr });
            }
            addrs.push((addr, line, key));
        }
        if addrs.is_empty() {
            return Err(TrackerInfoError::Empty);
        }
        if addrs.len() > TRACKERS_MAX {
            return Err(TrackerInfoError::TooMany { count: addrs.len() });
        }
        Ok(TrackerInfo {
            addrs: addrs.iter().map(|(a, _, _)| *a).collect(),
            keys: addrs.iter().map(|(_, _, k)| *k).collect(),
            lines: addrs.iter().map(|(_, l, _)| *l).collect(),
        })
    }

    /// Reads and parses a file.
    pub fn read(path: &Path) -> Result<Self, TrackerInfoError> {
        let text = std::fs::read_to_string(path).map_err(|source| TrackerInfoError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Every address, tracker 1 first.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The fingerprint pinned on each tracker's line, tracker 1 first.
    pub fn keys(&self) -> &[Option<KeyId>] {
        &self.keys
    }

    /// The file line tracker `index` (from 0) is on.
    pub fn line(&self, index: usize) -> Option<usize> {
        self.lines.get(index).copied()
    }

    /// Every tracker with its id (its position, from 1).
    pub fn trackers(&self) -> Vec<(TrackerId, SocketAddr)> {
        self.addrs
            .iter()
            .enumerate()
            .map(|(i, a)| (TrackerId(i as u16 + 1), *a))
            .collect()
    }

    /// Tracker number `n` (from 1).
    pub fn get(&self, n: usize) -> Result<(TrackerId, SocketAddr), TrackerInfoError> {
        match n.checked_sub(1).and_then(|i| self.addrs.get(i)) {
            Some(a) => Ok((TrackerId(n as u16), *a)),
            None => Err(TrackerInfoError::OutOfRange {
                n,
                count: self.addrs.len(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_comments_and_blanks() {
        let t = TrackerInfo::parse(
            "# trackers\n127.0.0.1:9000\n\n  10.0.0.2:9001  # second\n[::1]:9002\n",
        )
        .unwrap();
        assert_eq!(t.addrs().len(), 3);
        assert_eq!(
            t.get(2).unwrap(),
            (TrackerId(2), "10.0.0.2:9001".parse().unwrap())
        );
        assert_eq!(t.trackers()[2].0, TrackerId(3));
    }

    #[test]
    fn a_bad_line_is_named_by_number() {
        let e = TrackerInfo::parse("127.0.0.1:9000\n\nlocalhost:9001\n").unwrap_err();
        assert!(
            matches!(e, TrackerInfoError::BadLine { line: 3, .. }),
            "{e}"
        );
        assert!(
            e.to_string().starts_with("line 3: \"localhost:9001\""),
            "{e}"
        );
    }

    #[test]
    fn a_line_may_pin_a_fingerprint() {
        let fp = "ab".repeat(32);
        let t = TrackerInfo::parse(&format!(
            "127.0.0.1:9901 {fp}\n127.0.0.1:9902\n127.0.0.1:9903\t{}  # pinned\n",
            fp.to_uppercase()
        ))
        .unwrap();
        let key = KeyId([0xab; 32]);
        assert_eq!(t.keys(), &[Some(key), None, Some(key)]);
        assert_eq!(t.addrs()[2], "127.0.0.1:9903".parse().unwrap());
        assert_eq!(t.line(1), Some(2));
    }

    #[test]
    fn a_bad_fingerprint_is_named_by_line() {
        for bad in ["abc", &"g".repeat(64), &"a".repeat(63), &"a".repeat(65)] {
            let e = TrackerInfo::parse(&format!("127.0.0.1:1\n\n127.0.0.1:2 {bad}\n")).unwrap_err();
            assert!(
                matches!(&e, TrackerInfoError::BadFingerprint { line: 3, text } if text == bad),
                "{e}"
            );
            assert!(e.to_string().starts_with("line 3: "), "{e}");
            assert!(e.to_string().contains("--fingerprint"), "{e}");
        }
        let e = TrackerInfo::parse(&format!("127.0.0.1:1 {} extra\n", "a".repeat(64))).unwrap_err();
        assert!(
            matches!(e, TrackerInfoError::ExtraText { line: 1, .. }),
            "{e}"
        );
    }

    #[test]
    fn out_of_range_empty_and_duplicates_are_errors() {
        let t = TrackerInfo::parse("127.0.0.1:9000\n").unwrap();
        assert!(matches!(t.get(0), Err(TrackerInfoError::OutOfRange { .. })));
        assert!(matches!(
            t.get(2),
            Err(TrackerInfoError::OutOfRange { n: 2, count: 1 })
        ));
        assert!(matches!(
            TrackerInfo::parse("# none\n\n"),
            Err(TrackerInfoError::Empty)
        ));
        assert!(matches!(
            TrackerInfo::parse("127.0.0.1:1\n127.0.0.1:1\n"),
            Err(TrackerInfoError::Duplicate {
                line: 2,
                first: 1,
                ..
            })
        ));
        let many: String = (0..=TRACKERS_MAX)
            .map(|i| format!("127.0.0.1:{}\n", 1000 + i))
            .collect();
        assert!(matches!(
            TrackerInfo::parse(&many),
            Err(TrackerInfoError::TooMany { .. })
        ));
    }
}
