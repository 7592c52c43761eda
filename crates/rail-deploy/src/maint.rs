//! Maintenance mode for the pipeline and for `deploy maintenance on|off|status`.

use anyhow::Context;
use chrono::Utc;
use rail_core::cli::OutputFormat;
use rail_core::config::{Config, Loaded};
use rail_core::journal::RunId;
use rail_core::maintenance;
use rail_core::secret::Secret;
use rail_core::{exit, output};
use serde_json::{json, Value};

use crate::cli::MaintenanceAction;

/// The header that lets rail's own checks through maintenance.
pub(crate) type Bypass = (String, Secret);

/// Switch maintenance on (again: a fresh expiry and token) for the run.
pub(crate) async fn enable(
    cfg: &Config,
    run_id: &RunId,
    reason: &str,
) -> anyhow::Result<(Value, Option<Bypass>)> {
    let state = maintenance::enable(cfg, run_id.as_str(), reason, cfg.maintenance.ttl.get())
        .await
        .context("switching maintenance on")?;
    for warning in &state.warnings {
        tracing::warn!("maintenance: {warning}");
    }
    let (name, token) = maintenance::bypass_header(&state);
    let value = json!({
        "expires_at": state.expires_at,
        "warnings": state.warnings,
        "summary": format!("on until {}", state.expires_at.format("%H:%M:%S UTC")),
    });
    Ok((value, Some((name.to_owned(), token))))
}

/// Switch maintenance off.
pub(crate) async fn disable(cfg: &Config) -> anyhow::Result<Value> {
    let warnings = maintenance::disable(cfg).await.context("switching maintenance off")?;
    for warning in &warnings {
        tracing::warn!("maintenance: {warning}");
    }
    Ok(json!({"warnings": warnings, "summary": "off"}))
}

/// `deploy maintenance on|off|status`.
/// A deploy or rollback owns maintenance while it runs: switching it by hand then would open its
/// window mid-migration, or close it. Refused unless `--force`, which says so loudly.
async fn refuse_during_a_run(cfg: &rail_core::config::Config, force: bool) -> anyhow::Result<()> {
    let Some(url) = cfg.database_url() else { return Ok(()) };
    let holder = match rail_core::db::DbTarget::parse(&url) {
        Ok(db) => rail_core::lock::current_holder(&db).await,
        Err(error) => return Err(anyhow::Error::new(error)),
    };
    match holder {
        Ok(None) => Ok(()),
        Ok(Some(owner)) if force => {
            output::stderr_line(&format!(
                "WARNING: {owner} is running and owns maintenance; changing it anyway (--force)"
            ));
            Ok(())
        }
        Ok(Some(owner)) => Err(crate::Refusal(format!(
            "{owner} is running and owns maintenance until it ends; wait for it, or pass --force"
        ))
        .into()),
        Err(error) => {
            output::stderr_line(&format!(
                "warning: cannot tell whether a deploy or rollback is running ({}); changing maintenance anyway",
                rail_core::backup::error_chain(&error)
            ));
            Ok(())
        }
    }
}

pub(crate) async fn command(
    cli: &crate::Cli,
    loaded: &Loaded,
    action: &MaintenanceAction,
) -> anyhow::Result<u8> {
    let cfg = &loaded.config;
    let json_out = cli.format == OutputFormat::Json;
    if let MaintenanceAction::On { force, .. } | MaintenanceAction::Off { force } = action {
        refuse_during_a_run(cfg, *force).await?;
    }
    match action {
        MaintenanceAction::On { reason, ttl, .. } => {
            let ttl = ttl.unwrap_or(cfg.maintenance.ttl.get());
            let run_id = RunId::new();
            let state = maintenance::enable(cfg, run_id.as_str(), reason, ttl).await?;
            for warning in &state.warnings {
                output::stderr_line(&format!("warning: {warning}"));
            }
            if json_out {
                output::stdout_line(&serde_json::to_string_pretty(&json!({
                    "maintenance": "on", "since": state.since, "expires_at": state.expires_at,
                    "run_id": state.run_id, "reason": state.reason,
                }))?)?;
            } else {
                output::stdout_line(&format!(
                    "maintenance on ({reason}) until {} UTC; it ends by itself then, or with `deploy maintenance off`",
                    state.expires_at.format("%Y-%m-%d %H:%M:%S")
                ))?;
            }
        }
        MaintenanceAction::Off { .. } => {
            let warnings = maintenance::disable(cfg).await?;
            for warning in &warnings {
                output::stderr_line(&format!("warning: {warning}"));
            }
            if json_out {
                output::stdout_line(&serde_json::to_string_pretty(
                    &json!({"maintenance": "off", "warnings": warnings}),
                )?)?;
            } else {
                output::stdout_line("maintenance off")?;
            }
        }
        MaintenanceAction::Status => {
            let status = maintenance::status(cfg).await?;
            for warning in &status.warnings {
                output::stderr_line(&format!("warning: {warning}"));
            }
            let now = Utc::now();
            if json_out {
                let value = match &status.info {
                    Some(info) => json!({
                        "maintenance": if info.is_on() { "on" } else { "expired" },
                        "info": info,
                        "stale": info.is_stale(cfg.maintenance.stale_after.get(), now),
                    }),
                    None => json!({"maintenance": "off"}),
                };
                output::stdout_line(&serde_json::to_string_pretty(&value)?)?;
            } else {
                match &status.info {
                    None => output::stdout_line("maintenance off")?,
                    Some(info) => {
                        let age = info.since.map_or_else(
                            || "?".into(),
                            |since| {
                                crate::progress::format_duration(
                                    (now - since).to_std().unwrap_or_default(),
                                )
                            },
                        );
                        let shown = if info.is_on() {
                            "on"
                        } else {
                            "expired (the app ignores it; nginx still sees the file)"
                        };
                        let stale = if info.is_stale(cfg.maintenance.stale_after.get(), now) {
                            ", STALE"
                        } else {
                            ""
                        };
                        output::stdout_line(&format!(
                            "maintenance {shown} for {age}{stale}: run {}, reason {}, expires {}",
                            info.run_id.as_deref().unwrap_or("?"),
                            info.reason.as_deref().unwrap_or("?"),
                            info.expires_at.map_or_else(
                                || "?".into(),
                                |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
                            ),
                        ))?;
                        if let Some(problem) = &info.problem {
                            output::stdout_line(&format!("flag file problem: {problem}"))?;
                        }
                    }
                }
            }
        }
    }
    Ok(exit::SUCCESS)
}
