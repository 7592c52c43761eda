//! `deploy --dry-run` reads the live system and changes nothing.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

use crate::support::{all_output, logical_state, tree_digest, World};

/// Everything a deploy could change, as it is now.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    database: String,
    static_files: BTreeMap<String, String>,
    media: BTreeMap<String, String>,
    redis: BTreeMap<String, Option<Vec<u8>>>,
    backup_dir: BTreeMap<String, String>,
    current: PathBuf,
    maintenance_file: bool,
}

fn snapshot(w: &World) -> Snapshot {
    Snapshot {
        database: logical_state(&w.db),
        static_files: tree_digest(&w.static_root()),
        media: tree_digest(&w.media_root()),
        redis: w.redis_contents(),
        backup_dir: tree_digest(&w.backup_dir()),
        current: w.current_link(),
        maintenance_file: w.app.maintenance_file().exists(),
    }
}

#[test]
fn dry_run_changes_nothing_and_shows_the_plan() {
    let w = World::new("v1", &["v2"]);
    // Something in every place a deploy touches: static files, a media file, cache keys.
    let collected = w.manage(&["collectstatic", "--noinput"]);
    collected.assert_success();
    fs_err::write(w.media_root().join("upload.txt"), "a customer's file").expect("a media file");
    w.redis.cmd(&["SET", ":1:views.decorators.cache.x", "cached page"]);
    w.redis.cmd(&["HSET", "session:1", "user", "42"]);
    let before = snapshot(&w);
    assert!(!before.static_files.is_empty() && !before.redis.is_empty());

    let json_out = w.deploy(&["--version", "v2", "--dry-run", "--format", "json"]).run();
    let text_out = w.deploy(&["--version", "v2", "--dry-run"]).run();
    assert_eq!(snapshot(&w), before, "the dry runs changed something");
    json_out.assert_success();
    text_out.assert_success();
    assert!(text_out.stdout.contains("catalog.0002_product_stock"), "{}", text_out.describe());
    assert_eq!(w.served_release().as_deref(), Some("v1"));

    let plan = json_out.json();
    assert_eq!(plan["current_version"], "v1", "{plan:#}");
    assert_eq!(plan["target_version"], "v2", "{plan:#}");
    assert!(plan["lock_holder"].is_null(), "{plan:#}");
    assert!(plan["estimated_backup_bytes"].as_u64().is_some_and(|b| b > 0), "{plan:#}");
    assert!(plan["free_bytes"].as_u64().is_some_and(|b| b > 0), "{plan:#}");
    assert!(plan["rollback_target"].as_str().is_some_and(|t| !t.is_empty()), "{plan:#}");
    let steps = plan["steps"].as_array().expect("steps is a list");
    let names: Vec<&str> = steps.iter().filter_map(|s| s["step"].as_str()).collect();
    let expected: Vec<&str> = w.steps(false).iter().map(|s| s.name()).collect();
    assert_eq!(names, expected, "the plan lists the deploy's steps");
    let migrate = steps.iter().find(|s| s["step"] == "migrate").expect("a migrate step");
    let commands: Vec<&str> =
        migrate["commands"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    assert!(
        commands.iter().any(|c| c.contains("manage.py migrate")),
        "the migrate step shows its command: {migrate:#}"
    );
    assert_eq!(
        plan["pending_migrations"],
        serde_json::json!(["catalog.0002_product_stock"]),
        "pending migrations are a plain list in the JSON plan"
    );
    w.assert_no_secret(&all_output(&json_out), "the JSON plan");
    w.assert_no_secret(&all_output(&text_out), "the text plan");
}
