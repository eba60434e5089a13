//! Shares announced again after a login: a refusal reaches the user.

use p2p_proto::{Outcome, SeederKey, SessionToken, TrackerError, UserName};

use super::*;
use crate::client::node::ClientEvent;
use crate::seeder::ShareId;

/// The requests `out` sends to the tracker.
fn requests(out: &[Output]) -> Vec<p2p_proto::ClientRequest> {
    out.iter()
        .filter_map(|o| match o {
            Output::TrackerSend {
                msg: TrackerOut::Request(r),
                ..
            } => Some(r.clone()),
            _ => None,
        })
        .collect()
}

/// Answers request `id` with `outcome`.
fn respond(
    n: &mut ClientNode,
    conn: u64,
    id: p2p_proto::RequestId,
    outcome: Outcome,
) -> Vec<Output> {
    let payload = FromTracker::Response { id, outcome }.to_bytes();
    n.handle_input(T0, Input::TrackerFrame { conn, payload });
    drain(n)
}

/// A client with `good_meta` in its share table logs in; the tracker
/// answers the share's re-announce with `outcome`: what the client
/// then says.
fn reannounce_answered(outcome: Outcome) -> Vec<Output> {
    let cfg = ClientConfig {
        session: SessionConfig::new(vec![tracker()], 0),
        seeder: SeederConfig::default(),
        download: DownloadConfig::default(),
        seeder_addr: None,
    };
    let mut n = ClientNode::new(cfg, 7, T0);
    let group = GroupName::new("g").unwrap();
    assert!(n.add_local_share(ShareId::Upload(1), group, good_meta()));
    let conn = connect(&mut n);
    let user = UserName::new("alice").unwrap();
    let login = Request::Login {
        user: user.clone(),
        password: p2p_proto::Password::new("pw").unwrap(),
    };
    n.handle_input(
        T0,
        Input::Command {
            tag: 1,
            cmd: Command::Tracker(login),
        },
    );
    let sent = requests(&drain(&mut n));
    let [login] = sent.as_slice() else {
        panic!("expected the login alone, got {sent:?}");
    };
    let logged_in = Reply::LoggedIn {
        user,
        token: SessionToken([5; 16]),
        seeder_key: SeederKey([6; 32]),
    };
    let sent = requests(&respond(&mut n, conn, login.id, Ok(logged_in)));
    let upload = sent
        .iter()
        .find(|r| matches!(&r.req, Request::UploadFile { meta, .. } if meta == &good_meta()))
        .expect("the share is announced again after the login");
    respond(&mut n, conn, upload.id, outcome)
}

fn events(out: &[Output]) -> Vec<&ClientEvent> {
    out.iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(e),
            _ => None,
        })
        .collect()
}

#[test]
fn a_refused_reannounce_is_told_with_its_file_group_and_reason() {
    let group = GroupName::new("g").unwrap();
    let refused = Err(TrackerError::NotMember {
        group: group.clone(),
    });
    let out = reannounce_answered(refused);
    match events(&out).as_slice() {
        [
            ClientEvent::ShareNotAnnounced {
                group: g,
                file,
                reason,
            },
        ] => {
            assert_eq!((g, file), (&group, &good_meta().name));
            assert!(
                reason.as_str().contains("not a member of group g"),
                "{reason}"
            );
        }
        other => panic!("expected the refusal told, got {other:?}"),
    }
}

#[test]
fn an_accepted_reannounce_tells_nothing() {
    let out = reannounce_answered(Ok(Reply::Shared { new_file: false }));
    assert!(events(&out).is_empty(), "{out:?}");
}
