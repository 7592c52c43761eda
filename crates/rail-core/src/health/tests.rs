use std::time::Duration;

use super::*;
use crate::config::{ByteSize, Config, HumanDuration};

fn config() -> Config {
    Config::default()
}

#[test]
fn names_parse_in_every_spelling_and_repeats_collapse() {
    let sel = parse_selection(&["graphql_endpoint", "database,redis", "db", "APP"]).unwrap();
    assert_eq!(
        sel,
        [CheckName::Graphql, CheckName::Database, CheckName::Redis, CheckName::Application]
    );
    let err = parse_selection(&["databse"]).unwrap_err().to_string();
    assert!(err.starts_with("unknown check `databse` (did you mean `database`?)"), "{err}");
    let err = parse_selection(&["zzz"]).unwrap_err().to_string();
    assert!(!err.contains("did you mean"), "{err}");
}

#[test]
fn statuses_order_from_healthy_to_critical() {
    assert!(Status::Healthy < Status::Warning && Status::Warning < Status::Critical);
    assert_eq!([Status::Healthy, Status::Warning, Status::Critical].map(Status::code), [0, 1, 2]);
}

#[test]
fn unconfigured_checks_say_what_to_set() {
    let cfg = config();
    assert!(not_configured(&cfg, CheckName::Database).unwrap().contains("DATABASE_URL"));
    assert!(not_configured(&cfg, CheckName::Redis).unwrap().contains("REDIS_URL"));
    assert!(not_configured(&cfg, CheckName::Application).unwrap().contains("APP_URL"));
    assert!(not_configured(&cfg, CheckName::Graphql).unwrap().contains("GRAPHQL_URL"));
    assert!(not_configured(&cfg, CheckName::Filesystem)
        .unwrap()
        .contains("health.filesystem.paths"));
    assert!(not_configured(&cfg, CheckName::Maintenance)
        .unwrap()
        .contains("RAIL_MAINTENANCE_FILE"));
    assert_eq!(not_configured(&cfg, CheckName::Performance), None);

    let mut cfg = config();
    cfg.redis.url = Secret::new("redis://127.0.0.1:1/0");
    cfg.app.url = "http://127.0.0.1:1".into();
    assert_eq!(not_configured(&cfg, CheckName::Redis), None);
    // The maintenance key lives in the configured Redis.
    assert_eq!(not_configured(&cfg, CheckName::Maintenance), None);
    assert_eq!(not_configured(&cfg, CheckName::Graphql), None);
}

#[test]
fn the_default_backup_directory_is_not_a_filesystem_path() {
    let mut cfg = config();
    assert!(filesystem_paths(&cfg).is_empty());
    cfg.app.static_dir = "/srv/static".into();
    cfg.backup.directory = "/srv/backups".into();
    assert_eq!(
        filesystem_paths(&cfg),
        [PathBuf::from("/srv/static"), PathBuf::from("/srv/backups")]
    );
    cfg.health.filesystem.paths = vec!["/only".into()];
    assert_eq!(filesystem_paths(&cfg), [PathBuf::from("/only")]);
}

#[test]
fn timeouts_come_from_the_flag_the_check_or_the_section() {
    let mut cfg = config();
    cfg.health.timeout = HumanDuration::from_secs(7);
    cfg.health.redis.timeout = Some(HumanDuration::from_millis(300));
    let opts = RunOptions::default();
    assert_eq!(check_timeout(&cfg, CheckName::Redis, &opts), Duration::from_millis(300));
    assert_eq!(check_timeout(&cfg, CheckName::Database, &opts), Duration::from_secs(7));
    assert_eq!(check_timeout(&cfg, CheckName::Filesystem, &opts), Duration::from_secs(7));
    let opts = RunOptions { timeout: Some(Duration::from_secs(1)), ..RunOptions::default() };
    assert_eq!(check_timeout(&cfg, CheckName::Redis, &opts), Duration::from_secs(1));
}

#[test]
fn bad_urls_are_configuration_errors_without_the_password() {
    let mut cfg = config();
    cfg.database.url = Secret::new("postgresql://u:hunter2@host:notaport/db");
    let err = validate(&cfg, &[]).unwrap_err().to_string();
    assert!(err.starts_with("invalid database URL"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    // Only the selected checks' settings matter.
    assert!(validate(&cfg, &[CheckName::Filesystem]).is_ok());

    let mut cfg = config();
    cfg.app.health_url = "ftp://host/health".into();
    let err = format!(
        "{:#}",
        anyhow::Error::from(validate(&cfg, &[CheckName::Application]).unwrap_err())
    );
    assert_eq!(err, "invalid health URL ftp://host/health: only http:// and https:// URLs with a host are supported");
}

fn run(cfg: &Config, selection: &[CheckName]) -> Report {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(run_checks(cfg, selection, &RunOptions::default()))
}

#[test]
fn filesystem_check_writes_and_measures_real_directories() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.health.filesystem.paths = vec![dir.path().to_owned()];
    cfg.health.filesystem.min_free_space = ByteSize(1);
    cfg.health.filesystem.min_free_percent = 0.0;
    cfg.health.filesystem.warning_free_percent = 0.0;
    let report = run(&cfg, &[CheckName::Filesystem]);
    let fs = report.get(CheckName::Filesystem).unwrap();
    assert_eq!(fs.status, Status::Healthy, "{}", fs.message);
    assert_eq!(fs.details["paths"][0]["writable"], true);
    assert!(fs.details["paths"][0]["free_bytes"].as_u64().unwrap() > 0);
    // The probe file is gone.
    assert_eq!(fs_err::read_dir(dir.path()).unwrap().count(), 0);

    cfg.health.filesystem.min_free_space = ByteSize(u64::MAX / 2);
    let fs = run(&cfg, &[CheckName::Filesystem]).checks.remove(0);
    assert_eq!(fs.status, Status::Critical);
    assert!(fs.message.contains("below the floor of"), "{}", fs.message);

    cfg.health.filesystem.paths = vec![dir.path().join("missing")];
    let fs = run(&cfg, &[CheckName::Filesystem]).checks.remove(0);
    assert_eq!(fs.status, Status::Critical);
    assert!(fs.message.ends_with("missing does not exist"), "{}", fs.message);
}

fn write_flag(
    path: &std::path::Path,
    since: chrono::DateTime<Utc>,
    expires: chrono::DateTime<Utc>,
) {
    let doc = serde_json::json!({
        "since": since.to_rfc3339(),
        "run_id": "20250101T000000Z-abc123",
        "reason": "deploy v2",
        "expires_at": expires.to_rfc3339(),
        "bypass_token": "do-not-print-me",
    });
    fs_err::write(path, doc.to_string()).unwrap();
}

#[test]
fn maintenance_flag_file_is_a_warning_then_stale_never_showing_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("flag.json");
    let mut cfg = config();
    cfg.maintenance.flag_file = flag.clone();

    let m = run(&cfg, &[CheckName::Maintenance]).checks.remove(0);
    assert_eq!((m.status, m.message.as_str()), (Status::Healthy, "maintenance off"));

    let now = Utc::now();
    write_flag(&flag, now - chrono::Duration::minutes(5), now + chrono::Duration::minutes(25));
    let report = run(&cfg, &[CheckName::Maintenance]);
    let m = &report.checks[0];
    assert_eq!(m.status, Status::Warning, "{}", m.message);
    assert!(m.message.contains("run 20250101T000000Z-abc123"), "{}", m.message);
    assert!(m.message.contains("5m ago"), "{}", m.message);
    assert_eq!(m.details["run_id"], "20250101T000000Z-abc123");
    assert!((299..=301).contains(&m.details["age_seconds"].as_u64().unwrap()));
    assert!(!serde_json::to_string(&report).unwrap().contains("do-not-print-me"));

    write_flag(&flag, now - chrono::Duration::hours(3), now + chrono::Duration::minutes(25));
    let m = run(&cfg, &[CheckName::Maintenance]).checks.remove(0);
    assert_eq!(m.status, Status::Critical);
    assert!(m.message.starts_with("stale: maintenance on for 3h"), "{}", m.message);

    // Expired: the app ignores the file, so the site is up.
    write_flag(&flag, now - chrono::Duration::hours(3), now - chrono::Duration::minutes(1));
    let m = run(&cfg, &[CheckName::Maintenance]).checks.remove(0);
    assert_eq!(m.status, Status::Healthy, "{}", m.message);
    assert!(m.message.contains("expired"), "{}", m.message);

    // Garbled: the app fails closed, so the site is down.
    fs_err::write(&flag, "{not json").unwrap();
    let m = run(&cfg, &[CheckName::Maintenance]).checks.remove(0);
    assert_eq!(m.status, Status::Warning, "{}", m.message);
    assert!(m.message.contains("unreadable signal"), "{}", m.message);
}

#[test]
fn json_keeps_the_older_shape_and_skips_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.health.filesystem.paths = vec![dir.path().to_owned()];
    cfg.health.filesystem.min_free_space = ByteSize(0);
    cfg.health.filesystem.min_free_percent = 0.0;
    cfg.health.filesystem.warning_free_percent = 0.0;
    let report = run(&cfg, &[]);
    let json = serde_json::to_value(&report).unwrap();
    for key in [
        "overall_status",
        "timestamp",
        "total_checks",
        "healthy_checks",
        "warning_checks",
        "critical_checks",
        "total_duration_ms",
        "checks",
        "skipped_checks",
    ] {
        assert!(json.get(key).is_some(), "missing {key} in {json}");
    }
    let names: Vec<&str> =
        json["checks"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["filesystem", "performance"]);
    for key in ["name", "status", "message", "details", "duration_ms", "timestamp"] {
        assert!(json["checks"][0].get(key).is_some(), "missing {key}");
    }
    let skipped: Vec<&str> = json["skipped_checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(skipped, ["database", "redis", "application", "graphql", "maintenance"]);
    assert_eq!(json["total_checks"], 2);
}

#[test]
fn refused_connections_are_critical_results_not_errors() {
    // A port nobody listens on: bind one, learn its number, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cfg = config();
    cfg.database.url = Secret::new(format!("postgresql://rail:pw@127.0.0.1:{port}/db"));
    cfg.redis.url = Secret::new(format!("redis://127.0.0.1:{port}/0"));
    cfg.app.url = format!("http://127.0.0.1:{port}");
    let report = run(
        &cfg,
        &[CheckName::Database, CheckName::Redis, CheckName::Application, CheckName::Graphql],
    );
    assert_eq!(report.checks.len(), 4);
    for c in &report.checks {
        assert_eq!(c.status, Status::Critical, "{}: {}", c.name, c.message);
        assert!(!c.message.contains("pw@"), "{}", c.message);
    }
    assert!(report.get(CheckName::Application).unwrap().message.contains("cannot connect"));
    assert!(report.is_critical());
}
