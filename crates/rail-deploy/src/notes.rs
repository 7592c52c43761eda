//! The notification a deploy sends when it ends.

use std::time::Duration;

use rail_core::config::Config;
use rail_core::journal::RunId;
use rail_core::notify::{self, Event, Notification};

use crate::engine::{Ending, RunState};

/// Send the run's outcome to every configured channel. Failures are logged, never raised.
pub(crate) async fn send(
    cfg: &Config,
    run_id: &RunId,
    state: &RunState,
    ending: &Ending,
    duration: Duration,
) {
    let (event, message) = match ending {
        Ending::Success => (Event::DeploySucceeded, "deploy succeeded".to_owned()),
        Ending::FailedClean(f) | Ending::FailedKept(f) => {
            (Event::DeployFailed, format!("deploy failed in {}: {:#}", f.step, f.error))
        }
        Ending::RolledBack(f) => (
            Event::RolledBack,
            format!("deploy failed in {} and was rolled back: {:#}", f.step, f.error),
        ),
        Ending::RollbackFailed { failure, rollback_error } => (
            Event::RollbackFailed,
            format!(
                "deploy failed in {} and its rollback failed: {rollback_error:#}",
                failure.step
            ),
        ),
    };
    let mut note = Notification::new(event, run_id.as_str(), &cfg.environment)
        .message(message)
        .outcome(ending.outcome().as_str())
        .duration(duration)
        .app_versions(state.version_from.clone(), state.version_to.clone());
    if let Some(backup) = &state.backup {
        note = note.backup(backup);
    }
    let note = note.scrubbed(&cfg.secrets());
    for delivery in notify::send_all(&cfg.notifications, &note).await {
        tracing::debug!(?delivery, "notification");
    }
}
