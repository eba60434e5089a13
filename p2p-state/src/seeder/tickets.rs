//! Connections and their tickets: a new connection within the bounds on
//! ticketless ones, the `Open` that checks a ticket and takes a serving
//! slot, renewals, the dispatch of a connection's messages, idleness.

use super::*;

impl Seeder {
    /// A new connection: it waits for its ticket without a serving slot,
    /// within the bounds on such connections (in total and from its
    /// address); past either it is refused at once.
    pub(super) fn on_opened(&mut self, now: Instant, conn: ConnId, peer: KeyId, addr: IpAddr) {
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

    pub(super) fn on_msg(&mut self, now: Instant, conn: ConnId, msg: PeerMsg) {
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
    pub(super) fn on_open(&mut self, now: Instant, conn: ConnId, ticket: &Ticket) {
        let Some(share) = self.admit_ticket(now, conn, ticket) else {
            return;
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
    pub(super) fn slots_full(
        &self,
        user: &UserName,
        addr: IpAddr,
    ) -> Option<(&'static str, usize)> {
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
    pub(super) fn on_renew(&mut self, now: Instant, conn: ConnId, ticket: &Ticket) {
        let Some(share) = self.admit_ticket(now, conn, ticket) else {
            return;
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

    /// The share `ticket` opens on `conn` (checked against the key the
    /// connection proved), or `None` once the connection is refused with
    /// the reason (`on_open` and `on_renew` alike).
    fn admit_ticket(&mut self, now: Instant, conn: ConnId, ticket: &Ticket) -> Option<ShareId> {
        let key = self.conns[&conn].key;
        match self.check_ticket(now, ticket, key) {
            Ok(share) => Some(share),
            Err(reason) => {
                self.stats.conns_refused += 1;
                self.refuse(conn, reason);
                None
            }
        }
    }

    /// Which of our shares the ticket opens for a connection that proved
    /// `key`, or why it opens none.
    pub(super) fn check_ticket(
        &self,
        now: Instant,
        t: &Ticket,
        key: KeyId,
    ) -> Result<ShareId, RejectReason> {
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

    pub(super) fn on_idle(&mut self, now: Instant, conn: ConnId) {
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
}
