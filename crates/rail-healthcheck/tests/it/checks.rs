//! Each check against the real thing: healthy, stopped, slow, full, in maintenance, hung.

use std::time::Duration;

use rail_testkit::{Stack, TestApp, TestRedis, ThrowawayPostgres, ThrowawayRedis};

use crate::support::{check, maintenance_doc, status, Env, HungListener};

#[test]
fn everything_healthy_exits_zero_with_every_check_healthy() {
    let env = Env::stack();
    let out = env.run(&["--format", "json"]);
    out.assert_success();
    let report = out.json();
    assert_eq!(report["overall_status"], "healthy", "{report:#}");
    for name in
        ["database", "redis", "application", "graphql", "filesystem", "performance", "maintenance"]
    {
        assert_eq!(status(&report, name), "healthy", "{name}: {:#}", check(&report, name));
    }
    assert_eq!(report["total_checks"], 7);
    assert_eq!(report["healthy_checks"], 7);
    assert_eq!(report["skipped_checks"], serde_json::json!([]));
    let db = check(&report, "database");
    assert!(db["details"]["max_connections"].as_f64().unwrap() > 0.0, "{db:#}");
    assert!(db["details"]["latency_ms"].as_f64().is_some());
    assert_eq!(check(&report, "application")["details"]["app_status"], "ok");
    // The database password never shows.
    let password = url::Url::parse(rail_testkit::Stack::get().database_url())
        .unwrap()
        .password()
        .unwrap()
        .to_owned();
    assert!(!out.stdout.contains(&password) && !out.stderr.contains(&password));

    // The text form says the same, one line per check.
    let out = env.run(&[]);
    out.assert_success();
    assert_eq!(
        out.stdout.lines().filter(|l| l.starts_with("healthy ")).count(),
        7,
        "{}",
        out.stdout
    );
    assert!(out
        .stdout
        .lines()
        .last()
        .unwrap()
        .starts_with("overall: healthy (7 healthy, 0 warning, 0 critical)"));
}

#[test]
fn a_stopped_redis_is_critical_and_the_other_checks_are_still_reported() {
    let mut redis = ThrowawayRedis::start();
    let mut env = Env::stack();
    env.set("REDIS_URL", redis.url());
    env.run(&["--check", "redis"]).assert_success();

    redis.stop();
    let out = env.run(&["--format", "json"]);
    out.assert_code(1);
    let report = out.json();
    assert_eq!(report["overall_status"], "critical");
    assert_eq!(status(&report, "redis"), "critical");
    assert!(
        check(&report, "redis")["message"].as_str().unwrap().contains("cannot connect to Redis"),
        "{report:#}"
    );
    for name in ["database", "application", "graphql", "filesystem", "performance"] {
        assert_eq!(status(&report, name), "healthy", "{name}: {:#}", check(&report, name));
    }
    // The maintenance key cannot be read, but that is the redis check's failure, not maintenance's.
    assert_eq!(status(&report, "maintenance"), "healthy");
    assert!(check(&report, "maintenance")["details"]["redis_error"].is_string());
}

#[test]
fn a_stopped_postgres_fails_the_database_check_and_the_apps_503_fails_the_application() {
    let mut pg = ThrowawayPostgres::start();
    let redis = TestRedis::new();
    let app = TestApp::start_with("v1", &pg.url(), redis.url(), &[]);
    let mut env = Env::stack();
    env.set("DATABASE_URL", pg.url())
        .set("APP_URL", app.url())
        .set("GRAPHQL_URL", app.graphql_url());
    env.run(&["--check", "database", "--check", "application"]).assert_success();

    pg.stop();
    let out = env.run(&[
        "--format",
        "json",
        "--check",
        "database",
        "--check",
        "application",
        "--check",
        "redis",
    ]);
    out.assert_code(1);
    let report = out.json();
    assert_eq!(status(&report, "database"), "critical");
    assert!(check(&report, "database")["message"]
        .as_str()
        .unwrap()
        .contains("cannot connect to PostgreSQL"));
    let application = check(&report, "application");
    assert_eq!(application["status"], "critical", "{application:#}");
    assert_eq!(application["details"]["http_status"], 503);
    let message = application["message"].as_str().unwrap();
    assert!(message.starts_with("HTTP 503 from"), "{message}");
    // The app says which of its parts failed.
    assert!(message.contains("database:"), "{message}");
    assert_eq!(status(&report, "redis"), "healthy");
    assert!(!out.stdout.contains(pg.password()) && !out.stderr.contains(pg.password()));
}

#[test]
fn a_slow_app_is_a_warning_or_critical_by_thresholds() {
    let mut env = Env::stack();
    let slow = format!("{}/health/?delay_ms=300", Stack::get().app_url().trim_end_matches('/'));
    env.set("RAIL_APP__HEALTH_URL", slow)
        .set("RAIL_HEALTH__APPLICATION__WARNING_LATENCY", "100ms")
        .set("RAIL_HEALTH__APPLICATION__CRITICAL_LATENCY", "10s");
    let out = env.run(&["--format", "json", "--check", "application", "--check", "performance"]);
    out.assert_success();
    let report = out.json();
    assert_eq!(status(&report, "performance"), "warning", "{report:#}");
    assert!(check(&report, "performance")["message"]
        .as_str()
        .unwrap()
        .contains("application answered in"));
    assert_eq!(status(&report, "application"), "warning");
    assert!(check(&report, "application")["message"]
        .as_str()
        .unwrap()
        .starts_with("slow (warning over 100ms); HTTP 200 in "));

    env.set("RAIL_HEALTH__APPLICATION__WARNING_LATENCY", "50ms")
        .set("RAIL_HEALTH__APPLICATION__CRITICAL_LATENCY", "100ms");
    let out = env.run(&["--format", "json", "--check", "performance"]);
    out.assert_code(1);
    let report = out.json();
    // Performance alone still measures the app, without reporting it as a check of its own.
    assert_eq!(report["total_checks"], 1);
    assert_eq!(status(&report, "performance"), "critical", "{report:#}");
    assert!(
        check(&report, "performance")["details"]["latency_ms"]["application"].as_f64().unwrap()
            >= 300.0
    );
}

#[test]
fn a_free_space_floor_above_the_free_space_is_critical() {
    let mut env = Env::stack();
    env.set("RAIL_HEALTH__FILESYSTEM__MIN_FREE_SPACE", "1000000TiB");
    let out = env.run(&["--format", "json"]);
    out.assert_code(1);
    let report = out.json();
    let fs = check(&report, "filesystem");
    assert_eq!(fs["status"], "critical");
    assert!(fs["message"].as_str().unwrap().contains("below the floor of"), "{fs:#}");
    assert_eq!(report["critical_checks"], 1);

    // A directory that is missing is critical too.
    env.set("RAIL_HEALTH__FILESYSTEM__MIN_FREE_SPACE", "1MiB");
    env.set("RAIL_HEALTH__FILESYSTEM__PATHS", env.dir.join("nope").display().to_string());
    let report = env.run(&["--format", "json", "--check", "filesystem"]).assert_code(1).json();
    assert!(check(&report, "filesystem")["message"].as_str().unwrap().ends_with("does not exist"));
}

#[test]
fn maintenance_on_is_a_warning_with_age_and_run_id() {
    let env = Env::stack();
    env.dir
        .write("flag.json", maintenance_doc(Duration::from_secs(125), "20250102T030405Z-a1b2c3"));
    let out = env.run(&["--format", "json"]);
    // A warning is not a failure: Docker must not restart the app during a deploy.
    out.assert_success();
    let report = out.json();
    let m = check(&report, "maintenance");
    assert_eq!(m["status"], "warning", "{m:#}");
    assert_eq!(m["details"]["run_id"], "20250102T030405Z-a1b2c3");
    assert_eq!(m["details"]["reason"], "deploy v2");
    assert!(m["details"]["age_seconds"].as_u64().unwrap() >= 125);
    let message = m["message"].as_str().unwrap();
    assert!(
        message.contains("ago") && message.contains("run 20250102T030405Z-a1b2c3"),
        "{message}"
    );
    // The app, asked through /graphql/, is in maintenance too (the stack app watches its own flag,
    // so only the health JSON is checked here); the bypass token is never shown.
    assert!(!out.stdout.contains("bypass-token-never-printed"));

    // Past maintenance.stale_after it is critical.
    env.dir.write(
        "flag.json",
        maintenance_doc(Duration::from_secs(3 * 3600), "20250102T030405Z-a1b2c3"),
    );
    let report = env.run(&["--format", "json", "--check", "maintenance"]).assert_code(1).json();
    assert!(check(&report, "maintenance")["message"].as_str().unwrap().starts_with("stale: "));
}

#[test]
fn maintenance_in_the_redis_key_is_seen_too() {
    let mut env = Env::stack();
    env.unset("RAIL_MAINTENANCE_FILE");
    env.redis.cmd(&[
        "SET",
        "rail:maintenance",
        &maintenance_doc(Duration::from_secs(10), "run-redis"),
        "EX",
        "600",
    ]);
    let report = env.run(&["--format", "json", "--check", "maintenance"]).assert_success().json();
    let m = check(&report, "maintenance");
    assert_eq!(m["status"], "warning");
    assert_eq!(m["details"]["sources"], serde_json::json!(["redis"]));
    assert_eq!(m["details"]["run_id"], "run-redis");
}

#[test]
fn during_maintenance_graphql_is_a_warning_and_the_bypass_header_gets_through() {
    let redis = TestRedis::new();
    let db = rail_testkit::TestDb::new();
    let app = TestApp::start("v1", &db, &redis);
    let mut env = Env::stack();
    env.set("DATABASE_URL", db.url())
        .set("APP_URL", app.url())
        .set("GRAPHQL_URL", app.graphql_url())
        .set("RAIL_MAINTENANCE_FILE", app.maintenance_file().display().to_string());
    fs_err::write(app.maintenance_file(), maintenance_doc(Duration::from_secs(5), "run-m"))
        .unwrap();
    let report = env.run(&["--format", "json"]).assert_success().json();
    assert_eq!(status(&report, "maintenance"), "warning");
    let gql = check(&report, "graphql");
    assert_eq!(gql["status"], "warning", "{gql:#}");
    assert!(gql["message"].as_str().unwrap().starts_with("in maintenance"));
    // /health/ passes during maintenance and says so.
    assert_eq!(status(&report, "application"), "healthy");
    assert_eq!(check(&report, "application")["details"]["maintenance"]["run_id"], "run-m");

    // With the bypass token in a configured header, the GraphQL endpoint answers.
    env.set("RAIL_HEALTH__HEADERS__X-RAIL-MAINTENANCE-BYPASS", "bypass-token-never-printed");
    let out = env.run(&["--format", "json", "--check", "graphql", "-v"]);
    let report = out.assert_success().json();
    assert_eq!(status(&report, "graphql"), "healthy", "{report:#}");
    assert!(
        !out.stdout.contains("bypass-token-never-printed")
            && !out.stderr.contains("bypass-token-never-printed")
    );
}

#[test]
fn a_hung_dependency_fails_only_its_own_check_at_its_timeout() {
    let hung = HungListener::start();
    let mut env = Env::stack();
    env.set("REDIS_URL", format!("redis://127.0.0.1:{}/0", hung.port))
        .set("RAIL_HEALTH__REDIS__TIMEOUT", "1s");
    let out = env.cmd(&["--format", "json"]).timeout(Duration::from_secs(30)).run();
    assert!(!out.timed_out, "{}", out.describe());
    out.assert_code(1);
    let report = out.json();
    let redis = check(&report, "redis");
    assert_eq!(redis["status"], "critical");
    assert!(redis["message"].as_str().unwrap().contains("no answer within 1s"), "{redis:#}");
    for name in ["database", "application", "graphql", "filesystem", "performance", "maintenance"] {
        assert_eq!(status(&report, name), "healthy", "{name}: {:#}", check(&report, name));
    }

    let mut env = Env::stack();
    env.set("DATABASE_URL", format!("postgresql://rail:secret@127.0.0.1:{}/db", hung.port));
    let out = env.cmd(&["--format", "json", "--timeout", "1s"]).run();
    assert!(!out.timed_out, "{}", out.describe());
    let report = out.assert_code(1).json();
    assert_eq!(status(&report, "database"), "critical");
    assert!(check(&report, "database")["message"]
        .as_str()
        .unwrap()
        .contains("no answer within 1s"));
    assert_eq!(report["critical_checks"], 1, "{report:#}");

    let mut env = Env::stack();
    env.set("APP_URL", format!("http://127.0.0.1:{}", hung.port)).unset("GRAPHQL_URL");
    let out = env.cmd(&["--format", "json", "--timeout", "1s"]).run();
    let report = out.assert_code(1).json();
    assert_eq!(check(&report, "application")["message"], "no answer within 1s");
    assert_eq!(check(&report, "graphql")["message"], "no answer within 1s");
    assert_eq!(report["critical_checks"], 2, "{report:#}");
}

#[test]
fn unconfigured_checks_are_skipped_not_failed() {
    let mut env = Env::stack();
    for key in ["DATABASE_URL", "REDIS_URL", "APP_URL", "GRAPHQL_URL", "RAIL_MAINTENANCE_FILE"] {
        env.unset(key);
    }
    let report = env.run(&["--format", "json"]).assert_success().json();
    let names: Vec<&str> =
        report["checks"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["filesystem", "performance"]);
    let skipped: Vec<&str> = report["skipped_checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(skipped, ["database", "redis", "application", "graphql", "maintenance"]);
    let out = env.run(&[]);
    assert!(out.stdout.contains("skipped  database"), "{}", out.stdout);
}

#[test]
fn a_redirecting_health_url_is_critical_and_says_where_it_points() {
    let mut env = Env::stack();
    env.set(
        "RAIL_APP__HEALTH_URL",
        format!("{}/health", Stack::get().app_url().trim_end_matches('/')),
    );
    let report = env.run(&["--format", "json", "--check", "application"]).assert_code(1).json();
    let message = check(&report, "application")["message"].as_str().unwrap().to_owned();
    assert!(message.starts_with("HTTP 301 from "), "{message}");
    assert!(message.contains("/health/; set app.health_url to it)"), "{message}");
}
