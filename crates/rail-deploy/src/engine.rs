//! The pipeline engine: runs the steps in order, writes the journal before and after each one, and on a
//! failure after the backup undoes what the run changed.
//!
//! The engine knows nothing of PostgreSQL, gunicorn or Redis: the steps' work is done by an [`Actions`]
//! implementation (`actions.rs` for the real system). What the engine owns is the order, the journal,
//! the decision to roll back and the exit code, so the same rules hold for a fresh run and a resumed one.

use std::time::{Duration, Instant};

use rail_core::config::{BackupTiming, Config};
use rail_core::journal::{Journal, RunOutcome, StepOutcome};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One step of a deploy, in pipeline order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Configuration, database, Redis, disk space, backup directory, pending migrations, tests.
    PreChecks,
    MaintenanceOn,
    /// A verified backup set of the database, static and media files and the schema version.
    Backup,
    Migrate,
    #[serde(rename = "collectstatic")]
    CollectStatic,
    CacheClear,
    /// Switch to the new app version and restart the services.
    Restart,
    /// Health checks until healthy or `health_check_timeout`.
    PostChecks,
    MaintenanceOff,
    ActivateSchema,
    Notify,
}

/// The journal name of the rollback that undoes a failed run.
pub const ROLLBACK_STEP: &str = "rollback";

impl Step {
    pub const ALL: [Step; 11] = [
        Step::PreChecks,
        Step::MaintenanceOn,
        Step::Backup,
        Step::Migrate,
        Step::CollectStatic,
        Step::CacheClear,
        Step::Restart,
        Step::PostChecks,
        Step::MaintenanceOff,
        Step::ActivateSchema,
        Step::Notify,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Step::PreChecks => "pre-checks",
            Step::MaintenanceOn => "maintenance-on",
            Step::Backup => "backup",
            Step::Migrate => "migrate",
            Step::CollectStatic => "collectstatic",
            Step::CacheClear => "cache-clear",
            Step::Restart => "restart",
            Step::PostChecks => "post-checks",
            Step::MaintenanceOff => "maintenance-off",
            Step::ActivateSchema => "activate-schema",
            Step::Notify => "notify",
        }
    }

    pub fn from_name(name: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether a failure in or after this step changes something the backup must undo.
    fn needs_undo(self) -> bool {
        matches!(
            self,
            Step::Migrate
                | Step::CollectStatic
                | Step::CacheClear
                | Step::Restart
                | Step::PostChecks
        )
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The steps a deploy with this configuration runs, in order. The kill-matrix tests enumerate these,
/// so a new step is covered by them automatically.
pub fn steps(cfg: &Config, no_backup: bool) -> Vec<Step> {
    let d = &cfg.deploy;
    let backup = d.database_backup && !no_backup;
    let mut out = vec![Step::PreChecks];
    if backup && d.backup_timing == BackupTiming::BeforeMaintenance {
        out.push(Step::Backup);
    }
    if d.maintenance_mode {
        out.push(Step::MaintenanceOn);
    }
    if backup && d.backup_timing == BackupTiming::InsideMaintenance {
        out.push(Step::Backup);
    }
    out.push(Step::Migrate);
    if d.static_files {
        out.push(Step::CollectStatic);
    }
    if d.cache_clear {
        out.push(Step::CacheClear);
    }
    out.push(Step::Restart);
    out.push(Step::PostChecks);
    if d.maintenance_mode {
        out.push(Step::MaintenanceOff);
    }
    if d.activate_schema {
        out.push(Step::ActivateSchema);
    }
    out.push(Step::Notify);
    out
}

/// What earlier steps of the run found or made, carried to later steps, to the rollback and, through
/// the journal, to a resumed run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunState {
    /// App version running before the deploy.
    pub version_from: Option<String>,
    /// App version being deployed.
    pub version_to: Option<String>,
    /// Backup set taken by this run.
    pub backup: Option<String>,
    /// Schema version active before the deploy.
    pub schema_from: Option<String>,
    /// Schema version activated by the deploy.
    pub schema_to: Option<String>,
    /// Migrations the pre-checks found pending; `None` when not read (an older journal).
    pub pending_migrations: Option<Vec<String>>,
    /// The copy of the static directory the pre-checks collected into (staged strategy).
    pub staged_static: Option<std::path::PathBuf>,
    /// The strategy the pre-checks chose; `None` in an older journal (which means maintenance).
    pub strategy: Option<crate::online::Chosen>,
    /// For each app with a pending migration, its last applied one (`zero`): where reversing goes.
    pub applied_before: Option<std::collections::BTreeMap<String, String>>,
    /// Steps that began, in order (a step that began may have changed something even if it failed).
    pub began: Vec<Step>,
}

impl RunState {
    /// Whether this run deploys without a maintenance window.
    pub fn online(&self) -> bool {
        self.strategy == Some(crate::online::Chosen::Online)
    }
}

impl RunState {
    /// Merge what a step reported into the state.
    pub fn absorb(&mut self, data: &Value) {
        if let Ok(update) = serde_json::from_value::<StateUpdate>(data.clone()) {
            let StateUpdate {
                version_from,
                version_to,
                backup,
                schema_from,
                schema_to,
                pending_migrations,
                staged_static,
                strategy,
                applied_before,
            } = update;
            self.strategy = strategy.or(self.strategy.take());
            self.applied_before = applied_before.or(self.applied_before.take());
            self.version_from = version_from.or(self.version_from.take());
            self.version_to = version_to.or(self.version_to.take());
            self.backup = backup.or(self.backup.take());
            self.schema_from = schema_from.or(self.schema_from.take());
            self.schema_to = schema_to.or(self.schema_to.take());
            self.pending_migrations = pending_migrations.or(self.pending_migrations.take());
            self.staged_static = staged_static.or(self.staged_static.take());
        }
    }
}

/// The fields of a step's journal data that feed [`RunState`].
#[derive(Debug, Default, Deserialize)]
struct StateUpdate {
    version_from: Option<String>,
    version_to: Option<String>,
    backup: Option<String>,
    schema_from: Option<String>,
    schema_to: Option<String>,
    pending_migrations: Option<Vec<String>>,
    staged_static: Option<std::path::PathBuf>,
    strategy: Option<crate::online::Chosen>,
    applied_before: Option<std::collections::BTreeMap<String, String>>,
}

/// A step's failure, with the message to show.
#[derive(Debug)]
pub struct StepFailure {
    pub step: Step,
    pub error: anyhow::Error,
}

/// How a run ended; maps onto the exit codes of `rail_core::exit`.
#[derive(Debug)]
pub enum Ending {
    Success,
    /// Failed before anything needed undoing (maintenance, if it was turned on, is off again).
    FailedClean(StepFailure),
    /// Failed after a change and `--no-rollback` (or `rollback_on_failure = false`) kept it.
    FailedKept(StepFailure),
    RolledBack(StepFailure),
    RollbackFailed {
        failure: StepFailure,
        rollback_error: anyhow::Error,
    },
}

impl Ending {
    pub fn exit_code(&self) -> u8 {
        use rail_core::exit;
        match self {
            Ending::Success => exit::SUCCESS,
            Ending::FailedClean(_) | Ending::FailedKept(_) => exit::FAILED,
            Ending::RolledBack(_) => exit::ROLLED_BACK,
            Ending::RollbackFailed { .. } => exit::ROLLBACK_FAILED,
        }
    }

    pub fn outcome(&self) -> RunOutcome {
        match self {
            Ending::Success => RunOutcome::Success,
            Ending::FailedClean(_) | Ending::FailedKept(_) => RunOutcome::Failed,
            Ending::RolledBack(_) => RunOutcome::RolledBack,
            Ending::RollbackFailed { .. } => RunOutcome::RollbackFailed,
        }
    }
}

/// The work behind each step. Every method may be called again for the same run after a crash, so each
/// must be idempotent: running a step twice leaves the same state as running it once.
#[allow(async_fn_in_trait)] // Used with concrete types only; no Send bound is needed on one thread.
pub trait Actions {
    /// Do `step`; the returned JSON is journaled with the step's end and absorbed into the state.
    async fn run_step(&mut self, step: Step, state: &RunState) -> anyhow::Result<Value>;

    /// Undo the run: restore what the begun steps changed from the run's backup, restart the previous
    /// version, check health, end maintenance.
    async fn rollback(&mut self, state: &RunState) -> anyhow::Result<Value>;

    /// Turn maintenance off after a failure that needs no rollback. Must not fail the run.
    async fn end_maintenance(&mut self, state: &RunState);

    /// Tell the configured channels how the run ended. Must not fail the run.
    async fn notify(&mut self, state: &RunState, ending: &Ending, duration: Duration);

    /// Called at every step boundary; the fault-injection hook of disaster drills lives here.
    fn boundary(&mut self, _step: &str, _when: Boundary) {}
}

/// Where a boundary is relative to its step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boundary {
    Before,
    After,
}

impl Boundary {
    pub fn as_str(self) -> &'static str {
        match self {
            Boundary::Before => "before",
            Boundary::After => "after",
        }
    }
}

/// Observer of progress, for the live step lines a person sees.
pub trait Progress {
    fn step_started(&mut self, step: &str);
    fn step_finished(&mut self, step: &str, ok: bool, elapsed: Duration, detail: &str);
}

/// Run `steps[start..]`, journaling each, and handle a failure. `rollback_allowed` is false with
/// `--no-rollback`.
pub async fn run<A: Actions, P: Progress>(
    actions: &mut A,
    progress: &mut P,
    journal: &mut Journal,
    state: &mut RunState,
    steps: &[Step],
    rollback_allowed: bool,
    started: Instant,
) -> Ending {
    for &step in steps {
        if step == Step::Notify {
            // Notify reports the ending; it runs after the journal knows how the run went.
            continue;
        }
        if let Err(error) = run_one(actions, progress, journal, state, step).await {
            return fail(actions, progress, journal, state, step, error, rollback_allowed, started)
                .await;
        }
    }
    let ending = Ending::Success;
    actions.notify(state, &ending, started.elapsed()).await;
    ending
}

/// One step: its boundary hooks, its journal lines and its progress lines around the work itself.
async fn run_one<A: Actions, P: Progress>(
    actions: &mut A,
    progress: &mut P,
    journal: &mut Journal,
    state: &mut RunState,
    step: Step,
) -> anyhow::Result<()> {
    actions.boundary(step.name(), Boundary::Before);
    journal.step_begin(step.name())?;
    if !state.began.contains(&step) {
        state.began.push(step);
    }
    progress.step_started(step.name());
    let t0 = Instant::now();
    match actions.run_step(step, state).await {
        Ok(data) => {
            state.absorb(&data);
            let detail = data.get("summary").and_then(Value::as_str).unwrap_or("").to_owned();
            journal.step_end(step.name(), StepOutcome::Ok, data)?;
            progress.step_finished(step.name(), true, t0.elapsed(), &detail);
            actions.boundary(step.name(), Boundary::After);
            Ok(())
        }
        Err(error) => {
            progress.step_finished(step.name(), false, t0.elapsed(), &format!("{error:#}"));
            let data = serde_json::json!({ "error": format!("{error:#}") });
            // The journal line is best effort here: the failure itself is what must be reported.
            let _ = journal.step_end(step.name(), StepOutcome::Failed, data);
            Err(error)
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn fail<A: Actions, P: Progress>(
    actions: &mut A,
    progress: &mut P,
    journal: &mut Journal,
    state: &mut RunState,
    step: Step,
    error: anyhow::Error,
    rollback_allowed: bool,
    started: Instant,
) -> Ending {
    let failure = StepFailure { step, error };
    let changed = state.began.iter().any(|s| s.needs_undo());
    let ending = if !changed {
        actions.end_maintenance(state).await;
        Ending::FailedClean(failure)
    } else if !rollback_allowed {
        Ending::FailedKept(failure)
    } else if state.backup.is_none() && !state.online() {
        // Without a backup there is nothing to restore the database from: say so rather than guess.
        Ending::RollbackFailed {
            failure,
            rollback_error: anyhow::anyhow!(
                "the run took no backup (--no-backup or database_backup = false)"
            ),
        }
    } else {
        rollback(actions, progress, journal, state, failure).await
    };
    actions.notify(state, &ending, started.elapsed()).await;
    ending
}

/// Undo the run from its backup, journaled as the step [`ROLLBACK_STEP`].
pub async fn rollback<A: Actions, P: Progress>(
    actions: &mut A,
    progress: &mut P,
    journal: &mut Journal,
    state: &mut RunState,
    failure: StepFailure,
) -> Ending {
    actions.boundary(ROLLBACK_STEP, Boundary::Before);
    let _ = journal.step_begin(ROLLBACK_STEP);
    progress.step_started(ROLLBACK_STEP);
    let t0 = Instant::now();
    match actions.rollback(state).await {
        Ok(data) => {
            let _ = journal.step_end(ROLLBACK_STEP, StepOutcome::Ok, data);
            progress.step_finished(ROLLBACK_STEP, true, t0.elapsed(), "");
            actions.boundary(ROLLBACK_STEP, Boundary::After);
            Ending::RolledBack(failure)
        }
        Err(rollback_error) => {
            progress.step_finished(
                ROLLBACK_STEP,
                false,
                t0.elapsed(),
                &format!("{rollback_error:#}"),
            );
            let _ = journal.step_end(
                ROLLBACK_STEP,
                StepOutcome::Failed,
                serde_json::json!({ "error": format!("{rollback_error:#}") }),
            );
            Ending::RollbackFailed { failure, rollback_error }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_follow_the_configuration() {
        let mut cfg = Config::default();
        let names = |s: Vec<Step>| s.into_iter().map(Step::name).collect::<Vec<_>>().join(" ");
        assert_eq!(
            names(steps(&cfg, false)),
            "pre-checks maintenance-on backup migrate collectstatic cache-clear restart post-checks maintenance-off notify"
        );
        cfg.deploy.backup_timing = BackupTiming::BeforeMaintenance;
        cfg.deploy.activate_schema = true;
        assert_eq!(
            names(steps(&cfg, false)),
            "pre-checks backup maintenance-on migrate collectstatic cache-clear restart post-checks maintenance-off activate-schema notify"
        );
        cfg.deploy.maintenance_mode = false;
        cfg.deploy.static_files = false;
        cfg.deploy.cache_clear = false;
        assert_eq!(
            names(steps(&cfg, true)),
            "pre-checks migrate restart post-checks activate-schema notify"
        );
    }

    #[test]
    fn step_names_round_trip() {
        for step in Step::ALL {
            assert_eq!(Step::from_name(step.name()), Some(step));
            assert_eq!(serde_json::to_value(step).unwrap(), Value::String(step.name().into()));
        }
        assert_eq!(Step::from_name("rollback"), None);
    }

    #[test]
    fn state_absorbs_step_data() {
        let mut state = RunState::default();
        state.absorb(&serde_json::json!({"version_from": "v1", "summary": "x"}));
        state.absorb(&serde_json::json!({"backup": "backup_20260101_000000"}));
        state.absorb(&serde_json::json!({"unrelated": 3}));
        assert_eq!(state.version_from.as_deref(), Some("v1"));
        assert_eq!(state.backup.as_deref(), Some("backup_20260101_000000"));
    }
}
