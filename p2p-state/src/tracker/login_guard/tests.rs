//! The login backoff and the fair password queue at their bounds.

use super::*;

fn user(s: &str) -> UserName {
    UserName::new(s).unwrap()
}
fn ip(n: u8) -> Option<IpAddr> {
    Some(IpAddr::from([10, 0, 0, n]))
}
fn at(ms: u64) -> Instant {
    Instant::from_millis(ms)
}
fn retry(e: Result<(), TrackerError>) -> u64 {
    match e {
        Err(TrackerError::LoginBackoff { retry_after_secs }) => retry_after_secs,
        other => panic!("not backing off: {other:?}"),
    }
}

#[test]
fn backoff_starts_after_the_free_failures_and_doubles_to_its_cap() {
    let free = LOGIN_FAILURES_FREE_PER_USER;
    assert_eq!(
        backoff(free, free),
        Duration::from_millis(0),
        "at the bound"
    );
    assert_eq!(backoff(free + 1, free), LOGIN_BACKOFF_MIN, "just past it");
    assert_eq!(
        backoff(free + 2, free).as_millis(),
        2 * LOGIN_BACKOFF_MIN.as_millis()
    );
    assert_eq!(backoff(free + 40, free), LOGIN_BACKOFF_MAX);
    assert_eq!(backoff(u32::MAX, free), LOGIN_BACKOFF_MAX);
}

#[test]
fn a_user_name_backs_off_after_its_free_failures_whatever_the_source() {
    let mut g = LoginBackoff::new();
    let bob = user("bob");
    for k in 0..LOGIN_FAILURES_FREE_PER_USER {
        assert!(g.check(at(0), &bob, ip(k as u8)).is_ok());
        g.failed(at(0), &bob, ip(k as u8));
    }
    assert!(g.check(at(0), &bob, ip(99)).is_ok(), "at the bound");
    g.failed(at(0), &bob, ip(99));
    assert_eq!(retry(g.check(at(0), &bob, ip(100))), 1, "just past it");
    assert!(
        g.check(at(0), &user("carol"), ip(100)).is_ok(),
        "others are fine"
    );
    assert!(
        g.check(at(1000), &bob, ip(100)).is_ok(),
        "the backoff passed"
    );
    g.failed(at(1000), &bob, ip(100));
    assert_eq!(retry(g.check(at(1000), &bob, None)), 2, "doubled");
    g.succeeded(&bob);
    assert!(
        g.check(at(1000), &bob, None).is_ok(),
        "a login clears the name"
    );
}

#[test]
fn a_source_backs_off_after_its_free_failures_whatever_the_names() {
    let mut g = LoginBackoff::new();
    for k in 0..LOGIN_FAILURES_FREE_PER_SOURCE {
        g.failed(at(0), &user(&format!("u{k}")), ip(1));
    }
    assert!(g.check(at(0), &user("new"), ip(1)).is_ok(), "at the bound");
    g.failed(at(0), &user("last"), ip(1));
    assert_eq!(
        retry(g.check(at(0), &user("new"), ip(1))),
        1,
        "just past it"
    );
    assert!(
        g.check(at(0), &user("new"), ip(2)).is_ok(),
        "other sources are fine"
    );
    g.succeeded(&user("last"));
    assert!(
        g.check(at(0), &user("new"), ip(1)).is_err(),
        "not cleared by a login"
    );
}

#[test]
fn failures_are_forgotten_after_a_quiet_hour() {
    let mut g = LoginBackoff::new();
    let bob = user("bob");
    for _ in 0..=LOGIN_FAILURES_FREE_PER_USER + 5 {
        g.failed(at(0), &bob, None);
    }
    let later = at(0) + LOGIN_FAILURES_FORGET;
    g.failed(later, &bob, None);
    assert!(g.check(later, &bob, None).is_ok(), "counting starts afresh");
}

#[test]
fn tables_are_bounded_and_forget_the_oldest_first() {
    let mut g = LoginBackoff::new();
    for k in 0..LOGIN_USERS_TRACKED_MAX as u64 {
        let src = IpAddr::from((k as u32 + 1).to_be_bytes());
        g.failed(at(k), &user(&format!("u{k}")), Some(src));
    }
    assert_eq!(
        g.tracked(),
        (LOGIN_USERS_TRACKED_MAX, LOGIN_SOURCES_TRACKED_MAX)
    );
    g.failed(at(1 << 20), &user("one-more"), ip(0));
    assert_eq!(
        g.tracked(),
        (LOGIN_USERS_TRACKED_MAX, LOGIN_SOURCES_TRACKED_MAX)
    );
    assert!(
        !g.users.entries.contains_key(&user("u0")),
        "oldest forgotten"
    );
    assert!(g.users.entries.contains_key(&user("u1")));
    assert!(g.users.entries.contains_key(&user("one-more")));
}

#[test]
fn the_queue_serves_sources_round_robin() {
    let mut q = FairQueue::default();
    let (a, b) = (Lane::Addr(ip(1).unwrap()), Lane::Addr(ip(2).unwrap()));
    for k in 0..PASSWORD_QUEUE_PER_SOURCE_MAX {
        q.push(a, ("a", k)).unwrap();
    }
    assert_eq!(q.push(a, ("a", 99)), Err(QueueFull::Source), "just past it");
    q.push(b, ("b", 0)).unwrap();
    q.push(Lane::Tracker(TrackerId(2)), ("t", 0)).unwrap();
    q.check_invariants();
    let order: Vec<_> = std::iter::from_fn(|| q.pop()).take(4).collect();
    assert_eq!(order, [("a", 0), ("b", 0), ("t", 0), ("a", 1)]);
    q.check_invariants();
}

#[test]
fn a_backups_forwarded_lane_is_bounded_only_in_all() {
    // A backup forwards every one of its clients' logins in one lane: a
    // burst of ordinary logins through it must not be cut at the
    // per-address cap.
    let mut q = FairQueue::default();
    let t = Lane::Tracker(TrackerId(2));
    for k in 0..PASSWORD_QUEUE_MAX {
        q.push(t, k).unwrap();
    }
    assert_eq!(q.push(t, 999), Err(QueueFull::Total), "just past the total");
    q.check_invariants();
}

#[test]
fn the_queue_is_bounded_in_all() {
    let mut q = FairQueue::default();
    for k in 0..PASSWORD_QUEUE_MAX {
        let lane = Lane::Addr(IpAddr::from((k as u32 / 4).to_be_bytes()));
        q.push(lane, k).unwrap();
    }
    assert_eq!(q.len(), PASSWORD_QUEUE_MAX, "at the bound");
    let fresh = Lane::Addr(IpAddr::from([192, 0, 2, 1]));
    assert_eq!(q.push(fresh, 0), Err(QueueFull::Total), "just past it");
    q.check_invariants();
    assert!(
        QueueFull::Total
            .error()
            .to_string()
            .contains("PASSWORD_QUEUE_MAX")
    );
}
