//! Health alerts (`--alert-on-failure`): what is sent when a check goes critical or recovers.
//!
//! Sending is behind [`AlertSink`] so the channel (the notifications of `rail_core`, or a log line when
//! none is available) is chosen in one place.

use rail_core::health::{CheckName, Status};
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

/// Writes each alert to stderr as `alert: …`.
pub(crate) struct LogSink;

impl AlertSink for LogSink {
    async fn send(&self, alert: &Alert) {
        output::stderr_line(&format!("alert: {}", alert.summary()));
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
