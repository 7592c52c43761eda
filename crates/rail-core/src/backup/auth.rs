//! Authentication of backup sets: an HMAC-SHA256 of the manifest under a key only the operators hold.
//!
//! The manifest's seal (an unkeyed SHA-256) catches accidents, but anyone who can write the backup
//! directory can reseal an edited manifest. The MAC cannot be forged without the key, and the manifest
//! lists the SHA-256 of every component file, so a set whose MAC verifies is a set rail wrote, file for
//! file. The key never lives beside the sets: it comes from `RAIL_BACKUP_KEY` or `backup.key_file`.
//!
//! A key is 32 random bytes written as one line `rail-backup-key-v1:<64 hex digits>`. Its id, the first
//! 16 hex digits of its SHA-256, is stored in each manifest so that rotated keys
//! (`backup.previous_key_files`) are tried by id, not by guessing.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use ring::hmac;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::manifest::Manifest;
use crate::config::BackupConfig;

/// Prefix of a key's text form.
pub const KEY_PREFIX: &str = "rail-backup-key-v1:";
/// The MAC algorithm named in manifests.
pub const ALGORITHM: &str = "hmac-sha256";
/// Domain separation: the MAC is over this label and the manifest's seal.
const LABEL: &[u8] = b"rail backup manifest v1\n";
/// A set dated further ahead than this is refused: a forged date must not win "newest".
const CLOCK_SKEW: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// The authentication stored in a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestAuth {
    pub alg: String,
    pub key_id: String,
    pub mac: String,
}

/// Errors of loading or generating keys.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error(
        "no backup key is configured: create one with `rollback keygen --output PATH` and set backup.key_file (or RAIL_BACKUP_KEY)"
    )]
    Missing,
    #[error("cannot read the backup key file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin} does not hold a rail backup key (expected one line `{KEY_PREFIX}` followed by 64 hex digits)")]
    Malformed { origin: String },
    #[error("the backup key file {} is readable by other users (mode {mode:o}); make it 0600", path.display())]
    Permissions { path: PathBuf, mode: u32 },
    #[error("{} already exists; pass --force to replace it (sets signed with the old key then need it in backup.previous_key_files)", path.display())]
    Exists { path: PathBuf },
    #[error("cannot write the backup key file {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Why a set is not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    #[error("it carries no authentication (written by an older rail, or by someone else)")]
    Unsigned,
    #[error("it is signed with key {key_id}, which is not configured (backup.key_file, backup.previous_key_files)")]
    UnknownKey { key_id: String },
    #[error("its authentication does not match its manifest (the set was changed or forged)")]
    BadMac,
    #[error("its authentication uses `{alg}`, which this rail does not know")]
    Algorithm { alg: String },
    #[error("it claims to have been taken at {created_at}, in the future")]
    Future { created_at: DateTime<Utc> },
    #[error("no backup key is configured to check it")]
    NoKey,
}

/// One key.
pub struct BackupKey {
    id: String,
    key: hmac::Key,
}

impl std::fmt::Debug for BackupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupKey").field("id", &self.id).finish_non_exhaustive()
    }
}

impl BackupKey {
    /// Parse the text form; `origin` names where it came from for the error.
    pub fn parse(text: &str, origin: &str) -> Result<Self, KeyError> {
        let malformed = || KeyError::Malformed { origin: origin.to_owned() };
        let hex_part = text.trim().strip_prefix(KEY_PREFIX).ok_or_else(malformed)?;
        let bytes = hex::decode(hex_part).map_err(|_| malformed())?;
        if bytes.len() != 32 {
            return Err(malformed());
        }
        Ok(Self::from_bytes(&bytes))
    }

    fn from_bytes(bytes: &[u8]) -> Self {
        let id = hex::encode(&Sha256::digest(bytes)[..8]);
        Self { id, key: hmac::Key::new(hmac::HMAC_SHA256, bytes) }
    }

    /// Read a key file, refusing one that others can read.
    pub fn read_file(path: &Path) -> Result<Self, KeyError> {
        use std::os::unix::fs::PermissionsExt as _;
        let read = |source| KeyError::Read { path: path.to_owned(), source };
        let meta = fs_err::metadata(path).map_err(read)?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions { path: path.to_owned(), mode });
        }
        if meta.len() > 4096 {
            return Err(KeyError::Malformed { origin: path.display().to_string() });
        }
        let text = fs_err::read_to_string(path).map_err(read)?;
        Self::parse(&text, &path.display().to_string())
    }

    /// The key's id: the first 16 hex digits of its SHA-256.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn mac(&self, seal: &str) -> hmac::Tag {
        hmac::sign(&self.key, &message(seal))
    }
}

/// What the MAC covers: a label and the seal.
fn message(seal: &str) -> Vec<u8> {
    let mut out = LABEL.to_vec();
    out.extend_from_slice(seal.as_bytes());
    out
}

/// The signing key and the keys that still verify.
#[derive(Debug, Default)]
pub struct Keyring {
    signing: Option<BackupKey>,
    previous: Vec<BackupKey>,
}

impl Keyring {
    /// The keys of `cfg`: `backup.key` (or `backup.key_file`) signs, `backup.previous_key_files` verify.
    pub fn from_config(cfg: &BackupConfig) -> Result<Self, KeyError> {
        let signing = if !cfg.key.is_empty() {
            Some(BackupKey::parse(cfg.key.expose(), "RAIL_BACKUP_KEY (backup.key)")?)
        } else if !cfg.key_file.as_os_str().is_empty() {
            Some(BackupKey::read_file(&cfg.key_file)?)
        } else {
            None
        };
        let previous = cfg
            .previous_key_files
            .iter()
            .map(|p| BackupKey::read_file(p))
            .collect::<Result<_, _>>()?;
        Ok(Self { signing, previous })
    }

    /// A keyring of one key (tests, `keygen`).
    pub fn single(key: BackupKey) -> Self {
        Self { signing: Some(key), previous: Vec::new() }
    }

    /// The key new sets are signed with.
    pub fn signing(&self) -> Result<&BackupKey, KeyError> {
        self.signing.as_ref().ok_or(KeyError::Missing)
    }

    pub fn is_empty(&self) -> bool {
        self.signing.is_none() && self.previous.is_empty()
    }

    /// Sign a manifest whose seal is set.
    pub fn sign(&self, seal: &str) -> Result<ManifestAuth, KeyError> {
        let key = self.signing()?;
        Ok(ManifestAuth {
            alg: ALGORITHM.into(),
            key_id: key.id.clone(),
            mac: hex::encode(key.mac(seal).as_ref()),
        })
    }

    /// Check the authentication of `manifest` (its seal recomputed from its content, not trusted), and
    /// that it is not dated in the future. Returns the id of the key that signed it.
    pub fn verify(&self, manifest: &Manifest) -> Result<String, AuthError> {
        let auth = manifest.auth.as_ref().ok_or(AuthError::Unsigned)?;
        if auth.alg != ALGORITHM {
            return Err(AuthError::Algorithm { alg: auth.alg.clone() });
        }
        if self.is_empty() {
            return Err(AuthError::NoKey);
        }
        let key = self
            .signing
            .iter()
            .chain(&self.previous)
            .find(|k| k.id == auth.key_id)
            .ok_or_else(|| AuthError::UnknownKey { key_id: auth.key_id.clone() })?;
        let tag = hex::decode(&auth.mac).map_err(|_| AuthError::BadMac)?;
        let seal = manifest.compute_seal();
        // ring's verify compares in constant time.
        hmac::verify(&key.key, &message(&seal), &tag).map_err(|_| AuthError::BadMac)?;
        if manifest.created_at > Utc::now() + CLOCK_SKEW {
            return Err(AuthError::Future { created_at: manifest.created_at });
        }
        Ok(key.id.clone())
    }
}

impl Keyring {
    /// A MAC of `data` under the signing key, for other records rail keeps beside the sets (the audit
    /// log's head): `(key id, hex MAC)`, or `None` without a key.
    pub fn sign_bytes(&self, label: &[u8], data: &[u8]) -> Option<(String, String)> {
        let key = self.signing.as_ref()?;
        let mut message = label.to_vec();
        message.extend_from_slice(data);
        Some((key.id.clone(), hex::encode(hmac::sign(&key.key, &message).as_ref())))
    }

    /// Check a MAC made by [`Keyring::sign_bytes`]: `None` when no configured key has `key_id`.
    pub fn verify_bytes(&self, label: &[u8], data: &[u8], key_id: &str, mac: &str) -> Option<bool> {
        let key = self.signing.iter().chain(&self.previous).find(|k| k.id == key_id)?;
        let mut message = label.to_vec();
        message.extend_from_slice(data);
        let tag = hex::decode(mac).ok()?;
        Some(hmac::verify(&key.key, &message, &tag).is_ok())
    }
}

/// Create a new key file at `path` (0600, fsynced), refusing to replace one unless `force`. Returns the
/// new key's id; the key itself is never printed.
pub fn generate_key_file(path: &Path, force: bool) -> Result<String, KeyError> {
    let write = |source| KeyError::Write { path: path.to_owned(), source };
    if !force && fs_err::symlink_metadata(path).is_ok() {
        return Err(KeyError::Exists { path: path.to_owned() });
    }
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    let key = BackupKey::from_bytes(&bytes);
    let text = format!("{KEY_PREFIX}{}\n", hex::encode(bytes));
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs_err::create_dir_all(parent).map_err(write)?;
    }
    // Written beside and renamed, so a replaced key is never half-written.
    crate::archive::write_private_atomically(path, text.as_bytes()).map_err(write)?;
    Ok(key.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_only_in_their_form() {
        let text = format!("{KEY_PREFIX}{}", "ab".repeat(32));
        let key = BackupKey::parse(&format!("{text}\n"), "x").unwrap();
        assert_eq!(key.id().len(), 16);
        for bad in [
            "",
            "ab".repeat(32).as_str(),
            &format!("{KEY_PREFIX}abc"),
            &format!("{KEY_PREFIX}{}", "zz".repeat(32)),
        ] {
            let error = BackupKey::parse(bad, "the variable").unwrap_err();
            assert!(error.to_string().contains("the variable"), "{error}");
        }
    }

    #[test]
    fn keygen_writes_a_private_file_and_refuses_to_replace_it() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("keys/backup.key");
        let id = generate_key_file(&path, false).unwrap();
        let mode = fs_err::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(BackupKey::read_file(&path).unwrap().id(), id);
        assert!(matches!(generate_key_file(&path, false), Err(KeyError::Exists { .. })));
        let other = generate_key_file(&path, true).unwrap();
        assert_ne!(other, id);

        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(BackupKey::read_file(&path), Err(KeyError::Permissions { .. })));
    }
}
