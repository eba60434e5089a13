//! The download's side of a harness world: its outputs carried out (links
//! opened to the seeders, messages carried with latency and bandwidth, the
//! tracker's listing with fresh tickets, pieces written to the disk).

use super::*;

impl World {
    pub(super) fn on_download_output(&mut self, out: Output) {
        let later = |ms: u64| self.now + Duration(ms);
        match out {
            Output::Connect { peer, addr } => self.connect(peer, addr),
            Output::Send { peer, msg } => self.download_sends(peer, msg),
            Output::Disconnect { peer, reason } => {
                self.record.disconnects.push((peer, reason.to_string()));
                self.download_closes(peer);
            }
            Output::WritePiece {
                index,
                offset,
                data,
            } => self.write(index, offset, &data),
            Output::AnnounceHave { pieces } => self.record.announces.push(pieces),
            Output::AskTrackerForPeers => {
                self.record.tracker_asks.push(self.now);
                let list = self.listing();
                let at = later(self.sc.tracker_latency_ms);
                self.schedule(at, Event::ToDownload(Input::Peers(list)));
            }
            Output::Finished(r) => self.result = Some(r),
        }
    }

    fn online(&self, i: usize) -> bool {
        let f = &self.seeders[i].spec.faults;
        f.appears_after.is_none_or(|d| self.now >= T0 + d)
    }

    /// The tracker's answer: every online seeder, with a fresh ticket.
    fn listing(&self) -> Vec<PeerInfo> {
        let me = UserName::new("d").expect("valid");
        let expires_ms = (self.now + self.sc.ticket_ttl).as_millis();
        (0..self.seeders.len())
            .filter(|&i| self.online(i))
            .map(|i| {
                let s = &self.seeders[i];
                let mut t = Ticket {
                    downloader: me.clone(),
                    group: self.group.clone(),
                    file: self.meta.name.clone(),
                    file_hash: self.meta.file_hash,
                    seeder: s.user.clone(),
                    downloader_key: DOWNLOADER_KEY,
                    seeder_key: seeder_key(i),
                    expires_ms,
                    mac: Mac::default(),
                };
                ticket::sign(&s.tracker_key, &mut t);
                PeerInfo {
                    user: s.user.clone(),
                    addr: s.addr,
                    pieces: s.spec.pieces.clone(),
                    ticket: t,
                }
            })
            .collect()
    }

    fn connect(&mut self, peer: PeerId, addr: SocketAddr) {
        let found = (0..self.seeders.len()).find(|&i| self.seeders[i].addr == addr);
        let Some(i) = found.filter(|&i| self.online(i) && !self.seeders[i].spec.faults.unreachable)
        else {
            let at = self.now + Duration(1);
            return self.schedule(at, Event::ToDownload(Input::ConnectFailed { peer }));
        };
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        let lat = Duration(self.seeders[i].spec.latency_ms);
        let link = Link {
            seeder: i,
            conn,
            down_open: true,
            seeder_open: true,
            up_free: self.now + lat,
            down_free: self.now + lat + lat,
        };
        self.links.insert(peer, link);
        self.by_conn.insert((i, conn), peer);
        let peer_key = DOWNLOADER_KEY;
        self.schedule(
            self.now + lat,
            Event::ToSeeder(
                i,
                seeder::Input::Opened {
                    conn,
                    peer: peer_key,
                    addr: std::net::IpAddr::from([10, 0, 0, 1]),
                },
            ),
        );
        let key = if self.seeders[i].spec.faults.impostor {
            IMPOSTOR_KEY
        } else {
            seeder_key(i)
        };
        let ev = Event::ToDownload(Input::Connected { peer, key });
        self.schedule(self.now + lat + lat, ev);
    }

    fn download_sends(&mut self, peer: PeerId, msg: PeerMsg) {
        if let (PeerMsg::Request { index }, Some(l)) = (&msg, self.links.get(&peer)) {
            let holds = self.seeders[l.seeder].spec.pieces.contains(*index);
            self.record.requests_to_lacking += u32::from(!holds);
        }
        self.record.cancels_sent += u32::from(matches!(msg, PeerMsg::Cancel { .. }));
        let Some(l) = self.links.get_mut(&peer).filter(|l| l.down_open) else {
            return;
        };
        let lat = Duration(self.seeders[l.seeder].spec.latency_ms);
        l.up_free = l.up_free.max(self.now + lat);
        let (at, i, conn) = (l.up_free, l.seeder, l.conn);
        self.schedule(at, Event::ToSeeder(i, seeder::Input::Msg { conn, msg }));
    }

    fn download_closes(&mut self, peer: PeerId) {
        let Some(l) = self.links.get_mut(&peer).filter(|l| l.down_open) else {
            return;
        };
        l.down_open = false;
        let lat = Duration(self.seeders[l.seeder].spec.latency_ms);
        let at = l.up_free.max(self.now + lat);
        let (i, conn) = (l.seeder, l.conn);
        if l.seeder_open {
            self.schedule(at, Event::ToSeeder(i, seeder::Input::Closed { conn }));
        }
    }

    fn write(&mut self, index: u32, offset: u64, data: &Bytes) {
        let r = piece_range(&self.meta, index);
        assert_eq!(
            offset as usize, r.start,
            "piece {index} written at a wrong offset"
        );
        assert!(
            data[..] == self.file[r.clone()],
            "piece {index} written with bytes that are not the file's"
        );
        *self.record.writes.entry(index).or_default() += 1;
        self.disk[r].copy_from_slice(data);
        let at = self.now + Duration(self.sc.disk_latency_ms);
        let input = if self.sc.write_fail == Some(index) {
            let reason = "No space left on device (os error 28)".into();
            Input::WriteFailed { index, reason }
        } else {
            Input::PieceWritten { index }
        };
        self.schedule(at, Event::ToDownload(input));
    }
}
