//! Silent peers (issue 17): a peer not heard from within the peer timeout
//! counts as gone, a silent primary is replaced within the peer timeout
//! plus a heartbeat, and trackers that talk keep each other.

use super::*;

/// The primary goes silent both ways (no close): the backup takes over
/// exactly between `peer_timeout` and `peer_timeout + heartbeat` after the
/// last message it heard from it, never before.
#[test]
fn a_silent_primary_is_replaced_within_the_peer_timeout_plus_a_heartbeat() {
    let mut c = Cluster::new(2);
    c.run(2000);
    c.write(1, "before", 1).unwrap();
    c.run(100);
    c.mute(1, 2);
    c.mute(2, 1);
    let heard = c.last_heard[&(1, 2)];
    let cfg = cfg(2, 2);
    let took = c
        .run_until(5000, |c| c.get(2).role() == Role::Primary)
        .expect("t2 never took over from a silent t1");
    let after = took.saturating_since(heard);
    assert!(
        after >= cfg.peer_timeout && after.0 <= cfg.peer_timeout.0 + cfg.heartbeat.0,
        "took over {after:?} after t1's last message\n{}",
        c.tail()
    );
    assert!(c.silent_events(2) >= 1);
    // It serves: its own write commits without the silent tracker.
    c.write(2, "during", 2).unwrap();
    c.run(50);
    assert_eq!(c.outcome(2, 2), Some(&Ok(p2p_proto::Reply::Done)));
}

/// Trackers that talk keep each other: over a long idle spell (no writes,
/// so nothing but heartbeats and alives), nobody is given up, even with
/// the peer timeout just above the heartbeat interval.
#[test]
fn idle_trackers_stay_connected_with_the_timeout_just_above_the_heartbeat() {
    let mut c = Cluster::with_cfg(3, |r| r.peer_timeout = Duration(r.heartbeat.0 + 1));
    c.run(30_000);
    for id in 1..=3 {
        assert_eq!(c.silent_events(id), 0, "t{id} gave a peer up\n{}", c.tail());
    }
    assert_eq!(c.primary(), Some(1));
}

/// With three trackers, the primary going silent leaves the two backups
/// hearing each other (backups send `Alive`): the lower id takes over and
/// the other follows it; nobody starts a rival epoch.
#[test]
fn three_trackers_elect_the_lowest_survivor_when_the_primary_goes_silent() {
    let mut c = Cluster::new(3);
    c.run(2000);
    for o in [2, 3] {
        c.mute(1, o);
        c.mute(o, 1);
    }
    c.run(3000);
    assert_eq!(c.get(2).role(), Role::Primary, "{}", c.tail());
    assert_eq!(c.get(3).role(), Role::Backup);
    assert_eq!(c.get(3).primary(), Some(TrackerId(2)));
    assert_eq!(c.silent_events(3), 1, "t3 gave up only t1\n{}", c.tail());
    let epochs: Vec<u64> = c.primaries.keys().copied().collect();
    assert_eq!(epochs.len(), 2, "one new epoch only: {epochs:?}");
}

/// Only the primary's traffic is lost (it still hears the backup): the
/// backup takes over, and once the link heals the trackers settle on one
/// primary with one log, keeping the writes both answered.
#[test]
fn a_primary_heard_by_nobody_is_replaced_and_the_heal_converges() {
    let mut c = Cluster::new(2);
    c.run(2000);
    c.mute(1, 2);
    let took = c.run_until(3000, |c| c.get(2).role() == Role::Primary);
    assert!(took.is_some(), "t2 never took over\n{}", c.tail());
    c.write(2, "on-2", 2).unwrap();
    c.run(100);
    assert_eq!(c.outcome(2, 2), Some(&Ok(p2p_proto::Reply::Done)));
    c.unmute_all();
    c.heal();
    c.run(5000);
    c.assert_converged();
    assert!(c.names(1).contains(&"on-2".to_string()), "{}", c.tail());
}
