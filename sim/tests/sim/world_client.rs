//! The client half of the world's driver: the real driver core of
//! `runtime-common` (`client::Core`, which executes the machine's outputs)
//! over simulated I/O (`sim_client_io.rs`), and the world executing what
//! the core asked of its host: bytes and closes on the network, dials to
//! trackers and peers (their results come back as the core's events, as
//! from the runtimes' dialers), disk jobs on the in-memory disk (part
//! files, finalizing, opening shares), pieces served from it, pins; with
//! the checker watching every piece that moves. And rogue connections
//! that send garbage or forged tickets.

use std::net::IpAddr;
use std::sync::mpsc::TryRecvError;

use bytes::{Bytes, BytesMut};

use p2p_proto::{FileMeta, GroupName, KeyId, PieceSet, Wire};
use p2p_state::client::node as cn;
use p2p_state::seeder::ConnId;
use p2p_state::tracker::node as tn;
use p2p_state::{Duration, Instant};
use runtime_common::client::{Ev, Job, JobDone};
use runtime_common::conn::FileRange;

use crate::net::{Dialer, End, EvKind, Host, NodeIx};
use crate::sim_client_io::{ClientEffect, ClientEv, SimClientWriter, SimFile, SimPart};
use crate::world::{World, rogue_addr};

/// Where a rogue connection goes.
#[derive(Debug, Clone, Copy)]
pub enum RogueTarget {
    Tracker(NodeIx),
    Seeder(NodeIx),
}

impl World {
    /// One turn of client `c`'s core on its clock (`None`: its deadline),
    /// then what it asked of its host.
    pub(crate) fn client_turn(&mut self, c: NodeIx, ev: Option<ClientEv>) {
        let now = self.cnow(c);
        let h = &mut self.clients[c];
        let Some(core) = h.core.as_mut() else {
            return;
        };
        h.clock.set(now);
        let go_on = core.turn(ev);
        assert!(go_on, "a simulated client never stops by itself");
        self.client_effects(c);
    }

    /// What client `c`'s core told its handle (events, answers) and asked
    /// of its host (in order); then when it must wake up.
    pub(crate) fn client_effects(&mut self, c: NodeIx) {
        let h = &self.clients[c];
        let events: Vec<_> = h.events_rx.iter().flat_map(|rx| rx.try_iter()).collect();
        for e in events {
            self.client_event(c, e);
        }
        self.client_answers(c);
        for e in self.clients[c].fx.take() {
            self.client_effect(c, e);
        }
        self.client_wake(c);
    }

    pub(crate) fn client_wake(&mut self, c: NodeIx) {
        let h = &self.clients[c];
        let deadline = h.core.as_ref().and_then(|core| core.poll_timeout());
        self.clients[c].wake = self.wake_at(deadline, h.skew_ms);
    }

    /// Answers to client `c`'s commands land in `done`, under the tags
    /// the world gave them.
    fn client_answers(&mut self, c: NodeIx) {
        let mut answered = Vec::new();
        self.clients[c]
            .replies
            .retain(|(tag, rx)| match rx.try_recv() {
                Ok(result) => {
                    answered.push((*tag, result));
                    false
                }
                Err(e) => e == TryRecvError::Empty,
            });
        for (tag, result) in answered {
            trace!(
                self.trace,
                self.now.0,
                "c{c} done #{tag} {}",
                short_result(&result)
            );
            self.clients[c].done.push((tag, result));
        }
    }

    fn client_effect(&mut self, c: NodeIx, e: ClientEffect) {
        match e {
            ClientEffect::Send(end, frame) => {
                if let End::S(_, _, conn) = end {
                    if let Some(id) = self.client_id(c) {
                        let key = crate::world::client_key(c);
                        self.check.request_sent(id, key, &frame.slice(4..));
                    }
                    self.watch_tracker_send(c, conn);
                }
                self.net.write(self.now, end, frame);
            }
            ClientEffect::Parts(end, head, body) => {
                if let End::P(_, _, conn) = end
                    && let Some(id) = conn.inbound()
                {
                    self.check.piece_sent(c, id.0, piece_index(&head));
                }
                self.net.write(self.now, end, [head, body].concat().into());
            }
            ClientEffect::SendFile(end, head, range) => self.send_file(c, end, head, range),
            ClientEffect::Close(end) | ClientEffect::Abort(end) => self.net.close(self.now, end),
            ClientEffect::ConnectTracker(conn, addr) => self.connect_tracker(c, conn, addr),
            ClientEffect::ConnectPeer(conn, addr) => self.connect_peer(c, conn, addr),
            ClientEffect::Disk(job) => self.client_disk(c, job),
            ClientEffect::Pin(index, key) => self.pin_tracker(c, index, key),
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

    /// A writer for client `c`'s end of a connection.
    pub(crate) fn client_writer(&self, c: NodeIx, end: End) -> SimClientWriter {
        let fx = self.clients[c].fx.clone();
        SimClientWriter { end, fx }
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
        let end = End::S(c, inc, conn);
        self.net.connect(end, End::T(j, tconn));
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
        let writer = self.client_writer(c, end);
        let peer = crate::world::tracker_key(j);
        self.defer_client(c, Ev::TrackerUp { conn, writer, peer });
    }

    fn connect_peer(&mut self, c: NodeIx, conn: cn::PeerConnId, addr: std::net::SocketAddr) {
        let inc = self.clients[c].inc;
        let k = World::client_of(addr).filter(|&k| k < self.clients.len());
        let up = k.is_some_and(|k| self.clients[k].m().is_some());
        let reach = k.is_some_and(|k| self.net.reachable(Host::Client(c), Host::Client(k)));
        let (Some(k), true, true) = (k, up, reach) else {
            let dark = k.is_some_and(|k| self.net.is_dark(Host::Client(k)));
            self.dial_failed_later((up || dark) && !reach, Dialer::Peer(c, inc, conn));
            return;
        };
        let pconn = self.net.fresh_conn();
        let kinc = self.clients[k].inc;
        let accepted = cn::PeerConnId::Inbound(ConnId(pconn));
        let (end, kend) = (End::P(c, inc, conn), End::P(k, kinc, accepted));
        self.net.connect(end, kend);
        let peer = crate::world::client_key(c);
        self.check.peer_key(k, pconn, peer);
        let addr = crate::world::client_addr(c).ip();
        self.peer_accepted(k, accepted, addr, peer);
        let up = Ev::PeerUp {
            conn,
            writer: self.client_writer(c, end),
            inbound: None,
            peer: crate::world::client_key(k),
        };
        self.defer_client(c, up);
    }

    /// Client `k`'s seeder accepted connection `conn` from `addr`, whose
    /// other end proved `peer`.
    fn peer_accepted(&mut self, k: NodeIx, conn: cn::PeerConnId, addr: IpAddr, peer: KeyId) {
        let end = End::P(k, self.clients[k].inc, conn);
        let up = Ev::PeerUp {
            conn,
            writer: self.client_writer(k, end),
            inbound: Some(addr),
            peer,
        };
        self.defer_client(k, up);
    }

    /// A disk job of client `c`, done at once on its in-memory disk; what
    /// it reports comes back as the core's event, after this turn.
    fn client_disk(&mut self, c: NodeIx, job: Job<SimPart, SimFile>) {
        let done = match job {
            Job::OpenDest { dl, dest, meta, .. } => {
                let dest = dest.to_str().and_then(|d| d.parse().ok());
                let dest = dest.expect("the world registers destinations by id");
                self.open_dest(c, dl, dest, meta)
            }
            Job::Write {
                part,
                index,
                offset,
                data,
                ..
            } => {
                if !self.write_piece(c, part, index, offset, data) {
                    return;
                }
                JobDone::Input(cn::Input::PieceWritten { dl: part.dl, index })
            }
            Job::Finalize { dl, part } => {
                if !self.finalize(c, part) {
                    return;
                }
                JobDone::Input(cn::Input::Finalized { dl })
            }
            Job::OpenShare { share, .. } => {
                let file = self.clients[c].disk.shared.get(&share);
                let opened = file
                    .map(|f| (SimFile::Shared(share), f.len() as u64))
                    .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound));
                JobDone::ShareOpened { share, opened }
            }
            // Only advice; and the simulated table is not kept across
            // restarts (the workload shares again).
            Job::ReadAhead { .. } | Job::SaveShares { .. } => return,
        };
        self.defer_client(c, Ev::Disk(done));
    }

    fn open_dest(
        &mut self,
        c: NodeIx,
        dl: u64,
        dest: u64,
        meta: FileMeta,
    ) -> JobDone<SimPart, SimFile> {
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
        let file = SimPart { dl, dest };
        JobDone::DestOpened { dl, file, have }
    }

    /// False if the write went nowhere (a violation).
    fn write_piece(
        &mut self,
        c: NodeIx,
        part: SimPart,
        index: u32,
        offset: u64,
        data: Bytes,
    ) -> bool {
        let (dl, dest) = (part.dl, part.dest);
        let h = &mut self.clients[c];
        let Some(meta) = h.metas.get(&dl) else {
            self.check
                .violation(format!("c{c} wrote to unknown download {dl}"));
            return false;
        };
        let Some((buf, have)) = h.disk.parts.get_mut(&dest) else {
            self.check
                .violation(format!("c{c} wrote to dest {dest} with no part file"));
            return false;
        };
        let ok = self
            .check
            .piece_written(c, meta, index, offset, &data, have.contains(index));
        let end = offset as usize + data.len();
        if ok && end <= buf.len() {
            buf[offset as usize..end].copy_from_slice(&data);
            have.insert(index);
        }
        true
    }

    /// False if there is nothing to finalize.
    fn finalize(&mut self, c: NodeIx, part: SimPart) -> bool {
        let (dl, dest) = (part.dl, part.dest);
        let h = &mut self.clients[c];
        let Some(meta) = h.metas.get(&dl) else {
            return false;
        };
        let Some((data, _)) = h.disk.parts.remove(&dest) else {
            self.check
                .violation(format!("c{c} finalized dest {dest} twice"));
            return false;
        };
        let data = Bytes::from(data);
        self.check.finalized(c, meta, &data);
        h.disk.finished.insert(dest, data);
        true
    }

    /// A piece served from a file, as the runtimes' writers send it: the
    /// range read from the file (a corrupt seeder damages some), behind
    /// the frame head; a file too short for it aborts the connection.
    fn send_file(&mut self, c: NodeIx, end: End, head: Bytes, range: FileRange<SimFile>) {
        let index = piece_index(&head);
        let registered = self.share_registration(c, range.file);
        let id = match end {
            End::P(_, _, conn) => conn.inbound().map_or(u64::MAX, |id| id.0),
            _ => u64::MAX,
        };
        self.check.read_piece(c, id, registered.as_ref(), index);
        let Some(data) = self.piece_bytes(c, range, index) else {
            return self.net.close(self.now, end);
        };
        self.check.piece_sent(c, id, index);
        self.net
            .write(self.now, end, [&head[..], &data].concat().into());
    }

    /// The group and metadata `file` was registered with, if any.
    fn share_registration(&self, c: NodeIx, file: SimFile) -> Option<(GroupName, FileMeta)> {
        let h = &self.clients[c];
        match file {
            SimFile::Part(SimPart { dl, dest }) => h
                .metas
                .get(&dl)
                .zip(h.dest_group.get(&dest))
                .map(|(m, g)| (g.clone(), m.clone())),
            SimFile::Shared(n) => h.shares.get(&n).cloned(),
        }
    }

    /// The range's bytes on the client's disk (a corrupt seeder flips a
    /// byte of some pieces); `None` if the file is gone or short.
    fn piece_bytes(&mut self, c: NodeIx, range: FileRange<SimFile>, index: u32) -> Option<Vec<u8>> {
        let h = &self.clients[c];
        let src = match range.file {
            SimFile::Part(SimPart { dest, .. }) => h.disk.parts.get(&dest).map(|p| &p.0[..]).or(h
                .disk
                .finished
                .get(&dest)
                .map(|b| &b[..])),
            SimFile::Shared(n) => h.disk.shared.get(&n).map(|b| &b[..]),
        };
        let (off, end) = (range.offset as usize, range.offset as usize + range.len);
        let mut d = src.filter(|f| end <= f.len())?[off..end].to_vec();
        if let Some(salt) = h.corrupt
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
                if self.clients[k].m().is_none() {
                    return false;
                }
                let pconn = self.net.fresh_conn();
                let kinc = self.clients[k].inc;
                let accepted = cn::PeerConnId::Inbound(ConnId(pconn));
                self.net.connect(End::R(id), End::P(k, kinc, accepted));
                let peer = crate::world::rogue_key();
                self.check.peer_key(k, pconn, peer);
                let addr = crate::world::rogue_addr().ip();
                self.peer_accepted(k, accepted, addr, peer);
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

/// The piece index in a piece frame's head (frame length, tag, index,
/// data length).
fn piece_index(head: &[u8]) -> u32 {
    u32::from_be_bytes(head[5..9].try_into().expect("a piece frame head"))
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
