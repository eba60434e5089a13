//! The watcher: one thread that keeps what the dashboard and the REPL's
//! notices need and the machine does not push. The client binary starts
//! one whenever it runs, with or without `--web` ([`Mode`]).
//!
//! - The tracker view. The tracker does not push join requests to
//!   owners, so the watcher asks for those of the groups this user owns
//!   every [`WATCH_INTERVAL`], and a new one is a `join_request` event and
//!   a notice line for the REPL. Without the dashboard ([`Mode::Notices`])
//!   that is all it asks, and nothing while the user owns no group. The
//!   dashboard's view ([`Mode::Dashboard`]) adds the tracker's status,
//!   every group, files and members of the groups the user is in, polled
//!   every interval while logged in and at once after an action; a
//!   request of ours that became membership is a `request_accepted` event.
//! - Download progress (dashboard), read locally every
//!   [`PROGRESS_INTERVAL`]: a `download_progress` event whenever a
//!   download's count of pieces changed.
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

/// Which tracker view the watcher keeps, and so what it asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `--web`: everything the page shows (the tracker's status, groups,
    /// join requests, files and members), every [`WATCH_INTERVAL`] while
    /// logged in, and download progress.
    Dashboard,
    /// No page: only the join requests of the groups this user owns, for
    /// the REPL's notices. Nothing is asked while logged out or owning no
    /// group; `list_groups` only at login, after a command of the user's
    /// ([`Watch::poke`]) and after an ask failed.
    Notices,
}

/// What the tracker last said, for the page.
#[derive(Debug, Clone, Default)]
pub struct View {
    pub user: Option<UserName>,
    pub groups: Vec<GroupSummary>,
    /// Pending join requests of the groups this user owns.
    pub requests: BTreeMap<GroupName, Vec<UserName>>,
    /// Files of the groups this user is a member of (dashboard only).
    pub files: BTreeMap<GroupName, Vec<FileSummary>>,
    /// Members of the groups this user is a member of, longest-standing
    /// first (dashboard only; asked again when a group's member count
    /// changed, or after an action).
    pub members: BTreeMap<GroupName, Vec<UserName>>,
    /// The last poll failed, saying why.
    pub error: Option<String>,
    /// The session's tracker's replication status (`in_sync`: it holds
    /// everything its primary committed).
    pub status: Option<p2p_proto::TrackerStatus>,
    /// An ask about one of the groups failed (ownership or membership
    /// changed, or the tracker did not answer): ask `list_groups` again.
    pub stale: bool,
}

/// The asks of one poll about the groups known (after `list_groups`, or
/// from the last view in [`Mode::Notices`]): join requests of the owned
/// groups; in the dashboard, files of every group this user is in, and
/// its members when not known or their count changed (or `refresh`).
pub fn group_asks(
    mode: Mode,
    user: &UserName,
    groups: &[GroupSummary],
    before: &View,
    refresh: bool,
) -> Vec<Request> {
    let mut asks = Vec::new();
    for g in groups {
        let group = || g.name.clone();
        if g.owner == *user {
            asks.push(Request::ListRequests { group: group() });
        }
        if mode == Mode::Notices || !g.member {
            continue;
        }
        asks.push(Request::ListFiles { group: group() });
        let known = before.members.get(&g.name).map(Vec::len);
        if refresh || known != Some(g.members as usize) {
            asks.push(Request::ListMembers { group: group() });
        }
    }
    asks
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
    mode: Mode,
}

impl Watch {
    /// Starts the watcher thread. `mode`: what it keeps; `notice`: where
    /// a join request's line goes.
    pub fn start(c: Commander, mode: Mode, notice: Option<Notice>) -> Arc<Watch> {
        let w = Arc::new(Watch {
            c,
            log: Arc::new(EventLog::new()),
            view: Mutex::new(View::default()),
            polling: Mutex::new(()),
            poke: Mutex::new(true),
            wake: Condvar::new(),
            notice,
            mode,
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

    /// Asks for a poll of the tracker now, `list_groups` included (after
    /// an action, or a REPL command that may change what this user owns).
    pub fn poke(&self) {
        *self.poke.lock().expect("poke") = true;
        self.wake.notify_all();
    }

    fn run(&self) {
        let mut last_poll: Option<Instant> = None;
        let mut last_user: Option<UserName> = None;
        let mut progress: BTreeMap<u64, u32> = BTreeMap::new();
        loop {
            let Some(snap) = self.c.snapshot() else {
                return; // the client stopped
            };
            if self.mode == Mode::Dashboard {
                self.progress_events(&snap.downloads, &mut progress);
            }
            let poked = std::mem::take(&mut *self.poke.lock().expect("poke"));
            let new_user = snap.user != last_user;
            if poked || new_user || last_poll.is_none_or(|t| t.elapsed() >= WATCH_INTERVAL) {
                last_user = snap.user.clone();
                self.poll_view(snap.user, poked || new_user);
                last_poll = Some(Instant::now());
            }
            let g = self.poke.lock().expect("poke");
            if !*g {
                let _ = self.wake.wait_timeout(g, PROGRESS_INTERVAL);
            }
        }
    }

    /// A `download_progress` event for each download whose count of
    /// pieces changed.
    fn progress_events(
        &self,
        downloads: &[p2p_state::client::node::DownloadLine],
        seen: &mut BTreeMap<u64, u32>,
    ) {
        for d in downloads {
            let Some(p) = &d.progress else { continue };
            if seen.insert(d.dl, p.pieces_done) != Some(p.pieces_done) {
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
    }

    /// Asks the tracker for the whole view now (after an action) and
    /// records what changed.
    pub fn poll(&self, user: Option<UserName>) {
        self.poll_view(user, true);
    }

    /// One poll; `refresh`: ask `list_groups` (and every member list)
    /// even in [`Mode::Notices`].
    fn poll_view(&self, user: Option<UserName>, refresh: bool) {
        let _one = self.polling.lock().expect("polling");
        let dashboard = self.mode == Mode::Dashboard;
        let ask = |r: Request| match self.c.run(Command::Tracker(r)) {
            Ok(CommandOk::Reply(r)) => Ok(r),
            Ok(other) => Err(format!("unexpected answer {other:?}")),
            Err(e) => Err(e.to_string()),
        };
        let status = match dashboard {
            true => match ask(Request::Status) {
                Ok(Reply::Status(s)) => Some(s),
                _ => None,
            },
            false => None,
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
        let before = self.view();
        let same_user = before.user.as_ref() == Some(&user);
        let before = match same_user {
            true => before,
            false => View::default(),
        };
        let mut next = View {
            user: Some(user.clone()),
            status,
            ..View::default()
        };
        if dashboard || refresh || before.stale || !same_user {
            match ask(Request::ListGroups) {
                Ok(Reply::Groups(gs)) => next.groups = gs,
                Ok(other) => next.error = Some(format!("unexpected answer {other:?}")),
                Err(e) => next.error = Some(e),
            }
        } else {
            next.groups = before.groups.clone();
        }
        if next.error.is_some() && same_user {
            // Keep what was known; say the poll failed.
            let mut v = self.view.lock().expect("view");
            v.error = next.error;
            v.status = next.status;
            v.stale = true;
            return;
        }
        for r in group_asks(self.mode, &user, &next.groups, &before, refresh) {
            self.record(&mut next, &before, r, &ask);
        }
        // Member lists not asked again are still right (same count).
        for g in next.groups.iter().filter(|g| g.member) {
            if let (false, Some(us)) = (
                next.members.contains_key(&g.name),
                before.members.get(&g.name),
            ) {
                next.members.insert(g.name.clone(), us.clone());
            }
        }
        self.publish(&user, before, next);
    }

    /// Asks one group question and keeps its answer in `next`; a failed
    /// one keeps the last answer and marks the view stale.
    fn record(
        &self,
        next: &mut View,
        before: &View,
        r: Request,
        ask: &dyn Fn(Request) -> Result<Reply, String>,
    ) {
        match (r.clone(), ask(r)) {
            (Request::ListRequests { group }, Ok(Reply::Requests(us))) => {
                next.requests.insert(group, us);
            }
            (Request::ListFiles { group }, Ok(Reply::Files(fs))) => {
                next.files.insert(group, fs);
            }
            (Request::ListMembers { group }, Ok(Reply::Members(us))) => {
                next.members.insert(group, us);
            }
            (Request::ListRequests { group }, _) => {
                next.stale = true;
                if let Some(us) = before.requests.get(&group) {
                    next.requests.insert(group, us.clone());
                }
            }
            (Request::ListFiles { group }, _) => {
                next.stale = true;
                if let Some(fs) = before.files.get(&group) {
                    next.files.insert(group, fs.clone());
                }
            }
            _ => next.stale = true,
        }
    }

    /// Replaces the view with `next`: events and notices for what is new.
    fn publish(&self, user: &UserName, before: View, next: View) {
        let old_requests: BTreeSet<(GroupName, UserName)> = before
            .requests
            .iter()
            .flat_map(|(g, us)| us.iter().map(|u| (g.clone(), u.clone())))
            .collect();
        let old_pending: BTreeSet<GroupName> = before
            .groups
            .iter()
            .filter(|g| g.pending)
            .map(|g| g.name.clone())
            .collect();
        let mut v = self.view.lock().expect("view");
        let changed = v.user.as_ref() != Some(user)
            || v.status != next.status
            || v.groups != next.groups
            || v.requests != next.requests
            || v.files != next.files
            || v.members != next.members;
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
                n(crate::present::join_request(&g, &u));
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
            ClientEvent::ShareNotAnnounced { .. } => {
                if let Some(text) = crate::present::event_line(e) {
                    self.log.push("notice", json!({ "text": text }));
                }
                self.poke();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> UserName {
        UserName::new(s).unwrap()
    }
    fn g(name: &str, owner: &str, members: u32, member: bool) -> GroupSummary {
        GroupSummary {
            name: GroupName::new(name).unwrap(),
            owner: u(owner),
            members,
            member,
            pending: false,
        }
    }
    fn names(asks: &[Request]) -> Vec<String> {
        asks.iter()
            .map(|r| match r {
                Request::ListRequests { group } => format!("requests {group}"),
                Request::ListFiles { group } => format!("files {group}"),
                Request::ListMembers { group } => format!("members {group}"),
                other => format!("{other:?}"),
            })
            .collect()
    }

    /// Without the dashboard, only the owned groups' join requests are
    /// asked for, and nothing at all by a user who owns no group.
    #[test]
    fn notices_ask_only_for_the_owned_groups_requests() {
        let groups = [g("mine", "al", 2, true), g("theirs", "bo", 3, true)];
        let asks = group_asks(Mode::Notices, &u("al"), &groups, &View::default(), true);
        assert_eq!(names(&asks), ["requests mine"]);
        let asks = group_asks(Mode::Notices, &u("cy"), &groups, &View::default(), true);
        assert!(asks.is_empty(), "{asks:?}");
    }

    /// The dashboard asks files of every group the user is in, and its
    /// members only when unknown, when the count changed, or on refresh.
    #[test]
    fn the_dashboard_asks_members_again_only_when_they_changed() {
        let groups = [
            g("mine", "al", 2, true),
            g("theirs", "bo", 2, true),
            g("other", "bo", 5, false),
        ];
        let al = u("al");
        let asks = group_asks(Mode::Dashboard, &al, &groups, &View::default(), false);
        assert_eq!(
            names(&asks),
            [
                "requests mine",
                "files mine",
                "members mine",
                "files theirs",
                "members theirs"
            ]
        );
        let mut before = View::default();
        before
            .members
            .insert(groups[0].name.clone(), vec![al.clone(), u("bo")]);
        before.members.insert(groups[1].name.clone(), vec![u("bo")]);
        let asks = group_asks(Mode::Dashboard, &al, &groups, &before, false);
        assert_eq!(
            names(&asks),
            [
                "requests mine",
                "files mine",
                "files theirs",
                "members theirs"
            ]
        );
        let asks = group_asks(Mode::Dashboard, &al, &groups, &before, true);
        assert_eq!(
            asks.iter()
                .filter(|r| matches!(r, Request::ListMembers { .. }))
                .count(),
            2
        );
    }
}
