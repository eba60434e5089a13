//! Logins on the tracker node (issue 16 §5): backoff per user name and per
//! source address after failures, and the password work queue fair across
//! sources.

use super::*;
use crate::tracker::login_guard::{
    LOGIN_FAILURES_FREE_PER_USER, PASSWORD_QUEUE_PER_SOURCE_MAX, PASSWORD_RUNNING_MAX,
};

fn from(net: &mut Net, id: u16, ip: [u8; 4]) -> Client {
    from_on(net, id, 1, ip)
}

/// A client of tracker `t` that it sees come from `ip`.
fn from_on(net: &mut Net, id: u16, t: u16, ip: [u8; 4]) -> Client {
    let conn = net.connect_client_from(id, t, SocketAddr::from((ip, 9000 + id)));
    Client {
        id,
        conn,
        client: ClientId([id as u8; 16]),
        token: None,
        next: 1,
    }
}

fn login(user: &str, password: &str) -> Request {
    Request::Login {
        user: u(user),
        password: pw(password),
    }
}

/// Runs the first held password job and lets the network answer.
fn release_one(net: &mut Net) {
    let (i, job, work) = net.held_passwords.as_mut().unwrap().remove(0);
    let done = work.run();
    net.pending
        .push_back((Owner::Tracker(i), Input::PasswordDone { job, done }));
    net.run(20);
}

#[test]
fn failed_logins_back_off_and_the_error_says_when_to_retry() {
    let mut net = setup();
    let mut a = from(&mut net, 1, [10, 0, 0, 1]);
    let mut b = from(&mut net, 2, [10, 0, 0, 2]);
    b.sign_up(&mut net, "bob", "right");
    from(&mut net, 4, [10, 0, 0, 2]).sign_up(&mut net, "carol", "pw-c");
    let wrong = Err(TrackerError::WrongUserOrPassword);
    for _ in 0..=LOGIN_FAILURES_FREE_PER_USER {
        assert_eq!(a.call(&mut net, login("bob", "guess")), wrong);
    }
    // Past the free failures: refused at once, the right password too.
    let backoff = Err(TrackerError::LoginBackoff {
        retry_after_secs: 1,
    });
    assert_eq!(a.call(&mut net, login("bob", "right")), backoff);
    let mut c = from(&mut net, 3, [10, 0, 0, 3]);
    assert_eq!(
        c.call(&mut net, login("bob", "right")),
        backoff,
        "any source"
    );
    assert!(
        matches!(
            c.call(&mut net, login("carol", "pw-c")),
            Ok(Reply::LoggedIn { .. })
        ),
        "another user is not held back"
    );
    net.run(1000);
    assert!(matches!(
        a.call(&mut net, login("bob", "right")),
        Ok(Reply::LoggedIn { .. })
    ));
}

#[test]
fn a_burst_from_one_source_is_capped_and_does_not_stall_another() {
    let mut net = setup();
    from(&mut net, 8, [10, 0, 0, 9]).sign_up(&mut net, "alice", "pa");
    from(&mut net, 9, [10, 0, 0, 9]).sign_up(&mut net, "bob", "pb");
    net.held_passwords = Some(Vec::new());
    let mut m = from(&mut net, 1, [10, 0, 0, 1]);
    let burst = (PASSWORD_RUNNING_MAX + PASSWORD_QUEUE_PER_SOURCE_MAX) as u64;
    for id in 10..10 + burst + 1 {
        m.send_id(&mut net, id, login("alice", "pa"));
    }
    net.run(20);
    let held = net.held_passwords.as_ref().unwrap().len();
    assert_eq!(held, PASSWORD_RUNNING_MAX, "only this many run at once");
    assert!(
        matches!(
            m.response(&net, 10 + burst),
            Some(Err(TrackerError::LimitReached { .. }))
        ),
        "one past the source's queue is refused"
    );
    assert_eq!(
        m.response(&net, 10 + burst - 1),
        None,
        "at the bound: queued"
    );
    let mut b = from(&mut net, 2, [10, 0, 0, 2]);
    b.send_id(&mut net, 1, login("bob", "pb"));
    net.run(20);
    // Round robin: bob's check goes to the driver after one more of the
    // burst's, so it is answered after those already running (first in,
    // first out in the driver), not after the whole burst.
    for _ in 0..2 * PASSWORD_RUNNING_MAX {
        if b.response(&net, 1).is_some() {
            break;
        }
        release_one(&mut net);
    }
    assert!(matches!(
        b.response(&net, 1),
        Some(Ok(Reply::LoggedIn { .. }))
    ));
    let unanswered = (10..10 + burst).filter(|&id| m.response(&net, id).is_none());
    assert!(unanswered.count() >= PASSWORD_QUEUE_PER_SOURCE_MAX - 2);
}

/// The primary sees a backup's forwarded logins as one lane; the backup
/// caps each client address at `PASSWORD_QUEUE_PER_SOURCE_MAX` before
/// forwarding, so a burst through it is refused there and another
/// address's login through the same backup still goes through.
#[test]
fn a_backup_caps_forwarded_logins_per_source_address() {
    let mut net = setup();
    from_on(&mut net, 8, 1, [10, 0, 0, 9]).sign_up(&mut net, "alice", "pa");
    from_on(&mut net, 9, 1, [10, 0, 0, 9]).sign_up(&mut net, "bob", "pb");
    net.run(500);
    net.held_passwords = Some(Vec::new());
    let mut m = from_on(&mut net, 1, 2, [10, 0, 0, 1]);
    let cap = PASSWORD_QUEUE_PER_SOURCE_MAX as u64;
    for id in 10..10 + cap + 1 {
        m.send_id(&mut net, id, login("alice", "wrong"));
    }
    net.run(20);
    assert_eq!(
        m.response(&net, 10 + cap - 1),
        None,
        "at the cap: forwarded"
    );
    match m.response(&net, 10 + cap) {
        Some(Err(TrackerError::LimitReached { what })) => {
            assert!(
                what.to_string().contains("PASSWORD_QUEUE_PER_SOURCE_MAX"),
                "{what}"
            )
        }
        other => panic!("one past the cap, through the backup: {other:?}"),
    }
    let mut b = from_on(&mut net, 2, 2, [10, 0, 0, 2]);
    b.send_id(&mut net, 1, login("bob", "pb"));
    net.run(20);
    for _ in 0..(cap as usize + PASSWORD_RUNNING_MAX) {
        if b.response(&net, 1).is_some() {
            break;
        }
        release_one(&mut net);
    }
    assert!(matches!(
        b.response(&net, 1),
        Some(Ok(Reply::LoggedIn { .. }))
    ));
    // Answered forwards free their places: the address may try again.
    while !net.held_passwords.as_ref().unwrap().is_empty() {
        release_one(&mut net);
    }
    net.held_passwords = None;
    assert_eq!(
        m.call(&mut net, login("carol", "guess")),
        Err(TrackerError::WrongUserOrPassword)
    );
}

/// Guesses spread over the trackers count together: the primary holds a
/// backup's forwarded logins to the backoff of their user name, so
/// alternating between the two gains an attacker nothing.
#[test]
fn failed_logins_through_either_tracker_count_towards_one_backoff() {
    let mut net = setup();
    from_on(&mut net, 8, 1, [10, 0, 0, 9]).sign_up(&mut net, "bob", "right");
    net.run(500);
    let mut on_primary = from_on(&mut net, 1, 1, [10, 0, 0, 1]);
    let mut on_backup = from_on(&mut net, 2, 2, [10, 0, 0, 2]);
    let wrong = Err(TrackerError::WrongUserOrPassword);
    for i in 0..=LOGIN_FAILURES_FREE_PER_USER {
        let c = if i % 2 == 0 {
            &mut on_primary
        } else {
            &mut on_backup
        };
        assert_eq!(c.call(&mut net, login("bob", "guess")), wrong, "guess {i}");
    }
    for (c, through) in [(&mut on_primary, "primary"), (&mut on_backup, "backup")] {
        assert!(
            matches!(
                c.call(&mut net, login("bob", "right")),
                Err(TrackerError::LoginBackoff { .. })
            ),
            "through the {through}, after guesses on both"
        );
    }
    net.run(1000);
    assert!(matches!(
        on_backup.call(&mut net, login("bob", "right")),
        Ok(Reply::LoggedIn { .. })
    ));
}
