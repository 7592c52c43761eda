//! The GraphQL schema store: versions of the app's schema (SDL), which one is active, and the history
//! of activations, kept in a directory (the default, needs no database) or in PostgreSQL.
//!
//! Versions are semantic versions, normalised (`v1.2` is refused, `v1.2.0` becomes `1.2.0`) and
//! therefore safe as file names. At most one version is active. Every write is one atomic step: in the
//! directory store the index file is replaced by a rename under an exclusive lock, in PostgreSQL each
//! write is one transaction serialised by an advisory lock. This module knows nothing of GraphQL:
//! `schemaver` parses and diffs, the store keeps bytes and their SHA-256.

mod dir;
mod legacy;
mod postgres;

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use legacy::{read_legacy_versions, LegacyVersion, LEGACY_TABLE};

use crate::secret::Secret;

/// Where versions are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// `<dir>/index.json` and one `schema_v<version>.graphql` per version.
    Dir(PathBuf),
    /// Tables `rail_schema_versions` and `rail_schema_activations`, created on first use.
    Postgres { url: Secret },
}

impl fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreLocation::Dir(path) => write!(f, "directory {}", path.display()),
            StoreLocation::Postgres { url } => {
                write!(f, "PostgreSQL {}", crate::secret::redact_url(url.expose()))
            }
        }
    }
}

/// Errors of the schema store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaStoreError {
    #[error("invalid version `{version}`: versions are semantic versions like 1.2.0")]
    InvalidVersion {
        version: String,
        #[source]
        source: Option<semver::Error>,
    },
    #[error("schema version {version} does not exist")]
    NotFound { version: String },
    #[error("schema version {version} already exists")]
    AlreadyExists { version: String },
    #[error("schema version {version} is the active one; use --force to delete it anyway")]
    ActiveVersion { version: String },
    #[error("no earlier activation to roll back to")]
    NothingToRollBack,
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the schema index {} is corrupt", path.display())]
    CorruptIndex {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot lock {}", path.display())]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot connect to the schema store at {target}")]
    Connect {
        target: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("schema store query failed while {action}")]
    Database {
        action: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("the schema store holds an unreadable value in {what}")]
    BadValue { what: String },
    #[error("the legacy table {LEGACY_TABLE} does not exist in that database")]
    NoLegacyTable,
}

/// Parse and normalise a version: an optional leading `v`, then a semantic version.
///
/// Anything else (paths, `..`, separators, spaces) is refused, so versions are safe in file names.
pub fn parse_version(text: &str) -> Result<semver::Version, SchemaStoreError> {
    let invalid = |source| SchemaStoreError::InvalidVersion { version: text.to_owned(), source };
    let trimmed = text.trim();
    let bare = trimmed.strip_prefix(['v', 'V']).unwrap_or(trimmed);
    if bare.is_empty() || bare.len() > 64 {
        return Err(invalid(None));
    }
    let version = semver::Version::parse(bare).map_err(|e| invalid(Some(e)))?;
    // semver allows only [0-9A-Za-z.+-]; checked again because file names depend on it.
    let canonical = version.to_string();
    if !canonical.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+')) {
        return Err(invalid(None));
    }
    Ok(version)
}

/// Lowercase hex SHA-256 of a schema's SDL.
pub fn sha256_hex(sdl: &str) -> String {
    hex::encode(Sha256::digest(sdl.as_bytes()))
}

/// What the store knows of one version (everything but the SDL).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub version: String,
    #[serde(default)]
    pub description: String,
    pub sha256: String,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub created_by: String,
    #[serde(default)]
    pub is_active: bool,
    #[serde(default = "empty_object")]
    pub metadata: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

impl VersionInfo {
    /// The version parsed back; stored versions were validated on the way in.
    pub fn semver(&self) -> Option<semver::Version> {
        semver::Version::parse(&self.version).ok()
    }
}

/// A version with its SDL.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredVersion {
    pub info: VersionInfo,
    pub sdl: String,
}

/// Why a version became active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivationReason {
    /// `schemaver activate`, or `create --activate`.
    Activate,
    /// `schemaver rollback`.
    Rollback,
    /// `rollback` restored a backup set.
    Restore,
    /// `schemaver import-legacy` carried over the old active version.
    Import,
}

impl ActivationReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ActivationReason::Activate => "activate",
            ActivationReason::Rollback => "rollback",
            ActivationReason::Restore => "restore",
            ActivationReason::Import => "import",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [Self::Activate, Self::Rollback, Self::Restore, Self::Import]
            .into_iter()
            .find(|r| r.as_str() == text)
    }
}

/// One entry of the activation history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Activation {
    pub version: String,
    /// The version active just before, if any.
    pub previous: Option<String>,
    pub reason: ActivationReason,
    pub at: DateTime<Utc>,
    pub by: String,
}

/// A version to store.
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub version: semver::Version,
    pub description: String,
    pub sdl: String,
    pub created_by: String,
    /// When it was created; now unless carried over from elsewhere (an import).
    pub created_at: Option<DateTime<Utc>>,
    pub metadata: serde_json::Value,
    /// Make it the active version in the same write.
    pub activate: Option<ActivationReason>,
}

/// An open schema store.
pub enum SchemaStore {
    Dir(dir::DirStore),
    Postgres(postgres::PgStore),
}

impl SchemaStore {
    /// Open the store; a PostgreSQL store connects and creates its tables if needed, a directory is
    /// only created by the first write.
    pub async fn open(location: &StoreLocation) -> Result<Self, SchemaStoreError> {
        Ok(match location {
            StoreLocation::Dir(path) => SchemaStore::Dir(dir::DirStore::new(path.clone())),
            StoreLocation::Postgres { url } => {
                SchemaStore::Postgres(postgres::PgStore::connect(url).await?)
            }
        })
    }

    /// Every version, oldest semantic version first.
    pub async fn list(&self) -> Result<Vec<VersionInfo>, SchemaStoreError> {
        let mut versions = match self {
            SchemaStore::Dir(s) => s.list()?,
            SchemaStore::Postgres(s) => s.list().await?,
        };
        versions.sort_by_key(VersionInfo::semver);
        Ok(versions)
    }

    pub async fn get(&self, version: &semver::Version) -> Result<StoredVersion, SchemaStoreError> {
        match self {
            SchemaStore::Dir(s) => s.get(&version.to_string()),
            SchemaStore::Postgres(s) => s.get(&version.to_string()).await,
        }
    }

    pub async fn active(&self) -> Result<Option<StoredVersion>, SchemaStoreError> {
        match self {
            SchemaStore::Dir(s) => s.active(),
            SchemaStore::Postgres(s) => s.active().await,
        }
    }

    /// Store a new version (refused if it exists), activating it if asked.
    pub async fn create(&self, new: NewVersion) -> Result<VersionInfo, SchemaStoreError> {
        let by = new.created_by.clone();
        let info = VersionInfo {
            version: new.version.to_string(),
            description: new.description,
            sha256: sha256_hex(&new.sdl),
            created_at: new.created_at.unwrap_or_else(Utc::now),
            created_by: new.created_by,
            is_active: new.activate.is_some(),
            metadata: new.metadata,
        };
        let activation = new.activate.map(|reason| (reason, by));
        match self {
            SchemaStore::Dir(s) => s.create(info, &new.sdl, activation),
            SchemaStore::Postgres(s) => s.create(info, &new.sdl, activation).await,
        }
    }

    /// Make a version the active one. Activating the active version changes nothing and returns
    /// `None`.
    pub async fn activate(
        &self,
        version: &semver::Version,
        reason: ActivationReason,
        by: &str,
    ) -> Result<Option<Activation>, SchemaStoreError> {
        let version = version.to_string();
        match self {
            SchemaStore::Dir(s) => s.activate(&version, reason, by),
            SchemaStore::Postgres(s) => s.activate(&version, reason, by).await,
        }
    }

    /// Delete a version; the active one only with `force` (leaving no version active).
    pub async fn delete(
        &self,
        version: &semver::Version,
        force: bool,
    ) -> Result<VersionInfo, SchemaStoreError> {
        let version = version.to_string();
        match self {
            SchemaStore::Dir(s) => s.delete(&version, force),
            SchemaStore::Postgres(s) => s.delete(&version, force).await,
        }
    }

    /// Re-activate the version that was active before the current one (undoing activations one by
    /// one, skipping versions deleted since).
    pub async fn rollback(&self, by: &str) -> Result<Activation, SchemaStoreError> {
        match self {
            SchemaStore::Dir(s) => s.rollback(by),
            SchemaStore::Postgres(s) => s.rollback(by).await,
        }
    }

    /// The activation history, oldest first.
    pub async fn history(&self) -> Result<Vec<Activation>, SchemaStoreError> {
        match self {
            SchemaStore::Dir(s) => s.history(),
            SchemaStore::Postgres(s) => s.history().await,
        }
    }
}

/// The version a rollback returns to: activations replayed as a stack (an activation pushes, a
/// rollback pops), then the entry below the current one that still exists.
fn rollback_target(
    history: &[Activation],
    existing: &HashSet<&str>,
    current: Option<&str>,
) -> Option<String> {
    let mut stack: Vec<&str> = Vec::new();
    for a in history {
        if a.reason == ActivationReason::Rollback {
            stack.pop();
            if stack.last() != Some(&a.version.as_str()) {
                stack.push(&a.version);
            }
        } else {
            stack.push(&a.version);
        }
    }
    if let Some(current) = current {
        if stack.last() == Some(&current) {
            stack.pop();
        }
    }
    while let Some(top) = stack.pop() {
        if Some(top) != current && existing.contains(top) {
            return Some(top.to_owned());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_normalised_and_sanitised() {
        assert_eq!(parse_version("v1.2.0").unwrap().to_string(), "1.2.0");
        assert_eq!(
            parse_version(" 1.0.0-rc.1+build.5 ").unwrap().to_string(),
            "1.0.0-rc.1+build.5"
        );
        for bad in ["../../x", "1.2", "1.2.0/..", "", "1.0.0 ; rm", "backup-20240101", "v"] {
            assert!(
                matches!(parse_version(bad), Err(SchemaStoreError::InvalidVersion { .. })),
                "{bad}"
            );
        }
    }

    fn act(version: &str, reason: ActivationReason) -> Activation {
        Activation {
            version: version.into(),
            previous: None,
            reason,
            at: Utc::now(),
            by: "t".into(),
        }
    }

    #[test]
    fn rollback_undoes_activations_one_by_one() {
        use ActivationReason::{Activate, Rollback};
        let all: HashSet<&str> = ["a", "b", "c"].into_iter().collect();
        let mut h = vec![act("a", Activate), act("b", Activate), act("c", Activate)];
        assert_eq!(rollback_target(&h, &all, Some("c")).as_deref(), Some("b"));
        h.push(act("b", Rollback));
        assert_eq!(rollback_target(&h, &all, Some("b")).as_deref(), Some("a"));
        h.push(act("a", Rollback));
        assert_eq!(rollback_target(&h, &all, Some("a")), None);
        let without_b: HashSet<&str> = ["a", "c"].into_iter().collect();
        let h = vec![act("a", Activate), act("b", Activate), act("c", Activate)];
        assert_eq!(rollback_target(&h, &without_b, Some("c")).as_deref(), Some("a"));
    }
}
