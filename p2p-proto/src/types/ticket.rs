//! [`Ticket`]: a tracker's permission for one user to fetch one file from
//! one seeder, and [`PeerInfo`], a source for a file with the ticket to show.

use bytes::{BufMut, BytesMut};
use std::net::SocketAddr;

use super::{FileName, GroupName, KeyId, Mac, PieceSet, Sha1Hash, UserName};
use crate::codec::{DecodeError, Reader, Wire};

/// Permission, issued by the tracker, for `downloader` to fetch pieces of one
/// file from `seeder` until `expires_ms` (milliseconds since the Unix epoch).
/// It names both ends' keys: the seeder serves only a TLS peer whose key is
/// `downloader_key`, and the downloader talks only to a seeder whose key is
/// `seeder_key`, so a sniffed or leaked ticket is worthless to anyone else.
/// `mac` is HMAC-SHA256 under the seeder's [`SeederKey`](super::SeederKey) over
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
