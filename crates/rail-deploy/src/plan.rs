//! The resolved parameters of a run, and the `--dry-run` plan computed against the live system.
//!
//! Parse, then resolve: [`Params`] is what the command line asked for, validated; it is stored in the
//! journal so that `--resume` continues with exactly the same parameters. [`build`] reads the live
//! system (read-only) to show what a run would do.

use std::path::Path;

use anyhow::Context;
use rail_core::cli::OutputFormat;
use rail_core::config::{BackupTiming, Config, Loaded};
use rail_core::output;
use serde::{Deserialize, Serialize};

use crate::cli::RunArgs;
use crate::django::MigrateTarget;
use crate::engine::{self, Step};
use crate::UsageError;

/// What the command line asked for, validated.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Params {
    /// App version to deploy; `None` redeploys the running version.
    pub version: Option<String>,
    /// `APP:MIGRATION` of `--migrate-to`.
    pub migrate_to: Option<String>,
    pub no_backup: bool,
    pub no_rollback: bool,
    /// `--strategy`, when given.
    #[serde(default)]
    pub strategy: Option<rail_core::config::DeployStrategy>,
}

impl Params {
    pub(crate) fn resolve(args: &RunArgs, loaded: &Loaded) -> anyhow::Result<Self> {
        if let Some(v) = &args.app_version {
            validate_version(v)?;
        }
        if let Some(t) = &args.migrate_to {
            t.parse::<MigrateTarget>().map_err(|e| UsageError(e.to_string()))?;
        }
        let no_backup = args.no_backup || !loaded.config.deploy.database_backup;
        Ok(Self {
            version: args.app_version.clone(),
            migrate_to: args.migrate_to.clone(),
            no_backup,
            no_rollback: args.no_rollback,
            strategy: args.strategy,
        })
    }

    pub(crate) fn migrate_target(&self) -> Option<MigrateTarget> {
        self.migrate_to.as_deref().and_then(|t| t.parse().ok())
    }

    /// `--strategy`, or `deploy.strategy`.
    pub(crate) fn strategy(&self, cfg: &Config) -> rail_core::config::DeployStrategy {
        self.strategy.unwrap_or(cfg.deploy.strategy)
    }

    /// Whether a failed run may roll back by itself.
    pub(crate) fn rollback_allowed(&self, cfg: &Config) -> bool {
        !self.no_rollback && cfg.deploy.rollback_on_failure
    }
}

/// App versions become directory names and image tags: letters, digits, `.`, `_`, `-`, no `..`.
pub(crate) fn validate_version(v: &str) -> anyhow::Result<()> {
    let ok = !v.is_empty()
        && v.len() <= 128
        && !v.contains("..")
        && !v.starts_with(['.', '-'])
        && v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(UsageError(format!(
            "--version `{v}` is not a valid app version: use letters, digits, `.`, `_` and `-` (no `..`, no `/`)"
        ))
        .into())
    }
}

/// One step of the plan.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PlannedStep {
    pub step: String,
    pub what: String,
    /// Argument vectors, secrets redacted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<String>,
}

/// The outcome of one pre-check in a dry run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum CheckStatus {
    Ok,
    Failed,
    /// It could not be read: neither good nor bad.
    Unknown,
}

/// One pre-check a dry run made, read-only.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PlanCheck {
    pub name: &'static str,
    pub status: CheckStatus,
    pub detail: String,
}

impl PlanCheck {
    pub(crate) fn ok(name: &'static str, detail: String) -> Self {
        Self { name, status: CheckStatus::Ok, detail }
    }
    pub(crate) fn failed(name: &'static str, detail: String) -> Self {
        Self { name, status: CheckStatus::Failed, detail }
    }
    pub(crate) fn unknown(name: &'static str, detail: String) -> Self {
        Self { name, status: CheckStatus::Unknown, detail }
    }
}

/// What a run would do, computed against the live system.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Plan {
    pub environment: String,
    pub config_file: Option<String>,
    pub current_version: Option<String>,
    pub target_version: Option<String>,
    pub steps: Vec<PlannedStep>,
    pub pending_migrations: Vec<String>,
    /// Why the pending migrations could not be read, when they could not.
    pub pending_migrations_error: Option<String>,
    pub estimated_backup_bytes: Option<u64>,
    pub free_bytes: Option<u64>,
    pub min_free_bytes: u64,
    pub enough_space: Option<bool>,
    /// `free`, `held` or `unknown`.
    pub lock: &'static str,
    pub lock_holder: Option<String>,
    /// Why the lock is `unknown`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock_error: Option<String>,
    pub interrupted_run: Option<String>,
    pub backup_timing: String,
    /// The strategy the deploy would take, why, and the analysis of each pending migration.
    pub strategy: Option<crate::online::Decision>,
    /// Where the backup goes off-site, and when; `None` without a remote.
    pub remote: Option<String>,
    pub rollback_target: String,
    pub rollback_on_failure: bool,
    /// The pre-checks the dry run made, read-only; a failed one fails the dry run (exit 1).
    pub checks: Vec<PlanCheck>,
    pub checks_failed: usize,
}

impl Plan {
    /// Whether a pre-check failed: the deploy would stop in its pre-checks.
    pub(crate) fn failed(&self) -> bool {
        self.checks_failed > 0
    }
}

/// Compute the plan. Reads the database, the service backend and the filesystem; changes nothing.
pub(crate) async fn build(loaded: &Loaded, params: &Params) -> anyhow::Result<Plan> {
    let cfg = &loaded.config;
    let facts = crate::actions::Facts::gather(loaded, params).await;
    let steps = engine::steps(cfg, params.no_backup)
        .into_iter()
        .map(|step| describe(step, cfg, params, &facts))
        .collect();
    let estimated = facts.estimated_backup_bytes;
    let enough_space = match (estimated, facts.free_bytes) {
        (Some(need), Some(free)) => Some(free >= need + cfg.backup.min_free_space.bytes()),
        _ => None,
    };
    let backup_timing = match cfg.deploy.backup_timing {
        BackupTiming::InsideMaintenance => "inside-maintenance: the backup is taken after the site enters \
            maintenance, so a rollback loses no write (RPO 0); the maintenance window includes the backup time"
            .to_owned(),
        BackupTiming::BeforeMaintenance => "before-maintenance: a shorter maintenance window, but writes made \
            between the backup and maintenance are lost if the deploy rolls back"
            .to_owned(),
    };
    let rollback_target = if params.no_backup {
        match &facts.newest_backup {
            Some(name) => format!("no backup is taken (--no-backup); the newest existing set is {name}"),
            None => "no backup is taken (--no-backup) and none exists: a failure cannot restore the database".into(),
        }
    } else {
        format!(
            "the backup this run takes first (backup_<UTC time>); then app version {}",
            facts.current_version.as_deref().unwrap_or("(unknown)")
        )
    };
    let (lock, lock_holder, lock_error) = match &facts.lock {
        crate::actions::LockState::Free => ("free", None, None),
        crate::actions::LockState::Held(holder) => ("held", Some(holder.clone()), None),
        crate::actions::LockState::Unknown(why) => ("unknown", None, Some(why.clone())),
    };
    Ok(Plan {
        environment: cfg.environment.clone(),
        config_file: loaded.file.as_ref().map(|p| p.display().to_string()),
        current_version: facts.current_version.clone(),
        target_version: params.version.clone().or_else(|| facts.current_version.clone()),
        steps,
        pending_migrations: facts.pending.clone().unwrap_or_default(),
        pending_migrations_error: facts.pending.clone().err(),
        estimated_backup_bytes: estimated,
        free_bytes: facts.free_bytes,
        min_free_bytes: cfg.backup.min_free_space.bytes(),
        enough_space,
        lock,
        lock_holder,
        lock_error,
        interrupted_run: facts.interrupted.clone(),
        backup_timing,
        strategy: facts.decision.clone(),
        remote: (cfg.backup.remote.is_configured() && !params.no_backup).then(|| {
            format!(
                "{}, {}",
                rail_core::remote::describe_config(&cfg.backup.remote),
                if cfg.backup.remote.before_migrate {
                    "uploaded right after the backup, inside the maintenance window (backup.remote.before_migrate)"
                } else {
                    "uploaded after the maintenance window closes; a failed upload warns and notifies, it never fails the deploy"
                }
            )
        }),
        rollback_target,
        rollback_on_failure: params.rollback_allowed(cfg),
        checks_failed: facts.checks.iter().filter(|c| c.status == CheckStatus::Failed).count(),
        checks: facts.checks.clone(),
    })
}

fn describe(
    step: Step,
    cfg: &Config,
    params: &Params,
    facts: &crate::actions::Facts,
) -> PlannedStep {
    let commands = facts.commands.get(&step).cloned().unwrap_or_default();
    let what = match step {
        Step::PreChecks => {
            let mut what = "check configuration, database, Redis, disk space for the backup, backup directory, \
                            the run lock and pending migrations"
                .to_owned();
            if staged_static(cfg) {
                what.push_str("; collect static files into a copy of the static directory");
            }
            if cfg.deploy.run_tests {
                what.push_str("; run the tests");
            }
            what
        }
        Step::MaintenanceOn | Step::MaintenanceOff if online(facts) => {
            "skipped: online deploy, the site keeps serving".into()
        }
        Step::MaintenanceOn => format!(
            "maintenance on (flag file {}, Redis key {}), expiring after {}",
            display_or(&cfg.maintenance.flag_file, "(none)"),
            if cfg.maintenance.redis_key.is_empty() { "(none)" } else { &cfg.maintenance.redis_key },
            cfg.maintenance.ttl
        ),
        Step::Backup => format!(
            "back up the database ({} format), static and media files and the active schema version into {}, \
             then verify ({})",
            rail_core::config::value_name(&cfg.backup.format),
            cfg.backup.directory.display(),
            rail_core::config::value_name(&cfg.backup.verify)
        ),
        Step::Migrate => match params.migrate_target() {
            Some(t) => format!("migrate {} to {}", t.app, t.migration),
            None if cfg.deploy.migrate_when_none_pending => "apply pending migrations".into(),
            None => match &facts.pending {
                Ok(list) if list.is_empty() => {
                    "nothing pending: skipped (deploy.migrate_when_none_pending = false)".into()
                }
                _ => "apply pending migrations (skipped if the pre-checks find none)".into(),
            },
        },
        Step::CollectStatic if staged_static(cfg) => format!(
            "swap in the static files collected during the pre-checks (collectstatic into a copy of {}, \
             before the maintenance window)",
            cfg.app.static_dir.display()
        ),
        Step::CollectStatic => format!("collect static files into {}", display_or(&cfg.app.static_dir, "STATIC_ROOT")),
        Step::CacheClear => {
            if cfg.deploy.cache_clear_command.is_empty() {
                format!("delete the app's cache keys matching `{}` (never rail: keys)", cfg.deploy.cache_key_pattern)
            } else {
                "run the configured cache clear command".into()
            }
        }
        Step::Restart => format!(
            "switch to app version {} and restart {} ({} backend)",
            params.version.as_deref().or(facts.current_version.as_deref()).unwrap_or("(current)"),
            cfg.deploy.services.join(", "),
            rail_core::config::value_name(&cfg.services.backend)
        ),
        Step::PostChecks => format!(
            "health checks {} until healthy, for at most {}",
            cfg.deploy.health_checks.join(", "),
            cfg.deploy.health_check_timeout
        ),
        Step::MaintenanceOff => "maintenance off".into(),
        Step::ActivateSchema => "capture the served GraphQL schema and activate it as a new schema version".into(),
        Step::Notify => "notify the configured channels of the outcome".into(),
    };
    PlannedStep { step: step.name().to_owned(), what, commands }
}

fn online(facts: &crate::actions::Facts) -> bool {
    facts.decision.as_ref().is_some_and(|d| d.chosen == crate::online::Chosen::Online)
}

/// Whether `collectstatic` runs in the pre-checks, into a copy that the collectstatic step swaps in.
pub(crate) fn staged_static(cfg: &Config) -> bool {
    cfg.deploy.static_files
        && cfg.deploy.static_strategy == rail_core::config::StaticStrategy::Staged
        && !cfg.app.static_dir.as_os_str().is_empty()
        // collectstatic inside the release's container writes where its image says, in place.
        && (cfg.services.backend != rail_core::config::ServiceBackend::Compose
            || cfg.services.compose.run_service.is_empty())
}

fn display_or(path: &Path, fallback: &str) -> String {
    if path.as_os_str().is_empty() {
        fallback.to_owned()
    } else {
        path.display().to_string()
    }
}

fn bytes(n: Option<u64>) -> String {
    n.map_or_else(|| "unknown".to_owned(), |b| rail_core::config::ByteSize(b).to_string())
}

/// Print the plan as text or JSON.
pub(crate) fn print(plan: &Plan, format: OutputFormat) -> anyhow::Result<()> {
    if format == OutputFormat::Json {
        let text = serde_json::to_string_pretty(plan).context("rendering the plan")?;
        output::stdout_line(&text)?;
        return Ok(());
    }
    let mut out = Vec::new();
    out.push(format!(
        "dry run: deploy to {} ({}) - nothing will be changed",
        plan.environment,
        plan.config_file.as_deref().unwrap_or("no configuration file")
    ));
    out.push(format!(
        "app version: {} -> {}",
        plan.current_version.as_deref().unwrap_or("(unknown)"),
        plan.target_version.as_deref().unwrap_or("(unknown)")
    ));
    match (&plan.pending_migrations_error, plan.pending_migrations.as_slice()) {
        (Some(e), _) => out.push(format!("pending migrations: could not be read: {e}")),
        (None, []) => out.push("pending migrations: none".into()),
        (None, list) => out.push(format!("pending migrations: {}", list.join(", "))),
    }
    out.push(format!(
        "backup: estimated {}, free {} (keeping {} free){}",
        bytes(plan.estimated_backup_bytes),
        bytes(plan.free_bytes),
        rail_core::config::ByteSize(plan.min_free_bytes),
        match plan.enough_space {
            Some(true) => ": enough",
            Some(false) => ": NOT ENOUGH SPACE, the pre-checks will fail",
            None => "",
        }
    ));
    out.push(format!("backup timing: {}", plan.backup_timing));
    if let Some(d) = &plan.strategy {
        out.push(format!(
            "strategy: {} (deploy.strategy = {}): {}",
            d.chosen.name(),
            rail_core::config::value_name(&d.configured),
            d.reason
        ));
        for m in &d.migrations {
            out.push(format!(
                "  {}: {}{}",
                m.migration,
                rail_core::config::value_name(&m.verdict),
                if m.assumed_safe { " (deploy.online.assume_safe)" } else { "" }
            ));
            for f in &m.findings {
                out.push(format!(
                    "    {} [{}]: {}",
                    f.rule,
                    rail_core::config::value_name(&f.verdict),
                    f.reason
                ));
                out.push(format!("      statement: {}", f.statement));
                out.push(format!("      fix: {}", f.fix));
            }
        }
    }
    if let Some(remote) = &plan.remote {
        out.push(format!("off-site copy: {remote}"));
    }
    out.push(format!(
        "lock: {}",
        match (plan.lock, &plan.lock_holder, &plan.lock_error) {
            ("held", Some(holder), _) => format!("held by {holder}"),
            ("unknown", _, Some(why)) => format!("unknown ({why})"),
            (state, _, _) => state.to_owned(),
        }
    ));
    if let Some(run) = &plan.interrupted_run {
        out.push(format!(
            "interrupted run: {run} - a deploy is refused until it is resumed or rolled back"
        ));
    }
    out.push(format!(
        "on failure: {}",
        if plan.rollback_on_failure {
            format!("roll back automatically to {}", plan.rollback_target)
        } else {
            "no automatic rollback (--no-rollback or rollback_on_failure = false)".to_owned()
        }
    ));
    out.push("steps:".into());
    for (i, step) in plan.steps.iter().enumerate() {
        out.push(format!("  {:>2}. {:16} {}", i + 1, step.step, step.what));
        for cmd in &step.commands {
            out.push(format!("      $ {cmd}"));
        }
    }
    out.push("pre-checks (read-only):".into());
    let width = plan.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    for check in &plan.checks {
        let mark = match check.status {
            CheckStatus::Ok => "ok",
            CheckStatus::Failed => "FAILED",
            CheckStatus::Unknown => "unknown",
        };
        out.push(format!("  {:width$}  {mark:7}  {}", check.name, check.detail));
    }
    if plan.failed() {
        out.push(format!(
            "dry run: {} pre-check{} failed: the deploy would stop in its pre-checks, changing nothing",
            plan.checks_failed,
            if plan.checks_failed == 1 { "" } else { "s" }
        ));
    }
    for line in out {
        output::stdout_line(&line)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_validated() {
        for ok in ["v1", "v3-broken", "1.2.0", "sha_abc123"] {
            validate_version(ok).unwrap();
        }
        for bad in ["", "../x", "a/b", ".hidden", "-rf", "v1 v2", "v..1"] {
            let err = validate_version(bad).unwrap_err().to_string();
            assert!(err.contains("is not a valid app version"), "{bad}: {err}");
        }
    }
}
