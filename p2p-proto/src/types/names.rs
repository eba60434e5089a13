//! Names: the one rule every user, group and file name obeys (Unicode
//! NFC, no characters that let one name pass for another, never a path),
//! and the validated [`UserName`], [`GroupName`] and [`FileName`] types.

use bytes::BytesMut;
use std::fmt;

use crate::codec::{DecodeError, Reader, Wire, put_string};
use crate::limits::NAME_LEN_MAX;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
