//! proptest: random command sequences from several users, driven
//! prepare -> apply the way a primary does (sometimes several prepared
//! against one state before any is applied, as a pipelining primary would),
//! with retries and the primary's own session ops mixed in. After every
//! step the invariants hold, a rejection changed nothing, and a retry got
//! the stored outcome; at the end a fresh state replaying the log and a
//! decoded snapshot both equal the state, digest included.

use p2p_proto::{ClientRequest, Op, OpKind, Origin, Outcome, PieceSet, Reply, Request, UserName};
use proptest::prelude::*;
use proptest::strategy::ValueTree;

use super::testkit::*;
use crate::tracker::state::{Prepared, TrackerState};

const ACTORS: usize = 4;
const GROUPS: [&str; 2] = ["g0", "g1"];
const FILES: [&str; 2] = ["f0", "f1"];

#[derive(Debug, Clone)]
enum Cmd {
    CreateUser,
    Login {
        good: bool,
    },
    Logout,
    CreateGroup(usize),
    Join(usize),
    Leave(usize),
    ListGroups,
    ListRequests(usize),
    /// Group, whom (a pending requester by index, or an actor), and whether
    /// the group's owner sends it (otherwise the chosen actor does).
    Accept(usize, usize, bool),
    Reject(usize, usize, bool),
    Upload(usize, usize, u8),
    ListFiles(usize),
    ListMembers(usize),
    GetFile(usize, usize),
    GetPeers(usize, usize),
    StopShare(usize, usize),
    Have(usize, usize, u32, u8),
    Register(u16),
}

#[derive(Debug, Clone)]
enum Action {
    Cmd(usize, Cmd),
    /// Cmds prepared against the same state, then applied in order.
    Batch(Vec<(usize, Cmd)>),
    /// Re-send one of the last requests (same client and id).
    Retry(usize),
    SetOnline(usize, bool),
    Expire(usize),
}

fn cmd() -> impl Strategy<Value = Cmd> {
    let (g, f, a) = (0..GROUPS.len(), 0..FILES.len(), 0..ACTORS);
    prop_oneof![
        1 => Just(Cmd::CreateUser),
        4 => prop_oneof![3 => Just(true), 1 => Just(false)].prop_map(|good| Cmd::Login { good }),
        1 => Just(Cmd::Logout),
        2 => g.clone().prop_map(Cmd::CreateGroup),
        3 => g.clone().prop_map(Cmd::Join),
        2 => g.clone().prop_map(Cmd::Leave),
        1 => Just(Cmd::ListGroups),
        1 => g.clone().prop_map(Cmd::ListRequests),
        4 => (g.clone(), a.clone(), any::<bool>()).prop_map(|(g, a, o)| Cmd::Accept(g, a, o)),
        1 => (g.clone(), a, any::<bool>()).prop_map(|(g, a, o)| Cmd::Reject(g, a, o)),
        3 => (g.clone(), f.clone(), 0u8..2).prop_map(|(g, f, v)| Cmd::Upload(g, f, v)),
        1 => g.clone().prop_map(Cmd::ListFiles),
        1 => g.clone().prop_map(Cmd::ListMembers),
        1 => (g.clone(), f.clone()).prop_map(|(g, f)| Cmd::GetFile(g, f)),
        1 => (g.clone(), f.clone()).prop_map(|(g, f)| Cmd::GetPeers(g, f)),
        1 => (g.clone(), f.clone()).prop_map(|(g, f)| Cmd::StopShare(g, f)),
        3 => (g, f, prop_oneof![4 => Just(3u32), 1 => Just(2)], any::<u8>())
            .prop_map(|(g, f, n, b)| Cmd::Have(g, f, n, b)),
        2 => (1u16..4).prop_map(Cmd::Register),
    ]
}

fn action() -> impl Strategy<Value = Action> {
    let a = 0..ACTORS;
    prop_oneof![
        20 => (a.clone(), cmd()).prop_map(|(a, c)| Action::Cmd(a, c)),
        2 => prop::collection::vec((a.clone(), cmd()), 2..4).prop_map(Action::Batch),
        // The same command from several actors at once: races.
        2 => (prop::collection::vec(a.clone(), 2..4), cmd())
            .prop_map(|(who, c)| Action::Batch(who.into_iter().map(|w| (w, c.clone())).collect())),
        2 => (0usize..8).prop_map(Action::Retry),
        2 => (a.clone(), any::<bool>()).prop_map(|(a, on)| Action::SetOnline(a, on)),
        1 => a.prop_map(Action::Expire),
    ]
}

/// Files have 3 pieces; variant 1 is different content under the same name.
fn file_meta(f: usize, variant: u8) -> p2p_proto::FileMeta {
    meta(FILES[f], 3, variant + 1)
}

/// The actor that sends `c`, and whom an accept or reject names.
/// Piece reports with the top bit set come from a member of the group.
fn resolve(st: &TrackerState, actors: &[Actor], who: usize, c: &Cmd) -> (usize, UserName) {
    if let Cmd::Have(g, _, _, bits) = c {
        let members = st
            .group(&group(GROUPS[*g]))
            .map(|g| g.members.keys().collect::<Vec<_>>());
        let by = members
            .filter(|_| bits & 0x80 != 0)
            .map(|m| m[who % m.len()]);
        let who = by
            .and_then(|u| actors.iter().position(|a| a.name == *u))
            .unwrap_or(who);
        return (who, actors[who].name.clone());
    }
    let (Cmd::Accept(g, k, by_owner) | Cmd::Reject(g, k, by_owner)) = c else {
        return (who, actors[who].name.clone());
    };
    let Some(grp) = st.group(&group(GROUPS[*g])) else {
        return (who, actors[*k].name.clone());
    };
    let pending = grp.pending_in_order();
    let whom = match pending.is_empty() {
        true => actors[*k].name.clone(),
        false => pending[*k % pending.len()].clone(),
    };
    let owner = actors.iter().position(|a| a.name == grp.owner);
    (owner.filter(|_| *by_owner).unwrap_or(who), whom)
}

fn request(actors: &[Actor], who: usize, whom: UserName, c: &Cmd) -> Request {
    use Request as R;
    let me = actors[who].name.clone();
    let g = |i: usize| group(GROUPS[i]);
    let f = |i: usize| file(FILES[i]);
    match c {
        Cmd::CreateUser => R::CreateUser {
            user: me.clone(),
            password: pw(&format!("pw-{me}")),
        },
        Cmd::Login { good } => {
            let p = if *good {
                format!("pw-{me}")
            } else {
                "wrong".into()
            };
            R::Login {
                user: me,
                password: pw(&p),
            }
        }
        Cmd::Logout => R::Logout,
        Cmd::CreateGroup(i) => R::CreateGroup { group: g(*i) },
        Cmd::Join(i) => R::JoinGroup { group: g(*i) },
        Cmd::Leave(i) => R::LeaveGroup { group: g(*i) },
        Cmd::ListGroups => R::ListGroups,
        Cmd::ListRequests(i) => R::ListRequests { group: g(*i) },
        Cmd::Accept(i, ..) => R::AcceptRequest {
            group: g(*i),
            user: whom,
        },
        Cmd::Reject(i, ..) => R::RejectRequest {
            group: g(*i),
            user: whom,
        },
        Cmd::Upload(i, j, v) => R::UploadFile {
            group: g(*i),
            meta: file_meta(*j, *v),
        },
        Cmd::ListFiles(i) => R::ListFiles { group: g(*i) },
        Cmd::ListMembers(i) => R::ListMembers { group: g(*i) },
        Cmd::GetFile(i, j) => R::GetFile {
            group: g(*i),
            file: f(*j),
        },
        Cmd::GetPeers(i, j) => R::GetPeers {
            group: g(*i),
            file: f(*j),
        },
        Cmd::StopShare(i, j) => R::StopShare {
            group: g(*i),
            file: f(*j),
        },
        Cmd::Have(i, j, n, bits) => {
            let mut s = PieceSet::empty(*n);
            (0..*n).filter(|b| bits & (1 << b) != 0).for_each(|b| {
                s.insert(b);
            });
            R::HavePieces {
                group: g(*i),
                file: f(*j),
                pieces: s,
            }
        }
        Cmd::Register(port) => R::RegisterSeeder { addr: addr(*port) },
    }
}

struct Sim {
    w: World,
    actors: Vec<Actor>,
    /// Writes that became ops, with their first outcome.
    sent: Vec<(ClientRequest, Outcome)>,
}

impl Sim {
    /// Every actor starts registered and logged in, except the last; u0
    /// owns g0 (with u1 and u2, and f0 shared), u2 owns g1.
    fn new() -> Self {
        let mut w = World::new();
        let mut actors: Vec<_> = (0..ACTORS - 1)
            .map(|i| w.login_new(&format!("u{i}"), i as u8 + 1))
            .collect();
        let [u0, u1, u2] = &mut actors[..] else {
            unreachable!()
        };
        w.group_with(GROUPS[0], u0, &mut [u1, u2]);
        w.group_with(GROUPS[1], u2, &mut []);
        let upload = Request::UploadFile {
            group: group(GROUPS[0]),
            meta: file_meta(0, 0),
        };
        w.run(u0, upload).unwrap();
        actors.push(Actor::new(&format!("u{}", ACTORS - 1), ACTORS as u8));
        Sim {
            w,
            actors,
            sent: Vec::new(),
        }
    }

    /// Prepares `who`'s command: the request and, if accepted, its op.
    fn prepare(
        &mut self,
        who: usize,
        c: &Cmd,
    ) -> (usize, ClientRequest, Result<Option<Op>, Outcome>) {
        let (who, whom) = resolve(&self.w.st, &self.actors, who, c);
        let req = request(&self.actors, who, whom, c);
        let req = self.actors[who].req(req);
        let digest = self.w.st.digest();
        let p = self.w.st.prepare(
            self.w.now,
            &self.w.cfg,
            &mut self.w.rng,
            &req,
            key_of(req.client),
        );
        assert_eq!(self.w.st.digest(), digest, "prepare changed the state");
        let origin = Some(Origin {
            client: req.client,
            key: key_of(req.client),
            id: req.id,
        });
        let at_ms = self.w.now.as_millis();
        let res = match p {
            Ok(Prepared::Op(kind)) => Ok(Some(Op {
                at_ms,
                origin,
                kind,
            })),
            Ok(Prepared::Done(o)) => Err(o),
            Err(e) => Err(Err(e)),
        };
        (who, req, res)
    }

    /// Applies an accepted op and checks an `Err` changed nothing else.
    fn apply(&mut self, who: usize, req: ClientRequest, op: Op) {
        let before = digest_without_outcomes(&self.w.st);
        let out = self.w.apply(op);
        if out.is_err() {
            assert_eq!(
                digest_without_outcomes(&self.w.st),
                before,
                "{out:?} changed state"
            );
        }
        if let Ok(Reply::LoggedIn { token, .. }) = &out {
            self.actors[who].token = Some(*token);
        }
        self.sent.push((req, out));
    }

    fn step(&mut self, a: &Action) {
        self.w.now = self.w.now + crate::time::Duration(7);
        match a {
            Action::Cmd(who, c) => self.batch(&[(*who, c.clone())]),
            Action::Batch(cmds) => self.batch(cmds),
            Action::Retry(back) => self.retry(*back),
            Action::SetOnline(who, online) => {
                if let Some(token) = self.actors[*who].token {
                    self.w
                        .system(OpKind::SetOnline {
                            token,
                            online: *online,
                        })
                        .ok();
                }
            }
            Action::Expire(who) => {
                if let Some(token) = self.actors[*who].token {
                    self.w.system(OpKind::ExpireSession { token }).ok();
                }
            }
        }
    }

    fn batch(&mut self, cmds: &[(usize, Cmd)]) {
        let prepared: Vec<_> = cmds.iter().map(|(who, c)| self.prepare(*who, c)).collect();
        for (who, req, res) in prepared {
            if let Ok(Some(op)) = res {
                self.apply(who, req, op);
            }
        }
    }

    fn retry(&mut self, back: usize) {
        let Some(i) = self.sent.len().checked_sub(1 + back % 8) else {
            return;
        };
        let (req, first) = self.sent[i].clone();
        let digest = self.w.st.digest();
        let p = self.w.st.prepare(
            self.w.now,
            &self.w.cfg,
            &mut self.w.rng,
            &req,
            key_of(req.client),
        );
        assert_eq!(
            p,
            Ok(Prepared::Done(first)),
            "a retry must get the stored outcome"
        );
        assert_eq!(self.w.st.digest(), digest);
    }

    fn check_end(&self) {
        self.w.assert_replays();
        let snap = self.w.st.encode_snapshot();
        let back = TrackerState::decode_snapshot(snap.clone()).expect("own snapshot decodes");
        assert_eq!(back, self.w.st);
        assert_eq!(back.digest(), self.w.st.digest());
        assert_eq!(back.encode_snapshot(), snap);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn random_commands_keep_invariants_and_replay_to_the_same_digest(
        actions in prop::collection::vec(action(), 1..80)
    ) {
        let mut sim = Sim::new();
        for a in &actions {
            sim.step(a);
        }
        sim.check_end();
    }
}

/// The generator reaches the interesting cases (the property is not
/// vacuous): joins accepted, files shared, pieces reported, ownership
/// handed over, groups deleted, and stale ops refused by `apply`.
#[test]
fn the_random_driver_reaches_the_interesting_cases() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut seen = std::collections::BTreeMap::<&str, usize>::new();
    for _ in 0..64 {
        let actions = prop::collection::vec(action(), 60..80)
            .new_tree(&mut runner)
            .unwrap()
            .current();
        let mut sim = Sim::new();
        for a in &actions {
            sim.step(a);
        }
        for (_, out) in &sim.sent {
            let case = match out {
                Ok(Reply::Left {
                    new_owner: Some(_), ..
                }) => "handover",
                Ok(Reply::Left { deleted: true, .. }) => "deleted",
                Ok(Reply::Shared { new_file: false }) => "second seeder",
                Err(_) => "stale",
                _ => continue,
            };
            *seen.entry(case).or_default() += 1;
        }
        for op in &sim.w.log {
            let case = match op.kind {
                OpKind::AcceptJoin { .. } => "accepted",
                OpKind::HavePieces { .. } => "pieces",
                OpKind::ShareFile { .. } => "shared",
                _ => continue,
            };
            *seen.entry(case).or_default() += 1;
        }
    }
    for case in [
        "handover",
        "deleted",
        "second seeder",
        "stale",
        "accepted",
        "pieces",
        "shared",
    ] {
        assert!(
            seen.get(case).copied().unwrap_or(0) >= 3,
            "{case} is rare: {seen:?}"
        );
    }
}
