//! A rollback with the `releases` service backend of the local stack's config: the real demo app is
//! stopped, the backed-up state restored, and the app started again on the backed-up version.

use std::path::Path;

use rail_testkit::{
    bin, cmd, http_get, workspace_root, Output, TestApp, TestDb, TestDir, TestRedis,
};

#[test]
fn the_app_comes_back_on_the_backed_up_version() {
    let db = TestDb::new();
    let redis = TestRedis::new();
    let app = TestApp::start("v1", &db, &redis);
    let scratch = TestDir::new();
    let run = |args: &[&str]| -> Output {
        cmd(bin("rollback"))
            .arg("--config")
            .arg(workspace_root().join("deploy-configs/local.toml"))
            .envs(app.env_vars())
            .env("RAIL_STACK_DIR", scratch.path())
            .args(args)
            .run()
    };
    let media = app.root().join("shared/media");
    fs_err::write(media.join("upload.txt"), "kept").unwrap();

    run(&["backup", "--name", "b1"]).assert_success();
    let list = run(&["list", "--format", "json"]);
    assert_eq!(list.json()[0]["manifest"]["app_version"], "v1", "{}", list.stdout);

    // What a deploy of v2 leaves behind: the current release switched, the data changed.
    app.add_release("v2");
    let current = app.root().join("current");
    let next = app.root().join("current.next");
    fs_err::os::unix::fs::symlink(Path::new("releases").join("v2"), &next).unwrap();
    fs_err::rename(&next, &current).unwrap();
    db.execute("CREATE TABLE added_by_v2 (id int)");
    fs_err::remove_file(media.join("upload.txt")).unwrap();
    let pid_before = app.pid();

    let out = run(&["rollback", "b1", "--yes"]);
    out.assert_success();
    assert!(out.stdout.contains("app       v1"), "{}", out.describe());

    assert_eq!(fs_err::read_link(&current).unwrap(), Path::new("releases").join("v1"));
    let pid_after = app.pid();
    assert!(
        pid_after.is_some() && pid_after != pid_before,
        "the app was restarted: {pid_before:?} -> {pid_after:?}"
    );
    let health = http_get(&app.health_url()).unwrap();
    assert_eq!(health.status, 200, "{}", health.body);
    assert_eq!(db.query_one("SELECT to_regclass('added_by_v2')::text"), None);

    // A set whose app version the backend does not have is refused before anything stops.
    run(&["backup", "--name", "b2"]).assert_success();
    let dir = app.root().join("backups").join("b2");
    let mut manifest = rail_core::backup::Manifest::read(&dir, "b2", true).unwrap();
    manifest.app_version = Some("v9".into());
    fs_err::remove_file(dir.join(rail_core::backup::MANIFEST_FILE)).unwrap();
    manifest.write_signed(&dir, &crate::support::stack_keys()).unwrap();
    let pid_serving = app.pid();
    let out = run(&["rollback", "b2", "--yes"]);
    out.assert_code(3);
    assert!(
        out.stderr.contains("cannot be started") && out.stderr.contains("v9"),
        "{}",
        out.describe()
    );
    assert_eq!(app.pid(), pid_serving, "the app was never stopped");
    assert_eq!(http_get(&app.health_url()).unwrap().status, 200);
    assert_eq!(fs_err::read_to_string(media.join("upload.txt")).unwrap(), "kept");
    // The replaced database is the test's to drop.
    let kept = db.query_one(&format!(
        "SELECT string_agg(datname, ',') FROM pg_database WHERE datname LIKE '{}\\_\\_rail\\_pre\\_%'",
        db.name()
    ));
    for name in kept.unwrap_or_default().split(',').filter(|n| !n.is_empty()) {
        db.execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
    }
}
