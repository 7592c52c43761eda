//! The GraphQL schema registry as the pipeline uses it: the active version for the backup, and the
//! version a rollback re-activates.

use rail_core::backup::SchemaSnapshot;
use rail_core::config::{Config, SchemaStoreKind};
use rail_core::schema_store::{ActivationReason, SchemaStore, StoreLocation};

/// Where the configured schema store is, if one is usable.
pub(crate) fn location(cfg: &Config) -> Option<StoreLocation> {
    match cfg.schema.store {
        SchemaStoreKind::Dir => {
            let dir = &cfg.schema.directory;
            dir.join("index.json").is_file().then(|| StoreLocation::Dir(dir.clone()))
        }
        SchemaStoreKind::Postgres => cfg.database_url().map(|url| StoreLocation::Postgres { url }),
    }
}

/// The active schema version and its SDL, for the backup set.
pub(crate) async fn active_snapshot(cfg: &Config) -> Option<SchemaSnapshot> {
    let store = SchemaStore::open(&location(cfg)?).await.ok()?;
    let active = store.active().await.ok()??;
    Some(SchemaSnapshot { version: active.info.version.clone(), sdl: active.sdl })
}

/// Make `version` the active one again (a rollback).
pub(crate) async fn reactivate(cfg: &Config, version: &str, by: &str) -> anyhow::Result<()> {
    let Some(location) = location(cfg) else { return Ok(()) };
    let store = SchemaStore::open(&location).await?;
    let version = rail_core::schema_store::parse_version(version)?;
    store.activate(&version, ActivationReason::Restore, by).await?;
    Ok(())
}

/// Capture the schema the app serves now and make it the active version (a new patch version when it
/// changed), with `schemaver refresh --activate` from beside this binary. The deploy is already live
/// here, so a failure is reported in the step's data and the log, never raised.
pub(crate) async fn activate_served(
    loaded: &rail_core::config::Loaded,
) -> anyhow::Result<serde_json::Value> {
    let schemaver = std::env::current_exe()?.with_file_name("schemaver");
    if !schemaver.is_file() {
        let warning =
            format!("schemaver not found at {}: schema version not recorded", schemaver.display());
        tracing::warn!("{warning}");
        return Ok(serde_json::json!({"warning": warning, "summary": warning}));
    }
    let cfg = &loaded.config;
    let mut cmd = rail_core::process::Cmd::new(schemaver)
        .timeout(std::time::Duration::from_secs(120))
        .args(["refresh", "--activate"]);
    match cfg.schema.store {
        SchemaStoreKind::Dir => {
            cmd = cmd.args(["--store", "dir", "--schema-dir"]).arg(&cfg.schema.directory);
        }
        SchemaStoreKind::Postgres => {
            let Some(url) = cfg.database_url() else {
                anyhow::bail!("the postgres schema store needs database.url")
            };
            cmd = cmd.args(["--store", "postgres"]).secret_env("DATABASE_URL", &url);
        }
    }
    let url = if cfg.schema.capture_url.is_empty() {
        cfg.graphql_url()
    } else {
        Some(cfg.schema.capture_url.clone())
    };
    if let Some(url) = url {
        cmd = cmd.arg("--from-url").arg(url);
    }
    match cmd.output().await {
        Ok(out) => {
            let text = out.stdout_text().trim().to_owned();
            Ok(serde_json::json!({"summary": text}))
        }
        Err(e) => {
            let warning = format!("the schema version was not recorded: {e:#}");
            tracing::warn!("{warning}");
            Ok(serde_json::json!({"warning": warning, "summary": warning}))
        }
    }
}
