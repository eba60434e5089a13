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
//! `Serve` for the driver (serve this range of this share on this
//! connection), which sends the `Piece` frame itself, straight from the
//! file, and answers `Served` (counted) or `ServeFailed` (refused to the
//! peer as `NoSuchPiece`).
//! Limits (named constants in `interface.rs`): a connection takes a *serving
//! slot* only when its ticket verifies; slots are bounded in total, per
//! downloading user and per source address (`Busy` at `Open` beyond).
//! Connections that have shown no ticket yet are bounded apart, in total
//! and per source address (refused at once beyond), and must show one in
//! time: a flood of ticketless connections, or many users from one host,
//! cannot take the slots others are served in. Also: requests per
//! connection (`Busy` beyond), `Serve`s in flight over all connections,
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
//! Files: this one holds the machine's state, its input dispatch, getters
//! and the helpers its parts share; `interface.rs` (vocabulary and
//! limits), `commands.rs` (identity, rate limits, share table),
//! `tickets.rs` (connections, `Open`, renewals, idleness), `serve.rs`
//! (requests, `Serve`s round robin under the limits, the driver's
//! answers), `downloader.rs` (one connection's request queue),
//! `initial.rs` (initial seeding), `invariants.rs`, `tests/` (by concern).

mod commands;
mod downloader;
mod initial;
mod interface;
mod invariants;
mod serve;
#[cfg(test)]
mod tests;
mod tickets;

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

    pub(super) fn conns_on(&self, share: ShareId) -> Vec<ConnId> {
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
            Input::Served { conn, index } => self.on_served(conn, index, Ok(())),
            Input::ServeFailed { conn, index, why } => self.on_served(conn, index, Err(why)),
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

    pub(super) fn conn_mut(&mut self, conn: ConnId) -> &mut Conn {
        self.conns.get_mut(&conn).expect("caller checked")
    }

    pub(super) fn send(&mut self, conn: ConnId, msg: PeerMsg) {
        self.out.push_back(Output::Send { conn, msg });
    }

    /// Refuses the whole connection: `Reject { index: None }`, then close.
    pub(super) fn refuse(&mut self, conn: ConnId, why: RejectReason) {
        self.reject_conn(conn, why.clone(), CloseReason::Rejected(why));
    }

    pub(super) fn reject_conn(&mut self, conn: ConnId, why: RejectReason, reason: CloseReason) {
        self.send(conn, reject_all(why));
        self.close(conn, reason);
    }

    pub(super) fn violation(&mut self, conn: ConnId, what: &'static str) {
        self.send(
            conn,
            PeerMsg::Fatal {
                reason: what.into(),
            },
        );
        self.close(conn, CloseReason::ProtocolViolation { what });
    }

    /// Forgets `conn` and tells the driver to close it.
    pub(super) fn close(&mut self, conn: ConnId, reason: CloseReason) {
        if self.forget(conn) {
            self.out.push_back(Output::Close { conn, reason });
        }
    }

    /// Forgets `conn` (reads in flight stay counted until answered).
    pub(super) fn forget(&mut self, conn: ConnId) -> bool {
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

    pub(super) fn close_all(&mut self, reason: CloseReason) {
        let all: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in all {
            self.close(conn, reason.clone());
        }
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
