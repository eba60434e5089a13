//! The seeder's commands, which answer at once: its identity (from
//! login), the upload rate limits, and the share table (add, grow,
//! remove).

use super::*;

impl Seeder {
    /// Who we are and the key tickets for us are signed with (from login).
    /// A different identity closes every connection opened under the old.
    pub fn set_identity(&mut self, _now: Instant, user: UserName, key: SeederKey) {
        self.out.check_drained("seeder");
        let same = self
            .identity
            .as_ref()
            .is_some_and(|(u, k)| *u == user && *k == key);
        if !same {
            self.close_all(CloseReason::IdentityChanged);
            self.identity = Some((user, key));
        }
        self.debug_check();
    }

    /// Sets (`Some(bytes per second)`) or lifts (`None`) the upload rate
    /// limit over all connections; reads held back start at once when
    /// lifted.
    pub fn set_upload_rate(&mut self, now: Instant, rate: Option<u64>) {
        self.out.check_drained("seeder");
        self.cfg.upload_rate = rate;
        self.upload = rate.map(|r| TokenBucket::new(now, r));
        self.timers.clear(Timer::Rate);
        self.dispatch_reads(now);
        self.debug_check();
    }

    /// The upload rate limit in bytes per second, if one is set.
    pub fn upload_rate(&self) -> Option<u64> {
        self.cfg.upload_rate
    }

    /// Sets (`Some(bytes per second)`) or lifts (`None`) the upload rate
    /// limit per connection; every connection starts with a full bucket.
    pub fn set_upload_rate_per_peer(&mut self, now: Instant, rate: Option<u64>) {
        self.out.check_drained("seeder");
        self.cfg.upload_rate_per_peer = rate;
        for c in self.conns.values_mut() {
            c.bucket = None;
        }
        self.timers.clear(Timer::Rate);
        self.dispatch_reads(now);
        self.debug_check();
    }

    /// The per-connection upload rate limit, if one is set.
    pub fn upload_rate_per_peer(&self) -> Option<u64> {
        self.cfg.upload_rate_per_peer
    }

    /// Logout: no ticket verifies any more; every connection is closed.
    pub fn clear_identity(&mut self, _now: Instant) {
        self.out.check_drained("seeder");
        self.close_all(CloseReason::IdentityChanged);
        self.identity = None;
        self.debug_check();
    }

    /// Registers a file to serve, holding the pieces in `have`.
    pub fn add_share(
        &mut self,
        _now: Instant,
        share: ShareId,
        group: GroupName,
        meta: &FileMeta,
        have: PieceSet,
    ) -> Result<(), ShareError> {
        self.out.check_drained("seeder");
        if self.shares.contains_key(&share) {
            return Err(ShareError::DuplicateId(share));
        }
        meta.validate().map_err(|e| ShareError::BadMetadata {
            reason: Text::new(e.to_string()),
        })?;
        if have.len() != meta.piece_count() {
            return Err(ShareError::WrongPieceCount {
                have: have.len(),
                expected: meta.piece_count(),
            });
        }
        let key = (group.clone(), meta.name.clone(), meta.file_hash);
        if let Some(other) = self.by_key.get(&key) {
            return Err(ShareError::DuplicateFile(*other));
        }
        self.by_key.insert(key, share);
        self.initial.add_share(share, &have);
        let s = Share {
            group,
            file: meta.name.clone(),
            file_hash: meta.file_hash,
            size: meta.size,
            piece_len: meta.piece_len,
            have,
            served: Served::default(),
        };
        self.shares.insert(share, s);
        self.debug_check();
        Ok(())
    }

    /// A piece of `share` is now held (verified by a download): peers
    /// connected for it hear `HavePiece`.
    pub fn add_piece(
        &mut self,
        _now: Instant,
        share: ShareId,
        index: u32,
    ) -> Result<(), ShareError> {
        self.out.check_drained("seeder");
        let s = self
            .shares
            .get_mut(&share)
            .ok_or(ShareError::UnknownShare(share))?;
        let count = s.have.len();
        if index >= count {
            return Err(ShareError::PieceOutOfRange { index, count });
        }
        let new = !s.have.contains(index);
        s.have.insert(index);
        if new {
            for conn in self.conns_on(share) {
                self.send(conn, PeerMsg::HavePiece { index });
            }
        }
        self.debug_check();
        Ok(())
    }

    /// Stops serving `share`: its connections are refused and closed.
    pub fn remove_share(&mut self, _now: Instant, share: ShareId) -> Result<(), ShareError> {
        self.out.check_drained("seeder");
        let s = self
            .shares
            .remove(&share)
            .ok_or(ShareError::UnknownShare(share))?;
        self.by_key.remove(&(s.group, s.file, s.file_hash));
        self.initial.remove_share(share);
        for conn in self.conns_on(share) {
            self.reject_conn(conn, RejectReason::UnknownFile, CloseReason::ShareRemoved);
        }
        self.debug_check();
        Ok(())
    }
}
