//! Users, sessions, retries, stored outcomes and the generic request rules.

use p2p_proto::{
    ClientId, Op, OpKind, Origin, Reply, Request, RequestId, SeederKey, SessionToken, TrackerError,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::testkit::*;
use crate::tracker::limits::{OUTCOME_CLIENTS_MAX, OUTCOMES_PER_CLIENT_MAX, USERS_MAX};
use crate::tracker::state::{Prepared, TrackerState};

#[test]
fn create_user_stores_only_an_argon2id_hash() {
    let mut w = World::new();
    let a = w.login_new("alice", 1);
    let stored = &w.st.user(&a.name).unwrap().password_hash;
    assert!(stored.starts_with("$argon2id$"), "{stored}");
    assert!(!stored.contains("pw-alice"));
    assert!(!format!("{:?}", w.st).contains("pw-alice"));
    assert!(!w.st.encode_snapshot().windows(8).any(|b| b == b"pw-alice"));
}

#[test]
fn create_user_twice_is_refused() {
    let mut w = World::new();
    let mut a = w.login_new("alice", 1);
    let mut b = Actor::new("bob", 2);
    let again = Request::CreateUser {
        user: a.name.clone(),
        password: pw("other"),
    };
    w.refused(
        &mut b,
        again.clone(),
        TrackerError::UserExists {
            user: a.name.clone(),
        },
    );
    let exists = TrackerError::UserExists {
        user: a.name.clone(),
    };
    w.refused(&mut a, again, exists);
}

#[test]
fn login_opens_an_online_session_with_a_fresh_token_and_key() {
    let mut w = World::new();
    let a = w.login_new("alice", 1);
    let token = a.token.unwrap();
    let s = w.st.session(&token).unwrap();
    assert_eq!(s.user, a.name);
    assert_eq!(s.client, a.client);
    assert!(s.online && s.addr.is_none());
    assert_ne!(s.seeder_key, SeederKey::default());
    assert_eq!(w.st.session_user(&token), Some(&a.name));
    assert_eq!(w.st.user_session(&a.name).unwrap().0, &token);
    assert_eq!(w.st.sessions().count(), 1);
}

/// An unknown user and a wrong password get one answer, and both cost a
/// password check at the configured cost (the unknown user's against the
/// dummy hash), so neither the answer nor its timing tells which names
/// exist.
#[test]
fn login_unknown_user_and_wrong_password_look_the_same() {
    use crate::tracker::password::{PasswordWork, dummy_phc};
    use crate::tracker::state::Step;
    let mut w = World::new();
    let mut a = w.login_new("alice", 1);
    let mut n = Actor::new("nobody", 2);
    let login = |u: &str, p: &str| Request::Login {
        user: user(u),
        password: pw(p),
    };
    let both = TrackerError::WrongUserOrPassword;
    assert!(both.to_string().starts_with("wrong user name or password"));
    w.refused(&mut n, login("nobody", "x"), both.clone());
    a.token = None;
    w.refused(&mut a, login("alice", "wrong"), both);
    let work = |st: &TrackerState, req: &p2p_proto::ClientRequest| {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        match st.prepare_step(w.now, &w.cfg, &mut rng, req, key_of(req.client), None) {
            Ok(Step::Password(PasswordWork::Verify { phc, .. })) => phc,
            other => panic!("no password check: {other:?}"),
        }
    };
    let unknown = work(&w.st, &n.req(login("nobody", "x")));
    let known = work(&w.st, &a.req(login("alice", "wrong")));
    assert_eq!(unknown, dummy_phc(&w.cfg));
    let cost = |h: &str| h.split('$').nth(3).unwrap().to_string();
    assert_eq!(cost(&unknown), cost(&known));
}

#[test]
fn a_second_login_takes_over_the_first_session() {
    let mut w = World::new();
    let first = w.login_new("alice", 1);
    let mut second = Actor::new("alice", 2);
    w.login(&mut second, pw("pw-alice"));
    let (old, new) = (first.token.unwrap(), second.token.unwrap());
    assert_ne!(old, new);
    assert!(w.st.session(&old).is_none(), "old token still works");
    assert_eq!(w.st.session(&new).unwrap().client, second.client);
    assert_eq!(w.st.sessions().count(), 1);
    let mut first = first;
    w.refused(
        &mut first,
        Request::ListGroups,
        TrackerError::SessionUnknown,
    );
    assert!(w.run(&mut second, Request::ListGroups).is_ok());
}

#[test]
fn login_with_another_users_session_is_refused() {
    let mut w = World::new();
    let alice = w.login_new("alice", 1);
    let mut bob = w.login_new("bob", 2);
    // The client (and key) logged in as alice asks to log in as bob.
    bob.token = alice.token;
    bob.client = alice.client;
    bob.next_id = 100;
    let login = Request::Login {
        user: user("bob"),
        password: pw("pw-bob"),
    };
    w.refused(
        &mut bob,
        login,
        TrackerError::AlreadyLoggedIn {
            user: user("alice"),
        },
    );
}

#[test]
fn login_with_another_keys_session_ignores_it() {
    let mut w = World::new();
    let alice = w.login_new("alice", 1);
    let mut bob = w.login_new("bob", 2);
    // A token of another client's key is no session of this client: the
    // login goes ahead as if it were stale, and alice keeps hers.
    bob.token = alice.token;
    w.login(&mut bob, pw("pw-bob"));
    assert!(w.st.session(&alice.token.unwrap()).is_some());
}

#[test]
fn login_with_own_or_stale_session_is_allowed() {
    let mut w = World::new();
    let mut a = w.login_new("alice", 1);
    let own = a.token;
    w.login(&mut a, pw("pw-alice"));
    assert!(w.st.session(&own.unwrap()).is_none());
    a.token = Some(SessionToken([0xee; 16]));
    w.login(&mut a, pw("pw-alice"));
    assert_eq!(w.st.sessions().count(), 1);
}

/// Every request that needs a session, valid in shape.
fn session_requests() -> Vec<Request> {
    use Request::*;
    let (g, f) = (group("g"), file("f"));
    vec![
        Resume,
        Logout,
        CreateGroup { group: g.clone() },
        JoinGroup { group: g.clone() },
        LeaveGroup { group: g.clone() },
        ListGroups,
        ListRequests { group: g.clone() },
        AcceptRequest {
            group: g.clone(),
            user: user("u"),
        },
        RejectRequest {
            group: g.clone(),
            user: user("u"),
        },
        UploadFile {
            group: g.clone(),
            meta: meta("f", 1, 1),
        },
        ListFiles { group: g.clone() },
        ListMembers { group: g.clone() },
        GetFile {
            group: g.clone(),
            file: f.clone(),
        },
        GetPeers {
            group: g.clone(),
            file: f.clone(),
        },
        StopShare {
            group: g.clone(),
            file: f.clone(),
        },
        HavePieces {
            group: g,
            file: f,
            pieces: p2p_proto::PieceSet::full(1),
        },
        RegisterSeeder { addr: addr(1) },
    ]
}

#[test]
fn every_session_command_needs_a_login_and_a_live_session() {
    let mut w = World::new();
    let mut a = w.login_new("alice", 1);
    let live = a.token;
    for req in session_requests() {
        a.token = None;
        w.refused(&mut a, req.clone(), TrackerError::NotLoggedIn);
        a.token = Some(SessionToken([0xab; 16]));
        w.refused(&mut a, req.clone(), TrackerError::SessionUnknown);
    }
    a.token = live;
    assert!(w.run(&mut a, Request::Resume).is_ok());
}

#[test]
fn logout_ends_the_session() {
    let mut w = World::new();
    let mut a = w.login_new("alice", 1);
    assert_eq!(w.run(&mut a, Request::Logout), Ok(Reply::Done));
    assert_eq!(w.st.sessions().count(), 0);
    w.refused(&mut a, Request::Logout, TrackerError::SessionUnknown);
    w.refused(&mut a, Request::ListGroups, TrackerError::SessionUnknown);
}

#[test]
fn ping_resume_and_status() {
    let mut w = World::new();
    let mut a = w.login_new("alice", 1);
    assert_eq!(
        w.run(&mut a, Request::Resume),
        Ok(Reply::Resumed {
            user: a.name.clone()
        })
    );
    a.token = None;
    assert_eq!(w.run(&mut a, Request::Ping), Ok(Reply::Pong));
    assert!(matches!(
        w.run(&mut a, Request::Status),
        Err(TrackerError::BadRequest { .. })
    ));
}

#[test]
fn read_refuses_a_write_and_prepare_answers_a_read() {
    let mut w = World::new();
    let mut a = w.login_new("alice", 1);
    let write = a.req(Request::CreateGroup { group: group("g") });
    assert!(matches!(
        w.st.read(w.now, &w.cfg, &write, key_of(write.client)),
        Err(TrackerError::BadRequest { .. })
    ));
    let read = a.req(Request::ListGroups);
    let p =
        w.st.prepare(w.now, &w.cfg, &mut w.rng, &read, key_of(read.client))
            .unwrap();
    assert_eq!(p, Prepared::Done(Ok(Reply::Groups(vec![]))));
}

#[test]
fn a_retried_request_gets_the_stored_outcome_and_applies_once() {
    let mut w = World::new();
    let mut a = w.login_new("alice", 1);
    let create = a.req(Request::CreateGroup { group: group("g") });
    assert_eq!(w.send(&create), Ok(Reply::Done));
    let (digest, ops) = (w.st.digest(), w.log.len());
    assert_eq!(
        w.send(&create),
        Ok(Reply::Done),
        "retry answered from the record"
    );
    assert_eq!((w.st.digest(), w.log.len()), (digest, ops));
    // A fresh request with the same content is a real second attempt.
    let again = a.req(Request::CreateGroup { group: group("g") });
    let err = TrackerError::GroupExists { group: group("g") };
    assert_eq!(w.send(&again), Err(err));
}

#[test]
fn a_retried_login_returns_the_same_session() {
    let mut w = World::new();
    let mut a = Actor::new("alice", 1);
    let create = Request::CreateUser {
        user: a.name.clone(),
        password: pw("p"),
    };
    w.run(&mut a, create).unwrap();
    let login = a.req(Request::Login {
        user: a.name.clone(),
        password: pw("p"),
    });
    let first = w.send(&login);
    assert!(matches!(first, Ok(Reply::LoggedIn { .. })));
    assert_eq!(w.send(&login), first);
    assert_eq!(w.st.sessions().count(), 1);
}

#[test]
fn a_duplicate_op_in_the_log_is_applied_once() {
    let mut w = World::new();
    let mut a = w.login_new("alice", 1);
    w.run(&mut a, Request::CreateGroup { group: group("g") })
        .unwrap();
    let leave = a.req(Request::LeaveGroup { group: group("g") });
    let Ok(Prepared::Op(kind)) =
        w.st.prepare(w.now, &w.cfg, &mut w.rng, &leave, key_of(leave.client))
    else {
        panic!("leave not accepted");
    };
    let origin = Some(Origin {
        client: leave.client,
        key: key_of(leave.client),
        id: leave.id,
    });
    let op = Op {
        at_ms: 5,
        origin,
        kind,
    };
    let first = w.apply(op.clone());
    assert_eq!(
        first,
        Ok(Reply::Left {
            new_owner: None,
            deleted: true
        })
    );
    let digest = w.st.digest();
    assert_eq!(w.apply(op), first);
    assert_eq!(w.st.digest(), digest);
    w.assert_replays();
}

#[test]
fn a_stale_op_changes_nothing_but_its_recorded_outcome() {
    let mut w = World::new();
    let mut a = w.login_new("alice", 1);
    // Two creates prepared against the same state (pipelined on a primary).
    let r1 = a.req(Request::CreateGroup { group: group("g") });
    let r2 = a.req(Request::CreateGroup { group: group("g") });
    let mut ops = vec![];
    for r in [&r1, &r2] {
        let Ok(Prepared::Op(kind)) = w.st.prepare(w.now, &w.cfg, &mut w.rng, r, key_of(r.client))
        else {
            panic!("not accepted");
        };
        let origin = Some(Origin {
            client: r.client,
            key: key_of(r.client),
            id: r.id,
        });
        ops.push(Op {
            at_ms: 9,
            origin,
            kind,
        });
    }
    assert_eq!(w.apply(ops[0].clone()), Ok(Reply::Done));
    let before = digest_without_outcomes(&w.st);
    let stale = w.apply(ops[1].clone());
    assert_eq!(stale, Err(TrackerError::GroupExists { group: group("g") }));
    assert_eq!(digest_without_outcomes(&w.st), before);
    assert_eq!(w.send(&r2), stale, "the stale outcome is what a retry gets");
}

#[test]
fn session_ops_with_an_unknown_token_are_no_ops() {
    let mut w = World::new();
    w.login_new("alice", 1);
    let t = SessionToken([0x55; 16]);
    let before = w.st.digest();
    for kind in [
        OpKind::Logout { token: t },
        OpKind::ExpireSession { token: t },
        OpKind::SetOnline {
            token: t,
            online: false,
        },
        OpKind::RegisterSeeder {
            token: t,
            addr: addr(1),
        },
    ] {
        assert_eq!(w.system(kind), Err(TrackerError::SessionUnknown));
    }
    assert_eq!(w.st.digest(), before);
}

#[test]
fn expire_and_set_online_change_the_session() {
    let mut w = World::new();
    let a = w.login_new("alice", 1);
    let token = a.token.unwrap();
    w.system(OpKind::SetOnline {
        token,
        online: false,
    })
    .unwrap();
    let s = w.st.session(&token).unwrap();
    assert!(!s.online && s.online_ms == w.now.as_millis());
    w.system(OpKind::ExpireSession { token }).unwrap();
    assert!(w.st.session(&token).is_none());
    assert!(w.st.user_session(&a.name).is_none());
}

#[test]
fn create_user_op_with_a_junk_hash_is_refused_by_apply() {
    let mut w = World::new();
    let kind = OpKind::CreateUser {
        user: user("mallory"),
        password_hash: p2p_proto::PasswordHash("not-a-phc-string".into()),
    };
    assert!(matches!(
        w.system(kind),
        Err(TrackerError::BadRequest { .. })
    ));
    assert!(w.st.user(&user("mallory")).is_none());
}

#[test]
fn users_limit() {
    let mut st = TrackerState::new();
    let phc = some_phc();
    for i in 0..USERS_MAX {
        let kind = OpKind::CreateUser {
            user: user(&format!("u{i}")),
            password_hash: p2p_proto::PasswordHash(phc.clone()),
        };
        assert!(
            st.apply(&Op {
                at_ms: 1,
                origin: None,
                kind
            })
            .is_ok()
        );
    }
    st.check_invariants();
    let mut w = World::new();
    w.st = st;
    let mut a = Actor::new("onemore", 1);
    let create = Request::CreateUser {
        user: a.name.clone(),
        password: pw("p"),
    };
    let full = TrackerError::LimitReached {
        what: crate::tracker::limits::what::USERS.into(),
    };
    w.refused(&mut a, create, full.clone());
    let kind = OpKind::CreateUser {
        user: user("onemore"),
        password_hash: p2p_proto::PasswordHash(phc),
    };
    assert_eq!(w.system(kind), Err(full));
}

fn op_from(client: ClientId, id: u64, at_ms: u64) -> Op {
    Op {
        at_ms,
        origin: Some(Origin {
            client,
            key: key_of(client),
            id: RequestId(id),
        }),
        kind: OpKind::Noop,
    }
}

#[test]
fn outcomes_per_client_are_bounded_evicting_the_lowest_request_id() {
    let mut st = TrackerState::new();
    let c = ClientId([1; 16]);
    let n = OUTCOMES_PER_CLIENT_MAX as u64;
    for id in 1..=n + 1 {
        st.apply(&op_from(c, id, id)).unwrap();
    }
    st.check_invariants();
    let origin = |id| Origin {
        client: c,
        key: key_of(c),
        id: RequestId(id),
    };
    assert!(st.stored_outcome(&origin(1)).is_none(), "lowest id evicted");
    assert!(st.stored_outcome(&origin(2)).is_some());
    assert!(st.stored_outcome(&origin(n + 1)).is_some());
}

#[test]
fn outcome_clients_are_bounded_evicting_the_least_recent() {
    let mut st = TrackerState::new();
    let client = |i: usize| {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&(i as u64).to_be_bytes());
        ClientId(b)
    };
    // Client 0 is the most recent; client 1 the least recent.
    for i in 0..OUTCOME_CLIENTS_MAX {
        let at = if i == 0 { 1_000_000 } else { 10 + i as u64 };
        st.apply(&op_from(client(i), 1, at)).unwrap();
    }
    st.apply(&op_from(client(OUTCOME_CLIENTS_MAX), 1, 2_000_000))
        .unwrap();
    st.check_invariants();
    let stored = |i| {
        st.stored_outcome(&Origin {
            client: client(i),
            key: key_of(client(i)),
            id: RequestId(1),
        })
        .is_some()
    };
    assert!(stored(0) && !stored(1) && stored(2) && stored(OUTCOME_CLIENTS_MAX));
}

#[test]
fn same_seed_same_ops() {
    let run = || {
        let mut w = World::new();
        w.rng = ChaCha8Rng::seed_from_u64(42);
        let mut a = w.login_new("alice", 1);
        w.run(&mut a, Request::CreateGroup { group: group("g") })
            .unwrap();
        (w.log, w.st.digest())
    };
    assert_eq!(run(), run());
}

#[test]
fn revalidate_reports_conflicts_and_accepts_known_origins() {
    let mut w = World::new();
    let mut a = w.login_new("alice", 1);
    let r = a.req(Request::CreateGroup { group: group("g") });
    let Ok(Prepared::Op(kind)) =
        w.st.prepare(w.now, &w.cfg, &mut w.rng, &r, key_of(r.client))
    else {
        panic!();
    };
    let op = Op {
        at_ms: 1,
        origin: Some(Origin {
            client: r.client,
            key: key_of(r.client),
            id: r.id,
        }),
        kind,
    };
    assert_eq!(w.st.revalidate(&op), Ok(()));
    w.apply(op.clone()).unwrap();
    assert_eq!(
        w.st.revalidate(&op),
        Ok(()),
        "already applied: a no-op, not a conflict"
    );
    let other = Op { origin: None, ..op };
    assert_eq!(
        w.st.revalidate(&other),
        Err(TrackerError::GroupExists { group: group("g") })
    );
}
