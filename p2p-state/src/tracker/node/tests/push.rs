//! New sources pushed to downloaders (`push.rs`): who is told (members who
//! asked for the file's peers, on either tracker), who never is, one push
//! per interval per file, the peers-per-push and subscription bounds.

use super::*;
use crate::tracker::node::push::PushTable;
use crate::tracker::node::{
    PEERS_PER_PUSH, PUSH_INTERVAL, PUSH_SUBSCRIPTION_TTL, PUSH_SUBSCRIPTIONS_PER_CONN_MAX,
};
use crate::tracker::state::testkit::meta;
use p2p_proto::{FileName, PieceSet};

fn f(s: &str) -> FileName {
    FileName::new(s).unwrap()
}

/// The pushes `c` received so far: (file, users pushed) in order.
fn pushes(net: &Net, c: &Client) -> Vec<(FileName, Vec<UserName>)> {
    net.inbox
        .get(&c.conn)
        .map(|v| {
            v.iter()
                .filter_map(|m| match m {
                    FromTracker::Peers { file, peers, .. } => {
                        Some((file.clone(), peers.iter().map(|p| p.user.clone()).collect()))
                    }
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A signed-up user on tracker `t` with a seeder address.
fn member(net: &mut Net, id: u16, t: u16, name: &str) -> Client {
    let mut c = Client::new(net, id, t);
    c.sign_up(net, name, "pw");
    let addr = SocketAddr::from(([127, 0, 0, 1], 7000 + id));
    assert!(c.call(net, Request::RegisterSeeder { addr }).is_ok());
    c
}

/// `owner` made group g with `others` in it, and shares file "f" of 4 pieces.
fn group_sharing(net: &mut Net, owner: &mut Client, others: &mut [&mut Client]) {
    assert!(
        owner
            .call(net, Request::CreateGroup { group: g("g") })
            .is_ok()
    );
    for o in others.iter_mut() {
        assert!(o.call(net, Request::JoinGroup { group: g("g") }).is_ok());
        let user = net
            .t(1)
            .state()
            .session(&o.token.unwrap())
            .unwrap()
            .user
            .clone();
        let accept = Request::AcceptRequest {
            group: g("g"),
            user,
        };
        assert!(owner.call(net, accept).is_ok());
    }
    let share = Request::UploadFile {
        group: g("g"),
        meta: meta("f", 4, 1),
    };
    assert!(owner.call(net, share).is_ok());
    net.run(500);
}

fn have(net: &mut Net, c: &mut Client, pieces: &[u32]) {
    let mut set = PieceSet::empty(4);
    for &i in pieces {
        set.insert(i);
    }
    let req = Request::HavePieces {
        group: g("g"),
        file: f("f"),
        pieces: set,
    };
    assert!(c.call(net, req).is_ok());
}

fn get_peers(net: &mut Net, c: &mut Client) -> Outcome {
    c.call(
        net,
        Request::GetPeers {
            group: g("g"),
            file: f("f"),
        },
    )
}

#[test]
fn a_downloader_hears_of_a_new_holder_on_either_tracker_and_outsiders_never() {
    let mut net = setup();
    let mut alice = member(&mut net, 1, 1, "alice");
    let mut bob = member(&mut net, 2, 2, "bob");
    let mut carol = member(&mut net, 3, 1, "carol");
    let mut dave = member(&mut net, 4, 2, "dave");
    group_sharing(&mut net, &mut alice, &mut [&mut bob, &mut carol]);
    // bob (on the backup) and carol (on the primary) start downloading;
    // dave is no member: his ask is refused and subscribes nothing.
    assert!(matches!(get_peers(&mut net, &mut bob), Ok(Reply::Peers(p)) if p.len() == 1));
    assert!(matches!(get_peers(&mut net, &mut carol), Ok(Reply::Peers(p)) if p.len() == 1));
    assert!(matches!(
        get_peers(&mut net, &mut dave),
        Err(TrackerError::NotMember { .. })
    ));
    // carol's first piece, announced on the primary, reaches bob on the
    // backup (by replication, then a push with a ticket for bob).
    have(&mut net, &mut carol, &[0]);
    net.run(200);
    assert_eq!(pushes(&net, &bob), vec![(f("f"), vec![u("carol")])]);
    let Some(FromTracker::Peers { peers, .. }) = net.inbox[&bob.conn]
        .iter()
        .find(|m| matches!(m, FromTracker::Peers { .. }))
    else {
        unreachable!()
    };
    assert_eq!(peers[0].ticket.downloader, u("bob"));
    assert_eq!(peers[0].ticket.seeder, u("carol"));
    assert_eq!(peers[0].pieces.count(), 1);
    // Nobody is told of themselves, nor twice of the same source, and the
    // owner (who never asked) and the outsider hear nothing.
    have(&mut net, &mut carol, &[0, 1]);
    net.run(500);
    assert_eq!(pushes(&net, &bob).len(), 1);
    assert!(pushes(&net, &carol).is_empty());
    assert!(pushes(&net, &alice).is_empty());
    assert!(pushes(&net, &dave).is_empty());
    // bob announces on the backup: carol hears of him.
    have(&mut net, &mut bob, &[2]);
    net.run(500);
    assert_eq!(pushes(&net, &carol), vec![(f("f"), vec![u("bob")])]);
    // A member who left the group is told nothing more.
    assert!(
        bob.call(&mut net, Request::LeaveGroup { group: g("g") })
            .is_ok()
    );
    let mut erin = member(&mut net, 5, 1, "erin");
    assert!(
        erin.call(&mut net, Request::JoinGroup { group: g("g") })
            .is_ok()
    );
    let accept = Request::AcceptRequest {
        group: g("g"),
        user: u("erin"),
    };
    assert!(alice.call(&mut net, accept).is_ok());
    have(&mut net, &mut erin, &[3]);
    net.run(500);
    assert_eq!(pushes(&net, &bob).len(), 1, "bob left the group");
    assert_eq!(pushes(&net, &carol).last().unwrap().1, vec![u("erin")]);
}

#[test]
fn pushes_of_one_file_to_one_connection_are_one_per_interval_and_capped() {
    let mut net = setup();
    let mut alice = member(&mut net, 1, 1, "alice");
    let mut bob = member(&mut net, 2, 1, "bob");
    let n = PEERS_PER_PUSH + 2;
    let mut others: Vec<Client> = (0..n)
        .map(|i| member(&mut net, 10 + i as u16, 1, &format!("peer{i}")))
        .collect();
    {
        let mut refs: Vec<&mut Client> = others.iter_mut().collect();
        refs.push(&mut bob);
        group_sharing(&mut net, &mut alice, &mut refs);
    }
    assert!(get_peers(&mut net, &mut bob).is_ok());
    // The first holder is pushed at once.
    have(&mut net, &mut others[0], &[0]);
    assert_eq!(pushes(&net, &bob).len(), 1);
    // The rest announce within the interval: held back, then sent in one
    // push of at most PEERS_PER_PUSH; what is left goes one interval later.
    for o in others.iter_mut().skip(1) {
        have(&mut net, o, &[1]);
    }
    let sent = pushes(&net, &bob);
    net.run(PUSH_INTERVAL.as_millis() - 1);
    assert!(pushes(&net, &bob).len() <= sent.len() + 1);
    net.run(3 * PUSH_INTERVAL.as_millis());
    let all = pushes(&net, &bob);
    assert!(all.iter().all(|(_, p)| p.len() <= PEERS_PER_PUSH));
    let told: BTreeSet<UserName> = all.iter().flat_map(|(_, p)| p.clone()).collect();
    assert_eq!(told.len(), n, "every holder is pushed once: {all:?}");
    assert_eq!(all.iter().map(|(_, p)| p.len()).sum::<usize>(), n);
    assert!(all.iter().any(|(_, p)| p.len() == PEERS_PER_PUSH));
}

/// Runs 1 ms at a time until `c` has received `n` pushes; the time then.
fn until_pushes(net: &mut Net, c: &Client, n: usize) -> Instant {
    for _ in 0..2_000 {
        if pushes(net, c).len() >= n {
            return net.now;
        }
        net.run(1);
    }
    panic!("no push {n} within 2 s");
}

fn have_unanswered(net: &mut Net, c: &mut Client, piece: u32) {
    let mut set = PieceSet::empty(4);
    set.insert(piece);
    let req = Request::HavePieces {
        group: g("g"),
        file: f("f"),
        pieces: set,
    };
    let id = c.next;
    c.next += 1;
    c.send_id(net, id, req);
}

#[test]
fn pushes_keep_to_one_per_interval() {
    let mut net = setup();
    let mut alice = member(&mut net, 1, 1, "alice");
    let mut bob = member(&mut net, 2, 1, "bob");
    let mut c1 = member(&mut net, 3, 1, "c1");
    let mut c2 = member(&mut net, 4, 1, "c2");
    group_sharing(&mut net, &mut alice, &mut [&mut bob, &mut c1, &mut c2]);
    assert!(get_peers(&mut net, &mut bob).is_ok());
    have_unanswered(&mut net, &mut c1, 0);
    let t1 = until_pushes(&mut net, &bob, 1);
    // c2 is news too, but within the interval: held back to its end.
    have_unanswered(&mut net, &mut c2, 0);
    let t2 = until_pushes(&mut net, &bob, 2);
    // (t1 and t2 are seen up to 1 ms after the push)
    let ms = Duration::from_millis(1);
    assert!(
        t2 + ms >= t1 + PUSH_INTERVAL,
        "one push per interval: {t1:?} {t2:?}"
    );
    assert!(
        t2 <= t1 + PUSH_INTERVAL + Duration::from_millis(2),
        "sent at its end"
    );
    assert_eq!(pushes(&net, &bob)[1].1, vec![u("c2")]);
}

#[test]
fn a_subscription_ends_after_its_ttl_and_the_table_keeps_its_bound() {
    let now = Instant::from_millis(1_000);
    let mut t = PushTable::default();
    for i in 0..=PUSH_SUBSCRIPTIONS_PER_CONN_MAX {
        let at = now + Duration::from_millis(i as u64);
        t.subscribe(at, 7, (g("g"), f(&format!("f{i}"))), std::iter::empty());
    }
    assert_eq!(t.count(7), PUSH_SUBSCRIPTIONS_PER_CONN_MAX);
    t.check();
    t.forget(7);
    assert_eq!(t.count(7), 0);
    // The TTL: a subscribed downloader stops hearing once it stopped asking.
    let mut net = setup();
    let mut alice = member(&mut net, 1, 1, "alice");
    let mut bob = member(&mut net, 2, 1, "bob");
    let mut c1 = member(&mut net, 3, 1, "c1");
    group_sharing(&mut net, &mut alice, &mut [&mut bob, &mut c1]);
    assert!(get_peers(&mut net, &mut bob).is_ok());
    // Keep bob's connection alive (a client pings) past the TTL.
    let mut left = PUSH_SUBSCRIPTION_TTL.as_millis();
    while left > 0 {
        let step = left.min(10_000);
        net.run(step);
        left -= step;
        assert!(bob.call(&mut net, Request::Ping).is_ok());
        assert!(c1.call(&mut net, Request::Ping).is_ok());
        assert!(alice.call(&mut net, Request::Ping).is_ok());
    }
    have(&mut net, &mut c1, &[0]);
    net.run(500);
    assert!(pushes(&net, &bob).is_empty(), "the subscription ran out");
}
