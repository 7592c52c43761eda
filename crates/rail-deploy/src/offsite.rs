//! The off-site copy of a deploy's backup: uploaded after the maintenance window closes, or right after
//! the backup with `backup.remote.before_migrate`. An upload that fails never fails the deploy: it is a
//! warning on the console and a notification, and `rollback push NAME` sends the set later.

use std::sync::Arc;

use rail_core::backup::{self, Progress};
use rail_core::config::Config;
use rail_core::journal::RunId;
use rail_core::notify::{self, Event, Notification};
use rail_core::output;
use rail_core::remote::Remote;

/// Upload `backup` to the configured remote, if one is; true when it is there afterwards.
pub(crate) async fn upload(
    cfg: &Config,
    run_id: &RunId,
    backup_name: &str,
    progress: &Arc<dyn Progress>,
) -> bool {
    if !cfg.backup.remote.is_configured() {
        return false;
    }
    let result = async {
        let remote = Remote::from_config(cfg)?;
        let report = remote.push(cfg, backup_name, Arc::clone(progress)).await?;
        if let Err(error) = remote.prune(cfg, false).await {
            output::stderr_line(&format!(
                "warning: the remote retention could not be applied: {}",
                backup::error_chain(&error)
            ));
        }
        Ok::<_, rail_core::remote::RemoteError>(report)
    }
    .await;
    match result {
        Ok(report) => {
            output::stderr_line(&format!(
                "off-site: {} {} {} ({} files, {}) in {:.1} s",
                report.name,
                if report.outcome == "already-remote" { "already in" } else { "uploaded to" },
                report.url,
                report.files,
                rail_core::config::ByteSize(report.bytes),
                report.duration_ms as f64 / 1000.0
            ));
            true
        }
        Err(error) => {
            let why = rail_core::secret::scrub(&backup::error_chain(&error), &cfg.secrets());
            output::stderr_line(&format!(
                "warning: the off-site copy of {backup_name} failed: {why}; the deploy is not affected, and `rollback push {backup_name}` sends it later"
            ));
            let note = Notification::new(Event::UploadFailed, run_id.as_str(), &cfg.environment)
                .message(format!("the off-site copy of backup {backup_name} failed: {why}"))
                .outcome("upload-failed")
                .backup(backup_name)
                .scrubbed(&cfg.secrets());
            for delivery in notify::send_all(&cfg.notifications, &note).await {
                tracing::debug!(?delivery, "notification");
            }
            false
        }
    }
}
