//! Disaster drills: `kill -9` of a deploy at every step boundary (and inside the migration and the
//! rollback). The next plain deploy must refuse and name the dead run; `deploy --resume` must then
//! leave the database exactly in the pre-deploy or the post-deploy state, the site up and out of
//! maintenance, and no lock behind.
//!
//! The boundaries come from `rail_deploy::engine::steps`, so a new step is drilled without touching
//! this file. The online deploy's `after` boundaries of the steps it shares with every deploy run under
//! `cargo xtask test --full` only. Each drill is a whole deploy: they are split over four tests that together run all of
//! them, so that a parallel runner shares them out.

use std::panic::AssertUnwindSafe;

use rail_deploy::engine::Step;
use rail_deploy::ENV_FAULT;

use crate::support::{all_output, comparable_state, migrated_state, state_diff, World};

/// Which deploy the drills kill: v1 → v2 takes the maintenance window (v2's NOT NULL column), v2 → v4
/// is online (a nullable column, the socket handed over).
#[derive(Debug, Clone, Copy)]
struct Scenario {
    from: &'static str,
    to: &'static str,
    /// Installed beside `from`.
    others: &'static [&'static str],
}

const MAINTENANCE: Scenario = Scenario { from: "v1", to: "v2", others: &["v2", "v3-broken"] };
const ONLINE: Scenario = Scenario { from: "v2", to: "v4", others: &["v4"] };

/// One drill: the fault to inject and the version the killed deploy was deploying.
#[derive(Debug)]
struct Drill {
    fault: String,
    version: &'static str,
}

impl Drill {
    fn new(fault: String, scenario: Scenario) -> Self {
        Drill { fault, version: scenario.to }
    }

    /// A drill that dies while rolling back a failed deploy, so resuming finishes the rollback.
    fn rolls_back(&self) -> bool {
        self.fault.starts_with("kill:rollback:")
    }
}

/// Every drill: each step boundary the engine has, before and after (notify runs after the
/// journal's last step and has none), plus inside the migration and inside the rollback of v3-broken.
fn all_drills(steps: &[Step], scenario: Scenario) -> Vec<Drill> {
    let mut drills = Vec::new();
    for step in steps.iter().filter(|s| **s != Step::Notify) {
        for when in ["before", "after"] {
            drills.push(Drill::new(format!("kill:{}:{when}", step.name()), scenario));
        }
    }
    drills.push(Drill::new("kill:migrate:during".into(), scenario));
    if scenario.to == "v2" {
        drills.push(Drill { fault: "kill:rollback:during".into(), version: "v3-broken" });
    }
    drills
}

/// The maintenance deploy's whole matrix always runs. The online deploy's runs whole with
/// `RAIL_TEST_FULL=1` (`cargo xtask test --full`); by default, every step's `before` boundary, and both
/// sides of the steps where the online deploy differs (the migration under `lock_timeout`, the
/// socket handover), plus inside the migration.
fn drilled_by_default(drill: &Drill, scenario: Scenario) -> bool {
    let full = std::env::var_os("RAIL_TEST_FULL").is_some_and(|v| v == "1");
    full || scenario.to == MAINTENANCE.to
        || !drill.fault.ends_with(":after")
        || ["kill:migrate:after", "kill:restart:after"].contains(&drill.fault.as_str())
}

/// How many tests share the drills out, so that a parallel runner spreads them.
const PARTS: usize = 4;

/// Run every `PARTS`-th drill, starting at `part`.
fn run_part(part: usize, scenario: Scenario) {
    let first = drill_world(scenario);
    // The steps, from the engine, as a deploy in the tests' configuration runs them.
    let steps = first.steps(false);
    assert!(steps.contains(&Step::Migrate) && steps.contains(&Step::Restart), "{steps:?}");
    let drills: Vec<Drill> = all_drills(&steps, scenario)
        .into_iter()
        .filter(|d| drilled_by_default(d, scenario))
        .skip(part)
        .step_by(PARTS)
        .collect();
    let post = migrated_state(scenario.to);
    run_drills(&drills, first, &post, scenario);
}

/// A world for one drill: `from` running, the others installed.
fn drill_world(scenario: Scenario) -> World {
    World::new(scenario.from, scenario.others)
}

/// Run every drill, even after one failed, and fail with the list of those that did.
fn run_drills(drills: &[Drill], first: World, post: &str, scenario: Scenario) {
    assert!(!drills.is_empty());
    let mut failed = Vec::new();
    let mut cleanups = Vec::new();
    let mut first = Some(first);
    for drill in drills {
        let w = first.take().unwrap_or_else(|| drill_world(scenario));
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            run_drill(drill, &w, post, scenario);
        }));
        if result.is_err() {
            failed.push(drill.fault.as_str());
        }
        // Stopping gunicorn and dropping the database is mostly waiting: overlap it with the next drill.
        cleanups.push(std::thread::spawn(move || drop(w)));
    }
    for cleanup in cleanups {
        let _ = cleanup.join();
    }
    assert!(failed.is_empty(), "failed drills (see the panics above): {}", failed.join(", "));
}

fn run_drill(drill: &Drill, w: &World, post: &str, scenario: Scenario) {
    let f = &drill.fault;
    let (from, to) = (scenario.from, scenario.to);
    let pre = comparable_state(&w.db);

    let killed = w.deploy(&["--version", drill.version, "--yes"]).env(ENV_FAULT, f).run();
    assert_eq!(killed.signal, Some(9), "{f}: the deploy was not killed\n{}", killed.describe());
    let run_id = w.only_run_id();
    assert_eq!(w.journal(&run_id).finish_outcome(), None, "{f}: the killed run's journal is open");
    // What a killed run leaves under the backup directory (its journal, the `.children` of the
    // programs it ran, a partial set) is private like everything else there.
    assert_private(&w.backup_dir(), f);

    // A plain deploy must not start over the dead run's half-done work.
    let refused = w.deploy(&["--version", to, "--yes"]).run();
    assert_eq!(refused.code, Some(3), "{f}: a deploy after the kill\n{}", refused.describe());
    let text = all_output(&refused);
    assert!(text.contains(&run_id), "{f}: the refusal names the dead run {run_id}\n{text}");
    assert!(text.contains("--resume"), "{f}: the refusal says `deploy --resume`\n{text}");
    // A run that died before its migration changed no data: it must not send anyone restoring a set.
    let early = ["pre-checks", "maintenance-on", "backup"]
        .iter()
        .any(|s| f.starts_with(&format!("kill:{s}:")));
    if early {
        assert!(
            text.contains("nothing needs restoring") && !text.contains("restore its backup"),
            "{f}: the advice for a run that changed no data\n{text}"
        );
    }
    assert_eq!(w.run_ids().len(), 1, "{f}: the refused deploy started no run");

    let resumed = w.deploy(&["--resume", "--yes"]).run();
    let expected = if drill.rolls_back() { 4 } else { 0 };
    assert_eq!(resumed.code, Some(expected), "{f}: deploy --resume\n{}", resumed.describe());
    let outcome = w.journal(&run_id).finish_outcome();
    let expected_outcome = if drill.rolls_back() { "rolled_back" } else { "success" };
    assert_eq!(
        outcome.as_deref(),
        Some(expected_outcome),
        "{f}: the dead run's journal is finished"
    );

    // Exactly the pre-deploy or the post-deploy state, and the app serving the matching version.
    let state = comparable_state(&w.db);
    let served = w.served_release();
    match (state_diff(&state, &pre), state_diff(&state, post)) {
        (None, _) => assert_eq!(served.as_deref(), Some(from), "{f}: pre-deploy database"),
        (_, None) => assert_eq!(served.as_deref(), Some(to), "{f}: post-deploy database"),
        (Some(to_pre), Some(to_post)) => panic!(
            "{f}: the database is neither the pre- nor the post-deploy state\nvs pre: {to_pre}\nvs post: {to_post}"
        ),
    }
    if drill.rolls_back() {
        assert_eq!(served.as_deref(), Some(from), "{f}: a finished rollback serves {from}");
    } else {
        assert_eq!(served.as_deref(), Some(to), "{f}: a finished deploy serves {to}");
    }
    // Whatever the kill interrupted, one gunicorn master serves in the end, named by the pid file.
    let pid_file = w.app.pid_file();
    for leftover in [".2", ".oldbin"] {
        let path = std::path::PathBuf::from(format!("{}{leftover}", pid_file.display()));
        let live = fs_err::read_to_string(&path)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
            .is_some_and(crate::support::alive);
        assert!(!live, "{f}: a second master is left running ({})", path.display());
    }
    assert_eq!(w.health_status(), Some(200), "{f}: /health/");
    assert!(!w.app.maintenance_file().exists(), "{f}: the maintenance flag file is gone");
    assert_eq!(w.maintenance_key(), None, "{f}: the maintenance key is gone");

    let status = w.deploy_sub(&["status", "--format", "json"]).run();
    status.assert_success();
    let status = status.json();
    assert!(status["lock_holder"].is_null(), "{f}: no lock is held: {status:#}");
    assert!(status["interrupted"].is_null(), "{f}: no interrupted run is left: {status:#}");

    for out in [&killed, &refused, &resumed] {
        w.assert_no_secret(&all_output(out), &format!("{f}: deploy's output"));
    }
}

#[test]
fn kill_drills_part_1_of_4() {
    run_part(0, MAINTENANCE);
}

#[test]
fn kill_drills_part_2_of_4() {
    run_part(1, MAINTENANCE);
}

#[test]
fn kill_drills_part_3_of_4() {
    run_part(2, MAINTENANCE);
}

#[test]
fn kill_drills_part_4_of_4() {
    run_part(3, MAINTENANCE);
}

#[test]
fn online_kill_drills_part_1_of_4() {
    run_part(0, ONLINE);
}

#[test]
fn online_kill_drills_part_2_of_4() {
    run_part(1, ONLINE);
}

#[test]
fn online_kill_drills_part_3_of_4() {
    run_part(2, ONLINE);
}

#[test]
fn online_kill_drills_part_4_of_4() {
    run_part(3, ONLINE);
}

/// Every file under `dir` is readable by its owner only.
fn assert_private(dir: &std::path::Path, f: &str) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(entries) = fs_err::read_dir(dir) else { return };
    for entry in entries {
        let path = entry.unwrap().path();
        let meta = fs_err::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            assert_private(&path, f);
        } else if meta.is_file() {
            let mode = meta.permissions().mode() & 0o777;
            assert_eq!(mode & 0o077, 0, "{f}: {} has mode {mode:o}", path.display());
        }
    }
}
