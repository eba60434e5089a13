//! The workload: one simulated user per client, acting at random with a
//! think time between commands (create_user, login, groups, join requests
//! and their answers, uploads of small random files, downloads, stop_share,
//! logout, reads), one command at a time, until its action budget is spent.
//!
//! A client that crashed and restarted recovers like a person would: it
//! logs in again, shares its files again from its disk, and restarts every
//! download that had not ended, into the same destination (so it resumes
//! from the part file's record). In the quiet phase only that recovery runs.
//!
//! Names and memberships come from a shared catalog of what succeeded; a
//! user acts on beliefs that may be stale, and errors are part of the game.

use bytes::Bytes;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use p2p_proto::{FileMeta, FileName, GroupName, Password, Reply, Request, UserName};
use p2p_state::Instant;
use p2p_state::client::node::{ClientEvent, Command, CommandOk};
use p2p_state::client::session::{ClientError, SessionEvent};

use crate::net::NodeIx;
use crate::swarm::Swarm;
use crate::world::World;

/// Times a recovery step is retried before the user gives up on it.
const RECOVERY_TRIES_MAX: u32 = 30;

#[derive(Clone, Debug)]
enum Act {
    CreateUser,
    Login(UserName),
    Logout,
    CreateGroup(GroupName),
    Join(GroupName),
    Answer(GroupName, UserName, bool),
    Leave(GroupName),
    Share(u64, GroupName, FileMeta),
    Download(GroupName, FileName, u64),
    StopShare(GroupName, FileName),
    Read,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum DlState {
    Asked,
    Running(u64),
    Complete,
    Failed,
}

struct DlRec {
    group: GroupName,
    file: FileName,
    state: DlState,
}

struct Agent {
    c: NodeIx,
    rng: ChaCha8Rng,
    inc: u32,
    user: UserName,
    created: bool,
    logged_in: bool,
    pending: Option<(u64, Act)>,
    next_at: u64,
    budget: u32,
    recovery: VecDeque<(Act, u32)>,
    /// Files shared and acknowledged: share id -> (group, meta).
    shares: BTreeMap<u64, (GroupName, FileMeta)>,
    downloads: BTreeMap<u64, DlRec>,
    next_dest: u64,
}

/// What every user can know: names that were created, who is in what.
#[derive(Default)]
struct Catalog {
    users: Vec<UserName>,
    groups: Vec<GroupName>,
    owners: BTreeMap<GroupName, UserName>,
    members: BTreeSet<(GroupName, UserName)>,
    requests: Vec<(GroupName, UserName)>,
    /// Files shared, with the user who shared them.
    files: Vec<(GroupName, FileMeta, UserName)>,
    next_name: u64,
}

#[derive(Clone, Debug, Default)]
pub struct LoadStats {
    pub commands: u64,
    pub ok: u64,
    pub failed: u64,
    pub downloads_started: u64,
    pub downloads_ok: u64,
    pub downloads_failed: u64,
    pub uploads: u64,
}

pub struct Workload {
    agents: Vec<Agent>,
    cat: Catalog,
    think_ms: (u64, u64),
    /// Liveness phase: only recovery, no new actions.
    pub quiet: bool,
    pub stats: LoadStats,
}

fn pw() -> Password {
    Password::new("pw").expect("password")
}

fn pick<'a, T>(rng: &mut ChaCha8Rng, v: &'a [T]) -> Option<&'a T> {
    match v.len() {
        0 => None,
        n => v.get(rng.random_range(0..n)),
    }
}

impl Workload {
    pub fn new(s: &Swarm) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(s.workload_seed);
        let agents = (0..s.clients)
            .map(|c| Agent {
                c,
                rng: ChaCha8Rng::seed_from_u64(rng.random()),
                inc: 0,
                user: UserName::new(format!("u{c}")).expect("user name"),
                created: false,
                logged_in: false,
                pending: None,
                next_at: 0,
                budget: rng.random_range(s.actions.0..=s.actions.1.max(s.actions.0)),
                recovery: VecDeque::new(),
                shares: BTreeMap::new(),
                downloads: BTreeMap::new(),
                next_dest: 1,
            })
            .collect();
        Workload {
            agents,
            cat: Catalog::default(),
            think_ms: s.think_ms,
            quiet: false,
            stats: LoadStats::default(),
        }
    }

    fn ready(&self, a: &Agent, w: &World) -> bool {
        a.pending.is_none()
            && w.clients[a.c].m().is_some()
            && (!a.recovery.is_empty() || (!self.quiet && a.budget > 0))
    }

    /// When the next user acts.
    pub fn next_at(&self, w: &World) -> Option<Instant> {
        self.agents
            .iter()
            .filter(|a| self.ready(a, w))
            .map(|a| Instant(a.next_at.max(w.now.0)))
            .min()
    }

    /// Every budget spent and nothing outstanding.
    pub fn spent(&self) -> bool {
        self.agents
            .iter()
            .all(|a| a.budget == 0 && a.pending.is_none() && a.recovery.is_empty())
    }

    /// Nothing outstanding on live clients (the quiet phase is done with us).
    pub fn idle(&self, w: &World) -> bool {
        self.agents
            .iter()
            .all(|a| w.clients[a.c].m().is_none() || (a.pending.is_none() && a.recovery.is_empty()))
    }

    /// Who still waits, for a liveness report.
    pub fn waiting(&self) -> Vec<String> {
        self.agents
            .iter()
            .filter(|a| a.pending.is_some() || !a.recovery.is_empty())
            .map(|a| {
                format!(
                    "c{} pending {:?} recovery {:?}",
                    a.c,
                    a.pending,
                    a.recovery.front()
                )
            })
            .collect()
    }

    /// Lets every user whose time has come take one action.
    pub fn act(&mut self, w: &mut World) {
        for i in 0..self.agents.len() {
            let a = &self.agents[i];
            if self.ready(a, w) && a.next_at <= w.now.0 {
                self.act_one(i, w);
            }
        }
    }

    /// Takes in command results and events from every client.
    pub fn collect(&mut self, w: &mut World) {
        for i in 0..self.agents.len() {
            let c = self.agents[i].c;
            if w.clients[c].inc != self.agents[i].inc {
                self.restarted(i, w);
            }
            if w.clients[c].done.is_empty() && w.clients[c].events.is_empty() {
                continue;
            }
            let done = std::mem::take(&mut w.clients[c].done);
            let events = std::mem::take(&mut w.clients[c].events);
            for e in events {
                self.on_event(i, e);
            }
            for (tag, result) in done {
                self.on_done(i, w, tag, result);
            }
        }
    }

    // ------------------------------------------------------------ recovery

    fn restarted(&mut self, i: usize, w: &World) {
        let a = &mut self.agents[i];
        a.inc = w.clients[a.c].inc;
        a.pending = None;
        a.logged_in = false;
        a.recovery.clear();
        a.next_at = w.now.0;
        if !a.created {
            return;
        }
        a.recovery.push_back((Act::Login(a.user.clone()), 0));
        for (&share, (g, m)) in &a.shares {
            a.recovery
                .push_back((Act::Share(share, g.clone(), m.clone()), 0));
        }
        for (&dest, d) in &a.downloads {
            if matches!(d.state, DlState::Asked | DlState::Running(_)) {
                let act = Act::Download(d.group.clone(), d.file.clone(), dest);
                a.recovery.push_back((act, 0));
            }
        }
    }

    fn on_event(&mut self, i: usize, e: ClientEvent) {
        let a = &mut self.agents[i];
        match e {
            ClientEvent::Session(SessionEvent::LoggedIn { .. }) => a.logged_in = true,
            ClientEvent::Session(SessionEvent::LoggedOut | SessionEvent::SessionLost) => {
                a.logged_in = false
            }
            ClientEvent::DownloadFinished { dl, result, .. } => {
                let ok = result.is_ok();
                for d in a.downloads.values_mut() {
                    if d.state == DlState::Running(dl) {
                        d.state = if ok {
                            DlState::Complete
                        } else {
                            DlState::Failed
                        };
                    }
                }
                match ok {
                    true => self.stats.downloads_ok += 1,
                    false => self.stats.downloads_failed += 1,
                }
            }
            ClientEvent::Session(_)
            | ClientEvent::SeederAddress(_)
            | ClientEvent::ShareNotAnnounced { .. } => {}
        }
    }

    // ------------------------------------------------------------ acting

    fn act_one(&mut self, i: usize, w: &mut World) {
        let (act, recovering) = match self.agents[i].recovery.pop_front() {
            Some((act, tries)) => {
                self.agents[i].recovery.push_front((act.clone(), tries + 1));
                if tries >= RECOVERY_TRIES_MAX {
                    self.agents[i].recovery.pop_front();
                    return;
                }
                (act, true)
            }
            None => match self.choose(i, w) {
                Some(act) => (act, false),
                None => {
                    self.agents[i].budget = self.agents[i].budget.saturating_sub(1);
                    return;
                }
            },
        };
        let a = &mut self.agents[i];
        if !recovering {
            a.budget -= 1;
        }
        let cmd = match &act {
            Act::Read => read_cmd(&mut a.rng, &self.cat, &a.user),
            act => command_of(act, &a.user),
        };
        if let Act::Download(g, f, dest) = &act {
            a.downloads.entry(*dest).or_insert(DlRec {
                group: g.clone(),
                file: f.clone(),
                state: DlState::Asked,
            });
            self.stats.downloads_started += 1;
        }
        self.stats.commands += 1;
        let c = a.c;
        let tag = w.issue(c, cmd);
        self.agents[i].pending = Some((tag, act));
    }

    /// A new action for user `i`, or `None` when nothing fits.
    fn choose(&mut self, i: usize, w: &mut World) -> Option<Act> {
        let a = &mut self.agents[i];
        if !a.created {
            return Some(Act::CreateUser);
        }
        if !a.logged_in {
            if a.rng.random_ratio(1, 20)
                && let Some(other) = pick(&mut a.rng, &self.cat.users)
            {
                return Some(Act::Login(other.clone()));
            }
            return Some(Act::Login(a.user.clone()));
        }
        for _ in 0..8 {
            let r = self.agents[i].rng.random_range(0..100u32);
            let act = match r {
                0..10 => self.new_group(i),
                10..25 => self.join(i),
                25..40 => self.answer(i),
                40..55 => self.upload(i, w),
                55..75 => self.download(i),
                75..80 => self.stop_share(i),
                80..85 => self.leave(i),
                85..88 => Some(Act::Logout),
                _ => Some(Act::Read),
            };
            if act.is_some() {
                return act;
            }
        }
        None
    }

    fn new_group(&mut self, _i: usize) -> Option<Act> {
        self.cat.next_name += 1;
        let name = format!("g{}", self.cat.next_name);
        Some(Act::CreateGroup(GroupName::new(name).expect("group")))
    }

    fn join(&mut self, i: usize) -> Option<Act> {
        let a = &mut self.agents[i];
        let g = pick(&mut a.rng, &self.cat.groups)?;
        (!self.cat.members.contains(&(g.clone(), a.user.clone()))).then(|| Act::Join(g.clone()))
    }

    fn answer(&mut self, i: usize) -> Option<Act> {
        let a = &mut self.agents[i];
        let mine: Vec<usize> = (0..self.cat.requests.len())
            .filter(|&k| self.cat.owners.get(&self.cat.requests[k].0) == Some(&a.user))
            .collect();
        let k = *pick(&mut a.rng, &mine)?;
        let (g, u) = self.cat.requests.remove(k);
        Some(Act::Answer(g, u, a.rng.random_ratio(3, 4)))
    }

    fn my_groups(&self, i: usize) -> Vec<GroupName> {
        let u = &self.agents[i].user;
        self.cat
            .members
            .iter()
            .filter(|(_, m)| m == u)
            .map(|(g, _)| g.clone())
            .collect()
    }

    fn upload(&mut self, i: usize, w: &mut World) -> Option<Act> {
        let groups = self.my_groups(i);
        let a = &mut self.agents[i];
        let group = pick(&mut a.rng, &groups)?.clone();
        // Sometimes share again what was downloaded (another full seeder).
        let done: Vec<u64> = a
            .downloads
            .iter()
            .filter(|(_, d)| d.state == DlState::Complete && d.group == group)
            .map(|(&k, _)| k)
            .collect();
        if let Some(&dest) = pick(&mut a.rng, &done)
            && let Some(data) = w.clients[a.c].disk.finished.get(&dest).cloned()
            && let Some((_, meta, _)) = self
                .cat
                .files
                .iter()
                .find(|(g, m, _)| *g == group && m.name == a.downloads[&dest].file)
        {
            let (share, meta2) = w.put_file(a.c, &group, &meta.name, data, meta.piece_len);
            return Some(Act::Share(
                share.upload().expect("put_file shares an upload"),
                group,
                meta2,
            ));
        }
        self.cat.next_name += 1;
        let name = match a.rng.random_ratio(1, 6) {
            true => pick(&mut a.rng, &self.cat.files)
                .map(|(_, m, _)| m.name.clone())
                .unwrap_or_else(|| FileName::new("same").expect("file")),
            false => FileName::new(format!("f{}", self.cat.next_name)).expect("file"),
        };
        let size = match a.rng.random_range(0..100u32) {
            0..4 => 0,
            4..64 => a.rng.random_range(1..=16 * 1024),
            64..95 => a.rng.random_range(16 * 1024..=64 * 1024),
            _ => a.rng.random_range(64 * 1024..=256 * 1024),
        };
        let mut data = vec![0u8; size];
        a.rng.fill_bytes(&mut data);
        let piece_len = 1024u32 << a.rng.random_range(0..=4);
        let (share, meta) = w.put_file(a.c, &group, &name, Bytes::from(data), piece_len);
        self.stats.uploads += 1;
        Some(Act::Share(
            share.upload().expect("put_file shares an upload"),
            group,
            meta,
        ))
    }

    fn download(&mut self, i: usize) -> Option<Act> {
        let groups = self.my_groups(i);
        let a = &mut self.agents[i];
        // Mostly files someone else shares (one's own has no other source).
        let others = a.rng.random_ratio(9, 10);
        let files: Vec<&(GroupName, FileMeta, UserName)> = self
            .cat
            .files
            .iter()
            .filter(|(g, _, by)| groups.contains(g) && (!others || *by != a.user))
            .collect();
        let (g, m, _) = pick(&mut a.rng, &files)?;
        let dest = a.next_dest;
        a.next_dest += 1;
        Some(Act::Download(g.clone(), m.name.clone(), dest))
    }

    fn stop_share(&mut self, i: usize) -> Option<Act> {
        let a = &mut self.agents[i];
        let shares: Vec<(GroupName, FileName)> = a
            .shares
            .values()
            .map(|(g, m)| (g.clone(), m.name.clone()))
            .collect();
        let (g, f) = pick(&mut a.rng, &shares)?;
        Some(Act::StopShare(g.clone(), f.clone()))
    }

    fn leave(&mut self, i: usize) -> Option<Act> {
        let groups = self.my_groups(i);
        let a = &mut self.agents[i];
        pick(&mut a.rng, &groups).map(|g| Act::Leave(g.clone()))
    }

    // ------------------------------------------------------------ results

    fn on_done(&mut self, i: usize, w: &World, tag: u64, result: Result<CommandOk, ClientError>) {
        let a = &mut self.agents[i];
        let Some((want, act)) = a.pending.take() else {
            return;
        };
        if want != tag {
            a.pending = Some((want, act));
            return;
        }
        let (lo, hi) = self.think_ms;
        a.next_at = w.now.0 + a.rng.random_range(lo..=hi.max(lo));
        let recovering = a.recovery.front().is_some_and(|(r, _)| same_act(r, &act));
        let ok = result.is_ok();
        if ok {
            self.stats.ok += 1;
        } else {
            self.stats.failed += 1;
        }
        let retry = matches!(
            result,
            Err(ClientError::NoTracker { .. } | ClientError::Busy)
        );
        if recovering && (ok || !retry) {
            // Done, or refused for good: on to the next recovery step.
            self.agents[i].recovery.pop_front();
        }
        if recovering && !ok && matches!(act, Act::Login(_)) && !retry {
            self.agents[i].recovery.clear();
        }
        self.learn(i, act, result);
    }

    /// Updates the user's beliefs and the catalog from a result.
    fn learn(&mut self, i: usize, act: Act, result: Result<CommandOk, ClientError>) {
        let a = &mut self.agents[i];
        let cat = &mut self.cat;
        let reply = match result {
            Ok(CommandOk::Reply(r)) => Some(r),
            Ok(CommandOk::Started { dl }) => {
                if let Act::Download(_, _, dest) = &act
                    && let Some(d) = a.downloads.get_mut(dest)
                {
                    d.state = DlState::Running(dl);
                }
                return;
            }
            Ok(CommandOk::Downloads(_) | CommandOk::Rates(_)) => return,
            Err(ClientError::Tracker(p2p_proto::TrackerError::UserExists { .. })) => {
                if matches!(act, Act::CreateUser) {
                    a.created = true;
                }
                return;
            }
            Err(_) => {
                if let Act::Download(_, _, dest) = &act
                    && let Some(d) = a.downloads.get_mut(dest)
                    && d.state == DlState::Asked
                {
                    d.state = DlState::Failed;
                }
                return;
            }
        };
        let u = a.user.clone();
        match (act, reply) {
            (Act::CreateUser, _) => {
                a.created = true;
                cat.users.push(u);
            }
            (Act::Login(user), _) => {
                a.user = user;
                a.logged_in = true;
            }
            (Act::Logout, _) => a.logged_in = false,
            (Act::CreateGroup(g), _) => {
                cat.groups.push(g.clone());
                cat.owners.insert(g.clone(), u.clone());
                cat.members.insert((g, u));
            }
            (Act::Join(g), _) => cat.requests.push((g, u)),
            (Act::Answer(g, who, true), _) => {
                cat.members.insert((g, who));
            }
            (Act::Leave(g), Some(Reply::Left { new_owner, deleted })) => {
                cat.members.remove(&(g.clone(), u));
                match (new_owner, deleted) {
                    (Some(o), _) => {
                        cat.owners.insert(g, o);
                    }
                    (None, true) => {
                        cat.owners.remove(&g);
                    }
                    _ => {}
                }
            }
            (Act::Share(share, g, meta), _) => {
                if !cat
                    .files
                    .iter()
                    .any(|(fg, m, by)| *fg == g && *m == meta && *by == u)
                {
                    cat.files.push((g.clone(), meta.clone(), u));
                }
                a.shares.insert(share, (g, meta));
            }
            (Act::StopShare(g, f), _) => {
                a.shares.retain(|_, (sg, m)| !(*sg == g && m.name == f));
            }
            _ => {}
        }
    }
}

fn t(r: Request) -> Command {
    Command::Tracker(r)
}

/// The command an action sends (`Read` is drawn by `read_cmd`).
fn command_of(act: &Act, me: &UserName) -> Command {
    match act {
        Act::CreateUser => t(Request::CreateUser {
            user: me.clone(),
            password: pw(),
        }),
        Act::Login(user) => t(Request::Login {
            user: user.clone(),
            password: pw(),
        }),
        Act::Logout => t(Request::Logout),
        Act::CreateGroup(g) => t(Request::CreateGroup { group: g.clone() }),
        Act::Join(g) => t(Request::JoinGroup { group: g.clone() }),
        Act::Answer(g, u, yes) => match yes {
            true => t(Request::AcceptRequest {
                group: g.clone(),
                user: u.clone(),
            }),
            false => t(Request::RejectRequest {
                group: g.clone(),
                user: u.clone(),
            }),
        },
        Act::Leave(g) => t(Request::LeaveGroup { group: g.clone() }),
        Act::Share(share, g, meta) => Command::Share {
            group: g.clone(),
            meta: meta.clone(),
            share: p2p_state::seeder::ShareId::Upload(*share),
        },
        Act::Download(g, f, dest) => Command::Download {
            group: g.clone(),
            file: f.clone(),
            dest: *dest,
            expected: None,
        },
        Act::StopShare(g, f) => t(Request::StopShare {
            group: g.clone(),
            file: f.clone(),
        }),
        Act::Read => Command::ShowDownloads,
    }
}

fn same_act(a: &Act, b: &Act) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

fn read_cmd(rng: &mut ChaCha8Rng, cat: &Catalog, user: &UserName) -> Command {
    match rng.random_range(0..4u32) {
        0 => Command::ShowDownloads,
        1 => match pick(rng, &cat.groups) {
            Some(g) => t(Request::ListFiles { group: g.clone() }),
            None => t(Request::ListGroups),
        },
        2 => match cat.owners.iter().find(|(_, o)| *o == user) {
            Some((g, _)) => t(Request::ListRequests { group: g.clone() }),
            None => t(Request::ListGroups),
        },
        _ => t(Request::ListGroups),
    }
}
