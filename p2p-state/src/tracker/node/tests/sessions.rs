//! Sessions: a dropped or refused client shown offline after the grace
//! (and back online on its return), and the client session machine across
//! trackers: a command in flight when its tracker dies, an applied but
//! unanswered write, no tracker at all, an election.

use super::*;

#[test]
fn a_dropped_client_goes_offline_after_the_grace_and_back_on_return() {
    let mut net = setup();
    let mut a = Client::new(&mut net, 1, 2);
    a.sign_up(&mut net, "alice", "pw");
    let token = a.token.unwrap();
    net.close(a.conn);
    net.settle();
    net.run(2000);
    assert!(
        !net.t(1).state().session(&token).unwrap().online,
        "offline on the primary"
    );
    a.conn = net.connect_client(1, 2);
    a.call(&mut net, Request::Ping).unwrap();
    net.run(500);
    assert!(
        net.t(1).state().session(&token).unwrap().online,
        "back online"
    );
    let d = net.digests();
    assert_eq!(d[0], d[1]);
}

#[test]
fn a_refused_client_connection_also_goes_offline_after_the_grace() {
    let mut net = setup();
    let mut a = Client::new(&mut net, 1, 1);
    a.sign_up(&mut net, "alice", "pw");
    let token = a.token.unwrap();
    assert!(net.t(1).state().session(&token).unwrap().online);
    // The client's connection then breaks the protocol and is refused.
    net.raw(a.conn, &[0, 0, 0, 2, 0xee, 0xee]);
    assert!(!net.ends.contains_key(&a.conn), "refused and closed");
    net.run(2000);
    assert!(
        !net.t(1).state().session(&token).unwrap().online,
        "withdrawn after the grace"
    );
}

fn login_session(net: &mut Net, first: u16) -> u16 {
    let k = net.add_session(first);
    net.command(
        k,
        1,
        Request::CreateUser {
            user: u("carol"),
            password: pw("pw"),
        },
    );
    net.command(
        k,
        2,
        Request::Login {
            user: u("carol"),
            password: pw("pw"),
        },
    );
    net.run(500);
    assert_eq!(net.result(k, 1), vec![Ok(Reply::Done)]);
    assert!(matches!(net.result(k, 2)[..], [Ok(Reply::LoggedIn { .. })]));
    k
}

#[test]
fn session_command_in_flight_when_the_tracker_dies_completes_once_elsewhere() {
    let mut net = setup();
    let k = login_session(&mut net, 1);
    // Sent to tracker 1, which dies before answering.
    net.command(
        k,
        3,
        Request::CreateGroup {
            group: g("g-failover"),
        },
    );
    net.crash(1);
    net.run(6000);
    assert_eq!(
        net.result(k, 3),
        vec![Ok(Reply::Done)],
        "exactly one answer"
    );
    assert!(
        net.session_events
            .iter()
            .any(|(_, e)| matches!(e, SessionEvent::FailedOver { .. }))
    );
    assert!(
        net.session_events
            .iter()
            .any(|(_, e)| matches!(e, SessionEvent::Resumed { .. }))
    );
    assert!(net.t(2).state().group(&g("g-failover")).is_some());
    // Still logged in: a command needing the session works.
    net.command(
        k,
        4,
        Request::JoinGroup {
            group: g("g-failover"),
        },
    );
    net.run(1000);
    assert!(matches!(
        net.result(k, 4)[..],
        [Err(ClientError::Tracker(
            TrackerError::AlreadyMember { .. }
        ))]
    ));
}

#[test]
fn session_applied_but_unanswered_write_is_not_applied_twice() {
    let mut net = setup();
    let k = login_session(&mut net, 1);
    net.command(k, 3, Request::CreateGroup { group: g("once") });
    // Let it replicate, then lose tracker 1 before the client reads the answer.
    for _ in 0..200 {
        net.settle();
        if net.t(2).state().group(&g("once")).is_some() {
            break;
        }
    }
    net.crash(1);
    net.run(6000);
    assert_eq!(net.result(k, 3).len(), 1);
    assert!(
        matches!(net.result(k, 3)[0], Ok(Reply::Done)),
        "{:?}",
        net.result(k, 3)
    );
}

#[test]
fn session_with_no_tracker_fails_commands_clearly_and_recovers() {
    let mut net = setup();
    let k = login_session(&mut net, 2);
    net.crash(1);
    net.crash(2);
    net.command(k, 5, Request::ListGroups);
    net.run(10_000);
    let r = net.result(k, 5);
    assert_eq!(r.len(), 1);
    let msg = r[0].clone().unwrap_err().to_string();
    assert!(msg.starts_with("no tracker reachable"), "{msg}");
    assert!(
        net.session_events
            .iter()
            .any(|(_, e)| *e == SessionEvent::Unreachable)
    );
    net.restart(1);
    net.restart(2);
    net.run(8000);
    net.command(k, 6, Request::ListGroups);
    net.run(3000);
    assert!(
        matches!(net.result(k, 6)[..], [Ok(Reply::Groups(_))]),
        "{:?}",
        net.result(k, 6)
    );
}

#[test]
fn session_rides_out_an_election_with_not_ready_retries() {
    let mut net = setup();
    let k = login_session(&mut net, 2);
    net.crash(1);
    // Tracker 2 answers NotReady until it takes over; the client waits it out.
    net.command(
        k,
        7,
        Request::CreateGroup {
            group: g("during-election"),
        },
    );
    net.run(6000);
    assert_eq!(net.result(k, 7), vec![Ok(Reply::Done)]);
}
