//! Value types shared by the messages: validated names, ids, hashes, piece
//! sets, file metadata and tickets.

use bytes::{BufMut, BytesMut};
use std::fmt;
use std::net::SocketAddr;

use crate::codec::{DecodeError, Reader, Wire, put_bool, put_list, put_string};
use crate::limits::{
    FILE_LEN_MAX, FILE_PIECES_MAX, NAME_LEN_MAX, PASSWORD_LEN_MAX, PIECE_LEN_MAX, PIECE_LEN_MIN,
};

// ---------------------------------------------------------------- names

/// Which kind of name failed validation (for the error message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    User,
    Group,
    File,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::User => "user",
            NameKind::Group => "group",
            NameKind::File => "file",
        })
    }
}

/// Why a user, group or file name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{kind} name is empty")]
    Empty { kind: NameKind },
    #[error("{kind} name is {len} bytes long; the limit is {max}")]
    TooLong {
        kind: NameKind,
        len: usize,
        max: usize,
    },
    #[error("{kind} name must not contain {what} (pick another name)")]
    Forbidden { kind: NameKind, what: &'static str },
    #[error("{kind} name must not be '.' or '..' (pick another name)")]
    Dots { kind: NameKind },
    #[error("{kind} name is not in Unicode NFC form (send it normalised)")]
    NotNfc { kind: NameKind },
}

/// Why `c` may not appear in any name, if it may not: characters that are
/// invisible or change how the rest displays, so that one name can pass
/// for another (`invoice\u{202e}fdp.exe` shows as `invoiceexe.pdf`).
fn forbidden_char(c: char) -> Option<&'static str> {
    Some(match c {
        c if c.is_control() => "control characters",
        '\u{2028}' | '\u{2029}' => "line or paragraph separators",
        '\u{061C}'
        | '\u{200E}'
        | '\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2066}'..='\u{2069}' => "bidirectional control characters",
        '\u{00AD}'
        | '\u{034F}'
        | '\u{115F}'
        | '\u{1160}'
        | '\u{17B4}'
        | '\u{17B5}'
        | '\u{180B}'..='\u{180F}'
        | '\u{200B}'..='\u{200D}'
        | '\u{2060}'..='\u{2065}'
        | '\u{206A}'..='\u{206F}'
        | '\u{3164}'
        | '\u{FEFF}'
        | '\u{FFA0}'
        | '\u{FFF9}'..='\u{FFFB}'
        | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{E0000}'..='\u{E007F}' => "invisible (zero-width) characters",
        _ => return None,
    })
}

/// A name in the form every name is kept in: Unicode NFC (so `café` typed
/// with a combining accent and without is one name), then checked by
/// [`validate_name`].
pub fn normalize_name(kind: NameKind, s: &str) -> Result<String, NameError> {
    use unicode_normalization::UnicodeNormalization;
    let s: String = match unicode_normalization::is_nfc(s) {
        true => s.to_owned(),
        false => s.nfc().collect(),
    };
    validate_name(kind, &s)?;
    Ok(s)
}

/// The one name rule, for every user, group and file name wherever it
/// comes from: 1..=64 bytes of UTF-8 in Unicode NFC; no control, bidi,
/// zero-width or line/paragraph separator characters; no `/` or `\`; not
/// `.` or `..` (other dots, as in `a..b`, are fine: a name is never more
/// than one path component); user and group names have no white space at
/// all, file names none at either end.
pub fn validate_name(kind: NameKind, s: &str) -> Result<(), NameError> {
    let forbidden = |what| Err(NameError::Forbidden { kind, what });
    if s.is_empty() {
        return Err(NameError::Empty { kind });
    }
    if s.len() > NAME_LEN_MAX {
        return Err(NameError::TooLong {
            kind,
            len: s.len(),
            max: NAME_LEN_MAX,
        });
    }
    if let Some(what) = s.chars().find_map(forbidden_char) {
        return forbidden(what);
    }
    if !unicode_normalization::is_nfc(s) {
        return Err(NameError::NotNfc { kind });
    }
    if s.contains('/') || s.contains('\\') {
        return forbidden("'/' or '\\'");
    }
    if s == "." || s == ".." {
        return Err(NameError::Dots { kind });
    }
    let spaces = match kind {
        NameKind::File => s.starts_with(char::is_whitespace) || s.ends_with(char::is_whitespace),
        NameKind::User | NameKind::Group => s.contains(char::is_whitespace),
    };
    if spaces {
        return forbidden(match kind {
            NameKind::File => "white space at either end",
            _ => "white space",
        });
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $kind:expr, $field:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// The name in NFC, if it passes [`validate_name`].
            pub fn new(s: impl Into<String>) -> Result<Self, NameError> {
                Ok($name(normalize_name($kind, &s.into())?))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                $name::new(s)
            }
        }

        impl Wire for $name {
            const MIN_LEN: usize = 3;
            fn encode(&self, w: &mut BytesMut) {
                put_string(w, &self.0);
            }
            /// Only names already in NFC: decoding never changes a
            /// name, so encoding gives back the same bytes.
            fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
                let s = r.string($field, NAME_LEN_MAX)?;
                validate_name($kind, &s)?;
                Ok($name(s))
            }
        }
    };
}

name_type!(
    /// A validated user name.
    UserName, NameKind::User, "user name");
name_type!(
    /// A validated group name.
    GroupName, NameKind::Group, "group name");
name_type!(
    /// A validated file name: a plain name, never a path.
    FileName, NameKind::File, "file name");

/// A password as typed: 1..=128 bytes, no NUL. Debug output is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn new(s: impl Into<String>) -> Result<Self, DecodeError> {
        let s = s.into();
        let bad = |reason| DecodeError::Invalid {
            field: "password",
            reason,
        };
        if s.is_empty() {
            return Err(bad("must not be empty"));
        }
        if s.len() > PASSWORD_LEN_MAX {
            return Err(bad("longer than 128 bytes"));
        }
        if s.contains('\0') {
            return Err(bad("must not contain NUL"));
        }
        Ok(Password(s))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

impl Wire for Password {
    const MIN_LEN: usize = 3;
    fn encode(&self, w: &mut BytesMut) {
        put_string(w, &self.0);
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Password::new(r.string("password", PASSWORD_LEN_MAX)?)
    }
}

// ---------------------------------------------------------------- fixed-size ids

macro_rules! bytes_type {
    ($(#[$doc:meta])* $name:ident, $n:literal, $field:literal, redact: $redact:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub [u8; $n]);

        impl $name {
            /// Lower-case hex of all bytes.
            pub fn to_hex(&self) -> String {
                self.0.iter().map(|b| format!("{b:02x}")).collect()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                if $redact {
                    write!(f, "{}({}..)", stringify!($name), &self.to_hex()[..8])
                } else {
                    write!(f, "{}({})", stringify!($name), self.to_hex())
                }
            }
        }

        impl Wire for $name {
            const MIN_LEN: usize = $n;
            fn encode(&self, w: &mut BytesMut) {
                w.put_slice(&self.0);
            }
            fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
                Ok($name(r.array($field)?))
            }
        }
    };
}

bytes_type!(
    /// A SHA-1 digest (of a piece, of a file, of a tracker state).
    Sha1Hash, 20, "sha1", redact: false);
bytes_type!(
    /// A random id a client process picks at start; with a [`RequestId`] it
    /// names a request uniquely across trackers and retries.
    ClientId, 16, "client id", redact: false);
bytes_type!(
    /// A random 128-bit session token issued at login. Debug shows a prefix.
    SessionToken, 16, "session token", redact: true);
bytes_type!(
    /// A random key the tracker gives a seeder at login; tickets for that
    /// seeder are MACs under it. Debug shows a prefix.
    SeederKey, 32, "seeder key", redact: true);
bytes_type!(
    /// A ticket's MAC (HMAC-SHA256).
    Mac, 32, "mac", redact: false);
bytes_type!(
    /// A node's identity: the SHA-256 of its public key (the DER
    /// SubjectPublicKeyInfo its TLS handshake presents as a raw public
    /// key, RFC 7250). Every tracker and client has one. Its text form,
    /// the *fingerprint*, is 64 hex digits ([`fmt::Display`],
    /// [`KeyId::from_fingerprint`]).
    KeyId, 32, "key id", redact: false);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// An argon2id PHC string (salt, cost and hash) as the tracker stores it.
/// Its `Debug` shows nothing of it, so no log line, console text or panic
/// message carries a password hash.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(pub String);

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(..)")
    }
}

/// Why a text is not a key fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a key fingerprint (64 hex digits, as `--fingerprint` prints it)")]
pub struct FingerprintError {
    pub text: String,
}

impl KeyId {
    /// Parses a fingerprint: exactly 64 hex digits, either case.
    pub fn from_fingerprint(text: &str) -> Result<KeyId, FingerprintError> {
        let err = || FingerprintError {
            text: text.chars().take(80).collect(),
        };
        let digits = text.as_bytes();
        if digits.len() != 64 {
            return Err(err());
        }
        let mut key = [0u8; 32];
        for (i, pair) in digits.chunks_exact(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16).ok_or_else(err)?;
            let lo = (pair[1] as char).to_digit(16).ok_or_else(err)?;
            key[i] = (hi * 16 + lo) as u8;
        }
        Ok(KeyId(key))
    }
}

impl fmt::Display for Sha1Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

macro_rules! int_type {
    ($(#[$doc:meta])* $name:ident, $t:ty, $put:ident, $get:ident, $n:literal, $field:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
        pub struct $name(pub $t);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl Wire for $name {
            const MIN_LEN: usize = $n;
            fn encode(&self, w: &mut BytesMut) {
                w.$put(self.0);
            }
            fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
                Ok($name(r.$get($field)?))
            }
        }
    };
}

int_type!(
    /// A client's request number; the response echoes it.
    RequestId, u64, put_u64, u64, 8, "request id");
int_type!(
    /// A tracker's number: its line in `tracker_info.txt`, counted from 1.
    TrackerId, u16, put_u16, u16, 2, "tracker id");

/// A position in the replicated op log: the epoch of the primary that
/// created the entry, and its index (from 1; 0 means "before the first").
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct LogPos {
    pub epoch: u64,
    pub index: u64,
}

impl Wire for LogPos {
    const MIN_LEN: usize = 16;
    fn encode(&self, w: &mut BytesMut) {
        w.put_u64(self.epoch);
        w.put_u64(self.index);
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(LogPos {
            epoch: r.u64("epoch")?,
            index: r.u64("index")?,
        })
    }
}

// ---------------------------------------------------------------- piece sets

/// Which pieces of a file a peer holds. Bits beyond `len` are always zero,
/// so two equal sets have equal encodings.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct PieceSet {
    len: u32,
    bits: Vec<u8>,
}

impl fmt::Debug for PieceSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PieceSet({}/{})", self.count(), self.len)
    }
}

impl PieceSet {
    /// No piece of `len` (clamped to [`FILE_PIECES_MAX`]).
    pub fn empty(len: u32) -> Self {
        let len = len.min(FILE_PIECES_MAX);
        PieceSet {
            len,
            bits: vec![0; len.div_ceil(8) as usize],
        }
    }

    /// Every piece of `len`.
    pub fn full(len: u32) -> Self {
        let mut s = PieceSet::empty(len);
        for i in 0..s.len {
            s.insert(i);
        }
        s
    }

    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }

    pub fn contains(&self, i: u32) -> bool {
        i < self.len && self.bits[(i / 8) as usize] & (0x80 >> (i % 8)) != 0
    }

    /// Adds piece `i`; returns false if `i` is out of range.
    pub fn insert(&mut self, i: u32) -> bool {
        if i >= self.len {
            return false;
        }
        self.bits[(i / 8) as usize] |= 0x80 >> (i % 8);
        true
    }

    pub fn remove(&mut self, i: u32) {
        if i < self.len {
            self.bits[(i / 8) as usize] &= !(0x80 >> (i % 8));
        }
    }

    pub fn count(&self) -> u32 {
        self.bits.iter().map(|b| b.count_ones()).sum()
    }

    pub fn is_full(&self) -> bool {
        self.count() == self.len
    }

    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len).filter(|&i| self.contains(i))
    }

    /// Adds every piece of `other` (same length) to `self`.
    pub fn union_with(&mut self, other: &PieceSet) {
        if other.len == self.len {
            for (a, b) in self.bits.iter_mut().zip(&other.bits) {
                *a |= b;
            }
        }
    }
}

impl Wire for PieceSet {
    const MIN_LEN: usize = 5;
    /// `u32` length, then a form tag: `1` = all pieces (no bits follow),
    /// `0` = a bitfield of `ceil(len / 8)` bytes, most significant bit first.
    fn encode(&self, w: &mut BytesMut) {
        w.put_u32(self.len);
        if self.len > 0 && self.is_full() {
            w.put_u8(1);
        } else {
            w.put_u8(0);
            w.put_slice(&self.bits);
        }
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let len = r.u32("piece set length")?;
        if len > FILE_PIECES_MAX {
            return Err(DecodeError::TooLong {
                field: "piece set",
                len: len as u64,
                max: FILE_PIECES_MAX as u64,
            });
        }
        let bad = |reason| DecodeError::Invalid {
            field: "piece set",
            reason,
        };
        match r.u8("piece set form")? {
            1 if len > 0 => Ok(PieceSet::full(len)),
            1 => Err(bad("empty set in the full form")),
            0 => {
                let bits = r.take(len.div_ceil(8) as usize, "piece set bits")?.to_vec();
                let set = PieceSet { len, bits };
                let tail = len % 8;
                if tail != 0 && set.bits[set.bits.len() - 1] & (0xff >> tail) != 0 {
                    return Err(bad("bits set beyond the last piece"));
                }
                if len > 0 && set.is_full() {
                    return Err(bad("a full set must use the full form"));
                }
                Ok(set)
            }
            tag => Err(DecodeError::UnknownTag {
                what: "piece set form",
                tag,
            }),
        }
    }
}

// ---------------------------------------------------------------- file metadata

/// What the tracker knows about a shared file: enough to fetch and verify it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct FileMeta {
    pub name: FileName,
    pub size: u64,
    pub piece_len: u32,
    pub piece_hashes: Vec<Sha1Hash>,
    pub file_hash: Sha1Hash,
}

impl FileMeta {
    /// Checks the numbers agree: piece length a power of two within limits,
    /// size within limits, exactly `ceil(size / piece_len)` piece hashes.
    pub fn validate(&self) -> Result<(), DecodeError> {
        let bad = |reason| DecodeError::Invalid {
            field: "file metadata",
            reason,
        };
        if !self.piece_len.is_power_of_two()
            || !(PIECE_LEN_MIN..=PIECE_LEN_MAX).contains(&self.piece_len)
        {
            return Err(bad(
                "piece length must be a power of two from 1 KiB to 512 KiB",
            ));
        }
        if self.size > FILE_LEN_MAX {
            return Err(DecodeError::TooLong {
                field: "file size",
                len: self.size,
                max: FILE_LEN_MAX,
            });
        }
        if Self::pieces_for(self.size, self.piece_len) != self.piece_hashes.len() as u64 {
            return Err(bad("piece count does not match size / piece length"));
        }
        Ok(())
    }

    pub fn pieces_for(size: u64, piece_len: u32) -> u64 {
        size.div_ceil(piece_len.max(1) as u64)
    }

    pub fn piece_count(&self) -> u32 {
        self.piece_hashes.len() as u32
    }

    /// Byte offset of piece `i` in the file.
    pub fn piece_offset(&self, i: u32) -> u64 {
        i as u64 * self.piece_len as u64
    }

    /// Length of piece `i` (the last one may be short); 0 if out of range.
    pub fn piece_size(&self, i: u32) -> u32 {
        let start = self.piece_offset(i);
        if i >= self.piece_count() {
            return 0;
        }
        (self.size - start).min(self.piece_len as u64) as u32
    }
}

impl Wire for FileMeta {
    const MIN_LEN: usize = 3 + 8 + 4 + 4 + 20;
    fn encode(&self, w: &mut BytesMut) {
        self.name.encode(w);
        w.put_u64(self.size);
        w.put_u32(self.piece_len);
        put_list(w, &self.piece_hashes);
        self.file_hash.encode(w);
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let m = FileMeta {
            name: FileName::decode(r)?,
            size: r.u64("file size")?,
            piece_len: r.u32("piece length")?,
            piece_hashes: r.list("piece hashes", FILE_PIECES_MAX as usize)?,
            file_hash: Sha1Hash::decode(r)?,
        };
        m.validate()?;
        Ok(m)
    }
}

// ---------------------------------------------------------------- tickets and peers

/// Permission, issued by the tracker, for `downloader` to fetch pieces of one
/// file from `seeder` until `expires_ms` (milliseconds since the Unix epoch).
/// It names both ends' keys: the seeder serves only a TLS peer whose key is
/// `downloader_key`, and the downloader talks only to a seeder whose key is
/// `seeder_key`, so a sniffed or leaked ticket is worthless to anyone else.
/// `mac` is HMAC-SHA256 under the seeder's [`SeederKey`] over
/// [`Ticket::signed_bytes`]; p2p-state computes and verifies it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Ticket {
    pub downloader: UserName,
    pub group: GroupName,
    pub file: FileName,
    pub file_hash: Sha1Hash,
    pub seeder: UserName,
    pub downloader_key: KeyId,
    pub seeder_key: KeyId,
    pub expires_ms: u64,
    pub mac: Mac,
}

impl Ticket {
    /// The bytes the MAC covers: every field but the MAC, in wire order.
    pub fn signed_bytes(&self) -> BytesMut {
        let mut w = BytesMut::with_capacity(160);
        w.put_slice(b"p2p-share ticket v2");
        self.downloader.encode(&mut w);
        self.group.encode(&mut w);
        self.file.encode(&mut w);
        self.file_hash.encode(&mut w);
        self.seeder.encode(&mut w);
        self.downloader_key.encode(&mut w);
        self.seeder_key.encode(&mut w);
        w.put_u64(self.expires_ms);
        w
    }
}

impl Wire for Ticket {
    const MIN_LEN: usize = 3 * 4 + 20 + 2 * 32 + 8 + 32;
    fn encode(&self, w: &mut BytesMut) {
        self.downloader.encode(w);
        self.group.encode(w);
        self.file.encode(w);
        self.file_hash.encode(w);
        self.seeder.encode(w);
        self.downloader_key.encode(w);
        self.seeder_key.encode(w);
        w.put_u64(self.expires_ms);
        self.mac.encode(w);
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Ticket {
            downloader: UserName::decode(r)?,
            group: GroupName::decode(r)?,
            file: FileName::decode(r)?,
            file_hash: Sha1Hash::decode(r)?,
            seeder: UserName::decode(r)?,
            downloader_key: KeyId::decode(r)?,
            seeder_key: KeyId::decode(r)?,
            expires_ms: r.u64("ticket expiry")?,
            mac: Mac::decode(r)?,
        })
    }
}

/// A source for a file: who, where, which pieces, and the ticket to show.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PeerInfo {
    pub user: UserName,
    pub addr: SocketAddr,
    pub pieces: PieceSet,
    pub ticket: Ticket,
}

impl Wire for PeerInfo {
    const MIN_LEN: usize = 3 + 7 + 5 + Ticket::MIN_LEN;
    fn encode(&self, w: &mut BytesMut) {
        self.user.encode(w);
        self.addr.encode(w);
        self.pieces.encode(w);
        self.ticket.encode(w);
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(PeerInfo {
            user: UserName::decode(r)?,
            addr: r.socket_addr("peer address")?,
            pieces: PieceSet::decode(r)?,
            ticket: Ticket::decode(r)?,
        })
    }
}

/// One line of `list_groups`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct GroupSummary {
    pub name: GroupName,
    pub owner: UserName,
    pub members: u32,
    /// The asking user is a member.
    pub member: bool,
    /// The asking user has a join request pending.
    pub pending: bool,
}

impl Wire for GroupSummary {
    const MIN_LEN: usize = 3 + 3 + 4 + 2;
    fn encode(&self, w: &mut BytesMut) {
        self.name.encode(w);
        self.owner.encode(w);
        w.put_u32(self.members);
        put_bool(w, self.member);
        put_bool(w, self.pending);
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(GroupSummary {
            name: GroupName::decode(r)?,
            owner: UserName::decode(r)?,
            members: r.u32("member count")?,
            member: r.bool("member")?,
            pending: r.bool("pending")?,
        })
    }
}

/// One line of `list_files`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct FileSummary {
    pub name: FileName,
    pub size: u64,
    pub file_hash: Sha1Hash,
    /// Peers currently online with every piece.
    pub seeders: u32,
    /// Peers currently online with some pieces.
    pub partial: u32,
}

impl Wire for FileSummary {
    const MIN_LEN: usize = 3 + 8 + 20 + 8;
    fn encode(&self, w: &mut BytesMut) {
        self.name.encode(w);
        w.put_u64(self.size);
        self.file_hash.encode(w);
        w.put_u32(self.seeders);
        w.put_u32(self.partial);
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(FileSummary {
            name: FileName::decode(r)?,
            size: r.u64("file size")?,
            file_hash: Sha1Hash::decode(r)?,
            seeders: r.u32("seeders")?,
            partial: r.u32("partial seeders")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_password_hash_and_only_a_prefix_of_tokens() {
        let phc = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo";
        let op = crate::OpKind::CreateUser {
            user: UserName::new("alice").unwrap(),
            password_hash: PasswordHash(phc.into()),
        };
        let text = format!("{op:?}");
        assert!(text.contains("alice") && !text.contains("argon2"), "{text}");
        let token = format!("{:?}", SessionToken([0xab; 16]));
        assert!(!token.contains(&"ab".repeat(16)), "{token}");
    }

    #[test]
    fn a_fingerprint_is_64_hex_digits_and_parses_back() {
        let key = KeyId(core::array::from_fn(|i| (i * 7 + 1) as u8));
        let text = key.to_string();
        assert_eq!(text.len(), 64);
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(KeyId::from_fingerprint(&text), Ok(key));
        assert_eq!(KeyId::from_fingerprint(&text.to_uppercase()), Ok(key));
    }

    #[test]
    fn a_fingerprint_of_the_wrong_length_or_with_non_hex_is_refused() {
        let good = "ab".repeat(32);
        for bad in [
            String::new(),
            good[..63].to_string(),
            format!("{good}0"),
            format!("{}zz", &good[..62]),
            format!("{}é", &good[..62]),
            format!(" {}", &good[..63]),
        ] {
            let err = KeyId::from_fingerprint(&bad).unwrap_err();
            assert!(err.to_string().contains("64 hex digits"), "{err}");
        }
    }

    #[test]
    fn names_reject_paths_control_and_spaces() {
        use NameKind::*;
        assert!(validate_name(File, "report v2.pdf").is_ok());
        assert!(validate_name(User, "alice").is_ok());
        for bad in [
            "", "a/b", "..", ".", "a\\b", "a\0b", "a\nb", " lead", "trail ",
        ] {
            assert!(validate_name(File, bad).is_err(), "{bad:?}");
        }
        // Only the path components '.' and '..' are dangerous.
        for good in ["a..b", "...", "..a", "a.", ".hidden"] {
            assert!(validate_name(File, good).is_ok(), "{good:?}");
        }
        assert!(validate_name(User, "al ice").is_err());
        assert!(validate_name(Group, &"g".repeat(65)).is_err());
        assert!(validate_name(Group, &"g".repeat(64)).is_ok());
        assert_eq!(
            validate_name(File, "../etc/passwd")
                .unwrap_err()
                .to_string(),
            "file name must not contain '/' or '\\' (pick another name)"
        );
    }

    /// Characters that make one name display as another are refused,
    /// whichever kind of name, each with its own reason.
    #[test]
    fn names_reject_invisible_bidi_and_separators() {
        use NameKind::*;
        let cases = [
            ("invoice\u{202e}fdp.exe", "bidirectional control characters"),
            ("a\u{2067}b", "bidirectional control characters"),
            ("a\u{200f}b", "bidirectional control characters"),
            ("g\u{200b}1", "invisible (zero-width) characters"),
            ("g\u{200d}1", "invisible (zero-width) characters"),
            ("\u{feff}bob", "invisible (zero-width) characters"),
            ("so\u{ad}ft", "invisible (zero-width) characters"),
            ("a\u{e0041}", "invisible (zero-width) characters"),
            ("a\u{2028}b", "line or paragraph separators"),
            ("a\u{2029}b", "line or paragraph separators"),
            ("a\u{85}b", "control characters"),
            ("a\tb", "control characters"),
        ];
        for kind in [User, Group, File] {
            for (name, what) in cases {
                assert_eq!(
                    validate_name(kind, name),
                    Err(NameError::Forbidden { kind, what }),
                    "{name:?}"
                );
            }
        }
        // Neighbours of the forbidden ranges are ordinary letters or signs.
        for ok in ["a\u{2027}b", "a\u{202f}b", "a\u{2070}b", "caf\u{e9}"] {
            assert!(validate_name(File, ok).is_ok(), "{ok:?}");
        }
    }

    /// NFC and NFD spellings are one name (the constructor normalises);
    /// from the wire only NFC is accepted, so decoding never changes a
    /// name; the length limit applies to the normalised name.
    #[test]
    fn names_are_nfc() {
        let nfd = "cafe\u{301}.txt";
        let nfc = "caf\u{e9}.txt";
        assert_eq!(FileName::new(nfd).unwrap(), FileName::new(nfc).unwrap());
        assert_eq!(FileName::new(nfd).unwrap().as_str(), nfc);
        assert_eq!(
            validate_name(NameKind::File, nfd),
            Err(NameError::NotNfc {
                kind: NameKind::File
            })
        );
        let mut w = BytesMut::new();
        put_string(&mut w, nfd);
        assert!(matches!(
            FileName::from_bytes(w.freeze()),
            Err(DecodeError::BadName(NameError::NotNfc { .. }))
        ));
        // 63 ASCII bytes + e + U+0301 (3 bytes NFD) is 66 bytes, but 65
        // in NFC (é is 2 bytes): still one past the limit; with 62 it fits.
        let at = format!("{}e\u{301}", "x".repeat(62));
        assert_eq!(UserName::new(at).unwrap().as_str().len(), 64);
        let past = format!("{}e\u{301}", "x".repeat(63));
        assert!(matches!(
            UserName::new(past),
            Err(NameError::TooLong { len: 65, .. })
        ));
    }

    #[test]
    fn decoding_an_invalid_name_is_a_typed_error() {
        let mut w = BytesMut::new();
        put_string(&mut w, "../x");
        assert!(matches!(
            FileName::from_bytes(w.freeze()),
            Err(DecodeError::BadName(NameError::Forbidden { .. }))
        ));
    }

    #[test]
    fn password_rules_and_redacted_debug() {
        assert!(Password::new("").is_err());
        assert!(Password::new("x".repeat(129)).is_err());
        assert!(Password::new("a\0").is_err());
        let p = Password::new("hunter2").unwrap();
        assert_eq!(format!("{p:?}"), "Password(..)");
    }

    #[test]
    fn piece_set_basics() {
        let mut s = PieceSet::empty(10);
        assert!(s.insert(9) && !s.insert(10));
        assert!(s.contains(9) && !s.contains(8));
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![9]);
        assert!(PieceSet::full(10).is_full());
        assert_eq!(
            PieceSet::from_bytes(PieceSet::full(10).to_bytes()).unwrap(),
            PieceSet::full(10)
        );
        assert_eq!(PieceSet::from_bytes(s.to_bytes()).unwrap(), s);
    }

    #[test]
    fn piece_set_rejects_stray_bits_and_non_canonical_full() {
        // len 3, bitfield form, bit 4 set (beyond the end)
        let b = bytes::Bytes::from_static(&[0, 0, 0, 3, 0, 0b0000_1000]);
        assert!(matches!(
            PieceSet::from_bytes(b),
            Err(DecodeError::Invalid { .. })
        ));
        let b = bytes::Bytes::from_static(&[0, 0, 0, 3, 0, 0b1110_0000]);
        assert!(matches!(
            PieceSet::from_bytes(b),
            Err(DecodeError::Invalid { .. })
        ));
        let b = bytes::Bytes::from_static(&[0xff, 0, 0, 3, 0]);
        assert!(matches!(
            PieceSet::from_bytes(b),
            Err(DecodeError::TooLong { .. })
        ));
    }

    #[test]
    fn file_meta_piece_arithmetic() {
        let m = FileMeta {
            name: FileName::new("f").unwrap(),
            size: 1024 * 2 + 5,
            piece_len: 1024,
            piece_hashes: vec![Sha1Hash::default(); 3],
            file_hash: Sha1Hash::default(),
        };
        m.validate().unwrap();
        assert_eq!(m.piece_size(0), 1024);
        assert_eq!(m.piece_size(2), 5);
        assert_eq!(m.piece_size(3), 0);
        assert_eq!(m.piece_offset(2), 2048);
        let mut bad = m.clone();
        bad.piece_hashes.pop();
        assert!(bad.validate().is_err());
        let mut bad = m.clone();
        bad.piece_len = 1000;
        assert!(bad.validate().is_err());
        assert!(FileMeta::from_bytes(bad.to_bytes()).is_err());
    }
}
