//! The client half of the world's driver: executing a client machine's
//! outputs (tracker and peer connections, the part file, piece reads for
//! the seeder) with the checker watching every piece that moves, and rogue
//! connections that send garbage or forged tickets.

use bytes::{Bytes, BytesMut};

use p2p_proto::{PieceSet, Wire};
use p2p_state::client::node::{self as cn, PeerOut};
use p2p_state::seeder::{ConnId, ServeError, ShareId};
use p2p_state::tracker::node as tn;
use p2p_state::{Duration, Instant};

use crate::net::{Dialer, End, EvKind, Host, NodeIx};
use crate::world::{World, rogue_addr};

/// Where a rogue connection goes.
#[derive(Debug, Clone, Copy)]
pub enum RogueTarget {
    Tracker(NodeIx),
    Seeder(NodeIx),
}

impl World {
    pub(crate) fn client_output(&mut self, c: NodeIx, o: cn::Output) {
        let inc = self.clients[c].inc;
        match o {
            cn::Output::TrackerConnect { conn, addr } => self.connect_tracker(c, conn, addr),
            cn::Output::TrackerSend { conn, frame } => {
                if let Some(id) = self.client_id(c) {
                    let key = crate::world::client_key(c);
                    self.check.request_sent(id, key, &frame);
                }
                self.watch_tracker_send(c, conn);
                self.net
                    .write(self.now, End::S(c, inc, conn), World::framed(&frame));
            }
            cn::Output::TrackerClose { conn } => self.net.close(self.now, End::S(c, inc, conn)),
            cn::Output::PeerConnect { conn, addr } => self.connect_peer(c, conn, addr),
            cn::Output::PeerSend { conn, msg } => self.peer_send(c, conn, msg),
            cn::Output::PeerClose { conn } => self.net.close(self.now, End::P(c, inc, conn)),
            cn::Output::PinTracker { index, key } => self.pin_tracker(c, index, key),
            cn::Output::PrepareDest { dl, dest, meta } => self.prepare_dest(c, dl, dest, meta),
            cn::Output::WritePiece {
                dl,
                index,
                offset,
                data,
            } => self.write_piece(c, dl, index, offset, data),
            cn::Output::Finalize { dl } => self.finalize(c, dl),
            cn::Output::Serve {
                conn,
                share,
                index,
                offset,
                len,
            } => self.serve(c, conn, share, index, offset, len),
            cn::Output::Done { tag, result } => {
                trace!(
                    self.trace,
                    self.now.0,
                    "c{c} done #{tag} {}",
                    short_result(&result)
                );
                self.clients[c].done.push((tag, result));
            }
            cn::Output::Event(e) => self.client_event(c, e),
        }
    }

    fn client_event(&mut self, c: NodeIx, e: cn::ClientEvent) {
        use p2p_state::client::session::SessionEvent as S;
        trace!(self.trace, self.now.0, "c{c} {}", short_event(&e));
        let h = &mut self.clients[c];
        match &e {
            cn::ClientEvent::Session(S::LoggedIn { user, seeder_key }) => {
                h.identity = Some((user.clone(), *seeder_key));
            }
            cn::ClientEvent::Session(S::LoggedOut | S::SessionLost) => h.identity = None,
            _ => {}
        }
        h.events.push(e);
    }

    fn connect_tracker(&mut self, c: NodeIx, conn: u64, addr: std::net::SocketAddr) {
        let inc = self.clients[c].inc;
        trace!(self.trace, self.now.0, "c{c} dials {addr} (conn {conn})");
        let j = self.trackers.iter().position(|t| t.addr == addr);
        let up = j.is_some_and(|j| self.trackers[j].m().is_some());
        let reach = j.is_some_and(|j| self.net.reachable(Host::Client(c), Host::Tracker(j)));
        let (Some(j), true, true) = (j, up, reach) else {
            let dark = j.is_some_and(|j| self.net.is_dark(Host::Tracker(j)));
            self.dial_failed_later((up || dark) && !reach, Dialer::Session(c, inc, conn));
            return;
        };
        if self.hijack_dial(c, conn, j) {
            return;
        }
        let tconn = self.net.fresh_conn();
        self.net.connect(End::S(c, inc, conn), End::T(j, tconn));
        let addr = crate::world::client_addr(c);
        let peer = crate::world::client_key(c);
        self.defer_tracker(
            j,
            tn::Input::Accepted {
                conn: tconn,
                addr,
                peer,
            },
        );
        let peer = crate::world::tracker_key(j);
        self.defer_client(c, cn::Input::TrackerConnected { conn, peer });
    }

    fn connect_peer(&mut self, c: NodeIx, conn: cn::PeerConnId, addr: std::net::SocketAddr) {
        let inc = self.clients[c].inc;
        let k = World::client_of(addr).filter(|&k| k < self.clients.len());
        let up = k.is_some_and(|k| self.clients[k].m.is_some());
        let reach = k.is_some_and(|k| self.net.reachable(Host::Client(c), Host::Client(k)));
        let (Some(k), true, true) = (k, up, reach) else {
            let dark = k.is_some_and(|k| self.net.is_dark(Host::Client(k)));
            self.dial_failed_later((up || dark) && !reach, Dialer::Peer(c, inc, conn));
            return;
        };
        let pconn = self.net.fresh_conn();
        let kinc = self.clients[k].inc;
        let accepted = cn::PeerConnId::Inbound(ConnId(pconn));
        self.net
            .connect(End::P(c, inc, conn), End::P(k, kinc, accepted));
        let peer = crate::world::client_key(c);
        self.check.peer_key(k, pconn, peer);
        let addr = crate::world::client_addr(c).ip();
        let input = cn::Input::PeerAccepted {
            conn: accepted,
            peer,
            addr,
        };
        self.defer_client(k, input);
        let peer = crate::world::client_key(k);
        self.defer_client(c, cn::Input::PeerConnected { conn, peer });
    }

    fn peer_send(&mut self, c: NodeIx, conn: cn::PeerConnId, msg: PeerOut) {
        let mut b = BytesMut::new();
        let inc = self.clients[c].inc;
        match &msg {
            PeerOut::Hello(h) => p2p_proto::encode_msg(h, &mut b),
            PeerOut::Msg(m) => {
                if let (p2p_proto::PeerMsg::Piece { index, .. }, Some(id)) = (m, conn.inbound()) {
                    self.check.piece_sent(c, id.0, *index);
                }
                p2p_proto::encode_msg(m, &mut b)
            }
        }
        self.net.write(self.now, End::P(c, inc, conn), b.freeze());
    }

    fn prepare_dest(&mut self, c: NodeIx, dl: u64, dest: u64, meta: p2p_proto::FileMeta) {
        let h = &mut self.clients[c];
        h.dests.insert(dl, dest);
        h.metas.insert(dl, meta.clone());
        let (data, have) = h.disk.parts.entry(dest).or_insert_with(|| {
            (
                vec![0; meta.size as usize],
                PieceSet::empty(meta.piece_count()),
            )
        });
        if data.len() != meta.size as usize || have.len() != meta.piece_count() {
            *data = vec![0; meta.size as usize];
            *have = PieceSet::empty(meta.piece_count());
        }
        let have = have.clone();
        self.check.resumed(have.count());
        self.defer_client(c, cn::Input::DestReady { dl, have });
    }

    fn write_piece(&mut self, c: NodeIx, dl: u64, index: u32, offset: u64, data: Bytes) {
        let h = &mut self.clients[c];
        let (Some(&dest), Some(meta)) = (h.dests.get(&dl), h.metas.get(&dl)) else {
            self.check
                .violation(format!("c{c} wrote to unknown download {dl}"));
            return;
        };
        let Some((buf, have)) = h.disk.parts.get_mut(&dest) else {
            self.check
                .violation(format!("c{c} wrote to dest {dest} with no part file"));
            return;
        };
        let ok = self
            .check
            .piece_written(c, meta, index, offset, &data, have.contains(index));
        let end = offset as usize + data.len();
        if ok && end <= buf.len() {
            buf[offset as usize..end].copy_from_slice(&data);
            have.insert(index);
        }
        self.defer_client(c, cn::Input::PieceWritten { dl, index });
    }

    fn finalize(&mut self, c: NodeIx, dl: u64) {
        let h = &mut self.clients[c];
        let (Some(&dest), Some(meta)) = (h.dests.get(&dl), h.metas.get(&dl)) else {
            return;
        };
        let Some((data, _)) = h.disk.parts.remove(&dest) else {
            self.check
                .violation(format!("c{c} finalized dest {dest} twice"));
            return;
        };
        let data = Bytes::from(data);
        self.check.finalized(c, meta, &data);
        h.disk.finished.insert(dest, data);
        self.defer_client(c, cn::Input::Finalized { dl });
    }

    /// A seeder's `Serve`, done the way the real drivers do it: a share
    /// with no file, or a file too short, fails it before anything is
    /// sent; otherwise the piece goes out on the connection from the file,
    /// then the seeder hears `Served`.
    fn serve(
        &mut self,
        c: NodeIx,
        conn: cn::PeerConnId,
        share: ShareId,
        index: u32,
        off: u64,
        len: u32,
    ) {
        let registered = self.share_registration(c, share);
        let id = conn.inbound().map_or(u64::MAX, |id| id.0);
        self.check.read_piece(c, id, registered.as_ref(), index);
        let Some(data) = self.piece_bytes(c, share, index, off, len, true) else {
            let why = ServeError::NoFile;
            return self.defer_client(c, cn::Input::ServeFailed { conn, index, why });
        };
        self.check.piece_sent(c, id, index);
        let piece = p2p_proto::PeerMsg::Piece {
            index,
            data: Bytes::from(data),
        };
        let mut b = BytesMut::new();
        p2p_proto::encode_msg(&piece, &mut b);
        let inc = self.clients[c].inc;
        self.net.write(self.now, End::P(c, inc, conn), b.freeze());
        self.defer_client(c, cn::Input::Served { conn, index });
    }

    /// The group and metadata `share` was registered with, if any.
    fn share_registration(
        &self,
        c: NodeIx,
        share: ShareId,
    ) -> Option<(p2p_proto::GroupName, p2p_proto::FileMeta)> {
        let h = &self.clients[c];
        match share {
            ShareId::Download(dl) => {
                let dest = h.dests.get(&dl).copied().unwrap_or(u64::MAX);
                h.metas
                    .get(&dl)
                    .zip(h.dest_group.get(&dest))
                    .map(|(m, g)| (g.clone(), m.clone()))
            }
            ShareId::Upload(n) => h.shares.get(&n).cloned(),
        }
    }

    /// `len` bytes at `off` of `share`'s file on the client's disk (with
    /// `damage`, a corrupt seeder flips a byte of some pieces); `None` if
    /// the file is gone or short.
    fn piece_bytes(
        &mut self,
        c: NodeIx,
        share: ShareId,
        index: u32,
        off: u64,
        len: u32,
        damage: bool,
    ) -> Option<Vec<u8>> {
        let h = &self.clients[c];
        let src = match share {
            ShareId::Download(dl) => {
                let dest = h.dests.get(&dl).copied().unwrap_or(u64::MAX);
                h.disk.parts.get(&dest).map(|p| &p.0[..]).or(h
                    .disk
                    .finished
                    .get(&dest)
                    .map(|b| &b[..]))
            }
            ShareId::Upload(n) => h.disk.shared.get(&n).map(|b| &b[..]),
        };
        let end = (off + u64::from(len)) as usize;
        let mut d = src.filter(|f| end <= f.len())?[off as usize..end].to_vec();
        if let Some(salt) = h.corrupt.filter(|_| damage)
            && !d.is_empty()
            && crate::swarm::child_seed(salt, index).is_multiple_of(3)
        {
            d[0] ^= 0xff;
            self.check.stats.corrupt_reads += 1;
            trace!(self.trace, self.now.0, "c{c} serves piece {index} corrupt");
        }
        Some(d)
    }

    // ------------------------------------------------------------ rogues

    /// A rogue peer connects to `target`, writes `script` (raw bytes) and
    /// hangs up after `hold_ms`. False if the target is down or cut off.
    pub fn rogue_connect(&mut self, target: RogueTarget, script: Vec<Bytes>, hold_ms: u64) -> bool {
        let id = self.net.fresh_conn();
        match target {
            RogueTarget::Tracker(j) => {
                if self.trackers[j].m().is_none() {
                    return false;
                }
                let tconn = self.net.fresh_conn();
                self.net.connect(End::R(id), End::T(j, tconn));
                let (addr, peer) = (rogue_addr(), crate::world::rogue_key());
                self.defer_tracker(
                    j,
                    tn::Input::Accepted {
                        conn: tconn,
                        addr,
                        peer,
                    },
                );
            }
            RogueTarget::Seeder(k) => {
                if self.clients[k].m.is_none() {
                    return false;
                }
                let pconn = self.net.fresh_conn();
                let kinc = self.clients[k].inc;
                let accepted = cn::PeerConnId::Inbound(ConnId(pconn));
                self.net.connect(End::R(id), End::P(k, kinc, accepted));
                let peer = crate::world::rogue_key();
                self.check.peer_key(k, pconn, peer);
                let addr = crate::world::rogue_addr().ip();
                let input = cn::Input::PeerAccepted {
                    conn: accepted,
                    peer,
                    addr,
                };
                self.defer_client(k, input);
            }
        }
        self.flush();
        for b in script {
            self.net.write(self.now, End::R(id), b);
        }
        self.net
            .schedule(self.now + Duration(hold_ms), EvKind::RogueClose { id });
        trace!(self.trace, self.now.0, "ROGUE r{id} -> {target:?}");
        true
    }

    /// Node time of a seeder (for signing tickets that expire relative to it).
    pub fn seeder_now(&self, k: NodeIx) -> Instant {
        self.cnow(k)
    }
}

/// Encodes one message as a frame.
pub fn frame_of<M: Wire>(m: &M) -> Bytes {
    let mut b = BytesMut::new();
    p2p_proto::encode_msg(m, &mut b);
    b.freeze()
}

pub fn short_result(
    r: &Result<p2p_state::client::node::CommandOk, p2p_state::client::session::ClientError>,
) -> String {
    use p2p_proto::Reply;
    use p2p_state::client::node::CommandOk;
    match r {
        Ok(CommandOk::Reply(Reply::Files(f))) => format!("Ok(Files x{})", f.len()),
        Ok(CommandOk::Reply(Reply::Groups(g))) => format!("Ok(Groups x{})", g.len()),
        Ok(CommandOk::Reply(Reply::Peers(p))) => format!("Ok(Peers x{})", p.len()),
        Ok(CommandOk::Reply(Reply::File(m))) => format!("Ok(File {})", m.name),
        Ok(CommandOk::Reply(Reply::LoggedIn { user, .. })) => format!("Ok(LoggedIn {user})"),
        Ok(CommandOk::Reply(r)) => format!("Ok({r:?})"),
        Ok(CommandOk::Started { dl }) => format!("Ok(Started dl {dl})"),
        Ok(CommandOk::Downloads(d)) => format!("Ok(Downloads x{})", d.len()),
        Ok(CommandOk::Rates(r)) => format!("Ok({r:?})"),
        Err(e) => format!("Err({e})"),
    }
}

fn short_event(e: &cn::ClientEvent) -> String {
    use p2p_state::client::session::SessionEvent as S;
    match e {
        cn::ClientEvent::Session(S::LoggedIn { user, .. }) => format!("LoggedIn {user}"),
        other => format!("{other:?}"),
    }
}
