//! The tracker's identity decisions (`node/auth.rs`): peer trackers by
//! pinned key (trust on first use, changed key, impostor, dialed tracker
//! with the wrong key, one key per tracker), sessions replayed from another
//! key, and sessions expired by the primary.

use bytes::Bytes;

use super::*;
use crate::tracker::node::auth::Mismatch;

const IMPOSTOR: KeyId = KeyId([0x66; 32]);

/// Tracker 1 of a group of three (it dials 2 and 3 at start).
fn lone(pins: [Option<KeyId>; 3]) -> Tracker {
    let mut cfg = node_cfg(1, 3);
    cfg.tracker_keys = pins.to_vec();
    let mut t = Tracker::new(cfg, 1, Instant(1_000));
    drain(&mut t);
    t
}

fn feed(t: &mut Tracker, input: Input) -> Vec<Output> {
    t.handle_input(Instant(2_000), input);
    drain(t)
}

fn frame<M: Wire>(m: &M) -> Bytes {
    m.to_bytes()
}

fn accept(t: &mut Tracker, conn: ConnId, peer: KeyId, role: WireRole) -> Vec<Output> {
    let addr = addr_of(50);
    feed(t, Input::Accepted { conn, addr, peer });
    let payload = frame(&Hello::new(role));
    feed(t, Input::Frame { conn, payload })
}

fn pinned(out: &[Output]) -> Vec<(TrackerId, KeyId)> {
    out.iter()
        .filter_map(|o| match o {
            Output::PinTracker { tracker, key } => Some((*tracker, *key)),
            _ => None,
        })
        .collect()
}

fn refusal(out: &[Output]) -> Option<KeyRefused> {
    out.iter().find_map(|o| match o {
        Output::Event(TrackerEvent::TrackerKeyRefused(r)) => Some(r.clone()),
        _ => None,
    })
}

fn sent_on(out: &[Output], c: ConnId) -> usize {
    out.iter()
        .filter(|o| matches!(o, Output::Send { conn, .. } if *conn == c))
        .count()
}

fn closed(out: &[Output], c: ConnId) -> bool {
    out.iter()
        .any(|o| matches!(o, Output::Close { conn, .. } if *conn == c))
}

/// A heartbeat that would make tracker 1 follow the sender at once.
fn takeover() -> Bytes {
    let epoch = crate::tracker::repl::make_epoch(5, TrackerId(2)).unwrap();
    frame(&ReplMsg::Heartbeat {
        epoch,
        primary: TrackerId(2),
        last: p2p_proto::LogPos { epoch, index: 9 },
        confirmed: 0,
    })
}

#[test]
fn first_contact_pins_the_key_and_a_changed_key_is_refused_before_any_message() {
    let mut t = lone([None, None, None]);
    let out = accept(&mut t, 10, key_of(2), WireRole::Tracker(TrackerId(2)));
    assert_eq!(pinned(&out), vec![(TrackerId(2), key_of(2))]);
    assert!(
        sent_on(&out, 10) >= 1,
        "our hello answers a tracker we accept"
    );
    assert_eq!(t.pinned_key(TrackerId(2)), Some(key_of(2)));

    let (epoch, digest) = (t.repl().epoch(), t.state().digest());
    let out = accept(&mut t, 11, IMPOSTOR, WireRole::Tracker(TrackerId(2)));
    let r = refusal(&out).expect("the changed key is reported");
    assert_eq!(r.why, Mismatch::Pinned(key_of(2)));
    assert_eq!(r.presented, IMPOSTOR);
    assert!(closed(&out, 11));
    assert_eq!(
        sent_on(&out, 11),
        0,
        "an impostor gets nothing, not even a hello"
    );
    assert!(pinned(&out).is_empty());
    let text = r.to_string();
    for what in ["tracker_info.txt", "known_trackers", &IMPOSTOR.to_string()] {
        assert!(text.contains(what), "the message names {what}: {text}");
    }
    // What it sends next is never decoded: the connection is gone.
    let out = feed(
        &mut t,
        Input::Frame {
            conn: 11,
            payload: takeover(),
        },
    );
    assert!(out.is_empty());
    assert_eq!((t.repl().epoch(), t.state().digest()), (epoch, digest));
    // The real tracker 2 is still connected.
    let out = feed(
        &mut t,
        Input::Frame {
            conn: 10,
            payload: takeover(),
        },
    );
    assert!(!out.is_empty());
    assert_ne!(t.repl().epoch(), epoch, "the pinned tracker is followed");
}

#[test]
fn a_configured_pin_is_enforced_without_announcing_it() {
    let mut t = lone([None, Some(key_of(2)), None]);
    let out = accept(&mut t, 10, IMPOSTOR, WireRole::Tracker(TrackerId(2)));
    assert_eq!(refusal(&out).unwrap().why, Mismatch::Pinned(key_of(2)));
    assert!(closed(&out, 10));
    let epoch = t.repl().epoch();
    assert!(
        feed(
            &mut t,
            Input::Frame {
                conn: 10,
                payload: takeover()
            }
        )
        .is_empty()
    );
    assert_eq!(t.repl().epoch(), epoch);
    let out = accept(&mut t, 11, key_of(2), WireRole::Tracker(TrackerId(2)));
    assert!(refusal(&out).is_none());
    assert!(pinned(&out).is_empty(), "a configured pin is not announced");
}

#[test]
fn a_dialed_tracker_with_the_wrong_key_gets_no_hello_and_is_redialed_later() {
    let mut t = lone([None, Some(key_of(2)), None]);
    let out = feed(
        &mut t,
        Input::Dialed {
            conn: 20,
            tracker: TrackerId(2),
            peer: IMPOSTOR,
        },
    );
    assert_eq!(sent_on(&out, 20), 0, "no hello to a wrong key");
    assert!(closed(&out, 20));
    let r = refusal(&out).unwrap();
    assert_eq!((r.tracker, r.addr), (TrackerId(2), None));
    assert!(r.to_string().contains("we dialed"));
    assert!(t.timers.get(NodeTimer::Redial(TrackerId(2))).is_some());
    let out = feed(
        &mut t,
        Input::Dialed {
            conn: 21,
            tracker: TrackerId(3),
            peer: key_of(3),
        },
    );
    assert_eq!(pinned(&out), vec![(TrackerId(3), key_of(3))]);
    assert_eq!(sent_on(&out, 21), 1, "our hello goes to a tracker we trust");
}

#[test]
fn one_key_is_one_tracker() {
    let mut t = lone([None, Some(key_of(2)), None]);
    let out = accept(&mut t, 10, key_of(2), WireRole::Tracker(TrackerId(3)));
    assert_eq!(
        refusal(&out).unwrap().why,
        Mismatch::OtherTracker(TrackerId(2))
    );
    assert!(closed(&out, 10));
    assert_eq!(t.pinned_key(TrackerId(3)), None);
}

#[test]
fn own_and_unknown_ids_are_refused_and_a_trackers_key_may_be_a_client() {
    let mut t = lone([None, None, None]);
    for (conn, id) in [(10, 1), (11, 9)] {
        let out = accept(&mut t, conn, key_of(id), WireRole::Tracker(TrackerId(id)));
        assert!(closed(&out, conn), "tracker id {id}");
        assert!(pinned(&out).is_empty());
    }
    let out = accept(&mut t, 12, key_of(2), WireRole::Client);
    assert!(!closed(&out, 12));
    assert!(pinned(&out).is_empty(), "a client hello pins nothing");
}

#[test]
fn the_planted_bug_lets_an_impostor_in() {
    let mut cfg = node_cfg(1, 3);
    cfg.tracker_keys = vec![None, Some(key_of(2)), None];
    cfg.bug_skip_tracker_key_check = true;
    let mut t = Tracker::new(cfg, 1, Instant(1_000));
    drain(&mut t);
    let out = accept(&mut t, 10, IMPOSTOR, WireRole::Tracker(TrackerId(2)));
    assert!(refusal(&out).is_none() && !closed(&out, 10));
}

#[test]
fn a_session_replayed_from_another_key_is_refused_and_not_attached() {
    let mut net = setup();
    let mut a = Client::new(&mut net, 1, 1);
    a.sign_up(&mut net, "alice", "pw-alice");
    let token = a.token.unwrap();
    // Mallory has alice's client id and token, on her own key.
    let mut m = Client::new(&mut net, 2, 2);
    m.client = a.client;
    m.token = Some(token);
    assert_eq!(
        m.call(&mut net, Request::Resume),
        Err(TrackerError::SessionKeyMismatch)
    );
    assert_eq!(
        m.call(&mut net, Request::CreateGroup { group: g("evil") }),
        Err(TrackerError::SessionKeyMismatch)
    );
    assert!(net.t(1).state().group(&g("evil")).is_none());
    // Alice leaves: her session goes offline, mallory's connection did not
    // keep it up.
    net.close(a.conn);
    net.run(2000);
    for i in 1..=2 {
        assert_eq!(
            net.t(i).state().session(&token).map(|s| s.online),
            Some(false)
        );
    }
}

#[test]
fn the_primary_expires_a_vanished_clients_session_everywhere() {
    let mut net = Net::new_with(2, |c| c.state.session_idle_ms = 10_000);
    net.run(3000);
    let mut a = Client::new(&mut net, 1, 2);
    a.sign_up(&mut net, "alice", "pw-alice");
    let token = a.token.unwrap();
    net.close(a.conn);
    // Offline after the grace; expired past the idle lifetime (refused at
    // once from then on) and removed by the primary's next sweep.
    net.run(2000);
    assert!(net.t(1).state().session(&token).is_some());
    net.run(10_000 + SESSION_SWEEP.0 + 1000);
    for i in 1..=2 {
        assert!(
            net.t(i).state().session(&token).is_none(),
            "t{i} still has it"
        );
    }
    assert_eq!(net.digests()[0], net.digests()[1]);
}

#[test]
fn an_expired_session_is_refused_before_its_expiry_is_applied() {
    // Sweeps run every 5 s from the start; the login (about 3 s in) plus
    // 1.5 s expires before the next one.
    let mut net = Net::new_with(2, |c| c.state.session_max_ms = 1_500);
    net.run(3000);
    let mut a = Client::new(&mut net, 1, 1);
    a.sign_up(&mut net, "alice", "pw-alice");
    let token = a.token.unwrap();
    let login = net.t(1).state().session(&token).unwrap().login_ms;
    let expired = login + 1_500;
    net.run(expired - net.now.as_millis());
    assert!(net.t(1).state().session(&token).is_some(), "not swept yet");
    assert_eq!(
        a.call(&mut net, Request::Resume),
        Err(TrackerError::SessionUnknown)
    );
    net.run(SESSION_SWEEP.0);
    assert!(net.t(1).state().session(&token).is_none(), "then swept");
}
