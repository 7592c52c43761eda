//! The service backend as the pipeline uses it: which version runs, switching and restarting.

use anyhow::Context;
use rail_core::config::{Config, ServiceBackend};
use rail_core::service::{self, Action, ServiceController};
use serde_json::{json, Value};

/// The app version running now, when the backend can tell.
pub(crate) async fn current_version(cfg: &Config) -> Option<String> {
    let controller = service::controller(cfg).ok()?;
    controller.current_version().await.ok().flatten()
}

/// Refuse an app version that is not a valid name or, with the `releases` backend, has no release.
pub(crate) fn check_version_exists(cfg: &Config, version: &str) -> anyhow::Result<()> {
    service::validate_version(version)?;
    if cfg.services.backend == ServiceBackend::Releases
        || !cfg.services.releases.root.as_os_str().is_empty()
    {
        let dir = crate::django::release_dir(&cfg.services.releases.root, version);
        if !dir.is_dir() {
            anyhow::bail!(
                "release `{version}` does not exist: {} is not a directory",
                dir.display()
            );
        }
    }
    Ok(())
}

/// The commands a restart on `version` would run, for the dry-run plan.
pub(crate) fn restart_commands(cfg: &Config, version: Option<&str>) -> Vec<String> {
    match service::controller(cfg) {
        Ok(c) => c.plan(Action::Restart, &cfg.deploy.services, version),
        Err(e) => vec![format!("(service backend not usable: {e})")],
    }
}

/// Run `version` (the current one when `None`) and wait until the services say they are up.
pub(crate) async fn switch_and_restart(
    cfg: &Config,
    version: Option<&str>,
) -> anyhow::Result<Value> {
    let controller = service::controller(cfg)?;
    let services = &cfg.deploy.services;
    controller.restart(services, version).await.context("restarting the services")?;
    controller
        .wait_ready(services, cfg.services.start_timeout.get())
        .await
        .context("waiting for the services to come up")?;
    let running = controller.current_version().await.ok().flatten();
    Ok(json!({
        "running_version": running,
        "summary": format!("{} running {}", services.join(", "), running.as_deref().unwrap_or("(version unknown)")),
    }))
}

/// Stop the services (before a restore swaps the database under them).
pub(crate) async fn stop(cfg: &Config) -> anyhow::Result<()> {
    let controller = service::controller(cfg)?;
    controller.stop(&cfg.deploy.services).await?;
    Ok(())
}
