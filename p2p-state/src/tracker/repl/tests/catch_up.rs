//! Catch-up: a restarted tracker recovers from its disk and catches up by
//! log suffix, one far behind by snapshot; entries not every tracker holds
//! survive snapshots and restarts; a backup waiting for a snapshot takes
//! over if the primary dies first.

use super::*;

#[test]
fn restarted_tracker_recovers_from_disk_and_catches_up_by_suffix() {
    let mut c = Cluster::new(2);
    c.run(2000);
    for i in 0..5 {
        c.write(1, &format!("a{i}"), i).unwrap();
    }
    c.run(200);
    c.crash(2);
    for i in 5..10 {
        c.write(1, &format!("a{i}"), i).unwrap();
    }
    c.run(200);
    c.restart(2);
    c.run(2000);
    c.assert_converged();
    assert_eq!(c.names(2).len(), 10);
    assert!(
        !c.nodes[1]
            .events
            .iter()
            .any(|e| matches!(e, ReplEvent::SnapshotInstalled { .. }))
    );
    assert!(c.get(2).can_serve_reads());
    // Recovery from its own disk alone gives the same state as before.
    let disk = c.nodes[1].disk.clone();
    let r: Repl<Toy> = Repl::recover(cfg(2, 2), recovered(disk), c.now);
    assert_eq!(r.state().digest(), c.get(2).state().digest());
}

#[test]
fn rejoin_far_behind_catches_up_by_snapshot() {
    let mut c = Cluster::with_cfg(2, |cfg| {
        cfg.snapshot_every = 10;
        cfg.log_keep = 2;
    });
    c.run(2000);
    c.crash(2);
    for i in 0..40 {
        c.write(1, &format!("s{i}"), i).unwrap();
    }
    c.run(200);
    assert!(
        c.get(1).log().start().index > 0,
        "primary compacted its log"
    );
    // Restart from an empty disk: needs the snapshot.
    c.nodes[1].disk = Disk::default();
    c.restart(2);
    c.run(2000);
    assert!(
        c.nodes[1]
            .events
            .iter()
            .any(|e| matches!(e, ReplEvent::SnapshotInstalled { .. }))
    );
    c.assert_converged();
    assert_eq!(c.names(2).len(), 40);
    c.write(2, "after", 99).unwrap();
    c.run(200);
    assert_eq!(c.outcome(2, 99), Some(&Ok(p2p_proto::Reply::Done)));
}

#[test]
fn unconfirmed_entries_survive_snapshots_and_restarts() {
    let mut c = Cluster::with_cfg(2, |cfg| {
        cfg.snapshot_every = 5;
        cfg.log_keep = 1;
    });
    c.run(2000);
    c.write(1, "common", 1).unwrap();
    c.run(200);
    let confirmed = c.get(1).confirmed();
    assert!(confirmed >= 2, "both trackers hold the start: {confirmed}");
    c.crash(2);
    for i in 0..12 {
        c.write(1, &format!("n{i}"), 100 + i).unwrap();
        c.run(50);
    }
    let origin = |id: u64| Origin {
        client: ClientId([1; 16]),
        key: p2p_proto::KeyId::default(),
        id: RequestId(id),
    };
    // Tracker 1 snapshotted, but kept every entry tracker 2 does not hold.
    assert!(c.nodes[0].disk.snapshot.is_some());
    assert_eq!(c.get(1).confirmed(), confirmed);
    assert!(c.get(1).log().start().index <= confirmed);
    assert!(c.get(1).log().index_of(&origin(100)).is_some());
    // ... and so does its disk: the snapshot carries them as its tail.
    c.crash(1);
    c.restart(1);
    assert!(c.get(1).log().start().index <= confirmed);
    assert!(c.get(1).log().index_of(&origin(100)).is_some());
    assert_eq!(c.names(1).len(), 13);
    // Once tracker 2 holds them too, they may go.
    c.restart(2);
    c.run(3000);
    c.assert_converged();
    for i in 0..6 {
        c.write(1, &format!("m{i}"), 200 + i).unwrap();
        c.run(50);
    }
    assert!(c.get(1).confirmed() > confirmed);
    assert!(
        c.get(1).log().index_of(&origin(100)).is_none(),
        "start {:?} confirmed {} applied {} primary {:?}",
        c.get(1).log().start(),
        c.get(1).confirmed(),
        c.get(1).applied(),
        c.primary()
    );
}

#[test]
fn a_backup_waiting_for_a_snapshot_takes_over_when_the_primary_dies() {
    let mut c = Cluster::new(2);
    c.run(2000);
    c.partition(&[1]);
    c.run(3000);
    c.write(1, "only1", 10).unwrap();
    c.run(100);
    c.heal();
    // Deliver until tracker 1 has been told a snapshot is coming, then the
    // primary dies before sending it.
    let until = c.now + Duration(3000);
    for _ in 0..10_000 {
        let told = c
            .trace
            .iter()
            .any(|l| l.contains("2->1 CatchUp") && l.contains("snapshot: true"));
        if told || !c.step(until) {
            break;
        }
    }
    assert!(c.get(1).pending_fork.is_some(), "{}", c.tail());
    c.crash(2);
    c.run(3000);
    assert_eq!(c.primary(), Some(1), "{}", c.tail());
    assert_eq!(c.names(1), vec!["only1"]);
}
