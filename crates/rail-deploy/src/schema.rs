//! The GraphQL schema registry as the pipeline uses it: the active version for the backup, and the
//! version a rollback re-activates.

use rail_core::backup::SchemaSnapshot;
use rail_core::config::{Config, SchemaStoreKind};
use rail_core::schema_store::{ActivationReason, SchemaStore, StoreLocation};

/// Where the configured schema store is, if one is usable.
pub fn location(cfg: &Config) -> Option<StoreLocation> {
    match cfg.schema.store {
        SchemaStoreKind::Dir => {
            let dir = &cfg.schema.directory;
            dir.join("index.json").is_file().then(|| StoreLocation::Dir(dir.clone()))
        }
        SchemaStoreKind::Postgres => cfg.database_url().map(|url| StoreLocation::Postgres { url }),
    }
}

/// The active schema version and its SDL, for the backup set.
pub async fn active_snapshot(cfg: &Config) -> Option<SchemaSnapshot> {
    let store = SchemaStore::open(&location(cfg)?).await.ok()?;
    let active = store.active().await.ok()??;
    Some(SchemaSnapshot { version: active.info.version.clone(), sdl: active.sdl })
}

/// Make `version` the active one again (a rollback).
pub async fn reactivate(cfg: &Config, version: &str, by: &str) -> anyhow::Result<()> {
    let Some(location) = location(cfg) else { return Ok(()) };
    let store = SchemaStore::open(&location).await?;
    let version = rail_core::schema_store::parse_version(version)?;
    store.activate(&version, ActivationReason::Restore, by).await?;
    Ok(())
}
