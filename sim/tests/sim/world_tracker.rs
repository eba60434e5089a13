//! The tracker half of the world's driver: the real driver core of
//! `runtime-common` (`tracker::Core`, which executes the machine's outputs)
//! over simulated I/O (`sim_io.rs`), and the world executing what the core
//! asked of its host: bytes and closes on the network, dials, the disk
//! with a latency (a write is durable, and acknowledged, only when done: a
//! crash loses what is not), argon2 beside the machine, pins. A mirror of
//! each tracker's whole durable history, followed across snapshots, is
//! what the final checks replay.

use rand::Rng;

use p2p_proto::{Entry, TrackerId};
use p2p_state::tracker::node::{self as tn, Persist};
use p2p_state::{Duration, Instant};
use runtime_common::tracker::Msg;

use crate::net::{Dialer, End, EvKind, Host, NodeIx};
use crate::sim_io::{Effect, SimWriter};
use crate::world::{World, tracker_addr};

impl World {
    /// Hands tracker `i`'s core an input, as the runtimes' readers,
    /// dialers and workers do: a new connection with its writer.
    pub(crate) fn tracker_input(&mut self, i: NodeIx, input: tn::Input) {
        let writer = |conn| SimWriter {
            conn,
            fx: self.trackers[i].fx.clone(),
        };
        let msg = match input {
            tn::Input::Accepted { conn, addr, .. } => Msg::Opened {
                conn,
                peer: addr,
                writer: writer(conn),
                input,
            },
            tn::Input::Dialed { conn, tracker, .. } => Msg::Opened {
                conn,
                peer: tracker_addr(usize::from(tracker.0) - 1),
                writer: writer(conn),
                input,
            },
            input => Msg::Input(input),
        };
        self.tracker_turn(i, Some(msg));
    }

    /// One turn of tracker `i`'s core on its clock (`None`: its deadline),
    /// then what it asked of its host.
    pub(crate) fn tracker_turn(&mut self, i: NodeIx, msg: Option<Msg<SimWriter>>) {
        let now = self.tnow(i);
        let t = &mut self.trackers[i];
        let Some(core) = t.core.as_mut() else {
            return;
        };
        t.clock.set(now);
        let stop = core.turn(msg);
        assert!(stop.is_none(), "a simulated tracker never stops by itself");
        self.tracker_effects(i);
    }

    /// Executes what tracker `i`'s core asked for, in order; then notes
    /// when it must wake up.
    pub(crate) fn tracker_effects(&mut self, i: NodeIx) {
        for e in self.trackers[i].fx.take() {
            self.tracker_effect(i, e);
        }
        self.tracker_wake(i);
    }

    pub(crate) fn tracker_wake(&mut self, i: NodeIx) {
        let t = &self.trackers[i];
        let deadline = t.core.as_ref().and_then(|c| c.poll_timeout());
        self.trackers[i].wake = self.wake_at(deadline, t.skew_ms);
    }

    fn tracker_effect(&mut self, i: NodeIx, e: Effect) {
        match e {
            Effect::Write(conn, bytes) => {
                if self.trace.print {
                    // Only when printing (the core hands over encoded
                    // frames: their size and message tag).
                    let (len, tag) = (bytes.len(), bytes.get(4).copied().unwrap_or(0));
                    trace!(
                        self.trace,
                        self.now.0,
                        "t{} -> T({i}, {conn}): {len}B tag {tag}",
                        i + 1
                    );
                }
                self.net.write(self.now, End::T(i, conn), bytes);
            }
            Effect::Close(conn) | Effect::Abort(conn) => self.net.close(self.now, End::T(i, conn)),
            Effect::Dial(tracker) => self.dial_tracker(i, tracker),
            Effect::Store(write) => self.disk_write(i, write),
            Effect::Password { job, work } => {
                // Argon2 runs beside the machine: its answer comes later,
                // after other inputs, or never if the tracker crashes first.
                let at = self.now + Duration(self.rng.random_range(1..=30));
                let (inc, done) = (self.trackers[i].inc, work.run());
                let ev = EvKind::PasswordDone {
                    tracker: i,
                    inc,
                    job,
                    done,
                };
                self.net.schedule(at, ev);
            }
            Effect::Pin(tracker, key) => self.tracker_pinned(i, tracker, key),
            Effect::Event(e) => {
                trace!(self.trace, self.now.0, "t{} {e:?}", i + 1);
                self.check.tracker_event(i, &e);
            }
        }
    }

    fn dial_tracker(&mut self, i: NodeIx, tracker: TrackerId) {
        let j = tracker.0 as usize - 1;
        let up = j < self.trackers.len() && self.trackers[j].m().is_some();
        let reach = self.net.reachable(Host::Tracker(i), Host::Tracker(j));
        if !up || !reach {
            let inc = self.trackers[i].inc;
            self.dial_failed(!reach, Dialer::Tracker(i, inc, tracker));
            return;
        }
        let (a, b) = (self.net.fresh_conn(), self.net.fresh_conn());
        self.net.connect(End::T(i, a), End::T(j, b));
        let addr = tracker_addr(i);
        let peer = crate::world::tracker_key(i);
        self.defer_tracker(
            j,
            tn::Input::Accepted {
                conn: b,
                addr,
                peer,
            },
        );
        let peer = crate::world::tracker_key(j);
        self.defer_tracker(
            i,
            tn::Input::Dialed {
                conn: a,
                tracker,
                peer,
            },
        );
    }

    /// A connection attempt fails: refused soon, or timed out when cut off.
    pub(crate) fn dial_failed(&mut self, cut: bool, who: Dialer) {
        let delay = match cut {
            true => self.rng.random_range(500..=3000),
            false => 2 * self.net.latency(),
        };
        self.net
            .schedule(self.now + Duration(delay), EvKind::DialFailed(who));
    }

    fn disk_write(&mut self, i: NodeIx, op: Persist) {
        let (lo, hi) = self.disk_ms;
        if hi == 0 {
            self.disk_apply(i, op);
            return;
        }
        let d = self.rng.random_range(lo..=hi);
        let t = &mut self.trackers[i];
        t.disk_busy_until = t.disk_busy_until.max(self.now.0) + d;
        let at = Instant(t.disk_busy_until);
        t.pending_disk.push_back(op);
        let inc = t.inc;
        self.net.schedule(at, EvKind::DiskDone { tracker: i, inc });
    }

    /// The oldest pending disk write of tracker `i` is durable.
    pub(crate) fn disk_done(&mut self, i: NodeIx, inc: u32) {
        if self.trackers[i].inc != inc {
            return;
        }
        if let Some(op) = self.trackers[i].pending_disk.pop_front() {
            self.disk_apply(i, op);
        }
    }

    fn disk_apply(&mut self, i: NodeIx, op: Persist) {
        self.mirror(i, &op);
        if let Some(last) = self.trackers[i].disk.apply(op) {
            self.defer_persisted(i, last);
        }
    }

    /// Keeps tracker `i`'s history mirror in step with its disk.
    fn mirror(&mut self, i: NodeIx, op: &Persist) {
        match op {
            Persist::Log {
                from_index,
                entries,
            } => {
                if let Some(h) = self.trackers[i].hist.as_mut() {
                    if h.len() as u64 + 1 < *from_index {
                        self.trackers[i].hist = None;
                        return;
                    }
                    h.truncate(*from_index as usize - 1);
                    h.extend(entries.iter().cloned());
                }
            }
            Persist::Snapshot {
                at,
                reset_log: true,
                ..
            } => {
                let n = at.index as usize;
                let holds = |h: &Vec<Entry>| n == 0 || h.get(n - 1).is_some_and(|e| e.pos == *at);
                let prefix = self
                    .trackers
                    .iter()
                    .filter_map(|t| t.hist.as_ref())
                    .find(|h| holds(h))
                    .map(|h| h[..n].to_vec());
                self.trackers[i].hist = prefix;
            }
            Persist::Snapshot { .. } | Persist::Resubmit { .. } => {}
        }
    }
}
