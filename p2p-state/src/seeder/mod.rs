//! Seeder: one pure state machine per client, serving pieces of the files
//! this client registered to peers that show a valid ticket.
//!
//! A connection must start with `Open { ticket }`. The ticket must name us
//! as seeder, verify under the key the tracker gave us at login, be
//! unexpired, be issued to the key the connection proved in its TLS
//! handshake (`downloader_key`: a ticket sniffed or leaked is worthless to
//! any other client), and name (group, file, file hash) of one of *our*
//! registered shares: a peer never names a path, and a request resolves to
//! a file only through this table. Tickets live minutes: when the one a
//! connection is served under expires, the connection is refused
//! (`Expired`) and closed, unless the downloader showed a fresh ticket on
//! it first (another `Open` for the same file and downloader, checked the
//! same way; the connection then runs on until that one expires). Then `Request { index }` of a held piece becomes a
//! `ReadPiece` for the driver and, when the bytes come back, a `Piece`.
//! Limits (named constants in `interface.rs`): a connection takes a *serving
//! slot* only when its ticket verifies; slots are bounded in total, per
//! downloading user and per source address (`Busy` at `Open` beyond).
//! Connections that have shown no ticket yet are bounded apart, in total
//! and per source address (refused at once beyond), and must show one in
//! time: a flood of ticketless connections, or many users from one host,
//! cannot take the slots others are served in. Also: requests per
//! connection (`Busy` beyond), disk reads in flight over all connections,
//! refused requests per connection, idle time.
//!
//! Decisions on peer messages: `Have` from a downloader is allowed and
//! ignored ("either side may announce"), its `HavePiece` feeds initial
//! seeding; `Piece`, `Reject`, an
//! `Open` for another file or user are protocol violations (`Fatal` + close); a `Request`
//! before `Open` is refused with `NoTicket` + close; `Fatal` closes.
//!
//! Which pieces a connection hears of: all held, except on a share
//! registered whole with other downloaders on it (initial seeding,
//! `initial.rs`), where later downloaders see a growing subset so that each
//! piece goes out about once before any goes twice.
//!
//! Files: `interface.rs` (vocabulary and limits), `downloader.rs` (one connection's
//! request queue), `initial.rs` (initial seeding), `tests.rs`.

mod downloader;
mod initial;
/// How the driver answered a `ReadPiece`.
enum Read {
    Bytes(bytes::Bytes),
    /// The driver sends the piece from the file itself.
    InFile,
    Failed,
}

mod interface;
#[cfg(test)]
mod tests;

pub use interface::*;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::machine::{Outbox, impl_machine};
use crate::rate::TokenBucket;
use crate::ticket::{self, TicketError};
use crate::time::Instant;
use crate::timer::TimerTable;
use downloader::{Admit, Conn, ConnState};
use initial::{Initial, Show};
use p2p_proto::{
    FileMeta, FileName, GroupName, KeyId, PeerMsg, PieceSet, RejectReason, SeederKey, Sha1Hash,
    Text, Ticket, UserName,
};

/// A file we serve, as registered by the driver.
#[derive(Clone, Debug)]
struct Share {
    group: GroupName,
    file: FileName,
    file_hash: Sha1Hash,
    size: u64,
    piece_len: u32,
    have: PieceSet,
    /// What this share has served since it was added.
    served: Served,
}

impl Share {
    fn piece_size(&self, i: u32) -> u32 {
        let start = u64::from(i) * u64::from(self.piece_len);
        if i >= self.have.len() {
            return 0;
        }
        (self.size - start).min(u64::from(self.piece_len)) as u32
    }
}

type ShareKey = (GroupName, FileName, Sha1Hash);

/// The seeder machine. See the module docs.
pub struct Seeder {
    cfg: SeederConfig,
    identity: Option<(UserName, SeederKey)>,
    shares: BTreeMap<ShareId, Share>,
    by_key: BTreeMap<ShareKey, ShareId>,
    conns: BTreeMap<ConnId, Conn>,
    /// Disk reads emitted and not answered yet (kept after a close, so the
    /// bound on read buffers holds until the driver answers).
    reads: BTreeSet<(ConnId, u32)>,
    /// Last connection given a read slot (round robin).
    rr_cursor: Option<ConnId>,
    timers: TimerTable<Timer>,
    out: Outbox<Output>,
    stats: SeederStats,
    served_by_user: BTreeMap<UserName, Served>,
    /// The upload rate limit, if one is set.
    upload: Option<TokenBucket>,
    /// Shares in initial seeding and the connections' restricted views.
    initial: Initial,
}

impl Seeder {
    /// A seeder with no identity and no shares. It makes no random
    /// choice (round-robin serves connections fairly), so it takes no seed.
    pub fn new(cfg: SeederConfig, now: Instant) -> Self {
        let upload = cfg.upload_rate.map(|r| TokenBucket::new(now, r));
        Seeder {
            upload,
            initial: Initial::new(cfg.initial_seed_window),
            cfg: cfg.normalized(),
            identity: None,
            shares: BTreeMap::new(),
            by_key: BTreeMap::new(),
            conns: BTreeMap::new(),
            reads: BTreeSet::new(),
            rr_cursor: None,
            timers: TimerTable::new(),
            out: Outbox::new(),
            stats: SeederStats::default(),
            served_by_user: BTreeMap::new(),
        }
    }

    // ------------------------------------------------------------ commands
    //
    // The share table and identity are set by `&mut self` commands that
    // answer at once (quinn's "mutators for app commands"); they are
    // mutations like inputs: drain `poll_output` after each.

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

    fn conns_on(&self, share: ShareId) -> Vec<ConnId> {
        self.conns
            .iter()
            .filter(|(_, c)| c.share() == Some(share))
            .map(|(id, _)| *id)
            .collect()
    }

    // ------------------------------------------------------------ inputs

    pub fn handle_input(&mut self, now: Instant, input: Input) {
        self.out.check_drained("seeder");
        match input {
            Input::Opened { conn, peer, addr } => self.on_opened(now, conn, peer, addr),
            Input::Msg { conn, msg } => self.on_msg(now, conn, msg),
            Input::Closed { conn } => {
                self.forget(conn);
            }
            Input::PieceRead { conn, index, data } => self.on_read(conn, index, Read::Bytes(data)),
            Input::PieceInFile { conn, index } => self.on_read(conn, index, Read::InFile),
            Input::ReadFailed { conn, index } => self.on_read(conn, index, Read::Failed),
        }
        self.dispatch_reads(now);
        self.debug_check();
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.out.check_drained("seeder");
        while let Some(t) = self.timers.pop_expired(now) {
            match t {
                Timer::Open(conn) => self.close(conn, CloseReason::OpenTimeout),
                Timer::Idle(conn) => self.on_idle(now, conn),
                Timer::Expire(conn) => {
                    let why = RejectReason::Expired;
                    self.reject_conn(conn, why, CloseReason::TicketExpired);
                }
                Timer::Rate => {} // dispatch_reads below
            }
        }
        self.dispatch_reads(now);
        self.debug_check();
    }

    /// A new connection: it waits for its ticket without a serving slot,
    /// within the bounds on such connections (in total and from its
    /// address); past either it is refused at once.
    fn on_opened(&mut self, now: Instant, conn: ConnId, peer: KeyId, addr: IpAddr) {
        if self.conns.contains_key(&conn) {
            debug_assert!(false, "driver reused {conn}");
            return;
        }
        let unopened = |c: &&Conn| !c.is_open();
        let total = self.conns.values().filter(unopened).count();
        let from = self
            .conns
            .values()
            .filter(unopened)
            .filter(|c| c.addr == addr)
            .count();
        let full = if total >= self.cfg.unopened_max {
            Some(("UNOPENED_MAX", self.cfg.unopened_max))
        } else if from >= self.cfg.unopened_per_addr_max {
            Some(("UNOPENED_PER_ADDR_MAX", self.cfg.unopened_per_addr_max))
        } else {
            None
        };
        if let Some((limit, max)) = full {
            self.stats.conns_refused += 1;
            self.send(conn, reject_all(RejectReason::Busy));
            let reason = CloseReason::TooManyConnections { limit, max };
            self.out.push_back(Output::Close { conn, reason });
            return;
        }
        self.conns.insert(conn, Conn::new(peer, addr));
        self.timers
            .set(Timer::Open(conn), now + self.cfg.open_timeout);
    }

    fn on_msg(&mut self, now: Instant, conn: ConnId, msg: PeerMsg) {
        let Some(c) = self.conns.get(&conn) else {
            return; // raced our Close
        };
        let open = c.state != ConnState::AwaitOpen;
        match msg {
            PeerMsg::Open { ticket } if !open => self.on_open(now, conn, &ticket),
            PeerMsg::Request { .. } if !open => self.refuse(conn, RejectReason::NoTicket),
            PeerMsg::Fatal { reason } => self.close(conn, CloseReason::PeerFatal { reason }),
            _ if !open => self.violation(conn, "expected Open first"),
            PeerMsg::Request { index } => self.on_request(conn, index),
            PeerMsg::Cancel { index } => self.conn_mut(conn).cancel(index),
            PeerMsg::Have { .. } => {}
            PeerMsg::HavePiece { index } => self.on_peer_has(conn, index),
            PeerMsg::Open { ticket } => self.on_renew(now, conn, &ticket),
            PeerMsg::Piece { .. } => self.violation(conn, "piece data sent to a seeder"),
            PeerMsg::Reject { .. } => self.violation(conn, "Reject sent to a seeder"),
        }
        if self.conns.get(&conn).is_some_and(|c| c.share().is_some()) {
            self.timers
                .set(Timer::Idle(conn), now + self.cfg.idle_timeout);
        }
    }

    /// Checks the ticket of an `Open`; on success the connection is bound
    /// to the share and hears which pieces we hold.
    fn on_open(&mut self, now: Instant, conn: ConnId, ticket: &Ticket) {
        let key = self.conns[&conn].key;
        let share = match self.check_ticket(now, ticket, key) {
            Ok(s) => s,
            Err(reason) => {
                self.stats.conns_refused += 1;
                return self.refuse(conn, reason);
            }
        };
        if let Some((limit, max)) = self.slots_full(&ticket.downloader, self.conns[&conn].addr) {
            self.stats.conns_refused += 1;
            self.send(conn, reject_all(RejectReason::Busy));
            return self.close(conn, CloseReason::TooManyConnections { limit, max });
        }
        let others = self.conns_on(share).len();
        self.conn_mut(conn).state = ConnState::Open {
            share,
            downloader: ticket.downloader.clone(),
            ticket_key: ticket.downloader_key,
            expires_ms: ticket.expires_ms,
        };
        self.timers.clear(Timer::Open(conn));
        self.timers
            .set(Timer::Expire(conn), expiry(ticket.expires_ms));
        let have = &self.shares[&share].have;
        let pieces = self.initial.on_open(conn, share, have, others);
        self.send(conn, PeerMsg::Have { pieces });
    }

    /// Which serving-slot limit a new slot for `user` from `addr` would
    /// pass, if any.
    fn slots_full(&self, user: &UserName, addr: IpAddr) -> Option<(&'static str, usize)> {
        let open = || self.conns.values().filter(|c| c.is_open());
        if open().count() >= self.cfg.conns_max {
            return Some(("CONNS_MAX", self.cfg.conns_max));
        }
        if open().filter(|c| c.downloader() == Some(user)).count() >= self.cfg.conns_per_user_max {
            return Some(("CONNS_PER_USER_MAX", self.cfg.conns_per_user_max));
        }
        if open().filter(|c| c.addr == addr).count() >= self.cfg.conns_per_addr_max {
            return Some(("CONNS_PER_ADDR_MAX", self.cfg.conns_per_addr_max));
        }
        None
    }

    /// A fresh ticket shown on an open connection (before the one it runs
    /// under expires): checked like the first, and it must be for the same
    /// file and downloader. The connection then runs until it expires.
    fn on_renew(&mut self, now: Instant, conn: ConnId, ticket: &Ticket) {
        let key = self.conns[&conn].key;
        let share = match self.check_ticket(now, ticket, key) {
            Ok(s) => s,
            Err(reason) => {
                self.stats.conns_refused += 1;
                return self.refuse(conn, reason);
            }
        };
        let ConnState::Open {
            share: bound,
            downloader,
            expires_ms,
            ..
        } = &mut self.conn_mut(conn).state
        else {
            debug_assert!(false, "on_msg renews open connections only");
            return;
        };
        if *bound != share || *downloader != ticket.downloader {
            return self.violation(conn, "an Open for another file or user");
        }
        *expires_ms = (*expires_ms).max(ticket.expires_ms);
        let at = expiry(*expires_ms);
        self.timers.set(Timer::Expire(conn), at);
    }

    /// Which of our shares the ticket opens for a connection that proved
    /// `key`, or why it opens none.
    fn check_ticket(&self, now: Instant, t: &Ticket, key: KeyId) -> Result<ShareId, RejectReason> {
        // planted bug (test switch)
        if self.cfg.bug_ignore_tickets {
            let key = (t.group.clone(), t.file.clone(), t.file_hash);
            return self
                .by_key
                .get(&key)
                .copied()
                .ok_or(RejectReason::UnknownFile);
        }
        let Some((user, seeder_key)) = &self.identity else {
            return Err(RejectReason::BadTicket);
        };
        if t.seeder != *user {
            return Err(RejectReason::WrongParty);
        }
        ticket::verify(seeder_key, t, now).map_err(|e| match e {
            TicketError::BadMac => RejectReason::BadTicket,
            TicketError::Expired => RejectReason::Expired,
        })?;
        // planted bug (test switch)
        if t.downloader_key != key && !self.cfg.bug_skip_key_check {
            return Err(RejectReason::WrongKey);
        }
        let key = (t.group.clone(), t.file.clone(), t.file_hash);
        self.by_key
            .get(&key)
            .copied()
            .ok_or(RejectReason::UnknownFile)
    }

    fn on_request(&mut self, conn: ConnId, index: u32) {
        let share = self.conns[&conn].share().expect("open");
        if !self.shares[&share].have.contains(index) {
            self.stats.requests_refused += 1;
            let c = self.conn_mut(conn);
            c.refusals += 1;
            let count = c.refusals;
            let reason = RejectReason::NoSuchPiece { index };
            self.send(
                conn,
                PeerMsg::Reject {
                    index: Some(index),
                    reason,
                },
            );
            if count > self.cfg.refusals_max {
                self.close(conn, CloseReason::TooManyRefusals { count });
            }
            return;
        }
        let max = self.cfg.conn_requests_max;
        let admit = self.conn_mut(conn).admit(index, max);
        if admit == Admit::Queued {
            self.initial.on_request(conn, share, index);
        }
        if admit == Admit::Busy {
            self.stats.requests_refused += 1;
            let reason = RejectReason::Busy;
            self.send(
                conn,
                PeerMsg::Reject {
                    index: Some(index),
                    reason,
                },
            );
        }
    }

    /// A disk read finished (`data`) or failed (`None`).
    fn on_read(&mut self, conn: ConnId, index: u32, read: Read) {
        if !self.reads.remove(&(conn, index)) {
            return; // not a read we asked for: a driver bug, nothing to do
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return; // closed meanwhile: drop the bytes
        };
        if !c.finish_read(index) {
            return; // cancelled
        }
        let share = c.share().expect("reads only for open connections");
        let meta = self.shares.get_mut(&share).expect("open shares exist");
        let offset = u64::from(index) * u64::from(meta.piece_len);
        let want = meta.piece_size(index);
        let ok = match &read {
            Read::Bytes(data) => data.len() == want as usize,
            Read::InFile => true,
            Read::Failed => false,
        };
        if ok {
            meta.served.add(want as usize);
            c.served.add(want as usize);
            let user = c.downloader().expect("open").clone();
            self.stats.served.add(want as usize);
            self.served_by_user
                .entry(user)
                .or_default()
                .add(want as usize);
        }
        let shows = if ok {
            self.initial.on_served(conn, index)
        } else {
            Vec::new()
        };
        match read {
            Read::Bytes(data) if ok => self.send(conn, PeerMsg::Piece { index, data }),
            Read::InFile => self.out.push_back(Output::SendPieceFromFile {
                conn,
                share,
                index,
                offset,
                len: want,
            }),
            _ => {
                self.stats.read_failures += 1;
                let reason = RejectReason::NoSuchPiece { index };
                self.send(
                    conn,
                    PeerMsg::Reject {
                        index: Some(index),
                        reason,
                    },
                );
            }
        }
        self.show(shows);
    }

    /// The downloader on `conn` holds `index` now (from anyone).
    fn on_peer_has(&mut self, conn: ConnId, index: u32) {
        let share = self.conns[&conn].share().expect("open");
        let shows = self.initial.on_held(conn, share, index);
        self.show(shows);
    }

    /// Tells connections of the pieces initial seeding now shows them.
    fn show(&mut self, shows: Vec<Show>) {
        for s in shows {
            match s {
                Show::Piece(conn, index) => self.send(conn, PeerMsg::HavePiece { index }),
                Show::All(conn) => {
                    let Some(share) = self.conns.get(&conn).and_then(Conn::share) else {
                        continue;
                    };
                    let pieces = self.shares[&share].have.clone();
                    self.send(conn, PeerMsg::Have { pieces });
                }
            }
        }
    }

    fn on_idle(&mut self, now: Instant, conn: ConnId) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if c.active() > 0 {
            self.timers
                .set(Timer::Idle(conn), now + self.cfg.idle_timeout);
        } else {
            self.close(conn, CloseReason::IdleTimeout);
        }
    }

    /// Gives free disk-read slots to queued requests, one connection at a
    /// time in round-robin order, as fast as the upload rate limits allow:
    /// the global one over all connections, and each connection's own
    /// (a connection in debt is skipped). When they do not, a `Rate` timer
    /// wakes us when the first will.
    fn dispatch_reads(&mut self, now: Instant) {
        while self.reads.len() < self.cfg.reads_max {
            if let Some(b) = &mut self.upload
                && !b.ready(now)
            {
                if self.conns.values().any(|c| !c.queue.is_empty()) {
                    self.timers.set(Timer::Rate, b.ready_at());
                }
                return;
            }
            let Some(conn) = self.next_with_queue(now) else {
                break;
            };
            self.rr_cursor = Some(conn);
            let c = self.conns.get_mut(&conn).expect("listed");
            let index = c.start_read().expect("has a queue");
            let share = c.share().expect("open");
            let s = &self.shares[&share];
            let offset = u64::from(index) * u64::from(s.piece_len);
            let len = s.piece_size(index);
            if let Some(rate) = self.cfg.upload_rate_per_peer {
                c.bucket
                    .get_or_insert_with(|| TokenBucket::new(now, rate))
                    .take(now, u64::from(len));
            }
            if let Some(b) = &mut self.upload {
                b.take(now, u64::from(len));
            }
            self.reads.insert((conn, index));
            self.out.push_back(Output::ReadPiece {
                conn,
                share,
                index,
                offset,
                len,
            });
        }
        // Slots free, yet queued requests wait on their connection's limit.
        if self.reads.len() < self.cfg.reads_max {
            let next = self
                .conns
                .values()
                .filter(|c| !c.queue.is_empty())
                .filter_map(|c| c.bucket.as_ref().map(|b| b.ready_at()))
                .filter(|&t| t > now)
                .min();
            if let Some(t) = next {
                self.timers.set(Timer::Rate, t);
            }
        }
    }

    fn next_with_queue(&self, now: Instant) -> Option<ConnId> {
        let has = |(_, c): &(&ConnId, &Conn)| c.can_start(now);
        let after = match self.rr_cursor {
            Some(cur) => self
                .conns
                .range(cur..)
                .filter(|(id, _)| **id != cur)
                .find(has),
            None => None,
        };
        after
            .or_else(|| self.conns.iter().find(has))
            .map(|(id, _)| *id)
    }

    // ------------------------------------------------------------ outputs

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<(Instant, Timer)> {
        self.timers.next()
    }

    // ------------------------------------------------------------ getters

    pub fn stats(&self) -> &SeederStats {
        &self.stats
    }

    /// Pieces and bytes served to each downloading user.
    pub fn served_by_user(&self) -> &BTreeMap<UserName, Served> {
        &self.served_by_user
    }

    /// Pieces and bytes `share` has served since it was added (`None`:
    /// no such share).
    pub fn share_served(&self, share: ShareId) -> Option<Served> {
        self.shares.get(&share).map(|s| s.served)
    }

    /// Pieces and bytes served on a live connection.
    pub fn conn_served(&self, conn: ConnId) -> Option<Served> {
        self.conns.get(&conn).map(|c| c.served)
    }

    /// Connections known, with a serving slot or waiting for a ticket.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Serving slots taken: connections that showed a valid ticket.
    pub fn slots_taken(&self) -> usize {
        self.conns.values().filter(|c| c.is_open()).count()
    }

    pub fn reads_in_flight(&self) -> usize {
        self.reads.len()
    }

    /// Requests `conn` is owed an answer for (queued or being read).
    pub fn conn_requests(&self, conn: ConnId) -> usize {
        self.conns.get(&conn).map_or(0, Conn::active)
    }

    pub fn share_pieces(&self, share: ShareId) -> Option<&PieceSet> {
        self.shares.get(&share).map(|s| &s.have)
    }

    pub fn identity(&self) -> Option<&UserName> {
        self.identity.as_ref().map(|(u, _)| u)
    }

    // ------------------------------------------------------------ helpers

    fn conn_mut(&mut self, conn: ConnId) -> &mut Conn {
        self.conns.get_mut(&conn).expect("caller checked")
    }

    fn send(&mut self, conn: ConnId, msg: PeerMsg) {
        self.out.push_back(Output::Send { conn, msg });
    }

    /// Refuses the whole connection: `Reject { index: None }`, then close.
    fn refuse(&mut self, conn: ConnId, why: RejectReason) {
        self.reject_conn(conn, why.clone(), CloseReason::Rejected(why));
    }

    fn reject_conn(&mut self, conn: ConnId, why: RejectReason, reason: CloseReason) {
        self.send(conn, reject_all(why));
        self.close(conn, reason);
    }

    fn violation(&mut self, conn: ConnId, what: &'static str) {
        self.send(
            conn,
            PeerMsg::Fatal {
                reason: what.into(),
            },
        );
        self.close(conn, CloseReason::ProtocolViolation { what });
    }

    /// Forgets `conn` and tells the driver to close it.
    fn close(&mut self, conn: ConnId, reason: CloseReason) {
        if self.forget(conn) {
            self.out.push_back(Output::Close { conn, reason });
        }
    }

    /// Forgets `conn` (reads in flight stay counted until answered).
    fn forget(&mut self, conn: ConnId) -> bool {
        self.timers.clear(Timer::Open(conn));
        self.timers.clear(Timer::Idle(conn));
        self.timers.clear(Timer::Expire(conn));
        let known = self.conns.remove(&conn).is_some();
        let conns = &self.conns;
        let open_on = |share: ShareId| -> Vec<ConnId> {
            conns
                .iter()
                .filter(|(_, c)| c.share() == Some(share))
                .map(|(id, _)| *id)
                .collect()
        };
        let shows = self.initial.forget(conn, open_on);
        self.show(shows);
        known
    }

    fn close_all(&mut self, reason: CloseReason) {
        let all: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in all {
            self.close(conn, reason.clone());
        }
    }

    // ------------------------------------------------------------ invariants

    fn debug_check(&self) {
        #[cfg(debug_assertions)]
        self.check_invariants();
    }

    /// Panics if the bookkeeping disagrees with itself (called after every
    /// `handle_*` and command in debug builds, and by the simulator).
    pub fn check_invariants(&self) {
        if let Err(e) = self.invariant_violation() {
            panic!("seeder invariant broken: {e}");
        }
    }

    fn invariant_violation(&self) -> Result<(), String> {
        if !self.timers.is_consistent() {
            return Err("timers".into());
        }
        self.check_counts()?;
        if self.reads.len() > self.cfg.reads_max {
            return Err(format!("{} reads in flight > cap", self.reads.len()));
        }
        if self.by_key.len() != self.shares.len()
            || self.by_key.iter().any(|(k, id)| {
                self.shares
                    .get(id)
                    .is_none_or(|s| (&s.group, &s.file, &s.file_hash) != (&k.0, &k.1, &k.2))
            })
        {
            return Err("share index disagrees with the share table".into());
        }
        self.initial
            .check(|c| self.conns.get(&c).and_then(Conn::share))?;
        for (id, c) in &self.conns {
            c.check(self.cfg.conn_requests_max)
                .map_err(|e| format!("{id}: {e}"))?;
            self.check_conn(*id, c)?;
        }
        Ok(())
    }

    /// Every connection limit holds: slots in total, per user and per
    /// address; ticketless connections in total and per address.
    fn check_counts(&self) -> Result<(), String> {
        let mut per_user: BTreeMap<&UserName, usize> = BTreeMap::new();
        let mut slots_from: BTreeMap<IpAddr, usize> = BTreeMap::new();
        let mut unopened_from: BTreeMap<IpAddr, usize> = BTreeMap::new();
        for c in self.conns.values() {
            if let Some(u) = c.downloader() {
                *per_user.entry(u).or_default() += 1;
                *slots_from.entry(c.addr).or_default() += 1;
            } else {
                *unopened_from.entry(c.addr).or_default() += 1;
            }
        }
        let slots: usize = slots_from.values().sum();
        let unopened: usize = unopened_from.values().sum();
        let cfg = &self.cfg;
        let broken = [
            (slots > cfg.conns_max, "serving slots in total"),
            (
                per_user.values().any(|&n| n > cfg.conns_per_user_max),
                "serving slots of one user",
            ),
            (
                slots_from.values().any(|&n| n > cfg.conns_per_addr_max),
                "serving slots from one address",
            ),
            (unopened > cfg.unopened_max, "ticketless connections"),
            (
                unopened_from
                    .values()
                    .any(|&n| n > cfg.unopened_per_addr_max),
                "ticketless connections from one address",
            ),
        ];
        match broken.iter().find(|(b, _)| *b) {
            Some((_, what)) => Err(format!("too many {what}")),
            None => Ok(()),
        }
    }

    fn check_conn(&self, id: ConnId, c: &Conn) -> Result<(), String> {
        if let ConnState::Open { ticket_key, .. } = &c.state {
            let checked = !self.cfg.bug_skip_key_check && !self.cfg.bug_ignore_tickets;
            if checked && *ticket_key != c.key {
                return Err(format!("{id} is served under a ticket of another key"));
            }
            if !self.timers.is_set(Timer::Expire(id)) {
                return Err(format!("{id} is open with no ticket expiry"));
            }
        }
        match c.share() {
            None if !self.timers.is_set(Timer::Open(id)) => {
                return Err(format!("{id} awaits Open without a deadline"));
            }
            Some(s) if !self.shares.contains_key(&s) => {
                return Err(format!("{id} is bound to a removed share"));
            }
            _ => {}
        }
        let reading = |i: &u32| self.reads.contains(&(id, *i));
        for (i, r) in &c.pending {
            if (*r == downloader::Req::Queued) == reading(i) {
                return Err(format!(
                    "{id}: piece {i} is {r:?} but read-in-flight disagrees"
                ));
            }
        }
        Ok(())
    }
}

/// When a ticket valid through `expires_ms` stops being valid.
fn expiry(expires_ms: u64) -> Instant {
    Instant(expires_ms.saturating_add(1))
}

fn reject_all(reason: RejectReason) -> PeerMsg {
    PeerMsg::Reject {
        index: None,
        reason,
    }
}

impl_machine!(Seeder, Input, Output, Timer);
