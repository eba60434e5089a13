//! Test helpers: a [`World`] that drives `prepare` -> `apply` the way a
//! primary does, keeps the op log, and makes users, groups and files.

use std::net::SocketAddr;

use p2p_proto::{
    ClientId, ClientRequest, FileMeta, FileName, GroupName, KeyId, Op, OpKind, Origin, Outcome,
    Password, Reply, Request, RequestId, SessionToken, Sha1Hash, TrackerError, UserName,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::time::Instant;
use crate::tracker::state::{Prepared, TrackerConfig, TrackerState};

pub(crate) fn user(s: &str) -> UserName {
    UserName::new(s).unwrap()
}
pub(crate) fn group(s: &str) -> GroupName {
    GroupName::new(s).unwrap()
}
pub(crate) fn file(s: &str) -> FileName {
    FileName::new(s).unwrap()
}
pub(crate) fn pw(s: &str) -> Password {
    Password::new(s).unwrap()
}
pub(crate) fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The TLS key of the client process `client` (one key per client here;
/// tests that need another key pass one explicitly).
pub(crate) fn key_of(client: ClientId) -> KeyId {
    let mut k = [0x6b; 32];
    k[..16].copy_from_slice(&client.0);
    KeyId(k)
}

/// A file of `pieces` pieces of 1 KiB whose content is told apart by `tag`
/// (its file hash is the root of its piece hashes, as a client makes it).
pub(crate) fn meta(name: &str, pieces: u32, tag: u8) -> FileMeta {
    let piece_hashes: Vec<Sha1Hash> = (0..pieces).map(|i| Sha1Hash([tag ^ i as u8; 20])).collect();
    FileMeta {
        name: file(name),
        size: pieces as u64 * 1024,
        piece_len: 1024,
        file_hash: crate::hash::file_root(pieces as u64 * 1024, 1024, &piece_hashes),
        piece_hashes,
    }
}

/// A client process acting for one user.
#[derive(Clone, Debug)]
pub(crate) struct Actor {
    pub name: UserName,
    pub client: ClientId,
    pub token: Option<SessionToken>,
    pub next_id: u64,
}

impl Actor {
    pub(crate) fn new(name: &str, client: u8) -> Self {
        Actor {
            name: user(name),
            client: ClientId([client; 16]),
            token: None,
            next_id: 1,
        }
    }

    /// The next request of this client.
    pub(crate) fn req(&mut self, req: Request) -> ClientRequest {
        let id = RequestId(self.next_id);
        self.next_id += 1;
        ClientRequest {
            client: self.client,
            id,
            session: self.token,
            req,
        }
    }
}

/// One tracker's state driven like a primary, with its op log.
pub(crate) struct World {
    pub st: TrackerState,
    pub cfg: TrackerConfig,
    pub rng: ChaCha8Rng,
    pub now: Instant,
    pub log: Vec<Op>,
}

impl World {
    pub(crate) fn new() -> Self {
        World {
            st: TrackerState::new(),
            cfg: TrackerConfig::test(),
            rng: ChaCha8Rng::seed_from_u64(7),
            now: Instant(1_000_000),
            log: Vec::new(),
        }
    }

    /// prepare, then (if accepted) log and apply; checks invariants. The
    /// request comes on a connection with its client's key ([`key_of`]).
    pub(crate) fn send(&mut self, req: &ClientRequest) -> Outcome {
        self.send_as(req, key_of(req.client))
    }

    /// [`World::send`] on a connection whose TLS key is `key`.
    pub(crate) fn send_as(&mut self, req: &ClientRequest, key: KeyId) -> Outcome {
        self.now = self.now + crate::time::Duration(10);
        let prepared = self
            .st
            .prepare(self.now, &self.cfg, &mut self.rng, req, key);
        let out = match prepared {
            Err(e) => Err(e),
            Ok(Prepared::Done(o)) => o,
            Ok(Prepared::Op(kind)) => {
                let origin = Some(Origin {
                    client: req.client,
                    key,
                    id: req.id,
                });
                self.apply(Op {
                    at_ms: self.now.as_millis(),
                    origin,
                    kind,
                })
            }
        };
        self.st.check_invariants();
        out
    }

    /// Logs and applies an op (e.g. one the primary issues itself).
    pub(crate) fn apply(&mut self, op: Op) -> Outcome {
        let out = self.st.apply(&op);
        self.log.push(op);
        self.st.check_invariants();
        out
    }

    /// Applies an op without an origin at the current time.
    pub(crate) fn system(&mut self, kind: OpKind) -> Outcome {
        let at_ms = self.now.as_millis();
        self.apply(Op {
            at_ms,
            origin: None,
            kind,
        })
    }

    /// `actor` sends `req` (next request id).
    pub(crate) fn run(&mut self, actor: &mut Actor, req: Request) -> Outcome {
        let r = actor.req(req);
        self.send(&r)
    }

    /// `actor` sends `req`, which must be refused with `want` and change
    /// nothing at all (same digest before and after).
    pub(crate) fn refused(&mut self, actor: &mut Actor, req: Request, want: TrackerError) {
        let before = self.st.digest();
        let log_len = self.log.len();
        assert_eq!(self.run(actor, req), Err(want));
        assert_eq!(self.st.digest(), before, "a refusal changed the state");
        assert_eq!(self.log.len(), log_len, "a refusal produced an op");
    }

    /// Creates the user (password "pw-NAME") and logs in.
    pub(crate) fn login_new(&mut self, name: &str, client: u8) -> Actor {
        let mut a = Actor::new(name, client);
        let p = pw(&format!("pw-{name}"));
        let create = Request::CreateUser {
            user: a.name.clone(),
            password: p.clone(),
        };
        let created = self.run(&mut a, create);
        assert_eq!(created, Ok(Reply::Done));
        self.login(&mut a, p);
        a
    }

    pub(crate) fn login(&mut self, a: &mut Actor, password: Password) {
        let user = a.name.clone();
        match self.run(a, Request::Login { user, password }) {
            Ok(Reply::LoggedIn { token, .. }) => a.token = Some(token),
            other => panic!("login failed: {other:?}"),
        }
    }

    /// `owner` creates `g`, every one of `others` asks and is accepted.
    pub(crate) fn group_with(&mut self, g: &str, owner: &mut Actor, others: &mut [&mut Actor]) {
        let grp = group(g);
        let ok = Ok(Reply::Done);
        assert_eq!(
            self.run(owner, Request::CreateGroup { group: grp.clone() }),
            ok
        );
        for o in others.iter_mut() {
            assert_eq!(self.run(o, Request::JoinGroup { group: grp.clone() }), ok);
            let accept = Request::AcceptRequest {
                group: grp.clone(),
                user: o.name.clone(),
            };
            assert_eq!(self.run(owner, accept), ok);
        }
    }

    /// Registers users `{prefix}0..{prefix}{n-1}` with ops applied directly
    /// (fast, not logged).
    pub(crate) fn new_users(&mut self, prefix: &str, n: usize) -> Vec<UserName> {
        let phc = some_phc();
        let users: Vec<UserName> = (0..n).map(|i| user(&format!("{prefix}{i}"))).collect();
        for u in &users {
            let kind = OpKind::CreateUser {
                user: u.clone(),
                password_hash: p2p_proto::PasswordHash(phc.clone()),
            };
            self.direct(kind);
        }
        users
    }

    /// Registers `n` users (`new_users`) and makes them members of `g`.
    pub(crate) fn new_members(&mut self, g: &str, prefix: &str, n: usize) -> Vec<UserName> {
        let users = self.new_users(prefix, n);
        for u in &users {
            let (user, group) = (u.clone(), group(g));
            self.direct(OpKind::RequestJoin {
                user: user.clone(),
                group: group.clone(),
            });
            self.direct(OpKind::AcceptJoin { group, user });
        }
        users
    }

    /// Applies `kind` without an origin, logging nothing; it must succeed.
    pub(crate) fn direct(&mut self, kind: OpKind) -> Reply {
        let op = Op {
            at_ms: 1,
            origin: None,
            kind,
        };
        self.st.apply(&op).expect("a direct op applies")
    }

    /// A fresh state that replays the log gives the same digest.
    pub(crate) fn assert_replays(&self) {
        let mut fresh = TrackerState::new();
        for op in &self.log {
            let _ = fresh.apply(op);
        }
        assert_eq!(fresh, self.st);
        assert_eq!(fresh.digest(), self.st.digest());
    }
}

/// The state's digest with the stored outcomes left out: equal when a
/// stale op changed nothing but its recorded outcome.
pub(crate) fn digest_without_outcomes(st: &TrackerState) -> Sha1Hash {
    let mut s = st.clone();
    s.outcomes.clear();
    s.digest()
}

/// A valid argon2id PHC string (for ops applied without `prepare`).
pub(crate) fn some_phc() -> String {
    crate::tracker::password::hash(&TrackerConfig::test(), &[9; 16], &pw("x")).unwrap()
}
