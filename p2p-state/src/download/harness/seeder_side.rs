//! The seeders' side of a harness world: their outputs carried out
//! (messages, `Serve`s, closes), with each seeder's faults applied to
//! what it sends.

use super::*;

impl World {
    pub(super) fn on_seeder_output(&mut self, i: usize, out: seeder::Output) {
        match out {
            seeder::Output::Send { conn, msg } => self.seeder_sends(i, conn, msg),
            seeder::Output::Serve {
                conn,
                index,
                offset,
                len,
                ..
            } => {
                // As the real drivers do: the bytes go out from the file
                // (here after the disk's latency), then `Served`.
                let at = self.now + Duration(self.sc.disk_latency_ms);
                let (o, n) = (offset as usize, len as usize);
                let range = o..o + n;
                let serve = Event::Serve {
                    i,
                    conn,
                    index,
                    range,
                };
                self.schedule(at, serve);
            }
            seeder::Output::Close { conn, .. } => self.seeder_closes(i, conn),
        }
    }

    pub(super) fn seeder_sends(&mut self, i: usize, conn: ConnId, msg: PeerMsg) {
        let Some(&peer) = self.by_conn.get(&(i, conn)) else {
            return;
        };
        let input = match msg {
            PeerMsg::Piece { index, data } => {
                let Some(data) = self.apply_faults(i, data) else {
                    return;
                };
                let sha1 = hash::sha1(&data);
                Input::Piece {
                    peer,
                    index,
                    data,
                    sha1,
                }
            }
            msg => Input::Msg { peer, msg },
        };
        let bytes = match &input {
            Input::Piece { data, .. } => data.len() as u64,
            _ => 16,
        };
        let s = &self.seeders[i].spec;
        let (lat, bw) = (Duration(s.latency_ms), s.bytes_per_ms.max(1));
        let l = self.links.get_mut(&peer).expect("linked");
        let start = l.down_free.max(self.now);
        l.down_free = start + Duration(bytes.div_ceil(bw));
        let at = l.down_free + lat;
        if l.down_open {
            self.schedule(at, Event::ToDownload(input));
        }
        self.maybe_break(i, conn);
    }

    /// Faults on a piece leaving seeder `i`: swallowed, corrupted or sent.
    fn apply_faults(&mut self, i: usize, data: Bytes) -> Option<Bytes> {
        let s = &mut self.seeders[i];
        s.sent_pieces += 1;
        let f = &s.spec.faults;
        if f.drop_pieces {
            return None;
        }
        let every = f.corrupt_every.map(|n| n.max(1));
        if every.is_none_or(|n| !s.sent_pieces.is_multiple_of(n)) {
            return Some(data);
        }
        let mut v = data.to_vec();
        let at = self.rng.random_range(0..v.len());
        v[at] ^= 0x5a;
        Some(Bytes::from(v))
    }

    fn maybe_break(&mut self, i: usize, conn: ConnId) {
        let s = &mut self.seeders[i];
        let due = s
            .spec
            .faults
            .close_after
            .is_some_and(|n| s.sent_pieces >= n);
        if due && !s.closed_once {
            s.closed_once = true;
            let at = self.now + Duration(1);
            self.schedule(at, Event::ToSeeder(i, seeder::Input::Closed { conn }));
            self.seeder_closes(i, conn);
        }
    }

    fn seeder_closes(&mut self, i: usize, conn: ConnId) {
        let Some(&peer) = self.by_conn.get(&(i, conn)) else {
            return;
        };
        let l = self.links.get_mut(&peer).expect("linked");
        if !l.seeder_open {
            return;
        }
        l.seeder_open = false;
        let lat = Duration(self.seeders[i].spec.latency_ms);
        let at = l.down_free.max(self.now) + lat;
        if l.down_open {
            self.schedule(at, Event::ToDownload(Input::Closed { peer }));
        }
    }
}
