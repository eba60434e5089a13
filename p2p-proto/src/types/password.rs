//! Passwords: [`Password`] as typed (validated, never shown by `Debug`)
//! and the [`PasswordHash`] a tracker stores in its place.

use bytes::BytesMut;
use std::fmt;

use crate::codec::{DecodeError, Reader, Wire, put_string};
use crate::limits::PASSWORD_LEN_MAX;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{SessionToken, UserName};

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
    fn password_rules_and_redacted_debug() {
        assert!(Password::new("").is_err());
        assert!(Password::new("x".repeat(129)).is_err());
        assert!(Password::new("a\0").is_err());
        let p = Password::new("hunter2").unwrap();
        assert_eq!(format!("{p:?}"), "Password(..)");
    }
}
