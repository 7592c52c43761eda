//! `--monitor`: a line per state change only, alerts on going critical and recovering, a clean stop.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use rail_testkit::ThrowawayRedis;

use crate::support::{Env, Receiver};

#[test]
fn monitor_prints_state_changes_only_and_alerts_on_failure_and_recovery() {
    let mut redis = ThrowawayRedis::start();
    let webhook = Receiver::start(200);
    let mut env = Env::stack();
    env.set("REDIS_URL", redis.url())
        .set("RAIL_HEALTH__REDIS__TIMEOUT", "1s")
        .set("RAIL_ENVIRONMENT", "staging")
        .set("RAIL_NOTIFICATIONS__WEBHOOK__ENABLED", "true")
        .set("RAIL_NOTIFICATIONS__WEBHOOK__URL", format!("{}/hook", webhook.url()));
    let metrics = env.dir.join("rail.prom");
    let mut running = env
        .cmd(&[
            "--monitor",
            "--interval",
            "100ms",
            "--check",
            "redis",
            "--alert-on-failure",
            "--export-metrics",
            metrics.to_str().unwrap(),
        ])
        .spawn();
    let wait_for = |what: &str, cond: &dyn Fn() -> bool| {
        let start = Instant::now();
        while !cond() {
            assert!(start.elapsed() < Duration::from_secs(20), "waited too long for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let status_in_file = |want: &str| {
        fs_err::read_to_string(&metrics).is_ok_and(|t| {
            t.contains(&format!("rail_health_check_status{{check=\"redis\"}} {want}"))
        })
    };
    wait_for("a healthy run", &|| status_in_file("0"));
    redis.stop();
    wait_for("redis to be seen critical", &|| status_in_file("2"));
    redis.restart();
    wait_for("redis to be seen healthy again", &|| status_in_file("0"));
    running.signal(Signal::SIGTERM);
    let out = running.wait();
    assert!(!out.timed_out, "{}", out.describe());
    out.assert_success();

    let lines: Vec<&str> = out.stdout.lines().collect();
    // The banner, then exactly three state lines for many runs: first seen, down, up again.
    assert!(lines[0].contains("monitoring redis every 100ms"), "{}", out.stdout);
    let redis_lines: Vec<&&str> = lines[1..].iter().filter(|l| l.contains(" redis ")).collect();
    assert_eq!(redis_lines.len(), 3, "{}", out.stdout);
    assert!(redis_lines[0].contains(" redis healthy: PING answered"), "{}", out.stdout);
    assert!(redis_lines[1].contains(" redis healthy -> critical: "), "{}", out.stdout);
    assert!(redis_lines[2].contains(" redis critical -> healthy: "), "{}", out.stdout);
    assert_eq!(lines.iter().filter(|l| l.contains(" overall ")).count(), 2, "{}", out.stdout);

    let alerts: Vec<&str> = out.stderr.lines().filter(|l| l.starts_with("alert: ")).collect();
    assert_eq!(alerts.len(), 2, "{}", out.stderr);
    assert!(alerts[0].starts_with("alert: redis critical (was healthy)"), "{}", out.stderr);
    assert!(alerts[1].starts_with("alert: redis healthy (was critical)"), "{}", out.stderr);

    // The same two alerts went out through the configured webhook.
    for (event, outcome) in [("health_alert", "critical"), ("health_recovered", "healthy")] {
        let request = webhook.next();
        assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", "/hook"));
        let body: serde_json::Value = serde_json::from_str(&request.body).unwrap();
        assert_eq!(body["event"], event, "{body:#}");
        assert_eq!(body["outcome"], outcome);
        assert_eq!(body["environment"], "staging");
        assert!(body["run_id"].as_str().unwrap().starts_with("healthcheck@"));
        assert!(body["message"].as_str().unwrap().starts_with("redis "), "{body:#}");
    }
}

#[test]
fn monitor_json_events_are_one_object_per_line() {
    let env = Env::stack();
    let mut running = env
        .cmd(&["--monitor", "--interval", "50ms", "--check", "redis", "--format", "json"])
        .spawn();
    std::thread::sleep(Duration::from_millis(600));
    running.signal(Signal::SIGINT);
    let out = running.wait();
    out.assert_success();
    let events: Vec<serde_json::Value> =
        out.stdout.lines().map(|l| serde_json::from_str(l).expect("each line is JSON")).collect();
    // Many runs, one state: one event.
    assert_eq!(events.len(), 1, "{}", out.stdout);
    assert_eq!(events[0]["check"], "redis");
    assert_eq!(events[0]["status"], "healthy");
    assert!(events[0]["previous"].is_null());
}
