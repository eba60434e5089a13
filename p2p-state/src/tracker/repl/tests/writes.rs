//! Writes: proposed at the primary or forwarded from a backup, committed
//! once the in-sync backups acked, answered where they were taken only once
//! applied there; a forward in flight when the primary dies is abandoned,
//! and the client's retry with the same id succeeds.

use super::*;

#[test]
fn lowest_id_becomes_primary_and_writes_replicate() {
    let mut c = Cluster::new(2);
    c.run(2000);
    assert_eq!(c.primary(), Some(1));
    assert_eq!(epoch_primary(c.get(1).epoch()), Some(TrackerId(1)));
    c.write(1, "g1", 1).unwrap();
    c.run(100);
    assert_eq!(c.outcome(1, 1), Some(&Ok(p2p_proto::Reply::Done)));
    assert_eq!(c.names(2), vec!["g1"]);
    c.assert_converged();
    assert!(c.get(2).can_serve_reads());
}

#[test]
fn primary_answers_only_after_the_backup_acked() {
    let mut c = Cluster::new(2);
    c.run(2000);
    c.write(1, "g1", 7).unwrap();
    // Nothing delivered yet: the backup has not acked, no answer.
    assert_eq!(c.outcome(1, 7), None);
    assert!(
        c.get(1).state().names.is_empty(),
        "primary applied before the ack"
    );
    c.run(50);
    assert!(c.outcome(1, 7).is_some());
}

#[test]
fn backup_forwards_writes_and_reads_its_own_write() {
    let mut c = Cluster::new(2);
    c.run(2000);
    c.write(2, "g2", 5).unwrap();
    c.run(100);
    assert_eq!(c.outcome(2, 5), Some(&Ok(p2p_proto::Reply::Done)));
    // The backup answered only once it had applied the op itself.
    assert_eq!(c.names(2), vec!["g2"]);
    c.write(2, "g2", 6).unwrap();
    c.run(100);
    assert!(matches!(
        c.outcome(2, 6),
        Some(Err(TrackerError::GroupExists { .. }))
    ));
    c.assert_converged();
}

#[test]
fn a_write_in_flight_at_primary_change_is_abandoned_not_lost() {
    let mut c = Cluster::new(2);
    c.run(2000);
    c.write(2, "f", 3).unwrap();
    // Kill the primary before the forward is delivered.
    c.crash(1);
    assert_eq!(c.nodes[1].abandoned, vec![3]);
    c.run(3000);
    // The client retries with the same id on the new primary.
    c.write(2, "f", 3).unwrap();
    c.run(100);
    assert_eq!(c.outcome(2, 3), Some(&Ok(p2p_proto::Reply::Done)));
}
