//! The steps of a rollback that belong to other parts of rail: service control (`rail_core::service`),
//! notifications (`rail_core::notify`), the schema store and the health checks (`rail_core::health`).
//!
//! Each is one small function so the rollback pipeline reads as its steps.

use std::time::Duration;

use anyhow::{bail, Context as _};
use rail_core::config::Config;
use rail_core::health::{self, RunOptions, Status};
use rail_core::notify::{self, Event, Notification};
use rail_core::service::{self, ServiceController};

/// What a notification says about a rollback.
#[derive(Debug, Clone)]
pub(crate) struct RollbackEvent<'a> {
    pub run_id: &'a str,
    pub backup: &'a str,
    pub succeeded: bool,
    pub outcome: &'a str,
    pub duration: Duration,
    pub app_version: Option<&'a str>,
    pub schema_version: Option<&'a str>,
    pub detail: Option<String>,
}

/// Stop the app's services before the switch (`deploy.services`, or the backend's own list).
pub(crate) async fn stop_services(cfg: &Config) -> anyhow::Result<()> {
    let controller = service::controller(cfg)?;
    controller.stop(&cfg.deploy.services).await.context("stopping the services")?;
    Ok(())
}

/// Check, before anything stops, that the service backend can run `version`.
pub(crate) fn check_app_version(cfg: &Config, version: &str) -> anyhow::Result<()> {
    let controller = service::controller(cfg)?;
    controller.check_version(version).map_err(|error| {
        crate::Exit::refused(format!(
            "the set's app version cannot be started: {}; nothing was changed (--components without app restores the rest)",
            rail_core::backup::error_chain(&error)
        ))
    })
}

/// Start the app's services on `app_version` (the current one when `None`) and wait until they are up,
/// at most `rollback_procedures.service_start_timeout`.
pub(crate) async fn start_services(cfg: &Config, app_version: Option<&str>) -> anyhow::Result<()> {
    let controller = service::controller(cfg)?;
    let services = &cfg.deploy.services;
    controller.start(services, app_version).await.context("starting the services")?;
    controller
        .wait_ready(services, cfg.rollback.procedures.service_start_timeout.get())
        .await
        .context("waiting for the services to come up")?;
    Ok(())
}

/// The app version the service backend runs now, to record in a manual backup.
pub(crate) async fn current_app_version(cfg: &Config) -> Option<String> {
    let controller = service::controller(cfg).ok()?;
    controller.current_version().await.ok().flatten()
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

/// The checks of `deploy.health_checks` until none is critical, at most
/// `rollback_procedures.health_check_retries` more times `health_check_interval` apart. Checks whose
/// target is not configured are skipped.
pub(crate) async fn health_checks(cfg: &Config) -> anyhow::Result<()> {
    let selection = health::parse_selection(&cfg.deploy.health_checks)?;
    let procedures = &cfg.rollback.procedures;
    let mut attempt = 0;
    loop {
        // The checks' future is large: keep it off the stack of the rollback's.
        let report = Box::pin(health::run_checks(cfg, &selection, &RunOptions::default())).await;
        if report.overall != Status::Critical {
            return Ok(());
        }
        if attempt >= procedures.health_check_retries {
            bail!(
                "health checks still critical after {} attempts: {}",
                attempt + 1,
                report.critical_summary()
            );
        }
        attempt += 1;
        tokio::time::sleep(procedures.health_check_interval.get()).await;
    }
}

/// Tell the configured channels how the rollback went. Never fails the rollback.
pub(crate) async fn notify(cfg: &Config, event: &RollbackEvent<'_>) {
    let kind = if event.succeeded { Event::RollbackSucceeded } else { Event::RollbackFailed };
    let message = match &event.detail {
        Some(detail) => format!("rollback to {} {}: {detail}", event.backup, event.outcome),
        None => format!("rollback to {} {}", event.backup, event.outcome),
    };
    let mut note = Notification::new(kind, event.run_id, &cfg.environment)
        .message(message)
        .outcome(event.outcome)
        .duration(event.duration)
        .backup(event.backup)
        .app_versions(None, event.app_version.map(str::to_owned));
    if let Some(version) = event.schema_version {
        note = note.schema_version(version);
    }
    let note = note.scrubbed(&cfg.secrets());
    for delivery in notify::send_all(&cfg.notifications, &note).await {
        tracing::debug!(?delivery, "notification");
    }
}
