//! The work a deploy takes out of the maintenance window: static files collected before it and swapped
//! in inside it, and no `migrate` when nothing is pending.

use std::path::{Path, PathBuf};

use rail_deploy::ENV_FAULT;
use serde_json::Value;

use crate::support::{all_output, World};

const V2_CSS_LINE: &str = "release v2";

fn demo_css(static_root: &Path) -> String {
    fs_err::read_to_string(static_root.join("catalog/demo.css")).unwrap_or_default()
}

/// The `next` and `old` siblings a staged deploy makes beside the static directory.
fn staging_dirs(w: &World) -> Vec<PathBuf> {
    let root = w.static_root();
    let parent = root.parent().expect("the static root has a parent");
    let mut out: Vec<PathBuf> = fs_err::read_dir(parent)
        .expect("listing the static root's parent")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with("static.rail-next-") || name.starts_with("static.rail-old-")
        })
        .collect();
    out.sort();
    out
}

/// The data of `step`'s last `step_end` line in a run's journal.
fn step_data(w: &World, run_id: &str, step: &str) -> Value {
    w.journal(run_id)
        .events
        .iter()
        .rev()
        .find(|e| e["event"] == "step_end" && e["step"] == step)
        .map_or_else(
            || panic!("no end of {step} in the journal of {run_id}"),
            |e| e["data"].clone(),
        )
}

#[test]
fn static_files_are_collected_before_the_window_and_swapped_in_inside_it() {
    let w = World::new("v1", &["v2"]);
    w.manage(&["collectstatic", "--noinput"]).assert_success();
    let before = demo_css(&w.static_root());
    assert!(before.contains("release v1"), "v1's stylesheet is live: {before}");

    // Stopped just before maintenance goes on: the pre-checks are over, nothing has changed yet.
    let killed =
        w.deploy(&["--version", "v2", "--yes"]).env(ENV_FAULT, "kill:maintenance-on:before").run();
    assert_eq!(killed.signal, Some(9), "{}", killed.describe());
    let run_id = w.only_run_id();
    assert_eq!(demo_css(&w.static_root()), before, "the live static files are untouched");
    assert_eq!(w.served_release().as_deref(), Some("v1"));
    let staged = w.static_root().with_file_name(format!("static.rail-next-{run_id}"));
    assert!(
        demo_css(&staged).contains(V2_CSS_LINE),
        "v2's stylesheet is collected beside the live one"
    );
    let pre = step_data(&w, &run_id, "pre-checks");
    assert_eq!(pre["staged_static"].as_str(), Some(staged.to_str().unwrap()), "{pre}");

    let resumed = w.deploy(&["--resume", "--yes"]).run();
    resumed.assert_success();
    assert!(demo_css(&w.static_root()).contains(V2_CSS_LINE), "v2's stylesheet is live");
    assert_eq!(step_data(&w, &run_id, "collectstatic")["staged"], Value::Bool(true));
    assert_eq!(staging_dirs(&w), Vec::<PathBuf>::new(), "nothing is left beside the static root");
    assert_eq!(w.served_release().as_deref(), Some("v2"));
    assert_eq!(w.health_status(), Some(200));
}

#[test]
fn settings_that_ignore_static_root_get_their_files_collected_in_place() {
    let w = World::new("v1", &["v2"]);
    w.manage(&["collectstatic", "--noinput"]).assert_success();
    // A collectstatic that always writes to the live directory, as settings with a fixed STATIC_ROOT do.
    let live = w.static_root();
    let local = fs_err::read_to_string(World::config()).expect("reading local.toml");
    let config = w.dir.write(
        "fixed-static-root.toml",
        local.replace(
            "[deploy]\n",
            &format!(
                "[deploy]\ncollectstatic_command = [\"env\", \"STATIC_ROOT={}\", \"{{python}}\", \"manage.py\", \"collectstatic\", \"--noinput\"]\n",
                live.display()
            ),
        ),
    );

    let out = w.deploy_with_config(&config, &["--version", "v2", "--yes"]).run();
    out.assert_success();
    let text = all_output(&out);
    assert!(
        text.contains("do not take STATIC_ROOT from the environment")
            && text.contains("static_strategy = \"in-place\""),
        "the deploy says why it collected in place and what to set\n{text}"
    );
    let run_id = w.only_run_id();
    assert!(step_data(&w, &run_id, "pre-checks")["staged_static"].is_null());
    assert!(step_data(&w, &run_id, "collectstatic")["staged"].is_null());
    assert!(demo_css(&live).contains(V2_CSS_LINE), "v2's stylesheet is live");
    assert_eq!(staging_dirs(&w), Vec::<PathBuf>::new());
    assert_eq!(w.served_release().as_deref(), Some("v2"));
}

#[test]
fn migrate_is_skipped_when_nothing_is_pending_unless_configured() {
    let w = World::new("v1", &[]);
    w.deploy(&["--version", "v1", "--yes"]).run().assert_success();
    let first = w.only_run_id();
    let pre = step_data(&w, &first, "pre-checks");
    assert_eq!(pre["pending_migrations"], serde_json::json!([]), "{pre}");
    let migrate = step_data(&w, &first, "migrate");
    assert_eq!(migrate["skipped"], Value::Bool(true), "{migrate}");

    let out = w
        .deploy(&["--version", "v1", "--yes"])
        .env("RAIL_DEPLOY__MIGRATE_WHEN_NONE_PENDING", "true")
        .run();
    out.assert_success();
    let second = w.run_ids().into_iter().find(|id| *id != first).expect("a second run");
    let migrate = step_data(&w, &second, "migrate");
    assert!(migrate["skipped"].is_null(), "migrate ran: {migrate}");
    assert_eq!(migrate["applied"], 0, "{migrate}");
    assert_eq!(w.health_status(), Some(200));
}
