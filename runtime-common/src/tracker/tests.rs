//! The tracker core's unit tests.

use super::*;
use bytes::Bytes;
use p2p_state::tracker::state::TrackerConfig;
use std::sync::atomic::{AtomicUsize, Ordering};

struct NoIo;

impl TrackerIo for NoIo {
    type Writer = Sink;
    fn dial(&mut self, _: TrackerId, _: SocketAddr) {}
    fn store(&mut self, _: StorageCmd) {}
    fn password(&mut self, _: u64, _: PasswordWork) {}
}

/// A writer that remembers the queue bound it was given (0: none).
#[derive(Clone, Default)]
struct Sink(Arc<AtomicUsize>);

impl FrameSink for Sink {
    fn send(&self, _: Bytes) -> bool {
        true
    }
    fn close(self) {}
    fn abort(&self) {}
    fn set_queue_max(&self, max: usize) {
        self.0.store(max, Ordering::SeqCst);
    }
}

/// A peer tracker's connection (dialed, or accepted with its pinned
/// key, or pinned on first contact) may queue a whole snapshot; a
/// client's keeps the small default bound.
#[test]
fn only_peer_trackers_connections_get_the_larger_write_queue() {
    let addrs: Vec<SocketAddr> = vec![
        "127.0.0.1:7001".parse().unwrap(),
        "127.0.0.1:7002".parse().unwrap(),
        "127.0.0.1:7003".parse().unwrap(),
    ];
    let pinned = KeyId([2; 32]);
    let trackers = (1..=3).map(|i| (TrackerId(i), addrs[i as usize - 1]));
    let mut cfg = NodeConfig::new(TrackerId(1), trackers.collect(), TrackerConfig::test());
    cfg.tracker_keys = vec![None, Some(pinned), None];
    let tracker = Tracker::new(cfg, 1, Instant::from_millis(0));
    let dir = tempfile::tempdir().unwrap();
    let pins = Pinner::new(KnownTrackers::load(dir.path()).unwrap(), addrs.clone());
    let mut core = Core::new(tracker, pins, Clock::new(), NoIo, Box::new(|_| {}));
    let mut open = |input: Input| {
        let writer = Sink::default();
        let conn = match &input {
            Input::Accepted { conn, .. } | Input::Dialed { conn, .. } => *conn,
            _ => unreachable!(),
        };
        let peer = addrs[1];
        let _ = core.turn(Some(Msg::Opened {
            conn,
            peer,
            writer: writer.clone(),
            input,
        }));
        writer
    };
    let client = "127.0.0.9:5000".parse().unwrap();
    let c = open(Input::Accepted {
        conn: 1,
        addr: client,
        peer: KeyId([9; 32]),
    });
    assert_eq!(c.0.load(Ordering::SeqCst), 0, "a client's: the default");
    let accepted = open(Input::Accepted {
        conn: 2,
        addr: addrs[1],
        peer: pinned,
    });
    let dialed = open(Input::Dialed {
        conn: 3,
        tracker: TrackerId(2),
        peer: pinned,
    });
    for w in [accepted, dialed] {
        assert_eq!(w.0.load(Ordering::SeqCst), PEER_TRACKER_WRITE_QUEUE_LEN_MAX);
    }
}
