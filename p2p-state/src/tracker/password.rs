//! Password hashing: argon2id PHC strings with a salt from the caller's
//! seeded RNG (never an OS RNG), cost from [`TrackerConfig`]. Verification
//! uses the cost stored in the hash, so changing the configuration does not
//! lock anybody out; a stored cost above the limits in `limits.rs` is
//! refused rather than computed.

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
use p2p_proto::Password;
use p2p_proto::limits::PASSWORD_HASH_LEN_MAX;

use super::limits::{ARGON2_M_KIB_MAX, ARGON2_P_MAX, ARGON2_T_MAX};
use super::state::TrackerConfig;

/// Bytes of salt drawn per password (argon2's recommendation).
pub(crate) const SALT_LEN: usize = 16;

/// Why a password could not be hashed or a stored hash is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("argon2 cost in the configuration is invalid")]
    BadConfig,
    #[error("stored password hash is not a valid argon2id PHC string")]
    BadHash,
    #[error("stored password hash asks for more than the allowed cost")]
    CostTooHigh,
}

/// Hashes `password` with `salt` at the configured cost, as a PHC string.
pub(crate) fn hash(
    cfg: &TrackerConfig,
    salt: &[u8; SALT_LEN],
    password: &Password,
) -> Result<String, PasswordError> {
    let params = Params::new(cfg.argon2_m_kib, cfg.argon2_t, cfg.argon2_p, None)
        .map_err(|_| PasswordError::BadConfig)?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let phc = argon
        .hash_password_with_salt(password.as_str().as_bytes(), salt)
        .map_err(|_| PasswordError::BadConfig)?
        .to_string();
    check_phc(&phc).map_err(|_| PasswordError::BadConfig)?;
    Ok(phc)
}

/// Checks that `phc` is an argon2id PHC string with salt, hash and a cost
/// within the limits. `apply` refuses to store anything else.
pub(crate) fn check_phc(phc: &str) -> Result<(), PasswordError> {
    if phc.len() > PASSWORD_HASH_LEN_MAX {
        return Err(PasswordError::BadHash);
    }
    let parsed = PasswordHash::new(phc).map_err(|_| PasswordError::BadHash)?;
    if parsed.algorithm.as_str() != "argon2id" || parsed.salt.is_none() || parsed.hash.is_none() {
        return Err(PasswordError::BadHash);
    }
    let params = Params::try_from(&parsed).map_err(|_| PasswordError::BadHash)?;
    if params.m_cost() > ARGON2_M_KIB_MAX
        || params.t_cost() > ARGON2_T_MAX
        || params.p_cost() > ARGON2_P_MAX
    {
        return Err(PasswordError::CostTooHigh);
    }
    Ok(())
}

/// The hash an unknown user's login is checked against: argon2id at the
/// configured cost (what every account created under this configuration
/// has), so a login for a name that does not exist costs as much as one
/// with a wrong password and its answer comes as late. Its salt and hash
/// are zeros: no password matches it in practice, and the caller refuses
/// the login whatever the check says.
pub(crate) fn dummy_phc(cfg: &TrackerConfig) -> String {
    let (m, t, p) = (cfg.argon2_m_kib, cfg.argon2_t, cfg.argon2_p);
    // Unpadded base64 of 16 zero bytes (salt) and 32 zero bytes (hash).
    let (salt, hash) = ("A".repeat(22), "A".repeat(43));
    format!("$argon2id$v=19$m={m},t={t},p={p}${salt}${hash}")
}

/// True if `password` matches the stored PHC string. An unusable stored
/// hash matches nothing.
pub(crate) fn verify(password: &Password, phc: &str) -> bool {
    if check_phc(phc).is_err() {
        return false;
    }
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_str().as_bytes(), &parsed)
        .is_ok()
}

/// Argon2 work a login or create_user needs before it can be prepared.
/// Argon2 is slow on purpose (tens of milliseconds at production cost), so
/// the tracker machine hands it to its driver ([`crate::tracker::node::Output::Password`]),
/// which runs [`PasswordWork::run`] off the machine's thread and reports
/// the result; the machine goes on serving everyone else meanwhile.
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordWork {
    /// Hash a new password with this salt and cost.
    Hash {
        password: Password,
        salt: [u8; SALT_LEN],
        m_kib: u32,
        t: u32,
        p: u32,
    },
    /// Check a password against the stored PHC string.
    Verify { password: Password, phc: String },
}

impl std::fmt::Debug for PasswordWork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PasswordWork::Hash { m_kib, t, p, .. } => {
                write!(f, "Hash {{ m_kib: {m_kib}, t: {t}, p: {p}, .. }}")
            }
            PasswordWork::Verify { .. } => write!(f, "Verify {{ .. }}"),
        }
    }
}

/// What [`PasswordWork::run`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordDone {
    Hashed(Result<String, PasswordError>),
    Verified(bool),
}

impl PasswordWork {
    /// The hash for `password` at `cfg`'s cost, with `salt`.
    pub fn hash(cfg: &TrackerConfig, salt: [u8; SALT_LEN], password: &Password) -> Self {
        PasswordWork::Hash {
            password: password.clone(),
            salt,
            m_kib: cfg.argon2_m_kib,
            t: cfg.argon2_t,
            p: cfg.argon2_p,
        }
    }

    /// Does the work (slow: call it off the machine's thread).
    pub fn run(&self) -> PasswordDone {
        match self {
            PasswordWork::Hash {
                password,
                salt,
                m_kib,
                t,
                p,
            } => {
                let cfg = TrackerConfig {
                    argon2_m_kib: *m_kib,
                    argon2_t: *t,
                    argon2_p: *p,
                    ..TrackerConfig::test()
                };
                PasswordDone::Hashed(hash(&cfg, salt, password))
            }
            PasswordWork::Verify { password, phc } => PasswordDone::Verified(verify(password, phc)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pw(s: &str) -> Password {
        Password::new(s).unwrap()
    }

    #[test]
    fn hash_verifies_only_the_right_password() {
        let cfg = TrackerConfig::test();
        let h = hash(&cfg, &[7; SALT_LEN], &pw("hunter2")).unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=8,t=1,p=1$"), "{h}");
        assert!(!h.contains("hunter2"));
        assert!(verify(&pw("hunter2"), &h));
        assert!(!verify(&pw("hunter3"), &h));
        check_phc(&h).unwrap();
    }

    #[test]
    fn salt_changes_the_hash_and_same_salt_is_deterministic() {
        let cfg = TrackerConfig::test();
        let a = hash(&cfg, &[1; SALT_LEN], &pw("x")).unwrap();
        let b = hash(&cfg, &[2; SALT_LEN], &pw("x")).unwrap();
        assert_ne!(a, b);
        assert_eq!(a, hash(&cfg, &[1; SALT_LEN], &pw("x")).unwrap());
    }

    #[test]
    fn production_cost_is_recorded_in_the_hash() {
        let h = hash(&TrackerConfig::production(), &[3; SALT_LEN], &pw("pw")).unwrap();
        assert!(h.contains("m=19456,t=2,p=1"), "{h}");
        assert!(verify(&pw("pw"), &h));
    }

    /// The hash an unknown user's login is checked against is a usable
    /// argon2id hash at exactly the cost of a real one (so the check
    /// really runs, as long), and matches no password.
    #[test]
    fn the_dummy_hash_costs_what_a_real_one_does() {
        for cfg in [TrackerConfig::test(), TrackerConfig::production()] {
            let dummy = dummy_phc(&cfg);
            let real = hash(&cfg, &[3; SALT_LEN], &pw("pw")).unwrap();
            check_phc(&dummy).unwrap();
            let params = |h: &str| Params::try_from(&PasswordHash::new(h).unwrap()).unwrap();
            assert_eq!(params(&dummy), params(&real), "{dummy} vs {real}");
            let lens = |h: &str| {
                let p = PasswordHash::new(h).unwrap();
                (p.salt.unwrap().len(), p.hash.unwrap().len())
            };
            assert_eq!(lens(&dummy), lens(&real));
            assert!(!verify(&pw("pw"), &dummy));
        }
    }

    #[test]
    fn bad_config_is_an_error_not_a_panic() {
        let mut cfg = TrackerConfig::test();
        cfg.argon2_m_kib = 1;
        assert_eq!(
            hash(&cfg, &[0; SALT_LEN], &pw("x")),
            Err(PasswordError::BadConfig)
        );
    }

    #[test]
    fn junk_and_costly_hashes_are_refused() {
        assert_eq!(check_phc("plain"), Err(PasswordError::BadHash));
        assert!(!verify(&pw("plain"), "plain"));
        let good = hash(&TrackerConfig::test(), &[5; SALT_LEN], &pw("p")).unwrap();
        let argon2i = good.replace("argon2id", "argon2i");
        assert_eq!(check_phc(&argon2i), Err(PasswordError::BadHash));
        let costly = good.replace("m=8,", "m=2000000,");
        assert_eq!(check_phc(&costly), Err(PasswordError::CostTooHigh));
        assert!(!verify(&pw("p"), &costly));
    }
}
