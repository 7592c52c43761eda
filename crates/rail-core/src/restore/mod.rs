//! Restoring a backup set (SPEC §2.3), in two phases so that the app is down only for the switch:
//!
//! 1. [`prepare`], while the app still runs: the database is restored into a new database
//!    `<db>__rail_restore` (parallel `pg_restore --jobs`) and the static and media archives are extracted
//!    into siblings of their directories (`<dir>.rail-extract-<stamp>`, renamed `<dir>.rail-restore-<stamp>`
//!    once complete). Nothing live changes; a failure cleans up and leaves the app as it was.
//! 2. [`switch`], with the services stopped: the live database is renamed `<db>__rail_pre_<stamp>` and
//!    the restored one `<db>` in one transaction (after ending the sessions left on it), then each
//!    directory is renamed `<dir>.rail-pre-<stamp>` and its replacement `<dir>`. If a later part fails,
//!    the parts already switched are put back.
//!
//! What was replaced is kept ([`RestoreOutcome`]): [`finalize`] drops it once the caller is satisfied,
//! [`undo`] puts it back, and `rollback prune` removes older generations ([`leftovers`]).
//!
//! The `in-place` strategy, for roles that may not create databases, restores inside the live database
//! in one transaction during the switch: every schema is dropped and the dump replayed through psql
//! `--single-transaction`, so a failure or a kill leaves the old content.
//!
//! A run killed between steps leaves a state [`repair`] recognises and completes: the live database
//! or directory is always either the old one or the restored one. Callers hold the run lock
//! ([`crate::lock`]) for the whole restore.

mod db;
mod files;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::Utc;
use serde::Serialize;

use crate::archive::ArchiveError;
use crate::backup::{
    self, BackupError, BackupSet, ComponentKind, NoProgress, PgTools, Progress, SetKind,
};
use crate::config::{Config, RestoreStrategy};
use crate::db::{DbError, DbTarget};
use crate::journal::{Journal, StepOutcome};
use crate::process::ProcessError;

pub use db::{DB_FAILED_INFIX, DB_PRE_INFIX, DB_RESTORE_SUFFIX, DB_VERIFY_INFIX};
pub use files::{
    resolve_live, DIR_EXTRACT_INFIX, DIR_FAILED_INFIX, DIR_PRE_INFIX, DIR_RESTORE_INFIX,
};

/// Errors of restoring.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    #[error(transparent)]
    Backup(#[from] BackupError),
    #[error("cannot connect to the database server")]
    Connect {
        #[source]
        source: DbError,
    },
    #[error("database query failed while {what}")]
    Query {
        what: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("{action} failed")]
    Program {
        action: &'static str,
        #[source]
        source: ProcessError,
    },
    #[error("cannot extract the {component} archive")]
    Extract {
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
    #[error("cannot read the dump {} (damaged?)", path.display())]
    DumpRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "database name `{name}` would exceed PostgreSQL's 63 bytes; use the in-place strategy"
    )]
    NameTooLong { name: String },
    #[error("{count} sessions on database `{database}` did not end")]
    Sessions { database: String, count: i64 },
    #[error("database `{database}` does not exist")]
    NoLiveDatabase { database: String },
    #[error("refusing to restore as this role: {reason}")]
    Privileged { reason: String },
    #[error("refusing to restore backup `{set}`: its dump holds what an app database never does:\n  {}", problems.join("\n  "))]
    HostileDump { set: String, problems: Vec<String> },
    #[error("the restore was cancelled")]
    Cancelled,
    #[error("refusing to drop database `{name}`: rail did not create it")]
    NotOurs { name: String },
    #[error("{}", switch_message(step, *undone))]
    Switch {
        step: &'static str,
        undone: bool,
        #[source]
        source: Box<RestoreError>,
    },
    #[error("cannot make schema version {version} the active one")]
    Schema {
        version: String,
        #[source]
        source: crate::schema_store::SchemaStoreError,
    },
    #[error("cannot write the journal")]
    Journal {
        #[source]
        source: crate::journal::JournalError,
    },
    #[error("a background task of the restore failed")]
    Task {
        #[source]
        source: tokio::task::JoinError,
    },
}

fn switch_message(step: &str, undone: bool) -> String {
    if undone {
        format!("switching the {step} failed; what was switched before it was put back")
    } else {
        format!("switching the {step} failed, and putting back what was switched before it failed too: a human must look")
    }
}

impl RestoreError {
    /// For [`RestoreError::Switch`]: whether the earlier parts were put back.
    pub fn undone(&self) -> Option<bool> {
        match self {
            Self::Switch { undone, .. } => Some(*undone),
            _ => None,
        }
    }
}

/// Which parts of a set to restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Components {
    pub database: bool,
    pub static_files: bool,
    pub media: bool,
    /// Make the set's schema version the active one.
    pub schema: bool,
    /// Have the service controller run the set's app version.
    pub app: bool,
}

impl Default for Components {
    fn default() -> Self {
        Self { database: true, static_files: true, media: true, schema: true, app: true }
    }
}

/// How to restore.
#[derive(Clone)]
pub struct RestoreOptions {
    pub strategy: RestoreStrategy,
    pub components: Components,
    /// Parallel jobs of pg_restore.
    pub jobs: u32,
    pub progress: Arc<dyn Progress>,
    /// `--emergency`: restore as a superuser too (with a warning).
    pub emergency: bool,
}

impl std::fmt::Debug for RestoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoreOptions")
            .field("strategy", &self.strategy)
            .field("components", &self.components)
            .field("jobs", &self.jobs)
            .finish_non_exhaustive()
    }
}

impl RestoreOptions {
    /// The configured strategy and jobs, every component, no progress display.
    pub fn from_config(cfg: &Config) -> Self {
        Self {
            strategy: cfg.rollback.strategy,
            components: Components::default(),
            jobs: cfg.backup.jobs.max(1),
            progress: Arc::new(NoProgress),
            emergency: false,
        }
    }
}

/// A restore made ready by [`prepare`], to be [`switch`]ed in.
#[derive(Debug)]
pub struct Prepared {
    pub set: String,
    /// `YYYYMMDDHHMMSS`, naming what is kept.
    pub stamp: String,
    database: Option<db::PreparedDb>,
    dirs: Vec<files::StagedDir>,
    /// Schema version and SDL to activate, when asked for and present.
    pub schema: Option<backup::SchemaSnapshot>,
    /// App version to run, when asked for and recorded.
    pub app_version: Option<String>,
}

/// What the switch did and what it kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RestoreOutcome {
    pub set: String,
    pub stamp: String,
    pub database: Option<DbOutcome>,
    pub dirs: Vec<DirOutcome>,
    /// The schema version the caller must activate (see [`RestoreOutcome::schema_sdl`]).
    pub schema_version: Option<String>,
    #[serde(skip)]
    pub schema_sdl: Option<String>,
    /// The app version the caller must hand to the service controller.
    pub app_version: Option<String>,
}

/// The database part of a restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DbOutcome {
    pub strategy: RestoreStrategy,
    /// The live database name.
    pub live: String,
    /// The replaced database, kept until [`finalize`] or retention (swap strategy only).
    pub kept: Option<String>,
    /// Sessions that were ended to switch.
    pub sessions_ended: u64,
}

/// A directory part of a restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirOutcome {
    pub component: ComponentKind,
    pub live: PathBuf,
    /// The replaced directory, kept until [`finalize`] or retention (none when there was none).
    pub kept: Option<PathBuf>,
}

/// A timestamp naming the kept copies of one restore.
fn stamp() -> String {
    Utc::now().format("%Y%m%d%H%M%S").to_string()
}

/// Restore `set`: [`prepare`] then [`switch`]. Use the two phases directly to stop services in between.
pub async fn restore(
    cfg: &Config,
    set: &BackupSet,
    opts: &RestoreOptions,
    journal: Option<&mut Journal>,
) -> Result<RestoreOutcome, RestoreError> {
    let prepared = prepare(cfg, set, opts).await?;
    switch(cfg, prepared, opts, journal).await
}

/// Phase one: restore the database into a new database and extract the archives beside their
/// directories. Nothing live changes. Cleans up after itself on error.
pub async fn prepare(
    cfg: &Config,
    set: &BackupSet,
    opts: &RestoreOptions,
) -> Result<Prepared, RestoreError> {
    let stamp = stamp();
    let tools = PgTools::resolve(&cfg.database).await;
    let target = backup::database_target(cfg)?;
    let c = opts.components;
    let manifest = set.manifest();

    let want_db = c.database;
    let db_prep = async {
        if !want_db {
            return Ok(None);
        }
        db::prepare(cfg, &tools, &target, set, opts).await.map(Some)
    };
    let mut dir_jobs = Vec::new();
    if let SetKind::Full { manifest } = &set.kind {
        for (kind, wanted, dir) in [
            (ComponentKind::Static, c.static_files, &cfg.app.static_dir),
            (ComponentKind::Media, c.media, &cfg.app.media_dir),
        ] {
            let Some(component) = manifest.component(kind).filter(|_| wanted) else { continue };
            if dir.as_os_str().is_empty() {
                tracing::warn!(component = %kind, "not restored: its directory is not configured");
                continue;
            }
            // Extraction stops where the manifest says the archive ends, and before the disk fills.
            let limits = crate::archive::Limits {
                entries: component.entries,
                content_bytes: component.content_bytes,
                min_free: cfg.backup.min_free_space.bytes(),
            };
            dir_jobs.push((
                kind,
                set.path.join(&component.file),
                dir.clone(),
                component.size,
                limits,
            ));
        }
    }
    let progress = Arc::clone(&opts.progress);
    let stamp2 = stamp.clone();
    let dirs_prep = async move {
        let mut handles = Vec::new();
        for (kind, archive, live, size, limits) in dir_jobs {
            let (progress, stamp) = (Arc::clone(&progress), stamp2.clone());
            handles.push(tokio::task::spawn_blocking(move || {
                files::stage(kind, &archive, &live, size, limits, &stamp, &*progress)
            }));
        }
        let mut staged = Vec::new();
        let mut first_error = None;
        for handle in handles {
            match handle.await.map_err(|source| RestoreError::Task { source }).and_then(|r| r) {
                Ok(dir) => staged.push(dir),
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        match first_error {
            None => Ok(staged),
            Some(error) => {
                for dir in &staged {
                    files::discard(dir);
                }
                Err(error)
            }
        }
    };
    let (db_result, dirs_result) = tokio::join!(db_prep, dirs_prep);
    match (db_result, dirs_result) {
        (Ok(database), Ok(dirs)) => {
            let schema = if c.schema {
                files::read_schema(set).map_err(|source| RestoreError::Io {
                    path: set.path.join(backup::SCHEMA_FILE),
                    source,
                })?
            } else {
                None
            };
            Ok(Prepared {
                set: set.name.clone(),
                stamp,
                database,
                dirs,
                schema,
                app_version: manifest.and_then(|m| m.app_version.clone()).filter(|_| c.app),
            })
        }
        (db_result, dirs_result) => {
            if let Ok(Some(prepared)) = &db_result {
                db::discard(cfg, &target, prepared).await;
            }
            if let Ok(dirs) = &dirs_result {
                for dir in dirs {
                    files::discard(dir);
                }
            }
            Err(db_result.err().or(dirs_result.err()).expect("one of them failed"))
        }
    }
}

/// Phase two: switch the prepared database and directories in, database first. When a part fails, the
/// parts switched before it are put back and the error says whether that worked. Each switch is a
/// journal step when a journal is given.
pub async fn switch(
    cfg: &Config,
    prepared: Prepared,
    opts: &RestoreOptions,
    mut journal: Option<&mut Journal>,
) -> Result<RestoreOutcome, RestoreError> {
    let target = backup::database_target(cfg)?;
    let tools = PgTools::resolve(&cfg.database).await;
    let mut outcome = RestoreOutcome {
        set: prepared.set.clone(),
        stamp: prepared.stamp.clone(),
        database: None,
        dirs: Vec::new(),
        schema_version: prepared.schema.as_ref().map(|s| s.version.clone()),
        schema_sdl: prepared.schema.as_ref().map(|s| s.sdl.clone()),
        app_version: prepared.app_version.clone(),
    };
    let Prepared { database, dirs, stamp, .. } = prepared;

    if let Some(prepared_db) = database {
        step_begin(&mut journal, "switch-database")?;
        match db::switch(cfg, &tools, &target, prepared_db, &stamp, opts).await {
            Ok(done) => {
                step_end(
                    &mut journal,
                    "switch-database",
                    StepOutcome::Ok,
                    serde_json::to_value(&done).unwrap_or_default(),
                )?;
                outcome.database = Some(done);
            }
            Err(error) => {
                step_end(
                    &mut journal,
                    "switch-database",
                    StepOutcome::Failed,
                    serde_json::Value::Null,
                )?;
                for dir in &dirs {
                    files::discard(dir);
                }
                // The database switch is one transaction: nothing was switched.
                return Err(RestoreError::Switch {
                    step: "database",
                    undone: true,
                    source: Box::new(error),
                });
            }
        }
    }
    let mut remaining = dirs.into_iter();
    while let Some(staged) = remaining.next() {
        let step = match staged.component {
            ComponentKind::Media => "switch-media",
            _ => "switch-static",
        };
        step_begin(&mut journal, step)?;
        let result = tokio::task::spawn_blocking({
            let staged = staged.clone();
            let stamp = stamp.clone();
            move || files::switch(&staged, &stamp)
        })
        .await
        .map_err(|source| RestoreError::Task { source })
        .and_then(|r| r);
        match result {
            Ok(done) => {
                step_end(
                    &mut journal,
                    step,
                    StepOutcome::Ok,
                    serde_json::to_value(&done).unwrap_or_default(),
                )?;
                outcome.dirs.push(done);
            }
            Err(error) => {
                step_end(&mut journal, step, StepOutcome::Failed, serde_json::Value::Null)?;
                files::discard(&staged);
                for rest in remaining {
                    files::discard(&rest);
                }
                let undone = match undo(cfg, &outcome).await {
                    Ok(()) => true,
                    Err(undo_error) => {
                        tracing::error!(error = %backup::error_chain(&undo_error), "putting back the switched parts failed");
                        false
                    }
                };
                let name = staged.component.as_str();
                return Err(RestoreError::Switch { step: name, undone, source: Box::new(error) });
            }
        }
    }
    Ok(outcome)
}

fn step_begin(journal: &mut Option<&mut Journal>, step: &str) -> Result<(), RestoreError> {
    if let Some(journal) = journal {
        journal.step_begin(step).map_err(|source| RestoreError::Journal { source })?;
    }
    Ok(())
}

fn step_end(
    journal: &mut Option<&mut Journal>,
    step: &str,
    outcome: StepOutcome,
    data: serde_json::Value,
) -> Result<(), RestoreError> {
    if let Some(journal) = journal {
        journal.step_end(step, outcome, data).map_err(|source| RestoreError::Journal { source })?;
    }
    Ok(())
}

/// Make `schema` the active version of the configured schema store, creating it from the saved SDL if
/// the store no longer has it. Returns whether the active version changed.
pub async fn activate_schema(
    cfg: &Config,
    schema: &backup::SchemaSnapshot,
) -> Result<bool, RestoreError> {
    use crate::schema_store::{
        parse_version, ActivationReason, NewVersion, SchemaStore, SchemaStoreError,
    };
    let store_error = |source| RestoreError::Schema { version: schema.version.clone(), source };
    let Some(location) = backup::schema_location(cfg) else { return Ok(false) };
    let version = parse_version(&schema.version).map_err(store_error)?;
    let store = SchemaStore::open(&location).await.map_err(store_error)?;
    let by = crate::journal::current_user();
    match store.activate(&version, ActivationReason::Restore, &by).await {
        Ok(changed) => Ok(changed.is_some()),
        Err(SchemaStoreError::NotFound { .. }) => {
            let new = NewVersion {
                version,
                description: "restored from a backup set".into(),
                sdl: schema.sdl.clone(),
                created_by: by,
                created_at: None,
                metadata: serde_json::json!({ "restored": true }),
                activate: Some(ActivationReason::Restore),
            };
            store.create(new).await.map_err(store_error)?;
            Ok(true)
        }
        Err(source) => Err(store_error(source)),
    }
}

/// Drop what a successful restore kept: the replaced database and directories.
pub async fn finalize(cfg: &Config, outcome: &RestoreOutcome) -> Result<(), RestoreError> {
    if let Some(DbOutcome { kept: Some(kept), .. }) = &outcome.database {
        let target = backup::database_target(cfg)?;
        db::drop_kept(cfg, &target, kept).await?;
    }
    for dir in &outcome.dirs {
        if let Some(kept) = &dir.kept {
            fs_err::remove_dir_all(kept)
                .map_err(|source| RestoreError::Io { path: kept.clone(), source })?;
        }
    }
    Ok(())
}

/// Put back what `outcome` replaced: directories first, then the database. The restored copies are
/// dropped.
pub async fn undo(cfg: &Config, outcome: &RestoreOutcome) -> Result<(), RestoreError> {
    let mut first_error = None;
    for dir in outcome.dirs.iter().rev() {
        let dir = dir.clone();
        let stamp = outcome.stamp.clone();
        let result = tokio::task::spawn_blocking(move || files::undo(&dir, &stamp))
            .await
            .map_err(|source| RestoreError::Task { source })
            .and_then(|r| r);
        if let Err(error) = result {
            tracing::error!(error = %backup::error_chain(&error), "cannot put a directory back");
            first_error.get_or_insert(error);
        }
    }
    if let Some(database) = &outcome.database {
        let target = backup::database_target(cfg)?;
        if let Err(error) = db::undo(cfg, &target, database, &outcome.stamp).await {
            first_error.get_or_insert(error);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Something a restore left beside the live database or directories.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Leftover {
    pub kind: LeftoverKind,
    /// Database name or directory path.
    pub name: String,
    /// The stamp of the restore that made it, for kept copies.
    pub stamp: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LeftoverKind {
    /// A database replaced by a restore.
    KeptDatabase,
    /// A directory replaced by a restore.
    KeptDirectory,
    /// A database or directory of a restore or verification that did not finish.
    Unfinished,
}

/// Every database and directory restores and verifications left: kept copies and unfinished work.
pub async fn leftovers(cfg: &Config) -> Result<Vec<Leftover>, RestoreError> {
    let target = backup::database_target(cfg)?;
    let mut out = db::leftovers(cfg, &target).await?;
    for dir in [&cfg.app.static_dir, &cfg.app.media_dir] {
        if !dir.as_os_str().is_empty() {
            out.extend(files::leftovers(dir));
        }
    }
    Ok(out)
}

/// Remove one leftover.
pub async fn remove_leftover(cfg: &Config, leftover: &Leftover) -> Result<(), RestoreError> {
    let is_dir = Path::new(&leftover.name).is_absolute() || leftover.name.contains('/');
    if is_dir {
        let path = PathBuf::from(&leftover.name);
        return fs_err::remove_dir_all(&path).map_err(|source| RestoreError::Io { path, source });
    }
    let target = backup::database_target(cfg)?;
    db::drop_kept(cfg, &target, &leftover.name).await
}

/// What [`repair`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Repair {
    pub actions: Vec<String>,
}

/// Bring a restore that died half-way to a consistent state: finish a database or directory switch
/// that was cut between its renames, let connections into a live database a dead switch had closed, and
/// remove unfinished restored copies. Safe to run any time the run lock is held.
pub async fn repair(cfg: &Config) -> Result<Repair, RestoreError> {
    let target = backup::database_target(cfg)?;
    let mut actions = db::repair(cfg, &target).await?;
    for dir in [&cfg.app.static_dir, &cfg.app.media_dir] {
        if !dir.as_os_str().is_empty() {
            let dir = dir.clone();
            actions.extend(
                tokio::task::spawn_blocking(move || files::repair(&dir))
                    .await
                    .map_err(|source| RestoreError::Task { source })??,
            );
        }
    }
    Ok(Repair { actions })
}

/// Connection to the server's maintenance database, where databases are created, renamed and dropped.
async fn maintenance(
    cfg: &Config,
    target: &DbTarget,
) -> Result<tokio_postgres::Client, RestoreError> {
    target
        .with_dbname(&cfg.database.maintenance_db)
        .connect(cfg.database.connect_timeout.get(), "rail-restore")
        .await
        .map_err(|source| RestoreError::Connect { source })
}

fn query_error(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> RestoreError {
    let what = what.into();
    move |source| RestoreError::Query { what, source }
}
