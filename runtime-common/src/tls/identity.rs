//! A node's long-term identity on disk: [`Identity`], the Ed25519 key in
//! `DATA_DIR/identity.key` (made 0600 and exclusively; refused if others
//! can read it, if it is a link, or if another user owns it), and
//! [`key_id_of`], the fingerprint of a public key.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

use super::{KeyId, Tls};

/// The key file in a node's data directory.
pub const IDENTITY_FILE: &str = "identity.key";
/// An Ed25519 PKCS#8 document is 83..=85 bytes; a key file larger than
/// this is not one of ours.
const IDENTITY_FILE_LEN_MAX: u64 = 4096;

/// A node's key fingerprint: SHA-256 of its SubjectPublicKeyInfo DER.
pub fn key_id_of(spki_der: &[u8]) -> KeyId {
    KeyId(Sha256::digest(spki_der).into())
}

/// Why an identity could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot create the directory {dir} for the identity key: {source}")]
    Dir { dir: PathBuf, source: io::Error },
    #[error("cannot {what} the identity key {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "the identity key {path} can be read by others (mode {mode:o}); \
         run `chmod 600 {path}` (and consider the key leaked: delete it to \
         make a new one, then re-pin this node's new fingerprint where it was pinned)"
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error(
        "the identity key {path} is not a regular file (a symbolic link or \
         something else); replace it with the key file itself, or delete it \
         to make a new key"
    )]
    NotAFile { path: PathBuf },
    #[error(
        "the identity key {path} belongs to user {owner}, not to this process's \
         user {me}; run the node as its owner, or `chown` the file"
    )]
    NotOurs { path: PathBuf, owner: u32, me: u32 },
    #[error(
        "the identity key {path} is not an Ed25519 PKCS#8 key ({why}); move it \
         away to make a new key (peers that pinned the old one must then be told \
         the new fingerprint)"
    )]
    BadKey { path: PathBuf, why: String },
}

/// A node's long-term key pair (Ed25519), kept in its data directory.
pub struct Identity {
    pub(super) key: Arc<CertifiedKey>,
    pub(super) key_id: KeyId,
    path: PathBuf,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the private key.
        write!(f, "Identity({}, {})", self.key_id, self.path.display())
    }
}

impl Identity {
    /// Loads `dir/identity.key`, or creates it (the directory 0700 if it
    /// is new, the file 0600, created exclusively). Refuses a key file
    /// that group or others can read, that is not a regular file, or that
    /// another user owns.
    pub fn load_or_create(dir: &Path) -> Result<Identity, IdentityError> {
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| IdentityError::Dir {
                    dir: dir.to_path_buf(),
                    source,
                })?;
        }
        let path = dir.join(IDENTITY_FILE);
        let io_err = |what, source| IdentityError::Io {
            what,
            path: path.clone(),
            source,
        };
        match fs::symlink_metadata(&path) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => match create(&path) {
                Ok(()) => {}
                // Another process made it first: use theirs.
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err("create", e)),
            },
            Err(e) => return Err(io_err("inspect", e)),
        }
        let meta = fs::symlink_metadata(&path).map_err(|e| io_err("inspect", e))?;
        if !meta.file_type().is_file() {
            return Err(IdentityError::NotAFile { path });
        }
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            return Err(IdentityError::NotOurs {
                path,
                owner: meta.uid(),
                me,
            });
        }
        if meta.mode() & 0o077 != 0 {
            return Err(IdentityError::TooOpen {
                path,
                mode: meta.mode() & 0o7777,
            });
        }
        let mut der = Vec::new();
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .and_then(|f| f.take(IDENTITY_FILE_LEN_MAX + 1).read_to_end(&mut der))
            .map_err(|e| io_err("read", e))?;
        Self::from_pkcs8(der, path)
    }

    fn from_pkcs8(der: Vec<u8>, path: PathBuf) -> Result<Identity, IdentityError> {
        let bad = |why: String| IdentityError::BadKey {
            path: path.clone(),
            why,
        };
        if der.len() as u64 > IDENTITY_FILE_LEN_MAX {
            return Err(bad(format!("longer than {IDENTITY_FILE_LEN_MAX} bytes")));
        }
        let signing = rustls::crypto::ring::sign::any_eddsa_type(&PrivatePkcs8KeyDer::from(der))
            .map_err(|e| bad(e.to_string()))?;
        let spki = signing
            .public_key()
            .ok_or_else(|| bad("no public key".into()))?
            .as_ref()
            .to_vec();
        let key_id = key_id_of(&spki);
        let key = CertifiedKey::new(vec![CertificateDer::from(spki)], signing);
        Ok(Identity {
            key: Arc::new(key),
            key_id,
            path,
        })
    }

    /// This node's key fingerprint (what peers pin).
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// Where the key is kept.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The TLS configurations of this identity (build once per process).
    pub fn tls(&self) -> Tls {
        Tls::new(self)
    }
}

/// Makes a new key file at `path`: 0600, created exclusively, synced,
/// and its directory synced, before anything uses it.
fn create(path: &Path) -> io::Result<()> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| io::Error::other("no OS randomness for a new key"))?;
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let written = f.write_all(pkcs8.as_ref()).and_then(|()| f.sync_all());
    if let Err(e) = written {
        drop(f);
        let _ = fs::remove_file(path);
        return Err(e);
    }
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}
