//! The contract every machine follows ([`Machine`]), and the two helpers
//! that hold machines to it: [`Outbox`], an output queue with the
//! single-mutation guard, and [`Child`], a sub-machine inside a parent.
//!
//! A driver (or a parent machine, or a test, or the simulation) runs a
//! machine like this, and only like this:
//!
//! ```text
//! loop {
//!     wait for the first of: an input, m.poll_timeout()
//!     m.handle_input(now, input)   or   m.handle_timeout(now)
//!     while let Some(o) = m.poll_output() { execute(o) }   // drain, always
//! }
//! ```
//!
//! **Single-mutation rule** (str0m's): after every mutation (an input, a
//! timeout, or one of the few `&mut self` commands a machine offers) the
//! caller drains `poll_output` until `None` before the next mutation.
//! In debug builds a machine fed with outputs still queued panics
//! ([`Outbox::check_drained`]): an output left behind would otherwise be
//! executed late, after effects of inputs that came after it.
//!
//! Time never goes backwards across calls. `poll_timeout` is the soonest
//! deadline with its reason (the key of the machine's
//! [`TimerTable`](crate::timer::TimerTable)); `handle_timeout(now)` runs
//! every deadline due at `now` and is harmless when none is.
//! `check_invariants` panics if the machine's bookkeeping disagrees with
//! itself; machines call it after every mutation in debug builds, and the
//! simulation calls it from outside.

use std::collections::VecDeque;
use std::fmt;

use crate::time::Instant;

/// A sans-IO state machine: inputs and time in, outputs and a deadline out.
pub trait Machine {
    /// Everything the driver tells the machine (besides time passing).
    type Input;
    /// Everything the machine asks its driver to do.
    type Output;
    /// Why the machine asks to be woken up (its timer key).
    type Reason: Copy + fmt::Debug;

    /// One input at `now`. Drain [`Machine::poll_output`] afterwards.
    fn handle_input(&mut self, now: Instant, input: Self::Input);
    /// Runs every deadline due at `now`. Drain afterwards.
    fn handle_timeout(&mut self, now: Instant);
    /// The next output, oldest first; `None` when drained.
    fn poll_output(&mut self) -> Option<Self::Output>;
    /// The soonest deadline and its reason; `None` when nothing is due.
    fn poll_timeout(&self) -> Option<(Instant, Self::Reason)>;
    /// Panics if the machine's bookkeeping disagrees with itself.
    fn check_invariants(&self);
}

/// Takes every queued output of `m` (for callers that must feed the
/// machine again while executing them, which the rule forbids doing
/// while outputs are still queued).
pub(crate) fn drain<M: Machine + ?Sized>(m: &mut M) -> Vec<M::Output> {
    std::iter::from_fn(|| m.poll_output()).collect()
}

/// A machine's queue of outputs, with the single-mutation guard.
#[derive(Debug, Clone)]
pub(crate) struct Outbox<T> {
    q: VecDeque<T>,
}

impl<T> Default for Outbox<T> {
    fn default() -> Self {
        Outbox { q: VecDeque::new() }
    }
}

impl<T> Outbox<T> {
    pub(crate) fn new() -> Self {
        Self::default()
    }
    pub(crate) fn push_back(&mut self, o: T) {
        self.q.push_back(o);
    }
    pub(crate) fn pop_front(&mut self) -> Option<T> {
        self.q.pop_front()
    }

    /// The guard: called at the start of every mutation of `machine`.
    /// Panics in debug builds if outputs of an earlier mutation are still
    /// queued (the caller broke the single-mutation rule).
    #[track_caller]
    pub(crate) fn check_drained(&self, machine: &str) {
        if cfg!(debug_assertions) && !self.q.is_empty() {
            panic!(
                "{machine} fed while {} of its outputs were not drained: \
                 drain poll_output() until None after every input, timeout \
                 or command (the single-mutation rule, p2p-state machine.rs)",
                self.q.len()
            );
        }
    }
}

/// A sub-machine owned by a parent machine. The parent feeds it only
/// through [`Child::feed`], which first moves the child's undrained
/// outputs to a queue of the parent's, so the child is drained before
/// every mutation even when the parent feeds it while executing its
/// outputs; [`Child::poll`] returns the moved outputs first, so the order
/// is exactly the child's.
#[derive(Debug)]
pub(crate) struct Child<M: Machine> {
    m: M,
    taken: VecDeque<M::Output>,
}

impl<M: Machine> Child<M> {
    pub(crate) fn new(m: M) -> Self {
        Child {
            m,
            taken: VecDeque::new(),
        }
    }
    /// The child, to read.
    pub(crate) fn get(&self) -> &M {
        &self.m
    }
    /// The child, drained, to feed one input, timeout or command.
    pub(crate) fn feed(&mut self) -> &mut M {
        while let Some(o) = self.m.poll_output() {
            self.taken.push_back(o);
        }
        &mut self.m
    }
    /// The child's next output.
    pub(crate) fn poll(&mut self) -> Option<M::Output> {
        self.taken.pop_front().or_else(|| self.m.poll_output())
    }
    /// Outputs taken out of the child and not polled yet.
    #[cfg(test)]
    pub(crate) fn has_taken(&self) -> bool {
        !self.taken.is_empty()
    }
}

/// Implements [`Machine`] for a type whose inherent methods already follow
/// the contract (callers need not import the trait).
macro_rules! impl_machine {
    ($t:ty, $input:ty, $output:ty, $reason:ty) => {
        impl $crate::machine::Machine for $t {
            type Input = $input;
            type Output = $output;
            type Reason = $reason;
            fn handle_input(&mut self, now: $crate::time::Instant, input: $input) {
                <$t>::handle_input(self, now, input)
            }
            fn handle_timeout(&mut self, now: $crate::time::Instant) {
                <$t>::handle_timeout(self, now)
            }
            fn poll_output(&mut self) -> Option<$output> {
                <$t>::poll_output(self)
            }
            fn poll_timeout(&self) -> Option<($crate::time::Instant, $reason)> {
                <$t>::poll_timeout(self)
            }
            fn check_invariants(&self) {
                <$t>::check_invariants(self)
            }
        }
    };
}
pub(crate) use impl_machine;

#[cfg(test)]
mod tests {
    use super::*;

    /// Echoes each input as an output; counts its mutations.
    #[derive(Default)]
    struct Echo {
        out: Outbox<u32>,
    }

    impl Machine for Echo {
        type Input = u32;
        type Output = u32;
        type Reason = ();
        fn handle_input(&mut self, _now: Instant, input: u32) {
            self.out.check_drained("echo");
            self.out.push_back(input);
            self.out.push_back(input + 100);
        }
        fn handle_timeout(&mut self, _now: Instant) {
            self.out.check_drained("echo");
        }
        fn poll_output(&mut self) -> Option<u32> {
            self.out.pop_front()
        }
        fn poll_timeout(&self) -> Option<(Instant, ())> {
            None
        }
        fn check_invariants(&self) {}
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "echo fed while 2 of its outputs were not drained")]
    fn feeding_an_undrained_machine_panics() {
        let mut m = Echo::default();
        m.handle_input(Instant(0), 1);
        m.handle_input(Instant(0), 2);
    }

    #[test]
    fn a_drained_machine_takes_the_next_input() {
        let mut m = Echo::default();
        m.handle_input(Instant(0), 1);
        assert_eq!(drain(&mut m), vec![1, 101]);
        m.handle_input(Instant(0), 2);
        assert_eq!(drain(&mut m), vec![2, 102]);
        m.handle_timeout(Instant(0));
        assert!(m.poll_output().is_none());
    }

    #[test]
    fn a_child_fed_mid_drain_keeps_its_output_order() {
        let mut c = Child::new(Echo::default());
        c.feed().handle_input(Instant(0), 1);
        assert_eq!(c.poll(), Some(1));
        // Fed again while 101 is still queued: 101 comes out first.
        c.feed().handle_input(Instant(0), 2);
        assert!(c.has_taken());
        let rest: Vec<u32> = std::iter::from_fn(|| c.poll()).collect();
        assert_eq!(rest, vec![101, 2, 102]);
    }

    // Every machine's entry points are guarded: each is fed once, not
    // drained, and fed again.

    use std::net::SocketAddr;

    use p2p_proto::{PeerMsg, TrackerId};

    use crate::client::node::{self as cn, ClientConfig, ClientNode};
    use crate::client::session::{ClientSession, SessionConfig, SessionInput};
    use crate::download::DownloadConfig;
    use crate::seeder::{self, ConnId, Seeder, SeederConfig};
    use crate::tracker::node::{self as tn, NodeConfig, Tracker};
    use crate::tracker::repl::{Repl, ReplConfig, ReplInput};
    use crate::tracker::state::{TrackerConfig, TrackerState};

    const T0: Instant = Instant(1_700_000_000_000);

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "tracker fed while")]
    fn tracker_is_guarded() {
        // Tracker 1 dials tracker 2 at once: that output stays queued.
        let trackers = vec![(TrackerId(1), addr(7001)), (TrackerId(2), addr(7002))];
        let cfg = NodeConfig::new(TrackerId(1), trackers, TrackerConfig::test());
        let mut t = Tracker::new(cfg, 1, T0);
        t.handle_timeout(T0);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "replication fed while")]
    fn replication_is_guarded() {
        let mut r = Repl::<TrackerState>::new(ReplConfig::new(TrackerId(1), vec![]), T0);
        r.handle_input(T0, ReplInput::Connected(TrackerId(2)));
        r.handle_timeout(T0);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "client session fed while")]
    fn session_is_guarded() {
        // A new session asks to connect at once.
        let mut s = ClientSession::new(SessionConfig::new(vec![addr(7001)], 0), 1, T0);
        s.handle_input(T0, SessionInput::ConnectFailed { conn: 1 });
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "client fed while")]
    fn client_is_guarded() {
        let cfg = ClientConfig {
            session: SessionConfig::new(vec![addr(7001)], 0),
            seeder: SeederConfig::default(),
            download: DownloadConfig::default(),
            seeder_addr: None,
        };
        let mut n = ClientNode::new(cfg, 1, T0);
        n.handle_timeout(T0);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "seeder fed while")]
    fn seeder_is_guarded() {
        let mut s = Seeder::new(SeederConfig::default(), T0);
        let conn = ConnId(1);
        let peer = p2p_proto::KeyId([1; 32]);
        let addr = std::net::IpAddr::from([127, 0, 0, 1]);
        s.handle_input(T0, seeder::Input::Opened { conn, peer, addr });
        // A request before the ticket is refused: a reject and a close.
        let msg = PeerMsg::Request { index: 0 };
        s.handle_input(T0, seeder::Input::Msg { conn, msg });
        s.handle_timeout(T0);
    }

    #[test]
    fn guarded_machines_run_when_drained() {
        let trackers = vec![(TrackerId(1), addr(7001)), (TrackerId(2), addr(7002))];
        let cfg = NodeConfig::new(TrackerId(1), trackers, TrackerConfig::test());
        let mut t = Tracker::new(cfg, 1, T0);
        assert!(!drain(&mut t).is_empty());
        t.handle_input(
            T0,
            tn::Input::DialFailed {
                tracker: TrackerId(2),
            },
        );
        drain(&mut t);
        t.handle_timeout(T0);
        let cfg = ClientConfig {
            session: SessionConfig::new(vec![addr(7001)], 0),
            seeder: SeederConfig::default(),
            download: DownloadConfig::default(),
            seeder_addr: None,
        };
        let mut n = ClientNode::new(cfg, 1, T0);
        assert!(!drain(&mut n).is_empty());
        n.handle_input(T0, cn::Input::TrackerConnectFailed { conn: 1 });
        drain(&mut n);
        n.handle_timeout(T0);
    }
}
