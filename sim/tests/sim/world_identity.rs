//! The world's identity side (issue 15): each client's pins on its
//! simulated disk (its `known_trackers`, kept across restarts), tracker
//! dials hijacked by an impostor with a key of its own, and tickets sniffed
//! from real downloads, replayed by a rogue to the seeder they name.

use bytes::Bytes;

use p2p_proto::{Hello, KeyId, PeerMsg, Role, Ticket};
use p2p_state::Duration;
use runtime_common::client::Ev;

use crate::net::{EvKind, NodeIx};
use crate::swarm::child_seed;
use crate::world::{World, rogue_key, tracker_key};
use crate::world_client::{RogueTarget, frame_of};

/// Tickets remembered for replay (the latest ones).
const SNIFFED_MAX: usize = 32;

impl World {
    /// What a client's `tracker_info.txt` pins: every tracker's real key
    /// for about half the clients, nothing (trust on first use) for the rest.
    pub(crate) fn initial_pins(&self, seed: u64) -> Vec<Option<KeyId>> {
        let pinned = child_seed(seed, 0x7069_6e73) % 2 == 1;
        (0..self.trackers.len())
            .map(|j| pinned.then(|| tracker_key(j)))
            .collect()
    }

    /// `PinTracker`: the driver keeps it in the client's `known_trackers`.
    pub(crate) fn pin_tracker(&mut self, c: NodeIx, index: usize, key: KeyId) {
        trace!(self.trace, self.now.0, "c{c} pins t{} to {key}", index + 1);
        let had = self.clients[c].pins.get(index).copied().flatten();
        self.check.pinned(c, index, key, had, tracker_key(index));
        if let Some(p) = self.clients[c].pins.get_mut(index) {
            *p = Some(key);
        }
    }

    /// If a hijack is pending for client `c` and it pinned tracker `j`, its
    /// dial (`conn`) lands at an impostor proving the rogue key. True if so.
    pub(crate) fn hijack_dial(&mut self, c: NodeIx, conn: u64, j: NodeIx) -> bool {
        let h = &mut self.clients[c];
        if h.hijack_dials == 0 || h.pins.get(j).copied().flatten().is_none() {
            return false;
        }
        h.hijack_dials -= 1;
        let inc = h.inc;
        let id = self.net.fresh_conn();
        let end = crate::net::End::S(c, inc, conn);
        self.net.connect(end, crate::net::End::R(id));
        self.hijacked.insert((c, inc, conn));
        self.check.ident.impostors_refused += 1;
        trace!(
            self.trace,
            self.now.0,
            "HIJACK c{c} dial to t{} (conn {conn})",
            j + 1
        );
        let (peer, writer) = (rogue_key(), self.client_writer(c, end));
        self.defer_client(c, Ev::TrackerUp { conn, writer, peer });
        let at = self.now + Duration(10_000);
        self.net.schedule(at, EvKind::RogueClose { id });
        true
    }

    /// Client `c` sends on tracker connection `conn`: never to an impostor.
    pub(crate) fn watch_tracker_send(&mut self, c: NodeIx, conn: u64) {
        let inc = self.clients[c].inc;
        if self.hijacked.contains(&(c, inc, conn)) {
            self.check.sent_to_impostor(c, conn);
        }
    }

    /// A downloader showed `ticket` to client `c`'s seeder: on the wire, so
    /// a rogue may have recorded it.
    pub(crate) fn sniff(&mut self, c: NodeIx, ticket: Ticket) {
        if self.sniffed.len() >= SNIFFED_MAX {
            self.sniffed.pop_front();
        }
        self.sniffed.push_back((c, ticket));
    }

    /// A rogue replays the `pick`-th sniffed ticket (valid MAC, maybe still
    /// unexpired) to the seeder it names, from its own key, and asks for
    /// pieces. False if there is none to replay or the seeder is down.
    pub fn replay_sniffed(&mut self, pick: u64, hold_ms: u64) -> bool {
        if self.sniffed.is_empty() {
            return false;
        }
        let (k, ticket) = self.sniffed[(pick % self.sniffed.len() as u64) as usize].clone();
        let mut script: Vec<Bytes> = vec![
            frame_of(&Hello::new(Role::Peer)),
            frame_of(&PeerMsg::Open { ticket }),
        ];
        for index in 0..4 {
            script.push(frame_of(&PeerMsg::Request { index }));
        }
        let ok = self.rogue_connect(RogueTarget::Seeder(k), script, hold_ms);
        self.check.ident.sniffed_replays += u64::from(ok);
        ok
    }

    /// The next `n` dials of client `pick % clients` to a tracker it pinned
    /// land at an impostor. False if that client is down.
    pub fn hijack_next_dials(&mut self, pick: u64, n: u32) -> bool {
        let c = (pick % self.clients.len() as u64) as usize;
        if self.clients[c].m().is_none() {
            return false;
        }
        self.clients[c].hijack_dials = n;
        true
    }
}
