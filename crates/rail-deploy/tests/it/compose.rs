//! The compose path for real: `docker/docker-compose.yml` (with the local images' override) as a project
//! of each test's own on the private Docker engine that `cargo xtask test` starts, driven by `deploy` and
//! `rollback` with `deploy-configs/compose.toml` as users get it. The images are the ones built from the
//! repository's Dockerfiles (`cargo xtask test` builds them with the legacy builder; one test builds them
//! again with BuildKit). Every test ends with `down -v` and checks that nothing of its project is left.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rail_deploy::ENV_FAULT;
use rail_testkit::{cmd, http_get, http_post_json, Cmd, ComposeStack, Stack, HEALTH_INTERVAL_SECS};
use serde_json::{json, Value};

use crate::support::{all_output, normalise_dump, Journal};

const DEPLOY_TIMEOUT: Duration = Duration::from_secs(600);

/// A binary of the workspace against the stack, with compose.toml and only the stack's variables.
fn tool(stack: &ComposeStack, name: &str, args: &[&str]) -> Cmd {
    let program = if name == "deploy" {
        std::path::PathBuf::from(env!("CARGO_BIN_EXE_deploy"))
    } else {
        rail_testkit::bin(name)
    };
    let mut c = cmd(program);
    c.arg("--config").arg(stack.config()).args(args).envs(stack.vars()).timeout(DEPLOY_TIMEOUT);
    c.env("NO_COLOR", "1");
    c
}

/// The database of the stack, dumped with the host's pg_dump through the published port, normalised.
fn state(stack: &ComposeStack) -> String {
    let out = cmd(Stack::get().pg_bin("pg_dump"))
        .args(["--no-owner", "--no-privileges", "--quote-all-identifiers", "-d"])
        .arg(stack.database_url())
        .run();
    out.assert_success();
    normalise_dump(&out.stdout)
}

fn query(stack: &ComposeStack, sql: &str) -> Option<String> {
    rail_testkit::query(&stack.database_url(), sql)
        .expect("querying the stack's database")
        .into_iter()
        .next()
        .and_then(|row| row.into_iter().next().flatten())
}

fn has_stock_column(stack: &ComposeStack) -> bool {
    query(
        stack,
        "SELECT count(*)::text FROM information_schema.columns \
         WHERE table_name = 'catalog_product' AND column_name = 'stock'",
    )
    .as_deref()
        == Some("1")
}

/// The release that answers `/health/` through nginx.
fn served_release(stack: &ComposeStack) -> Option<String> {
    let r = http_get(&format!("{}/health/", stack.app_url())).ok()?;
    let v: Value = serde_json::from_str(&r.body).ok()?;
    v["release"].as_str().map(str::to_owned)
}

/// The fields of `ProductType` that the GraphQL endpoint serves, through nginx.
fn product_fields(stack: &ComposeStack) -> Vec<String> {
    let body = json!({"query": "{ __type(name: \"ProductType\") { fields { name } } }"});
    let r =
        http_post_json(&format!("{}/graphql/", stack.app_url()), &body).expect("POST /graphql/");
    let v: Value = serde_json::from_str(&r.body).unwrap_or_default();
    v["data"]["__type"]["fields"]
        .as_array()
        .map(|fields| fields.iter().filter_map(|f| f["name"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// The journals of the stack's backup directory, oldest first.
fn journals(stack: &ComposeStack) -> Vec<Journal> {
    let dir = stack.dir().join("backups").join("journal");
    let mut paths: Vec<_> = fs_err::read_dir(&dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    paths.sort();
    paths
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .map(|p| {
            let text = fs_err::read_to_string(&p).expect("reading a journal");
            Journal {
                events: text
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| serde_json::from_str(l).expect("a journal line"))
                    .collect(),
            }
        })
        .collect()
}

fn assert_nothing_left(stack: &mut ComposeStack) {
    let left = stack.down();
    assert!(left.is_empty(), "the project {} left: {left:?}", stack.project());
}

/// A client asking `/` through nginx every 50 ms, recording when and what it got.
type Seen = Arc<Mutex<Vec<(DateTime<Utc>, u16)>>>;

struct Poller {
    stop: Arc<AtomicBool>,
    seen: Seen,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Poller {
    fn start(url: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let seen: Seen = Arc::new(Mutex::new(Vec::new()));
        let (s, r) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            // Bounded: 20 minutes at most, whatever happens to the test.
            let deadline = Instant::now() + Duration::from_secs(1200);
            while !s.load(Ordering::Relaxed) && Instant::now() < deadline {
                let status = http_get(&url).map_or(0, |resp| resp.status);
                r.lock().unwrap().push((Utc::now(), status));
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Self { stop, seen, thread: Some(thread) }
    }

    fn finish(mut self) -> Vec<(DateTime<Utc>, u16)> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.seen.lock().unwrap().clone()
    }
}

#[test]
fn the_tools_image_runs_as_non_root_and_its_binaries_answer() {
    let stack = Stack::get();
    let docker = stack.var("RAIL_DOCKER").expect("cargo xtask test starts the Docker engine");
    let host = stack.var("DOCKER_HOST").expect("DOCKER_HOST");
    let run = |args: &[&str]| {
        let out = cmd(docker).env("DOCKER_HOST", host).args(args).run();
        out.assert_success();
        out.stdout.trim().to_owned()
    };
    // Built from the repository's Dockerfiles by `cargo xtask test` (the content label says which).
    for image in ["rail-tools:latest", "rail-demo:v1", "rail-demo:v2", "rail-demo:v3-broken"] {
        let label = run(&[
            "image",
            "inspect",
            "--format",
            "{{index .Config.Labels \"rail.content\"}}",
            image,
        ]);
        assert_eq!(label.len(), 64, "{image} carries its content hash: {label:?}");
    }
    let user = run(&["run", "--rm", "rail-tools:latest", "id", "-u"]);
    assert_ne!(user, "0", "the tools image runs as a non-root user");
    assert_eq!(user, "10001");
    for bin in ["deploy", "rollback", "healthcheck", "schemaver"] {
        let version = run(&["run", "--rm", "rail-tools:latest", bin, "-V"]);
        assert!(version.starts_with(bin), "{bin} -V: {version}");
    }
    // pg_dump 15 for the server's dumps.
    let pg_dump = run(&["run", "--rm", "rail-tools:latest", "pg_dump", "--version"]);
    assert!(pg_dump.contains(" 15."), "{pg_dump}");
    // The app image's HEALTHCHECK is rail's healthcheck, not a Python probe.
    let check =
        run(&["image", "inspect", "--format", "{{json .Config.Healthcheck.Test}}", "rail-demo:v2"]);
    assert_eq!(
        check,
        r#"["CMD","healthcheck","--check","application","--timeout","5s","--quiet"]"#
    );
    let user = run(&["run", "--rm", "--entrypoint", "id", "rail-demo:v2", "-u"]);
    assert_eq!(user, "10001", "the app runs as a non-root user");
}

#[test]
fn the_images_build_with_buildkit_too() {
    let stack = Stack::get();
    let docker = stack.var("RAIL_DOCKER").expect("cargo xtask test starts the Docker engine");
    let host = stack.var("DOCKER_HOST").expect("DOCKER_HOST");
    let root = rail_testkit::workspace_root();
    let tag = format!("buildkit-{}", std::process::id());
    let build = |args: &[&str]| {
        let out = cmd(docker)
            .env("DOCKER_HOST", host)
            .env("DOCKER_BUILDKIT", "1")
            .arg("build")
            .args(["--network", "host", "--progress", "plain"])
            .args(args)
            .current_dir(root)
            .timeout(Duration::from_secs(900))
            .run();
        out
    };
    let tools = format!("rail-tools:{tag}");
    let demo = format!("rail-demo:{tag}");
    let out = build(&[
        "-f",
        "docker/Dockerfile",
        "--build-arg",
        "RUST_IMAGE=localhost/debian:bookworm-slim",
        "--build-arg",
        "RUNTIME_IMAGE=localhost/debian:bookworm-slim",
        "--build-arg",
        "PREBUILT_BINARIES=target/docker-bin",
        "-t",
        &tools,
        ".",
    ]);
    let cleanup = || {
        let _ = cmd(docker).env("DOCKER_HOST", host).args(["rmi", "-f", &tools, &demo]).run();
    };
    if !out.success() {
        cleanup();
        panic!("BuildKit build of docker/Dockerfile\n{}", out.describe());
    }
    let out2 = build(&[
        "-f",
        "docker/demo-app/Dockerfile",
        "--build-arg",
        "RELEASE=v2",
        "--build-arg",
        &format!("RAIL_TOOLS_IMAGE={tools}"),
        "--build-arg",
        "PYTHON_IMAGE=localhost/rail-local-python:3.11",
        "-t",
        &demo,
        "docker/demo-app",
    ]);
    let version = cmd(docker)
        .env("DOCKER_HOST", host)
        .args(["run", "--rm", "--entrypoint", "healthcheck", &demo, "-V"])
        .run();
    cleanup();
    assert!(out2.success(), "BuildKit build of docker/demo-app/Dockerfile\n{}", out2.describe());
    version.assert_success();
    assert!(version.stdout.starts_with("healthcheck"), "{}", version.describe());
}

#[test]
// What it measured goes to the test's output, for the record.
#[allow(clippy::print_stderr)]
fn docker_reports_the_web_container_health_through_rails_healthcheck() {
    let mut stack = ComposeStack::up("v1");
    let limit = Duration::from_secs(120);
    assert!(
        stack.wait_for(limit, || stack.health("web") == "healthy"),
        "web is not healthy: {}\n{}",
        stack.health("web"),
        stack.logs()
    );
    // The check Docker runs is rail's healthcheck binary inside the container.
    let log = stack.inspect("web", "{{json .State.Health.Log}}");
    assert!(!log.is_empty() && log != "null", "{log}");

    let stop = stack.compose().args(["stop", "-t", "5", "db"]).output().expect("compose stop db");
    assert!(stop.status.success());
    let stopped = Instant::now();
    // interval × retries, plus each probe's own timeout (10 s in the compose file) and some slack.
    let bound = Duration::from_secs((HEALTH_INTERVAL_SECS + 10) * 3 + 20);
    assert!(
        stack.wait_for(bound, || stack.health("web") == "unhealthy"),
        "web did not turn unhealthy with the database stopped: {}",
        stack.health("web")
    );
    let took = stopped.elapsed();
    eprintln!("web unhealthy {took:?} after the database stopped (interval {HEALTH_INTERVAL_SECS} s × 3 retries)");
    // The probes that failed are rail's verdict on the application: the app answers 503 naming the
    // database, or (while its connection attempt hangs on the stopped container's name) not at all.
    let last = stack.inspect("web", "{{json .State.Health.Log}}");
    let probes: Vec<serde_json::Value> =
        serde_json::from_str(&last).expect("the health log is JSON");
    let failed: Vec<&str> =
        probes.iter().filter(|p| p["ExitCode"] != 0).filter_map(|p| p["Output"].as_str()).collect();
    assert!(!failed.is_empty(), "no failed probe in {last}");
    assert!(
        failed.iter().all(|o| o.contains("critical application")
            && (o.contains("database") || o.contains("503") || o.contains("no answer within"))),
        "each failing probe says why: {failed:?}"
    );

    let start = stack.compose().args(["start", "db"]).output().expect("compose start db");
    assert!(start.status.success());
    assert!(
        stack.wait_for(limit, || stack.health("web") == "healthy"),
        "web did not turn healthy again: {}",
        stack.health("web")
    );
    assert_nothing_left(&mut stack);
}

#[test]
// What it measured goes to the test's output, for the record.
#[allow(clippy::print_stderr)]
fn deploy_and_rollback_drive_the_compose_stack() {
    let mut stack = ComposeStack::up("v1");
    assert_eq!(served_release(&stack).as_deref(), Some("v1"));
    assert!(!has_stock_column(&stack));
    let v1_state = state(&stack);
    // nginx answers from the shared flag alone: 503 with Retry-After while it exists, proxies after.
    let flag = stack.volume_dir("maintenance").join("flag.json");
    fs_err::write(&flag, "{}").unwrap();
    let closed = http_get(&format!("{}/", stack.app_url())).expect("GET / in maintenance");
    fs_err::remove_file(&flag).unwrap();
    assert_eq!(closed.status, 503, "{}", closed.body);
    let retry_after =
        closed.headers.iter().find(|(k, _)| k == "retry-after").map(|(_, v)| v.as_str());
    assert_eq!(retry_after, Some("30"), "{:?}", closed.headers);
    assert_eq!(http_get(&format!("{}/", stack.app_url())).expect("GET /").status, 200);

    // v1 → v2 with a client polling through nginx.
    let poller = Poller::start(format!("{}/", stack.app_url()));
    let out = tool(&stack, "deploy", &["--version", "v2", "--yes"]).run();
    let seen = poller.finish();
    assert_eq!(out.code, Some(0), "deploy v2\n{}", out.describe());
    assert_eq!(stack.image("web"), "rail-demo:v2");
    assert_eq!(stack.health("web"), "healthy");
    assert!(has_stock_column(&stack), "v2's migration ran inside v2's image");
    assert_eq!(served_release(&stack).as_deref(), Some("v2"));
    assert!(product_fields(&stack).contains(&"stock".to_owned()), "the GraphQL field is served");
    // Static files collected by v2 into the static volume, served by nginx.
    let css = http_get(&format!("{}/static/catalog/demo.css", stack.app_url())).expect("GET css");
    assert_eq!(css.status, 200);
    let journal = journals(&stack).pop().expect("the deploy's journal");
    let opened = journal.ts("step_begin", Some("maintenance-on")).expect("maintenance-on began");
    let closed = journal.ts("step_end", Some("maintenance-off")).expect("maintenance-off ended");
    let (mut ok, mut unavailable) = (0, 0);
    for (at, status) in &seen {
        match status {
            200 => ok += 1,
            503 => {
                unavailable += 1;
                assert!(
                    *at >= opened && *at <= closed,
                    "a 503 at {at} outside the window {opened} – {closed}"
                );
            }
            other => panic!("the client got {other} at {at} (window {opened} – {closed})"),
        }
    }
    assert!(unavailable > 0, "the window was seen ({ok} ok)");
    assert!(ok > 0);
    eprintln!("client through nginx: {ok} × 200, {unavailable} × 503 (inside the window)");
    assert!(!flag.exists(), "maintenance off");

    // v3-broken: its migration fails; the database is back to v2's, v2's container serves.
    let before = state(&stack);
    let out = tool(&stack, "deploy", &["--version", "v3-broken", "--yes"]).run();
    assert_eq!(out.code, Some(4), "deploy v3-broken\n{}", out.describe());
    crate::support::assert_same_state(&state(&stack), &before, "after v3-broken's rollback");
    assert_eq!(stack.image("web"), "rail-demo:v2");
    assert_eq!(served_release(&stack).as_deref(), Some("v2"));
    assert!(!flag.exists(), "maintenance off after the rollback");
    let front = http_get(&format!("{}/", stack.app_url())).expect("GET /");
    assert_eq!(front.status, 200, "nginx proxies again");

    // rollback --previous: the newest set is the one v3-broken's deploy took, of v2, the version the
    // services run; --previous passes over it to the set the v2 deploy took, of v1.
    let list = tool(&stack, "rollback", &["list", "--format", "json"]).run();
    list.assert_success();
    let sets = list.json();
    let versions: Vec<&str> = sets
        .as_array()
        .map(|sets| sets.iter().filter_map(|s| s["manifest"]["app_version"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(versions.first(), Some(&"v2"), "the newest set is v2's: {sets:#}");
    let out = tool(&stack, "rollback", &["rollback", "--previous", "--yes"]).run();
    assert_eq!(out.code, Some(0), "rollback --previous\n{}", out.describe());
    assert!(all_output(&out).contains("goes back to v1"), "{}", out.describe());
    assert_eq!(stack.image("web"), "rail-demo:v1");
    assert!(!has_stock_column(&stack));
    crate::support::assert_same_state(&state(&stack), &v1_state, "after the rollback to v1");
    assert_eq!(served_release(&stack).as_deref(), Some("v1"));
    assert!(!flag.exists(), "maintenance off after rollback");

    for text in journals(&stack).iter().map(|j| serde_json::to_string(&j.events).unwrap()) {
        assert!(!text.contains(stack.var("APP_DB_PASSWORD")), "no password in the journals");
    }
    assert!(!all_output(&out).contains(stack.var("APP_DB_PASSWORD")));
    assert_nothing_left(&mut stack);
}

/// `kill -9` of a deploy v1 → v2 against containers at a step boundary, then `deploy --resume`: the
/// database is v1's or v2's, the web container runs the matching image and is healthy, maintenance is
/// off, and no lock is left.
fn container_drill(fault: &str) {
    let mut stack = ComposeStack::up("v1");
    let pre = state(&stack);
    let killed = tool(&stack, "deploy", &["--version", "v2", "--yes"]).env(ENV_FAULT, fault).run();
    assert_eq!(killed.signal, Some(9), "{fault}: the deploy was not killed\n{}", killed.describe());
    let refused = tool(&stack, "deploy", &["--version", "v2", "--yes"]).run();
    assert_eq!(refused.code, Some(3), "{fault}: a deploy after the kill\n{}", refused.describe());
    assert!(all_output(&refused).contains("--resume"), "{fault}: {}", refused.describe());
    let resumed = tool(&stack, "deploy", &["--resume", "--yes"]).run();
    assert_eq!(resumed.code, Some(0), "{fault}: deploy --resume\n{}", resumed.describe());
    assert_eq!(
        journals(&stack).first().and_then(Journal::finish_outcome).as_deref(),
        Some("success"),
        "{fault}: the dead run's journal is finished"
    );
    let state_now = state(&stack);
    let served = served_release(&stack);
    assert!(
        crate::support::state_diff(&state_now, &pre).is_some(),
        "{fault}: a resumed deploy ends on v2, the database is v1's (served {served:?})"
    );
    assert!(has_stock_column(&stack), "{fault}: v2's schema");
    assert_eq!(served.as_deref(), Some("v2"), "{fault}: v2 serves");
    assert_eq!(stack.image("web"), "rail-demo:v2", "{fault}");
    assert!(
        stack.wait_for(Duration::from_secs(60), || stack.health("web") == "healthy"),
        "{fault}: web healthy"
    );
    assert!(
        !stack.volume_dir("maintenance").join("flag.json").exists(),
        "{fault}: maintenance off"
    );
    let status = tool(&stack, "deploy", &["status", "--format", "json"]).run();
    status.assert_success();
    let status = status.json();
    assert!(status["lock_holder"].is_null(), "{fault}: no lock is held: {status:#}");
    assert!(status["interrupted"].is_null(), "{fault}: no interrupted run is left: {status:#}");
    assert_nothing_left(&mut stack);
}

/// The boundaries drilled: by default a documented subset (one in each phase of the deploy: before the
/// window, the migration, the container replaced, the checks after it); with `RAIL_TEST_FULL=1`
/// (`cargo xtask test --full`) both sides of every step plus inside the migration, as the native matrix.
fn container_faults(part: usize, parts: usize) -> Vec<String> {
    let full = std::env::var_os("RAIL_TEST_FULL").is_some_and(|v| v == "1");
    // The steps of a deploy with compose.toml, from the library itself (every value has a default).
    let opts = rail_core::config::LoadOptions {
        config_file: Some(rail_testkit::workspace_root().join("deploy-configs/compose.toml")),
        env: Some(std::collections::BTreeMap::new()),
        ..rail_core::config::LoadOptions::default()
    };
    let cfg = rail_core::config::load(&opts).expect("compose.toml loads").config;
    let steps: Vec<String> = rail_deploy::engine::steps(&cfg, false)
        .into_iter()
        .filter(|s| *s != rail_deploy::engine::Step::Notify)
        .map(|s| s.name().to_owned())
        .collect();
    let mut faults = Vec::new();
    if full {
        for step in &steps {
            faults.push(format!("kill:{step}:before"));
            faults.push(format!("kill:{step}:after"));
        }
        faults.push("kill:migrate:during".into());
    } else {
        faults.extend(
            [
                "kill:backup:after",
                "kill:migrate:during",
                "kill:restart:before",
                "kill:post-checks:after",
            ]
            .map(str::to_owned),
        );
    }
    for fault in &faults {
        let step = fault.split(':').nth(1).unwrap_or_default();
        assert!(steps.iter().any(|s| s == step), "{fault}: no step {step} in {steps:?}");
    }
    faults.into_iter().skip(part).step_by(parts).collect()
}

fn run_container_part(part: usize) {
    let faults = container_faults(part, 2);
    let mut failed = Vec::new();
    for fault in &faults {
        if std::panic::catch_unwind(AssertUnwindSafe(|| container_drill(fault))).is_err() {
            failed.push(fault.clone());
        }
    }
    assert!(failed.is_empty(), "failed container drills (see the panics above): {failed:?}");
}

#[test]
fn container_kill_drills_part_1_of_2() {
    run_container_part(0);
}

#[test]
fn container_kill_drills_part_2_of_2() {
    run_container_part(1);
}
