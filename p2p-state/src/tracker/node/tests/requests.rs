//! Requests: a user's flow on the primary and a backup, failover without a
//! new login, a retried write applied once, a restarted tracker catching
//! up, the seeder address a tracker records, reads on an unsynced backup,
//! and a login waiting for its password work while others are served.

use super::*;

#[test]
fn user_flow_on_the_primary_and_the_backup_converges() {
    let mut net = setup();
    let mut a = Client::new(&mut net, 1, 1);
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
    assert!(matches!(
        a.call(
            &mut net,
            Request::Login {
                user: u("alice"),
                password: pw("pw")
            }
        ),
        Ok(Reply::LoggedIn { .. })
    ));
    assert_eq!(
        a.call(&mut net, Request::CreateGroup { group: g("g1") }),
        Ok(Reply::Done)
    );
    // A second client on the backup: its writes are forwarded.
    let mut b = Client::new(&mut net, 2, 2);
    assert_eq!(
        b.call(
            &mut net,
            Request::CreateUser {
                user: u("bob"),
                password: pw("pw")
            }
        ),
        Ok(Reply::Done)
    );
    assert!(matches!(
        b.call(
            &mut net,
            Request::Login {
                user: u("bob"),
                password: pw("pw")
            }
        ),
        Ok(Reply::LoggedIn { .. })
    ));
    assert_eq!(
        b.call(&mut net, Request::JoinGroup { group: g("g1") }),
        Ok(Reply::Done)
    );
    // The backup reads its own write at once.
    let Ok(Reply::Groups(gs)) = b.call(&mut net, Request::ListGroups) else {
        panic!()
    };
    assert!(gs[0].pending);
    assert_eq!(
        a.call(
            &mut net,
            Request::AcceptRequest {
                group: g("g1"),
                user: u("bob")
            }
        ),
        Ok(Reply::Done)
    );
    net.run(500);
    let d = net.digests();
    assert_eq!(d[0], d[1]);
    let Ok(Reply::Status(s)) = b.call(&mut net, Request::Status) else {
        panic!()
    };
    assert!(s.in_sync && s.primary == Some(TrackerId(1)));
    // A backup answers a read such as list_members from its own state.
    assert_eq!(
        b.call(&mut net, Request::ListMembers { group: g("g1") }),
        Ok(Reply::Members(vec![u("alice"), u("bob")]))
    );
}

#[test]
fn client_fails_over_without_logging_in_again() {
    let mut net = setup();
    let mut a = Client::new(&mut net, 1, 1);
    a.sign_up(&mut net, "alice", "pw");
    net.crash(1);
    a.move_to(&mut net, 2);
    // Until tracker 2 has taken over, writes get NotReady; the client retries.
    net.run(3000);
    assert!(net.t(2).is_primary());
    assert_eq!(
        a.call(&mut net, Request::Resume),
        Ok(Reply::Resumed { user: u("alice") })
    );
    assert_eq!(
        a.call(&mut net, Request::CreateGroup { group: g("after") }),
        Ok(Reply::Done)
    );
}

#[test]
fn a_retried_write_after_failover_is_applied_once() {
    let mut net = setup();
    let mut a = Client::new(&mut net, 1, 1);
    a.sign_up(&mut net, "alice", "pw");
    // Sent, applied and replicated, but the answer is lost with tracker 1.
    a.send_id(&mut net, 77, Request::CreateGroup { group: g("once") });
    net.run(200);
    net.crash(1);
    a.move_to(&mut net, 2);
    net.run(3000);
    a.send_id(&mut net, 77, Request::CreateGroup { group: g("once") });
    net.run(200);
    assert_eq!(
        a.response(&net, 77),
        Some(Ok(Reply::Done)),
        "the stored outcome, not GroupExists"
    );
}

#[test]
fn restarted_tracker_recovers_and_catches_up() {
    let mut net = setup();
    let mut a = Client::new(&mut net, 1, 1);
    a.call(
        &mut net,
        Request::CreateUser {
            user: u("alice"),
            password: pw("pw"),
        },
    )
    .unwrap();
    net.crash(2);
    a.call(
        &mut net,
        Request::Login {
            user: u("alice"),
            password: pw("pw"),
        },
    )
    .unwrap();
    a.call(
        &mut net,
        Request::CreateGroup {
            group: g("while-down"),
        },
    )
    .unwrap();
    net.restart(2);
    net.run(2000);
    let d = net.digests();
    assert_eq!(d[0], d[1]);
    assert!(net.t(2).state().group(&g("while-down")).is_some());
}

#[test]
fn a_seeder_address_is_the_observed_ip_with_the_stated_port() {
    let mut net = setup();
    // Through the backup (the write is forwarded) and on the primary.
    for (id, t, seen, stated) in [
        (1, 2, "10.1.2.3:50000", "127.0.0.1:7001"),
        (2, 1, "[::ffff:10.9.9.9]:50001", "0.0.0.0:7002"),
        (3, 1, "[2001:db8::5]:50002", "192.0.2.77:7003"),
    ] {
        let seen: SocketAddr = seen.parse().unwrap();
        let conn = net.connect_client_from(id, t, seen);
        let mut c = Client {
            id,
            conn,
            client: ClientId([id as u8; 16]),
            token: None,
            next: 1,
        };
        c.sign_up(&mut net, &format!("user{id}"), "pw");
        let stated: SocketAddr = stated.parse().unwrap();
        assert!(
            c.call(&mut net, Request::RegisterSeeder { addr: stated })
                .is_ok()
        );
        net.run(500);
        let want = SocketAddr::new(seen.ip().to_canonical(), stated.port());
        let token = c.token.unwrap();
        for t in 1..=2 {
            assert_eq!(
                net.t(t).state().session(&token).unwrap().addr,
                Some(want),
                "tracker {t}, client {id}"
            );
        }
    }
}

#[test]
fn reads_on_an_unsynced_backup_say_not_ready() {
    let mut net = Net::new(2);
    // Before any election nobody is in sync.
    let mut a = Client::new(&mut net, 1, 2);
    a.send_id(&mut net, 1, Request::ListGroups);
    net.settle();
    assert_eq!(a.response(&net, 1), Some(Err(TrackerError::NotReady)));
}

#[test]
fn a_login_waits_for_its_password_check_off_thread_while_others_are_served() {
    let mut net = setup();
    let mut a = Client::new(&mut net, 1, 1);
    let create = Request::CreateUser {
        user: u("alice"),
        password: pw("pw"),
    };
    assert!(a.call(&mut net, create).is_ok());
    net.held_passwords = Some(Vec::new());
    a.send_id(
        &mut net,
        10,
        Request::Login {
            user: u("alice"),
            password: pw("pw"),
        },
    );
    net.run(200);
    assert_eq!(a.response(&net, 10), None, "waits for its password check");
    let held = net.held_passwords.clone().unwrap();
    assert!(matches!(held[..], [(1, _, PasswordWork::Verify { .. })]));
    // Meanwhile the tracker answers everybody else.
    let mut b = Client::new(&mut net, 2, 1);
    assert!(b.call(&mut net, Request::Ping).is_ok());
    // The check comes back: the login goes through.
    let (t, job, work) = held[0].clone();
    net.held_passwords = None;
    net.pending.push_back((
        Owner::Tracker(t),
        Input::PasswordDone {
            job,
            done: work.run(),
        },
    ));
    net.run(200);
    assert!(matches!(
        a.response(&net, 10),
        Some(Ok(Reply::LoggedIn { .. }))
    ));
    // A wrong password comes back refused the same way.
    let wrong = Request::Login {
        user: u("alice"),
        password: pw("nope"),
    };
    let mut c = Client::new(&mut net, 3, 2);
    assert_eq!(
        c.call(&mut net, wrong),
        Err(TrackerError::WrongUserOrPassword)
    );
}
