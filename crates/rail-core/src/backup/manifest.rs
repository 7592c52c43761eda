//! `manifest.json`: what a backup set holds, written last, and sealed with its own SHA-256 so that a
//! hand edit (a checksum changed to match a damaged file, another app version) is caught.
//!
//! The seal is the SHA-256 of the manifest's canonical JSON (keys sorted, no whitespace) without the
//! `manifest_sha256` key, so it survives re-indentation but not a change of any value or key.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::auth::{KeyError, Keyring, ManifestAuth};
use super::pg::TableCount;
use crate::archive::create_private_file;

/// File name of the manifest in a set.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The manifest format this version writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Manifests larger than this are refused unread.
const MAX_SIZE: u64 = 16 * 1024 * 1024;

/// Errors of reading a manifest.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    #[error("the manifest is missing (the set is incomplete)")]
    Missing,
    #[error("cannot read the manifest")]
    Read {
        #[source]
        source: std::io::Error,
    },
    #[error("the manifest is larger than {MAX_SIZE} bytes")]
    TooLarge,
    #[error("the manifest is not valid JSON of a backup manifest")]
    Parse {
        #[source]
        source: serde_json::Error,
    },
    #[error("the manifest has format version {found}; this rail reads version {FORMAT_VERSION}")]
    Version { found: u64 },
    #[error("the manifest was changed after it was written (its seal does not match its content)")]
    Edited,
    #[error("the manifest names the set `{found}`, not `{expected}`")]
    WrongName { expected: String, found: String },
    #[error("the manifest lists an unsafe file name `{file}`")]
    UnsafeFile { file: String },
}

/// Errors of writing a signed manifest.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestWriteError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("cannot write the manifest")]
    Io(#[from] std::io::Error),
}

/// A component of a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComponentKind {
    Database,
    Static,
    Media,
    Schema,
}

impl ComponentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Database => "database",
            Self::Static => "static",
            Self::Media => "media",
            Self::Schema => "schema",
        }
    }
}

impl std::fmt::Display for ComponentKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Formats of component files.
pub mod format {
    /// `pg_dump --format=custom`.
    pub const PG_CUSTOM: &str = "pg_dump-custom";
    /// `pg_dump --format=custom --compress=0` through zstd (level 3, a checksum per frame).
    pub const PG_CUSTOM_ZSTD: &str = "pg_dump-custom+zstd";
    /// `pg_dump --format=directory`: a directory of files.
    pub const PG_DIRECTORY: &str = "pg_dump-directory";
    /// A gzip-compressed tar archive.
    pub const TAR_GZIP: &str = "tar+gzip";
    /// A zstd-compressed tar archive.
    pub const TAR_ZSTD: &str = "tar+zstd";
    /// GraphQL SDL text.
    pub const GRAPHQL_SDL: &str = "graphql-sdl";
}

/// One file of a directory-format dump.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub file: String,
    pub size: u64,
    pub sha256: String,
}

/// A component: its file, format, size and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Component {
    pub name: ComponentKind,
    /// File (or, for a directory-format dump, directory) name inside the set.
    pub file: String,
    pub format: String,
    /// Bytes; for a directory, the sum of its files.
    pub size: u64,
    /// SHA-256 of the file; for a directory, of its `files` list as `sha256sum` prints it.
    pub sha256: String,
    /// Entries of an archive, the root directory included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entries: Option<u64>,
    /// Bytes of file content inside an archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_bytes: Option<u64>,
    /// The files of a directory-format dump.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileEntry>,
}

/// The database a set was taken from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseInfo {
    pub name: String,
    pub server_version: String,
    pub pg_dump_version: String,
    /// Exact row counts taken in the dump's snapshot, compared by the restore test.
    pub tables: Vec<TableCount>,
}

/// The manifest of a backup set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub environment: String,
    /// Why it was taken: `manual`, `deploy <run id>`, `pre-rollback <run id>`.
    pub reason: String,
    /// The app version running when it was taken (image tag, release id, git sha).
    pub app_version: Option<String>,
    /// The active GraphQL schema version.
    pub schema_version: Option<String>,
    /// `rail <version>`.
    pub tool_version: String,
    pub database: Option<DatabaseInfo>,
    pub components: Vec<Component>,
    /// How long taking the set took.
    pub duration_ms: u64,
    /// The seal: see the module documentation. Empty until the manifest is written.
    #[serde(default)]
    pub manifest_sha256: String,
    /// The keyed authentication of the seal (see [`super::auth`]); absent in sets of older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<ManifestAuth>,
}

impl Manifest {
    pub fn component(&self, kind: ComponentKind) -> Option<&Component> {
        self.components.iter().find(|c| c.name == kind)
    }

    /// Total bytes of the components.
    pub fn total_size(&self) -> u64 {
        self.components.iter().map(|c| c.size).sum()
    }

    /// The seal of this manifest's content: the SHA-256 of its canonical JSON without the seal and the
    /// authentication.
    pub fn compute_seal(&self) -> String {
        let mut value = serde_json::to_value(self).expect("manifests always serialize");
        if let Some(map) = value.as_object_mut() {
            map.remove("auth");
            map.insert("manifest_sha256".into(), Value::String(String::new()));
        }
        seal(&value)
    }

    /// Seal, sign with the keyring's signing key, and write the manifest as `<dir>/manifest.json`
    /// (0600, fsynced). Returns the written manifest.
    pub fn write_signed(mut self, dir: &Path, keys: &Keyring) -> Result<Self, ManifestWriteError> {
        self.manifest_sha256 = self.compute_seal();
        self.auth = Some(keys.sign(&self.manifest_sha256)?);
        Ok(self.write_file(dir)?)
    }

    /// Seal and write the manifest without authentication, as rail 0.1 did (and as anyone who can
    /// write the backup directory can): such a set is refused by restores. For tests and tools.
    pub fn write_unsigned(mut self, dir: &Path) -> Result<Self, std::io::Error> {
        self.auth = None;
        self.manifest_sha256 = self.compute_seal();
        self.write_file(dir)
    }

    fn write_file(self, dir: &Path) -> Result<Self, std::io::Error> {
        let mut bytes = serde_json::to_vec_pretty(&self).expect("manifests always serialize");
        bytes.push(b'\n');
        let path = dir.join(MANIFEST_FILE);
        let mut file = create_private_file(&path).map_err(std::io::Error::other)?;
        std::io::Write::write_all(&mut file, &bytes)?;
        file.sync_all()?;
        Ok(self)
    }

    /// Read and check the manifest of the set `name` in `dir`. With `check_seal` false, an edited
    /// manifest is still read (an emergency restore of a set whose manifest was repaired by hand).
    pub fn read(dir: &Path, name: &str, check_seal: bool) -> Result<Self, ManifestError> {
        let path = dir.join(MANIFEST_FILE);
        let meta = match fs_err::metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ManifestError::Missing)
            }
            Err(source) => return Err(ManifestError::Read { source }),
        };
        if meta.len() > MAX_SIZE {
            return Err(ManifestError::TooLarge);
        }
        let bytes = fs_err::read(&path).map_err(|source| ManifestError::Read { source })?;
        Self::parse(&bytes, name, check_seal)
    }

    /// Parse and check manifest bytes; see [`Manifest::read`].
    pub fn parse(bytes: &[u8], name: &str, check_seal: bool) -> Result<Self, ManifestError> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|source| ManifestError::Parse { source })?;
        let version = value.get("format_version").and_then(Value::as_u64).unwrap_or(0);
        if version != u64::from(FORMAT_VERSION) {
            return Err(ManifestError::Version { found: version });
        }
        let stored = value.get("manifest_sha256").and_then(Value::as_str).unwrap_or("").to_owned();
        if check_seal {
            let mut unsealed = value.clone();
            if let Some(map) = unsealed.as_object_mut() {
                map.remove("auth");
                map.insert("manifest_sha256".into(), Value::String(String::new()));
            }
            if seal(&unsealed) != stored {
                return Err(ManifestError::Edited);
            }
        }
        let manifest: Self =
            serde_json::from_value(value).map_err(|source| ManifestError::Parse { source })?;
        if manifest.name != name {
            return Err(ManifestError::WrongName {
                expected: name.to_owned(),
                found: manifest.name,
            });
        }
        for component in &manifest.components {
            check_file_name(&component.file)?;
            for file in &component.files {
                check_file_name(&file.file)?;
            }
        }
        Ok(manifest)
    }
}

/// A component file must be a plain name inside the set.
fn check_file_name(file: &str) -> Result<(), ManifestError> {
    if crate::store::validate_name(file).is_err() || file == MANIFEST_FILE {
        return Err(ManifestError::UnsafeFile { file: file.to_owned() });
    }
    Ok(())
}

/// SHA-256 of the canonical form of `value`.
fn seal(value: &Value) -> String {
    let mut out = Vec::new();
    canonical(value, &mut out);
    hex::encode(Sha256::digest(&out))
}

/// JSON with object keys sorted and no whitespace, whatever the map type of serde_json.
fn canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(
                    serde_json::to_string(key).expect("strings serialize").as_bytes(),
                );
                out.push(b':');
                canonical(&map[key], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(item, out);
            }
            out.push(b']');
        }
        other => out.extend_from_slice(other.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            format_version: FORMAT_VERSION,
            name: "backup_20260101_000000".into(),
            created_at: "2026-01-01T00:00:00Z".parse().unwrap(),
            environment: "production".into(),
            reason: "manual".into(),
            app_version: Some("v1".into()),
            schema_version: None,
            tool_version: "rail 0.1.0".into(),
            database: Some(DatabaseInfo {
                name: "app".into(),
                server_version: "15.20".into(),
                pg_dump_version: "pg_dump (PostgreSQL) 15.20".into(),
                tables: vec![TableCount { schema: "public".into(), table: "t".into(), rows: 3 }],
            }),
            components: vec![Component {
                name: ComponentKind::Database,
                file: "database.dump".into(),
                format: format::PG_CUSTOM.into(),
                size: 10,
                sha256: "ab".repeat(32),
                entries: None,
                content_bytes: None,
                files: Vec::new(),
            }],
            duration_ms: 5,
            manifest_sha256: String::new(),
            auth: None,
        }
    }

    #[test]
    fn sealed_manifests_read_back_and_edits_are_caught() {
        let tmp = tempfile::tempdir().unwrap();
        let written = sample().write_unsigned(tmp.path()).unwrap();
        assert_eq!(written.manifest_sha256.len(), 64);
        let read = Manifest::read(tmp.path(), "backup_20260101_000000", true).unwrap();
        assert_eq!(read, written);

        let text = fs_err::read_to_string(tmp.path().join(MANIFEST_FILE)).unwrap();
        // Re-indenting is not an edit.
        let compact = serde_json::to_vec(&serde_json::from_str::<Value>(&text).unwrap()).unwrap();
        Manifest::parse(&compact, "backup_20260101_000000", true).unwrap();

        let edited = text.replace("\"v1\"", "\"v2\"");
        assert!(matches!(
            Manifest::parse(edited.as_bytes(), "backup_20260101_000000", true),
            Err(ManifestError::Edited)
        ));
        // An emergency read takes it anyway.
        let forced = Manifest::parse(edited.as_bytes(), "backup_20260101_000000", false).unwrap();
        assert_eq!(forced.app_version.as_deref(), Some("v2"));

        let added = text.replacen('{', "{\"extra\": 1,", 1);
        assert!(matches!(
            Manifest::parse(added.as_bytes(), "backup_20260101_000000", true),
            Err(ManifestError::Edited)
        ));
        assert!(matches!(
            Manifest::parse(text.as_bytes(), "other", true),
            Err(ManifestError::WrongName { .. })
        ));
        assert!(matches!(
            Manifest::read(&tmp.path().join("none"), "x", true),
            Err(ManifestError::Missing)
        ));
    }

    #[test]
    fn hostile_file_names_are_refused() {
        let mut m = sample();
        m.components[0].file = "../../etc/passwd".into();
        let tmp = tempfile::tempdir().unwrap();
        m.write_unsigned(tmp.path()).unwrap();
        assert!(matches!(
            Manifest::read(tmp.path(), "backup_20260101_000000", true),
            Err(ManifestError::UnsafeFile { .. })
        ));
    }

    #[test]
    fn signed_manifests_verify_and_every_forgery_is_named() {
        use crate::backup::auth::{AuthError, BackupKey, Keyring};
        let key = |byte: u8| {
            let text = format!("rail-backup-key-v1:{}", hex::encode([byte; 32]));
            Keyring::single(BackupKey::parse(&text, "test").unwrap())
        };
        let (keys, other) = (key(1), key(2));
        let tmp = tempfile::tempdir().unwrap();
        let name = "backup_20260101_000000";
        let written = sample().write_signed(tmp.path(), &keys).unwrap();
        let read = Manifest::read(tmp.path(), name, true).unwrap();
        assert_eq!(read, written);
        keys.verify(&read).unwrap();
        assert!(matches!(other.verify(&read), Err(AuthError::UnknownKey { .. })));

        // Edited and resealed without the key: the seal passes, the MAC does not.
        let mut edited = read.clone();
        edited.app_version = Some("evil".into());
        edited.manifest_sha256 = edited.compute_seal();
        assert_eq!(keys.verify(&edited), Err(AuthError::BadMac));
        let mut unsigned = read.clone();
        unsigned.auth = None;
        assert_eq!(keys.verify(&unsigned), Err(AuthError::Unsigned));
        assert_eq!(Keyring::default().verify(&read), Err(AuthError::NoKey));

        // A future date is refused even when signed.
        let mut future = sample();
        future.created_at = "2099-01-01T00:00:00Z".parse().unwrap();
        let dir = tmp.path().join("future");
        fs_err::create_dir(&dir).unwrap();
        let future = future.write_signed(&dir, &keys).unwrap();
        assert!(matches!(keys.verify(&future), Err(AuthError::Future { .. })));
    }
}
