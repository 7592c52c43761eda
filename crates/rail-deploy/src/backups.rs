//! Backups and restores as the pipeline uses them: the verified backup of a deploy, and the restore of
//! the components a failed deploy touched.

use std::sync::Arc;

use anyhow::{bail, Context};
use rail_core::backup::{self, BackupRequest, Progress};
use rail_core::config::Config;
use rail_core::journal::RunId;
use rail_core::restore::{self, RestoreOptions};
use serde_json::{json, Value};

use crate::engine::RunState;

/// What a rollback restores.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Components {
    pub database: bool,
    pub static_files: bool,
    pub schema: bool,
}

/// Take the run's backup set and verify it at `backup.verify`.
pub(crate) async fn take(
    cfg: &Config,
    run_id: &RunId,
    state: &RunState,
    progress: &Arc<dyn Progress>,
) -> anyhow::Result<Value> {
    let mut request = BackupRequest::new(format!("deploy {run_id}"));
    request.progress = Arc::clone(progress);
    request.app_version = state.version_from.clone();
    request.schema = crate::schema::active_snapshot(cfg).await;
    let set = backup::create(cfg, &request).await.context("taking the backup")?;
    let report = backup::verify(cfg, &set.name, cfg.backup.verify, &**progress)
        .await
        .context("verifying the backup")?;
    if !report.ok() {
        bail!("backup {} failed verification: {}", set.name, report.summary());
    }
    let size = set.manifest().map_or(0, backup::Manifest::total_size);
    // Inside the window only when asked: an upload lengthens the downtime by its own duration.
    if cfg.backup.remote.before_migrate {
        crate::offsite::upload(cfg, run_id, &set.name, progress).await;
    }
    Ok(json!({
        "backup": set.name,
        "bytes": size,
        "summary": format!("{} ({}), verified: {}", set.name, rail_core::config::ByteSize(size), rail_core::config::value_name(&cfg.backup.verify)),
    }))
}

/// The commands a backup would run, for the dry-run plan.
pub(crate) fn commands(cfg: &Config) -> Vec<String> {
    use rail_core::config::{Compression, DumpFormat};
    let dump = match (cfg.backup.format, cfg.backup.compression) {
        (DumpFormat::Custom, Compression::Zstd) => "pg_dump --format=custom --compress=0 … | zstd",
        (DumpFormat::Custom, Compression::Gzip) => "pg_dump --format=custom …",
        (DumpFormat::Directory, _) => "pg_dump --format=directory …",
    };
    let mut out = vec![format!(
        "{dump} > {}/backup_<time>/{}",
        cfg.backup.directory.display(),
        backup::database_file(cfg.backup.format, cfg.backup.compression)
    )];
    let (static_file, media_file) = backup::archive_files(cfg.backup.compression);
    let codec = match cfg.backup.compression {
        rail_core::config::Compression::Gzip => "tar+gzip",
        rail_core::config::Compression::Zstd => "tar+zstd",
    };
    if cfg.backup.include_static && !cfg.app.static_dir.as_os_str().is_empty() {
        out.push(format!("{codec} {} > {static_file}", cfg.app.static_dir.display()));
    }
    if cfg.backup.include_media && !cfg.app.media_dir.as_os_str().is_empty() {
        out.push(format!("{codec} {} > {media_file}", cfg.app.media_dir.display()));
    }
    out
}

/// The newest complete set, if any.
pub(crate) fn newest(cfg: &Config) -> Option<String> {
    backup::list(cfg)
        .ok()?
        .into_iter()
        .find(|e| e.status == backup::SetStatus::Complete)
        .map(|e| e.name)
}

/// Restore `components` of the set `name`; `during` is called between preparing the restore (slow,
/// nothing live changes) and switching it in (fast), where a crash tests the switch's recovery.
pub(crate) async fn restore(
    cfg: &Config,
    run_id: &RunId,
    name: &str,
    components: &Components,
    progress: &Arc<dyn Progress>,
    restored: &mut Vec<String>,
    during: impl FnOnce(),
) -> anyhow::Result<()> {
    // A crash of an earlier attempt between two renames is repaired first.
    restore::repair(cfg).await.context("repairing an interrupted restore")?;
    let set = backup::open(cfg, name, false).with_context(|| format!("opening backup {name}"))?;
    let mut opts = RestoreOptions::from_config(cfg);
    opts.components = restore::Components {
        database: components.database,
        static_files: components.static_files,
        media: false,
        schema: components.schema,
        app: false,
    };
    opts.progress = Arc::clone(progress);
    let prepared = restore::prepare(cfg, &set, &opts)
        .await
        .with_context(|| format!("preparing the restore of {name}"))?;
    during();
    let outcome = restore::switch(cfg, prepared, &opts, None)
        .await
        .with_context(|| format!("restoring {name}"))?;
    if outcome.database.is_some() {
        restored.push("database".into());
    }
    for dir in &outcome.dirs {
        restored.push(dir.component.as_str().to_owned());
    }
    if let Some(version) = &outcome.schema_version {
        crate::schema::reactivate(cfg, version, &format!("deploy rollback {run_id}")).await?;
        restored.push("schema".into());
    }
    Ok(())
}
