//! Where backup sets, journals and the audit log are kept: the [`BackupStore`] trait and its local
//! directory implementation, [`LocalDirStore`].
//!
//! A store knows sets by name only and guards every name ([`validate_name`]), so no name from a command
//! line or a manifest can reach outside it. A set is written into a private, hidden `.partial-<name>/`
//! directory and appears under its name only when [`BackupStore::commit`] renames it into place, after
//! everything in it was fsynced; a set being removed goes back to `.partial-<name>/` first, so a set is
//! never seen half written nor half removed.
//!
//! Restores need the set's files as local paths (`pg_restore --jobs` seeks in the dump), so the trait
//! hands out local directories. The off-site copy in S3-compatible storage is not a second
//! implementation but sits beside this one ([`crate::remote`]): it moves whole, committed sets out of
//! and into the local store, which every restore reads.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDateTime, Utc};

use crate::archive::create_dir_mode;

/// Prefix of a set being written or removed.
pub const PARTIAL_PREFIX: &str = ".partial-";
/// Prefix and suffix of the plain-SQL dumps of the older deploy script.
pub const LEGACY_PREFIX: &str = "db_backup_";
pub const LEGACY_SUFFIX: &str = ".sql";
/// Longest accepted set name.
pub const MAX_NAME_LEN: usize = 100;
/// Names that are not sets.
const RESERVED: &[&str] = &[crate::journal::DIR_NAME];

/// Errors of the backup store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("invalid backup name `{name}`: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("backup `{name}` already exists in {}", dir.display())]
    Exists { name: String, dir: PathBuf },
    #[error("no backup `{name}` in {}", dir.display())]
    NotFound { name: String, dir: PathBuf },
    #[error("{} was not written by rail (it has no {SET_MARKER} marker and no manifest): rail leaves it alone", path.display())]
    Foreign { path: PathBuf },
    #[error("cannot access {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_owned(), source }
}

/// Check a backup set name: 1 to 100 of `A-Z a-z 0-9 . _ -`, starting with a letter or digit, no `..`.
pub fn validate_name(name: &str) -> Result<(), StoreError> {
    let invalid = |reason| Err(StoreError::InvalidName { name: name.to_owned(), reason });
    if name.is_empty() {
        return invalid("it is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return invalid("it is longer than 100 characters");
    }
    if name.contains('/') || name.contains('\\') {
        return invalid("it contains a path separator");
    }
    if name.contains("..") {
        return invalid("it contains `..`");
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        // `-rf` would read as an option to any program handed the name; `.x` would be hidden.
        return invalid("it must start with a letter or a digit");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
        return invalid("only letters, digits, `.`, `_` and `-` are allowed");
    }
    if RESERVED.contains(&name) {
        return invalid("the name is reserved");
    }
    Ok(())
}

/// What an entry of the store is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A committed set (whether its manifest is there is for the reader to find out).
    Set,
    /// A set being written, being removed, or left by a run that died.
    Partial,
    /// A `db_backup_*.sql` file of the older deploy script.
    Legacy,
    /// A directory rail did not write (no [`SET_MARKER`], no manifest): listed, never touched.
    Foreign,
}

/// The file rail writes first into every set it begins, and keeps: a directory without it (or, for
/// sets of older versions, without a manifest) is not rail's, and rail never removes it.
pub const SET_MARKER: &str = ".rail-set";

/// Whether `dir` is a set rail wrote (or began): it holds the marker or a manifest, as regular files.
fn is_rail_set(dir: &Path) -> bool {
    [SET_MARKER, crate::backup::MANIFEST_FILE]
        .iter()
        .any(|f| fs_err::symlink_metadata(dir.join(f)).is_ok_and(|m| m.is_file()))
}

/// One entry of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreEntry {
    pub name: String,
    pub kind: EntryKind,
    /// Local path of the set directory or legacy file.
    pub path: PathBuf,
    /// Last modification of the directory or file.
    pub modified: Option<DateTime<Utc>>,
}

/// Storage of backup sets, journals and the audit log.
pub trait BackupStore: fmt::Debug + Send + Sync {
    /// Where the store is, for messages.
    fn describe(&self) -> String;

    /// Every set, partial set and legacy dump, in no particular order.
    fn entries(&self) -> Result<Vec<StoreEntry>, StoreError>;

    /// Start writing the set `name`: an empty private local directory to write its files into. Fails if
    /// a set or a partial set of that name exists.
    fn begin(&self, name: &str) -> Result<PathBuf, StoreError>;

    /// Publish the set written into [`begin`](Self::begin)'s directory, atomically and durably.
    fn commit(&self, name: &str) -> Result<PathBuf, StoreError>;

    /// Throw away a set that was begun and not committed.
    fn abort(&self, name: &str) -> Result<(), StoreError>;

    /// A local directory (or, for a legacy dump, file) holding the entry `name`.
    fn local_path(&self, name: &str) -> Result<StoreEntry, StoreError>;

    /// Remove an entry: a set first becomes partial, so a removal cut short never leaves half a set.
    fn remove(&self, entry: &StoreEntry) -> Result<(), StoreError>;

    /// Directory of run journals and the audit log.
    fn journal_dir(&self) -> PathBuf;

    /// Bytes free where sets are written.
    fn free_space(&self) -> Result<u64, StoreError>;
}

/// Sets as directories of one local directory (`backup.directory`).
#[derive(Debug, Clone)]
pub struct LocalDirStore {
    root: PathBuf,
}

impl LocalDirStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Create the store's directory (0700) if it is missing.
    pub fn ensure(&self) -> Result<(), StoreError> {
        if self.root.is_dir() {
            return Ok(());
        }
        if let Some(parent) = self.root.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs_err::create_dir_all(parent).map_err(io_error(parent))?;
        }
        match create_dir_mode(&self.root, 0o700) {
            Ok(()) => sync_dir(self.root.parent().unwrap_or(Path::new("."))),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(source) => Err(StoreError::Io { path: self.root.clone(), source }),
        }
    }

    fn partial(&self, name: &str) -> PathBuf {
        self.root.join(format!("{PARTIAL_PREFIX}{name}"))
    }
}

impl BackupStore for LocalDirStore {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn entries(&self) -> Result<Vec<StoreEntry>, StoreError> {
        let read = match fs_err::read_dir(&self.root) {
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(StoreError::Io { path: self.root.clone(), source }),
        };
        let mut out = Vec::new();
        for entry in read {
            let entry = entry.map_err(io_error(&self.root))?;
            let Ok(file_name) = entry.file_name().into_string() else { continue };
            let Ok(meta) = fs_err::symlink_metadata(entry.path()) else { continue };
            let modified = meta.modified().ok().map(DateTime::<Utc>::from);
            let (name, kind) = if meta.is_dir() {
                if crate::journal::dir(&self.root) == entry.path() {
                    continue;
                }
                if !is_rail_set(&entry.path()) {
                    (file_name, EntryKind::Foreign)
                } else if let Some(name) = file_name.strip_prefix(PARTIAL_PREFIX) {
                    (name.to_owned(), EntryKind::Partial)
                } else {
                    (file_name, EntryKind::Set)
                }
            } else if meta.is_file()
                && file_name.starts_with(LEGACY_PREFIX)
                && file_name.ends_with(LEGACY_SUFFIX)
            {
                (file_name.trim_end_matches(LEGACY_SUFFIX).to_owned(), EntryKind::Legacy)
            } else {
                continue;
            };
            if kind != EntryKind::Foreign && validate_name(&name).is_err() {
                continue;
            }
            out.push(StoreEntry { name, kind, path: entry.path(), modified });
        }
        Ok(out)
    }

    fn begin(&self, name: &str) -> Result<PathBuf, StoreError> {
        validate_name(name)?;
        self.ensure()?;
        if self.root.join(name).exists() {
            return Err(StoreError::Exists { name: name.to_owned(), dir: self.root.clone() });
        }
        let partial = self.partial(name);
        match create_dir_mode(&partial, 0o700) {
            Ok(()) => {
                let marker = partial.join(SET_MARKER);
                let mut file = crate::archive::create_private_file(&marker).map_err(|e| {
                    StoreError::Io { path: marker.clone(), source: io::Error::other(e) }
                })?;
                io::Write::write_all(&mut file, format!("rail backup set {name}\n").as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(io_error(&marker))?;
                Ok(partial)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Err(StoreError::Exists { name: name.to_owned(), dir: self.root.clone() })
            }
            Err(source) => Err(StoreError::Io { path: partial, source }),
        }
    }

    fn commit(&self, name: &str) -> Result<PathBuf, StoreError> {
        validate_name(name)?;
        let partial = self.partial(name);
        let target = self.root.join(name);
        sync_dir(&partial)?;
        rename_no_replace(&partial, &target).map_err(|source| {
            if source.kind() == io::ErrorKind::AlreadyExists {
                StoreError::Exists { name: name.to_owned(), dir: self.root.clone() }
            } else {
                StoreError::Io { path: partial.clone(), source }
            }
        })?;
        sync_dir(&self.root)?;
        Ok(target)
    }

    fn abort(&self, name: &str) -> Result<(), StoreError> {
        validate_name(name)?;
        let partial = self.partial(name);
        match fs_err::remove_dir_all(&partial) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StoreError::Io { path: partial, source }),
        }
    }

    fn local_path(&self, name: &str) -> Result<StoreEntry, StoreError> {
        validate_name(name)?;
        let not_found = || StoreError::NotFound { name: name.to_owned(), dir: self.root.clone() };
        let legacy = name.starts_with(LEGACY_PREFIX);
        let candidates = [
            (self.root.join(name), EntryKind::Set),
            (self.root.join(format!("{name}{LEGACY_SUFFIX}")), EntryKind::Legacy),
            (self.partial(name), EntryKind::Partial),
        ];
        for (path, kind) in candidates {
            let Ok(meta) = fs_err::symlink_metadata(&path) else { continue };
            let fits = match kind {
                EntryKind::Set | EntryKind::Partial => meta.is_dir() && is_rail_set(&path),
                EntryKind::Legacy => legacy && meta.is_file(),
                EntryKind::Foreign => false,
            };
            if fits {
                let modified = meta.modified().ok().map(DateTime::<Utc>::from);
                return Ok(StoreEntry { name: name.to_owned(), kind, path, modified });
            }
        }
        Err(not_found())
    }

    fn remove(&self, entry: &StoreEntry) -> Result<(), StoreError> {
        validate_name(&entry.name)?;
        match entry.kind {
            EntryKind::Foreign => Err(StoreError::Foreign { path: entry.path.clone() }),
            EntryKind::Set => {
                let partial = self.partial(&entry.name);
                let from = self.root.join(&entry.name);
                rename_no_replace(&from, &partial).map_err(io_error(&from))?;
                sync_dir(&self.root)?;
                fs_err::remove_dir_all(&partial).map_err(io_error(&partial))
            }
            EntryKind::Partial => self.abort(&entry.name),
            EntryKind::Legacy => {
                let path = self.root.join(format!("{}{LEGACY_SUFFIX}", entry.name));
                fs_err::remove_file(&path).map_err(io_error(&path))
            }
        }
    }

    fn journal_dir(&self) -> PathBuf {
        crate::journal::dir(&self.root)
    }

    fn free_space(&self) -> Result<u64, StoreError> {
        // The directory may not exist yet: ask about the nearest one that does.
        let mut probe = self.root.as_path();
        while !probe.exists() {
            match probe.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => probe = parent,
                _ => {
                    probe = Path::new(".");
                    break;
                }
            }
        }
        let stat = nix::sys::statvfs::statvfs(probe)
            .map_err(|e| StoreError::Io { path: probe.to_owned(), source: e.into() })?;
        #[allow(clippy::useless_conversion)] // the field types differ between platforms
        Ok(u64::from(stat.blocks_available()) * u64::from(stat.fragment_size()))
    }
}

/// Rename `from` to `to`, failing with `AlreadyExists` instead of replacing an (empty) directory `to`.
fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
    match renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => Ok(()),
        // File systems without renameat2 flags: check, then rename (a narrow race, on odd file systems).
        Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOSYS) => {
            if fs_err::symlink_metadata(to).is_ok() {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, "target exists"));
            }
            fs_err::rename(from, to)
        }
        Err(errno) => Err(errno.into()),
    }
}

/// fsync a directory, so the entries created or renamed in it survive a crash.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    fs_err::File::open(dir).and_then(|d| d.sync_all()).map_err(io_error(dir))
}

/// The time in a legacy dump's name (`db_backup_YYYYMMDD_HHMMSS`), taken as UTC.
pub fn legacy_time(name: &str) -> Option<DateTime<Utc>> {
    let stamp = name.strip_prefix(LEGACY_PREFIX)?;
    NaiveDateTime::parse_from_str(stamp.get(..15)?, "%Y%m%d_%H%M%S").ok().map(|t| t.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn names_are_guarded() {
        for good in ["backup_20240115_143022", "before-hotfix", "a", "v1.2.3", "x_2"] {
            validate_name(good).unwrap();
        }
        let long = "a".repeat(101);
        for bad in [
            "",
            "../../etc",
            "a/b",
            "..",
            ".hidden",
            "a..b",
            "with space",
            "tab\t",
            "é",
            "journal",
            &long,
            "a\\b",
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        let err = validate_name("../../etc").unwrap_err().to_string();
        assert!(err.starts_with("invalid backup name `../../etc`"), "{err}");
    }

    #[test]
    fn begin_commit_list_remove() {
        let tmp = tempfile::tempdir().unwrap();
        let store = LocalDirStore::new(tmp.path().join("backups"));
        assert!(store.entries().unwrap().is_empty());
        let dir = store.begin("one").unwrap();
        assert!(matches!(store.begin("one"), Err(StoreError::Exists { .. })));
        fs_err::write(dir.join("f"), "x").unwrap();
        let listed = store.entries().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].name.as_str(), listed[0].kind), ("one", EntryKind::Partial));
        store.commit("one").unwrap();
        assert!(matches!(store.begin("one"), Err(StoreError::Exists { .. })));
        let entry = store.local_path("one").unwrap();
        assert_eq!(entry.kind, EntryKind::Set);
        assert_eq!(fs_err::read_to_string(entry.path.join("f")).unwrap(), "x");

        assert_eq!(fs_err::metadata(store.root()).unwrap().mode() & 0o777, 0o700);
        assert_eq!(fs_err::metadata(&entry.path).unwrap().mode() & 0o777, 0o700);

        fs_err::write(store.root().join("db_backup_20240115_143022.sql"), "--").unwrap();
        fs_err::write(store.root().join("notes.txt"), "ignored").unwrap();
        fs_err::create_dir(store.root().join("journal")).unwrap();
        let mut names: Vec<_> =
            store.entries().unwrap().into_iter().map(|e| (e.name, e.kind)).collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            names,
            [
                ("db_backup_20240115_143022".to_owned(), EntryKind::Legacy),
                ("one".to_owned(), EntryKind::Set)
            ]
        );
        let legacy = store.local_path("db_backup_20240115_143022").unwrap();
        assert_eq!(legacy.kind, EntryKind::Legacy);
        assert_eq!(legacy_time(&legacy.name).unwrap().to_rfc3339(), "2024-01-15T14:30:22+00:00");

        store.remove(&entry).unwrap();
        assert!(matches!(store.local_path("one"), Err(StoreError::NotFound { .. })));
        assert!(store.free_space().unwrap() > 0);
    }

    #[test]
    fn commit_never_replaces() {
        let tmp = tempfile::tempdir().unwrap();
        let store = LocalDirStore::new(tmp.path());
        store.begin("x").unwrap();
        fs_err::create_dir(tmp.path().join("x")).unwrap();
        assert!(matches!(store.commit("x"), Err(StoreError::Exists { .. })));
    }
}
