//! Partition heal: the losing side's divergent client ops are re-submitted
//! (durably, to whichever primary comes next, never applied twice, not
//! sent again once answered) or recorded as replicated conflicts.

use super::*;

#[test]
fn partition_heal_resubmits_divergent_ops_and_records_conflicts() {
    let mut c = Cluster::new(2);
    c.run(2000);
    c.write(1, "common", 1).unwrap();
    c.run(100);
    c.partition(&[1]);
    c.run(3000);
    assert_eq!(
        c.get(2).role(),
        Role::Primary,
        "the cut-off backup took over"
    );
    // Both sides accept writes; "dup" conflicts.
    c.write(1, "only1", 10).unwrap();
    c.write(1, "dup", 11).unwrap();
    c.write(2, "only2", 20).unwrap();
    c.write(2, "dup", 21).unwrap();
    c.run(100);
    assert!(c.outcome(1, 11).is_some() && c.outcome(2, 21).is_some());
    c.heal();
    c.run(3000);
    c.assert_converged();
    // Tracker 2 has the higher epoch: it wins; tracker 1's "only1" came back,
    // its "dup" is a recorded conflict.
    assert_eq!(c.primary(), Some(2));
    assert_eq!(c.names(1), vec!["common", "dup", "only1", "only2"]);
    let conflicts = &c.get(2).state().conflicts;
    assert_eq!(conflicts.len(), 1, "{}", c.tail());
    assert!(matches!(conflicts[0].1, TrackerError::GroupExists { .. }));
    // Replicated: tracker 1 holds the same conflict log.
    assert_eq!(&c.get(1).state().conflicts, conflicts);
    assert!(c.nodes[0].events.iter().any(|e| matches!(
        e,
        ReplEvent::Diverged {
            resubmitting: 2,
            ..
        }
    )));
}

#[test]
fn retried_resubmission_is_not_applied_twice() {
    let mut c = Cluster::new(2);
    c.run(2000);
    c.partition(&[1]);
    c.run(3000);
    c.write(1, "x", 10).unwrap();
    c.run(100);
    // The client of tracker 1 retried on tracker 2 before the heal.
    let req = ClientRequest {
        client: ClientId([1; 16]),
        id: RequestId(10),
        session: None,
        req: p2p_proto::Request::CreateGroup {
            group: GroupName::new("x").unwrap(),
        },
    };
    let (origin, kind) = toy_op(&req);
    let now = c.now;
    assert_eq!(c.get(2).role(), Role::Primary);
    let input = ReplInput::Propose {
        origin: Some(origin),
        kind,
        tag: Some(10),
    };
    c.node(2).handle_input(now, input);
    c.drain(2);
    c.run(100);
    c.heal();
    c.run(3000);
    c.assert_converged();
    assert_eq!(c.get(2).state().conflicts.len(), 0);
    assert_eq!(c.get(2).state().applied, c.get(1).state().applied);
    let creates = c
        .get(2)
        .log()
        .range(1, u64::MAX)
        .filter(|e| matches!(e.op.kind, OpKind::CreateGroup { .. }))
        .count();
    assert_eq!(creates, 1, "the same request applied twice");
}

/// Partitions `[1]` from `[2]` until tracker 2 leads a higher epoch, writes
/// `only1` on tracker 1's side, heals, and steps until tracker 1 replaced
/// its divergent log (its re-submission may still be on the wire).
fn diverge_two_trackers() -> Cluster {
    let mut c = Cluster::new(2);
    c.run(2000);
    c.write(1, "common", 1).unwrap();
    c.run(100);
    c.partition(&[1]);
    c.run(3000);
    assert_eq!(c.get(2).role(), Role::Primary);
    c.write(1, "only1", 10).unwrap();
    c.write(2, "only2", 20).unwrap();
    c.run(100);
    assert!(c.outcome(1, 10).is_some(), "tracker 1 answered its client");
    c.heal();
    let until = c.now + Duration(3000);
    for _ in 0..10_000 {
        let diverged = c.nodes[0]
            .events
            .iter()
            .any(|e| matches!(e, ReplEvent::SnapshotInstalled { .. }));
        if diverged || !c.step(until) {
            break;
        }
    }
    assert_eq!(c.get(1).resubmit_pending(), 1, "{}", c.tail());
    assert_eq!(
        c.nodes[0].disk.resubmit.len(),
        1,
        "queued on disk before the log was replaced"
    );
    c
}

#[test]
fn a_joiner_that_crashes_before_its_resubmission_is_answered_resends_it_after_restart() {
    let mut c = diverge_two_trackers();
    // The re-submission dies with the connection.
    c.crash(1);
    c.run(500);
    c.restart(1);
    c.run(3000);
    c.assert_converged();
    assert_eq!(c.names(2), vec!["common", "only1", "only2"], "{}", c.tail());
    assert_eq!(c.get(1).resubmit_pending(), 0);
    assert!(
        c.nodes[0].disk.resubmit.is_empty(),
        "answered: dropped on disk too"
    );
}

#[test]
fn a_joiner_whose_primary_dies_resubmits_its_queue_to_the_next_one() {
    let mut c = diverge_two_trackers();
    c.crash(2);
    c.run(3000);
    assert_eq!(c.primary(), Some(1));
    assert_eq!(c.names(1), vec!["common", "only1", "only2"], "{}", c.tail());
    assert_eq!(c.get(1).resubmit_pending(), 0);
    assert!(c.nodes[0].disk.resubmit.is_empty());
    c.restart(2);
    c.run(3000);
    c.assert_converged();
}

#[test]
fn an_answered_resubmission_is_not_sent_again() {
    let mut c = diverge_two_trackers();
    c.run(3000);
    c.assert_converged();
    assert_eq!(c.get(1).resubmit_pending(), 0);
    // Reconnecting (a new catch-up, in sync again) re-sends nothing.
    c.disconnect(1, 2);
    c.connect(1, 2);
    c.run(2000);
    let resubmits = c.trace.iter().filter(|l| l.contains("Resubmit")).count();
    assert_eq!(resubmits, 1, "{}", c.tail());
}
