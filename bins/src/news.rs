//! The lines a client prints for background news (failover, a lost
//! session, a finished download), above the prompt or on stderr.

use p2p_state::client::node::ClientEvent;
use p2p_state::client::session::SessionEvent;

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
        ClientEvent::DownloadFinished {
            group,
            file,
            result: Ok(()),
            ..
        } => Some(format!("note: download of [{group}] {file} complete")),
        ClientEvent::DownloadFinished {
            group,
            file,
            result: Err(e),
            ..
        } => Some(format!("note: download of [{group}] {file} failed: {e}")),
        _ => None,
    }
}
