//! Identity checkers (issue 15), outside the machines:
//! - a seeder reads or sends a piece only on a connection whose proven TLS
//!   key is the `downloader_key` of the ticket it was opened with;
//! - a `Resumed` reply reaches only a connection whose key logged that
//!   user in (no session is resumed by another key);
//! - a client pins a tracker only once, and only to that tracker's real key
//!   (hijacked dials go only to clients that pinned already), and never
//!   sends a byte to an impostor tracker.
//!
//! Kept apart from the tracker's own checks: it watches only frames
//! delivered to client and rogue ends, and the keys the world hands out.

use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};

use p2p_proto::{FromTracker, KeyId, Reply, Ticket, UserName, Wire};

use crate::check::Checker;
use crate::net::NodeIx;

#[derive(Default)]
pub struct Ident {
    /// Seeder-side connections (client, conn) and the key they proved.
    peer_keys: BTreeMap<(NodeIx, u64), KeyId>,
    /// Keys a `LoggedIn` reached, by user.
    logins: BTreeMap<UserName, BTreeSet<KeyId>>,
    pub resumed: u64,
    pub pins: u64,
    pub impostors_refused: u64,
    pub sniffed_replays: u64,
}

impl Checker {
    /// An inbound peer connection `conn` of client `c` proved `key`.
    pub fn peer_key(&mut self, c: NodeIx, conn: u64, key: KeyId) {
        self.ident.peer_keys.insert((c, conn), key);
    }

    pub fn peers_gone(&mut self, c: NodeIx) {
        self.ident.peer_keys.retain(|(k, _), _| *k != c);
    }

    /// Client `c`'s seeder served `index` on `conn`, opened with `ticket`.
    pub fn served_to_key(&mut self, c: NodeIx, conn: u64, index: u32, ticket: &Ticket) {
        let key = self.ident.peer_keys.get(&(c, conn)).copied();
        if key != Some(ticket.downloader_key) {
            let key = key.map_or("no key".to_string(), |k| k.to_string());
            self.violation(format!(
                "c{c} seeder served piece {index} on conn {conn}, whose key {key} is not its \
                 ticket's downloader key {} (ticket of {})",
                ticket.downloader_key, ticket.downloader
            ));
        }
    }

    /// A frame from a tracker reached a client-side end whose key is `key`.
    pub fn reply_to_key(&mut self, key: KeyId, payload: &Bytes) {
        let Ok(FromTracker::Response { outcome: Ok(r), .. }) =
            FromTracker::from_bytes(payload.clone())
        else {
            return;
        };
        match r {
            Reply::LoggedIn { user, .. } => {
                self.ident.logins.entry(user).or_default().insert(key);
            }
            Reply::Resumed { user } => {
                self.ident.resumed += 1;
                let ok = self
                    .ident
                    .logins
                    .get(&user)
                    .is_some_and(|k| k.contains(&key));
                if !ok {
                    self.violation(format!(
                        "the session of {user} was resumed on a connection of key {key}, \
                         which never logged in as {user}"
                    ));
                }
            }
            _ => {}
        }
    }

    /// Client `c` pinned tracker `index` to `key`; `had` is its pin before.
    pub fn pinned(&mut self, c: NodeIx, index: usize, key: KeyId, had: Option<KeyId>, real: KeyId) {
        self.ident.pins += 1;
        if let Some(old) = had {
            self.violation(format!(
                "c{c} pinned tracker {index} to {key} over its pin {old}"
            ));
        }
        if key != real {
            self.violation(format!(
                "c{c} pinned tracker {index} to {key}, not its real key {real}"
            ));
        }
    }

    /// Client `c` sent a frame on a tracker connection an impostor answered.
    pub fn sent_to_impostor(&mut self, c: NodeIx, conn: u64) {
        self.violation(format!(
            "c{c} sent a frame on conn {conn}, which an impostor tracker answered"
        ));
    }
}
