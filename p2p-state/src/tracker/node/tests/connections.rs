//! Connections: the seed line, bad framing and wrong versions closing only
//! their connection, the idle timeout, connection caps (a peer tracker
//! still gets in), and a silent peer tracker closed and redialed.

use super::*;

#[test]
fn trackers_connect_and_print_the_seed_line() {
    let net = setup();
    assert!(net.events.iter().any(|(i, e)| *i == 2
        && *e
            == TrackerEvent::ConnectedToTracker {
                tracker: TrackerId(1)
            }));
    assert!(net.events.iter().any(|(i, e)| *i == 1
        && *e
            == TrackerEvent::ConnectedToTracker {
                tracker: TrackerId(2)
            }));
}

#[test]
fn garbage_and_huge_length_prefix_close_only_that_connection() {
    let mut net = setup();
    let mut a = Client::new(&mut net, 1, 1);
    let bad = Client::new(&mut net, 2, 1);
    net.raw(bad.conn, &[0, 0, 0, 3, 0xff, 0xff, 0xff]);
    assert!(matches!(
        net.inbox[&bad.conn].last(),
        Some(FromTracker::Fatal { .. })
    ));
    assert!(!net.ends.contains_key(&bad.conn), "bad connection closed");
    assert!(
        net.events
            .iter()
            .any(|(_, e)| matches!(e, TrackerEvent::BadInput { .. }))
    );
    // The tracker keeps serving others.
    assert_eq!(
        a.call(
            &mut net,
            Request::CreateUser {
                user: u("alice"),
                password: pw("pw")
            }
        ),
        Ok(Reply::Done)
    );
}

/// Issue 16 §1: a client connection that goes silent is closed at
/// [`CLIENT_IDLE_TIMEOUT`], not before; any request restarts its clock.
#[test]
fn a_silent_client_connection_is_closed_at_the_idle_timeout() {
    let mut net = setup();
    let mut a = Client::new(&mut net, 1, 1);
    let idle = CLIENT_IDLE_TIMEOUT.as_millis();
    net.run(idle - 1);
    assert!(net.ends.contains_key(&a.conn), "open just before the bound");
    a.send_id(&mut net, 99, Request::Ping);
    net.settle();
    assert_eq!(a.response(&net, 99), Some(Ok(Reply::Pong)));
    net.run(idle - 1);
    assert!(
        net.ends.contains_key(&a.conn),
        "a request restarts the clock"
    );
    net.run(1);
    assert!(!net.ends.contains_key(&a.conn), "closed at the bound");
    assert!(matches!(
        net.inbox[&a.conn].last(),
        Some(FromTracker::Fatal { reason }) if reason.as_str().contains("silent for 30 s")
    ));
}

/// Issue 16 §3: at most [`CONNS_PER_ADDR_MAX`] connections from one
/// address; one more is refused, another address is still served, and a
/// slot frees when one closes.
#[test]
fn connections_from_one_address_are_capped() {
    let mut net = setup();
    let from = SocketAddr::from(([10, 0, 0, 7], 5000));
    let conns: Vec<ConnId> = (0..CONNS_PER_ADDR_MAX as u16)
        .map(|k| net.connect_client_from(200 + k, 1, from))
        .collect();
    assert!(
        conns.iter().all(|c| net.ends.contains_key(c)),
        "all at the bound served"
    );
    let extra = net.connect_client_from(199, 1, from);
    assert!(!net.ends.contains_key(&extra), "one past the bound refused");
    let other = net.connect_client_from(198, 1, SocketAddr::from(([10, 0, 0, 8], 5000)));
    assert!(net.ends.contains_key(&other), "another address is served");
    net.close(conns[0]);
    net.settle();
    let again = net.connect_client_from(197, 1, from);
    assert!(net.ends.contains_key(&again), "a slot freed");
}

/// Issue 16 §3: at most `client_conns_max` accepted connections in all
/// (one more refused at once, with the limit in its reason), while a peer
/// tracker (its key pinned) still gets in.
#[test]
fn accepted_connections_are_capped_but_a_peer_tracker_gets_in() {
    let mut net = Net::new_with(2, |c| c.client_conns_max = 3);
    let conns: Vec<ConnId> = (0..3).map(|k| net.connect_client(10 + k, 2)).collect();
    assert!(
        conns.iter().all(|c| net.ends.contains_key(c)),
        "at the bound"
    );
    let extra = net.connect_client(20, 2);
    assert!(!net.ends.contains_key(&extra), "one past the bound refused");
    assert!(matches!(
        net.inbox[&extra].last(),
        Some(FromTracker::Fatal { reason }) if reason.as_str().contains("at most 3")
    ));
    // Tracker 1 (pinned on first contact) connects again: not refused.
    let (_c, s) = net.pair(Owner::Tracker(1), Owner::Tracker(2));
    net.pending.push_back((
        Owner::Tracker(2),
        Input::Accepted {
            conn: s,
            addr: addr_of(1),
            peer: key_of(1),
        },
    ));
    net.settle();
    assert!(net.ends.contains_key(&s), "a peer tracker is not capped");
}

#[test]
fn wrong_version_gets_our_hello_then_close() {
    let mut net = setup();
    let (c, s) = net.pair(Owner::Client(9), Owner::Tracker(1));
    net.pending.push_back((
        Owner::Tracker(1),
        Input::Accepted {
            conn: s,
            addr: addr_of(99),
            peer: key_of(99),
        },
    ));
    net.settle();
    let mut b = BytesMut::new();
    encode_msg(
        &Hello {
            version: 99,
            role: WireRole::Client,
        },
        &mut b,
    );
    net.deliver(c, b);
    net.settle();
    assert_eq!(net.hellos[&c][0].version, p2p_proto::PROTOCOL_VERSION);
    assert!(!net.ends.contains_key(&c));
    let err = net.events.iter().find_map(|(_, e)| match e {
        TrackerEvent::BadInput { error, .. } => Some(error.clone()),
        _ => None,
    });
    assert!(err.unwrap().contains("version 99"));
}

/// Issue 17: the link between the trackers goes silent (no close). Each
/// gives the other up on its own deadline, closes that connection and the
/// lower id redials; the backup becomes primary meanwhile.
#[test]
fn trackers_close_and_redial_a_silent_peer_and_the_backup_takes_over() {
    let mut net = setup();
    net.run(2000);
    assert!(net.t(1).is_primary());
    let tracker_ends: Vec<ConnId> = net
        .ends
        .iter()
        .filter(|(_, (o, other))| {
            matches!(o, Owner::Tracker(_))
                && matches!(net.ends.get(other), Some((Owner::Tracker(_), _)))
        })
        .map(|(e, _)| *e)
        .collect();
    assert_eq!(tracker_ends.len(), 2, "one connection between the trackers");
    net.muted.extend(tracker_ends);
    net.events.clear();
    net.run(1500);
    assert!(net.t(2).is_primary(), "t2 did not take over a silent t1");
    for (i, peer) in [(1, 2), (2, 1)] {
        let gone = TrackerEvent::DisconnectedFromTracker {
            tracker: TrackerId(peer),
        };
        assert!(
            net.events.iter().any(|(t, e)| *t == i && *e == gone),
            "t{i} did not drop the silent t{peer}: {:?}",
            net.events
        );
    }
    // The lower id dials again, over a fresh connection that works.
    net.run(3000);
    let back = TrackerEvent::ConnectedToTracker {
        tracker: TrackerId(2),
    };
    assert!(
        net.events.iter().any(|(t, e)| *t == 1 && *e == back),
        "t1 never redialled t2: {:?}",
        net.events
    );
    net.run(3000);
    assert_eq!(net.digests()[0], net.digests()[1]);
    let primaries = (1..=2).filter(|&i| net.t(i).is_primary()).count();
    assert_eq!(primaries, 1);
}
