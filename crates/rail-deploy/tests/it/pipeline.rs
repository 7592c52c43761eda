//! Whole deploys: v1 → v2 succeeds with a real maintenance window, v3-broken rolls back by itself
//! and says so to a webhook.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::support::{
    all_output, assert_same_state, comparable_state, logical_state, migrated_state, tree_digest,
    wait_for, WebhookReceiver, World,
};

/// One request of the maintenance probe: when it was sent, when its answer came, and the status
/// (`None`: no answer at all, e.g. while gunicorn restarts).
#[derive(Debug, Clone, Copy)]
struct Probe {
    sent: DateTime<Utc>,
    answered: DateTime<Utc>,
    status: Option<u16>,
}

/// v1 → v2: the column and the GraphQL field arrive, and the database ends exactly as v2's
/// migrations alone make it. The site answers 503 exactly while the deploy is inside its
/// maintenance window: never before the maintenance-on step began, never after the maintenance-off
/// step ended, and it really does answer 503 in between. Ordering of real timestamps only, no
/// durations.
#[test]
fn deploy_v1_to_v2_adds_the_field_closing_the_site_only_inside_its_maintenance_window() {
    let w = World::new("v1", &["v2"]);
    assert_eq!(w.served_release().as_deref(), Some("v1"));
    assert!(!w.graphql_fields("ProductType").iter().any(|f| f == "stock"));
    let url = w.app.graphql_url();
    let stop = Arc::new(AtomicBool::new(false));
    let probes: Arc<Mutex<Vec<Probe>>> = Arc::default();
    let poller = {
        let (stop, probes) = (Arc::clone(&stop), Arc::clone(&probes));
        std::thread::spawn(move || {
            let query = serde_json::json!({ "query": "{ __typename }" });
            while !stop.load(Ordering::SeqCst) {
                let sent = Utc::now();
                let status = rail_testkit::http_post_json(&url, &query).ok().map(|r| r.status);
                probes.lock().expect("probes").push(Probe { sent, answered: Utc::now(), status });
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let answered_since = |t: DateTime<Utc>| {
        probes
            .lock()
            .expect("probes")
            .iter()
            .filter(|p| p.sent > t && p.status == Some(200))
            .count()
    };
    // Answers from before the deploy, so that the window's start is observed...
    let t0 = Utc::now();
    wait_for("answers before the deploy", Duration::from_secs(120), || answered_since(t0) >= 3);
    let out = w.deploy(&["--version", "v2", "--yes"]).run();
    // ...and from after it, so that its end is observed too.
    let t1 = Utc::now();
    if out.success() {
        wait_for("answers after the deploy", Duration::from_secs(120), || answered_since(t1) >= 3);
    }
    stop.store(true, Ordering::SeqCst);
    poller.join().expect("the probe thread");
    let probes = probes.lock().expect("probes").clone();
    out.assert_success();
    assert!(out.stdout.contains("deployed"), "{}", out.describe());
    assert!(w.has_stock_column());
    assert_eq!(w.served_release().as_deref(), Some("v2"));
    assert!(w.graphql_fields("ProductType").iter().any(|f| f == "stock"));
    // The disaster drills use this as their post-deploy reference.
    assert_same_state(&comparable_state(&w.db), &migrated_state("v2"), "after a clean deploy");

    let journal = w.journal(&w.only_run_id());
    let on = journal.ts("step_begin", Some("maintenance-on")).expect("maintenance-on began");
    let off = journal.ts("step_end", Some("maintenance-off")).expect("maintenance-off ended");
    assert!(on < off, "maintenance-on {on} is before maintenance-off {off}");
    // The window holds only what must happen inside it: static files were collected by the
    // pre-checks, before it, and the collectstatic step inside it only swapped them in.
    let end_of = |step: &str| journal.end_data(step);
    assert!(end_of("pre-checks")["staged_static"].is_string(), "{}", end_of("pre-checks"));
    assert_eq!(end_of("collectstatic")["staged"], serde_json::Value::Bool(true));
    assert!(
        journal.ts("step_end", Some("pre-checks")).expect("pre-checks ended") <= on,
        "the pre-checks ended before maintenance began"
    );

    let show = |p: &Probe| format!("{:?} sent {} answered {}", p.status, p.sent, p.answered);
    let closed: Vec<&Probe> = probes.iter().filter(|p| p.status == Some(503)).collect();
    assert!(!closed.is_empty(), "no 503 during the deploy: the maintenance window is not real");
    for p in &probes {
        if p.status == Some(200) {
            continue;
        }
        // The answer was decided somewhere between sending and receiving it: that interval must
        // overlap the window [maintenance-on begin, maintenance-off end].
        assert!(
            p.answered >= on && p.sent <= off,
            "{} outside the maintenance window [{on}, {off}]",
            show(p)
        );
    }
    assert!(
        probes.iter().any(|p| p.answered < on && p.status == Some(200)),
        "the site answered 200 before maintenance"
    );
    assert!(
        probes.iter().any(|p| p.sent > off && p.status == Some(200)),
        "the site answered 200 after maintenance"
    );
    assert!(!w.app.maintenance_file().exists());
    assert_eq!(w.maintenance_key(), None);
    w.assert_no_secret(&all_output(&out), "deploy's output");
}

/// v3-broken's migration fails half-way: the deploy restores the database and static files of the
/// v2 it started from, serves v2 again, exits 4 and tells the webhook, without leaking a secret.
#[test]
fn deploy_v3_broken_fails_in_its_migration_and_rolls_back_to_v2() {
    let w = World::new("v1", &["v2", "v3-broken"]);
    // A deploy of v2 first, so that collectstatic has filled STATIC_ROOT.
    w.deploy(&["--version", "v2", "--yes"]).run().assert_success();
    assert_eq!(w.served_release().as_deref(), Some("v2"));
    w.db.execute("UPDATE catalog_product SET stock = 7 WHERE id % 3 = 0");
    let before = logical_state(&w.db);
    let static_before = tree_digest(&w.static_root());
    assert!(!static_before.is_empty(), "collectstatic filled {}", w.static_root().display());
    let hook = WebhookReceiver::start();

    let out = w
        .deploy(&["--version", "v3-broken", "--yes"])
        .env("RAIL_NOTIFICATIONS__WEBHOOK__ENABLED", "true")
        .env("RAIL_NOTIFICATIONS__WEBHOOK__URL", hook.url())
        .run();
    out.assert_code(4);
    assert!(out.stdout.contains("rolled back"), "{}", out.describe());
    assert!(all_output(&out).contains("migrate"), "{}", out.describe());

    assert_same_state(&logical_state(&w.db), &before, "the database after the rollback");
    let review = w.db.query_one("SELECT to_regclass('public.catalog_review')::text");
    assert_eq!(review, None, "the half-created table is gone");
    assert_eq!(tree_digest(&w.static_root()), static_before, "static files after the rollback");
    assert_eq!(w.served_release().as_deref(), Some("v2"));
    assert_eq!(w.health_status(), Some(200));
    assert!(!w.app.maintenance_file().exists());
    assert_eq!(w.maintenance_key(), None);

    let run_id = w.run_ids().pop().expect("the v3-broken run's journal");
    assert_eq!(w.journal(&run_id).finish_outcome().as_deref(), Some("rolled_back"));
    let bodies = hook.bodies();
    assert_eq!(bodies.len(), 1, "one notification: {bodies:?}");
    for body in &bodies {
        w.assert_no_secret(body, "the webhook body");
    }
    let note: serde_json::Value =
        serde_json::from_str(&bodies[0]).expect("the webhook body is JSON");
    assert_eq!(note["outcome"], "rolled_back", "{note:#}");
    assert_eq!(note["run_id"], run_id.as_str(), "{note:#}");
    assert_eq!(note["app_version_from"], "v2", "{note:#}");
    assert_eq!(note["app_version_to"], "v3-broken", "{note:#}");
    w.assert_no_secret(&all_output(&out), "deploy's output");

    // The newest set is the one v3-broken's deploy took, of v2, which runs: `rollback --previous`
    // goes back a version, to the set the v2 deploy took.
    let mut rollback = rail_testkit::cmd(rail_testkit::bin("rollback"));
    rollback.arg("--config").arg(World::config()).args(["rollback", "--previous", "--yes"]);
    let back = rollback.envs(w.deploy_env()).timeout(Duration::from_secs(300)).run();
    back.assert_success();
    assert!(all_output(&back).contains("goes back to v1"), "{}", back.describe());
    assert_eq!(w.served_release().as_deref(), Some("v1"));
    assert!(!w.has_stock_column(), "v1's schema");
    assert_eq!(w.health_status(), Some(200));
}
