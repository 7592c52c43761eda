//! `rollback rollback NAME | --previous`: restore a backup set (SPEC §3).
//!
//! Order: repair what a dead run left → choose the set → refuse it if too old or failing verification
//! (unless `--emergency`) → confirm → prepare the restored database and directories beside the live ones
//! → stop services → switch (database, static, media) → schema version → app version → start services →
//! health check → notify. A failure after the switch puts the previous state back (exit 4), or says
//! that it could not (exit 5).

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;

use anyhow::Context as _;
use chrono::Utc;
use rail_core::backup::{
    self, BackupError, BackupRequest, BackupSet, ManifestError, Progress, VerifyLevel,
};
use rail_core::config::{Config, RestoreStrategy};
use rail_core::journal::{self, JournalState, Resolution, RunKind, RunOutcome};
use rail_core::restore::{self, Components, RestoreOptions, RestoreOutcome};
use rail_core::{exit, output};
use serde::Serialize;
use serde_json::{json, Value};

use crate::cli::{self, RollbackArgs};
use crate::hooks::{self, RollbackEvent};
use crate::run::{AuditInfo, Run};
use crate::{Ctx, Exit};
use rail_core::progress::CliProgress;

/// What `rollback rollback --format json` prints.
#[derive(Debug, Serialize)]
struct Report<'a> {
    run_id: String,
    backup: &'a str,
    created_at: Option<chrono::DateTime<Utc>>,
    outcome: &'a RestoreOutcome,
    verification: Option<&'a backup::VerifyReport>,
    repaired: Vec<String>,
}

pub(crate) async fn run(ctx: &Ctx, args: &RollbackArgs) -> anyhow::Result<u8> {
    let cfg = &ctx.cfg;
    if let Some(name) = &args.name {
        backup::validate_name(name)?;
    }
    let strategy: RestoreStrategy = args.strategy.map_or(cfg.rollback.strategy, Into::into);
    let components = cli::components(&args.components);
    let meta = json!({
        "backup": args.name,
        "previous": args.previous,
        "strategy": strategy,
        "components": components,
        "emergency": args.emergency,
    });
    let (mut run, dead) = Run::start(ctx, "rollback", meta, args.lock_wait).await?;
    let mut state = State { backup: args.name.clone(), app_version: None, schema_version: None };
    let result = restore_run(ctx, args, &mut run, &dead, strategy, components, &mut state).await;
    let code = match &result {
        Ok(_) => exit::SUCCESS,
        Err(error) => crate::exit_code(error),
    };
    let outcome = match code {
        exit::SUCCESS => RunOutcome::Success,
        exit::ROLLED_BACK => RunOutcome::RolledBack,
        exit::ROLLBACK_FAILED => RunOutcome::RollbackFailed,
        _ => RunOutcome::Failed,
    };
    // Refusals and usage errors changed nothing and are the operator's own answer: no notification.
    if !matches!(code, exit::REFUSED | exit::USAGE) {
        let event = RollbackEvent {
            run_id: run.id.as_str(),
            backup: state.backup.as_deref().unwrap_or("-"),
            succeeded: code == exit::SUCCESS,
            outcome: outcome.as_str(),
            duration: run.started.elapsed(),
            app_version: state.app_version.as_deref(),
            schema_version: state.schema_version.as_deref(),
            detail: result.as_ref().err().map(|e| format!("{e:#}")),
        };
        hooks::notify(cfg, &event).await;
    }
    let run_id = run.id.to_string();
    let audit = AuditInfo {
        environment: cfg.environment.clone(),
        backup: state.backup.clone(),
        app_version_to: state.app_version.clone(),
    };
    run.finish(outcome, Some(audit)).await?;
    let (outcome, report_parts) = result?;
    print_outcome(ctx, &run_id, &outcome, &report_parts)?;
    Ok(exit::SUCCESS)
}

/// What is known about the run so far, for the journal, the audit log and notifications.
struct State {
    backup: Option<String>,
    app_version: Option<String>,
    schema_version: Option<String>,
}

struct Parts {
    set: BackupSet,
    verification: Option<backup::VerifyReport>,
    repaired: Vec<String>,
}

async fn restore_run(
    ctx: &Ctx,
    args: &RollbackArgs,
    run: &mut Run,
    dead: &[JournalState],
    strategy: RestoreStrategy,
    components: Components,
    state: &mut State,
) -> anyhow::Result<(RestoreOutcome, Parts)> {
    let cfg = &ctx.cfg;
    let progress: Arc<dyn Progress> = Arc::new(CliProgress::new(ctx.cli.log.quiet));

    // A dead run may have left a half-done switch: finish it before anything else.
    let repaired = run.step("repair", async { Ok(restore::repair(cfg).await?) }).await?.actions;
    for action in &repaired {
        output::stderr_line(&format!("repaired: {action}"));
    }

    // Which set.
    let (name, resolution) = choose_set(ctx, args, components, dead, run, &*progress).await?;
    state.backup = Some(name.clone());
    run.journal.step_begin("resolve")?;
    run.journal.step_end("resolve", journal::StepOutcome::Ok, json!({ "backup": name }))?;
    for dead_run in dead {
        let resolved = match &resolution {
            Some((path, how)) if *path == dead_run.path => how.clone(),
            _ if dead_run.kind == RunKind::Rollback => Resolution::Abandoned,
            _ => continue,
        };
        journal::mark_resolved(&dead_run.path, &resolved)?;
    }

    // Not here, or asked for from the remote: download it first (checked file by file).
    if cfg.backup.remote.is_configured() {
        let local = backup::find(cfg, &name);
        let missing =
            matches!(local, Err(BackupError::Store(rail_core::store::StoreError::NotFound { .. })));
        if missing {
            let remote = rail_core::remote::Remote::from_config(cfg)?;
            let progress = Arc::clone(&progress);
            let pulled = run
                .step("download", async {
                    remote
                        .pull(cfg, &name, args.emergency, progress)
                        .await
                        .map_err(crate::remote::refusal)
                })
                .await?;
            output::stderr_line(&format!(
                "downloaded `{name}` from {} ({} files, {} resumed)",
                pulled.url, pulled.files, pulled.resumed_files
            ));
        }
    }

    let set = match backup::open(cfg, &name, args.emergency) {
        Ok(set) => set,
        Err(BackupError::Incomplete { name }) => {
            return Err(Exit::refused(format!(
                "backup `{name}` is incomplete (no manifest) and cannot be restored"
            )));
        }
        Err(BackupError::Manifest { name, source }) => {
            let hint = if matches!(source, ManifestError::Edited) {
                " (--emergency restores it anyway)"
            } else {
                ""
            };
            return Err(Exit::refused(format!("backup `{name}`: {source}{hint}")));
        }
        Err(BackupError::Unauthenticated { name, source }) => {
            return Err(Exit::refused(format!(
                "backup `{name}` cannot be trusted: {source}; rail restores only sets it can authenticate (--emergency restores it anyway, running whatever it holds)"
            )));
        }
        Err(error @ (BackupError::Legacy { .. } | BackupError::Key(_))) => {
            return Err(Exit::refused(backup::error_chain(&error)));
        }
        Err(error) => return Err(error.into()),
    };
    if args.emergency {
        if let Err(error) = backup::open(cfg, &name, false) {
            output::stderr_line(&format!(
                "WARNING: {}; restoring it anyway because of --emergency",
                backup::error_chain(&error)
            ));
        }
    }
    // Everything the manifest asks for is checked before the first change: an app version the
    // service backend does not have would otherwise be found only after the services were stopped.
    if components.app {
        if let Some(version) = set.manifest().and_then(|m| m.app_version.as_deref()) {
            hooks::check_app_version(cfg, version)?;
        }
    }
    state.app_version = set.manifest().and_then(|m| m.app_version.clone());
    state.schema_version = set.manifest().and_then(|m| m.schema_version.clone());

    // Too old?
    if let Some(created) = set.created_at() {
        let max_days = cfg.rollback.max_rollback_age_days;
        let age = Utc::now() - created;
        if max_days > 0 && age > chrono::Duration::days(i64::from(max_days)) {
            let message = format!(
                "backup `{name}` is {} days old, older than max_rollback_age_days = {max_days}",
                age.num_days()
            );
            if !args.emergency {
                return Err(Exit::refused(format!("{message} (--emergency restores it anyway)")));
            }
            output::stderr_line(&format!("warning: {message}; restoring it anyway (--emergency)"));
        }
    }

    // Verified?
    let checks = &cfg.rollback.safety_checks;
    let level = if checks.test_rollback {
        Some(VerifyLevel::RestoreTest)
    } else if checks.verify_backup_integrity {
        Some(cfg.backup.verify.max(VerifyLevel::Checksums))
    } else {
        None
    };
    let verification = match level {
        None => {
            run.skip("verify", "safety_checks.verify_backup_integrity is off")?;
            None
        }
        Some(level) => {
            let only = verified_components(components);
            let report = run
                .step("verify", async {
                    Ok(backup::verify_components(cfg, &name, level, Some(&only), &*progress)
                        .await?)
                })
                .await?;
            if !report.ok() {
                for check in report.failures() {
                    output::stderr_line(&format!(
                        "verification failed: {}: {}",
                        check.component, check.detail
                    ));
                }
                if !args.emergency {
                    return Err(Exit::refused(format!(
                        "backup `{name}` failed verification ({}); --emergency restores it anyway",
                        report
                            .failures()
                            .map(|c| c.component.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
                output::stderr_line(
                    "warning: restoring a set that failed verification (--emergency)",
                );
            }
            Some(report)
        }
    };

    // Confirmed?
    if cfg.rollback.safety_checks.require_confirmation || args.confirm {
        confirm(cfg, &set, strategy, args.yes)?;
    }

    let opts = RestoreOptions {
        strategy,
        components,
        jobs: cfg.backup.jobs.max(1),
        progress: Arc::clone(&progress),
        emergency: args.emergency,
    };

    // In place keeps no copy of the database by itself: take one first when asked to.
    let safety_copy = if strategy == RestoreStrategy::InPlace
        && components.database
        && (cfg.rollback.safety_checks.pre_rollback_backup
            || cfg.rollback.procedures.pre_rollback_backup)
    {
        let request = BackupRequest {
            name: None,
            reason: format!("{} {}", backup::PRE_ROLLBACK_REASON, run.id),
            app_version: hooks::current_app_version(cfg).await,
            schema: hooks::active_schema(cfg).await,
            progress: Arc::clone(&progress),
        };
        let copy = run
            .step("pre-rollback-backup", async { Ok(backup::create(cfg, &request).await?) })
            .await?;
        output::stderr_line(&format!("pre-rollback backup: {}", copy.name));
        Some(copy)
    } else {
        None
    };

    let prepared =
        run.step("prepare", async { Ok(restore::prepare(cfg, &set, &opts).await?) }).await?;
    run.step("stop-services", hooks::stop_services(cfg)).await?;

    run.lock.check_alive().await?;
    let outcome = match restore::switch(cfg, prepared, &opts, Some(&mut run.journal)).await {
        Ok(outcome) => outcome,
        Err(error) => {
            let undone = error.undone().unwrap_or(false);
            // An in-place database switch is one transaction: when it is the part that failed, the
            // database never changed.
            let db_changed =
                !matches!(error, restore::RestoreError::Switch { step: "database", .. });
            let error = anyhow::Error::new(error);
            let put_back =
                !db_changed || put_back_in_place(cfg, safety_copy.as_ref(), strategy, &opts).await;
            let _ = hooks::start_services(cfg, None).await;
            return Err(failed_after_switch(&error, undone && put_back));
        }
    };

    let after = async {
        if let (Some(version), Some(sdl)) = (&outcome.schema_version, &outcome.schema_sdl) {
            // The schema registry is bookkeeping: the restored app does not depend on it, so a store that
            // cannot be written is reported, not a reason to undo the restore.
            if let Err(error) = run.step("schema", hooks::activate_schema(cfg, version, sdl)).await
            {
                output::stderr_line(&format!(
                    "warning: schema version {version} was not activated: {error:#}"
                ));
            }
        }
        run.step("start-services", hooks::start_services(cfg, outcome.app_version.as_deref()))
            .await?;
        run.step("health", hooks::health_checks(cfg)).await?;
        anyhow::Ok(())
    }
    .await;
    if let Err(error) = after {
        let undo = restore::undo(cfg, &outcome).await;
        let put_back =
            undo.is_ok() && put_back_in_place(cfg, safety_copy.as_ref(), strategy, &opts).await;
        if let Err(undo_error) = &undo {
            tracing::error!(error = %backup::error_chain(undo_error), "putting the previous state back failed");
        }
        let _ = hooks::start_services(cfg, None).await;
        return Err(failed_after_switch(&error, put_back));
    }
    Ok((outcome, Parts { set, verification, repaired }))
}

/// The components a restore of `components` reads.
fn verified_components(components: Components) -> Vec<backup::ComponentKind> {
    use backup::ComponentKind;
    let mut out = Vec::new();
    if components.database {
        out.push(ComponentKind::Database);
    }
    if components.static_files {
        out.push(ComponentKind::Static);
    }
    if components.media {
        out.push(ComponentKind::Media);
    }
    if components.schema {
        out.push(ComponentKind::Schema);
    }
    out
}

/// The error of a restore that failed after changing something: exit 4 when the previous state is back,
/// 5 when it is not.
fn failed_after_switch(error: &anyhow::Error, put_back: bool) -> anyhow::Error {
    let (code, tail) = if put_back {
        (exit::ROLLED_BACK, "the previous state was put back")
    } else {
        (exit::ROLLBACK_FAILED, "the previous state could not be put back: a human must look")
    };
    let message = format!("{error:#}; {tail}");
    Exit::with_code(code, message)
}

/// An in-place restore that failed after replacing the database is undone from its safety copy.
async fn put_back_in_place(
    cfg: &Config,
    safety_copy: Option<&BackupSet>,
    strategy: RestoreStrategy,
    opts: &RestoreOptions,
) -> bool {
    if strategy != RestoreStrategy::InPlace {
        return true;
    }
    let Some(copy) = safety_copy else { return false };
    let opts = RestoreOptions {
        components: Components {
            database: true,
            static_files: false,
            media: false,
            schema: false,
            app: false,
        },
        ..opts.clone()
    };
    match restore::restore(cfg, copy, &opts, None).await {
        Ok(_) => true,
        Err(error) => {
            tracing::error!(error = %backup::error_chain(&error), set = %copy.name, "restoring the pre-rollback backup failed");
            false
        }
    }
}

/// Pick the set: the named one; with `--previous`, the set a dead run was restoring (to finish it) or the
/// backup a dead deploy took (to undo it), else the newest set that verifies, of another version than
/// the running one when `components` restores the app (see [`backup::newest_verified`]).
async fn choose_set(
    ctx: &Ctx,
    args: &RollbackArgs,
    components: Components,
    dead: &[JournalState],
    run: &Run,
    progress: &dyn Progress,
) -> anyhow::Result<(String, Option<(std::path::PathBuf, Resolution)>)> {
    if let Some(name) = &args.name {
        return Ok((name.clone(), None));
    }
    for dead_run in dead.iter().rev() {
        let command = dead_run.meta.get("command").and_then(Value::as_str);
        match dead_run.kind {
            RunKind::Rollback if command == Some("rollback") => {
                let name = dead_run
                    .completed("resolve")
                    .and_then(|end| {
                        end.data.get("backup").and_then(Value::as_str).map(str::to_owned)
                    })
                    .or_else(|| {
                        dead_run.meta.get("backup").and_then(Value::as_str).map(str::to_owned)
                    });
                if let Some(name) = name {
                    output::stderr_line(&format!(
                        "finishing the interrupted rollback {} to `{name}`",
                        dead_run.run_id
                    ));
                    return Ok((
                        name,
                        Some((dead_run.path.clone(), Resolution::ResumedBy(run.id.clone()))),
                    ));
                }
            }
            RunKind::Deploy => {
                let name = dead_run.steps.iter().rev().find_map(|step| {
                    step.end.as_ref().and_then(|end| {
                        end.data.get("backup").and_then(Value::as_str).map(str::to_owned)
                    })
                });
                if let Some(name) = name {
                    output::stderr_line(&format!(
                        "undoing the interrupted deploy {}: restoring `{name}`",
                        dead_run.run_id
                    ));
                    return Ok((
                        name,
                        Some((dead_run.path.clone(), Resolution::UndoneBy(run.id.clone()))),
                    ));
                }
            }
            RunKind::Rollback => {}
        }
    }
    let cfg = &ctx.cfg;
    if args.remote {
        let remote = rail_core::remote::Remote::from_config(cfg)?;
        let keys = backup::keyring(cfg)?;
        let newest = remote.newest(&keys).await.map_err(crate::remote::refusal)?;
        output::stderr_line(&format!("the newest set in {} is `{}`", remote.url(), newest.name));
        return Ok((newest.name, None));
    }
    let level = if cfg.rollback.safety_checks.test_rollback {
        VerifyLevel::RestoreTest
    } else {
        VerifyLevel::Checksums
    };
    let running = if components.app { hooks::current_app_version(cfg).await } else { None };
    match backup::newest_verified(cfg, level, running.as_deref(), progress).await {
        Ok((set, skipped)) => {
            for report in skipped {
                output::stderr_line(&format!(
                    "skipped `{}`: it failed verification: {}",
                    report.name,
                    report.summary()
                ));
            }
            let version = set.manifest().and_then(|m| m.app_version.clone());
            if let (Some(running), Some(version)) = (&running, &version) {
                if running != version {
                    output::stderr_line(&format!(
                        "the services run {running}: --previous goes back to {version} with `{}` (name a newer set of {running} to restore only its data)",
                        set.name
                    ));
                }
            }
            Ok((set.name, None))
        }
        Err(BackupError::NoSets { dir }) => {
            Err(Exit::refused(format!("no complete backup set in {dir} passes verification")))
        }
        Err(error) => Err(error.into()),
    }
}

/// Ask on the terminal, or require `--yes` without one.
fn confirm(
    cfg: &Config,
    set: &BackupSet,
    strategy: RestoreStrategy,
    yes: bool,
) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return Err(Exit::refused("confirmation required: run on a terminal, or pass --yes"));
    }
    let target = backup::database_target(cfg)?;
    let created = set.created_at().map_or_else(
        || "unknown time".to_owned(),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    );
    let strategy = match strategy {
        RestoreStrategy::Swap => "swap",
        RestoreStrategy::InPlace => "in-place",
    };
    let mut err = std::io::stderr().lock();
    write!(
        err,
        "Restore backup `{}` (taken {created}) into database `{}` ({strategy}), replacing the live data? [y/N] ",
        set.name,
        target.dbname()
    )?;
    err.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).context("reading the answer")?;
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        Err(Exit::refused("rollback declined"))
    }
}

fn print_outcome(
    ctx: &Ctx,
    run_id: &str,
    outcome: &RestoreOutcome,
    parts: &Parts,
) -> anyhow::Result<()> {
    if ctx.cli.format == rail_core::cli::OutputFormat::Json {
        let report = Report {
            run_id: run_id.to_owned(),
            backup: &parts.set.name,
            created_at: parts.set.created_at(),
            outcome,
            verification: parts.verification.as_ref(),
            repaired: parts.repaired.clone(),
        };
        output::stdout_line(&output::render_json(&report)?)?;
        return Ok(());
    }
    let mut lines = vec![format!("restored `{}` (run {run_id})", parts.set.name)];
    if let Some(db) = &outcome.database {
        let kept =
            db.kept.as_deref().map_or_else(String::new, |k| format!(", previous kept as {k}"));
        let ended = if db.sessions_ended > 0 {
            format!(", {} sessions ended", db.sessions_ended)
        } else {
            String::new()
        };
        lines.push(format!("  database  {}{kept}{ended}", db.live));
    }
    for dir in &outcome.dirs {
        let kept = dir
            .kept
            .as_ref()
            .map_or_else(String::new, |k| format!(", previous kept as {}", k.display()));
        lines.push(format!("  {:<8}  {}{kept}", dir.component.as_str(), dir.live.display()));
    }
    if let Some(version) = &outcome.schema_version {
        lines.push(format!("  schema    {version}"));
    }
    if let Some(version) = &outcome.app_version {
        lines.push(format!("  app       {version}"));
    }
    for line in lines {
        output::stdout_line(&line)?;
    }
    Ok(())
}
