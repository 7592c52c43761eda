//! list, prune, history, legacy dumps, and the older tools' rollback_config.json.

use std::os::unix::fs::MetadataExt;

use crate::support::Env;
use rail_testkit::{cmd, Stack};

#[test]
fn list_shows_sets_newest_first_with_details() {
    let env = Env::new();
    env.backup("first");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    env.rollback(&["backup"]).assert_success();
    let out = env.rollback(&["list", "--format", "json"]);
    out.assert_success();
    let sets = out.json();
    let names: Vec<_> =
        sets.as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_owned()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names[0].starts_with("backup_20"), "{names:?}");
    assert_eq!(names[1], "first");
    let manifest = &sets[1]["manifest"];
    let components: Vec<_> = manifest["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(components, ["database", "static", "media"]);
    assert_eq!(
        manifest["database"]["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == "events")
            .unwrap()["rows"],
        2000
    );

    let text = env.rollback(&["list", "--detailed"]);
    text.assert_success();
    assert!(text.stdout.contains("sha256"), "{}", text.stdout);
    let recent = env.rollback(&["list", "--recent", "1", "--format", "json"]);
    assert_eq!(recent.json().as_array().unwrap().len(), 2);

    // Files are private to the owner.
    for entry in fs_err::read_dir(env.set_dir("first")).unwrap() {
        assert_eq!(entry.unwrap().metadata().unwrap().mode() & 0o777, 0o600);
    }
    assert_eq!(fs_err::metadata(env.set_dir("first")).unwrap().mode() & 0o777, 0o700);
}

#[test]
fn prune_keeps_the_newest_verified_set() {
    let env = Env::with(&crate::support::Settings { backup: "keep_last = 1", sections: "" });
    for name in ["a", "b", "c"] {
        env.backup(name);
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    // The newest set is damaged: the newest verified one (b) is kept even beyond keep_last.
    let dump = env.set_dir("c").join("database.dump.zst");
    let mut bytes = fs_err::read(&dump).unwrap();
    bytes[100] ^= 1;
    fs_err::write(&dump, bytes).unwrap();
    let dry = env.rollback(&["prune", "--dry-run"]);
    dry.assert_success();
    assert!(
        dry.stdout.contains("would remove") && dry.stdout.contains("kept `b`"),
        "{}",
        dry.describe()
    );
    assert!(env.set_dir("a").exists(), "a dry run removes nothing");
    env.rollback(&["prune"]).assert_success();
    assert!(!env.set_dir("a").exists());
    assert!(env.set_dir("b").exists() && env.set_dir("c").exists());
}

#[test]
fn legacy_sql_dumps_are_listed_and_restorable() {
    let env = Env::new();
    let before = env.db_state();
    let dump = Stack::get().pg_bin("pg_dump");
    let out = cmd(dump).args(["--dbname", env.db.url()]).run();
    out.assert_success();
    fs_err::create_dir_all(env.backups()).unwrap();
    fs_err::write(env.backups().join("db_backup_20240115_143022.sql"), &out.stdout).unwrap();
    env.mutate();

    let list = env.rollback(&["list", "--format", "json"]);
    let sets = list.json();
    assert_eq!(sets[0]["name"], "db_backup_20240115_143022");
    assert_eq!(sets[0]["status"], "legacy");
    // A plain-SQL file carries no authentication: anyone who can write the directory could have put
    // it there, so it is trusted only when the operator says so.
    let out = env.rollback(&["verify", "db_backup_20240115_143022"]);
    out.assert_code(3);
    assert!(out.stdout.contains("authentication"), "{}", out.describe());
    let out =
        env.rollback(&["rollback", "db_backup_20240115_143022", "--yes", "--components", "db"]);
    out.assert_code(3);
    assert!(out.stderr.contains("--allow-legacy"), "{}", out.describe());
    assert_ne!(env.db_state().tables, before.tables, "nothing was restored");

    env.rollback(&["verify", "db_backup_20240115_143022", "--allow-legacy"]).assert_success();
    let out = env.rollback(&[
        "rollback",
        "db_backup_20240115_143022",
        "--yes",
        "--allow-legacy",
        // It is dated 2024: older than max_rollback_age_days.
        "--emergency",
        "--components",
        "db",
    ]);
    out.assert_success();
    assert_eq!(env.db_state().tables, before.tables);
}

#[test]
fn the_older_rollback_config_json_works() {
    let env = Env::new();
    let url = url::Url::parse(env.db.url()).unwrap();
    let config = serde_json::json!({
        "database": {
            "host": url.host_str().unwrap(),
            "port": url.port().unwrap(),
            "name": env.db.name(),
            "user": url.username(),
            "password": url.password().unwrap(),
        },
        "backup_directory": env.backups(),
        "max_rollback_age_days": 30,
        "safety_checks": {
            "require_confirmation": true,
            "check_active_connections": true,
            "verify_backup_integrity": true,
            "test_rollback": false,
            "pre_rollback_backup": true
        },
        "rollback_procedures": {
            "pre_rollback_backup": true,
            "service_stop_timeout": 30,
            "service_start_timeout": 60,
            "health_check_retries": 5,
            "health_check_interval": 10
        }
    });
    let path = env.dir.join("rollback_config.json");
    fs_err::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    let run = |args: &[&str]| {
        cmd(rail_testkit::bin("rollback")).arg("--config").arg(&path).args(args).run()
    };
    run(&["backup", "--name", "legacy-config"]).assert_success();
    let list = run(&["list"]);
    list.assert_success();
    assert!(list.stdout.contains("legacy-config"), "{}", list.describe());
    assert!(
        !list.stdout.contains(url.password().unwrap())
            && !list.stderr.contains(url.password().unwrap())
    );
    let out = run(&["rollback", "legacy-config"]);
    out.assert_code(3);
    assert!(out.stderr.contains("--yes"), "{}", out.describe());
    run(&["rollback", "legacy-config", "--yes"]).assert_success();
}

#[test]
fn prune_and_list_touch_only_what_rail_wrote() {
    let env = Env::new();
    env.backup("b1");
    // Another app's backups and a user's folder, beside rail's sets.
    let foreign = env.backups().join("other-app");
    fs_err::create_dir_all(foreign.join("2024")).unwrap();
    fs_err::write(foreign.join("2024/dump.sql"), b"precious").unwrap();
    let lookalike = env.backups().join("backup_20200101_000000");
    fs_err::create_dir_all(&lookalike).unwrap();
    fs_err::write(lookalike.join("notes.txt"), b"mine").unwrap();

    let list = env.rollback(&["list", "--format", "json"]).json();
    let status = |name: &str| {
        list.as_array().unwrap().iter().find(|e| e["name"] == name).map(|e| e["status"].clone())
    };
    assert_eq!(status("other-app"), Some("foreign".into()), "{list}");
    assert_eq!(status("backup_20200101_000000"), Some("foreign".into()), "{list}");
    assert_eq!(status("b1"), Some("complete".into()), "{list}");

    let out = env.rollback_with(
        &["prune"],
        &[("RAIL_BACKUP__KEEP_LAST", "1"), ("RAIL_BACKUP__MAX_AGE_DAYS", "1")],
    );
    out.assert_success();
    assert!(foreign.join("2024/dump.sql").is_file(), "{}", out.describe());
    assert!(lookalike.join("notes.txt").is_file(), "{}", out.describe());
    assert!(env.set_dir("b1").is_dir());
    let out = env.rollback(&["rollback", "other-app", "--yes"]);
    assert_ne!(out.code, Some(0));
    assert!(out.stderr.contains("no backup `other-app`"), "{}", out.describe());
    assert!(foreign.join("2024/dump.sql").is_file());

    // The root of the file system, or a directory of the app, is refused before anything is read.
    for dir in ["/", "/etc"] {
        let out = env.rollback_with(&["prune", "--dry-run"], &[("RAIL_BACKUP_DIR", dir)]);
        out.assert_code(2);
        assert!(out.stderr.contains("system directory"), "{}", out.describe());
        assert!(!out.stdout.contains("/etc") && !out.stdout.contains("root"), "{}", out.describe());
    }
    let inside = env.static_dir().join("backups");
    let out = env.rollback_with(&["list"], &[("RAIL_BACKUP_DIR", inside.to_str().unwrap())]);
    out.assert_code(2);
    assert!(out.stderr.contains("is inside app.static_dir"), "{}", out.describe());
}
