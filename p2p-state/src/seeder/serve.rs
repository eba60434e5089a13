//! Serving pieces: requests admitted or refused, `Serve`s handed to the
//! driver round robin within the read slots and the upload rate limits,
//! and what the driver's answer changes (counters, initial seeding's
//! views).

use super::*;

impl Seeder {
    pub(super) fn on_request(&mut self, conn: ConnId, index: u32) {
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

    /// The driver answered a `Serve`: the piece went out on the
    /// connection, or it could not (`why`). Either frees the read slot.
    pub(super) fn on_served(&mut self, conn: ConnId, index: u32, done: Result<(), ServeError>) {
        if !self.reads.remove(&(conn, index)) {
            return; // not a serve we asked for: a driver bug, nothing to do
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return; // closed meanwhile
        };
        if !c.finish_read(index) {
            return; // cancelled
        }
        if done.is_err() {
            self.stats.read_failures += 1;
            let reason = RejectReason::NoSuchPiece { index };
            let msg = PeerMsg::Reject {
                index: Some(index),
                reason,
            };
            return self.send(conn, msg);
        }
        let share = c.share().expect("serves only for open connections");
        let meta = self.shares.get_mut(&share).expect("open shares exist");
        let len = meta.piece_size(index) as usize;
        meta.served.add(len);
        c.served.add(len);
        let user = c.downloader().expect("open").clone();
        self.stats.served.add(len);
        self.served_by_user.entry(user).or_default().add(len);
        let shows = self.initial.on_served(conn, index);
        self.show(shows);
    }

    /// The downloader on `conn` holds `index` now (from anyone).
    pub(super) fn on_peer_has(&mut self, conn: ConnId, index: u32) {
        let share = self.conns[&conn].share().expect("open");
        let shows = self.initial.on_held(conn, share, index);
        self.show(shows);
    }

    /// Tells connections of the pieces initial seeding now shows them.
    pub(super) fn show(&mut self, shows: Vec<Show>) {
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

    /// Gives free read slots (`Serve`s in flight) to queued requests, one connection at a
    /// time in round-robin order, as fast as the upload rate limits allow:
    /// the global one over all connections, and each connection's own
    /// (a connection in debt is skipped). When they do not, a `Rate` timer
    /// wakes us when the first will.
    pub(super) fn dispatch_reads(&mut self, now: Instant) {
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
            self.out.push_back(Output::Serve {
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

    pub(super) fn next_with_queue(&self, now: Instant) -> Option<ConnId> {
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
}
