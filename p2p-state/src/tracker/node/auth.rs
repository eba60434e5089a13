//! Who is at the other end, as the tracker machine decides it (issue 15).
//!
//! The driver hands every connection over only after its TLS handshake,
//! with the key the other end proved (`Conn::key`). Decisions:
//! - **A peer tracker is the key pinned for its id.** A hello
//!   `Tracker(id)` on an accepted connection, and a connection we dialed
//!   to tracker `id` (before our hello goes out), count only if the proven
//!   key is the one pinned for `id` (`NodeConfig::tracker_keys`, from
//!   `tracker_info.txt` or the data directory's `known_trackers`). Not
//!   pinned yet: trust on first use, the key is pinned here (later
//!   connections are checked against it) and announced with
//!   [`Output::PinTracker`] for the driver to keep. Any other key is
//!   refused: the connection is closed right after the hello (no
//!   replication message is ever decoded from it), nothing changes, and a
//!   [`TrackerEvent::TrackerKeyRefused`] tells the operator what to do.
//! - **One key, one tracker.** A key already pinned for another tracker id
//!   is refused for an id not pinned yet (a copied data directory, or a
//!   peer trying to take a second seat).
//! - Our own id in a hello, and ids not in the config, are refused before
//!   any key is looked at (`on_hello`). A tracker's key in a *client*
//!   hello is fine: a client is whoever logs in, and its sessions are
//!   bound to that key like any other.
//! - **Sessions expire** (`TrackerConfig::session_idle_ms`,
//!   `session_max_ms`): a request in a session past a lifetime is refused
//!   at once (`TrackerState::request_session`), and the primary proposes
//!   `ExpireSession` for it every [`SESSION_SWEEP`], so the expiry is
//!   replicated, clients that vanished included.

use std::fmt;

use super::*;

/// How often the primary looks for sessions past their lifetimes (and
/// proposes their `ExpireSession`; one not applied by the next sweep after
/// `EXPIRE_RETRY` is proposed again).
pub const SESSION_SWEEP: Duration = Duration::from_secs(5);
/// An `ExpireSession` proposed and not applied within this is proposed again.
const EXPIRE_RETRY: Duration = Duration::from_secs(5);

/// The keys pinned in the config, by tracker id.
pub(super) fn configured_pins(cfg: &NodeConfig) -> BTreeMap<TrackerId, KeyId> {
    cfg.trackers
        .iter()
        .zip(&cfg.tracker_keys)
        .filter_map(|((id, _), k)| k.map(|k| (*id, k)))
        .collect()
}

/// A connection claiming to be tracker `tracker` refused for its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRefused {
    pub tracker: TrackerId,
    /// Where it came from (`None`: we dialed it).
    pub addr: Option<SocketAddr>,
    /// The key it proved in the TLS handshake.
    pub presented: KeyId,
    pub why: Mismatch,
}

/// Why a tracker's key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch {
    /// The tracker's pinned key is another.
    Pinned(KeyId),
    /// The key is pinned for this other tracker.
    OtherTracker(TrackerId),
}

impl fmt::Display for KeyRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.tracker;
        let from = match self.addr {
            Some(a) => format!("a connection from {a} claiming to be tracker {t}"),
            None => format!("the tracker we dialed as tracker {t}"),
        };
        let presented = self.presented;
        match self.why {
            Mismatch::Pinned(pinned) => write!(
                f,
                "refused {from}: it proved key {presented}, but tracker {t} is pinned to key \
                 {pinned}; nothing it sent was read. If tracker {t} really has a new key (its \
                 data directory was recreated), put the new fingerprint on its line of \
                 tracker_info.txt (`ip:port {presented}`) or delete its line from this \
                 tracker's known_trackers file, then restart this tracker; otherwise something \
                 is impersonating tracker {t}"
            ),
            Mismatch::OtherTracker(other) => write!(
                f,
                "refused {from}: its key {presented} is tracker {other}'s, and one key can only \
                 be one tracker; nothing it sent was read. Give every tracker its own data \
                 directory (and so its own key), and check the fingerprints in tracker_info.txt \
                 and known_trackers"
            ),
        }
    }
}

impl Tracker {
    /// Is the key proven on `conn` the one of tracker `t`? Pins it on
    /// first contact ([`Output::PinTracker`]). Otherwise the connection is
    /// closed (a dialed one redialed later, with backoff) and the refusal
    /// reported; nothing else changes.
    pub(super) fn authenticate_tracker(
        &mut self,
        now: Instant,
        conn: ConnId,
        t: TrackerId,
    ) -> bool {
        let Some(c) = self.conns.get(&conn) else {
            return false;
        };
        let (presented, addr) = (c.key, c.addr);
        // planted bug (test switch): every key passes
        if self.cfg.bug_skip_tracker_key_check {
            return true;
        }
        let why = match self.pins.get(&t) {
            Some(&pinned) if pinned == presented => return true,
            Some(&pinned) => Mismatch::Pinned(pinned),
            None => match self.pins.iter().find(|(_, k)| **k == presented) {
                Some((&other, _)) => Mismatch::OtherTracker(other),
                None => {
                    self.pins.insert(t, presented);
                    self.out.push_back(Output::PinTracker {
                        tracker: t,
                        key: presented,
                    });
                    return true;
                }
            },
        };
        let refused = KeyRefused {
            tracker: t,
            addr,
            presented,
            why,
        };
        let reason = Text::new(format!("tracker {t}'s key refused"));
        self.event(TrackerEvent::TrackerKeyRefused(refused));
        if let Some(Conn {
            kind: ConnKind::AwaitHello { dialed: Some(d) },
            ..
        }) = self.forget_conn(conn)
        {
            self.schedule_redial(now, d);
        }
        self.out.push_back(Output::Close { conn, why: reason });
        false
    }

    /// The key pinned for tracker `t` (configured or learned), if any.
    pub fn pinned_key(&self, t: TrackerId) -> Option<KeyId> {
        self.pins.get(&t).copied()
    }

    /// Primary: proposes `ExpireSession` for every session past one of its
    /// lifetimes (a backup leaves it to its primary).
    pub(super) fn sweep_sessions(&mut self, now: Instant) {
        self.timers
            .set(NodeTimer::SessionSweep, now + SESSION_SWEEP);
        if !self.is_primary() {
            self.expiring.clear();
            return;
        }
        let state = self.repl.get().state();
        self.expiring.retain(|t, _| state.session(t).is_some());
        let due: Vec<SessionToken> = state
            .sessions()
            .filter(|(_, s)| self.cfg.state.session_expired(now, s))
            .filter(|(t, _)| {
                self.expiring
                    .get(*t)
                    .is_none_or(|&at| now.saturating_since(at) >= EXPIRE_RETRY)
            })
            .map(|(t, _)| *t)
            .collect();
        for token in due {
            self.expiring.insert(token, now);
            self.submit_system(now, OpKind::ExpireSession { token });
        }
    }
}
