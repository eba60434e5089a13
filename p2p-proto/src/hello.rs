//! The first frame on every connection, sent by both ends: magic, protocol
//! version, role. The version is checked before anything else is parsed, so
//! a future version may change everything after it; a mismatch is
//! [`DecodeError::BadVersion`] on both ends (each decodes the other's hello).

use bytes::{BufMut, BytesMut};

use crate::codec::{DecodeError, Reader, Wire};
use crate::types::TrackerId;

/// Identifies our protocol on the wire.
pub const MAGIC: [u8; 4] = *b"P2PG";
/// Bumped on every incompatible change (including a smaller limit).
pub const PROTOCOL_VERSION: u16 = 4;

/// Who opened the connection, which fixes the message channel that follows.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    /// A client talking to a tracker: `ClientRequest` / `FromTracker`.
    Client,
    /// A tracker talking to another tracker: `ReplMsg` both ways.
    Tracker(TrackerId),
    /// A peer talking to a seeder: `PeerMsg` both ways.
    Peer,
    /// The answering side of any connection.
    Server,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Hello {
    pub version: u16,
    pub role: Role,
}

impl Hello {
    pub fn new(role: Role) -> Self {
        Hello {
            version: PROTOCOL_VERSION,
            role,
        }
    }
}

impl Wire for Hello {
    const MIN_LEN: usize = 7;
    fn encode(&self, w: &mut BytesMut) {
        w.put_slice(&MAGIC);
        w.put_u16(self.version);
        match self.role {
            Role::Client => w.put_u8(1),
            Role::Tracker(id) => {
                w.put_u8(2);
                id.encode(w);
            }
            Role::Peer => w.put_u8(3),
            Role::Server => w.put_u8(4),
        }
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        if r.array::<4>("magic")? != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let version = r.u16("version")?;
        if version != PROTOCOL_VERSION {
            return Err(DecodeError::BadVersion {
                ours: PROTOCOL_VERSION,
                theirs: version,
            });
        }
        let role = match r.u8("role")? {
            1 => Role::Client,
            2 => Role::Tracker(TrackerId::decode(r)?),
            3 => Role::Peer,
            4 => Role::Server,
            tag => return Err(DecodeError::UnknownTag { what: "role", tag }),
        };
        Ok(Hello { version, role })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_each_role() {
        for role in [
            Role::Client,
            Role::Tracker(TrackerId(3)),
            Role::Peer,
            Role::Server,
        ] {
            let h = Hello::new(role);
            assert_eq!(Hello::from_bytes(h.to_bytes()).unwrap(), h);
        }
    }

    #[test]
    fn wrong_version_is_a_typed_error() {
        let h = Hello {
            version: PROTOCOL_VERSION + 1,
            role: Role::Client,
        };
        assert_eq!(
            Hello::from_bytes(h.to_bytes()),
            Err(DecodeError::BadVersion {
                ours: PROTOCOL_VERSION,
                theirs: PROTOCOL_VERSION + 1
            })
        );
        let msg = Hello::from_bytes(h.to_bytes()).unwrap_err().to_string();
        let theirs = format!("version {}", PROTOCOL_VERSION + 1);
        assert!(msg.contains(&theirs), "{msg}");
    }

    #[test]
    fn wrong_magic_is_rejected() {
        let b = bytes::Bytes::from_static(b"HTTP/1.1 200");
        assert_eq!(Hello::from_bytes(b), Err(DecodeError::BadMagic));
    }
}
