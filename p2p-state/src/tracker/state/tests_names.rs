//! Lookalike names (TR39 skeletons) in each namespace: refused with the
//! existing name, in prepare and in apply alike; the skeleton index
//! survives a snapshot.

use p2p_proto::{OpKind, Request, TrackerError};

use super::testkit::*;
use crate::tracker::state::TrackerState;

fn create_user(u: &str) -> Request {
    Request::CreateUser {
        user: user(u),
        password: pw("pw"),
    }
}

#[test]
fn a_user_name_like_an_existing_one_is_refused_naming_it() {
    let mut w = World::new();
    let _bob = w.login_new("bob", 1);
    let mut m = Actor::new("b\u{43e}b", 2);
    let want = TrackerError::UserTooSimilar {
        user: user("b\u{43e}b"),
        existing: user("bob"),
    };
    assert!(want.to_string().contains("existing user bob"), "{want}");
    w.refused(&mut m, create_user("b\u{43e}b"), want.clone());
    // A name that is merely near (not a lookalike) is fine.
    w.login_new("rob", 3);
    // apply refuses the op too (a divergent log cannot sneak one in).
    let op = OpKind::CreateUser {
        user: user("b\u{43e}b"),
        password_hash: p2p_proto::PasswordHash(some_phc()),
    };
    assert_eq!(w.system(op), Err(want));
    // The index is derived: rebuilt from a snapshot, it still refuses.
    let st = TrackerState::decode_snapshot(w.st.encode_snapshot()).unwrap();
    assert!(st.user_can_be_created(&user("b\u{43e}b")).is_err());
    assert!(st.user_can_be_created(&user("carol")).is_ok());
    w.assert_replays();
}

#[test]
fn a_group_name_like_an_existing_one_is_refused_naming_it() {
    let mut w = World::new();
    let mut a = w.login_new("alice", 1);
    w.group_with("g1", &mut a, &mut []);
    for lookalike in ["gl", "g\u{406}"] {
        let req = Request::CreateGroup {
            group: group(lookalike),
        };
        let want = TrackerError::GroupTooSimilar {
            group: group(lookalike),
            existing: group("g1"),
        };
        w.refused(&mut a, req, want);
    }
    w.group_with("g2", &mut a, &mut []);
}

#[test]
fn a_file_name_like_one_in_the_same_group_is_refused_naming_it() {
    let mut w = World::new();
    let mut a = w.login_new("alice", 1);
    w.group_with("g", &mut a, &mut []);
    w.group_with("h", &mut a, &mut []);
    let upload = |g: &str, name: &str| Request::UploadFile {
        group: group(g),
        meta: meta(name, 2, 1),
    };
    w.run(&mut a, upload("g", "invoice.pdf")).unwrap();
    let want = TrackerError::FileTooSimilar {
        file: file("\u{456}nvoice.pdf"),
        existing: file("invoice.pdf"),
    };
    w.refused(&mut a, upload("g", "\u{456}nvoice.pdf"), want);
    // Another group is another namespace; the same name is a re-share.
    w.run(&mut a, upload("h", "\u{456}nvoice.pdf")).unwrap();
    w.run(&mut a, upload("g", "invoice.pdf")).unwrap();
}
