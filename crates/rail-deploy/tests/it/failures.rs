//! Deploys that fail: each ends with a clear message and the matching exit code, and leaves the
//! system as it was (nothing changed, or everything restored).

use rail_testkit::Output;

use crate::support::{all_output, closed_port, logical_state, World};

/// What must hold after a deploy that failed: the old version serves, healthy and open.
#[track_caller]
fn assert_untouched(w: &World, before: &str, out: &Output) {
    assert_eq!(logical_state(&w.db), before, "the database is unchanged\n{}", out.describe());
    assert_eq!(w.served_release().as_deref(), Some("v1"), "v1 still serves\n{}", out.describe());
    assert_eq!(w.health_status(), Some(200));
    assert_eq!(w.graphql_status(), Some(200), "the site is open");
    assert!(!w.app.maintenance_file().exists(), "no maintenance flag file");
    assert_eq!(w.maintenance_key(), None, "no maintenance key");
    let root = w.static_root();
    let leftovers: Vec<String> =
        fs_err::read_dir(root.parent().expect("the static root has a parent"))
            .expect("listing the static root's parent")
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .filter(|n| n.contains(".rail-next-") || n.contains(".rail-old-"))
            .collect();
    assert_eq!(
        leftovers,
        Vec::<String>::new(),
        "no staged static copy is left\n{}",
        out.describe()
    );
    // Last, so that a leak does not hide the other findings.
    w.assert_no_secret(&all_output(out), "deploy's output");
}

/// The backup sets in the world's backup directory.
fn backup_sets(w: &World) -> Vec<String> {
    fs_err::read_dir(w.backup_dir())
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("backup_"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn database_down_fails_at_once_naming_the_database() {
    let w = World::new("v1", &["v2"]);
    let before = logical_state(&w.db);
    let url = w.db.url().replacen(
        &format!(":{}/", url_port(w.db.url())),
        &format!(":{}/", closed_port()),
        1,
    );
    assert_ne!(url, w.db.url());
    let out = w.deploy(&["--version", "v2", "--yes"]).env("DATABASE_URL", &url).run();
    assert_eq!(out.code, Some(1), "{}", out.describe());
    assert!(
        out.stderr.to_lowercase().contains("database"),
        "names the database\n{}",
        out.describe()
    );
    assert_untouched(&w, &before, &out);
}

#[test]
fn redis_down_fails_in_the_pre_checks_naming_redis() {
    let w = World::new("v1", &["v2"]);
    let before = logical_state(&w.db);
    let url = format!("redis://127.0.0.1:{}/{}", closed_port(), w.redis.index());
    let out = w.deploy(&["--version", "v2", "--yes"]).env("REDIS_URL", &url).run();
    assert_eq!(out.code, Some(1), "{}", out.describe());
    assert!(out.stderr.contains("Redis"), "names Redis\n{}", out.describe());
    assert!(out.stdout.contains("nothing was changed"), "{}", out.describe());
    assert_untouched(&w, &before, &out);
}

#[test]
fn too_little_disk_for_the_backup_fails_before_anything_changes() {
    let w = World::new("v1", &["v2"]);
    let before = logical_state(&w.db);
    let out =
        w.deploy(&["--version", "v2", "--yes"]).env("RAIL_BACKUP__MIN_FREE_SPACE", "100TiB").run();
    assert_eq!(out.code, Some(1), "{}", out.describe());
    assert!(out.stderr.contains("not enough free space"), "{}", out.describe());
    assert!(out.stdout.contains("nothing was changed"), "{}", out.describe());
    assert_untouched(&w, &before, &out);
    assert_eq!(backup_sets(&w), Vec::<String>::new(), "no backup set was started");
}

/// v2's service never comes up (its start command fails; v1's starts gunicorn): the deploy rolls
/// back the migration and v1 serves again.
#[test]
fn a_service_that_never_starts_is_rolled_back() {
    let w = World::new("v1", &["v2"]);
    let before = logical_state(&w.db);
    let env: std::collections::BTreeMap<String, String> = w.deploy_env().into_iter().collect();
    let start = [
        "sh",
        "-c",
        r#"test "{version}" = v2 && exit 1; exec "$0" "$@""#,
        &env["RAIL_GUNICORN"],
        "demo.wsgi:application",
        "--chdir",
        "{current}",
        "--bind",
        &env["RAIL_APP_BIND"],
        "--workers",
        "2",
        "--pid",
        &env["RAIL_GUNICORN_PID"],
        "--daemon",
        "--error-logfile",
        &format!("{}/gunicorn.log", env["RAIL_APP_LOG_DIR"]),
        "--capture-output",
    ]
    .join(",");
    // Stop and start, so that the start command runs (a handover re-executes the running master).
    let out = w
        .deploy(&["--version", "v2", "--yes"])
        .env("RAIL_SERVICES__RELEASES__START", &start)
        .env("RAIL_SERVICES__RELEASES__HANDOVER", "stop-start")
        .run();
    assert_eq!(out.code, Some(4), "{}", out.describe());
    assert!(out.stdout.contains("rolled back"), "{}", out.describe());
    assert!(out.stdout.contains("failed in restart"), "names the failing step\n{}", out.describe());
    assert_untouched(&w, &before, &out);
}

/// The health check never passes (the health URL answers 404): the deploy fails in its
/// post-checks naming the check, and rolls back.
#[test]
fn a_health_check_that_never_passes_stops_the_deploy_before_any_change() {
    let w = World::new("v1", &["v2"]);
    let before = logical_state(&w.db);
    let out = w
        .deploy(&["--version", "v2", "--yes"])
        .env("RAIL_DEPLOY__HEALTH_CHECK_TIMEOUT", "3s")
        .env("RAIL_APP__HEALTH_URL", format!("{}/nope/", w.app.url()))
        .run();
    // Unhealthy before anything changes: refused in the pre-checks (a new version that never becomes
    // healthy while the old one was is rolled back: see `a_service_that_never_starts_is_rolled_back`).
    assert_eq!(out.code, Some(1), "{}", out.describe());
    assert!(out.stdout.contains("failed in pre-checks"), "{}", out.describe());
    assert!(out.stderr.contains("not healthy before the deploy"), "{}", out.describe());
    assert!(out.stderr.contains("application"), "names the failing check\n{}", out.describe());
    assert_untouched(&w, &before, &out);
}

/// The port of a `scheme://user:pw@host:port/db` URL.
fn url_port(url: &str) -> u16 {
    let authority = url.split_once('@').map_or(url, |(_, rest)| rest);
    let host_port = authority.split('/').next().unwrap_or_default();
    host_port.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).expect("a port in the URL")
}
