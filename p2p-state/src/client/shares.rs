//! The client's share table (`DATA_DIR/shares`): which files this client
//! shares, in which group, re-announced after a restart. Pure encoding and
//! decoding; the driver reads and writes the file.
//!
//! Layout: [`MAGIC`], a `u32` BE count, then per share its group name (as
//! on the wire), its path (a `u32` BE length, then the path's bytes exactly
//! as the OS has them, at most [`SHARE_PATH_LEN_MAX`]) and its file
//! metadata (as on the wire); last, the CRC32 (BE) of every byte before
//! it. Every field is length-prefixed, so no byte of a file name (a
//! newline, a tab, anything) can end a record early or forge another.
//!
//! Decoding is all or nothing: a table that is truncated, has a wrong
//! checksum, a bad field or bytes left over is [`ShareTableError`], never
//! a partial list; the driver sets it aside and says so. It is canonical:
//! `encode(decode(b)) == b` for every accepted `b`.

use bytes::{BufMut, Bytes, BytesMut};
use p2p_proto::codec::{DecodeError, Reader, put_blob};
use p2p_proto::{FileMeta, GroupName, Wire};

/// The first bytes of a share table (the version is its last byte).
pub const MAGIC: &[u8; 14] = b"p2p-shares v2\n";

/// The longest path a share table holds: Linux's `PATH_MAX`, longer than
/// any path the OS opens.
pub const SHARE_PATH_LEN_MAX: usize = 4096;

/// One shared file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareEntry {
    pub group: GroupName,
    /// The file's path, as the OS's bytes (not necessarily UTF-8).
    pub path: Vec<u8>,
    pub meta: FileMeta,
}

/// Why a share table was not read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ShareTableError {
    #[error("it is not a share table of this version (written by an older version, or damaged)")]
    NotATable,
    #[error("its checksum does not match its contents (damaged)")]
    Checksum,
    #[error("it is damaged: {0}")]
    Damaged(#[from] DecodeError),
}

/// The table's bytes. Entries whose path is longer than
/// [`SHARE_PATH_LEN_MAX`] cannot be opened by the OS and are left out.
pub fn encode(entries: &[ShareEntry]) -> Vec<u8> {
    let kept: Vec<&ShareEntry> = entries
        .iter()
        .filter(|e| e.path.len() <= SHARE_PATH_LEN_MAX)
        .collect();
    let mut w = BytesMut::new();
    w.put_u32(kept.len() as u32);
    for e in kept {
        e.group.encode(&mut w);
        put_blob(&mut w, &e.path);
        e.meta.encode(&mut w);
    }
    seal(&w)
}

/// A table from its body (the count and the entries): [`MAGIC`], the
/// body, then the checksum.
pub fn seal(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + body.len() + 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(body);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// The entries of a table, or why it cannot be trusted at all.
pub fn decode(bytes: &[u8]) -> Result<Vec<ShareEntry>, ShareTableError> {
    let Some(body) = bytes.strip_prefix(MAGIC.as_slice()) else {
        return Err(ShareTableError::NotATable);
    };
    let Some((body, crc)) = body.split_last_chunk::<4>() else {
        return Err(DecodeError::UnexpectedEnd { field: "checksum" }.into());
    };
    if crc32fast::hash(&bytes[..MAGIC.len() + body.len()]) != u32::from_be_bytes(*crc) {
        return Err(ShareTableError::Checksum);
    }
    let mut r = Reader::new(Bytes::copy_from_slice(body));
    let item_min_len = GroupName::MIN_LEN + 4 + FileMeta::MIN_LEN;
    let n = r.count("share count", u32::MAX as usize, item_min_len)?;
    let mut out = Vec::new();
    for _ in 0..n {
        let group = GroupName::decode(&mut r)?;
        let path = r.blob("share path", SHARE_PATH_LEN_MAX)?.to_vec();
        let meta = FileMeta::decode(&mut r)?;
        out.push(ShareEntry { group, path, meta });
    }
    r.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2p_proto::{FileName, Sha1Hash};

    fn entry(path: &[u8]) -> ShareEntry {
        let hashes = vec![Sha1Hash([3; 20])];
        ShareEntry {
            group: GroupName::new("g1").unwrap(),
            path: path.to_vec(),
            meta: FileMeta {
                name: FileName::new("a.bin").unwrap(),
                size: 10,
                piece_len: 1024,
                file_hash: crate::hash::file_root(10, 1024, &hashes),
                piece_hashes: hashes,
            },
        }
    }

    /// Paths holding what broke the old line format (newline, tab, a
    /// forged second record), bytes that are not UTF-8, an empty path
    /// and one at the length limit all come back exactly.
    #[test]
    fn any_path_round_trips() {
        let long = vec![b'x'; SHARE_PATH_LEN_MAX];
        let entries: Vec<ShareEntry> = [
            b"/home/a/plain.bin".as_slice(),
            b"/tmp/evil\ng1\trel.bin\t00\n",
            b"/tmp/tab\there",
            b"/tmp/\xff\xfe not utf-8",
            b"",
            &long,
        ]
        .iter()
        .map(|p| entry(p))
        .collect();
        let bytes = encode(&entries);
        assert_eq!(decode(&bytes).unwrap(), entries);
        assert_eq!(decode(&encode(&[])).unwrap(), vec![]);
    }

    /// A path past the limit is left out when saving (the OS could never
    /// open it), and a table that claims one is refused whole.
    #[test]
    fn path_length_limit() {
        let too_long = entry(&vec![b'x'; SHARE_PATH_LEN_MAX + 1]);
        let ok = entry(b"/a");
        let bytes = encode(&[too_long.clone(), ok.clone()]);
        assert_eq!(decode(&bytes).unwrap(), vec![ok.clone()]);
        // Hand-made: the long entry written anyway.
        let mut w = BytesMut::new();
        w.put_u32(1);
        too_long.group.encode(&mut w);
        put_blob(&mut w, &too_long.path);
        too_long.meta.encode(&mut w);
        assert!(matches!(
            decode(&seal(&w)),
            Err(ShareTableError::Damaged(DecodeError::TooLong { .. }))
        ));
    }

    /// Every cut, every flipped byte, an extra byte and the old text
    /// format are refused whole: never a partial list.
    #[test]
    fn damage_is_refused_whole() {
        let bytes = encode(&[entry(b"/a/b"), entry(b"/c/d")]);
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            assert!(decode(&b).is_err(), "flipped byte {i}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
        let old = b"g1\t/tmp/a.bin\t0001\n";
        assert_eq!(decode(old), Err(ShareTableError::NotATable));
    }
}
