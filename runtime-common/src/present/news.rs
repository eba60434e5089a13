//! The lines a client prints for background news (failover, a lost
//! session, a finished download, a join request for a group the user
//! owns), above the prompt or on stderr.

use p2p_proto::{GroupName, UserName};
use p2p_state::client::node::ClientEvent;
use p2p_state::client::session::SessionEvent;

use super::downloads::download_name;

/// The line shown for background news, if any.
pub fn event_line(e: &ClientEvent) -> Option<String> {
    match e {
        ClientEvent::Session(SessionEvent::FailedOver { from, to }) => Some(format!(
            "note: tracker {from} unreachable; switched to {to}"
        )),
        ClientEvent::Session(SessionEvent::Unreachable) => {
            Some("note: no tracker reachable; retrying in the background".into())
        }
        ClientEvent::Session(SessionEvent::SessionLost) => {
            Some("note: the session ended (logged in elsewhere or expired); login again".into())
        }
        ClientEvent::Session(SessionEvent::Notice(t)) => Some(format!("note: {t}")),
        ClientEvent::Session(SessionEvent::TrackerKeyRefused(m)) => Some(format!("warning: {m}")),
        ClientEvent::SeederAddress(Ok(a)) => Some(format!("note: peers reach your seeder at {a}")),
        ClientEvent::SeederAddress(Err(e)) => Some(format!(
            "warning: the tracker did not record your seeder address, so nobody can download \
             from you: {e}"
        )),
        ClientEvent::ShareNotAnnounced {
            group,
            file,
            reason,
        } => Some(format!(
            "warning: the tracker refused to list you again as a source of {file} in {group}, \
             so nobody can download it from you: {reason} (share it again \
             with upload_file {group} <path>)"
        )),
        ClientEvent::DownloadFinished {
            group,
            file,
            result: Ok(()),
            ..
        } => Some(format!(
            "note: download of {} complete",
            download_name(group, file)
        )),
        ClientEvent::DownloadFinished {
            group,
            file,
            result: Err(e),
            ..
        } => Some(format!(
            "note: download of {} failed: {e}",
            download_name(group, file)
        )),
        _ => None,
    }
}

/// A join request for a group the user owns (the watcher's notice).
pub fn join_request(group: &GroupName, user: &UserName) -> String {
    let (g, u) = (group, user);
    format!("note: {u} asks to join {g} (accept_request {g} {u}, or reject_request {g} {u})")
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2p_proto::{FileName, Text};

    #[test]
    fn news_lines() {
        let g = GroupName::new("g1").unwrap();
        let u = UserName::new("bob").unwrap();
        assert_eq!(
            join_request(&g, &u),
            "note: bob asks to join g1 (accept_request g1 bob, or reject_request g1 bob)"
        );
        let done = |result| ClientEvent::DownloadFinished {
            dl: 1,
            group: g.clone(),
            file: FileName::new("f.bin").unwrap(),
            result,
        };
        assert_eq!(
            event_line(&done(Ok(()))).unwrap(),
            "note: download of [g1] f.bin complete"
        );
        let e = Text::new("no seeder left");
        assert_eq!(
            event_line(&done(Err(e))).unwrap(),
            "note: download of [g1] f.bin failed: no seeder left"
        );
        let failover = SessionEvent::FailedOver {
            from: "10.0.0.1:7000".parse().unwrap(),
            to: "10.0.0.2:7000".parse().unwrap(),
        };
        assert_eq!(
            event_line(&ClientEvent::Session(failover)).unwrap(),
            "note: tracker 10.0.0.1:7000 unreachable; switched to 10.0.0.2:7000"
        );
        let refused = ClientEvent::ShareNotAnnounced {
            group: g.clone(),
            file: FileName::new("f.bin").unwrap(),
            reason: Text::new("not a member of group g1"),
        };
        assert_eq!(
            event_line(&refused).unwrap(),
            "warning: the tracker refused to list you again as a source of f.bin in g1, so \
             nobody can download it from you: not a member of group g1 (share it \
             again with upload_file g1 <path>)"
        );
    }
}
