//! `rollback prune [--dry-run]`: apply retention to sets and to what restores kept.

use std::sync::Arc;

use rail_core::backup::{self, Progress};
use rail_core::cli::OutputFormat;
use rail_core::exit;
use rail_core::journal::RunOutcome;
use rail_core::output::{self, Style, Table};

use crate::run::Run;
use crate::Ctx;
use rail_core::progress::CliProgress;

pub(crate) async fn run(ctx: &Ctx, dry_run: bool) -> anyhow::Result<u8> {
    let cfg = &ctx.cfg;
    let (mut run, _) =
        Run::start(ctx, "prune", serde_json::json!({ "dry_run": dry_run }), None).await?;
    let progress: Arc<dyn Progress> = Arc::new(CliProgress::new(ctx.cli.log.quiet));
    let result =
        run.step("prune", async { Ok(backup::prune(cfg, dry_run, &*progress).await?) }).await;
    run.finish(if result.is_ok() { RunOutcome::Success } else { RunOutcome::Failed }, None).await?;
    let plan = result?;
    for warning in &plan.warnings {
        output::stderr_line(&format!("warning: {warning}"));
    }
    if ctx.cli.format == OutputFormat::Json {
        output::stdout_line(&output::render_json(&plan)?)?;
        return Ok(exit::SUCCESS);
    }
    let verb = if dry_run { "would remove" } else { "removed" };
    if plan.items.is_empty() {
        output::stdout_line("nothing to prune")?;
    } else {
        let mut table = Table::new(["", "WHAT", "NAME", "SIZE", "WHY"]);
        for item in &plan.items {
            let kind = serde_json::to_value(item.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            table.row([
                verb.to_owned(),
                kind,
                item.name.clone(),
                item.size.map_or_else(|| "-".to_owned(), |s| bytesize::ByteSize(s).to_string()),
                item.reason.clone(),
            ]);
        }
        output::stdout_line(&table.render(Style::stdout(&ctx.cli.log)))?;
    }
    if let Some(protected) = &plan.protected {
        output::stdout_line(&format!(
            "kept `{protected}`: the newest verified set is never pruned"
        ))?;
    }
    Ok(exit::SUCCESS)
}
