use std::time::Duration;

use super::*;
use crate::config::{NotificationsConfig, SlackConfig};

fn sample() -> Notification {
    Notification::new(Event::RolledBack, "20240115T143022Z-ab12", "production")
        .message("migration catalog.0003 failed; restored backup_20240115_143022")
        .duration(Duration::from_millis(63_400))
        .backup("backup_20240115_143022")
        .app_versions(Some("v2".into()), Some("v3".into()))
        .schema_version("1.4.0")
        .detail("failed step", "migrate")
}

#[test]
fn slack_payload_has_the_attachment_shape() {
    let cfg = SlackConfig {
        enabled: true,
        webhook_url: Secret::new("https://hooks.example/services/T/B/x"),
        channel: "#deployments".into(),
        username: String::new(),
    };
    let payload = slack_payload(&cfg, &sample());
    assert_eq!(payload["channel"], "#deployments");
    assert_eq!(payload["username"], "rail");
    let attachment = &payload["attachments"][0];
    assert_eq!(attachment["color"], "warning");
    assert_eq!(attachment["title"], "Deploy failed and was rolled back (production)");
    assert!(attachment["text"].as_str().unwrap().contains("catalog.0003"));
    assert!(attachment["ts"].as_i64().unwrap() > 1_600_000_000);
    let fields: Vec<(&str, &str)> = attachment["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["title"].as_str().unwrap(), f["value"].as_str().unwrap()))
        .collect();
    assert_eq!(
        fields,
        [
            ("Environment", "production"),
            ("Outcome", "rolled back"),
            ("Run", "20240115T143022Z-ab12"),
            ("Duration", "1m 3s"),
            ("Backup", "backup_20240115_143022"),
            ("App version", "v2 → v3"),
            ("Schema version", "1.4.0"),
            ("failed step", "migrate"),
        ]
    );
    assert!(!payload.to_string().contains("hooks.example"));
}

#[test]
fn slack_leaves_out_an_unset_channel_and_colours_by_severity() {
    let payload = slack_payload(
        &SlackConfig::default(),
        &Notification::new(Event::DeploySucceeded, "r", "staging"),
    );
    assert!(payload.get("channel").is_none());
    assert_eq!(payload["attachments"][0]["color"], "good");
    let failed =
        slack_payload(&SlackConfig::default(), &Notification::new(Event::RollbackFailed, "r", "e"));
    assert_eq!(failed["attachments"][0]["color"], "danger");
}

#[test]
fn webhook_payload_has_every_documented_field() {
    let payload = webhook_payload(&sample());
    let keys: Vec<&str> = payload.as_object().unwrap().keys().map(String::as_str).collect();
    let mut expected = vec![
        "app_version_from",
        "app_version_to",
        "backup",
        "details",
        "duration_ms",
        "environment",
        "event",
        "host",
        "message",
        "outcome",
        "run_id",
        "schema_version",
        "severity",
        "timestamp",
        "title",
        "tool",
        "tool_version",
    ];
    expected.sort_unstable();
    assert_eq!(keys, expected);
    assert_eq!(payload["event"], "rolled_back");
    assert_eq!(payload["severity"], "warning");
    assert_eq!(payload["duration_ms"], 63_400);
    assert_eq!(payload["details"][0]["name"], "failed step");
    assert_eq!(payload["details"][0]["value"], "migrate");
    let bare = webhook_payload(&Notification::new(Event::HealthAlert, "r", "e"));
    assert!(bare["backup"].is_null() && bare["duration_ms"].is_null());
}

#[test]
fn email_text_names_event_environment_and_run() {
    let text = email_message(&sample());
    assert_eq!(
        text.subject,
        "[rail] production: Deploy failed and was rolled back (run 20240115T143022Z-ab12)"
    );
    assert!(text.body.starts_with("Deploy failed and was rolled back\n\nmigration catalog.0003"));
    assert!(text.body.contains("\nRun: 20240115T143022Z-ab12\n"));
    assert!(text.body.contains("\nOutcome: rolled back\n"));
    assert!(text.body.contains("\nApp version: v2 → v3\n"));
}

#[test]
fn events_follow_the_on_flags() {
    let mut cfg = NotificationsConfig {
        on_success: false,
        on_failure: false,
        on_rollback: false,
        on_health_alert: false,
        ..NotificationsConfig::default()
    };
    assert!(!Event::DeploySucceeded.wanted(&cfg));
    assert!(!Event::RollbackFailed.wanted(&cfg));
    cfg.on_failure = true;
    assert!(Event::DeployFailed.wanted(&cfg));
    assert!(Event::RollbackFailed.wanted(&cfg));
    assert!(!Event::RolledBack.wanted(&cfg));
    cfg.on_failure = false;
    cfg.on_rollback = true;
    assert!(Event::RolledBack.wanted(&cfg) && Event::RollbackFailed.wanted(&cfg));
    assert!(!Event::HealthAlert.wanted(&cfg));
}

#[test]
fn scrubbing_reaches_every_text_field() {
    let secret = Secret::new("hunter22");
    let n = Notification::new(Event::DeployFailed, "run", "prod")
        .message("psql: password hunter22 rejected")
        .detail("url", "postgresql://u:hunter22@db/app");
    let clean = n.scrubbed(&[secret]);
    assert_eq!(clean.message, "psql: password *** rejected");
    assert_eq!(clean.details[0].1, "postgresql://u:***@db/app");
}

#[test]
fn channel_secrets_include_the_webhook_path_and_bearer_token() {
    let mut cfg = NotificationsConfig::default();
    cfg.slack.webhook_url = Secret::new("https://hooks.example/services/T0/B0/abc123");
    cfg.webhook.headers.insert("Authorization".into(), Secret::new("Bearer tok-987"));
    let secrets = channel_secrets(&cfg);
    assert_eq!(
        scrub("bad path /services/T0/B0/abc123 with tok-987", &secrets),
        "bad path *** with ***"
    );
}

#[test]
fn backoff_doubles_up_to_a_cap() {
    assert_eq!(backoff(1), Duration::from_millis(300));
    assert_eq!(backoff(2), Duration::from_millis(600));
    assert_eq!(backoff(3), Duration::from_millis(1200));
    assert_eq!(backoff(30), MAX_BACKOFF);
}

#[test]
fn host_of_never_shows_the_path() {
    assert_eq!(
        http::host_of(&Secret::new("https://hooks.slack.com/services/T/B/x")),
        "hooks.slack.com"
    );
    assert_eq!(http::host_of(&Secret::new("http://127.0.0.1:9000/hook")), "127.0.0.1:9000");
    assert_eq!(http::host_of(&Secret::new("nonsense")), "<invalid url>");
}

#[tokio::test]
async fn unwanted_events_send_nothing() {
    let mut cfg = NotificationsConfig { on_success: false, ..NotificationsConfig::default() };
    cfg.webhook.enabled = true;
    cfg.webhook.url = Secret::new("http://127.0.0.1:9/hook");
    let deliveries = send_all(&cfg, &Notification::new(Event::DeploySucceeded, "r", "e")).await;
    assert!(deliveries.is_empty());
}

#[tokio::test]
async fn bad_configuration_fails_at_once_without_retrying() {
    let mut cfg = NotificationsConfig { retries: 5, ..NotificationsConfig::default() };
    cfg.webhook.enabled = true;
    cfg.webhook.url = Secret::new("ftp://example/hook");
    cfg.email.enabled = true;
    cfg.email.smtp_server = "127.0.0.1".into();
    cfg.email.from_email = "rail@example.test".into();
    cfg.email.to_emails = vec!["not an address".into()];
    let deliveries = send_all(&cfg, &Notification::new(Event::DeployFailed, "r", "e")).await;
    assert_eq!(deliveries.len(), 2);
    for delivery in &deliveries {
        assert!(!delivery.ok);
        assert_eq!(delivery.attempts, 1, "{delivery:?}");
    }
    assert!(deliveries[0].error.as_deref().unwrap().contains("must be http or https"));
    assert!(deliveries[1].error.as_deref().unwrap().contains("invalid address `not an address`"));
}
