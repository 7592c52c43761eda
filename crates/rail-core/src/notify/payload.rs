//! What each channel receives: the Slack attachment, the webhook's JSON document, the email's text.
//!
//! The webhook field names are a public interface (docs/notifications.md lists them): add fields, never
//! rename or remove one.

use std::fmt::Write as _;

use serde_json::{json, Value};

use super::Notification;
use crate::config::SlackConfig;

/// Slack's username when the configuration sets none.
const DEFAULT_USERNAME: &str = "rail";

/// The facts shared by every channel, as (title, value, short) in display order; absent facts are left out.
fn fields(n: &Notification) -> Vec<(String, String, bool)> {
    let mut out = vec![
        ("Environment".to_owned(), n.environment.clone(), true),
        ("Outcome".to_owned(), n.outcome.clone(), true),
        ("Run".to_owned(), n.run_id.clone(), true),
    ];
    if let Some(duration) = n.duration {
        out.push(("Duration".into(), crate::config::human_duration(duration), true));
    }
    if let Some(backup) = &n.backup {
        out.push(("Backup".into(), backup.clone(), true));
    }
    match (&n.app_version_from, &n.app_version_to) {
        (Some(from), Some(to)) if from != to => {
            out.push(("App version".into(), format!("{from} → {to}"), true));
        }
        (_, Some(version)) | (Some(version), None) => {
            out.push(("App version".into(), version.clone(), true));
        }
        (None, None) => {}
    }
    if let Some(schema) = &n.schema_version {
        out.push(("Schema version".into(), schema.clone(), true));
    }
    for (name, value) in &n.details {
        // Long values (an error's text) get a whole row.
        out.push((name.clone(), value.clone(), value.len() <= 40));
    }
    out
}

fn host() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default()
}

/// The Slack incoming-webhook payload: one coloured attachment with a field per fact.
pub fn slack_payload(cfg: &SlackConfig, n: &Notification) -> Value {
    let title = format!("{} ({})", n.event.title(), n.environment);
    let text = if n.message.is_empty() { n.event.title().to_owned() } else { n.message.clone() };
    let fields: Vec<Value> = fields(n)
        .into_iter()
        .map(|(title, value, short)| json!({ "title": title, "value": value, "short": short }))
        .collect();
    let mut payload = json!({
        "username": if cfg.username.is_empty() { DEFAULT_USERNAME } else { cfg.username.as_str() },
        "attachments": [{
            "color": n.event.severity().slack_color(),
            "title": title,
            "text": text,
            "fields": fields,
            "footer": format!("rail {} on {}", env!("CARGO_PKG_VERSION"), host()),
            "ts": n.timestamp.timestamp(),
        }],
    });
    if !cfg.channel.is_empty() {
        payload["channel"] = Value::String(cfg.channel.clone());
    }
    payload
}

/// The generic webhook's JSON document. Absent facts are `null`, so every field is always there.
pub fn webhook_payload(n: &Notification) -> Value {
    let details: Vec<Value> =
        n.details.iter().map(|(name, value)| json!({ "name": name, "value": value })).collect();
    json!({
        "event": n.event.as_str(),
        "title": n.event.title(),
        "severity": n.event.severity(),
        "run_id": n.run_id,
        "environment": n.environment,
        "outcome": n.outcome,
        "duration_ms": n.duration.map(|d| d.as_millis() as u64),
        "backup": n.backup,
        "app_version_from": n.app_version_from,
        "app_version_to": n.app_version_to,
        "schema_version": n.schema_version,
        "message": n.message,
        "details": details,
        "timestamp": n.timestamp.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "host": host(),
        "tool": "rail",
        "tool_version": env!("CARGO_PKG_VERSION"),
    })
}

/// Subject and plain-text body of a notification email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailText {
    pub subject: String,
    pub body: String,
}

/// The email: a subject naming the event, environment and run, and a body of `Name: value` lines.
pub fn email_message(n: &Notification) -> EmailText {
    let subject = format!("[rail] {}: {} (run {})", n.environment, n.event.title(), n.run_id);
    let mut body = String::new();
    body.push_str(n.event.title());
    body.push_str("\n\n");
    if !n.message.is_empty() {
        body.push_str(&n.message);
        body.push_str("\n\n");
    }
    for (name, value, _) in fields(n) {
        let _ = writeln!(body, "{name}: {value}");
    }
    let _ = write!(
        body,
        "Time: {}\nHost: {}\n\n-- \nrail {}\n",
        n.timestamp.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        host(),
        env!("CARGO_PKG_VERSION")
    );
    EmailText { subject, body }
}
