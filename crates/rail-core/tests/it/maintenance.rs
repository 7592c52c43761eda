//! `rail_core::maintenance` against the stack's Redis (a database index of the test's own), real files,
//! and the demo app's middleware, which must really close the site.

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use rail_core::config::Config;
use rail_core::maintenance::{self, bypass_header, MaintenanceError, Source, BYPASS_HEADER};
use rail_core::secret::Secret;
use rail_testkit::{http_get, http_request, TestApp, TestDb, TestDir, TestRedis};

const KEY: &str = "rail:maintenance";

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
}

fn config(flag_file: Option<&std::path::Path>, redis_url: Option<&str>) -> Config {
    let mut config = Config::default();
    if let Some(path) = flag_file {
        path.clone_into(&mut config.maintenance.flag_file);
    }
    if let Some(url) = redis_url {
        config.redis.url = Secret::new(url);
    }
    config.redis.connect_timeout = rail_core::config::HumanDuration::from_secs(2);
    config
}

/// A Redis URL nothing answers on.
fn dead_redis_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    format!("redis://127.0.0.1:{port}/0")
}

#[test]
fn enable_writes_both_signals_and_disable_removes_them() {
    let dir = TestDir::new();
    let redis = TestRedis::new();
    // The parent directory does not exist yet: enable creates it.
    let flag = dir.join("run/maintenance/flag.json");
    let cfg = config(Some(&flag), Some(redis.url()));

    let state = block_on(maintenance::enable(
        &cfg,
        "20240115T143022Z-ab12",
        "deploy v2",
        Duration::from_secs(600),
    ))
    .unwrap();
    assert!(state.warnings.is_empty(), "{:?}", state.warnings);
    assert!(state.redis_key_set);
    assert_eq!(state.expires_at - state.since, chrono::Duration::seconds(600));

    let meta = fs_err::metadata(&flag).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o644);
    let file: serde_json::Value =
        serde_json::from_str(&fs_err::read_to_string(&flag).unwrap()).unwrap();
    let mut keys: Vec<&str> = file.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["bypass_token", "expires_at", "reason", "run_id", "since"]);
    assert_eq!(file["run_id"], "20240115T143022Z-ab12");
    assert_eq!(file["reason"], "deploy v2");
    let token = file["bypass_token"].as_str().unwrap();
    assert_eq!(token.len(), 32);
    assert_eq!(token, state.bypass_token.expose());
    assert_eq!(bypass_header(&state).0, "X-Rail-Maintenance-Bypass");
    // No temporary file is left beside the flag.
    assert_eq!(fs_err::read_dir(flag.parent().unwrap()).unwrap().count(), 1);

    // The key holds the same document, with the TTL.
    let value: serde_json::Value = serde_json::from_str(&redis.get(KEY).unwrap()).unwrap();
    assert_eq!(value, file);
    let ttl = redis.cmd(&["TTL", KEY]).as_int().unwrap();
    assert!((590..=600).contains(&ttl), "ttl {ttl}");

    let status = block_on(maintenance::status(&cfg)).unwrap();
    assert!(status.is_on());
    let info = status.info.unwrap();
    assert_eq!(info.source, Source::Both);
    assert_eq!(info.run_id.as_deref(), Some("20240115T143022Z-ab12"));
    assert_eq!(info.reason.as_deref(), Some("deploy v2"));
    assert_eq!(info.since, Some(state.since));
    assert!(!info.expired);
    assert_eq!(info.bypass_token.unwrap().expose(), token);

    let warnings = block_on(maintenance::disable(&cfg)).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(!flag.exists());
    assert_eq!(redis.get(KEY), None);
    let status = block_on(maintenance::status(&cfg)).unwrap();
    assert!(status.info.is_none() && !status.is_on());
    // Disabling twice is fine.
    assert!(block_on(maintenance::disable(&cfg)).unwrap().is_empty());
}

#[test]
fn an_expired_flag_file_counts_as_off() {
    let dir = TestDir::new();
    let flag = dir.write(
        "flag.json",
        r#"{"since":"2024-01-15T14:30:22Z","run_id":"old-run","reason":"deploy","expires_at":"2024-01-15T15:00:22Z","bypass_token":"x"}"#,
    );
    let cfg = config(Some(&flag), None);
    let status = block_on(maintenance::status(&cfg)).unwrap();
    assert!(!status.is_on());
    let info = status.info.unwrap();
    assert!(info.expired);
    assert_eq!(info.run_id.as_deref(), Some("old-run"));
}

#[test]
fn a_garbled_flag_file_counts_as_on() {
    let dir = TestDir::new();
    let flag = dir.write("flag.json", "{ not json");
    let status = block_on(maintenance::status(&config(Some(&flag), None))).unwrap();
    assert!(status.is_on());
    assert_eq!(status.info.unwrap().problem.as_deref(), Some("unreadable flag file"));
}

#[test]
fn redis_down_still_closes_the_site_through_the_flag_file() {
    let dir = TestDir::new();
    let flag = dir.join("flag.json");
    let url = dead_redis_url();
    let cfg = config(Some(&flag), Some(&url));
    let state =
        block_on(maintenance::enable(&cfg, "run-1", "deploy", Duration::from_secs(60))).unwrap();
    assert!(flag.exists());
    assert!(!state.redis_key_set);
    assert_eq!(state.warnings.len(), 1);
    assert!(state.warnings[0].contains("cannot reach Redis"), "{:?}", state.warnings);
    assert!(state.warnings[0].contains("flag file only"), "{:?}", state.warnings);

    let status = block_on(maintenance::status(&cfg)).unwrap();
    assert!(status.is_on());
    assert_eq!(status.info.unwrap().source, Source::File);
    assert_eq!(status.warnings.len(), 1);

    let warnings = block_on(maintenance::disable(&cfg)).unwrap();
    assert!(!flag.exists());
    assert_eq!(warnings.len(), 1);
}

#[test]
fn redis_as_the_only_signal_must_work() {
    let url = dead_redis_url();
    let cfg = config(None, Some(&url));
    let err = block_on(maintenance::enable(&cfg, "run-1", "deploy", Duration::from_secs(60)))
        .unwrap_err();
    assert!(matches!(err, MaintenanceError::RedisConnect { .. }), "{err:?}");
    assert_eq!(err.to_string(), "cannot reach Redis for the maintenance key `rail:maintenance`");
    assert!(block_on(maintenance::status(&cfg)).is_err());

    let nothing = config(None, None);
    let err =
        block_on(maintenance::enable(&nothing, "r", "d", Duration::from_secs(60))).unwrap_err();
    assert!(matches!(err, MaintenanceError::NotConfigured), "{err:?}");
}

#[test]
fn the_redis_key_alone_expires_by_its_ttl() {
    let redis = TestRedis::new();
    let cfg = config(None, Some(redis.url()));
    let state =
        block_on(maintenance::enable(&cfg, "run-1", "deploy", Duration::from_millis(200))).unwrap();
    // Redis TTLs are whole seconds: the shortest maintenance is one second.
    assert_eq!(state.expires_at - state.since, chrono::Duration::seconds(1));
    let ttl = redis.cmd(&["PTTL", KEY]).as_int().unwrap();
    assert!((1..=1000).contains(&ttl), "pttl {ttl}");
    let status = block_on(maintenance::status(&cfg)).unwrap();
    assert_eq!(status.info.unwrap().source, Source::Redis);
}

#[test]
fn the_demo_app_closes_and_lets_the_bypass_through() {
    let db = TestDb::new();
    let redis = TestRedis::new();
    let app = TestApp::start("v1", &db, &redis);
    let cfg = config(Some(&app.maintenance_file()), Some(redis.url()));
    let graphql = app.graphql_url();
    let query = r#"{"query":"{ __typename }"}"#;
    let post = |headers: &[(&str, &str)]| {
        let mut all = vec![("Content-Type", "application/json"), ("Accept", "application/json")];
        all.extend_from_slice(headers);
        http_request("POST", &graphql, &all, Some(query)).unwrap()
    };
    assert_eq!(post(&[]).status, 200);

    let state = block_on(maintenance::enable(
        &cfg,
        "20240115T143022Z-ab12",
        "deploy v2",
        Duration::from_secs(300),
    ))
    .unwrap();
    let closed = post(&[]);
    assert_eq!(closed.status, 503, "{}", closed.body);
    let retry_after: u64 = closed.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=300).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(closed.json()["status"], "maintenance");
    assert!(!closed.body.contains(state.bypass_token.expose()));

    // /health/ answers during maintenance and says so, without the token.
    let health = http_get(&app.health_url()).unwrap();
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["maintenance"]["run_id"], "20240115T143022Z-ab12");
    assert!(!health.body.contains(state.bypass_token.expose()));

    let (name, token) = bypass_header(&state);
    assert_eq!(name, BYPASS_HEADER);
    assert_eq!(post(&[(name, token.expose())]).status, 200);
    assert_eq!(post(&[(name, "0123456789abcdef0123456789abcdef")]).status, 503);

    block_on(maintenance::disable(&cfg)).unwrap();
    assert_eq!(post(&[]).status, 200);
}
