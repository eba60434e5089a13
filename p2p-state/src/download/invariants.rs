//! [`Download::check_invariants`]: the machine's bookkeeping checked
//! against itself, after every input in debug builds and by the
//! simulation.

use super::*;

impl Download {
    pub(super) fn debug_check(&self) {
        #[cfg(debug_assertions)]
        self.check_invariants();
    }

    /// Panics if the machine's bookkeeping disagrees with itself. Called at
    /// the end of every `handle_*` in debug builds, and by the simulator.
    pub fn check_invariants(&self) {
        if let Err(e) = self.invariant_violation() {
            panic!("download invariant broken: {e}");
        }
    }

    fn invariant_violation(&self) -> Result<(), String> {
        self.picker.check()?;
        if !self.timers.is_consistent() {
            return Err("timer table indexes disagree".into());
        }
        if self.in_flight > self.cfg.max_parallel {
            return Err(format!("{} requests in flight > cap", self.in_flight));
        }
        self.check_requests()?;
        self.check_peers()?;
        if self.is_finished() && (self.in_flight > 0 || self.peers.values().any(Peer::is_active)) {
            return Err("finished with live peers or requests".into());
        }
        if self.state == DownloadState::Complete && !self.picker.all_done() {
            return Err("complete with pieces missing".into());
        }
        Ok(())
    }

    fn check_requests(&self) -> Result<(), String> {
        let mut total = 0;
        for (&i, rs) in &self.requests {
            if rs.is_empty() || rs.len() > self.cfg.endgame_dup_max {
                return Err(format!("piece {i} has {} requesters", rs.len()));
            }
            if self.picker.state(i) != PieceState::InFlight {
                return Err(format!(
                    "piece {i} requested but {:?}",
                    self.picker.state(i)
                ));
            }
            for (p, _) in rs {
                let peer = self.peers.get(p).ok_or("request to an unknown peer")?;
                let holds = peer.pieces().is_some_and(|s| s.contains(i));
                if !holds || !peer.requests.contains_key(&i) {
                    return Err(format!("piece {i} asked of {p}, which lacks it or forgot"));
                }
                if !self.timers.is_set(Timer::Request(*p, i)) {
                    return Err(format!("request {i} to {p} has no deadline"));
                }
            }
            total += rs.len();
        }
        for i in 0..self.picker.len() {
            if self.picker.state(i) == PieceState::InFlight && !self.requests.contains_key(&i) {
                return Err(format!("piece {i} in flight with no requester"));
            }
        }
        if total != self.in_flight {
            return Err(format!("in-flight count {} != {total}", self.in_flight));
        }
        Ok(())
    }

    fn check_peers(&self) -> Result<(), String> {
        let mut avail = vec![0u32; self.picker.len() as usize];
        let mut per_peer = 0;
        for (id, p) in &self.peers {
            if p.requests.len() > self.cfg.per_peer_max {
                return Err(format!(
                    "{id} has {} requests > per-peer cap",
                    p.requests.len()
                ));
            }
            if !p.is_ready() && !p.requests.is_empty() {
                return Err(format!("{id} is not ready but has requests"));
            }
            per_peer += p.requests.len();
            if self.by_addr.get(&(p.user.clone(), p.addr)) != Some(id) {
                return Err(format!("{id} missing from the address index"));
            }
            for i in p.pieces().into_iter().flat_map(PieceSet::iter) {
                avail[i as usize] += 1;
            }
        }
        if per_peer != self.in_flight || self.by_addr.len() != self.peers.len() {
            return Err("per-peer requests or address index disagree".into());
        }
        match (0..self.picker.len()).find(|&i| avail[i as usize] != self.picker.avail(i)) {
            Some(i) => Err(format!("availability of piece {i} is stale")),
            None => Ok(()),
        }
    }
}
