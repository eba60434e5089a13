//! Epochs and elections: epoch numbers order rounds, then lower ids; a
//! peer's epoch near 2^64, or more than `EPOCH_AHEAD_MAX` rounds ahead, or
//! naming a primary outside the group, is refused and changes nothing; a
//! backup takes over when its primary dies, and a restarted old primary
//! follows the newer epoch.

use super::*;

fn backup_of_two() -> Repl<Toy> {
    let cfg = ReplConfig::new(TrackerId(1), vec![TrackerId(1), TrackerId(2)]);
    let mut r = Repl::<Toy>::new(cfg, Instant(0));
    r.handle_input(Instant(0), ReplInput::Connected(TrackerId(2)));
    while r.poll_output().is_some() {}
    r
}

fn heartbeat(epoch: u64) -> ReplInput {
    ReplInput::Msg {
        from: TrackerId(2),
        msg: ReplMsg::Heartbeat {
            epoch,
            primary: TrackerId(2),
            last: LogPos { epoch, index: 5 },
            confirmed: 0,
        },
    }
}

/// Feeds `input`; true if the epoch was refused (a `PeerError` and no
/// change of epoch, role or log).
fn refused(r: &mut Repl<Toy>, input: ReplInput) -> bool {
    let before = (r.epoch(), r.role(), r.last(), r.state().clone());
    r.handle_input(Instant(10), input);
    let mut error = false;
    while let Some(o) = r.poll_output() {
        error |= matches!(o, ReplOutput::Event(ReplEvent::PeerError { ref what, .. }) if what.to_string().contains("refused"));
    }
    let after = (r.epoch(), r.role(), r.last(), r.state().clone());
    match error {
        true => assert_eq!(before, after, "a refused epoch changed something"),
        false => assert_ne!(before.0, after.0, "neither refused nor followed"),
    }
    error
}

#[test]
fn a_heartbeat_with_an_epoch_near_2_pow_64_changes_nothing() {
    let mut r = backup_of_two();
    // The last epoch tracker 2 could start (refused for how far ahead it
    // is), and numbers near 2^64 (also naming no tracker of the group).
    let last_of_2 = make_epoch(ROUND_MAX, TrackerId(2)).unwrap();
    for epoch in [last_of_2, u64::MAX, u64::MAX - 1, u64::MAX - 0xffff + 1] {
        assert!(refused(&mut r, heartbeat(epoch)), "epoch {epoch:#x}");
    }
    assert_eq!(r.epoch(), 0);
}

#[test]
fn an_epoch_at_most_epoch_ahead_max_rounds_ahead_is_followed_one_more_is_not() {
    let mut r = backup_of_two();
    let too_far = make_epoch(EPOCH_AHEAD_MAX + 1, TrackerId(2)).unwrap();
    assert!(refused(&mut r, heartbeat(too_far)));
    let at_bound = make_epoch(EPOCH_AHEAD_MAX, TrackerId(2)).unwrap();
    assert!(!refused(&mut r, heartbeat(at_bound)));
    assert_eq!(r.epoch(), at_bound);
}

#[test]
fn an_epoch_whose_primary_is_not_in_the_group_is_refused() {
    let mut r = backup_of_two();
    let foreign = make_epoch(1, TrackerId(9)).unwrap();
    assert!(refused(&mut r, heartbeat(foreign)));
    let join = ReplInput::Msg {
        from: TrackerId(2),
        msg: ReplMsg::Join {
            id: TrackerId(2),
            epoch: u64::MAX,
            primary: Some(TrackerId(2)),
            last: LogPos::default(),
            epoch_starts: vec![],
        },
    };
    assert!(refused(&mut r, join));
}

#[test]
fn epoch_numbers_refuse_rounds_that_do_not_fit() {
    assert_eq!(make_epoch(ROUND_MAX + 1, TrackerId(1)), None);
    let last = make_epoch(ROUND_MAX, TrackerId(1)).unwrap();
    assert_eq!(epoch_round(last), ROUND_MAX);
    assert_eq!(epoch_primary(last), Some(TrackerId(1)));
}

#[test]
fn epoch_numbers_order_rounds_then_lower_ids() {
    let a = make_epoch(3, TrackerId(1)).unwrap();
    let b = make_epoch(3, TrackerId(2)).unwrap();
    let c = make_epoch(4, TrackerId(9)).unwrap();
    assert!(a > b && c > a);
    assert_eq!(epoch_primary(b), Some(TrackerId(2)));
    assert_eq!(epoch_round(c), 4);
    assert_eq!(epoch_primary(0), None);
}

#[test]
fn backup_takes_over_when_the_primary_dies() {
    let mut c = Cluster::new(2);
    c.run(2000);
    c.write(1, "before", 1).unwrap();
    c.run(100);
    c.crash(1);
    c.run(3000);
    assert_eq!(c.primary(), Some(2));
    assert_eq!(epoch_round(c.get(2).epoch()), 2);
    c.write(2, "after", 2).unwrap();
    c.run(100);
    assert_eq!(c.outcome(2, 2), Some(&Ok(p2p_proto::Reply::Done)));
    assert_eq!(c.names(2), vec!["after", "before"]);
}

#[test]
fn three_trackers_survive_primary_crash_and_restart() {
    let mut c = Cluster::new(3);
    c.run(2000);
    assert_eq!(c.primary(), Some(1));
    for i in 0..5 {
        c.write(3, &format!("w{i}"), i).unwrap();
    }
    c.run(300);
    c.crash(1);
    c.run(3000);
    assert_eq!(c.primary(), Some(2));
    for i in 5..10 {
        c.write(3, &format!("w{i}"), i).unwrap();
    }
    c.run(300);
    c.restart(1);
    c.run(3000);
    c.assert_converged();
    assert_eq!(c.names(1).len(), 10);
    // Tracker 1 came back with a lower epoch: it follows, it does not preempt.
    assert_eq!(c.primary(), Some(2));
}
