//! The watcher: one thread that keeps what the dashboard and the REPL's
//! notices need and the machine does not push.
//!
//! - The tracker view: groups (with pending join requests for the ones
//!   this user owns, files for the ones it is a member of), polled every
//!   [`WATCH_INTERVAL`] while logged in, and at once after an action.
//!   The tracker does not push join requests to owners, so a new one is
//!   noticed here, within one interval: a `join_request` event and a
//!   notice line for the REPL. A request of ours that became membership
//!   is a `request_accepted` event.
//! - Download progress, read locally every [`PROGRESS_INTERVAL`]: a
//!   `download_progress` event whenever a download's count of pieces
//!   changed.
//! - The client's own news ([`Watch::on_client_event`]): `tracker_switched`,
//!   `download_complete`, `download_failed`, `notice`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use p2p_proto::{FileSummary, GroupName, GroupSummary, Reply, Request, UserName};
use p2p_state::client::node::{ClientEvent, Command, CommandOk};
use p2p_state::client::session::SessionEvent;
use serde_json::json;

use super::events::EventLog;
use crate::client::Commander;

/// How often the tracker view is polled while logged in (a join request
/// reaches its group's owner within this).
pub const WATCH_INTERVAL: Duration = Duration::from_secs(2);
/// How often download progress is read (locally, no tracker request).
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(500);

/// What the tracker last said, for the page.
#[derive(Debug, Clone, Default)]
pub struct View {
    pub user: Option<UserName>,
    pub groups: Vec<GroupSummary>,
    /// Pending join requests of the groups this user owns.
    pub requests: BTreeMap<GroupName, Vec<UserName>>,
    /// Files of the groups this user is a member of.
    pub files: BTreeMap<GroupName, Vec<FileSummary>>,
    /// The last poll failed, saying why.
    pub error: Option<String>,
    /// The session's tracker's replication status (`in_sync`: it holds
    /// everything its primary committed).
    pub status: Option<p2p_proto::TrackerStatus>,
}

/// A line for the REPL (shown above its prompt).
pub type Notice = Box<dyn Fn(String) + Send + Sync>;

/// Shared by the watcher thread, the web server and the binary.
pub struct Watch {
    c: Commander,
    pub log: Arc<EventLog>,
    view: Mutex<View>,
    /// Serialises polls (the thread's and an action's).
    polling: Mutex<()>,
    /// Set to ask the thread for a poll now; with `wake`.
    poke: Mutex<bool>,
    wake: Condvar,
    notice: Option<Notice>,
    /// Poll files too (the dashboard shows them; the REPL alone does not
    /// need them).
    files: bool,
}

impl Watch {
    /// Starts the watcher thread. `files`: keep each group's files too;
    /// `notice`: where a join request's line goes.
    pub fn start(c: Commander, files: bool, notice: Option<Notice>) -> Arc<Watch> {
        let w = Arc::new(Watch {
            c,
            log: Arc::new(EventLog::new()),
            view: Mutex::new(View::default()),
            polling: Mutex::new(()),
            poke: Mutex::new(true),
            wake: Condvar::new(),
            notice,
            files,
        });
        let me = w.clone();
        std::thread::Builder::new()
            .name("watch".into())
            .spawn(move || me.run())
            .expect("spawning the watcher thread");
        w
    }

    pub fn view(&self) -> View {
        self.view.lock().expect("view").clone()
    }

    /// Asks for a poll of the tracker now (after an action).
    pub fn poke(&self) {
        *self.poke.lock().expect("poke") = true;
        self.wake.notify_all();
    }

    fn run(&self) {
        let mut last_poll: Option<Instant> = None;
        let mut progress: BTreeMap<u64, u32> = BTreeMap::new();
        loop {
            let Some(snap) = self.c.snapshot() else {
                return; // the client stopped
            };
            for d in &snap.downloads {
                let Some(p) = &d.progress else { continue };
                if progress.insert(d.dl, p.pieces_done) != Some(p.pieces_done) {
                    self.log.push(
                        "download_progress",
                        json!({
                            "dl": d.dl, "group": d.group.as_str(), "file": d.file.as_str(),
                            "pieces_done": p.pieces_done, "pieces_total": p.pieces_total,
                            "bytes_done": p.bytes_done, "bytes_total": p.bytes_total,
                            "rate_bps": p.rate_bps,
                        }),
                    );
                }
            }
            let poked = std::mem::take(&mut *self.poke.lock().expect("poke"));
            if poked || last_poll.is_none_or(|t| t.elapsed() >= WATCH_INTERVAL) {
                self.poll(snap.user);
                last_poll = Some(Instant::now());
            }
            let g = self.poke.lock().expect("poke");
            if !*g {
                let _ = self.wake.wait_timeout(g, PROGRESS_INTERVAL);
            }
        }
    }

    /// Asks the tracker for the view now and records what changed.
    pub fn poll(&self, user: Option<UserName>) {
        let _one = self.polling.lock().expect("polling");
        let ask = |r: Request| match self.c.run(Command::Tracker(r)) {
            Ok(CommandOk::Reply(r)) => Ok(r),
            Ok(other) => Err(format!("unexpected answer {other:?}")),
            Err(e) => Err(e.to_string()),
        };
        let status = match ask(Request::Status) {
            Ok(Reply::Status(s)) => Some(s),
            _ => None,
        };
        let Some(user) = user else {
            let mut v = self.view.lock().expect("view");
            let changed = v.user.is_some() || v.status != status;
            *v = View {
                status,
                ..View::default()
            };
            drop(v);
            if changed {
                self.log.push("view_changed", json!({}));
            }
            return;
        };
        let mut next = View {
            user: Some(user.clone()),
            status,
            ..View::default()
        };
        match ask(Request::ListGroups) {
            Ok(Reply::Groups(gs)) => next.groups = gs,
            Ok(other) => next.error = Some(format!("unexpected answer {other:?}")),
            Err(e) => next.error = Some(e),
        }
        for g in &next.groups {
            if g.owner == user
                && let Ok(Reply::Requests(us)) = ask(Request::ListRequests {
                    group: g.name.clone(),
                })
            {
                next.requests.insert(g.name.clone(), us);
            }
            if self.files
                && g.member
                && let Ok(Reply::Files(fs)) = ask(Request::ListFiles {
                    group: g.name.clone(),
                })
            {
                next.files.insert(g.name.clone(), fs);
            }
        }
        let mut v = self.view.lock().expect("view");
        let same_user = v.user.as_ref() == Some(&user);
        let (old_requests, old_pending): (BTreeSet<(GroupName, UserName)>, BTreeSet<GroupName>) =
            match same_user {
                true => (
                    v.requests
                        .iter()
                        .flat_map(|(g, us)| us.iter().map(|u| (g.clone(), u.clone())))
                        .collect(),
                    v.groups
                        .iter()
                        .filter(|g| g.pending)
                        .map(|g| g.name.clone())
                        .collect(),
                ),
                false => Default::default(),
            };
        if next.error.is_some() && same_user {
            // Keep what was known; say the poll failed.
            v.error = next.error;
            v.status = next.status;
            return;
        }
        let changed = !same_user
            || v.status != next.status
            || v.groups != next.groups
            || v.requests != next.requests
            || v.files != next.files;
        let mut news = Vec::new();
        for (g, us) in &next.requests {
            for u in us {
                if !old_requests.contains(&(g.clone(), u.clone())) {
                    news.push((g.clone(), u.clone()));
                }
            }
        }
        let accepted: Vec<GroupName> = next
            .groups
            .iter()
            .filter(|g| g.member && old_pending.contains(&g.name))
            .map(|g| g.name.clone())
            .collect();
        *v = next;
        drop(v);
        for (g, u) in news {
            self.log.push(
                "join_request",
                json!({ "group": g.as_str(), "user": u.as_str() }),
            );
            if let Some(n) = &self.notice {
                n(format!(
                    "note: {u} asks to join {g} (accept_request {g} {u}, or reject_request {g} {u})"
                ));
            }
        }
        for g in accepted {
            self.log.push(
                "request_accepted",
                json!({ "group": g.as_str(), "user": user.as_str() }),
            );
        }
        if changed {
            self.log.push("view_changed", json!({}));
        }
    }

    /// The client's own news, as events.
    pub fn on_client_event(&self, e: &ClientEvent) {
        match e {
            ClientEvent::Session(SessionEvent::FailedOver { from, to }) => {
                self.log.push(
                    "tracker_switched",
                    json!({ "from": from.to_string(), "to": to.to_string() }),
                );
            }
            ClientEvent::Session(SessionEvent::LoggedIn { .. } | SessionEvent::LoggedOut) => {
                self.poke();
            }
            ClientEvent::Session(SessionEvent::SessionLost) => {
                self.log.push(
                    "notice",
                    json!({ "text": "the session ended (logged in elsewhere or expired); log in again" }),
                );
                self.poke();
            }
            ClientEvent::Session(SessionEvent::Notice(t)) => {
                self.log.push("notice", json!({ "text": t.to_string() }));
            }
            ClientEvent::DownloadFinished {
                dl,
                group,
                file,
                result,
            } => {
                let data = json!({ "dl": dl, "group": group.as_str(), "file": file.as_str() });
                match result {
                    Ok(()) => self.log.push("download_complete", data),
                    Err(e) => {
                        let mut data = data;
                        data["error"] = json!(e.to_string());
                        self.log.push("download_failed", data)
                    }
                };
                self.poke();
            }
            _ => {}
        }
    }

    /// The `request_accepted` event of an owner's own `accept_request`.
    pub fn accepted(&self, group: &GroupName, user: &UserName) {
        self.log.push(
            "request_accepted",
            json!({ "group": group.as_str(), "user": user.as_str() }),
        );
    }
}
