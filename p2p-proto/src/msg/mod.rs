//! Every message of the system, one enum per channel:
//! - [`client`]: client → tracker requests and tracker → client responses;
//! - [`repl`]: tracker ↔ tracker replication, and the replicated [`repl::Op`];
//! - [`peer`]: peer ↔ peer piece transfer.
//!
//! Each enum starts with a one-byte tag; unknown tags are
//! [`DecodeError::UnknownTag`](crate::DecodeError::UnknownTag).

pub mod client;
pub mod peer;
pub mod repl;

use bytes::BytesMut;
use std::fmt;

use crate::codec::{DecodeError, Reader, Wire, put_string};
use crate::limits::TEXT_LEN_MAX;

/// Free text (a reason, a message) of at most [`TEXT_LEN_MAX`] bytes.
/// Longer input is cut at a character boundary on construction.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Text(String);

impl Text {
    pub fn new(s: impl Into<String>) -> Self {
        let mut s = s.into();
        if s.len() > TEXT_LEN_MAX {
            let mut cut = TEXT_LEN_MAX;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
        }
        Text(s)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        Text::new(s)
    }
}

impl Wire for Text {
    const MIN_LEN: usize = 2;
    fn encode(&self, w: &mut BytesMut) {
        put_string(w, &self.0);
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Text(r.string("text", TEXT_LEN_MAX)?))
    }
}

/// Decodes a tag byte for enum `what`.
pub(crate) fn tag(r: &mut Reader, what: &'static str) -> Result<u8, DecodeError> {
    r.u8(what)
}

pub(crate) fn unknown(what: &'static str, tag: u8) -> DecodeError {
    DecodeError::UnknownTag { what, tag }
}

#[cfg(test)]
mod tests;
