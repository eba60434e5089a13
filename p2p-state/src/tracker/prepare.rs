//! `prepare`: a client's write, on the primary, becomes an op.
//!
//! Authorization (logged in, owner where needed), the checks of `check.rs`
//! against the current state, and every random value the op needs (salt,
//! session token, seeder key) drawn from the caller's seeded RNG. Nothing
//! here changes state: a rejection is an `Err` and leaves no trace.
//!
//! `create_user` and `login` need argon2 work, which is slow on purpose:
//! [`TrackerState::prepare_step`] asks for it ([`Step::Password`]) instead
//! of doing it, and is called again with the result, so the tracker machine
//! can hand the work to its driver. [`TrackerState::prepare`] does both
//! steps inline (tests, tools).

use p2p_proto::{
    ClientRequest, OpKind, Origin, Request, SeederKey, SessionToken, TrackerError, UserName,
};
use rand::RngCore;
use rand_chacha::ChaCha8Rng;

use super::check::bad;
use super::password::{PasswordDone, PasswordWork, SALT_LEN};
use super::state::{Prepared, Step, TrackerConfig, TrackerState};
use crate::time::Instant;

impl TrackerState {
    /// Validates a write and turns it into an op kind (the caller adds the
    /// time and `Origin { client, id }`). A request whose origin already has
    /// a stored outcome is `Done` with that outcome (a retry is never applied
    /// twice); a read is `Done` with [`TrackerState::read`]'s answer.
    pub fn prepare(
        &self,
        now: Instant,
        cfg: &TrackerConfig,
        rng: &mut ChaCha8Rng,
        req: &ClientRequest,
    ) -> Result<Prepared, TrackerError> {
        match self.prepare_step(now, cfg, rng, req, None)? {
            Step::Ready(p) => Ok(p),
            Step::Password(work) => {
                match self.prepare_step(now, cfg, rng, req, Some(&work.run()))? {
                    Step::Ready(p) => Ok(p),
                    Step::Password(_) => Err(bad("password work asked for twice")),
                }
            }
        }
    }

    /// [`TrackerState::prepare`] in steps: with `done` `None`, a request that
    /// needs argon2 work answers [`Step::Password`]; call again with the
    /// work's result (the state may have changed meanwhile: everything is
    /// checked again).
    pub fn prepare_step(
        &self,
        now: Instant,
        cfg: &TrackerConfig,
        rng: &mut ChaCha8Rng,
        req: &ClientRequest,
        done: Option<&PasswordDone>,
    ) -> Result<Step, TrackerError> {
        let origin = Origin {
            client: req.client,
            id: req.id,
        };
        if let Some(stored) = self.stored_outcome(&origin) {
            return Ok(Step::Ready(Prepared::Done(stored.clone())));
        }
        if !req.req.is_write() {
            return Ok(Step::Ready(Prepared::Done(self.read(now, cfg, req))));
        }
        let kind = match (&req.req, done) {
            (Request::CreateUser { user, password }, None) => {
                self.user_can_be_created(user)?;
                let mut salt = [0u8; SALT_LEN];
                rng.fill_bytes(&mut salt);
                return Ok(Step::Password(PasswordWork::hash(cfg, salt, password)));
            }
            (Request::CreateUser { user, .. }, Some(PasswordDone::Hashed(phc))) => {
                self.user_can_be_created(user)?;
                let password_hash = phc.clone().map_err(|e| bad(&e.to_string()))?;
                OpKind::CreateUser {
                    user: user.clone(),
                    password_hash,
                }
            }
            (Request::Login { user, password }, None) => {
                let phc = self
                    .login_target(req, user)?
                    .unwrap_or_else(|| super::password::dummy_phc(cfg));
                return Ok(Step::Password(PasswordWork::Verify {
                    password: password.clone(),
                    phc,
                }));
            }
            (Request::Login { user, .. }, Some(PasswordDone::Verified(ok))) => {
                if self.login_target(req, user)?.is_none() || !ok {
                    return Err(TrackerError::WrongUserOrPassword);
                }
                OpKind::Login {
                    user: user.clone(),
                    token: self.fresh_token(rng),
                    seeder_key: SeederKey(random_bytes(rng)),
                    client: req.client,
                }
            }
            (Request::CreateUser { .. } | Request::Login { .. }, Some(_)) => {
                return Err(bad("password work of the wrong kind"));
            }
            _ => self.prepare_in_session(req)?,
        };
        self.check(&kind)?;
        Ok(Step::Ready(Prepared::Op(kind)))
    }

    /// The session a request is made in: `NotLoggedIn` without a token,
    /// `SessionUnknown` with a token that names no session.
    pub(super) fn request_session(
        &self,
        req: &ClientRequest,
    ) -> Result<(SessionToken, &UserName), TrackerError> {
        let token = req.session.ok_or(TrackerError::NotLoggedIn)?;
        match self.sessions.get(&token) {
            Some(s) => Ok((token, &s.user)),
            None => Err(TrackerError::SessionUnknown),
        }
    }

    /// The stored password hash a login checks (`None`: no such user; the
    /// login then checks the password against [`password::dummy_phc`] at
    /// the same cost and answers as for a wrong password), after the check
    /// that needs no password: not logged in as somebody else.
    fn login_target(
        &self,
        req: &ClientRequest,
        user: &UserName,
    ) -> Result<Option<String>, TrackerError> {
        let current = req.session.and_then(|t| self.session_user(&t));
        if let Some(other) = current.filter(|u| *u != user) {
            return Err(TrackerError::AlreadyLoggedIn {
                user: other.clone(),
            });
        }
        Ok(self.users.get(user).map(|u| u.password_hash.clone()))
    }

    /// A random token no session holds.
    fn fresh_token(&self, rng: &mut ChaCha8Rng) -> SessionToken {
        loop {
            let token = SessionToken(random_bytes(rng));
            if !self.sessions.contains_key(&token) {
                return token;
            }
        }
    }

    /// Writes that need a session: the op, after the ownership rule.
    fn prepare_in_session(&self, req: &ClientRequest) -> Result<OpKind, TrackerError> {
        use Request::*;
        let (token, me) = self.request_session(req)?;
        let user = me.clone();
        Ok(match &req.req {
            Logout => OpKind::Logout { token },
            RegisterSeeder { addr } => OpKind::RegisterSeeder { token, addr: *addr },
            CreateGroup { group } => OpKind::CreateGroup {
                owner: user,
                group: group.clone(),
            },
            JoinGroup { group } => OpKind::RequestJoin {
                user,
                group: group.clone(),
            },
            LeaveGroup { group } => OpKind::LeaveGroup {
                user,
                group: group.clone(),
            },
            AcceptRequest { group, user: who } => {
                self.owned_group(&user, group)?;
                OpKind::AcceptJoin {
                    group: group.clone(),
                    user: who.clone(),
                }
            }
            RejectRequest { group, user: who } => {
                self.owned_group(&user, group)?;
                OpKind::RejectJoin {
                    group: group.clone(),
                    user: who.clone(),
                }
            }
            UploadFile { group, meta } => OpKind::ShareFile {
                user,
                group: group.clone(),
                meta: meta.clone(),
            },
            StopShare { group, file } => OpKind::StopShare {
                user,
                group: group.clone(),
                file: file.clone(),
            },
            HavePieces {
                group,
                file,
                pieces,
            } => OpKind::HavePieces {
                user,
                group: group.clone(),
                file: file.clone(),
                pieces: pieces.clone(),
            },
            _ => return Err(bad("not a write")),
        })
    }
}

fn random_bytes<const N: usize>(rng: &mut ChaCha8Rng) -> [u8; N] {
    let mut b = [0u8; N];
    rng.fill_bytes(&mut b);
    b
}
