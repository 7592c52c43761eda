//! `rollback list [--detailed] [--recent DAYS]`: the sets of the backup directory, newest first.

use chrono::Utc;
use rail_core::backup::{self, BackupEntry};
use rail_core::cli::OutputFormat;
use rail_core::exit;
use rail_core::output::{self, Style, Table};

use crate::Ctx;

pub(crate) fn run(ctx: &Ctx, detailed: bool, recent: Option<u32>) -> anyhow::Result<u8> {
    let mut entries = backup::list(&ctx.cfg)?;
    if let Some(days) = recent {
        let since = Utc::now() - chrono::Duration::days(i64::from(days));
        entries.retain(|e| e.created_at.is_some_and(|t| t >= since));
    }
    if ctx.cli.format == OutputFormat::Json {
        output::stdout_line(&output::render_json(&entries)?)?;
        return Ok(exit::SUCCESS);
    }
    if entries.is_empty() {
        output::stdout_line(&format!("no backup sets in {}", ctx.cfg.backup.directory.display()))?;
        return Ok(exit::SUCCESS);
    }
    let style = Style::stdout(&ctx.cli.log);
    let mut table =
        Table::new(["NAME", "STATUS", "CREATED (UTC)", "SIZE", "REASON", "APP VERSION"]);
    for entry in &entries {
        let manifest = entry.manifest.as_ref();
        table.row([
            entry.name.clone(),
            entry.status.as_str().to_owned(),
            entry
                .created_at
                .map_or_else(|| "-".to_owned(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string()),
            bytesize::ByteSize(entry.size).to_string(),
            manifest.map_or("-", |m| m.reason.as_str()).to_owned(),
            manifest.and_then(|m| m.app_version.clone()).unwrap_or_else(|| "-".into()),
        ]);
    }
    output::stdout_line(&table.render(style))?;
    if detailed {
        for entry in &entries {
            output::stdout_line("")?;
            for line in details(entry) {
                output::stdout_line(&line)?;
            }
        }
    }
    Ok(exit::SUCCESS)
}

/// The detailed block of one entry.
fn details(entry: &BackupEntry) -> Vec<String> {
    let mut lines = vec![format!("{} ({})", entry.name, entry.status.as_str())];
    lines.push(format!("  path            {}", entry.path.display()));
    if let Some(problem) = &entry.problem {
        lines.push(format!("  problem         {problem}"));
    }
    let Some(m) = &entry.manifest else { return lines };
    lines.push(format!("  environment     {}", m.environment));
    lines.push(format!("  reason          {}", m.reason));
    lines.push(format!("  app version     {}", m.app_version.as_deref().unwrap_or("-")));
    lines.push(format!("  schema version  {}", m.schema_version.as_deref().unwrap_or("-")));
    lines.push(format!("  taken by        {} in {} ms", m.tool_version, m.duration_ms));
    if let Some(db) = &m.database {
        lines.push(format!(
            "  database        {} (server {}, {})",
            db.name, db.server_version, db.pg_dump_version
        ));
        let rows: i64 = db.tables.iter().map(|t| t.rows).sum();
        lines.push(format!("  tables          {} ({rows} rows)", db.tables.len()));
    }
    for c in &m.components {
        let entries = c.entries.map_or_else(String::new, |n| format!(", {n} entries"));
        lines.push(format!(
            "  {:<15} {} ({}, {}{entries}) sha256 {}",
            c.name.as_str(),
            c.file,
            c.format,
            bytesize::ByteSize(c.size),
            c.sha256
        ));
    }
    lines
}
