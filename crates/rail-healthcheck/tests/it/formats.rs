//! Output formats and exports: Prometheus text read back by a real parser, a push to a real HTTP
//! receiver, the metrics file, Nagios exit codes.

use std::io::BufRead;
use std::time::Duration;

use prometheus_parse::{Scrape, Value};

use crate::support::{maintenance_doc, Env, Receiver};

fn parse(text: &str) -> Scrape {
    Scrape::parse(std::io::Cursor::new(text.as_bytes()).lines())
        .expect("the Prometheus text parses")
}

/// The value of gauge `metric` with label `check`.
fn gauge(scrape: &Scrape, metric: &str, check: Option<&str>) -> f64 {
    let sample = scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && check.is_none_or(|c| s.labels.get("check") == Some(c)))
        .unwrap_or_else(|| panic!("no {metric} {check:?} in {:?}", scrape.samples));
    match sample.value {
        Value::Gauge(v) => v,
        ref other => panic!("{metric} is not a gauge: {other:?}"),
    }
}

#[test]
fn prometheus_output_parses_with_a_real_parser() {
    let env = Env::stack();
    env.dir.write("flag.json", maintenance_doc(Duration::from_secs(30), "run-p"));
    let out = env.run(&["--format", "prometheus"]);
    out.assert_success();
    let scrape = parse(&out.stdout);
    for check in ["database", "redis", "application", "graphql", "filesystem", "performance"] {
        assert_eq!(gauge(&scrape, "rail_health_check_status", Some(check)) as i64, 0, "{check}");
        assert!(gauge(&scrape, "rail_health_check_duration_seconds", Some(check)) > 0.0);
    }
    assert_eq!(gauge(&scrape, "rail_health_check_status", Some("maintenance")) as i64, 1);
    assert_eq!(gauge(&scrape, "rail_health_overall_status", None) as i64, 1);
    assert!(gauge(&scrape, "rail_health_last_run_timestamp_seconds", None) > 1.7e9);
    assert!(gauge(&scrape, "rail_health_database_max_connections", Some("database")) > 0.0);
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric == "rail_health_filesystem_free_bytes"
                && s.labels.get("path").is_some())
    );
    assert!(scrape.docs.contains_key("rail_health_check_status"));
}

#[test]
fn metrics_are_pushed_to_a_pushgateway_and_written_to_a_file() {
    let receiver = Receiver::start(200);
    let env = Env::stack();
    let prom = env.dir.join("textfile/rail.prom");
    let json = env.dir.join("textfile/health_metrics.json");
    fs_err::create_dir_all(prom.parent().unwrap()).unwrap();
    let args = [
        "--check",
        "database",
        "--check",
        "redis",
        "--prometheus-endpoint",
        &receiver.url(),
        "--export-metrics",
        prom.to_str().unwrap(),
    ];
    env.run(&args).assert_success();
    let request = receiver.next();
    assert_eq!(request.method, "PUT");
    let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
    assert_eq!(request.path, format!("/metrics/job/rail_healthcheck/instance/{host}"));
    assert!(request
        .headers
        .iter()
        .any(|(k, v)| k == "content-type" && v.starts_with("text/plain; version=0.0.4")));
    let pushed = parse(&request.body);
    assert_eq!(gauge(&pushed, "rail_health_check_status", Some("redis")) as i64, 0);

    let written = parse(&fs_err::read_to_string(&prom).unwrap());
    assert_eq!(gauge(&written, "rail_health_check_status", Some("database")) as i64, 0);
    // Nothing but the file itself: the temporary file was renamed into place.
    assert_eq!(fs_err::read_dir(prom.parent().unwrap()).unwrap().count(), 1);

    // The older tool's `--export-metrics health_metrics.json` still gets JSON.
    env.run(&["--check", "redis", "--export-metrics", json.to_str().unwrap()]).assert_success();
    let report: serde_json::Value =
        serde_json::from_str(&fs_err::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["overall_status"], "healthy");
}

#[test]
fn a_failed_push_is_reported_and_fails_the_run() {
    let receiver = Receiver::start(500);
    let env = Env::stack();
    let out = env.run(&["--check", "redis", "--prometheus-endpoint", &receiver.url()]);
    out.assert_code(1);
    assert!(out.stderr.contains("pushing metrics to http://127.0.0.1:"), "{}", out.describe());
    assert!(out.stderr.contains("HTTP 500"), "{}", out.describe());
    // The health result itself was still printed.
    assert!(out.stdout.starts_with("healthy  redis"), "{}", out.stdout);
}

#[test]
fn nagios_mode_maps_statuses_to_plugin_exit_codes() {
    let mut env = Env::stack();
    let out = env.run(&["--nagios", "--check", "redis"]);
    out.assert_code(0);
    assert!(out.stdout.starts_with("RAIL HEALTH OK - 1 checks healthy | redis="), "{}", out.stdout);

    env.dir.write("flag.json", maintenance_doc(Duration::from_secs(30), "run-n"));
    let out = env.run(&["--nagios", "--check", "maintenance"]);
    out.assert_code(1);
    assert!(
        out.stdout.starts_with("RAIL HEALTH WARNING - maintenance: maintenance on since"),
        "{}",
        out.stdout
    );

    env.set("RAIL_HEALTH__FILESYSTEM__MIN_FREE_SPACE", "1000000TiB");
    env.run(&["--nagios", "--check", "filesystem"]).assert_code(2);

    // A configuration error is UNKNOWN.
    env.unset("REDIS_URL");
    env.run(&["--nagios", "--check", "redis"]).assert_code(3);
}

#[test]
fn verbose_text_shows_details_and_json_keeps_the_older_shape() {
    let env = Env::stack();
    let out = env.run(&["--check", "database", "-v"]);
    out.assert_success();
    assert!(out.stdout.contains("max_connections: "), "{}", out.stdout);
    let report = env.run(&["--check", "database", "--format", "json"]).json();
    let keys: Vec<&String> = report.as_object().unwrap().keys().collect();
    for key in [
        "overall_status",
        "timestamp",
        "total_checks",
        "healthy_checks",
        "warning_checks",
        "critical_checks",
        "total_duration_ms",
        "checks",
    ] {
        assert!(keys.iter().any(|k| *k == key), "missing {key}");
    }
    let c = &report["checks"][0];
    for key in ["name", "status", "message", "details", "duration_ms", "timestamp"] {
        assert!(c.get(key).is_some(), "missing {key} in {c:#}");
    }
}
