//! Backup sets: taking them, listing them, verifying them, pruning them.
//!
//! A set (SPEC §2.2) is a directory `<backup_dir>/<name>/` holding `database.dump.zst` (pg_dump custom
//! format without its own compression, through zstd; `database.dump` with pg_dump's gzip when
//! `backup.compression = "gzip"`; or `database/` in directory format), `static.tar.zst` and
//! `media.tar.zst` (`.tar.gz` with gzip), `schema.graphql` and, written last, `manifest.json`. The database dump and the two archives are written at the same time,
//! each streamed through a hashing writer, so a set costs one pass over the data and constant memory.
//! The dump and the table row counts recorded for the restore test come from one exported snapshot, so
//! they agree even while the app writes.
//!
//! A set is written into `.partial-<name>/` and renamed into place once everything in it is fsynced
//! (see [`crate::store`]): a run killed at any point leaves at most a partial set, which is never
//! offered for restore and which [`prune`] removes.

pub mod auth;
pub mod contents;
mod manifest;
pub mod pg;
mod prune;
mod verify;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::Notify;

pub use auth::{AuthError, KeyError, Keyring};
pub use manifest::{
    format, Component, ComponentKind, DatabaseInfo, FileEntry, Manifest, ManifestError,
    ManifestWriteError, FORMAT_VERSION, MANIFEST_FILE,
};
pub use pg::{PgTools, TableCount};
pub use prune::{prune, PruneItem, PruneKind, PrunePlan};
pub use verify::{verify, verify_components, verify_set, Check, VerifyReport};

use crate::archive::{self, create_private_file, ArchiveError, HashingWriter};
use crate::config::{Config, DumpFormat};
use crate::db::{DbError, DbTarget};
use crate::process::ProcessError;
use crate::store::{self, BackupStore, EntryKind, LocalDirStore, StoreEntry, StoreError};

pub use crate::config::VerifyLevel;
pub use crate::store::validate_name;

/// File of a custom-format dump inside a set, compressed by pg_dump itself (`backup.compression = "gzip"`).
pub const DATABASE_FILE: &str = "database.dump";
/// File of a custom-format dump written without pg_dump's compression and through zstd.
pub const DATABASE_FILE_ZSTD: &str = "database.dump.zst";
/// Directory of a directory-format dump inside a set.
pub const DATABASE_DIR: &str = "database";
pub const STATIC_FILE: &str = "static.tar.gz";
pub const MEDIA_FILE: &str = "media.tar.gz";
/// The archives' names with `backup.compression = "zstd"`.
pub const STATIC_FILE_ZSTD: &str = "static.tar.zst";
pub const MEDIA_FILE_ZSTD: &str = "media.tar.zst";

/// The static and media archives' file names for `compression`.
pub fn archive_files(compression: crate::config::Compression) -> (&'static str, &'static str) {
    match compression {
        crate::config::Compression::Gzip => (STATIC_FILE, MEDIA_FILE),
        crate::config::Compression::Zstd => (STATIC_FILE_ZSTD, MEDIA_FILE_ZSTD),
    }
}

/// The database dump's file (or directory) name for `format` and `compression`.
pub fn database_file(format: DumpFormat, compression: crate::config::Compression) -> &'static str {
    match (format, compression) {
        (DumpFormat::Directory, _) => DATABASE_DIR,
        (DumpFormat::Custom, crate::config::Compression::Gzip) => DATABASE_FILE,
        (DumpFormat::Custom, crate::config::Compression::Zstd) => DATABASE_FILE_ZSTD,
    }
}

pub const SCHEMA_FILE: &str = "schema.graphql";
/// Buffer between pg_dump's pipe and the dump file.
const COPY_BUF: usize = 1024 * 1024;

/// Errors of taking, reading, verifying and pruning backup sets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    #[error("no database is configured (set database.url or DATABASE_URL)")]
    NoDatabase,
    #[error("invalid database URL")]
    BadUrl {
        #[source]
        source: DbError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot connect to the database")]
    Connect {
        #[source]
        source: DbError,
    },
    #[error("database query failed while {what}")]
    Query {
        what: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("{action} failed")]
    Program {
        action: &'static str,
        #[source]
        source: ProcessError,
    },
    #[error("cannot write the {component} component")]
    Archive {
        component: ComponentKind,
        #[source]
        source: ArchiveError,
    },
    #[error("cannot access {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "not enough space for a backup in {dir}: about {needed} needed plus {min_free} to keep free (backup.min_free_space), {free} free"
    )]
    NoSpace {
        dir: String,
        needed: bytesize::ByteSize,
        min_free: bytesize::ByteSize,
        free: bytesize::ByteSize,
    },
    #[error("backup `{name}` cannot be used")]
    Manifest {
        name: String,
        #[source]
        source: ManifestError,
    },
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("backup `{name}` cannot be trusted")]
    Unauthenticated {
        name: String,
        #[source]
        source: AuthError,
    },
    #[error(
        "backup `{name}` is a plain-SQL dump of the older tools, which carries no authentication; restore it only with --allow-legacy (or rollback.allow_legacy = true) if you know where it came from"
    )]
    Legacy { name: String },
    #[error("backup `{name}` is incomplete (it has no manifest): it was cut short and cannot be restored")]
    Incomplete { name: String },
    #[error("there is no complete backup set in {dir}")]
    NoSets { dir: String },
    #[error("the backup was cancelled")]
    Cancelled,
    #[error("the backup did not finish within {} (backup.timeout)", crate::config::human_duration(*after))]
    Timeout { after: Duration },
    #[error("database name `{name}` is longer than PostgreSQL's 63 bytes")]
    NameTooLong { name: String },
    #[error("a background task of the backup failed")]
    Task {
        #[source]
        source: tokio::task::JoinError,
    },
}

/// Progress of long work, shown by the command line as bars or plain lines. Every method has a default
/// that does nothing.
pub trait Progress: Send + Sync {
    /// A task (`database`, `static`, `media`, `verify`…) begins; `total` in bytes when known.
    fn begin(&self, task: &str, total: Option<u64>) {
        let _ = (task, total);
    }
    /// `bytes` more of the task are done.
    fn advance(&self, task: &str, bytes: u64) {
        let _ = (task, bytes);
    }
    /// The task ended; `summary` says how.
    fn end(&self, task: &str, summary: &str) {
        let _ = (task, summary);
    }
}

/// Progress that shows nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}

/// What to back up and why.
pub struct BackupRequest {
    /// Set name; default `backup_YYYYMMDD_HHMMSS` (UTC), with `_2`, `_3`… on collision.
    pub name: Option<String>,
    /// `manual`, `deploy <run id>`, `pre-rollback <run id>`.
    pub reason: String,
    /// App version running now, recorded for a rollback to bring back.
    pub app_version: Option<String>,
    /// The active GraphQL schema version and its SDL, saved as `schema.graphql`.
    pub schema: Option<SchemaSnapshot>,
    pub progress: Arc<dyn Progress>,
}

impl std::fmt::Debug for BackupRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupRequest")
            .field("name", &self.name)
            .field("reason", &self.reason)
            .field("app_version", &self.app_version)
            .field("schema", &self.schema.as_ref().map(|s| &s.version))
            .finish_non_exhaustive()
    }
}

impl BackupRequest {
    /// A request with a reason and nothing else.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            name: None,
            reason: reason.into(),
            app_version: None,
            schema: None,
            progress: Arc::new(NoProgress),
        }
    }
}

/// A schema version and its SDL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaSnapshot {
    pub version: String,
    pub sdl: String,
}

/// A set that can be restored.
#[derive(Debug, Clone, Serialize)]
pub struct BackupSet {
    pub name: String,
    /// Local directory of the set, or the legacy dump file.
    pub path: PathBuf,
    pub kind: SetKind,
}

/// A full set with its manifest, or a plain-SQL dump of the older tools.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SetKind {
    Full { manifest: Box<Manifest> },
    Legacy,
}

impl BackupSet {
    pub fn manifest(&self) -> Option<&Manifest> {
        match &self.kind {
            SetKind::Full { manifest } => Some(manifest),
            SetKind::Legacy => None,
        }
    }

    /// When the set was taken.
    pub fn created_at(&self) -> Option<DateTime<Utc>> {
        match &self.kind {
            SetKind::Full { manifest } => Some(manifest.created_at),
            SetKind::Legacy => store::legacy_time(&self.name),
        }
    }
}

/// What `list` says about an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SetStatus {
    /// Manifest present and sealed: restorable (after verification).
    Complete,
    /// No manifest: a run died while writing it (or removing it). Never restored; pruned.
    Incomplete,
    /// A manifest that cannot be read or was edited: restored only with `--emergency`, if at all.
    Damaged,
    /// A `db_backup_*.sql` plain-SQL dump of the older deploy script.
    Legacy,
    /// A sealed manifest whose authentication is missing or wrong (or no key is configured): never
    /// restored, counted or pruned without `--emergency`; rail may not have written it.
    Unauthenticated,
    /// A directory rail did not write: listed so that it is seen, never touched.
    Foreign,
}

impl SetStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::Incomplete => "incomplete",
            Self::Damaged => "damaged",
            Self::Legacy => "legacy",
            Self::Unauthenticated => "unauthenticated",
            Self::Foreign => "foreign",
        }
    }
}

/// One line of `rollback list`.
#[derive(Debug, Clone, Serialize)]
pub struct BackupEntry {
    pub name: String,
    pub status: SetStatus,
    pub path: PathBuf,
    pub created_at: Option<DateTime<Utc>>,
    /// Bytes on disk.
    pub size: u64,
    pub manifest: Option<Manifest>,
    /// Why a set is incomplete, damaged or unauthenticated.
    pub problem: Option<String>,
    /// The id of the key that authenticated the set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The store entry behind it.
    #[serde(skip)]
    pub entry: StoreEntry,
}

impl BackupEntry {
    /// Whether a restore may use it (still subject to verification).
    pub fn is_restorable(&self) -> bool {
        matches!(self.status, SetStatus::Complete | SetStatus::Legacy)
    }
}

/// Where the configured schema store is (`schema.store`, `schema.directory`, the database URL).
pub fn schema_location(cfg: &Config) -> Option<crate::schema_store::StoreLocation> {
    use crate::config::SchemaStoreKind;
    use crate::schema_store::StoreLocation;
    match cfg.schema.store {
        SchemaStoreKind::Dir => Some(StoreLocation::Dir(cfg.schema.directory.clone())),
        SchemaStoreKind::Postgres => cfg.database_url().map(|url| StoreLocation::Postgres { url }),
    }
}

/// The active schema version and its SDL in the configured schema store, to save in a set. A store
/// that cannot be read is logged and gives none: the schema is not worth failing a backup for.
pub async fn active_schema(cfg: &Config) -> Option<SchemaSnapshot> {
    let location = schema_location(cfg)?;
    if let crate::schema_store::StoreLocation::Dir(dir) = &location {
        if !dir.is_dir() {
            return None;
        }
    }
    let active =
        async { crate::schema_store::SchemaStore::open(&location).await?.active().await }.await;
    match active {
        Ok(active) => active.map(|v| SchemaSnapshot { version: v.info.version, sdl: v.sdl }),
        Err(error) => {
            tracing::warn!(error = %error_chain(&error), store = %location, "cannot read the active schema version; the set has none");
            None
        }
    }
}

/// The store of `cfg`.
pub fn store(cfg: &Config) -> LocalDirStore {
    LocalDirStore::new(&cfg.backup.directory)
}

/// The app's database, from the configuration.
pub fn database_target(cfg: &Config) -> Result<DbTarget, BackupError> {
    let url = cfg.database_url().ok_or(BackupError::NoDatabase)?;
    DbTarget::parse(&url).map_err(|source| BackupError::BadUrl { source })
}

/// The keys of `cfg`; a key that cannot be read is an error, no key at all is an empty keyring.
pub fn keyring(cfg: &Config) -> Result<Keyring, BackupError> {
    Ok(Keyring::from_config(&cfg.backup)?)
}

/// Every set, partial set and legacy dump of the configured store, newest first, each set
/// authenticated with the configured keys.
pub fn list(cfg: &Config) -> Result<Vec<BackupEntry>, BackupError> {
    list_store(&store(cfg), &keyring(cfg)?)
}

/// Every entry of `store`, newest first. Sets that `keys` cannot authenticate are `unauthenticated`.
pub fn list_store(
    store: &dyn BackupStore,
    keys: &Keyring,
) -> Result<Vec<BackupEntry>, BackupError> {
    let mut out: Vec<BackupEntry> =
        store.entries()?.into_iter().map(|e| describe(&e, keys)).collect();
    out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| b.name.cmp(&a.name)));
    Ok(out)
}

fn describe(entry: &StoreEntry, keys: &Keyring) -> BackupEntry {
    let mut out = BackupEntry {
        name: entry.name.clone(),
        status: SetStatus::Incomplete,
        path: entry.path.clone(),
        created_at: entry.modified,
        size: 0,
        manifest: None,
        problem: None,
        key_id: None,
        entry: entry.clone(),
    };
    match entry.kind {
        EntryKind::Legacy => {
            out.status = SetStatus::Legacy;
            out.size = fs_err::metadata(&entry.path).map_or(0, |m| m.len());
            out.created_at = store::legacy_time(&entry.name).or(entry.modified);
        }
        EntryKind::Partial => {
            out.size = archive::tree_size(&entry.path);
            out.problem = Some("partial: written by a run that has not finished or died".into());
        }
        EntryKind::Foreign => {
            out.status = SetStatus::Foreign;
            out.problem =
                Some("not written by rail (no .rail-set marker, no manifest): left alone".into());
        }
        EntryKind::Set => {
            out.size = archive::tree_size(&entry.path);
            match Manifest::read(&entry.path, &entry.name, true) {
                Ok(manifest) => {
                    match keys.verify(&manifest) {
                        Ok(key_id) => {
                            out.status = SetStatus::Complete;
                            out.key_id = Some(key_id);
                        }
                        Err(error) => {
                            out.status = SetStatus::Unauthenticated;
                            out.problem = Some(error.to_string());
                        }
                    }
                    out.created_at = Some(manifest.created_at);
                    out.manifest = Some(manifest);
                }
                Err(ManifestError::Missing) => out.problem = Some("no manifest".into()),
                Err(error) => {
                    out.status = SetStatus::Damaged;
                    out.problem = Some(error.to_string());
                    // Still show what it claims to be, when it can be read.
                    out.manifest = Manifest::read(&entry.path, &entry.name, false).ok();
                    if let Some(m) = &out.manifest {
                        out.created_at = Some(m.created_at);
                    }
                }
            }
        }
    }
    out
}

/// The entry `name` of the configured store.
pub fn find(cfg: &Config, name: &str) -> Result<BackupEntry, BackupError> {
    let entry = store(cfg).local_path(name)?;
    Ok(describe(&entry, &keyring(cfg)?))
}

/// Open the set `name` for a restore. An incomplete set is refused; a damaged or unauthenticated
/// manifest is refused unless `emergency`, which reads it as it stands; a legacy plain-SQL dump is
/// refused unless `emergency` or `rollback.allow_legacy`.
pub fn open(cfg: &Config, name: &str, emergency: bool) -> Result<BackupSet, BackupError> {
    let entry = store(cfg).local_path(name)?;
    match entry.kind {
        EntryKind::Legacy => {
            if !(emergency || cfg.rollback.allow_legacy) {
                return Err(BackupError::Legacy { name: name.to_owned() });
            }
            Ok(BackupSet { name: entry.name, path: entry.path, kind: SetKind::Legacy })
        }
        EntryKind::Partial => Err(BackupError::Incomplete { name: name.to_owned() }),
        EntryKind::Foreign => Err(StoreError::Foreign { path: entry.path }.into()),
        EntryKind::Set => match Manifest::read(&entry.path, name, !emergency) {
            Ok(manifest) => {
                if !emergency {
                    keyring(cfg)?.verify(&manifest).map_err(|source| {
                        BackupError::Unauthenticated { name: name.to_owned(), source }
                    })?;
                }
                Ok(BackupSet {
                    name: entry.name,
                    path: entry.path,
                    kind: SetKind::Full { manifest: Box::new(manifest) },
                })
            }
            Err(ManifestError::Missing) => Err(BackupError::Incomplete { name: name.to_owned() }),
            Err(source) => Err(BackupError::Manifest { name: name.to_owned(), source }),
        },
    }
}

/// The next free default name for a set taken at `now`.
pub fn next_name(store: &dyn BackupStore, now: DateTime<Utc>) -> Result<String, BackupError> {
    let base = format!("backup_{}", now.format("%Y%m%d_%H%M%S"));
    let taken: std::collections::HashSet<String> =
        store.entries()?.into_iter().map(|e| e.name).collect();
    let mut name = base.clone();
    let mut n = 2;
    while taken.contains(&name) {
        name = format!("{base}_{n}");
        n += 1;
    }
    Ok(name)
}

/// How big the next set will be, roughly.
#[derive(Debug, Clone, Serialize)]
pub struct Estimate {
    pub bytes: u64,
    /// How the number was made: `the set <name>` or `raw sizes`.
    pub basis: String,
}

/// Estimate the size of the next set: the newest complete set's size if there is one, else the raw
/// sizes (database size on the server divided by 3 for compression, plus the static and media trees).
/// The division holds for either codec: zstd at level 3 and pg_dump's gzip make dumps of about the
/// same size, and neither writes an uncompressed copy first.
pub async fn estimate(cfg: &Config) -> Result<Estimate, BackupError> {
    if let Some(previous) = list(cfg)?.into_iter().find(|e| e.status == SetStatus::Complete) {
        return Ok(Estimate { bytes: previous.size, basis: format!("the set {}", previous.name) });
    }
    let target = database_target(cfg)?;
    let client = target
        .connect(cfg.database.connect_timeout.get(), "rail-backup")
        .await
        .map_err(|source| BackupError::Connect { source })?;
    let db_size: i64 = client
        .query_one("SELECT pg_database_size(current_database())", &[])
        .await
        .map_err(|source| BackupError::Query { what: "measuring the database", source })?
        .get(0);
    Ok(Estimate { bytes: raw_estimate(cfg, db_size.max(0) as u64), basis: "raw sizes".into() })
}

fn raw_estimate(cfg: &Config, db_size: u64) -> u64 {
    let mut bytes = db_size / 3;
    for (include, dir) in [
        (cfg.backup.include_static, &cfg.app.static_dir),
        (cfg.backup.include_media, &cfg.app.media_dir),
    ] {
        if include && !dir.as_os_str().is_empty() {
            bytes += archive::tree_size(dir);
        }
    }
    bytes
}

/// Cancels the parts of a backup running on other threads and tasks.
#[derive(Debug, Default)]
pub(crate) struct Cancel {
    flag: AtomicBool,
    notify: Notify,
}

impl Cancel {
    pub(crate) fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub(crate) fn flag(&self) -> &AtomicBool {
        &self.flag
    }

    pub(crate) async fn cancelled(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.flag.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }
}

/// Sets the cancel flag when dropped: a backup future dropped half-way stops its threads.
struct CancelOnDrop(Arc<Cancel>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Removes the partial set unless disarmed.
struct AbortOnDrop<'a> {
    store: &'a dyn BackupStore,
    name: String,
    armed: bool,
}

impl Drop for AbortOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            if let Err(error) = self.store.abort(&self.name) {
                tracing::warn!(%error, set = %self.name, "cannot remove the partial backup set");
            }
        }
    }
}

/// Take a backup set: the database, the static and media trees (as configured) and the schema, written
/// at the same time, then the manifest, then the set is published. Nothing is left behind on error
/// except when the process itself dies, which leaves a partial set that is never restored.
pub async fn create(cfg: &Config, req: &BackupRequest) -> Result<BackupSet, BackupError> {
    let limit = cfg.backup.timeout.get();
    match tokio::time::timeout(limit, create_inner(cfg, req)).await {
        Ok(result) => result,
        Err(_) => Err(BackupError::Timeout { after: limit }),
    }
}

async fn create_inner(cfg: &Config, req: &BackupRequest) -> Result<BackupSet, BackupError> {
    let started = Instant::now();
    let created_at = Utc::now();
    let store = store(cfg);
    // No set is written that could not be authenticated later: the key is needed before anything.
    let keys = keyring(cfg)?;
    keys.signing()?;
    let target = database_target(cfg)?;
    let name = match &req.name {
        Some(name) => {
            validate_name(name)?;
            name.clone()
        }
        None => next_name(&store, created_at)?,
    };
    let tools = PgTools::resolve(&cfg.database).await;
    let client = target
        .connect(cfg.database.connect_timeout.get(), "rail-backup")
        .await
        .map_err(|source| BackupError::Connect { source })?;
    let query = |what| move |source| BackupError::Query { what, source };

    // One snapshot for the dump and the row counts: they agree even while the app writes.
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await
        .map_err(query("starting the snapshot"))?;
    let row = client
        .query_one(
            "SELECT pg_export_snapshot(), current_setting('server_version'), pg_database_size(current_database())",
            &[],
        )
        .await
        .map_err(query("exporting the snapshot"))?;
    let (snapshot, server_version, db_size): (String, String, i64) =
        (row.get(0), row.get(1), row.get(2));
    let pg_dump_version = tools.version("pg_dump").await?;

    let estimate =
        match list_store(&store, &keys)?.into_iter().find(|e| e.status == SetStatus::Complete) {
            Some(previous) => previous.size,
            None => raw_estimate(cfg, db_size.max(0) as u64),
        };
    let free = store.free_space()?;
    let min_free = cfg.backup.min_free_space.bytes();
    if free < estimate.saturating_add(min_free) {
        return Err(BackupError::NoSpace {
            dir: store.describe(),
            needed: bytesize::ByteSize(estimate),
            min_free: bytesize::ByteSize(min_free),
            free: bytesize::ByteSize(free),
        });
    }

    let dir = match store.begin(&name) {
        // A partial set of this name was left by a run that died (the caller holds the run lock, so
        // it is not being written): start it again, so that a resumed run can take the same set.
        Err(StoreError::Exists { .. })
            if store.local_path(&name).is_ok_and(|e| e.kind == EntryKind::Partial) =>
        {
            tracing::warn!(set = %name, "removing the partial set of a run that did not finish");
            store.abort(&name)?;
            store.begin(&name)?
        }
        other => other?,
    };
    let mut abort = AbortOnDrop { store: &store, name: name.clone(), armed: true };
    tracing::info!(set = %name, dir = %dir.display(), "taking a backup set");
    let cancel = Arc::new(Cancel::default());
    let _stop_threads = CancelOnDrop(Arc::clone(&cancel));

    let archive_task = |kind: ComponentKind, include: bool, tree: &Path, file: &str| {
        if !include || tree.as_os_str().is_empty() {
            return None;
        }
        if !tree.is_dir() {
            tracing::warn!(component = %kind, dir = %tree.display(), "not backed up: the directory does not exist");
            return None;
        }
        let (tree, dest) = (tree.to_owned(), dir.join(file));
        let (cancel, progress) = (Arc::clone(&cancel), Arc::clone(&req.progress));
        let (level, codec) = (cfg.backup.compression_level, codec(cfg.backup.compression));
        Some(tokio::task::spawn_blocking(move || {
            archive_component(kind, &tree, &dest, (codec, level), &cancel, &*progress)
        }))
    };
    let (static_file, media_file) = archive_files(cfg.backup.compression);
    let static_task = archive_task(
        ComponentKind::Static,
        cfg.backup.include_static,
        &cfg.app.static_dir,
        static_file,
    );
    let media_task = archive_task(
        ComponentKind::Media,
        cfg.backup.include_media,
        &cfg.app.media_dir,
        media_file,
    );

    let dump = async {
        let result = tokio::select! {
            result = dump_database(&tools, &target, cfg, &dir, &snapshot, &cancel, &req.progress) => result,
            () = cancel.cancelled() => Err(BackupError::Cancelled),
        };
        if result.is_err() {
            cancel.cancel();
        }
        result
    };
    let counts = async {
        let result = tokio::select! {
            result = pg::table_counts(&client) => result.map_err(query("counting rows")),
            () = cancel.cancelled() => Err(BackupError::Cancelled),
        };
        if result.is_err() {
            cancel.cancel();
        }
        result
    };
    let join_archive = |task: Option<tokio::task::JoinHandle<Result<Component, BackupError>>>| {
        let cancel = Arc::clone(&cancel);
        async move {
            let task = task?;
            let result = task.await.map_err(|source| BackupError::Task { source }).and_then(|r| r);
            if result.is_err() {
                cancel.cancel();
            }
            Some(result)
        }
    };
    let (dumped, counted, archived_static, archived_media) =
        tokio::join!(dump, counts, join_archive(static_task), join_archive(media_task));
    // The first error that is not a consequence of another one.
    let results = [
        dumped.as_ref().err(),
        counted.as_ref().err(),
        archived_static.as_ref().and_then(|r| r.as_ref().err()),
        archived_media.as_ref().and_then(|r| r.as_ref().err()),
    ];
    if results.iter().any(Option::is_some) {
        let first = [
            dumped.err(),
            counted.err(),
            archived_static.and_then(Result::err),
            archived_media.and_then(Result::err),
        ]
        .into_iter()
        .flatten()
        .min_by_key(|e| {
            matches!(
                e,
                BackupError::Cancelled
                    | BackupError::Archive { source: ArchiveError::Cancelled { .. }, .. }
            )
        })
        .expect("an error is present");
        return Err(first);
    }
    let _ = client.batch_execute("COMMIT").await;
    let mut components = vec![dumped.expect("checked")];
    components.extend(archived_static.map(|r| r.expect("checked")));
    components.extend(archived_media.map(|r| r.expect("checked")));
    if let Some(schema) = &req.schema {
        components.push(write_schema(&dir, &schema.sdl)?);
    }

    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        name: name.clone(),
        created_at,
        environment: cfg.environment.clone(),
        reason: req.reason.clone(),
        app_version: req.app_version.clone(),
        schema_version: req.schema.as_ref().map(|s| s.version.clone()),
        tool_version: concat!("rail ", env!("CARGO_PKG_VERSION")).to_owned(),
        database: Some(DatabaseInfo {
            name: target.dbname().to_owned(),
            server_version,
            pg_dump_version,
            tables: counted.expect("checked"),
        }),
        components,
        duration_ms: started.elapsed().as_millis() as u64,
        manifest_sha256: String::new(),
        auth: None,
    };
    let manifest = manifest.write_signed(&dir, &keys).map_err(|error| match error {
        ManifestWriteError::Key(key) => BackupError::Key(key),
        ManifestWriteError::Io(source) => BackupError::Io { path: dir.join(MANIFEST_FILE), source },
    })?;
    let path = store.commit(&name)?;
    abort.armed = false;
    tracing::info!(set = %name, size = manifest.total_size(), duration_ms = manifest.duration_ms, "backup set written");
    Ok(BackupSet { name, path, kind: SetKind::Full { manifest: Box::new(manifest) } })
}

fn codec(compression: crate::config::Compression) -> archive::Codec {
    match compression {
        crate::config::Compression::Gzip => archive::Codec::Gzip,
        crate::config::Compression::Zstd => archive::Codec::Zstd,
    }
}

fn archive_component(
    kind: ComponentKind,
    tree: &Path,
    dest: &Path,
    (codec, level): (archive::Codec, u32),
    cancel: &Cancel,
    progress: &dyn Progress,
) -> Result<Component, BackupError> {
    let task = kind.as_str();
    progress.begin(task, Some(archive::tree_size(tree)));
    let advance = |n| progress.advance(task, n);
    let opts = archive::WriteOptions { level, cancel: cancel.flag(), progress: &advance };
    let summary = archive::write_tar(tree, dest, codec, &opts)
        .map_err(|source| BackupError::Archive { component: kind, source })?;
    progress.end(
        task,
        &format!("{} entries, {}", summary.entries, bytesize::ByteSize(summary.digest.size)),
    );
    Ok(Component {
        name: kind,
        file: dest.file_name().expect("a file name").to_string_lossy().into_owned(),
        format: match codec {
            archive::Codec::Gzip => format::TAR_GZIP.into(),
            archive::Codec::Zstd => format::TAR_ZSTD.into(),
        },
        size: summary.digest.size,
        sha256: summary.digest.sha256,
        entries: Some(summary.entries),
        content_bytes: Some(summary.content_bytes),
        files: Vec::new(),
    })
}

fn write_schema(dir: &Path, sdl: &str) -> Result<Component, BackupError> {
    let path = dir.join(SCHEMA_FILE);
    let io = |source| BackupError::Io { path: path.clone(), source };
    let file = create_private_file(&path)
        .map_err(|source| BackupError::Archive { component: ComponentKind::Schema, source })?;
    let mut writer = HashingWriter::new(file);
    std::io::Write::write_all(&mut writer, sdl.as_bytes()).map_err(io)?;
    let (file, digest) = writer.finish();
    file.sync_all().map_err(io)?;
    Ok(Component {
        name: ComponentKind::Schema,
        file: SCHEMA_FILE.into(),
        format: format::GRAPHQL_SDL.into(),
        size: digest.size,
        sha256: digest.sha256,
        entries: None,
        content_bytes: None,
        files: Vec::new(),
    })
}

async fn dump_database(
    tools: &PgTools,
    target: &DbTarget,
    cfg: &Config,
    dir: &Path,
    snapshot: &str,
    cancel: &Arc<Cancel>,
    progress: &Arc<dyn Progress>,
) -> Result<Component, BackupError> {
    let task = ComponentKind::Database.as_str();
    // zstd compresses the custom-format dump several times faster than pg_dump's own gzip at about the
    // same size; pg_dump then only writes. The directory format keeps pg_dump's compression.
    let zstd = cfg.backup.format == DumpFormat::Custom
        && cfg.backup.compression == crate::config::Compression::Zstd;
    let level = if zstd { 0 } else { cfg.backup.compression_level.min(9) };
    let cmd = tools
        .connect_cmd("pg_dump", target)
        .arg(format!("--snapshot={snapshot}"))
        .arg(format!("--compress={level}"))
        .timeout(cfg.backup.timeout.get());
    let failed = |source| BackupError::Program { action: "pg_dump", source };
    progress.begin(task, None);
    match cfg.backup.format {
        DumpFormat::Custom => {
            let file_name = database_file(cfg.backup.format, cfg.backup.compression);
            let path = dir.join(file_name);
            let file = create_private_file(&path).map_err(|source| BackupError::Archive {
                component: ComponentKind::Database,
                source,
            })?;
            let mut running = cmd.arg("--format=custom").spawn().map_err(failed)?;
            let stdout = running.stdout.take().expect("stdout is piped");
            let fd = stdout
                .into_owned_fd()
                .map_err(|source| BackupError::Io { path: path.clone(), source })?;
            let (cancel2, progress2, path2) =
                (Arc::clone(cancel), Arc::clone(progress), path.clone());
            let copy = tokio::task::spawn_blocking(move || {
                copy_hashing(fd, file, &path2, zstd, &cancel2, &*progress2)
            });
            let (copied, waited) = tokio::join!(copy, running.wait());
            let (digest, dumped) = copied.map_err(|source| BackupError::Task { source })??;
            waited.map_err(failed)?;
            let summary = if zstd {
                format!(
                    "{} (zstd of {})",
                    bytesize::ByteSize(digest.size),
                    bytesize::ByteSize(dumped)
                )
            } else {
                bytesize::ByteSize(digest.size).to_string()
            };
            progress.end(task, &summary);
            Ok(Component {
                name: ComponentKind::Database,
                file: file_name.into(),
                format: if zstd { format::PG_CUSTOM_ZSTD } else { format::PG_CUSTOM }.into(),
                size: digest.size,
                sha256: digest.sha256,
                entries: None,
                content_bytes: None,
                files: Vec::new(),
            })
        }
        DumpFormat::Directory => {
            let out = dir.join(DATABASE_DIR);
            cmd.arg("--format=directory")
                .arg(format!("--jobs={}", cfg.backup.jobs.max(1)))
                .arg(format!("--file={}", out.display()))
                .run()
                .await
                .map_err(failed)?;
            // pg_dump writes these files itself: they are hashed after it, the one second read of a backup.
            let files = tokio::task::spawn_blocking(move || hash_dir(&out))
                .await
                .map_err(|source| BackupError::Task { source })??;
            let (size, sha256) = directory_digest(&files);
            progress.end(task, &bytesize::ByteSize(size).to_string());
            Ok(Component {
                name: ComponentKind::Database,
                file: DATABASE_DIR.into(),
                format: format::PG_DIRECTORY.into(),
                size,
                sha256,
                entries: None,
                content_bytes: None,
                files,
            })
        }
    }
}

/// Copy pg_dump's stdout into the dump file, through zstd when `zstd`, hashing what reaches the file,
/// then fsync. The digest of the file, and how many bytes pg_dump wrote.
fn copy_hashing(
    fd: OwnedFd,
    file: fs_err::File,
    path: &Path,
    zstd: bool,
    cancel: &Cancel,
    progress: &dyn Progress,
) -> Result<(archive::Digest256, u64), BackupError> {
    let io = |source| BackupError::Io { path: path.to_owned(), source };
    let mut source = std::fs::File::from(fd);
    let writer = HashingWriter::new(file);
    let (writer, dumped) = if zstd {
        let mut encoder = archive::zstd_encoder(writer).map_err(io)?;
        let dumped = pump(&mut source, &mut encoder, path, cancel, progress)?;
        (encoder.finish().map_err(io)?, dumped)
    } else {
        let mut writer = writer;
        let dumped = pump(&mut source, &mut writer, path, cancel, progress)?;
        (writer, dumped)
    };
    let (file, digest) = writer.finish();
    file.sync_all().map_err(io)?;
    Ok((digest, dumped))
}

/// Copy `source` to its end into `sink`, stopping when cancelled; progress counts what was read.
fn pump(
    source: &mut impl std::io::Read,
    sink: &mut impl std::io::Write,
    path: &Path,
    cancel: &Cancel,
    progress: &dyn Progress,
) -> Result<u64, BackupError> {
    let io = |source| BackupError::Io { path: path.to_owned(), source };
    let mut buf = vec![0u8; COPY_BUF];
    let mut total = 0;
    loop {
        if cancel.flag().load(Ordering::Relaxed) {
            return Err(BackupError::Cancelled);
        }
        let n = match source.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io(e)),
        };
        sink.write_all(&buf[..n]).map_err(io)?;
        total += n as u64;
        progress.advance(ComponentKind::Database.as_str(), n as u64);
    }
}

/// Hash every file of a directory-format dump (sorted by name); each file is fsynced on the way.
fn hash_dir(dir: &Path) -> Result<Vec<FileEntry>, BackupError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| BackupError::Io { path, source }
    };
    let mut names = Vec::new();
    for entry in fs_err::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    let mut files = Vec::new();
    for name in names {
        let path = dir.join(&name);
        fs_err::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .map_err(io(&path))?;
        fs_err::File::open(&path).and_then(|f| f.sync_all()).map_err(io(&path))?;
        let digest = archive::hash_file(&path).map_err(|source| BackupError::Archive {
            component: ComponentKind::Database,
            source,
        })?;
        files.push(FileEntry { file: name, size: digest.size, sha256: digest.sha256 });
    }
    fs_err::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .map_err(io(dir))?;
    store::sync_dir(dir)?;
    Ok(files)
}

/// Size and SHA-256 of a directory dump: the SHA-256 of its `sha256sum`-style listing.
pub(crate) fn directory_digest(files: &[FileEntry]) -> (u64, String) {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    for f in files {
        hasher.update(format!("{}  {}\n", f.sha256, f.file).as_bytes());
    }
    (files.iter().map(|f| f.size).sum(), hex::encode(hasher.finalize()))
}

/// Reason prefix of the safety copy an in-place restore takes of the state it replaces.
pub const PRE_ROLLBACK_REASON: &str = "pre-rollback";

/// The newest complete set that passes verification at `level`, with the reports of those that did not.
/// Safety copies taken before a rollback are passed over: restoring one would undo that rollback, which
/// is never what "the previous version" means. So are, while an older set of another app version
/// verifies, the sets of `running` (the app version the services run now): after a deploy that failed
/// and was rolled back by itself, the newest set is the running version's own, and restoring it would
/// only throw away the writes since, not go back a version.
pub async fn newest_verified(
    cfg: &Config,
    level: VerifyLevel,
    running: Option<&str>,
    progress: &dyn Progress,
) -> Result<(BackupSet, Vec<VerifyReport>), BackupError> {
    let mut failed = Vec::new();
    let (mut candidates, same): (Vec<_>, Vec<_>) = list(cfg)?
        .into_iter()
        .filter(|e| {
            e.status == SetStatus::Complete
                && !e.manifest.as_ref().is_some_and(|m| m.reason.starts_with(PRE_ROLLBACK_REASON))
        })
        .partition(|e| {
            running.is_none()
                || e.manifest.as_ref().and_then(|m| m.app_version.as_deref()) != running
        });
    candidates.extend(same);
    for entry in candidates {
        let report = verify(cfg, &entry.name, level, progress).await?;
        if report.ok() {
            return Ok((open(cfg, &entry.name, false)?, failed));
        }
        failed.push(report);
    }
    Err(BackupError::NoSets { dir: cfg.backup.directory.display().to_string() })
}

/// An error and its causes on one line: `outer: inner: root`.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}
