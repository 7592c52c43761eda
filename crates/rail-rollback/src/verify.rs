//! `rollback verify [NAME] [--level LEVEL]`: check a set; exit 3 when it fails.

use std::sync::Arc;

use rail_core::backup::{self, Progress, SetStatus, VerifyLevel};
use rail_core::cli::OutputFormat;
use rail_core::exit;
use rail_core::output;

use crate::run::Run;
use crate::{Ctx, Exit};
use rail_core::progress::CliProgress;

pub(crate) async fn run(ctx: &Ctx, name: Option<&str>, level: VerifyLevel) -> anyhow::Result<u8> {
    let cfg = &ctx.cfg;
    let name = match name {
        Some(name) => {
            backup::validate_name(name)?;
            name.to_owned()
        }
        None => backup::list(cfg)?
            .into_iter()
            .find(|e| {
                matches!(
                    e.status,
                    SetStatus::Complete
                        | SetStatus::Damaged
                        | SetStatus::Legacy
                        | SetStatus::Unauthenticated
                )
            })
            .map(|e| e.name)
            .ok_or_else(|| {
                Exit::usage(format!(
                    "no backup set in {} to verify",
                    cfg.backup.directory.display()
                ))
            })?,
    };
    let progress: Arc<dyn Progress> = Arc::new(CliProgress::new(ctx.cli.log.quiet));
    // A restore test creates a scratch database that `prune` would remove: hold the lock meanwhile.
    let report = if level == VerifyLevel::RestoreTest {
        let (mut run, _) =
            Run::start(ctx, "verify", serde_json::json!({ "backup": name }), None).await?;
        let report = run
            .step("verify", async { Ok(backup::verify(cfg, &name, level, &*progress).await?) })
            .await;
        let outcome = if report.as_ref().is_ok_and(backup::VerifyReport::ok) {
            rail_core::journal::RunOutcome::Success
        } else {
            rail_core::journal::RunOutcome::Failed
        };
        run.finish(outcome, None).await?;
        report?
    } else {
        backup::verify(cfg, &name, level, &*progress).await?
    };
    if ctx.cli.format == OutputFormat::Json {
        output::stdout_line(&output::render_json(&report)?)?;
    } else {
        for check in &report.checks {
            let mark = if check.ok { "ok    " } else { "FAILED" };
            output::stdout_line(&format!("{mark}  {:<12}  {}", check.component, check.detail))?;
        }
        let verdict = if report.ok() { "passed" } else { "failed" };
        output::stdout_line(&format!(
            "`{}` {verdict} verification at the {} level in {} ms",
            report.name,
            level_name(level),
            report.duration_ms
        ))?;
    }
    if report.ok() {
        Ok(exit::SUCCESS)
    } else {
        if ctx.cli.format == OutputFormat::Json {
            return Ok(exit::REFUSED);
        }
        Err(Exit::refused(format!(
            "backup `{}` failed verification: {}",
            report.name,
            report.summary()
        )))
    }
}

pub(crate) fn level_name(level: VerifyLevel) -> &'static str {
    match level {
        VerifyLevel::Checksums => "checksums",
        VerifyLevel::Structure => "structure",
        VerifyLevel::RestoreTest => "restore-test",
    }
}
