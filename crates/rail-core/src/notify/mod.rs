//! Notifications of deploys, rollbacks and health alerts: Slack, a generic JSON webhook, and email.
//!
//! A notification is a side effect nobody may wait on: [`send_all`] never returns an error, sends to every
//! enabled channel at once, gives each attempt `notifications.timeout` and each channel at most
//! `notifications.retries` more attempts with a growing pause, and reports what happened per channel as a
//! [`Delivery`]. A failure is logged and handed back, never raised, so it cannot fail or block the deploy
//! or rollback that sent it.
//!
//! Nothing secret leaves through a notification: the text is scrubbed of the channel's own secrets before it
//! is sent, webhook URLs are logged as their host only, and server errors are scrubbed before they are
//! logged or reported.

mod email;
mod http;
mod payload;
#[cfg(test)]
mod tests;

use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use self::payload::{email_message, slack_payload, webhook_payload, EmailText};
use crate::config::NotificationsConfig;
use crate::secret::{scrub, Secret};

/// Pause before the second attempt; it doubles for each further one, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(300);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A deploy finished and the app is healthy on the new version.
    DeploySucceeded,
    /// A deploy failed and was not rolled back (`--no-rollback`, or it failed before the backup).
    DeployFailed,
    /// A deploy failed and rolled itself back to the state before it.
    RolledBack,
    /// A rollback an operator asked for finished.
    RollbackSucceeded,
    /// A rollback failed: the system needs a human.
    RollbackFailed,
    /// A health check went critical.
    HealthAlert,
    /// Every health check is healthy again after an alert.
    HealthRecovered,
    /// A backup set could not be copied to the remote (the deploy itself is not affected).
    UploadFailed,
}

/// How an event looks: green, yellow or red.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Good,
    Warning,
    Danger,
}

impl Severity {
    /// The colour name Slack attachments understand.
    pub fn slack_color(self) -> &'static str {
        match self {
            Self::Good => "good",
            Self::Warning => "warning",
            Self::Danger => "danger",
        }
    }
}

impl Event {
    /// The stable name used in webhook payloads: `deploy_succeeded`, `rolled_back`…
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DeploySucceeded => "deploy_succeeded",
            Self::DeployFailed => "deploy_failed",
            Self::RolledBack => "rolled_back",
            Self::RollbackSucceeded => "rollback_succeeded",
            Self::RollbackFailed => "rollback_failed",
            Self::HealthAlert => "health_alert",
            Self::HealthRecovered => "health_recovered",
            Self::UploadFailed => "upload_failed",
        }
    }

    /// A short human title.
    pub fn title(self) -> &'static str {
        match self {
            Self::DeploySucceeded => "Deploy succeeded",
            Self::DeployFailed => "Deploy failed",
            Self::RolledBack => "Deploy failed and was rolled back",
            Self::RollbackSucceeded => "Rollback succeeded",
            Self::RollbackFailed => "Rollback failed",
            Self::HealthAlert => "Health alert",
            Self::HealthRecovered => "Health recovered",
            Self::UploadFailed => "Off-site backup failed",
        }
    }

    /// The outcome word a notification carries unless the caller gives its own.
    pub fn default_outcome(self) -> &'static str {
        match self {
            Self::DeploySucceeded | Self::RollbackSucceeded => "succeeded",
            Self::DeployFailed | Self::RollbackFailed => "failed",
            Self::RolledBack => "rolled back",
            Self::HealthAlert => "critical",
            Self::HealthRecovered => "healthy",
            Self::UploadFailed => "upload failed",
        }
    }

    pub fn severity(self) -> Severity {
        match self {
            Self::DeploySucceeded | Self::RollbackSucceeded | Self::HealthRecovered => {
                Severity::Good
            }
            Self::RolledBack | Self::UploadFailed => Severity::Warning,
            Self::DeployFailed | Self::RollbackFailed | Self::HealthAlert => Severity::Danger,
        }
    }

    /// Whether the configuration asks for this event (`on_success`, `on_failure`, `on_rollback`,
    /// `on_health_alert`). A failed rollback leaves the system needing a human, so either `on_failure` or
    /// `on_rollback` is enough for it.
    pub fn wanted(self, cfg: &NotificationsConfig) -> bool {
        match self {
            Self::DeploySucceeded => cfg.on_success,
            Self::DeployFailed | Self::UploadFailed => cfg.on_failure,
            Self::RolledBack | Self::RollbackSucceeded => cfg.on_rollback,
            Self::RollbackFailed => cfg.on_failure || cfg.on_rollback,
            Self::HealthAlert | Self::HealthRecovered => cfg.on_health_alert,
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One notification: what happened to which run, and the facts an operator wants first.
#[derive(Debug, Clone)]
pub struct Notification {
    pub event: Event,
    pub run_id: String,
    pub environment: String,
    /// `succeeded`, `failed`, `rolled back`… ([`Event::default_outcome`] unless set).
    pub outcome: String,
    pub duration: Option<Duration>,
    /// The backup set taken by the deploy, or restored by the rollback.
    pub backup: Option<String>,
    pub app_version_from: Option<String>,
    pub app_version_to: Option<String>,
    pub schema_version: Option<String>,
    /// One or two sentences: what happened, or the error.
    pub message: String,
    /// Further facts, in order (failed step, failed checks…).
    pub details: Vec<(String, String)>,
    pub timestamp: DateTime<Utc>,
}

impl Notification {
    /// A notification of `event` for `run_id` in `environment`, stamped now.
    pub fn new(event: Event, run_id: impl Into<String>, environment: impl Into<String>) -> Self {
        Self {
            event,
            run_id: run_id.into(),
            environment: environment.into(),
            outcome: event.default_outcome().to_owned(),
            duration: None,
            backup: None,
            app_version_from: None,
            app_version_to: None,
            schema_version: None,
            message: String::new(),
            details: Vec::new(),
            timestamp: Utc::now(),
        }
    }

    #[must_use]
    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    #[must_use]
    pub fn outcome(mut self, outcome: impl Into<String>) -> Self {
        self.outcome = outcome.into();
        self
    }

    #[must_use]
    pub fn duration(mut self, duration: Duration) -> Self {
        self.duration = Some(duration);
        self
    }

    #[must_use]
    pub fn backup(mut self, name: impl Into<String>) -> Self {
        self.backup = Some(name.into());
        self
    }

    /// The app version before and after (either may be unknown).
    #[must_use]
    pub fn app_versions(mut self, from: Option<String>, to: Option<String>) -> Self {
        self.app_version_from = from;
        self.app_version_to = to;
        self
    }

    #[must_use]
    pub fn schema_version(mut self, version: impl Into<String>) -> Self {
        self.schema_version = Some(version.into());
        self
    }

    #[must_use]
    pub fn detail(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.details.push((name.into(), value.into()));
        self
    }

    /// A copy with every secret replaced by `***` in every text field.
    #[must_use]
    pub fn scrubbed(&self, secrets: &[Secret]) -> Self {
        let s = |text: &str| scrub(text, secrets);
        let o = |text: &Option<String>| text.as_deref().map(s);
        Self {
            event: self.event,
            run_id: s(&self.run_id),
            environment: s(&self.environment),
            outcome: s(&self.outcome),
            duration: self.duration,
            backup: o(&self.backup),
            app_version_from: o(&self.app_version_from),
            app_version_to: o(&self.app_version_to),
            schema_version: o(&self.schema_version),
            message: s(&self.message),
            details: self.details.iter().map(|(k, v)| (s(k), s(v))).collect(),
            timestamp: self.timestamp,
        }
    }
}

/// Where a notification went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Slack,
    Webhook,
    Email,
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Slack => "slack",
            Self::Webhook => "webhook",
            Self::Email => "email",
        })
    }
}

/// The result of sending to one channel.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub channel: Channel,
    pub ok: bool,
    /// Attempts made, the first included.
    pub attempts: u32,
    /// Why the last attempt failed (scrubbed of secrets); `None` when `ok`.
    pub error: Option<String>,
}

/// Why one attempt failed, and whether trying again could help.
#[derive(Debug)]
struct AttemptError {
    message: String,
    /// A bad address or a 4xx answer: the same request fails again, so it is not retried.
    permanent: bool,
}

impl AttemptError {
    fn transient(message: impl Into<String>) -> Self {
        Self { message: message.into(), permanent: false }
    }

    fn permanent(message: impl Into<String>) -> Self {
        Self { message: message.into(), permanent: true }
    }
}

/// The secrets of the notification channels, scrubbed from everything sent or reported.
fn channel_secrets(cfg: &NotificationsConfig) -> Vec<Secret> {
    let mut out =
        vec![cfg.slack.webhook_url.clone(), cfg.webhook.url.clone(), cfg.email.password.clone()];
    for value in cfg.webhook.headers.values() {
        out.push(value.clone());
        if let Some((_, token)) = value.expose().rsplit_once(' ') {
            out.push(Secret::new(token));
        }
    }
    for url in [&cfg.slack.webhook_url, &cfg.webhook.url] {
        // The path of a Slack webhook is its secret: a server may echo it back without the host.
        if let Ok(parsed) = url::Url::parse(url.expose()) {
            if parsed.path().len() > 1 {
                out.push(Secret::new(parsed.path()));
            }
            if let Some(password) = parsed.password() {
                out.push(Secret::new(password));
            }
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

/// Send `notification` to every enabled channel, concurrently, with per-attempt timeouts and bounded
/// retries. Returns one [`Delivery`] per enabled channel, or nothing when the configuration does not want
/// this event. Never fails and never panics on a channel's error.
pub async fn send_all(cfg: &NotificationsConfig, notification: &Notification) -> Vec<Delivery> {
    if !notification.event.wanted(cfg) {
        tracing::debug!(event = %notification.event, "notification not wanted by the configuration");
        return Vec::new();
    }
    let secrets = channel_secrets(cfg);
    let notification = notification.scrubbed(&secrets);
    let timeout = cfg.timeout.get();
    let client = (cfg.slack.enabled || cfg.webhook.enabled).then(|| http::client(timeout));

    let no_headers = std::collections::BTreeMap::new();
    let slack = async {
        if !cfg.slack.enabled {
            return None;
        }
        let body = slack_payload(&cfg.slack, &notification);
        let target = http::host_of(&cfg.slack.webhook_url);
        Some(
            deliver(Channel::Slack, &target, cfg, &secrets, || {
                http::post_json(client.as_ref(), &cfg.slack.webhook_url, &no_headers, &body)
            })
            .await,
        )
    };
    let webhook = async {
        if !cfg.webhook.enabled {
            return None;
        }
        let body = webhook_payload(&notification);
        let target = http::host_of(&cfg.webhook.url);
        Some(
            deliver(Channel::Webhook, &target, cfg, &secrets, || {
                http::post_json(client.as_ref(), &cfg.webhook.url, &cfg.webhook.headers, &body)
            })
            .await,
        )
    };
    let mail = async {
        if !cfg.email.enabled {
            return None;
        }
        let target = format!("{}:{}", cfg.email.smtp_server, cfg.email.smtp_port);
        let prepared = email::prepare(&cfg.email, &notification, timeout);
        Some(
            deliver(Channel::Email, &target, cfg, &secrets, || async {
                match &prepared {
                    Ok(prepared) => email::send(prepared).await,
                    Err(err) => Err(AttemptError::permanent(err.clone())),
                }
            })
            .await,
        )
    };
    let (slack, webhook, mail) = tokio::join!(slack, webhook, mail);
    [slack, webhook, mail].into_iter().flatten().collect()
}

/// Run `attempt` until it succeeds, fails permanently, or the retries are used up; each attempt is cut off
/// after `notifications.timeout`.
async fn deliver<F, Fut>(
    channel: Channel,
    target: &str,
    cfg: &NotificationsConfig,
    secrets: &[Secret],
    mut attempt: F,
) -> Delivery
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), AttemptError>>,
{
    let timeout = cfg.timeout.get();
    let max_attempts = cfg.retries.saturating_add(1);
    let started = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let result = match tokio::time::timeout(timeout, attempt()).await {
            Ok(result) => result,
            Err(_) => Err(AttemptError::transient(format!(
                "no answer within {}",
                crate::config::human_duration(timeout)
            ))),
        };
        match result {
            Ok(()) => {
                tracing::info!(
                    %channel,
                    target,
                    attempts,
                    duration_ms = started.elapsed().as_millis() as u64,
                    "notification sent"
                );
                return Delivery { channel, ok: true, attempts, error: None };
            }
            Err(err) => {
                let message = scrub(&err.message, secrets);
                if err.permanent || attempts >= max_attempts {
                    tracing::warn!(%channel, target, attempts, error = %message, "notification not sent");
                    return Delivery { channel, ok: false, attempts, error: Some(message) };
                }
                tracing::debug!(%channel, target, attempts, error = %message, "notification attempt failed, retrying");
                tokio::time::sleep(backoff(attempts)).await;
            }
        }
    }
}

/// The pause after failed attempt number `attempt` (1-based).
fn backoff(attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
    FIRST_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
}

/// `error: its source: its source…`, the way anyhow's `{:#}` shows a chain.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        // Some errors repeat their source in their own message.
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}
