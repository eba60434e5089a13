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

    /// A disk read finished (`data`) or failed (`None`).
    pub(super) fn on_read(&mut self, conn: ConnId, index: u32, read: Read) {
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

    /// Gives free disk-read slots to queued requests, one connection at a
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
