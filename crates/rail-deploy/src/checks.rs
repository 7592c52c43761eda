//! Health-gated finish: the post-deploy checks poll the `healthcheck` checks until all are healthy
//! or `deploy.health_check_timeout` runs out.

use std::time::Instant;

use anyhow::bail;
use rail_core::config::Config;
use rail_core::health::{self, RunOptions, Status};
use serde_json::{json, Value};

use crate::maint::Bypass;

/// Poll the configured checks until every one is healthy (a warning counts as passing: the app
/// answers), or fail with the last report's failing checks.
pub(crate) async fn until_healthy(cfg: &Config, bypass: Option<&Bypass>) -> anyhow::Result<Value> {
    let selection = health::parse_selection(&cfg.deploy.health_checks)?;
    let opts = RunOptions { timeout: None, extra_headers: bypass.into_iter().cloned().collect() };
    let started = Instant::now();
    let deadline = started + cfg.deploy.health_check_timeout.get();
    let mut rounds = 0u32;
    loop {
        rounds += 1;
        let report = health::run_checks(cfg, &selection, &opts).await;
        if report.overall != Status::Critical {
            let summary = format!(
                "healthy after {rounds} round{} ({})",
                if rounds == 1 { "" } else { "s" },
                crate::progress::format_duration(started.elapsed())
            );
            return Ok(json!({"rounds": rounds, "summary": summary}));
        }
        if Instant::now() + cfg.deploy.health_check_interval.get() >= deadline {
            bail!(
                "not healthy within {} ({rounds} rounds): {}",
                cfg.deploy.health_check_timeout,
                report.critical_summary()
            );
        }
        tokio::time::sleep(cfg.deploy.health_check_interval.get()).await;
    }
}

/// One round of the checks before anything changes: a deploy onto a system that is already unhealthy
/// could not tell its own failure from the old one, and its rollback could not prove itself healthy.
pub(crate) async fn healthy_before(cfg: &Config) -> anyhow::Result<()> {
    let selection = health::parse_selection(&cfg.deploy.health_checks)?;
    let report = health::run_checks(cfg, &selection, &RunOptions::default()).await;
    if report.overall == Status::Critical {
        bail!("the app is not healthy before the deploy: {}", report.critical_summary());
    }
    Ok(())
}

/// The health checks a deploy's pre-checks run, for a dry run: each check's status, skipped ones
/// with why, failed when one is critical (the deploy would stop there).
pub(crate) async fn health_for_plan(cfg: &Config) -> crate::plan::PlanCheck {
    let selection = match health::parse_selection(&cfg.deploy.health_checks) {
        Ok(selection) => selection,
        Err(e) => return crate::plan::PlanCheck::failed("app health", format!("{e:#}")),
    };
    let report = health::run_checks(cfg, &selection, &RunOptions::default()).await;
    let mut parts: Vec<String> = report
        .checks
        .iter()
        .map(|c| format!("{} {}", c.name.as_str(), c.status.as_str()))
        .collect();
    parts.extend(report.skipped.iter().map(|s| format!("{} not configured", s.name.as_str())));
    let detail = parts.join(", ");
    if report.overall == Status::Critical {
        crate::plan::PlanCheck::failed(
            "app health",
            format!("{detail}: {}", report.critical_summary()),
        )
    } else {
        crate::plan::PlanCheck::ok("app health", detail)
    }
}
