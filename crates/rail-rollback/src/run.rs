//! What every changing command does around its work: take the run lock, report runs that died, keep a
//! journal of its steps, and record the finished run in the audit log.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rail_core::backup;
use rail_core::journal::{
    self, audit, Journal, JournalState, RunId, RunKind, RunOutcome, StepOutcome,
};
use rail_core::lock::{Holder, RunLock};
use rail_core::output;
use rail_core::store::BackupStore;
use serde_json::{json, Value};

use crate::Ctx;

/// A locked, journaled run of the rollback tool.
pub(crate) struct Run {
    pub id: RunId,
    pub lock: RunLock,
    pub journal: Journal,
    pub started: Instant,
    pub journal_dir: std::path::PathBuf,
    /// Authenticates the audit log's head.
    pub keys: Option<backup::Keyring>,
}

impl Run {
    /// Take the lock (refusing at once, or waiting up to `lock_wait`), report dead runs, and open the
    /// journal of `command`. Returns the dead runs found, oldest first.
    pub(crate) async fn start(
        ctx: &Ctx,
        command: &str,
        mut meta: Value,
        lock_wait: Option<Duration>,
    ) -> anyhow::Result<(Self, Vec<JournalState>)> {
        let target = backup::database_target(&ctx.cfg)?;
        let id = RunId::new();
        let holder = Holder::current(&id, RunKind::Rollback);
        let lock = RunLock::acquire(&target, &holder, lock_wait).await?;
        let store = backup::store(&ctx.cfg);
        store.ensure().context("preparing the backup directory")?;
        let journal_dir = store.journal_dir();
        let unfinished = journal::find_unfinished(&journal_dir)
            .context("reading the journals of earlier runs")?;
        for dead in &unfinished {
            output::stderr_line(&format!("warning: {}", describe_dead(dead)));
        }
        // A dead backup, prune or verification has nothing to finish (its partial set or scratch database
        // is pruned): it is resolved once reported. Dead rollbacks wait for `rollback rollback`, which
        // repairs and finishes them, and dead deploys for `deploy --resume` or `rollback --previous`.
        let mut unfinished = unfinished;
        unfinished.retain(|dead| {
            let command = dead.meta.get("command").and_then(Value::as_str);
            let finished_by_nobody = dead.kind == RunKind::Rollback && command.is_some_and(|c| c != "rollback");
            if finished_by_nobody {
                if let Err(error) = journal::mark_resolved(&dead.path, &journal::Resolution::Abandoned) {
                    tracing::warn!(error = %backup::error_chain(&error), "cannot mark a dead run resolved");
                }
            }
            !finished_by_nobody
        });
        if let Some(map) = meta.as_object_mut() {
            map.insert("command".into(), json!(command));
            map.insert("environment".into(), json!(ctx.cfg.environment));
            map.insert("user".into(), json!(journal::current_user()));
            map.insert("host".into(), json!(journal::host_name()));
            map.insert("pid".into(), json!(std::process::id()));
        }
        let journal = Journal::create(&journal_dir, &id, RunKind::Rollback, meta)
            .context("creating the run journal")?;
        tracing::info!(run_id = %id, command, "run started");
        let keys = backup::keyring(&ctx.cfg).ok();
        Ok((Self { id, lock, journal, started: Instant::now(), journal_dir, keys }, unfinished))
    }

    /// Run `work` as the journal step `name`, after checking the lock is still held.
    pub(crate) async fn step<T, F>(&mut self, name: &str, work: F) -> anyhow::Result<T>
    where
        F: Future<Output = anyhow::Result<T>>,
    {
        self.lock.check_alive().await?;
        self.journal.step_begin(name)?;
        match work.await {
            Ok(value) => {
                self.journal.step_end(name, StepOutcome::Ok, Value::Null)?;
                Ok(value)
            }
            Err(error) => {
                let data = json!({ "error": backup::error_chain(error.as_ref()) });
                if let Err(journal_error) = self.journal.step_end(name, StepOutcome::Failed, data) {
                    tracing::error!(error = %journal_error, "cannot write the journal");
                }
                Err(error)
            }
        }
    }

    /// Record a step that was skipped, and why.
    pub(crate) fn skip(&mut self, name: &str, why: &str) -> anyhow::Result<()> {
        self.journal.step_begin(name)?;
        self.journal.step_end(name, StepOutcome::Skipped, json!({ "why": why }))?;
        Ok(())
    }

    /// Write the final journal line, append the audit record when given, release the lock.
    pub(crate) async fn finish(
        self,
        outcome: RunOutcome,
        audit_record: Option<AuditInfo>,
    ) -> anyhow::Result<()> {
        let duration_ms = self.started.elapsed().as_millis() as u64;
        let Self { id, lock, journal, journal_dir, keys, .. } = self;
        journal.finish(outcome)?;
        if let Some(info) = audit_record {
            let record = audit::AuditRecord {
                ts: chrono::Utc::now(),
                run_id: id,
                kind: RunKind::Rollback,
                environment: info.environment,
                outcome,
                duration_ms,
                backup: info.backup,
                app_version_from: None,
                app_version_to: info.app_version_to,
                user: journal::current_user(),
                host: journal::host_name(),
            };
            if let Err(error) = audit::append(&audit::path(&journal_dir), &record, keys.as_ref()) {
                tracing::error!(error = %backup::error_chain(&error), "cannot append to the audit log");
            }
        }
        if let Err(error) = lock.release().await {
            tracing::warn!(error = %backup::error_chain(&error), "releasing the run lock failed; it is freed when the connection closes");
        }
        Ok(())
    }
}

/// What the audit log records about a finished restore.
pub(crate) struct AuditInfo {
    pub environment: String,
    pub backup: Option<String>,
    pub app_version_to: Option<String>,
}

/// One sentence about a run that died.
pub(crate) fn describe_dead(dead: &JournalState) -> String {
    let command = dead.meta.get("command").and_then(Value::as_str).unwrap_or(dead.kind.as_str());
    let step = match &dead.last_open_step {
        Some(step) => format!("in step `{step}`"),
        None => dead.steps.last().map_or_else(
            || "before its first step".to_owned(),
            |s| format!("after step `{}`", s.step),
        ),
    };
    format!(
        "an earlier {} run {} ({command}, started {}) did not finish: it stopped {step}, last seen {}",
        dead.kind,
        dead.run_id,
        dead.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
        dead.last_activity.format("%Y-%m-%d %H:%M:%S UTC"),
    )
}
