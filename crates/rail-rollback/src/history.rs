//! `rollback history [--limit N]`: finished deploys and rollbacks from the audit log.

use rail_core::backup;
use rail_core::cli::OutputFormat;
use rail_core::exit;
use rail_core::journal::audit;
use rail_core::output::{self, Style, Table};
use rail_core::store::BackupStore;

use crate::Ctx;

pub(crate) fn run(ctx: &Ctx, limit: Option<usize>) -> anyhow::Result<u8> {
    let path = audit::path(&backup::store(&ctx.cfg).journal_dir());
    let entries = audit::read(&path, limit.unwrap_or(20))?;
    let keys = backup::keyring(&ctx.cfg).ok();
    let chain = audit::verify(&path, keys.as_ref())?;
    if let Some(warning) = chain.warning(&path) {
        output::stderr_line(&format!("warning: {warning}"));
    }
    if ctx.cli.format == OutputFormat::Json {
        output::stdout_line(&output::render_json(&entries)?)?;
        return Ok(exit::SUCCESS);
    }
    if entries.is_empty() {
        output::stdout_line("no finished runs recorded")?;
        return Ok(exit::SUCCESS);
    }
    let mut table = Table::new([
        "FINISHED (UTC)",
        "RUN",
        "KIND",
        "OUTCOME",
        "DURATION",
        "BACKUP",
        "VERSION",
        "BY",
    ]);
    for e in entries.iter().rev() {
        let r = &e.record;
        table.row([
            r.ts.format("%Y-%m-%d %H:%M:%S").to_string(),
            r.run_id.to_string(),
            r.kind.to_string(),
            r.outcome.to_string(),
            rail_core::config::human_duration(std::time::Duration::from_millis(
                r.duration_ms / 1000 * 1000,
            )),
            r.backup.clone().unwrap_or_else(|| "-".into()),
            r.app_version_to.clone().unwrap_or_else(|| "-".into()),
            format!("{}@{}", r.user, r.host),
        ]);
    }
    output::stdout_line(&table.render(Style::stdout(&ctx.cli.log)))?;
    Ok(exit::SUCCESS)
}
