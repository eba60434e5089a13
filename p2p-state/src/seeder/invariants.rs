//! The seeder's invariants, checked after every mutation in debug builds
//! and by the simulator.

use super::*;

impl Seeder {
    pub(super) fn debug_check(&self) {
        #[cfg(debug_assertions)]
        self.check_invariants();
    }

    /// Panics if the bookkeeping disagrees with itself (called after every
    /// `handle_*` and command in debug builds, and by the simulator).
    pub fn check_invariants(&self) {
        if let Err(e) = self.invariant_violation() {
            panic!("seeder invariant broken: {e}");
        }
    }

    pub(super) fn invariant_violation(&self) -> Result<(), String> {
        if !self.timers.is_consistent() {
            return Err("timers".into());
        }
        self.check_counts()?;
        if self.reads.len() > self.cfg.reads_max {
            return Err(format!("{} reads in flight > cap", self.reads.len()));
        }
        if self.by_key.len() != self.shares.len()
            || self.by_key.iter().any(|(k, id)| {
                self.shares
                    .get(id)
                    .is_none_or(|s| (&s.group, &s.file, &s.file_hash) != (&k.0, &k.1, &k.2))
            })
        {
            return Err("share index disagrees with the share table".into());
        }
        self.initial
            .check(|c| self.conns.get(&c).and_then(Conn::share))?;
        for (id, c) in &self.conns {
            c.check(self.cfg.conn_requests_max)
                .map_err(|e| format!("{id}: {e}"))?;
            self.check_conn(*id, c)?;
        }
        Ok(())
    }

    /// Every connection limit holds: slots in total, per user and per
    /// address; ticketless connections in total and per address.
    pub(super) fn check_counts(&self) -> Result<(), String> {
        let mut per_user: BTreeMap<&UserName, usize> = BTreeMap::new();
        let mut slots_from: BTreeMap<IpAddr, usize> = BTreeMap::new();
        let mut unopened_from: BTreeMap<IpAddr, usize> = BTreeMap::new();
        for c in self.conns.values() {
            if let Some(u) = c.downloader() {
                *per_user.entry(u).or_default() += 1;
                *slots_from.entry(c.addr).or_default() += 1;
            } else {
                *unopened_from.entry(c.addr).or_default() += 1;
            }
        }
        let slots: usize = slots_from.values().sum();
        let unopened: usize = unopened_from.values().sum();
        let cfg = &self.cfg;
        let broken = [
            (slots > cfg.conns_max, "serving slots in total"),
            (
                per_user.values().any(|&n| n > cfg.conns_per_user_max),
                "serving slots of one user",
            ),
            (
                slots_from.values().any(|&n| n > cfg.conns_per_addr_max),
                "serving slots from one address",
            ),
            (unopened > cfg.unopened_max, "ticketless connections"),
            (
                unopened_from
                    .values()
                    .any(|&n| n > cfg.unopened_per_addr_max),
                "ticketless connections from one address",
            ),
        ];
        match broken.iter().find(|(b, _)| *b) {
            Some((_, what)) => Err(format!("too many {what}")),
            None => Ok(()),
        }
    }

    pub(super) fn check_conn(&self, id: ConnId, c: &Conn) -> Result<(), String> {
        if let ConnState::Open { ticket_key, .. } = &c.state {
            let checked = !self.cfg.bug_skip_key_check && !self.cfg.bug_ignore_tickets;
            if checked && *ticket_key != c.key {
                return Err(format!("{id} is served under a ticket of another key"));
            }
            if !self.timers.is_set(Timer::Expire(id)) {
                return Err(format!("{id} is open with no ticket expiry"));
            }
        }
        match c.share() {
            None if !self.timers.is_set(Timer::Open(id)) => {
                return Err(format!("{id} awaits Open without a deadline"));
            }
            Some(s) if !self.shares.contains_key(&s) => {
                return Err(format!("{id} is bound to a removed share"));
            }
            _ => {}
        }
        let reading = |i: &u32| self.reads.contains(&(id, *i));
        for (i, r) in &c.pending {
            if (*r == downloader::Req::Queued) == reading(i) {
                return Err(format!(
                    "{id}: piece {i} is {r:?} but read-in-flight disagrees"
                ));
            }
        }
        Ok(())
    }
}
