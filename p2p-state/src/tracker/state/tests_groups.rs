//! Groups: create, join, accept, reject, leave, list, and their limits.

use p2p_proto::{GroupSummary, Op, OpKind, Reply, Request, TrackerError, Wire};

use super::testkit::*;
use crate::tracker::limits::{
    GROUPS_MAX, GROUPS_OWNED_PER_USER_MAX, MEMBERS_PER_GROUP_MAX, PENDING_PER_GROUP_MAX,
    PENDING_PER_USER_MAX, what,
};
use crate::tracker::state::TrackerState;

fn join(g: &str) -> Request {
    Request::JoinGroup { group: group(g) }
}
fn leave(g: &str) -> Request {
    Request::LeaveGroup { group: group(g) }
}
fn accept(g: &str, u: &Actor) -> Request {
    Request::AcceptRequest {
        group: group(g),
        user: u.name.clone(),
    }
}
fn reject(g: &str, u: &Actor) -> Request {
    Request::RejectRequest {
        group: group(g),
        user: u.name.clone(),
    }
}
fn list_members(g: &str) -> Request {
    Request::ListMembers { group: group(g) }
}
fn no_group(g: &str) -> TrackerError {
    TrackerError::NoSuchGroup { group: group(g) }
}
fn limit(what: &str) -> TrackerError {
    TrackerError::LimitReached { what: what.into() }
}

#[test]
fn create_group_makes_the_creator_owner_and_member() {
    let mut w = World::new();
    let mut a = w.login_new("alice", 1);
    w.group_with("g", &mut a, &mut []);
    let g = w.st.group(&group("g")).unwrap();
    assert_eq!(g.owner, a.name);
    assert!(g.members.contains_key(&a.name) && g.members.len() == 1);
    let mut b = w.login_new("bob", 2);
    let dup = Request::CreateGroup { group: group("g") };
    w.refused(&mut b, dup, TrackerError::GroupExists { group: group("g") });
}

#[test]
fn join_group_files_a_pending_request() {
    let mut w = World::new();
    let mut a = w.login_new("alice", 1);
    let mut b = w.login_new("bob", 2);
    w.group_with("g", &mut a, &mut []);
    assert_eq!(w.run(&mut b, join("g")), Ok(Reply::Done));
    assert!(
        w.st.group(&group("g"))
            .unwrap()
            .pending
            .contains_key(&b.name)
    );
    let g = group("g");
    w.refused(
        &mut b,
        join("g"),
        TrackerError::AlreadyRequested { group: g.clone() },
    );
    w.refused(&mut a, join("g"), TrackerError::AlreadyMember { group: g });
    w.refused(&mut b, join("nope"), no_group("nope"));
}

#[test]
fn list_requests_is_for_the_owner_in_request_order() {
    let mut w = World::new();
    let mut a = w.login_new("alice", 1);
    let mut z = w.login_new("zed", 2);
    let mut b = w.login_new("bob", 3);
    w.group_with("g", &mut a, &mut []);
    w.run(&mut z, join("g")).unwrap();
    w.run(&mut b, join("g")).unwrap();
    let list = Request::ListRequests { group: group("g") };
    let want = Reply::Requests(vec![z.name.clone(), b.name.clone()]);
    assert_eq!(w.run(&mut a, list.clone()), Ok(want));
    w.refused(&mut b, list, TrackerError::NotOwner { group: group("g") });
    let missing = Request::ListRequests {
        group: group("nope"),
    };
    w.refused(&mut a, missing, no_group("nope"));
}

#[test]
fn accept_request_rules() {
    let mut w = World::new();
    let mut a = w.login_new("alice", 1);
    let mut b = w.login_new("bob", 2);
    let mut c = w.login_new("carol", 3);
    w.group_with("g", &mut a, &mut []);
    let g = group("g");
    let no_req = TrackerError::NoSuchRequest {
        group: g.clone(),
        user: b.name.clone(),
    };
    w.refused(&mut a, accept("g", &b), no_req);
    w.run(&mut b, join("g")).unwrap();
    w.refused(
        &mut c,
        accept("g", &b),
        TrackerError::NotOwner { group: g.clone() },
    );
    let own = accept("g", &b);
    w.refused(&mut b, own, TrackerError::NotOwner { group: g.clone() });
    w.refused(&mut a, accept("nope", &b), no_group("nope"));
    assert_eq!(w.run(&mut a, accept("g", &b)), Ok(Reply::Done));
    let grp = w.st.group(&g).unwrap();
    assert!(grp.members.contains_key(&b.name) && !grp.pending.contains_key(&b.name));
}

#[test]
fn reject_request_rules() {
    let mut w = World::new();
    let mut a = w.login_new("alice", 1);
    let mut b = w.login_new("bob", 2);
    w.group_with("g", &mut a, &mut []);
    let g = group("g");
    let no_req = TrackerError::NoSuchRequest {
        group: g.clone(),
        user: b.name.clone(),
    };
    w.refused(&mut a, reject("g", &b), no_req);
    w.run(&mut b, join("g")).unwrap();
    let own = reject("g", &b);
    w.refused(&mut b, own, TrackerError::NotOwner { group: g.clone() });
    w.refused(&mut a, reject("nope", &b), no_group("nope"));
    assert_eq!(w.run(&mut a, reject("g", &b)), Ok(Reply::Done));
    let grp = w.st.group(&g).unwrap();
    assert!(!grp.members.contains_key(&b.name) && grp.pending.is_empty());
    assert_eq!(w.run(&mut b, join("g")), Ok(Reply::Done), "may ask again");
}

/// `list_members` answers members only, longest-standing first; a
/// pending requester or a stranger is told to ask the owner.
#[test]
fn list_members_is_for_members_in_join_order() {
    let mut w = World::new();
    let mut o = w.login_new("owner", 1);
    let mut zed = w.login_new("zed", 2);
    let mut amy = w.login_new("amy", 3);
    w.group_with("g", &mut o, &mut [&mut zed, &mut amy]);
    let want = Reply::Members(vec![o.name.clone(), zed.name.clone(), amy.name.clone()]);
    assert_eq!(w.run(&mut amy, list_members("g")), Ok(want.clone()));
    assert_eq!(w.run(&mut o, list_members("g")), Ok(want));
    let mut bob = w.login_new("bob", 4);
    let not_member = TrackerError::NotMember { group: group("g") };
    assert!(not_member.to_string().contains("ask the owner"));
    w.refused(&mut bob, list_members("g"), not_member.clone());
    w.run(&mut bob, join("g")).unwrap();
    w.refused(&mut bob, list_members("g"), not_member);
    w.refused(&mut bob, list_members("nope"), no_group("nope"));
    // Leaving takes a member off the list at once.
    w.run(&mut zed, leave("g")).unwrap();
    let want = Reply::Members(vec![o.name.clone(), amy.name.clone()]);
    assert_eq!(w.run(&mut amy, list_members("g")), Ok(want));
}

#[test]
fn a_member_leaves_and_stops_seeding_there() {
    let mut w = World::new();
    let mut a = w.login_new("alice", 1);
    let mut b = w.login_new("bob", 2);
    w.group_with("g", &mut a, &mut [&mut b]);
    let upload = Request::UploadFile {
        group: group("g"),
        meta: meta("f", 2, 1),
    };
    w.run(&mut b, upload).unwrap();
    let left = Reply::Left {
        new_owner: None,
        deleted: false,
    };
    assert_eq!(w.run(&mut b, leave("g")), Ok(left));
    let g = w.st.group(&group("g")).unwrap();
    assert!(!g.members.contains_key(&b.name));
    let f = &g.files[&file("f")];
    assert!(f.sources.is_empty(), "leaving withdraws seeding");
    w.refused(
        &mut b,
        leave("g"),
        TrackerError::NotMember { group: group("g") },
    );
    w.refused(&mut b, leave("nope"), no_group("nope"));
}

#[test]
fn the_owner_leaving_hands_over_to_the_longest_standing_member() {
    let mut w = World::new();
    let mut o = w.login_new("owner", 1);
    let mut zed = w.login_new("zed", 2);
    let mut amy = w.login_new("amy", 3);
    // zed joins before amy: join order, not name order, decides.
    w.group_with("g", &mut o, &mut [&mut zed, &mut amy]);
    let want = Reply::Left {
        new_owner: Some(zed.name.clone()),
        deleted: false,
    };
    assert_eq!(w.run(&mut o, leave("g")), Ok(want));
    assert_eq!(w.st.group(&group("g")).unwrap().owner, zed.name);
    let want = Reply::Left {
        new_owner: Some(amy.name.clone()),
        deleted: false,
    };
    assert_eq!(w.run(&mut zed, leave("g")), Ok(want));
    // A member who re-joins goes to the back of the line.
    w.run(&mut o, join("g")).unwrap();
    w.run(&mut amy, accept("g", &o)).unwrap();
    let mut bob = w.login_new("bob", 4);
    w.run(&mut bob, join("g")).unwrap();
    w.run(&mut amy, accept("g", &bob)).unwrap();
    let want = Reply::Left {
        new_owner: Some(o.name.clone()),
        deleted: false,
    };
    assert_eq!(w.run(&mut amy, leave("g")), Ok(want));
}

#[test]
fn the_owner_leaving_alone_deletes_the_group_and_its_files() {
    let mut w = World::new();
    let mut a = w.login_new("alice", 1);
    let mut b = w.login_new("bob", 2);
    w.group_with("g", &mut a, &mut []);
    let upload = Request::UploadFile {
        group: group("g"),
        meta: meta("f", 3, 1),
    };
    w.run(&mut a, upload).unwrap();
    w.run(&mut b, join("g")).unwrap();
    assert_eq!(w.st.piece_hashes, 3);
    let want = Reply::Left {
        new_owner: None,
        deleted: true,
    };
    assert_eq!(w.run(&mut a, leave("g")), Ok(want));
    assert!(w.st.group(&group("g")).is_none());
    assert_eq!(w.st.piece_hashes, 0);
    w.refused(&mut b, leave("g"), no_group("g"));
    w.group_with("g", &mut b, &mut []);
    assert_eq!(w.st.group(&group("g")).unwrap().owner, b.name);
}

#[test]
fn a_pending_requester_leaving_cancels_the_request() {
    let mut w = World::new();
    let mut a = w.login_new("alice", 1);
    let mut b = w.login_new("bob", 2);
    w.group_with("g", &mut a, &mut []);
    w.run(&mut b, join("g")).unwrap();
    assert_eq!(w.run(&mut b, leave("g")), Ok(Reply::Done));
    assert!(w.st.group(&group("g")).unwrap().pending.is_empty());
    assert_eq!(w.st.group(&group("g")).unwrap().owner, a.name);
}

#[test]
fn list_groups_shows_every_group_with_the_askers_standing() {
    let mut w = World::new();
    let mut a = w.login_new("alice", 1);
    let mut b = w.login_new("bob", 2);
    let mut c = w.login_new("carol", 3);
    w.group_with("g1", &mut a, &mut [&mut c]);
    w.group_with("g2", &mut a, &mut []);
    w.group_with("g3", &mut c, &mut []);
    w.run(&mut b, join("g2")).unwrap();
    let summary = |name: &str, owner: &Actor, members, member, pending| GroupSummary {
        name: group(name),
        owner: owner.name.clone(),
        members,
        member,
        pending,
    };
    let want = vec![
        summary("g1", &a, 2, false, false),
        summary("g2", &a, 1, false, true),
        summary("g3", &c, 1, false, false),
    ];
    assert_eq!(w.run(&mut b, Request::ListGroups), Ok(Reply::Groups(want)));
    let Ok(Reply::Groups(for_c)) = w.run(&mut c, Request::ListGroups) else {
        panic!()
    };
    assert!(for_c[0].member && !for_c[1].member && for_c[2].member);
}

#[test]
fn groups_limit() {
    let mut w = World::new();
    let mut a = w.login_new("alice", 1);
    let owners = w.new_users("u", GROUPS_MAX.div_ceil(GROUPS_OWNED_PER_USER_MAX));
    for i in 0..GROUPS_MAX {
        w.direct(OpKind::CreateGroup {
            owner: owners[i / GROUPS_OWNED_PER_USER_MAX].clone(),
            group: group(&format!("g{i}")),
        });
    }
    w.st.check_invariants();
    let create = Request::CreateGroup {
        group: group("more"),
    };
    w.refused(&mut a, create, limit(what::GROUPS));
}

/// One account cannot exhaust `GROUPS_MAX`: it owns at most
/// `GROUPS_OWNED_PER_USER_MAX`, and others can still create groups.
#[test]
fn groups_owned_per_user_quota() {
    let mut w = World::new();
    let mut a = w.login_new("alice", 1);
    let mut b = w.login_new("bob", 2);
    for i in 0..GROUPS_OWNED_PER_USER_MAX - 1 {
        let name = group(&format!("a{i}"));
        w.direct(OpKind::CreateGroup {
            owner: a.name.clone(),
            group: name,
        });
    }
    let create = |g: &str| Request::CreateGroup { group: group(g) };
    assert_eq!(
        w.run(&mut a, create("last")),
        Ok(Reply::Done),
        "at the bound"
    );
    w.refused(&mut a, create("more"), limit(what::GROUPS_OWNED));
    assert_eq!(w.run(&mut b, create("bobs")), Ok(Reply::Done));
    // Deleting one (the owner alone leaves) makes room again.
    w.run(&mut a, leave("last")).unwrap();
    assert_eq!(w.run(&mut a, create("again")), Ok(Reply::Done));
    // A group handed over is never refused, even past the quota.
    w.run(&mut a, join("bobs")).unwrap();
    w.run(&mut b, accept("bobs", &a)).unwrap();
    w.run(&mut b, leave("bobs")).unwrap();
    let owned = w.st.groups().filter(|(_, g)| g.owner == a.name).count();
    assert_eq!(owned, GROUPS_OWNED_PER_USER_MAX + 1);
    w.refused(&mut a, create("more"), limit(what::GROUPS_OWNED));
}

/// One account's join requests are bounded across all groups.
#[test]
fn pending_per_user_quota() {
    let mut w = World::new();
    let mut a = w.login_new("alice", 1);
    let mut b = w.login_new("bob", 2);
    let owners = w.new_users("o", 2);
    for i in 0..=PENDING_PER_USER_MAX {
        w.direct(OpKind::CreateGroup {
            owner: owners[i % 2].clone(),
            group: group(&format!("g{i}")),
        });
    }
    for i in 0..PENDING_PER_USER_MAX - 1 {
        w.direct(OpKind::RequestJoin {
            user: a.name.clone(),
            group: group(&format!("g{i}")),
        });
    }
    let last = format!("g{}", PENDING_PER_USER_MAX - 1);
    assert_eq!(w.run(&mut a, join(&last)), Ok(Reply::Done), "at the bound");
    let past = format!("g{PENDING_PER_USER_MAX}");
    w.refused(&mut a, join(&past), limit(what::PENDING_USER));
    assert_eq!(w.run(&mut b, join(&past)), Ok(Reply::Done));
    // Cancelling a request (leave) makes room again.
    w.run(&mut a, leave("g0")).unwrap();
    assert_eq!(w.run(&mut a, join(&past)), Ok(Reply::Done));
}

/// A group "g" owned by alice with `members` extra members (applied
/// directly for speed) and users u0.. registered.
fn big_group(w: &mut World, users: usize, members: usize) -> Actor {
    let mut a = w.login_new("alice", 1);
    w.group_with("g", &mut a, &mut []);
    let phc = some_phc();
    let apply = |st: &mut TrackerState, kind| {
        st.apply(&Op {
            at_ms: 1,
            origin: None,
            kind,
        })
    };
    for i in 0..users {
        let u = user(&format!("u{i}"));
        assert!(
            apply(
                &mut w.st,
                OpKind::CreateUser {
                    user: u.clone(),
                    password_hash: p2p_proto::PasswordHash(phc.clone())
                }
            )
            .is_ok()
        );
        if i < members {
            apply(
                &mut w.st,
                OpKind::RequestJoin {
                    user: u.clone(),
                    group: group("g"),
                },
            )
            .unwrap();
            apply(
                &mut w.st,
                OpKind::AcceptJoin {
                    group: group("g"),
                    user: u,
                },
            )
            .unwrap();
        }
    }
    w.st.check_invariants();
    a
}

#[test]
fn members_limit() {
    let mut w = World::new();
    let mut a = big_group(&mut w, MEMBERS_PER_GROUP_MAX, MEMBERS_PER_GROUP_MAX - 1);
    assert_eq!(
        w.st.group(&group("g")).unwrap().members.len(),
        MEMBERS_PER_GROUP_MAX
    );
    // A full group's members all fit one `list_members` reply.
    let Ok(Reply::Members(all)) = w.run(&mut a, list_members("g")) else {
        panic!("list_members refused");
    };
    assert_eq!(all.len(), MEMBERS_PER_GROUP_MAX);
    let frame = p2p_proto::FromTracker::Response {
        id: p2p_proto::RequestId(1),
        outcome: Ok(Reply::Members(all)),
    };
    let bytes = frame.to_bytes();
    assert!(bytes.len() <= p2p_proto::limits::FRAME_LEN_MAX as usize);
    assert_eq!(p2p_proto::FromTracker::from_bytes(bytes).unwrap(), frame);
    let mut b = w.login_new("bob", 2);
    w.run(&mut b, join("g")).unwrap();
    w.refused(&mut a, accept("g", &b), limit(what::MEMBERS));
}

#[test]
fn pending_requests_limit() {
    let mut w = World::new();
    big_group(&mut w, PENDING_PER_GROUP_MAX, 0);
    for i in 0..PENDING_PER_GROUP_MAX {
        let kind = OpKind::RequestJoin {
            user: user(&format!("u{i}")),
            group: group("g"),
        };
        w.st.apply(&Op {
            at_ms: 1,
            origin: None,
            kind,
        })
        .unwrap();
    }
    w.st.check_invariants();
    let mut b = w.login_new("bob", 2);
    w.refused(&mut b, join("g"), limit(what::PENDING));
}
