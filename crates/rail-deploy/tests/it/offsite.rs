//! The deploy's backup goes off-site after the maintenance window, and a remote that fails never fails
//! the deploy: it warns and notifies.

use rail_testkit::{ThrowawayS3, ACCESS_KEY_ID, SECRET_ACCESS_KEY};

use crate::support::{all_output, closed_port, WebhookReceiver, World};

const BUCKET: &str = "deploy-backups";

/// The variables that point the deploy at `endpoint`, encrypted to a new identity in the world's dir.
fn remote_env(w: &World, endpoint: &str) -> Vec<(String, String)> {
    let identity = w.dir.join("backup.age");
    if !identity.exists() {
        rail_core::remote::crypt::generate_identity(&identity, false).unwrap();
    }
    [
        ("RAIL_BACKUP__REMOTE__URL", format!("s3://{BUCKET}/app")),
        ("RAIL_BACKUP__REMOTE__ENDPOINT", endpoint.to_owned()),
        ("RAIL_BACKUP__REMOTE__ACCESS_KEY_ID", ACCESS_KEY_ID.to_owned()),
        ("RAIL_BACKUP__REMOTE__SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.to_owned()),
        ("RAIL_BACKUP__REMOTE__IDENTITY_FILE", identity.display().to_string()),
        ("RAIL_BACKUP__REMOTE__RETRIES", "1".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

#[test]
fn a_deploy_copies_its_backup_off_site_after_the_window() {
    let s3 = ThrowawayS3::start(BUCKET);
    let w = World::new("v1", &["v2"]);
    let vars = remote_env(&w, &s3.endpoint());
    let plan = w.deploy(&["--version", "v2", "--dry-run"]).envs(vars.clone()).run();
    plan.assert_success();
    assert!(plan.stdout.contains("off-site copy: s3://deploy-backups/app"), "{}", plan.describe());
    assert!(plan.stdout.contains("after the maintenance window"), "{}", plan.describe());

    let out = w.deploy(&["--version", "v2", "--yes"]).envs(vars).run();
    out.assert_success();
    let run_id = w.only_run_id();
    let journal = w.journal(&run_id);
    let backup = journal
        .events
        .iter()
        .find_map(|e| e["data"]["backup"].as_str().map(str::to_owned))
        .expect("the run took a backup");
    assert!(
        out.stderr.contains(&format!("off-site: {backup} uploaded to s3://{BUCKET}/app")),
        "{}",
        out.describe()
    );
    let keys = s3.keys(BUCKET, &format!("app/{backup}/"));
    assert!(keys.contains(&format!("app/{backup}/manifest.json")), "{keys:?}");
    let local = std::fs::read(w.backup_dir().join(&backup).join("manifest.json")).unwrap();
    assert_eq!(s3.get_object(BUCKET, &format!("app/{backup}/manifest.json")).unwrap(), local);
    let text = all_output(&out);
    w.assert_no_secret(&text, "the deploy's output");
    assert!(!text.contains(SECRET_ACCESS_KEY) && !text.contains(ACCESS_KEY_ID));
}

#[test]
fn an_unreachable_remote_warns_and_notifies_but_never_fails_the_deploy() {
    let w = World::new("v1", &["v2"]);
    let vars = remote_env(&w, &format!("http://127.0.0.1:{}", closed_port()));
    let plan = w.deploy(&["--version", "v2", "--dry-run"]).envs(vars.clone()).run();
    plan.assert_success();
    assert!(plan.stdout.contains("remote"), "{}", plan.describe());

    let hook = WebhookReceiver::start();
    let out = w
        .deploy(&["--version", "v2", "--yes"])
        .envs(vars)
        .env("RAIL_NOTIFICATIONS__WEBHOOK__ENABLED", "true")
        .env("RAIL_NOTIFICATIONS__WEBHOOK__URL", hook.url())
        .run();
    out.assert_success();
    assert_eq!(w.served_release().as_deref(), Some("v2"));
    assert!(out.stderr.contains("warning: the off-site copy of backup_"), "{}", out.describe());
    assert!(out.stderr.contains("rollback push"), "{}", out.describe());
    let bodies = hook.bodies();
    assert!(bodies.iter().any(|b| b.contains("upload_failed")), "{bodies:?}");
    assert!(bodies.iter().any(|b| b.contains("deploy_succeeded")), "{bodies:?}");
    for body in &bodies {
        w.assert_no_secret(body, "a notification");
        assert!(!body.contains(SECRET_ACCESS_KEY) && !body.contains(ACCESS_KEY_ID), "{body}");
    }
    let text = all_output(&out);
    w.assert_no_secret(&text, "the deploy's output");
    assert!(!text.contains(SECRET_ACCESS_KEY) && !text.contains(ACCESS_KEY_ID));
}
