//! The lines of a listing: [`GroupSummary`] (`list_groups`) and
//! [`FileSummary`] (`list_files`).

use bytes::{BufMut, BytesMut};

use super::{FileName, GroupName, Sha1Hash, UserName};
use crate::codec::{DecodeError, Reader, Wire, put_bool};

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
