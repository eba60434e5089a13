//! The rogue TRACKER of the fault mix (issue 15): an impostor with a valid
//! TLS handshake under its own key (`world::rogue_key()`) that says hello
//! as a real tracker id, then sends what took the group over before keys
//! were checked: a join and heartbeats of the next round (and of an epoch
//! near 2^64), a catch-up, an append of a forged `Login`, a re-submitted
//! `AcceptJoin`. Invariant: nothing it sends is ever applied: no frame from
//! a rogue changes a tracker's epoch, log or state.
//!
//! Pins: with rogue trackers in the mix, every tracker is configured with
//! its peers' real keys (as `tracker_info.txt` with fingerprints; trust on
//! first use would let a rogue that comes first take a seat). Without
//! them, trackers pin on first contact and keep what they learned across
//! restarts (`TrackerNode::pins`, the data directory's `known_trackers`).

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use p2p_proto::{
    ClientId, Entry, GroupName, Hello, KeyId, LogPos, Op, OpKind, Origin, ReplMsg, RequestId, Role,
    SeederKey, SessionToken, TrackerId, UserName,
};
use p2p_state::tracker::repl::{epoch_round, make_epoch};

use crate::net::NodeIx;
use crate::world::{World, tracker_key};
use crate::world_client::frame_of;

/// How the simulated trackers authenticate each other in one run.
#[derive(Clone, Copy, Debug, Default)]
pub struct TrackerAuth {
    /// Every tracker's key configured (rogue trackers in the mix).
    pub explicit_pins: bool,
    /// Planted bug: trackers skip the key check.
    pub skip_key_check: bool,
}

impl World {
    /// The pins tracker `i` starts with: everyone's real key, or what it
    /// learned on first contact before (kept on its disk).
    pub(crate) fn tracker_pins(&self, i: NodeIx) -> Vec<Option<KeyId>> {
        (0..self.trackers.len())
            .map(|k| match self.tracker_auth.explicit_pins {
                true => Some(tracker_key(k)),
                false => self.trackers[i].pins.get(&TrackerId(k as u16 + 1)).copied(),
            })
            .collect()
    }

    /// Tracker `i` pinned `key` for `tracker` on first contact: kept on
    /// its disk. A pin of anything but the real key is a violation (only
    /// possible when a rogue came first, which explicit pins rule out).
    pub(crate) fn tracker_pinned(&mut self, i: NodeIx, tracker: TrackerId, key: KeyId) {
        if key != tracker_key(tracker.0 as usize - 1) {
            self.check.violation(format!(
                "t{} pinned a key that is not tracker {tracker}'s",
                i + 1
            ));
        }
        self.trackers[i].pins.insert(tracker, key);
    }

    /// Feeds tracker `i` a frame a rogue sent; a violation if it changed
    /// the tracker's epoch, log or state.
    pub(crate) fn rogue_frame_to_tracker(&mut self, i: NodeIx, conn: u64, payload: Bytes) {
        let seen = |w: &World| {
            w.trackers[i].m().map(|t| {
                let r = t.repl();
                (r.epoch(), r.last(), r.applied(), t.state().digest())
            })
        };
        // The core's turn also runs a deadline that is due: run it
        // first, so the frame's turn is the frame alone.
        self.tracker_turn(i, None);
        let before = seen(self);
        self.tracker_input(i, p2p_state::tracker::node::Input::Frame { conn, payload });
        let after = seen(self);
        if before != after {
            self.check.violation(format!(
                "a frame from a rogue tracker changed t{}: (epoch, log, applied, digest) {before:?} -> {after:?}",
                i + 1
            ));
        }
    }
}

/// Half the time (by the clock, not the fault stream), an impostor's
/// script for tracker `j` instead of `script`.
pub fn impostor_or(w: &World, j: NodeIx, script: Vec<Bytes>) -> Vec<Bytes> {
    match (w.now.0 / 7).is_multiple_of(2) {
        true => impostor_script(w, j, &mut ChaCha8Rng::seed_from_u64(w.now.0)),
        false => script,
    }
}

/// What an impostor of a tracker of the group sends to tracker `j`.
pub fn impostor_script(w: &World, j: NodeIx, rng: &mut ChaCha8Rng) -> Vec<Bytes> {
    let n = w.trackers.len();
    // Another tracker's id (our own id in a hello is refused before keys).
    let other = (j + 1 + rng.random_range(0..n.max(2) - 1)) % n.max(2);
    let id = TrackerId(other as u16 + 1);
    let (epoch, last) = w.trackers[j].m().map_or((0, LogPos::default()), |t| {
        (t.repl().epoch(), t.repl().last())
    });
    let next = make_epoch(epoch_round(epoch) + 1, id).unwrap_or(u64::MAX);
    let huge = u64::MAX - rng.random_range(0..1 << 16);
    let next_pos = LogPos {
        epoch: next,
        index: last.index + 1,
    };
    let forged = |kind| Op {
        at_ms: w.now.0,
        origin: Some(Origin {
            client: ClientId([0x66; 16]),
            key: crate::world::rogue_key(),
            id: RequestId(rng_id(last.index)),
        }),
        kind,
    };
    let login = forged(OpKind::Login {
        user: name("u0"),
        token: SessionToken([0x66; 16]),
        seeder_key: SeederKey([0x66; 32]),
        client: ClientId([0x66; 16]),
        key: crate::world::rogue_key(),
    });
    let join = forged(OpKind::AcceptJoin {
        group: GroupName::new("g0").expect("group name"),
        user: name("mallory"),
    });
    let heartbeat = |epoch| ReplMsg::Heartbeat {
        epoch,
        primary: id,
        last: next_pos,
        confirmed: 0,
    };
    let msgs = [
        ReplMsg::Join {
            id,
            epoch: next,
            primary: Some(id),
            last: next_pos,
            epoch_starts: vec![],
        },
        heartbeat(huge),
        heartbeat(next),
        ReplMsg::CatchUp {
            epoch: next,
            fork: 0,
            snapshot: false,
        },
        ReplMsg::Append {
            epoch: next,
            prev: last,
            entries: vec![Entry {
                pos: next_pos,
                op: login,
            }],
            confirmed: 0,
        },
        ReplMsg::Resubmit { fwd: 1, op: join },
    ];
    let mut s = vec![frame_of(&Hello::new(Role::Tracker(id)))];
    s.extend(msgs.iter().map(frame_of));
    s
}

fn rng_id(x: u64) -> u64 {
    x.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1
}

fn name(s: &str) -> UserName {
    UserName::new(s).expect("user name")
}
