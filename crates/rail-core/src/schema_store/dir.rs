//! The directory store: `<dir>/index.json` and `schema_v<version>.graphql` files.
//!
//! The file names are those the old Django tool wrote, so an old `schema_versions/` directory can be
//! imported in place. Writers take an exclusive `flock` on `<dir>/.schemaver.lock`; a write puts the
//! SDL file in place first and then replaces the index by a rename, so a crash leaves either the old
//! or the new index, never half of one. Readers need no lock.

use std::collections::HashSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use chrono::Utc;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::{
    rollback_target, Activation, ActivationReason, SchemaStoreError, StoredVersion, VersionInfo,
};

const INDEX: &str = "index.json";
const LOCK: &str = ".schemaver.lock";
const FORMAT: u32 = 1;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    format: u32,
    versions: Vec<VersionInfo>,
    activations: Vec<Activation>,
}

pub struct DirStore {
    dir: PathBuf,
}

fn io<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> SchemaStoreError + 'a {
    move |source| SchemaStoreError::Io { action, path: path.to_owned(), source }
}

/// The SDL file of a version. Versions were normalised by `parse_version`, so this stays in `dir`.
fn schema_file_name(version: &str) -> String {
    format!("schema_v{version}.graphql")
}

impl DirStore {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn index_path(&self) -> PathBuf {
        self.dir.join(INDEX)
    }

    fn read_index(&self) -> Result<Index, SchemaStoreError> {
        let path = self.index_path();
        match fs_err::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| SchemaStoreError::CorruptIndex { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(Index { format: FORMAT, ..Index::default() })
            }
            Err(e) => Err(SchemaStoreError::Io { action: "read", path, source: e }),
        }
    }

    /// Run `change` on the index under the write lock, then replace the index atomically.
    fn write<T>(
        &self,
        change: impl FnOnce(&mut Index) -> Result<(T, Vec<FileOp>), SchemaStoreError>,
    ) -> Result<T, SchemaStoreError> {
        fs_err::create_dir_all(&self.dir).map_err(io("create", &self.dir))?;
        let lock_path = self.dir.join(LOCK);
        let file = fs_err::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io("open", &lock_path))?;
        let _lock =
            Flock::lock(file.into_file(), FlockArg::LockExclusive).map_err(|(_, errno)| {
                SchemaStoreError::Lock { path: lock_path.clone(), source: errno.into() }
            })?;

        let mut index = self.read_index()?;
        let (out, ops) = change(&mut index)?;
        index.format = FORMAT;
        // New files go in before the index names them; removed files go after it stops naming them.
        for op in &ops {
            if let FileOp::Write { name, contents } = op {
                self.write_atomically(name, contents.as_bytes())?;
            }
        }
        let json = serde_json::to_vec_pretty(&index)
            .map_err(|source| SchemaStoreError::CorruptIndex { path: self.index_path(), source })?;
        self.write_atomically(INDEX, &json)?;
        for op in &ops {
            if let FileOp::Remove { name } = op {
                let path = self.dir.join(name);
                match fs_err::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(SchemaStoreError::Io { action: "remove", path, source: e });
                    }
                    _ => {}
                }
            }
        }
        Ok(out)
    }

    fn write_atomically(&self, name: &str, contents: &[u8]) -> Result<(), SchemaStoreError> {
        let target = self.dir.join(name);
        let tmp = self.dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let result = (|| {
            let mut f = fs_err::File::create(&tmp)?;
            f.write_all(contents)?;
            f.sync_all()?;
            fs_err::rename(&tmp, &target)?;
            // Make the rename itself durable.
            fs_err::File::open(&self.dir)?.sync_all()
        })();
        result.map_err(|source| {
            let _ = fs_err::remove_file(&tmp);
            SchemaStoreError::Io { action: "write", path: target, source }
        })
    }

    pub fn list(&self) -> Result<Vec<VersionInfo>, SchemaStoreError> {
        Ok(self.read_index()?.versions)
    }

    fn read_sdl(&self, info: VersionInfo) -> Result<StoredVersion, SchemaStoreError> {
        let path = self.dir.join(schema_file_name(&info.version));
        let sdl = fs_err::read_to_string(&path).map_err(io("read", &path))?;
        Ok(StoredVersion { info, sdl })
    }

    pub fn get(&self, version: &str) -> Result<StoredVersion, SchemaStoreError> {
        let info = self
            .read_index()?
            .versions
            .into_iter()
            .find(|v| v.version == version)
            .ok_or_else(|| SchemaStoreError::NotFound { version: version.to_owned() })?;
        self.read_sdl(info)
    }

    pub fn active(&self) -> Result<Option<StoredVersion>, SchemaStoreError> {
        match self.read_index()?.versions.into_iter().find(|v| v.is_active) {
            Some(info) => self.read_sdl(info).map(Some),
            None => Ok(None),
        }
    }

    pub fn create(
        &self,
        info: VersionInfo,
        sdl: &str,
        activation: Option<(ActivationReason, String)>,
    ) -> Result<VersionInfo, SchemaStoreError> {
        let mut info = info;
        info.is_active = activation.is_some();
        self.write(|index| {
            if index.versions.iter().any(|v| v.version == info.version) {
                return Err(SchemaStoreError::AlreadyExists { version: info.version.clone() });
            }
            if let Some((reason, by)) = activation {
                let previous = set_active(index, None);
                index.activations.push(Activation {
                    version: info.version.clone(),
                    previous,
                    reason,
                    at: Utc::now(),
                    by,
                });
            }
            index.versions.push(info.clone());
            let op =
                FileOp::Write { name: schema_file_name(&info.version), contents: sdl.to_owned() };
            Ok((info, vec![op]))
        })
    }

    pub fn activate(
        &self,
        version: &str,
        reason: ActivationReason,
        by: &str,
    ) -> Result<Option<Activation>, SchemaStoreError> {
        self.write(|index| {
            if !index.versions.iter().any(|v| v.version == version) {
                return Err(SchemaStoreError::NotFound { version: version.to_owned() });
            }
            if index.versions.iter().any(|v| v.version == version && v.is_active) {
                return Ok((None, Vec::new()));
            }
            let previous = set_active(index, Some(version));
            let activation = Activation {
                version: version.to_owned(),
                previous,
                reason,
                at: Utc::now(),
                by: by.to_owned(),
            };
            index.activations.push(activation.clone());
            Ok((Some(activation), Vec::new()))
        })
    }

    pub fn delete(&self, version: &str, force: bool) -> Result<VersionInfo, SchemaStoreError> {
        self.write(|index| {
            let at = index
                .versions
                .iter()
                .position(|v| v.version == version)
                .ok_or_else(|| SchemaStoreError::NotFound { version: version.to_owned() })?;
            if index.versions[at].is_active && !force {
                return Err(SchemaStoreError::ActiveVersion { version: version.to_owned() });
            }
            let removed = index.versions.remove(at);
            Ok((removed, vec![FileOp::Remove { name: schema_file_name(version) }]))
        })
    }

    pub fn rollback(&self, by: &str) -> Result<Activation, SchemaStoreError> {
        self.write(|index| {
            let current = index.versions.iter().find(|v| v.is_active).map(|v| v.version.clone());
            let existing: HashSet<&str> =
                index.versions.iter().map(|v| v.version.as_str()).collect();
            let target = rollback_target(&index.activations, &existing, current.as_deref())
                .ok_or(SchemaStoreError::NothingToRollBack)?;
            let previous = set_active(index, Some(&target));
            let activation = Activation {
                version: target,
                previous,
                reason: ActivationReason::Rollback,
                at: Utc::now(),
                by: by.to_owned(),
            };
            index.activations.push(activation.clone());
            Ok((activation, Vec::new()))
        })
    }

    pub fn history(&self) -> Result<Vec<Activation>, SchemaStoreError> {
        Ok(self.read_index()?.activations)
    }
}

/// A file change that goes with an index change.
enum FileOp {
    Write { name: String, contents: String },
    Remove { name: String },
}

/// Make `version` the only active one (none if `None`); returns the previously active version.
fn set_active(index: &mut Index, version: Option<&str>) -> Option<String> {
    let previous = index.versions.iter().find(|v| v.is_active).map(|v| v.version.clone());
    for v in &mut index.versions {
        v.is_active = Some(v.version.as_str()) == version;
    }
    previous
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(version: &str) -> VersionInfo {
        VersionInfo {
            version: version.into(),
            description: String::new(),
            sha256: super::super::sha256_hex(version),
            created_at: Utc::now(),
            created_by: "test".into(),
            is_active: false,
            metadata: serde_json::json!({}),
        }
    }

    #[test]
    fn create_activate_delete_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let store = DirStore::new(tmp.path().join("versions"));
        assert!(store.list().unwrap().is_empty());
        assert!(store.active().unwrap().is_none());

        store
            .create(
                info("1.0.0"),
                "type Query { a: Int }",
                Some((ActivationReason::Activate, "t".into())),
            )
            .unwrap();
        store.create(info("1.1.0"), "type Query { a: Int b: Int }", None).unwrap();
        assert!(matches!(
            store.create(info("1.1.0"), "x", None),
            Err(SchemaStoreError::AlreadyExists { .. })
        ));
        assert_eq!(store.active().unwrap().unwrap().info.version, "1.0.0");
        assert_eq!(store.get("1.1.0").unwrap().sdl, "type Query { a: Int b: Int }");
        assert!(tmp.path().join("versions/schema_v1.1.0.graphql").exists());

        let act = store.activate("1.1.0", ActivationReason::Activate, "t").unwrap().unwrap();
        assert_eq!(act.previous.as_deref(), Some("1.0.0"));
        assert!(store.activate("1.1.0", ActivationReason::Activate, "t").unwrap().is_none());
        assert_eq!(store.list().unwrap().iter().filter(|v| v.is_active).count(), 1);

        assert!(matches!(
            store.delete("1.1.0", false),
            Err(SchemaStoreError::ActiveVersion { .. })
        ));
        let back = store.rollback("t").unwrap();
        assert_eq!(back.version, "1.0.0");
        assert!(matches!(store.rollback("t"), Err(SchemaStoreError::NothingToRollBack)));
        store.delete("1.1.0", false).unwrap();
        assert!(!tmp.path().join("versions/schema_v1.1.0.graphql").exists());
        assert!(matches!(store.get("1.1.0"), Err(SchemaStoreError::NotFound { .. })));
        assert_eq!(store.history().unwrap().len(), 3);
    }

    #[test]
    fn a_corrupt_index_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        fs_err::write(tmp.path().join(INDEX), b"{not json").unwrap();
        let store = DirStore::new(tmp.path().to_owned());
        assert!(matches!(store.list(), Err(SchemaStoreError::CorruptIndex { .. })));
    }
}
