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
/// changed). Failures are reported in the step's data, not raised: the deploy is already live.
pub(crate) async fn activate_served(
    cfg: &Config,
    run_id: &rail_core::journal::RunId,
) -> anyhow::Result<serde_json::Value> {
    let _ = (cfg, run_id);
    anyhow::bail!("schema activation is not wired yet")
}
