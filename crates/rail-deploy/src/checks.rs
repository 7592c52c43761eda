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

/// The pre-checks' pieces, shared by the deploy (which stops at the first failure) and the dry run
/// (which makes them all and reports each).
pub(crate) mod pre {
    use anyhow::Context;
    use rail_core::config::{ByteSize, Config};
    use rail_core::db::DbTarget;
    use rail_core::redis::redis;

    /// Connect and run `SELECT 1`.
    pub(crate) async fn database(
        cfg: &Config,
        db: &DbTarget,
    ) -> anyhow::Result<rail_core::db::Client> {
        let client = db
            .connect(cfg.database.connect_timeout.get(), "rail-deploy")
            .await
            .context("database check")?;
        client.simple_query("SELECT 1").await.context("database check: SELECT 1 failed")?;
        Ok(client)
    }

    /// `PING` the configured Redis (nothing when none is configured).
    pub(crate) async fn redis(cfg: &Config) -> anyhow::Result<()> {
        if cfg.redis.url.is_empty() {
            return Ok(());
        }
        let mut conn = rail_core::redis::connect(&cfg.redis.url, cfg.redis.connect_timeout.get())
            .await
            .context("Redis check")?;
        let _: String =
            redis::cmd("PING").query_async(&mut conn).await.context("Redis check: PING failed")?;
        Ok(())
    }

    /// The backup this deploy takes must be one its own rollback will accept: signed...
    pub(crate) fn backup_key(cfg: &Config) -> anyhow::Result<()> {
        rail_core::backup::keyring(cfg)?.signing().context("backup key")?;
        Ok(())
    }

    /// ...and restorable by the role rail connects as (not a superuser; CREATEDB for the swap).
    pub(crate) async fn restore_role(
        cfg: &Config,
        client: &rail_core::db::Client,
    ) -> anyhow::Result<()> {
        let swap = cfg.rollback.strategy == rail_core::config::RestoreStrategy::Swap;
        if let Err(reason) = rail_core::backup::contents::check_restore_role(client, swap).await {
            anyhow::bail!("a rollback of this deploy would be refused: {reason}");
        }
        Ok(())
    }

    /// Why `free` bytes in `dir` are not enough for a backup of up to `need` bytes, if they are not.
    pub(crate) fn space_shortfall(
        cfg: &Config,
        dir: &std::path::Path,
        free: u64,
        need: u64,
    ) -> Option<String> {
        let floor = cfg.backup.min_free_space.bytes();
        (free < need + floor).then(|| {
            format!(
                "not enough free space in {} for the backup: {} free, the backup needs up to {} and {} must stay free \
                 (backup.min_free_space)",
                dir.display(),
                ByteSize(free),
                ByteSize(need),
                ByteSize(floor)
            )
        })
    }
}
