//! The `deploy` tool: a locked, journaled deploy pipeline that rolls back by itself on failure and can
//! be resumed after a crash.
//!
//! `run` parses the command line, loads the configuration and dispatches; [`engine`] owns the step
//! order, the journal and the rollback decision; `actions` does each step's work against the real
//! system through rail-core.

mod actions;
pub mod analysis;
mod backups;
mod checks;
mod cli;
pub mod django;
pub mod engine;
mod maint;
mod notes;
mod offsite;
pub mod online;
mod plan;
mod progress;
mod schema;
mod services;
mod statics;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use rail_core::config::{self, LoadOptions, Loaded};
use rail_core::journal::{self, audit, Journal, JournalState, RunId, RunKind};
use rail_core::lock::{Holder, LockError, RunLock};
use rail_core::progress::CliProgress;
use rail_core::{db::DbTarget, exit, output};
use serde_json::json;

pub use cli::Cli;
use cli::{Command, MaintenanceAction};
use engine::{Ending, RunState, Step};

/// Environment variable of the disaster-drill hook: `kill:<step>:before|after|during` makes the run
/// kill itself (SIGKILL) at that point, to prove that `deploy --resume` recovers from it.
pub const ENV_FAULT: &str = "RAIL_FAULT_INJECT";

/// Run `deploy` with the given command line and return its exit code.
pub fn run(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let cli: Cli = match rail_core::cli::parse(args) {
        Ok(cli) => cli,
        Err(code) => return ExitCode::from(code),
    };
    if cli.command.is_some() {
        if let Some(flag) = cli.run.given_flag() {
            output::stderr_line(&format!(
                "error: {flag} belongs to a deploy run and cannot be used with a subcommand"
            ));
            return ExitCode::from(exit::USAGE);
        }
    }
    if let Some(Command::Man { dir }) = &cli.command {
        return ExitCode::from(rail_core::cli::man_command::<Cli>("deploy", dir));
    }
    if let Some(Command::Completions { shell }) = &cli.command {
        rail_core::cli::print_completions::<Cli>(*shell, "deploy");
        return ExitCode::SUCCESS;
    }
    let loaded = match config::load(&LoadOptions::from_args(&cli.config)) {
        Ok(loaded) => loaded,
        Err(e) => {
            output::report_error(&anyhow::Error::new(e));
            return ExitCode::from(exit::USAGE);
        }
    };
    let changes = match &cli.command {
        None if !cli.run.dry_run => Some("deploy"),
        Some(Command::Maintenance {
            action: MaintenanceAction::On { .. } | MaintenanceAction::Off { .. },
        }) => Some("deploy maintenance"),
        _ => None,
    };
    if let Some(command) = changes {
        if let Err(e) = loaded.require_configured(command) {
            output::report_error(&anyhow::Error::new(e));
            return ExitCode::from(exit::USAGE);
        }
    }
    let log_file =
        Some(loaded.config.monitoring.log_file.as_path()).filter(|p| !p.as_os_str().is_empty());
    if let Err(e) = output::init_logging(&cli.log, log_file) {
        output::report_error(&anyhow::Error::new(e));
        return ExitCode::from(exit::USAGE);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            output::report_error(&anyhow::Error::new(e).context("starting the async runtime"));
            return ExitCode::from(exit::FAILED);
        }
    };
    let code = runtime.block_on(dispatch(&cli, &loaded));
    ExitCode::from(code)
}

async fn dispatch(cli: &Cli, loaded: &Loaded) -> u8 {
    let result = match &cli.command {
        None => deploy(cli, loaded).await,
        Some(Command::Status) => status(cli, loaded).await,
        Some(Command::History { limit }) => history(cli, loaded, *limit),
        Some(Command::Maintenance { action }) => maintenance(cli, loaded, action).await,
        Some(Command::Completions { .. } | Command::Man { .. }) => {
            unreachable!("handled before loading the configuration")
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let code = e.downcast_ref::<Refusal>().map_or(exit::FAILED, |_| exit::REFUSED);
            let code = if e.downcast_ref::<UsageError>().is_some() { exit::USAGE } else { code };
            output::report_error(&e);
            code
        }
    }
}

/// An error that means "refused" (exit 3): lock held, an interrupted run to resolve, no confirmation.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Refusal(pub String);

/// An error in what the user asked for (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UsageError(pub String);

fn database_target(loaded: &Loaded) -> anyhow::Result<DbTarget> {
    let url = loaded.config.database_url().ok_or_else(|| loaded.missing("database.url"))?;
    Ok(DbTarget::parse(&url)?)
}

fn journal_dir(loaded: &Loaded) -> std::path::PathBuf {
    journal::dir(&loaded.config.backup.directory)
}

async fn take_lock(
    db: &DbTarget,
    run_id: &RunId,
    wait: Option<Duration>,
) -> anyhow::Result<RunLock> {
    let holder = Holder::current(run_id, RunKind::Deploy);
    match RunLock::acquire(db, &holder, wait).await {
        Ok(lock) => Ok(lock),
        Err(e @ LockError::Held { .. }) => Err(Refusal(e.to_string()).into()),
        Err(e) => Err(anyhow::Error::new(e).context("taking the run lock")),
    }
}

/// The newest unfinished deploy or rollback journal, if any.
fn interrupted(loaded: &Loaded) -> anyhow::Result<Option<JournalState>> {
    let dir = journal_dir(loaded);
    if !dir.exists() {
        return Ok(None);
    }
    let mut runs = journal::find_unfinished(&dir)?;
    runs.sort_by(|a, b| a.run_id.cmp(&b.run_id));
    Ok(runs.pop())
}

fn describe_interrupted(state: &JournalState) -> String {
    let step = state.last_open_step.clone().or_else(|| state.steps.last().map(|s| s.step.clone()));
    format!(
        "{} run {} died{}",
        state.kind,
        state.run_id,
        step.map_or_else(|| " before its first step".into(), |s| format!(" in step `{s}`"))
    )
}

/// What to do about a dead run: a deploy that died before its migration began changed no data, so
/// there is nothing to restore (a partial backup set it left is removed by the next backup or prune).
fn resume_advice(state: &JournalState) -> &'static str {
    let changed_data = state.kind != RunKind::Deploy
        || state
            .steps
            .iter()
            .any(|s| !matches!(s.step.as_str(), "pre-checks" | "maintenance-on" | "backup"));
    if changed_data {
        "run `deploy --resume` to finish or undo it, or `rollback rollback --previous` to restore its backup"
    } else {
        "it died before changing any data, so nothing needs restoring: run `deploy --resume` to finish it (its partial backup set, if any, is removed and taken again)"
    }
}

async fn deploy(cli: &Cli, loaded: &Loaded) -> anyhow::Result<u8> {
    let args = &cli.run;
    let cfg = &loaded.config;
    let params = plan::Params::resolve(args, loaded)?;
    if args.dry_run {
        let plan = plan::build(loaded, &params).await?;
        plan::print(&plan, cli.format)?;
        return Ok(if plan.failed() { exit::FAILED } else { exit::SUCCESS });
    }
    if params.no_backup && cfg.environment == "production" && !args.yes {
        return Err(Refusal(
            "--no-backup in production: a failed deploy could not be rolled back; add --yes to proceed anyway".into(),
        )
        .into());
    }
    let db = database_target(loaded)?;
    let run_id = RunId::new();
    let lock = take_lock(&db, &run_id, args.lock_wait).await?;

    // Only with the lock held is an unfinished journal surely a dead run and not one in progress.
    let dead = interrupted(loaded)?;
    let started = Instant::now();
    let mut lines = progress::Lines {
        to_stderr: cli.format == rail_core::cli::OutputFormat::Json,
        quiet: cli.log.quiet,
        timeline: Vec::new(),
    };
    let (ending, run_id, state) = if args.resume {
        let Some(dead) = dead else {
            output::stdout_line("nothing to resume: no interrupted deploy")?;
            lock.release().await.ok();
            return Ok(exit::SUCCESS);
        };
        if dead.kind != RunKind::Deploy {
            return Err(Refusal(format!(
                "{}; finish it with `rollback rollback --previous`",
                describe_interrupted(&dead)
            ))
            .into());
        }
        output::stdout_line(&format!("resuming: {}", describe_interrupted(&dead)))?;
        resume(loaded, &lock, dead, &mut lines, started).await?
    } else {
        if let Some(dead) = dead {
            return Err(Refusal(format!(
                "{}; {}",
                describe_interrupted(&dead),
                resume_advice(&dead)
            ))
            .into());
        }
        let meta = json!({
            "environment": cfg.environment,
            "params": params,
            "config_file": loaded.file,
        });
        let mut journal = Journal::create(&journal_dir(loaded), &run_id, RunKind::Deploy, meta)?;
        let mut actions = actions::Real::new(loaded, &params, &run_id, &lock)
            .with_progress(std::sync::Arc::new(CliProgress::bars_only(cli.log.quiet)));
        let mut state = RunState { version_to: params.version.clone(), ..RunState::default() };
        let steps = engine::steps(cfg, params.no_backup);
        let ending = engine::run(
            &mut actions,
            &mut lines,
            &mut journal,
            &mut state,
            &steps,
            params.rollback_allowed(cfg),
            started,
        )
        .await;
        journal.finish(ending.outcome())?;
        (ending, run_id, state)
    };
    // The window is closed: the run's backup goes off-site (unless it went inside the window). Done with
    // the lock still held, so that no prune removes the set under the upload.
    if let Some(name) = state.backup.as_deref().filter(|_| !cfg.backup.remote.before_migrate) {
        let progress: std::sync::Arc<dyn rail_core::backup::Progress> =
            std::sync::Arc::new(CliProgress::bars_only(cli.log.quiet));
        offsite::upload(cfg, &run_id, name, &progress).await;
    }
    // The run is over whatever its ending: the static files it staged, or the ones it replaced, are no
    // longer needed (a rollback restored them from the backup). Done with the lock still held.
    statics::cleanup(&cfg.app.static_dir);
    append_audit(loaded, &run_id, &ending, &state, started.elapsed());
    lock.release().await.ok();
    report(cli, &run_id, &ending, &state, &lines, started.elapsed())
}

/// Finish or undo an interrupted deploy: re-run it from the step it died in (every step is
/// idempotent), or finish its rollback if it died while rolling back.
async fn resume(
    loaded: &Loaded,
    lock: &RunLock,
    dead: JournalState,
    lines: &mut progress::Lines,
    started: Instant,
) -> anyhow::Result<(Ending, RunId, RunState)> {
    let path = journal::path(&journal_dir(loaded), &dead.run_id);
    let (mut journal, state_on_disk) = Journal::reopen(&path)?;
    let params: plan::Params =
        serde_json::from_value(state_on_disk.meta.get("params").cloned().unwrap_or_default())
            .context("reading the interrupted run's parameters from its journal")?;
    let cfg = &loaded.config;
    let mut state = RunState { version_to: params.version.clone(), ..RunState::default() };
    let mut done: Vec<Step> = Vec::new();
    for record in &state_on_disk.steps {
        if let Some(step) = Step::from_name(&record.step) {
            if !state.began.contains(&step) {
                state.began.push(step);
            }
            if let Some(end) = &record.end {
                state.absorb(&end.data);
                if end.outcome == journal::StepOutcome::Ok {
                    done.push(step);
                }
            }
        }
    }
    let mut actions = actions::Real::new(loaded, &params, &dead.run_id, lock)
        .with_progress(std::sync::Arc::new(CliProgress::bars_only(lines.quiet)));
    actions.stop_orphans();
    let rolling_back = state_on_disk.steps.iter().any(|s| s.step == engine::ROLLBACK_STEP);
    let ending = if rolling_back {
        let failure = engine::StepFailure {
            step: Step::PreChecks,
            error: anyhow::anyhow!(
                "{} (resumed to finish its rollback)",
                describe_interrupted(&dead)
            ),
        };
        let ending = engine::rollback(&mut actions, lines, &mut journal, &mut state, failure).await;
        actions.notify_ending(&state, &ending, started.elapsed()).await;
        ending
    } else {
        let all = engine::steps(cfg, params.no_backup);
        let first_open = all.iter().position(|s| !done.contains(s)).unwrap_or(all.len());
        let mut todo: Vec<Step> = Vec::new();
        // Maintenance is switched on again (with a fresh expiry and bypass token) before anything else
        // runs, when the dead run had switched it on and not yet off.
        if done.contains(&Step::MaintenanceOn) && !done.contains(&Step::MaintenanceOff) {
            todo.push(Step::MaintenanceOn);
        }
        todo.extend_from_slice(&all[first_open..]);
        engine::run(
            &mut actions,
            lines,
            &mut journal,
            &mut state,
            &todo,
            params.rollback_allowed(cfg),
            started,
        )
        .await
    };
    journal.finish(ending.outcome())?;
    Ok((ending, dead.run_id, state))
}

fn append_audit(
    loaded: &Loaded,
    run_id: &RunId,
    ending: &Ending,
    state: &RunState,
    elapsed: Duration,
) {
    let record = audit::AuditRecord {
        ts: chrono::Utc::now(),
        run_id: run_id.clone(),
        kind: RunKind::Deploy,
        environment: loaded.config.environment.clone(),
        outcome: ending.outcome(),
        duration_ms: elapsed.as_millis() as u64,
        backup: state.backup.clone(),
        app_version_from: state.version_from.clone(),
        app_version_to: state.version_to.clone(),
        user: journal::current_user(),
        host: journal::host_name(),
    };
    let path = audit::path(&journal_dir(loaded));
    let keys = rail_core::backup::keyring(&loaded.config).ok();
    if let Err(e) = audit::append(&path, &record, keys.as_ref()) {
        tracing::warn!("could not append to the audit log {}: {e:#}", path.display());
    }
}

fn report(
    cli: &Cli,
    run_id: &RunId,
    ending: &Ending,
    state: &RunState,
    lines: &progress::Lines,
    elapsed: Duration,
) -> anyhow::Result<u8> {
    let code = ending.exit_code();
    let (outcome, failure) = match ending {
        Ending::Success => ("deployed".to_owned(), None),
        Ending::FailedClean(f) => (format!("failed in {}; nothing was changed", f.step), Some(&f.error)),
        Ending::FailedKept(f) => (
            format!(
                "failed in {}; NOT rolled back (rollback disabled): the system is as the failed step left it, \
                 maintenance is still on until it expires or `deploy maintenance off`",
                f.step
            ),
            Some(&f.error),
        ),
        Ending::RolledBack(f) => (
            format!(
                "failed in {}; rolled back to {} from backup {}",
                f.step,
                state.version_from.as_deref().unwrap_or("the previous version"),
                state.backup.as_deref().unwrap_or("?")
            ),
            Some(&f.error),
        ),
        Ending::RollbackFailed { failure, rollback_error } => (
            format!(
                "failed in {} and the rollback failed too: {rollback_error:#}. Maintenance stays on. \
                 The backup of this run is {}; restore it with `rollback rollback {} --yes`, then check \
                 with `healthcheck` and end maintenance with `deploy maintenance off`",
                failure.step,
                state.backup.as_deref().unwrap_or("(none)"),
                state.backup.as_deref().unwrap_or("NAME"),
            ),
            Some(&failure.error),
        ),
    };
    if cli.format == rail_core::cli::OutputFormat::Json {
        let value = json!({
            "run_id": run_id,
            "outcome": ending.outcome().as_str(),
            "exit_code": code,
            "message": outcome,
            "error": failure.map(|e| format!("{e:#}")),
            "version_from": state.version_from,
            "version_to": state.version_to,
            "backup": state.backup,
            "duration_ms": elapsed.as_millis() as u64,
            "steps": lines.timeline,
        });
        output::stdout_line(&serde_json::to_string_pretty(&value)?)?;
    } else {
        if let Some(e) = failure {
            output::stderr_line(&format!("error: {e:#}"));
        }
        output::stdout_line(&format!(
            "deploy {run_id}: {outcome} ({})",
            progress::format_duration(elapsed)
        ))?;
        for line in progress::timeline_text(&lines.timeline) {
            output::stdout_line(&line)?;
        }
    }
    Ok(code)
}

async fn status(cli: &Cli, loaded: &Loaded) -> anyhow::Result<u8> {
    let db = database_target(loaded)?;
    let holder = rail_core::lock::current_holder(&db).await.ok().flatten();
    let dead = interrupted(loaded)?;
    let last = audit::read(&audit::path(&journal_dir(loaded)), 1).unwrap_or_default();
    if cli.format == rail_core::cli::OutputFormat::Json {
        let value = json!({
            "lock_holder": holder.as_ref().map(ToString::to_string),
            "interrupted": dead.as_ref().map(describe_interrupted),
            "last_run": last.last(),
        });
        output::stdout_line(&serde_json::to_string_pretty(&value)?)?;
    } else {
        output::stdout_line(&format!(
            "lock: {}",
            holder.map_or_else(|| "free".to_owned(), |h| format!("held by {h}"))
        ))?;
        output::stdout_line(&format!(
            "interrupted run: {}",
            dead.as_ref().map_or_else(|| "none".to_owned(), describe_interrupted)
        ))?;
        match last.last() {
            Some(entry) => output::stdout_line(&format!("last run: {}", audit_line(entry)))?,
            None => output::stdout_line("last run: none recorded")?,
        }
    }
    Ok(exit::SUCCESS)
}

fn history(cli: &Cli, loaded: &Loaded, limit: Option<usize>) -> anyhow::Result<u8> {
    let path = audit::path(&journal_dir(loaded));
    let entries = audit::read(&path, limit.unwrap_or(20))?;
    let keys = rail_core::backup::keyring(&loaded.config).ok();
    if let Some(warning) = audit::verify(&path, keys.as_ref())?.warning(&path) {
        output::stderr_line(&format!("warning: {warning}"));
    }
    if cli.format == rail_core::cli::OutputFormat::Json {
        output::stdout_line(&serde_json::to_string_pretty(&entries)?)?;
    } else if entries.is_empty() {
        output::stdout_line("no finished runs recorded")?;
    } else {
        for entry in &entries {
            output::stdout_line(&audit_line(entry))?;
        }
    }
    Ok(exit::SUCCESS)
}

/// One audit entry as a line of text.
pub(crate) fn audit_line(entry: &audit::AuditEntry) -> String {
    let r = &entry.record;
    let versions = match (&r.app_version_from, &r.app_version_to) {
        (Some(from), Some(to)) => format!(" {from} -> {to}"),
        (None, Some(to)) => format!(" -> {to}"),
        _ => String::new(),
    };
    format!(
        "{}  {:8} {:15} {}{versions}{}  ({} ms, {}@{}, {})",
        r.ts.format("%Y-%m-%d %H:%M:%S"),
        r.kind.as_str(),
        r.outcome.as_str(),
        r.run_id,
        r.backup.as_ref().map(|b| format!(" backup {b}")).unwrap_or_default(),
        r.duration_ms,
        r.user,
        r.host,
        r.environment,
    )
}

async fn maintenance(cli: &Cli, loaded: &Loaded, action: &MaintenanceAction) -> anyhow::Result<u8> {
    actions::maintenance_command(cli, loaded, action).await
}
