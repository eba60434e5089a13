//! Checkers, outside the machines (docs/STYLE.md §2.4): they watch what the world
//! executes and hold the oracles the final checks compare against.
//!
//! While a run goes (every effect, as it happens):
//! - at most one primary per epoch (`ReplEvent::BecamePrimary`);
//! - every piece written to a part file has the metadata's hash, at its
//!   offset, and is written at most once (a resumed download never fetches
//!   what its record already holds);
//! - a download finalized is byte-exact with what the uploader shared;
//! - a seeder reads and sends a piece only on a connection whose `Open`
//!   showed a ticket that verifies (MAC under the seeder's key from its
//!   login, unexpired, naming this seeder), for a share this client
//!   registered whose group, name and hash the ticket names;
//! - identities (`check_identity.rs`): that ticket's downloader key is the
//!   connection's; no session is resumed by another key; pins.
//!
//! After the quiet period (`final_checks`):
//! - all trackers hold the same log end and the same state digest, and one
//!   of them is primary;
//! - the primary's whole history (the world mirrors every tracker's durable
//!   log, across snapshots) replayed from an empty state gives its state;
//! - every write a client was answered `Ok` for took effect in that history
//!   (its first application succeeded), or was recorded as a conflict;
//!   every user created stays created (recorded = in the final state's
//!   replicated conflict log);
//! - no `(client, request id)` is logged twice in that history (applied
//!   twice, once its first outcome's record was evicted).

use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};

use p2p_proto::{
    ClientId, ClientRequest, Entry, FileMeta, FromTracker, GroupName, KeyId, LogPos, Origin,
    Request, SeederKey, Sha1Hash, Ticket, UserName, Wire,
};
use p2p_state::Instant;
use p2p_state::hash::sha1;
use p2p_state::tracker::node::{Tracker, TrackerEvent};
use p2p_state::tracker::repl::{ReplEvent, Role};
use p2p_state::tracker::state::TrackerState;

use crate::net::NodeIx;

/// A write a client was answered `Ok` for: by whom and when.
struct Acked {
    req: Request,
    client: NodeIx,
    by: NodeIx,
    at_ms: u64,
}

impl std::fmt::Debug for Acked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let req = format!("{:?}", self.req);
        let req: String = req.chars().take(100).collect();
        write!(
            f,
            "c{} {req} answered Ok by t{} at {} ms",
            self.client,
            self.by + 1,
            self.at_ms
        )
    }
}

/// A ticket a downloader showed a seeder connection.
struct Shown {
    ticket: Ticket,
    valid: bool,
}

#[derive(Clone, Debug, Default)]
pub struct CheckStats {
    pub acked: u64,
    pub pieces_written: u64,
    pub pieces_served: u64,
    pub downloads_complete: u64,
    pub corrupt_reads: u64,
    pub tickets_refusable: u64,
    pub resumed_pieces: u64,
    pub conflicts: u64,
    pub primaries: u64,
    pub duplicate_entries: u64,
    /// Logs that diverged from a new primary's, and the client ops of
    /// theirs queued for re-submission.
    pub divergences: u64,
    pub resubmitting: u64,
    pub histories_lost: u64,
    pub acked_unverifiable: u64,
}

#[derive(Default)]
pub struct Checker {
    pub violations: Vec<String>,
    primaries: BTreeMap<u64, NodeIx>,
    /// Divergent entries that were no longer in a log to re-submit.
    pub diverged_lost: u64,
    /// Writes clients sent, by origin.
    writes: BTreeMap<Origin, Request>,
    /// Writes a client was answered `Ok` for.
    acked: BTreeMap<Origin, Acked>,
    /// Seeder-side connections (client, conn) and the ticket they showed.
    shown: BTreeMap<(NodeIx, u64), Shown>,
    /// What every uploader shared, by file hash.
    pub contents: BTreeMap<Sha1Hash, Bytes>,
    /// Replay of the final history: whether each origin's first
    /// application succeeded.
    first_outcome: BTreeMap<Origin, (LogPos, Result<(), String>)>,
    replayed: bool,
    pub stats: CheckStats,
    /// Identity checks (`check_identity.rs`).
    pub ident: crate::check_identity::Ident,
}

impl Checker {
    pub fn violation(&mut self, what: String) {
        self.violations.push(what);
    }

    // ------------------------------------------------------------ replication

    pub fn tracker_event(&mut self, i: NodeIx, e: &TrackerEvent) {
        let TrackerEvent::Repl(e) = e else { return };
        match e {
            ReplEvent::BecamePrimary { epoch } => {
                self.stats.primaries += 1;
                if let Some(&other) = self.primaries.get(epoch)
                    && other != i
                {
                    self.violation(format!(
                        "two primaries in epoch {epoch:#x}: t{} and t{}",
                        other + 1,
                        i + 1
                    ));
                }
                self.primaries.insert(*epoch, i);
            }
            ReplEvent::Conflict { .. } => self.stats.conflicts += 1,
            ReplEvent::Diverged {
                lost, resubmitting, ..
            } => {
                self.stats.divergences += 1;
                self.stats.resubmitting += *resubmitting as u64;
                self.diverged_lost += lost;
            }
            _ => {}
        }
    }

    /// A client (with TLS key `key`) sent `frame` (a hello or a request)
    /// to a tracker.
    pub fn request_sent(&mut self, client: ClientId, key: KeyId, frame: &Bytes) {
        if let Ok(r) = ClientRequest::from_bytes(frame.clone())
            && r.req.is_write()
        {
            let origin = Origin {
                client,
                key,
                id: r.id,
            };
            self.writes.entry(origin).or_insert(r.req);
        }
    }

    /// A frame from tracker `by` reached client `c` (whose id is `client`).
    pub fn tracker_frame(
        &mut self,
        c: NodeIx,
        client: ClientId,
        by: NodeIx,
        at_ms: u64,
        payload: &Bytes,
    ) {
        if let Ok(FromTracker::Response { id, outcome: Ok(_) }) =
            FromTracker::from_bytes(payload.clone())
        {
            let key = crate::world::client_key(c);
            let origin = Origin { client, key, id };
            if let Some(req) = self.writes.get(&origin)
                && !self.acked.contains_key(&origin)
            {
                self.stats.acked += 1;
                let req = req.clone();
                let a = Acked {
                    req,
                    client: c,
                    by,
                    at_ms,
                };
                self.acked.insert(origin, a);
            }
        }
    }

    // ------------------------------------------------------------ seeders

    /// A downloader showed `ticket` on seeder connection `conn` of `c`.
    pub fn open(
        &mut self,
        c: NodeIx,
        conn: u64,
        ticket: Ticket,
        identity: Option<&(UserName, SeederKey)>,
        now: Instant,
    ) {
        let valid = identity.is_some_and(|(user, key)| {
            ticket.seeder == *user && p2p_state::ticket::verify(key, &ticket, now).is_ok()
        });
        if !valid {
            self.stats.tickets_refusable += 1;
        }
        match self.shown.get(&(c, conn)) {
            // A fresh ticket shown on an open connection (renewal): the
            // connection is served under it from now on.
            Some(s) if s.valid && !valid => {}
            _ => {
                self.shown.insert((c, conn), Shown { ticket, valid });
            }
        }
    }

    pub fn read_piece(
        &mut self,
        c: NodeIx,
        conn: u64,
        share: Option<&(GroupName, FileMeta)>,
        index: u32,
    ) {
        let Some((group, meta)) = share else {
            return self.violation(format!(
                "c{c} seeder read piece {index} of a share it never registered (conn {conn})"
            ));
        };
        let Some(s) = self.shown.get(&(c, conn)) else {
            return self.violation(format!(
                "c{c} seeder read piece {index} of {group}/{} for conn {conn}, which showed no ticket",
                meta.name
            ));
        };
        let t = s.ticket.clone();
        self.served_to_key(c, conn, index, &t);
        let s = &self.shown[&(c, conn)];
        let t = &s.ticket;
        let matches = t.group == *group && t.file == meta.name && t.file_hash == meta.file_hash;
        if !s.valid || !matches {
            let what = if s.valid {
                "names another file"
            } else {
                "does not verify"
            };
            self.violation(format!(
                "c{c} seeder read piece {index} of {group}/{} for conn {conn}, whose ticket {what}: {t:?}",
                meta.name
            ));
        }
    }

    pub fn piece_sent(&mut self, c: NodeIx, conn: u64, index: u32) {
        self.stats.pieces_served += 1;
        if let Some(t) = self.shown.get(&(c, conn)).map(|s| s.ticket.clone()) {
            self.served_to_key(c, conn, index, &t);
        }
        match self.shown.get(&(c, conn)) {
            Some(s) if s.valid => {}
            Some(s) => {
                let t = format!("{:?}", s.ticket);
                self.violation(format!(
                    "c{c} seeder sent piece {index} on conn {conn} whose ticket does not verify: {t}"
                ))
            }
            None => self.violation(format!(
                "c{c} seeder sent piece {index} on conn {conn}, which showed no ticket"
            )),
        }
    }

    pub fn client_crashed(&mut self, c: NodeIx) {
        self.shown.retain(|(k, _), _| *k != c);
        self.peers_gone(c);
    }

    // ------------------------------------------------------------ downloads

    pub fn resumed(&mut self, pieces: u32) {
        self.stats.resumed_pieces += u64::from(pieces);
    }

    /// Checks a `WritePiece`; false if it must not reach the disk.
    pub fn piece_written(
        &mut self,
        c: NodeIx,
        meta: &FileMeta,
        index: u32,
        offset: u64,
        data: &[u8],
        already: bool,
    ) -> bool {
        self.stats.pieces_written += 1;
        let Some(want) = meta.piece_hashes.get(index as usize) else {
            self.violation(format!(
                "c{c} wrote piece {index} of {} (out of range)",
                meta.name
            ));
            return false;
        };
        if sha1(data) != *want || data.len() != meta.piece_size(index) as usize {
            self.violation(format!(
                "c{c} wrote piece {index} of {} with a bad hash ({} bytes)",
                meta.name,
                data.len()
            ));
            return false;
        }
        if offset != meta.piece_offset(index) {
            self.violation(format!(
                "c{c} wrote piece {index} of {} at offset {offset}",
                meta.name
            ));
            return false;
        }
        if already {
            self.violation(format!(
                "c{c} wrote piece {index} of {} again (its part record already held it)",
                meta.name
            ));
        }
        true
    }

    pub fn finalized(&mut self, c: NodeIx, meta: &FileMeta, data: &[u8]) {
        self.stats.downloads_complete += 1;
        match self.contents.get(&meta.file_hash) {
            Some(want) if want[..] == *data => {}
            Some(_) => self.violation(format!(
                "c{c} completed {} with bytes that differ from the uploader's",
                meta.name
            )),
            None => self.violation(format!(
                "c{c} completed {} whose content no uploader shared",
                meta.name
            )),
        }
    }

    // ------------------------------------------------------------ the end

    /// Convergence and durability, on trackers that are all up. `hist` is
    /// the primary's whole durable history (every entry from index 1), or
    /// `None` when the world could not follow it through a snapshot.
    pub fn final_checks(&mut self, trackers: &[&Tracker], hist: Option<&[Entry]>) {
        let Some(first) = trackers.first() else {
            return;
        };
        let primaries: Vec<_> = trackers
            .iter()
            .filter(|t| t.repl().role() == Role::Primary)
            .map(|t| t.id())
            .collect();
        if primaries.len() != 1 {
            self.violation(format!("after the quiet period, primaries: {primaries:?}"));
        }
        let digest = first.state().digest();
        let last = first.repl().last();
        for t in &trackers[1..] {
            let (d, l) = (t.state().digest(), t.repl().last());
            if d != digest || l != last {
                self.violation(format!(
                    "trackers diverge after the quiet period: t{} log {last:?} digest {digest}, t{} log {l:?} digest {d}",
                    first.id(),
                    t.id()
                ));
            }
        }
        for t in trackers {
            t.state().check_invariants();
        }
        let p = trackers
            .iter()
            .find(|t| t.repl().role() == Role::Primary)
            .unwrap_or(first);
        match hist {
            Some(h) => self.replay(p, h),
            None => self.stats.histories_lost += 1,
        }
        self.check_acked(p);
    }

    /// Replays the primary's whole history from an empty state: it must
    /// give the primary's state, and no request may take effect twice (a
    /// repeated origin would be a no-op while its outcome is still stored).
    fn replay(&mut self, p: &Tracker, hist: &[Entry]) {
        let mut state = TrackerState::default();
        let (mut twice, mut logged) = (Vec::new(), Vec::new());
        for (k, e) in hist.iter().enumerate() {
            if e.pos.index != k as u64 + 1 {
                return self.violation(format!("t{}'s history has a gap at {k}", p.id()));
            }
            let origin = e.op.origin;
            let again = origin.is_some_and(|o| self.first_outcome.contains_key(&o));
            if let (true, Some(o)) = (again, origin) {
                // Logged twice: a no-op while its first outcome is stored,
                // applied again once that record was evicted.
                self.stats.duplicate_entries += 1;
                let what = match state.stored_outcome(&o).is_none() {
                    true => &mut twice,
                    false => &mut logged,
                };
                what.push(format!("{:?} at {:?}: {:?}", o, e.pos, e.op.kind));
            }
            let outcome = state.apply(&e.op);
            if let (Some(o), false) = (origin, again) {
                let r = outcome.as_ref().map(|_| ()).map_err(|e| e.to_string());
                self.first_outcome.insert(o, (e.pos, r));
            }
        }
        for (what, mut v) in [("applied twice", twice), ("logged twice", logged)] {
            if !v.is_empty() {
                v.truncate(5);
                self.violation(format!("requests {what} in t{}'s history: {v:?}", p.id()));
            }
        }
        self.replayed = true;
        let (want, got) = (p.state().digest(), state.digest());
        if want != got {
            self.violation(format!(
                "replaying t{}'s whole history gives digest {got}, its state is {want}",
                p.id()
            ));
        }
    }

    /// Every acknowledged write survives, or is a recorded conflict.
    fn check_acked(&mut self, p: &Tracker) {
        let state = p.state();
        // Recorded = in the replicated, durable conflict log of the final
        // state (not merely announced by some primary that since died).
        let recorded: BTreeSet<Origin> = state.conflicts().filter_map(|c| c.op.origin).collect();
        let mut lost = Vec::new();
        for (o, a) in &self.acked {
            if recorded.contains(o) {
                continue;
            }
            let id = o.id.0;
            let applied = match (self.replayed, self.first_outcome.get(o)) {
                (true, Some((pos, r))) => Some(r.clone().map_err(|e| format!("{e} at {pos:?}"))),
                (true, None) => None,
                (false, _) => state
                    .stored_outcome(o)
                    .map(|r| r.clone().map(|_| ()).map_err(|e| e.to_string())),
            };
            match applied {
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    lost.push(format!("#{id} {a:?}; it failed in the final history: {e}"))
                }
                None if !self.replayed => self.stats.acked_unverifiable += 1,
                None => lost.push(format!("#{id} {a:?}; not in the final history")),
            }
            if let Request::CreateUser { user, .. } = &a.req
                && state.user(user).is_none()
            {
                lost.push(format!("user {user} was created (answered Ok) and is gone"));
            }
        }
        if !lost.is_empty() {
            let n = lost.len();
            lost.truncate(5);
            self.violation(format!(
                "{n} acknowledged writes lost without a recorded conflict (diverged-lost {}), e.g.:\n  {}",
                self.diverged_lost,
                lost.join("\n  ")
            ));
        }
    }
}
