//! The remote commands: `list --remote`, `verify NAME --remote`, `push`, `pull`, `prune --remote` and
//! `keygen --age`.

use std::sync::Arc;

use chrono::Utc;
use rail_core::backup::{self, Progress, SetStatus};
use rail_core::cli::OutputFormat;
use rail_core::exit;
use rail_core::journal::RunOutcome;
use rail_core::output::{self, Style, Table};
use rail_core::progress::CliProgress;
use rail_core::remote::{PullReport, Remote, RemoteError};

use crate::run::Run;
use crate::{Ctx, Exit};

fn remote(ctx: &Ctx) -> anyhow::Result<Remote> {
    Ok(Remote::from_config(&ctx.cfg)?)
}

fn progress(ctx: &Ctx) -> Arc<dyn Progress> {
    Arc::new(CliProgress::new(ctx.cli.log.quiet))
}

fn json(ctx: &Ctx) -> bool {
    ctx.cli.format == OutputFormat::Json
}

pub(crate) async fn list(ctx: &Ctx, detailed: bool, recent: Option<u32>) -> anyhow::Result<u8> {
    let remote = remote(ctx)?;
    let keys = backup::keyring(&ctx.cfg)?;
    let mut entries = remote.list(&keys).await?;
    if let Some(days) = recent {
        let since = Utc::now() - chrono::Duration::days(i64::from(days));
        entries.retain(|e| e.created_at.is_some_and(|t| t >= since));
    }
    if json(ctx) {
        output::stdout_line(&output::render_json(&serde_json::json!({
            "remote": remote.url(),
            "encryption": remote.encryption(),
            "sets": entries,
        }))?)?;
        return Ok(exit::SUCCESS);
    }
    if entries.is_empty() {
        output::stdout_line(&format!("no backup sets in {}", remote.url()))?;
        return Ok(exit::SUCCESS);
    }
    let mut table =
        Table::new(["NAME", "STATUS", "CREATED (UTC)", "SIZE", "REASON", "APP VERSION"]);
    for e in &entries {
        table.row([
            e.name.clone(),
            e.status.as_str().to_owned(),
            e.created_at
                .map_or_else(|| "-".to_owned(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string()),
            bytesize::ByteSize(e.size).to_string(),
            e.reason.clone().unwrap_or_else(|| "-".into()),
            e.app_version.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    output::stdout_line(&table.render(Style::stdout(&ctx.cli.log)))?;
    if detailed {
        for e in &entries {
            output::stdout_line(&format!(
                "\n{} ({})\n  uploaded        {}\n  schema version  {}{}",
                e.name,
                e.status.as_str(),
                e.uploaded_at.map_or_else(|| "-".into(), |t| t.to_rfc3339()),
                e.schema_version.as_deref().unwrap_or("-"),
                e.problem.as_ref().map_or_else(String::new, |p| format!("\n  problem         {p}"))
            ))?;
        }
    }
    Ok(exit::SUCCESS)
}

pub(crate) async fn verify(ctx: &Ctx, name: &str) -> anyhow::Result<u8> {
    backup::validate_name(name)?;
    let remote = remote(ctx)?;
    let report = remote.verify(&ctx.cfg, name, progress(ctx)).await.map_err(refusal)?;
    let ok = report.checks.iter().all(|c| c.ok);
    if json(ctx) {
        output::stdout_line(&output::render_json(&serde_json::json!({
            "ok": ok,
            "report": report,
        }))?)?;
    } else {
        print_checks(&report)?;
        output::stdout_line(&format!(
            "{name} in {}: {}",
            remote.url(),
            if ok { "OK" } else { "FAILED" }
        ))?;
    }
    if ok {
        Ok(exit::SUCCESS)
    } else {
        let failed: Vec<String> = report
            .checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{} {}", c.object, c.detail))
            .collect();
        Err(Exit::refused(format!(
            "remote set `{name}` failed verification: {}",
            failed.join("; ")
        )))
    }
}

fn print_checks(report: &PullReport) -> anyhow::Result<()> {
    for check in &report.checks {
        output::stdout_line(&format!(
            "  {:<6} {}  {}",
            if check.ok { "ok" } else { "FAILED" },
            check.object,
            check.detail
        ))?;
    }
    Ok(())
}

/// A refusal of the remote (a damaged, forged or claimed set) is exit 3 with its reason.
pub(crate) fn refusal(error: RemoteError) -> anyhow::Error {
    if error.is_refusal() {
        let hint = match &error {
            RemoteError::Unauthenticated { .. } | RemoteError::Manifest { .. } => {
                "; rail downloads only sets it can authenticate (`rollback pull --emergency` takes it anyway)"
            }
            _ => "",
        };
        Exit::refused(format!("{}{hint}", backup::error_chain(&error)))
    } else {
        error.into()
    }
}

pub(crate) async fn push(ctx: &Ctx, name: Option<&str>) -> anyhow::Result<u8> {
    let remote = remote(ctx)?;
    let name = match name {
        Some(name) => {
            backup::validate_name(name)?;
            name.to_owned()
        }
        None => backup::list(&ctx.cfg)?
            .into_iter()
            .find(|e| e.status == SetStatus::Complete)
            .map(|e| e.name)
            .ok_or_else(|| {
                Exit::usage(format!(
                    "there is no complete set in {} to upload",
                    ctx.cfg.backup.directory.display()
                ))
            })?,
    };
    let report = remote.push(&ctx.cfg, &name, progress(ctx)).await.map_err(refusal)?;
    let pruned = match remote.prune(&ctx.cfg, false).await {
        Ok(pruned) => Some(pruned),
        Err(error) => {
            output::stderr_line(&format!(
                "warning: the remote retention could not be applied: {}",
                backup::error_chain(&error)
            ));
            None
        }
    };
    if json(ctx) {
        output::stdout_line(&output::render_json(&serde_json::json!({
            "push": report,
            "pruned": pruned,
        }))?)?;
    } else {
        let what = if report.outcome == "already-remote" { "already in" } else { "uploaded to" };
        output::stdout_line(&format!(
            "{} {what} {} ({} files, {}, encryption: {}) in {:.1} s",
            report.name,
            report.url,
            report.files,
            bytesize::ByteSize(report.bytes),
            report.encryption,
            report.duration_ms as f64 / 1000.0
        ))?;
        for removed in pruned.iter().flat_map(|p| &p.removed) {
            output::stdout_line(&format!(
                "removed {removed} from the remote (backup.remote retention)"
            ))?;
        }
    }
    Ok(exit::SUCCESS)
}

pub(crate) async fn pull(ctx: &Ctx, name: Option<&str>, emergency: bool) -> anyhow::Result<u8> {
    let remote = remote(ctx)?;
    let (mut run, _) = Run::start(ctx, "pull", serde_json::json!({ "backup": name }), None).await?;
    let result = async {
        let name = if let Some(name) = name {
            backup::validate_name(name)?;
            name.to_owned()
        } else {
            let keys = backup::keyring(&ctx.cfg)?;
            remote.newest(&keys).await.map_err(refusal)?.name
        };
        if emergency {
            output::stderr_line(&format!(
                "WARNING: downloading `{name}` without checking its authentication (--emergency)"
            ));
        }
        let progress = progress(ctx);
        let report = run
            .step("download", async {
                remote.pull(&ctx.cfg, &name, emergency, progress).await.map_err(refusal)
            })
            .await?;
        anyhow::Ok(report)
    }
    .await;
    run.finish(if result.is_ok() { RunOutcome::Success } else { RunOutcome::Failed }, None).await?;
    let report = result?;
    if json(ctx) {
        output::stdout_line(&output::render_json(&report)?)?;
    } else {
        let verb = if report.outcome == "already-local" { "already in" } else { "downloaded into" };
        output::stdout_line(&format!(
            "{} {verb} {} ({} files, {} resumed, {}) in {:.1} s",
            report.name,
            report.path.as_ref().map_or_else(String::new, |p| p.display().to_string()),
            report.files,
            report.resumed_files,
            bytesize::ByteSize(report.bytes),
            report.duration_ms as f64 / 1000.0
        ))?;
    }
    Ok(exit::SUCCESS)
}

pub(crate) async fn prune(ctx: &Ctx, dry_run: bool) -> anyhow::Result<u8> {
    let remote = remote(ctx)?;
    let report = remote.prune(&ctx.cfg, dry_run).await?;
    if json(ctx) {
        output::stdout_line(&output::render_json(&report)?)?;
        return Ok(exit::SUCCESS);
    }
    let verb = if dry_run { "would remove" } else { "removed" };
    if report.removed.is_empty() {
        output::stdout_line(&format!(
            "nothing to prune in {} ({} sets kept)",
            report.url, report.kept
        ))?;
    }
    for name in &report.removed {
        output::stdout_line(&format!("{verb} {name} from {}", report.url))?;
    }
    Ok(exit::SUCCESS)
}

/// `rollback keygen --age`: an age identity for the remote; its recipient is printed.
pub(crate) fn keygen(
    ctx: &Ctx,
    output_path: Option<&std::path::Path>,
    force: bool,
) -> anyhow::Result<u8> {
    let configured = &ctx.cfg.backup.remote.identity_file;
    let path =
        match output_path {
            Some(path) => path.to_owned(),
            None if !configured.as_os_str().is_empty() => configured.clone(),
            None => return Err(Exit::usage(
                "say where the identity goes: --output PATH (or set backup.remote.identity_file)",
            )),
        };
    let recipient = rail_core::remote::crypt::generate_identity(&path, force)
        .map_err(|e| Exit::usage(backup::error_chain(&e)))?;
    if json(ctx) {
        output::stdout_line(&output::render_json(
            &serde_json::json!({ "path": path, "recipient": recipient }),
        )?)?;
    } else {
        output::stdout_line(&format!(
            "age identity written to {} (mode 0600)\nrecipient: {recipient}\n\
             set backup.remote.identity_file = \"{}\" on hosts that restore, and backup.remote.recipients = [\"{recipient}\"] on hosts that only upload.\n\
             Keep a copy of the identity off this host and away from the bucket: without it the remote backups cannot be decrypted by anyone.",
            path.display(),
            path.display()
        ))?;
    }
    Ok(exit::SUCCESS)
}
