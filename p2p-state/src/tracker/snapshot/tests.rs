//! The state encoding: round trips, and refusal of anything `encode` could
//! not have produced.

use bytes::{BufMut, Bytes, BytesMut};
use p2p_proto::codec::put_string;
use p2p_proto::{DecodeError, Wire};

use super::STATE_FORMAT_VERSION;
use crate::tracker::state::TrackerState;
use crate::tracker::state::testkit::key_of;
use crate::tracker::state::testkit::*;

fn busy() -> TrackerState {
    let mut w = World::new();
    let mut a = w.login_new("alice", 1);
    let mut b = w.login_new("bob", 2);
    let mut c = w.login_new("carol", 3);
    w.group_with("g", &mut a, &mut [&mut b]);
    w.run(&mut c, p2p_proto::Request::JoinGroup { group: group("g") })
        .unwrap();
    let up = p2p_proto::Request::UploadFile {
        group: group("g"),
        meta: meta("f", 3, 1),
    };
    w.run(&mut a, up).unwrap();
    w.st
}

fn is_invalid(r: Result<TrackerState, DecodeError>) -> bool {
    matches!(r, Err(DecodeError::Invalid { .. }))
}

#[test]
fn empty_and_busy_states_round_trip() {
    for st in [TrackerState::new(), busy()] {
        let b = st.encode_snapshot();
        let back = TrackerState::decode_snapshot(b.clone()).unwrap();
        assert_eq!(back, st);
        assert_eq!(back.encode_snapshot(), b);
        assert_eq!(back.digest(), st.digest());
    }
}

#[test]
fn digest_tells_states_apart() {
    let a = busy();
    let mut b = a.clone();
    b.groups.get_mut(&group("g")).unwrap().next_seq += 1;
    assert_ne!(a.digest(), b.digest());
    assert_ne!(TrackerState::new().digest(), a.digest());
}

#[test]
fn truncated_or_extended_snapshots_are_refused() {
    let b = busy().encode_snapshot();
    for cut in 0..b.len() {
        assert!(
            TrackerState::decode_snapshot(b.slice(..cut)).is_err(),
            "cut {cut}"
        );
    }
    let mut long = BytesMut::from(&b[..]);
    long.put_u8(0);
    assert_eq!(
        TrackerState::decode_snapshot(long.freeze()),
        Err(DecodeError::TrailingBytes(1))
    );
    let mut other_version = BytesMut::from(&b[..]);
    other_version[0] = STATE_FORMAT_VERSION + 1;
    assert!(is_invalid(TrackerState::decode_snapshot(
        other_version.freeze()
    )));
}

#[test]
fn keys_out_of_order_are_refused() {
    let phc = some_phc();
    let users = |names: [&str; 2]| {
        let mut w = BytesMut::new();
        w.put_u8(STATE_FORMAT_VERSION);
        w.put_u32(2);
        for n in names {
            user(n).encode(&mut w);
            put_string(&mut w, &phc);
        }
        w.put_u32(0); // sessions
        w.put_u32(0); // groups
        w.put_u32(0); // outcomes
        w.put_u32(0); // conflicts
        w.freeze()
    };
    assert!(TrackerState::decode_snapshot(users(["a", "b"])).is_ok());
    assert!(is_invalid(TrackerState::decode_snapshot(users(["b", "a"]))));
    assert!(is_invalid(TrackerState::decode_snapshot(users(["a", "a"]))));
}

#[test]
fn a_state_breaking_an_invariant_is_refused() {
    let breakers: [fn(&mut TrackerState); 5] = [
        |s| s.groups.get_mut(&group("g")).unwrap().owner = user("carol"),
        |s| {
            let g = s.groups.get_mut(&group("g")).unwrap();
            g.pending.insert(user("bob"), 0);
        },
        |s| {
            let g = s.groups.get_mut(&group("g")).unwrap();
            let f = g.files.get_mut(&file("f")).unwrap();
            f.sources
                .insert(user("carol"), p2p_proto::PieceSet::full(3));
        },
        |s| {
            let (token, session) = s.sessions.pop_first().unwrap();
            let mut other = session.clone();
            other.user = user("ghost");
            s.sessions.insert(token, other);
        },
        |s| {
            let g = s.groups.get_mut(&group("g")).unwrap();
            g.files.get_mut(&file("f")).unwrap().sources.clear();
            let f = g.files.get_mut(&file("f")).unwrap();
            f.sources
                .insert(user("alice"), p2p_proto::PieceSet::empty(3));
        },
    ];
    for (i, breaker) in breakers.iter().enumerate() {
        let mut st = busy();
        breaker(&mut st);
        let b: Bytes = st.encode_snapshot();
        let r = TrackerState::decode_snapshot(b);
        assert!(r.is_err(), "breaker {i} accepted");
    }
}

#[test]
#[should_panic(expected = "invariant broken")]
fn check_invariants_panics_on_a_broken_state() {
    let mut st = busy();
    st.groups.get_mut(&group("g")).unwrap().owner = user("carol");
    st.check_invariants();
}

#[test]
fn conflict_records_round_trip_once_per_request_and_are_bounded() {
    use p2p_proto::{ClientId, Op, OpKind, Origin, RequestId, TrackerError};
    let record = |id: u64| Op {
        at_ms: id,
        origin: None,
        kind: OpKind::RecordConflict {
            op: Box::new(Op {
                at_ms: 1,
                origin: Some(Origin {
                    client: ClientId([7; 16]),
                    key: key_of(ClientId([7; 16])),
                    id: RequestId(id),
                }),
                kind: OpKind::Noop,
            }),
            reason: TrackerError::NotReady,
        },
    };
    let mut st = TrackerState::default();
    assert!(st.apply(&record(1)).is_ok());
    assert!(st.apply(&record(1)).is_ok());
    assert_eq!(st.conflicts().count(), 1, "one record per request");
    let back = TrackerState::decode_snapshot(st.encode_snapshot()).unwrap();
    assert_eq!(back, st);
    for id in 2..=(crate::tracker::limits::CONFLICTS_MAX as u64 + 5) {
        assert!(st.apply(&record(id)).is_ok());
    }
    assert_eq!(
        st.conflicts().count(),
        crate::tracker::limits::CONFLICTS_MAX
    );
    assert_eq!(
        st.conflicts().next().unwrap().op.origin.unwrap().id,
        RequestId(6)
    );
    st.check_invariants();
}
