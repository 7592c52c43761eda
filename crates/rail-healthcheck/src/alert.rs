//! Health alerts (`--alert-on-failure`): what is sent when a check goes critical or recovers.
//!
//! Every alert is logged on stderr (`alert: …`) and sent through the configured notifications of
//! `rail_core::notify` (Slack, webhook, email); a channel that fails is reported and never fails the run.

use rail_core::config::NotificationsConfig;
use rail_core::health::{CheckName, Status};
use rail_core::notify::{self, Event, Notification};
use rail_core::output;

/// One alert: a check changed state (or, for a single run, is critical).
#[derive(Debug, Clone)]
pub struct Alert {
    pub environment: String,
    pub check: CheckName,
    /// `None` on the first run of a monitor and for a single run.
    pub previous: Option<Status>,
    pub status: Status,
    pub message: String,
}

impl Alert {
    /// One line for logs and chat: `redis critical (was healthy) in production: no answer within 2s`.
    pub fn summary(&self) -> String {
        let was = self.previous.map(|p| format!(" (was {p})")).unwrap_or_default();
        let env = if self.environment.is_empty() {
            String::new()
        } else {
            format!(" in {}", self.environment)
        };
        format!("{} {}{was}{env}: {}", self.check, self.status, self.message)
    }
}

/// Where alerts go. Sending never fails the run: a sink logs its own failures.
pub(crate) trait AlertSink {
    async fn send(&self, alert: &Alert);
}

/// Logs each alert to stderr as `alert: …` and sends it to the configured notification channels.
pub(crate) struct NotifySink<'a> {
    pub(crate) config: &'a NotificationsConfig,
    /// Stands in for a run id in the notifications: `healthcheck@<host>`.
    pub(crate) source: String,
}

impl AlertSink for NotifySink<'_> {
    async fn send(&self, alert: &Alert) {
        output::stderr_line(&format!("alert: {}", alert.summary()));
        let event = if alert.status == Status::Critical {
            Event::HealthAlert
        } else {
            Event::HealthRecovered
        };
        let mut notification = Notification::new(event, &self.source, &alert.environment)
            .message(alert.summary())
            .outcome(alert.status.as_str())
            .detail("check", alert.check.as_str());
        if let Some(previous) = alert.previous {
            notification = notification.detail("previous status", previous.as_str());
        }
        for delivery in notify::send_all(self.config, &notification).await {
            if !delivery.ok {
                output::stderr_line(&format!(
                    "warning: the health alert was not delivered by {} after {} attempt(s): {}",
                    delivery.channel,
                    delivery.attempts,
                    delivery.error.unwrap_or_default()
                ));
            }
        }
    }
}

/// Whether a change from `previous` to `current` deserves an alert: going critical, or recovering from it.
pub(crate) fn worth_alerting(previous: Option<Status>, current: Status) -> bool {
    match previous {
        None => current == Status::Critical,
        Some(p) => p != current && (p == Status::Critical || current == Status::Critical),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_on_critical_and_recovery_only() {
        assert!(worth_alerting(None, Status::Critical));
        assert!(!worth_alerting(None, Status::Warning));
        assert!(worth_alerting(Some(Status::Healthy), Status::Critical));
        assert!(worth_alerting(Some(Status::Critical), Status::Healthy));
        assert!(!worth_alerting(Some(Status::Healthy), Status::Warning));
        assert!(!worth_alerting(Some(Status::Critical), Status::Critical));
    }

    #[test]
    fn summary_names_check_state_and_environment() {
        let a = Alert {
            environment: "production".into(),
            check: CheckName::Redis,
            previous: Some(Status::Healthy),
            status: Status::Critical,
            message: "no answer within 2s".into(),
        };
        assert_eq!(a.summary(), "redis critical (was healthy) in production: no answer within 2s");
    }
}
