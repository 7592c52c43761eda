//! The operator's commands: `deploy maintenance on|status|off`, `deploy history`, `deploy status`.

use crate::support::World;

#[test]
fn maintenance_on_status_off_round_trip() {
    let w = World::new("v1", &[]);
    assert_eq!(w.graphql_status(), Some(200));

    let on = w
        .deploy_sub(&["maintenance", "on", "--reason", "database upgrade", "--format", "json"])
        .run();
    on.assert_success();
    let on_json = on.json();
    let run_id = on_json["run_id"].as_str().expect("maintenance on names its run id").to_owned();
    let query = serde_json::json!({ "query": "{ __typename }" });
    let closed =
        rail_testkit::http_post_json(&w.app.graphql_url(), &query).expect("the app answers");
    assert_eq!(closed.status, 503, "{}", closed.body);
    let retry = closed.header("retry-after").expect("a Retry-After header");
    assert!(retry.parse::<u64>().is_ok_and(|s| s > 0), "Retry-After: {retry}");
    assert!(w.app.maintenance_file().exists());
    assert!(w.maintenance_key().is_some());
    assert_eq!(w.health_status(), Some(200), "/health/ answers through maintenance");

    let status = w.deploy_sub(&["maintenance", "status"]).run();
    status.assert_success();
    for needle in ["maintenance on", "database upgrade", run_id.as_str()] {
        assert!(status.stdout.contains(needle), "status shows {needle}\n{}", status.describe());
    }

    let off = w.deploy_sub(&["maintenance", "off"]).run();
    off.assert_success();
    assert_eq!(w.graphql_status(), Some(200));
    assert!(!w.app.maintenance_file().exists());
    assert_eq!(w.maintenance_key(), None);
    let status = w.deploy_sub(&["maintenance", "status"]).run();
    status.assert_success();
    assert!(status.stdout.contains("maintenance off"), "{}", status.describe());
}

#[test]
fn history_and_status_show_finished_runs_and_a_free_lock() {
    let w = World::new("v1", &["v2"]);
    let history = w.deploy_sub(&["history"]).run();
    history.assert_success();
    assert!(history.stdout.contains("no finished runs"), "{}", history.describe());

    // A deploy that fails in its pre-checks is a finished run too, and a quick one.
    let out =
        w.deploy(&["--version", "v2", "--yes"]).env("RAIL_BACKUP__MIN_FREE_SPACE", "100TiB").run();
    assert_eq!(out.code, Some(1), "{}", out.describe());
    let run_id = w.only_run_id();

    let history = w.deploy_sub(&["history"]).run();
    history.assert_success();
    let line = history.stdout.lines().find(|l| l.contains(&run_id));
    let line = line.unwrap_or_else(|| panic!("history lists {run_id}\n{}", history.describe()));
    assert!(line.contains("failed") && line.contains("v2"), "{line}");
    let history = w.deploy_sub(&["history", "--format", "json"]).run();
    history.assert_success();
    let entries = history.json();
    let entries = entries.as_array().expect("a JSON list");
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(entries[0].to_string().contains(&run_id), "{entries:?}");

    let status = w.deploy_sub(&["status"]).run();
    status.assert_success();
    assert!(status.stdout.contains("lock: free"), "{}", status.describe());
    assert!(status.stdout.contains("interrupted run: none"), "{}", status.describe());
    let last = status.stdout.lines().find(|l| l.starts_with("last run"));
    assert!(last.is_some_and(|l| l.contains(&run_id)), "{}", status.describe());
}

/// The shared options (`--config`, `--format`, `-v`) work before a subcommand as they do before a
/// deploy: `deploy --config FILE status`.
#[test]
fn shared_options_work_before_a_subcommand() {
    let w = World::new("v1", &[]);
    for args in
        [&["status"][..], &["--format", "json", "history"], &["-v", "maintenance", "status"]]
    {
        let out = w.deploy(args).run();
        assert_eq!(
            out.code,
            Some(0),
            "deploy --config FILE {}\n{}",
            args.join(" "),
            out.describe()
        );
    }
}
