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
//! can hand the work to its driver. `TrackerState::prepare` does both
//! steps inline (tests, tools).

use p2p_proto::{
    ClientRequest, KeyId, OpKind, Origin, PasswordHash, Request, SeederKey, SessionToken,
    TrackerError, UserName,
};
use rand::RngCore;
use rand_chacha::ChaCha8Rng;

use super::check::bad;
use super::password::{PasswordDone, PasswordWork, SALT_LEN};
use super::state::{Prepared, Session, Step, TrackerConfig, TrackerState};
use crate::time::Instant;

impl TrackerState {
    /// Validates a write and turns it into an op kind (the caller adds the
    /// time and `Origin { client, key, id }`). `key` is the TLS key of the
    /// connection the request came on (the requester's identity; a session
    /// answers only to the key that logged in). A request whose origin
    /// already has a stored outcome is `Done` with that outcome (a retry is
    /// never applied twice); a read is `Done` with [`TrackerState::read`]'s
    /// answer. Runs any password work inline: the tests' shortcut; the
    /// node goes through [`TrackerState::prepare_step`].
    #[cfg(test)]
    pub(crate) fn prepare(
        &self,
        now: Instant,
        cfg: &TrackerConfig,
        rng: &mut ChaCha8Rng,
        req: &ClientRequest,
        key: KeyId,
    ) -> Result<Prepared, TrackerError> {
        match self.prepare_step(now, cfg, rng, req, key, None)? {
            Step::Ready(p) => Ok(p),
            Step::Password(work) => {
                match self.prepare_step(now, cfg, rng, req, key, Some(&work.run()))? {
                    Step::Ready(p) => Ok(p),
                    Step::Password(_) => Err(bad("password work asked for twice")),
                }
            }
        }
    }

    /// `TrackerState::prepare` in steps: with `done` `None`, a request that
    /// needs argon2 work answers [`Step::Password`]; call again with the
    /// work's result (the state may have changed meanwhile: everything is
    /// checked again).
    pub(crate) fn prepare_step(
        &self,
        now: Instant,
        cfg: &TrackerConfig,
        rng: &mut ChaCha8Rng,
        req: &ClientRequest,
        key: KeyId,
        done: Option<&PasswordDone>,
    ) -> Result<Step, TrackerError> {
        let origin = Origin {
            client: req.client,
            key,
            id: req.id,
        };
        if let Some(stored) = self.stored_outcome(&origin) {
            return Ok(Step::Ready(Prepared::Done(stored.clone())));
        }
        if !req.req.is_write() {
            return Ok(Step::Ready(Prepared::Done(self.read(now, cfg, req, key))));
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
                let password_hash = PasswordHash(phc.clone().map_err(|e| bad(&e.to_string()))?);
                OpKind::CreateUser {
                    user: user.clone(),
                    password_hash,
                }
            }
            (Request::Login { user, password }, None) => {
                let phc = self
                    .login_target(now, cfg, req, key, user)?
                    .unwrap_or_else(|| super::password::dummy_phc(cfg));
                return Ok(Step::Password(PasswordWork::Verify {
                    password: password.clone(),
                    phc,
                }));
            }
            (Request::Login { user, .. }, Some(PasswordDone::Verified(ok))) => {
                if self.login_target(now, cfg, req, key, user)?.is_none() || !ok {
                    return Err(TrackerError::WrongUserOrPassword);
                }
                OpKind::Login {
                    user: user.clone(),
                    token: self.fresh_token(rng),
                    seeder_key: SeederKey(random_bytes(rng)),
                    client: req.client,
                    key,
                }
            }
            (Request::CreateUser { .. } | Request::Login { .. }, Some(_)) => {
                return Err(bad("password work of the wrong kind"));
            }
            _ => self.prepare_in_session(now, cfg, req, key)?,
        };
        self.check(&kind)?;
        Ok(Step::Ready(Prepared::Op(kind)))
    }

    /// The session a request is made in: `NotLoggedIn` without a token,
    /// `SessionUnknown` with a token that names no session or a session
    /// past one of its lifetimes (refused at once, before the primary's
    /// `ExpireSession` is applied), `SessionKeyMismatch` on a connection
    /// whose key is not the one that logged in.
    pub(crate) fn request_session(
        &self,
        now: Instant,
        cfg: &TrackerConfig,
        req: &ClientRequest,
        key: KeyId,
    ) -> Result<(SessionToken, &Session), TrackerError> {
        let token = req.session.ok_or(TrackerError::NotLoggedIn)?;
        let s = self
            .sessions
            .get(&token)
            .ok_or(TrackerError::SessionUnknown)?;
        if s.key != key {
            return Err(TrackerError::SessionKeyMismatch);
        }
        if cfg.session_expired(now, s) {
            return Err(TrackerError::SessionUnknown);
        }
        Ok((token, s))
    }

    /// The stored password hash a login checks (`None`: no such user; the
    /// login then checks the password against [`password::dummy_phc`] at
    /// the same cost and answers as for a wrong password), after the check
    /// that needs no password: not logged in as somebody else.
    /// A token of another key's session, or of one past its lifetime, is
    /// ignored like a stale one.
    fn login_target(
        &self,
        now: Instant,
        cfg: &TrackerConfig,
        req: &ClientRequest,
        key: KeyId,
        user: &UserName,
    ) -> Result<Option<String>, TrackerError> {
        let current = self
            .request_session(now, cfg, req, key)
            .ok()
            .map(|(_, s)| &s.user);
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
    fn prepare_in_session(
        &self,
        now: Instant,
        cfg: &TrackerConfig,
        req: &ClientRequest,
        key: KeyId,
    ) -> Result<OpKind, TrackerError> {
        use Request::*;
        let (token, me) = self.request_session(now, cfg, req, key)?;
        let user = me.user.clone();
        Ok(match &req.req {
            Logout => OpKind::Logout { token },
            RegisterSeeder { addr } if addr.ip().is_unspecified() || addr.port() == 0 => {
                return Err(bad(
                    "a seeder address needs an IP and a port (the tracker did not see where \
                     the connection came from; start the client with --listen IP:PORT)",
                ));
            }
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
