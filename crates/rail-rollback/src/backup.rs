//! `rollback backup [--name NAME]`: take a set now, verified at `backup.verify`.

use std::sync::Arc;
use std::time::Duration;

use rail_core::backup::{self, BackupRequest, Progress};
use rail_core::cli::OutputFormat;
use rail_core::exit;
use rail_core::journal::RunOutcome;
use rail_core::output;

use crate::hooks;
use crate::run::Run;
use crate::verify::level_name;
use crate::{Ctx, Exit};
use rail_core::progress::CliProgress;

pub(crate) async fn run(
    ctx: &Ctx,
    name: Option<&str>,
    app_version: Option<&str>,
    lock_wait: Option<Duration>,
) -> anyhow::Result<u8> {
    let cfg = &ctx.cfg;
    if let Some(name) = name {
        backup::validate_name(name)?;
    }
    let (mut run, _) =
        Run::start(ctx, "backup", serde_json::json!({ "backup": name }), lock_wait).await?;
    let progress: Arc<dyn Progress> = Arc::new(CliProgress::new(ctx.cli.log.quiet));
    let request = BackupRequest {
        name: name.map(str::to_owned),
        reason: "manual".into(),
        app_version: match app_version {
            Some(version) => Some(version.to_owned()),
            None => hooks::current_app_version(cfg).await,
        },
        schema: hooks::active_schema(cfg).await,
        progress: Arc::clone(&progress),
    };
    let result = async {
        let set = run.step("backup", async { Ok(backup::create(cfg, &request).await?) }).await?;
        run.journal.step_begin("record")?;
        run.journal.step_end(
            "record",
            rail_core::journal::StepOutcome::Ok,
            serde_json::json!({ "backup": set.name }),
        )?;
        let level = cfg.backup.verify;
        let report = run
            .step("verify", async { Ok(backup::verify(cfg, &set.name, level, &*progress).await?) })
            .await?;
        anyhow::Ok((set, report))
    }
    .await;
    let outcome = match &result {
        Ok((_, report)) if report.ok() => RunOutcome::Success,
        _ => RunOutcome::Failed,
    };
    run.finish(outcome, None).await?;
    let (set, report) = result?;
    let manifest = set.manifest().expect("a new set has a manifest");
    if ctx.cli.format == OutputFormat::Json {
        output::stdout_line(&output::render_json(manifest)?)?;
    } else {
        output::stdout_line(&format!(
            "{}  {}  in {:.1} s",
            set.name,
            bytesize::ByteSize(manifest.total_size()),
            manifest.duration_ms as f64 / 1000.0
        ))?;
        for c in &manifest.components {
            output::stdout_line(&format!(
                "  {:<8}  {:<14}  {}",
                c.name.as_str(),
                c.file,
                bytesize::ByteSize(c.size)
            ))?;
        }
    }
    if !report.ok() {
        return Err(Exit::with_code(
            exit::FAILED,
            format!(
                "the new set `{}` failed verification at the {} level: {}",
                set.name,
                level_name(report.level),
                report.summary()
            ),
        ));
    }
    Ok(exit::SUCCESS)
}
