//! The steps of a rollback that belong to other parts of rail: service control (`rail_core::service`),
//! notifications (`rail_core::notify`), the schema store and health checks.
//!
//! Each is one small function so the rollback pipeline reads the same whatever backs it. Where the part
//! is not part of this build yet, the function says so in the log and does nothing; the health check
//! meanwhile does the one check every rollback needs, a query on the restored database.

// The real service, notification and schema calls are async; these stand-ins keep their signatures.
#![allow(clippy::unused_async)]

use std::time::Duration;

use rail_core::config::{Config, ServiceBackend};

/// What a notification says about a rollback.
#[derive(Debug, Clone)]
pub(crate) struct RollbackEvent<'a> {
    pub run_id: &'a str,
    pub backup: &'a str,
    pub outcome: &'a str,
    pub duration: Duration,
    pub app_version: Option<&'a str>,
    pub schema_version: Option<&'a str>,
    pub detail: Option<String>,
}

fn backend_configured(cfg: &Config) -> bool {
    cfg.services.backend != ServiceBackend::None
}

/// Stop the app's services before the switch.
pub(crate) async fn stop_services(cfg: &Config) -> anyhow::Result<()> {
    if backend_configured(cfg) {
        tracing::warn!(backend = ?cfg.services.backend, "service control is not available in this build: services were not stopped");
    } else {
        tracing::info!("no service backend configured (services.backend): nothing to stop");
    }
    Ok(())
}

/// Start the app's services, running `app_version` when given.
pub(crate) async fn start_services(cfg: &Config, app_version: Option<&str>) -> anyhow::Result<()> {
    if backend_configured(cfg) {
        tracing::warn!(
            backend = ?cfg.services.backend,
            app_version = app_version.unwrap_or("-"),
            "service control is not available in this build: services were not started"
        );
    } else {
        tracing::info!(
            app_version = app_version.unwrap_or("-"),
            "no service backend configured: nothing to start"
        );
    }
    Ok(())
}

/// The app version the service backend runs now, to record in a manual backup.
pub(crate) async fn current_app_version(cfg: &Config) -> Option<String> {
    if backend_configured(cfg) {
        tracing::debug!(
            "service control is not available in this build: the running app version is unknown"
        );
    }
    None
}

/// Make the set's schema version the active one in the schema store.
pub(crate) async fn activate_schema(cfg: &Config, version: &str, sdl: &str) -> anyhow::Result<()> {
    let snapshot =
        rail_core::backup::SchemaSnapshot { version: version.to_owned(), sdl: sdl.to_owned() };
    if rail_core::restore::activate_schema(cfg, &snapshot).await? {
        tracing::info!(version, "schema version activated");
    }
    Ok(())
}

/// The active schema version and its SDL, to save in a backup set.
pub(crate) async fn active_schema(cfg: &Config) -> Option<rail_core::backup::SchemaSnapshot> {
    rail_core::backup::active_schema(cfg).await
}

/// Check the app after the rollback: the restored database answers a query.
pub(crate) async fn health_checks(cfg: &Config) -> anyhow::Result<()> {
    let target = rail_core::backup::database_target(cfg)?;
    let client = target.connect(cfg.database.connect_timeout.get(), "rail-rollback-health").await?;
    client.simple_query("SELECT 1").await?;
    Ok(())
}

/// Tell the configured channels how the rollback went. Never fails the rollback.
pub(crate) async fn notify(cfg: &Config, event: &RollbackEvent<'_>) {
    let n = &cfg.notifications;
    let wanted = n.on_rollback && (n.slack.enabled || n.webhook.enabled || n.email.enabled);
    if wanted {
        tracing::warn!(
            run_id = event.run_id,
            backup = event.backup,
            outcome = event.outcome,
            duration_ms = event.duration.as_millis() as u64,
            app_version = event.app_version.unwrap_or("-"),
            schema_version = event.schema_version.unwrap_or("-"),
            detail = event.detail.as_deref().unwrap_or(""),
            "notifications are not available in this build: nothing was sent"
        );
    }
}
