//! Identities (issue 15): sessions bound to the key that logged in, their
//! idle and absolute lifetimes, stored outcomes keyed by the requester's
//! key, and tickets naming both ends' keys.

use p2p_proto::{KeyId, OpKind, Reply, Request, TrackerError};

use super::testkit::*;
use crate::time::{Duration, Instant};
use crate::tracker::state::{SESSION_IDLE_MS, SESSION_MAX_MS, TICKET_LIFETIME_MS, TrackerConfig};

const MALLORY: KeyId = KeyId([0x66; 32]);

fn list_groups(w: &World, a: &mut Actor, at: Instant, key: KeyId) -> Result<Reply, TrackerError> {
    let r = a.req(Request::ListGroups);
    w.st.read(at, &w.cfg, &r, key)
}

#[test]
fn a_session_resumed_or_used_with_another_key_is_refused_and_changes_nothing() {
    let mut w = World::new();
    let alice = w.login_new("alice", 1);
    // Mallory sniffed alice's client id and token; her connection proves
    // her own key.
    let mut m = alice.clone();
    let resume = m.req(Request::Resume);
    assert_eq!(
        w.st.read(w.now, &w.cfg, &resume, MALLORY),
        Err(TrackerError::SessionKeyMismatch)
    );
    let before = w.st.digest();
    let create = m.req(Request::CreateGroup {
        group: group("evil"),
    });
    assert_eq!(
        w.send_as(&create, MALLORY),
        Err(TrackerError::SessionKeyMismatch)
    );
    let logout = m.req(Request::Logout);
    assert_eq!(
        w.send_as(&logout, MALLORY),
        Err(TrackerError::SessionKeyMismatch)
    );
    assert_eq!(w.st.digest(), before, "a refusal changed the state");
    assert!(w.st.session(&alice.token.unwrap()).is_some());
    assert!(
        TrackerError::SessionKeyMismatch
            .to_string()
            .contains("login again")
    );
}

#[test]
fn the_key_that_logged_in_resumes_and_logout_revokes() {
    let mut w = World::new();
    let mut alice = w.login_new("alice", 1);
    let token = alice.token.unwrap();
    assert_eq!(w.st.session(&token).unwrap().key, key_of(alice.client));
    let resume = alice.req(Request::Resume);
    assert_eq!(
        w.st.read(w.now, &w.cfg, &resume, key_of(alice.client)),
        Ok(Reply::Resumed {
            user: user("alice")
        })
    );
    assert_eq!(w.run(&mut alice, Request::Logout), Ok(Reply::Done));
    let resume = alice.req(Request::Resume);
    assert_eq!(
        w.st.read(w.now, &w.cfg, &resume, key_of(alice.client)),
        Err(TrackerError::SessionUnknown)
    );
}

#[test]
fn a_session_offline_for_its_idle_lifetime_is_refused_at_once() {
    let mut w = World::new();
    w.cfg.session_idle_ms = 60_000;
    let mut a = w.login_new("alice", 1);
    let token = a.token.unwrap();
    let key = key_of(a.client);
    w.system(OpKind::SetOnline {
        token,
        online: false,
    })
    .unwrap();
    let since = w.st.session(&token).unwrap().online_ms;
    let just_before = Instant(since + 60_000 - 1);
    assert!(list_groups(&w, &mut a, just_before, key).is_ok());
    let at = Instant(since + 60_000);
    assert_eq!(
        list_groups(&w, &mut a, at, key),
        Err(TrackerError::SessionUnknown)
    );
    assert!(w.cfg.session_expired(at, w.st.session(&token).unwrap()));
    // Online again in time: idle time does not count while connected.
    w.system(OpKind::SetOnline {
        token,
        online: true,
    })
    .unwrap();
    assert!(list_groups(&w, &mut a, Instant(since + 10 * 60_000), key).is_ok());
}

#[test]
fn a_session_past_its_absolute_lifetime_is_refused_even_online() {
    let mut w = World::new();
    w.cfg.session_max_ms = 3_600_000;
    let mut a = w.login_new("alice", 1);
    let token = a.token.unwrap();
    let key = key_of(a.client);
    let login = w.st.session(&token).unwrap().login_ms;
    assert!(w.st.session(&token).unwrap().online);
    assert!(list_groups(&w, &mut a, Instant(login + 3_600_000 - 1), key).is_ok());
    let at = Instant(login + 3_600_000);
    assert_eq!(
        list_groups(&w, &mut a, at, key),
        Err(TrackerError::SessionUnknown)
    );
    // Writes too, before any ExpireSession is applied.
    w.now = at;
    let before = digest_without_outcomes(&w.st);
    let r = w.run(&mut a, Request::CreateGroup { group: group("g") });
    assert_eq!(r, Err(TrackerError::SessionUnknown));
    assert_eq!(digest_without_outcomes(&w.st), before);
}

#[test]
fn default_lifetimes_are_an_hour_idle_a_week_in_all_and_tickets_minutes() {
    let p = TrackerConfig::production();
    assert_eq!(p.session_idle_ms, SESSION_IDLE_MS);
    assert_eq!(SESSION_IDLE_MS, 3_600_000);
    assert_eq!(p.session_max_ms, SESSION_MAX_MS);
    assert_eq!(SESSION_MAX_MS, 7 * 24 * 3_600_000);
    assert_eq!(p.ticket_ttl_ms, TICKET_LIFETIME_MS);
    assert_eq!(TICKET_LIFETIME_MS, 5 * 60_000);
}

#[test]
fn stored_outcomes_answer_only_the_same_key() {
    let mut w = World::new();
    let mut victim = w.login_new("victim", 1);
    let mut m = w.login_new("mallory", 2);
    let mallory_key = key_of(m.client);
    // Mallory, in her own session but with the victim's sniffed client id,
    // records outcomes under the victim's next request ids.
    m.client = victim.client;
    m.next_id = victim.next_id;
    for i in 0..3 {
        let r = m.req(Request::CreateGroup {
            group: group(&format!("m{i}")),
        });
        assert_eq!(w.send_as(&r, mallory_key), Ok(Reply::Done));
    }
    // The victim's requests with those ids are its own, applied for real.
    for g in ["g", "h", "k"] {
        assert_eq!(
            w.run(&mut victim, Request::CreateGroup { group: group(g) }),
            Ok(Reply::Done)
        );
        assert!(w.st.group(&group(g)).is_some(), "{g} was not created");
    }
    // A retry is answered from the record, for the same key only.
    let mut retry = victim.clone();
    retry.next_id -= 1;
    let r = retry.req(Request::CreateGroup { group: group("k") });
    assert_eq!(w.send_as(&r, key_of(victim.client)), Ok(Reply::Done));
    assert_eq!(
        w.send_as(&r, MALLORY),
        Err(TrackerError::SessionKeyMismatch)
    );
}

fn peers(w: &mut World, a: &mut Actor) -> Result<Reply, TrackerError> {
    let r = a.req(Request::GetPeers {
        group: group("g"),
        file: file("f"),
    });
    w.st.read(w.now, &w.cfg, &r, key_of(r.client))
}

/// Alice shares `f` in `g` and seeds it; bob is a member.
fn seeded() -> (World, Actor, Actor) {
    let mut w = World::new();
    let mut a = w.login_new("alice", 1);
    let mut b = w.login_new("bob", 2);
    w.group_with("g", &mut a, &mut [&mut b]);
    let up = Request::UploadFile {
        group: group("g"),
        meta: meta("f", 2, 1),
    };
    w.run(&mut a, up).unwrap();
    w.run(&mut a, Request::RegisterSeeder { addr: addr(5000) })
        .unwrap();
    (w, a, b)
}

#[test]
fn tickets_name_both_ends_keys_and_expire_in_minutes() {
    let (mut w, a, mut b) = seeded();
    w.cfg = TrackerConfig::production();
    let Ok(Reply::Peers(p)) = peers(&mut w, &mut b) else {
        panic!("bob gets peers")
    };
    let t = &p[0].ticket;
    assert_eq!(t.downloader_key, key_of(b.client));
    assert_eq!(t.seeder_key, key_of(a.client));
    assert_eq!(t.expires_ms, w.now.as_millis() + 5 * 60_000);
    let (_, s) = w.st.user_session(&user("alice")).unwrap();
    assert_eq!(crate::ticket::verify(&s.seeder_key, t, w.now), Ok(()));
    let later = w.now + Duration(5 * 60_000 + 1);
    assert_eq!(
        crate::ticket::verify(&s.seeder_key, t, later),
        Err(crate::ticket::TicketError::Expired)
    );
}

#[test]
fn no_tickets_after_leaving_the_group_or_logging_out() {
    let (mut w, _, mut b) = seeded();
    assert!(peers(&mut w, &mut b).is_ok());
    w.run(&mut b, Request::LeaveGroup { group: group("g") })
        .unwrap();
    assert_eq!(
        peers(&mut w, &mut b),
        Err(TrackerError::NotMember { group: group("g") })
    );
    let (mut w, _, mut b) = seeded();
    w.run(&mut b, Request::Logout).unwrap();
    assert_eq!(peers(&mut w, &mut b), Err(TrackerError::SessionUnknown));
}
