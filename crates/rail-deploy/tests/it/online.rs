//! Online deploys: the strategy chosen from each pending migration's own SQL, the socket handed from
//! one gunicorn master to the next under load with no failed request, the refusal of `--strategy
//! online` for a migration the running release does not survive, and the online rollback that keeps
//! every write made since the migration.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::support::{alive, all_output, wait_for, World};

/// Clients hitting a URL through new connections until stopped; every answer is recorded.
struct Load {
    stop: Arc<AtomicBool>,
    answers: Arc<Mutex<Vec<Result<u16, String>>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    /// `clients` threads, each sending a GET every 20 ms (bounded: they stop with the test, and each
    /// request times out after 30 s).
    fn start(url: &str, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let answers: Arc<Mutex<Vec<Result<u16, String>>>> = Arc::default();
        let threads = (0..clients)
            .map(|_| {
                let (stop, answers, url) =
                    (Arc::clone(&stop), Arc::clone(&answers), url.to_owned());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        let answer = rail_testkit::http_get(&url)
                            .map(|r| r.status)
                            .map_err(|e| e.to_string());
                        answers.lock().expect("answers").push(answer);
                        std::thread::sleep(Duration::from_millis(20));
                    }
                })
            })
            .collect();
        let load = Load { stop, answers, threads };
        wait_for("answers before the deploy", Duration::from_secs(60), || load.ok() >= 5);
        load
    }

    fn ok(&self) -> usize {
        self.answers.lock().expect("answers").iter().filter(|a| a == &&Ok(200)).count()
    }

    /// Stop after a few more answers (so that the end of the deploy is observed); every answer.
    fn finish(self) -> Vec<Result<u16, String>> {
        let seen = self.ok();
        wait_for("answers after the deploy", Duration::from_secs(60), || self.ok() >= seen + 5);
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().expect("a load thread");
        }
        let answers = self.answers.lock().expect("answers").clone();
        answers
    }
}

/// Every answer was 200 (none refused, reset, 503…), and there were enough to have watched the deploy.
#[track_caller]
fn assert_none_failed(answers: &[Result<u16, String>], out: &rail_testkit::Output) {
    let failed: Vec<String> =
        answers.iter().filter(|a| a != &&Ok(200)).map(|a| format!("{a:?}")).collect();
    let total = answers.len();
    assert!(
        failed.is_empty(),
        "{} of {total} requests failed: {failed:?}\n{}",
        failed.len(),
        out.describe()
    );
    assert!(total > 20, "the load really ran during the deploy ({total} requests)");
}

fn step_data(w: &World, step: &str) -> Value {
    w.journal(&w.only_run_id()).end_data(step)
}

fn has_barcode_column(w: &World) -> bool {
    w.db.query_one(
        "SELECT column_name FROM information_schema.columns \
         WHERE table_name = 'catalog_product' AND column_name = 'barcode'",
    )
    .is_some()
}

/// v2 → v4 adds a nullable column, which v2's code survives: `auto` deploys online (no maintenance
/// window at all) and the new gunicorn master takes the socket over from the old one while clients
/// keep asking: not one request fails or sees 503.
#[test]
fn a_nullable_column_deploys_online_and_not_one_request_fails() {
    let w = World::new("v2", &["v4"]);
    let dry = w.deploy(&["--version", "v4", "--dry-run", "--format", "json"]).run();
    dry.assert_success();
    let plan: Value = serde_json::from_str(&dry.stdout).expect("the plan is JSON");
    assert_eq!(plan["strategy"]["chosen"], "online", "{}", dry.stdout);
    assert_eq!(plan["strategy"]["migrations"][0]["migration"], "catalog.0003_product_barcode");
    assert_eq!(plan["strategy"]["migrations"][0]["verdict"], "online");
    let old_master = w.app.pid().expect("the app runs");

    let load = Load::start(&w.app.health_url(), 3);
    let out = w.deploy(&["--version", "v4", "--yes"]).run();
    let answers = load.finish();
    out.assert_success();
    assert_none_failed(&answers, &out);

    assert_eq!(w.served_release().as_deref(), Some("v4"));
    assert!(has_barcode_column(&w));
    assert!(w.graphql_fields("ProductType").iter().any(|f| f == "barcode"));
    let new_master = w.app.pid().expect("the app runs");
    assert_ne!(new_master, old_master, "a new master serves");
    assert!(!alive(old_master), "the old master is gone");
    let pre = step_data(&w, "pre-checks");
    assert_eq!(pre["strategy"], "online", "{pre}");
    assert_eq!(pre["decision"]["configured"], "auto", "{pre}");
    assert_eq!(step_data(&w, "maintenance-on")["skipped"], true);
    assert!(step_data(&w, "migrate")["summary"].as_str().unwrap_or("").contains("online"));
    assert!(!w.app.maintenance_file().exists());
    w.assert_no_secret(&all_output(&out), "deploy's output");
}

/// `--strategy online` refuses v1 → v2: v2's `AddField(default=0)` makes a NOT NULL column whose
/// default Django drops, so v1's inserts would fail. Refused in the pre-checks (exit 1) naming the
/// migration, the rule and the fix, with nothing changed; the dry run says the same.
#[test]
fn online_strategy_refuses_a_column_the_running_release_cannot_insert_into() {
    let w = World::new("v1", &["v2"]);
    let before = crate::support::logical_state(&w.db);
    let dry = w.deploy(&["--version", "v2", "--dry-run", "--format", "json"]).run();
    dry.assert_success();
    let plan: Value = serde_json::from_str(&dry.stdout).expect("the plan is JSON");
    assert_eq!(plan["strategy"]["chosen"], "maintenance", "auto keeps the window\n{}", dry.stdout);
    let finding = &plan["strategy"]["migrations"][0]["findings"][0];
    assert_eq!(plan["strategy"]["migrations"][0]["migration"], "catalog.0002_product_stock");
    assert_eq!(finding["verdict"], "maintenance", "{finding}");
    assert!(finding["fix"].as_str().unwrap_or("").contains("db_default"), "{finding}");
    assert!(finding["statement"].as_str().unwrap_or("").contains("ALTER TABLE"), "{finding}");

    let text = w.deploy(&["--version", "v2", "--dry-run"]).run();
    text.assert_success();
    assert!(text.stdout.contains("strategy: maintenance"), "{}", text.stdout);
    assert!(text.stdout.contains("fix: "), "{}", text.stdout);

    let out = w.deploy(&["--version", "v2", "--strategy", "online", "--yes"]).run();
    assert_eq!(out.code, Some(1), "{}", out.describe());
    assert!(out.stderr.contains("catalog.0002_product_stock"), "{}", out.describe());
    assert!(out.stderr.contains("db_default"), "names the fix\n{}", out.describe());
    assert!(out.stdout.contains("nothing was changed"), "{}", out.describe());
    assert_eq!(crate::support::logical_state(&w.db), before, "the database is unchanged");
    assert_eq!(w.served_release().as_deref(), Some("v1"));
    assert!(!w.has_stock_column());
}

/// Break the copy of v4 installed beside the app: `wsgi.py` raises, so no worker of its master boots.
fn break_release_boot(w: &World, version: &str) {
    let wsgi = w.app.root().join("releases").join(version).join("demo/wsgi.py");
    fs_err::write(&wsgi, "raise RuntimeError('this release cannot boot')\n")
        .expect("breaking wsgi.py");
}

/// A release that never boots costs nothing: the old master keeps the socket and serves throughout
/// (not one failed request), the deploy rolls back by itself (exit 4) and keeps the expanded schema.
#[test]
fn a_release_that_never_boots_is_never_served_and_no_request_fails() {
    let w = World::new("v2", &["v4"]);
    break_release_boot(&w, "v4");
    let old_master = w.app.pid().expect("the app runs");
    let load = Load::start(&w.app.health_url(), 3);
    let out = w
        .deploy(&["--version", "v4", "--yes"])
        .env("RAIL_DEPLOY__HEALTH_CHECK_TIMEOUT", "5s")
        .run();
    let answers = load.finish();
    assert_eq!(out.code, Some(4), "{}", out.describe());
    assert!(all_output(&out).contains("did not take over"), "{}", out.describe());
    assert_none_failed(&answers, &out);
    assert_eq!(w.served_release().as_deref(), Some("v2"));
    assert_eq!(w.app.pid(), Some(old_master), "the old master still serves");
    assert_eq!(w.current_link(), std::path::Path::new("releases/v2"));
    assert!(has_barcode_column(&w), "keep-schema: the online migration stays");
}

/// Break v4's GraphQL endpoint (its URL is gone) while the app boots and its health URL answers: the
/// post-checks fail after the new release took over. Rows written all through the deploy — after the
/// backup, after the migration — are all there after the rollback: an online rollback never restores
/// the backup. With `on_failure = "reverse-migrations"` the column is gone too.
fn online_rollback(on_failure: &str) -> (World, u64) {
    let w = World::new("v2", &["v4"]);
    let urls = w.app.root().join("releases/v4/demo/urls.py");
    let text = fs_err::read_to_string(&urls).expect("reading urls.py");
    let mut broken: String =
        text.lines().filter(|l| !l.contains("graphql/")).collect::<Vec<_>>().join("\n");
    broken.push('\n');
    fs_err::write(&urls, broken).expect("breaking urls.py");

    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, written, url) = (Arc::clone(&stop), Arc::clone(&written), w.db.url().to_owned());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let sql = format!(
                    "INSERT INTO catalog_category (name, slug, description) VALUES ('written {n}', 'written-{n}', '')"
                );
                if rail_testkit::query(&url, &sql).is_ok() {
                    written.fetch_add(1, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(30));
            }
        })
    };
    let out = w
        .deploy(&["--version", "v4", "--yes"])
        .env("RAIL_DEPLOY__HEALTH_CHECK_TIMEOUT", "4s")
        .env("RAIL_DEPLOY__ONLINE__ON_FAILURE", on_failure)
        .run();
    stop.store(true, Ordering::SeqCst);
    writer.join().expect("the writer");
    assert_eq!(out.code, Some(4), "{}", out.describe());
    assert!(out.stdout.contains("rolled back"), "{}", out.describe());
    assert_eq!(w.served_release().as_deref(), Some("v2"));
    assert_eq!(w.graphql_status(), Some(200), "v2's GraphQL serves again");
    let written = written.load(Ordering::SeqCst);
    let rows: u64 =
        w.db.query_one("SELECT count(*)::text FROM catalog_category WHERE name LIKE 'written %'")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
    assert!(written > 10, "the writer wrote during the deploy ({written} rows)");
    assert_eq!(rows, written, "every write made during the deploy is kept\n{}", out.describe());
    let rollback = step_data(&w, "rollback");
    assert!(rollback["database"].as_str().unwrap_or("").contains("not restored"), "{rollback}");
    w.assert_no_secret(&all_output(&out), "deploy's output");
    (w, written)
}

#[test]
fn an_online_rollback_keeps_every_write_and_the_expanded_schema() {
    let (w, _) = online_rollback("keep-schema");
    assert!(has_barcode_column(&w), "keep-schema");
}

#[test]
fn an_online_rollback_can_reverse_its_migrations_keeping_every_write() {
    let (w, _) = online_rollback("reverse-migrations");
    assert!(!has_barcode_column(&w), "the migration was reversed");
    let applied = w.db.query_one(
        "SELECT name FROM django_migrations WHERE app = 'catalog' AND name = '0003_product_barcode'",
    );
    assert_eq!(applied, None, "0003 is no longer recorded as applied");
}

/// A redeploy of the running release with nothing pending is online: the restart alone, handed
/// over, with no failed request.
#[test]
fn a_deploy_with_nothing_pending_restarts_without_a_failed_request() {
    let w = World::new("v2", &[]);
    let load = Load::start(&w.app.health_url(), 3);
    let out = w.deploy(&["--yes"]).run();
    let answers = load.finish();
    out.assert_success();
    assert_none_failed(&answers, &out);
    let pre = step_data(&w, "pre-checks");
    assert_eq!(pre["strategy"], "online", "{pre}");
    assert!(pre["decision"]["reason"].as_str().unwrap_or("").contains("no migration"), "{pre}");
}

/// A migration that cannot take its lock within `deploy.online.lock_timeout` gives up instead of
/// queueing the site's queries behind it, and is tried again. A transaction holds `catalog_product`
/// until it sees v4's `ALTER TABLE` waiting for its lock, and a little longer: the first attempt times
/// out, a later one succeeds, and the journal counts the retries.
#[test]
fn an_online_migration_gives_up_on_a_held_lock_and_tries_again() {
    let w = World::new("v2", &["v4"]);
    let url = w.db.url().to_owned();
    let holder = std::thread::spawn(move || {
        rail_testkit::query(
            &url,
            "BEGIN; LOCK TABLE catalog_product IN ACCESS SHARE MODE; \
             DO $$ BEGIN \
               FOR i IN 1..1200 LOOP \
                 PERFORM pg_stat_clear_snapshot(); \
                 EXIT WHEN EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid <> pg_backend_pid() \
                   AND wait_event_type = 'Lock' AND query LIKE '%ADD COLUMN \"barcode\"%'); \
                 PERFORM pg_sleep(0.05); \
               END LOOP; \
               PERFORM pg_sleep(1.5); \
             END $$; COMMIT",
        )
    });
    let out = w
        .deploy(&["--version", "v4", "--yes"])
        .env("RAIL_DEPLOY__ONLINE__LOCK_TIMEOUT", "300ms")
        .run();
    holder.join().expect("the lock holder").expect("the lock holder's transaction");
    out.assert_success();
    let migrate = step_data(&w, "migrate");
    assert!(migrate["lock_retries"].as_u64().unwrap_or(0) >= 1, "{migrate}\n{}", out.describe());
    assert!(all_output(&out).contains("lock_timeout"), "{}", out.describe());
    assert!(has_barcode_column(&w));
    assert_eq!(w.served_release().as_deref(), Some("v4"));
}
