//! `prepare`: a client's write, on the primary, becomes an op.
//!
//! Authorization (logged in, owner where needed), the checks of `check.rs`
//! against the current state, and every random value the op needs (salt,
//! session token, seeder key) drawn from the caller's seeded RNG. Nothing
//! here changes state: a rejection is an `Err` and leaves no trace.

use p2p_proto::{
    ClientRequest, OpKind, Origin, Password, Request, SeederKey, SessionToken, TrackerError,
    UserName,
};
use rand::RngCore;
use rand_chacha::ChaCha8Rng;

use super::check::bad;
use super::password::{self, SALT_LEN};
use super::state::{Prepared, TrackerConfig, TrackerState};
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
        let origin = Origin {
            client: req.client,
            id: req.id,
        };
        if let Some(stored) = self.stored_outcome(&origin) {
            return Ok(Prepared::Done(stored.clone()));
        }
        if !req.req.is_write() {
            return Ok(Prepared::Done(self.read(now, cfg, req)));
        }
        let kind = match &req.req {
            Request::CreateUser { user, password } => {
                self.prepare_create_user(cfg, rng, user, password)?
            }
            Request::Login { user, password } => self.prepare_login(rng, req, user, password)?,
            _ => self.prepare_in_session(req)?,
        };
        self.check(&kind)?;
        Ok(Prepared::Op(kind))
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

    fn prepare_create_user(
        &self,
        cfg: &TrackerConfig,
        rng: &mut ChaCha8Rng,
        user: &UserName,
        password: &Password,
    ) -> Result<OpKind, TrackerError> {
        self.user_can_be_created(user)?;
        let mut salt = [0u8; SALT_LEN];
        rng.fill_bytes(&mut salt);
        let password_hash =
            password::hash(cfg, &salt, password).map_err(|e| bad(&e.to_string()))?;
        Ok(OpKind::CreateUser {
            user: user.clone(),
            password_hash,
        })
    }

    fn prepare_login(
        &self,
        rng: &mut ChaCha8Rng,
        req: &ClientRequest,
        user: &UserName,
        password: &Password,
    ) -> Result<OpKind, TrackerError> {
        let current = req.session.and_then(|t| self.session_user(&t));
        if let Some(other) = current.filter(|u| *u != user) {
            return Err(TrackerError::AlreadyLoggedIn {
                user: other.clone(),
            });
        }
        let stored = self
            .users
            .get(user)
            .ok_or_else(|| TrackerError::UnknownUser { user: user.clone() })?;
        if !password::verify(password, &stored.password_hash) {
            return Err(TrackerError::WrongPassword);
        }
        Ok(OpKind::Login {
            user: user.clone(),
            token: self.fresh_token(rng),
            seeder_key: SeederKey(random_bytes(rng)),
            client: req.client,
        })
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
