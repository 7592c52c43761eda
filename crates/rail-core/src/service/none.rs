//! `services.backend = "none"`: no service control. Every action says so in the log and succeeds, so a
//! deploy of an app restarted by other means (a platform that watches the release) still runs.

use std::time::Duration;

use super::{Action, ServiceController, ServiceError, ServiceStatus};

#[derive(Debug, Clone, Copy, Default)]
pub struct NoneController;

fn skipped(action: Action, services: &[String]) {
    tracing::info!(
        services = %services.join(","),
        "no service control is configured (services.backend = \"none\"): {action} skipped"
    );
}

impl ServiceController for NoneController {
    fn backend(&self) -> &'static str {
        "none"
    }

    async fn stop(&self, services: &[String]) -> Result<(), ServiceError> {
        skipped(Action::Stop, services);
        Ok(())
    }

    async fn start(&self, services: &[String], _version: Option<&str>) -> Result<(), ServiceError> {
        skipped(Action::Start, services);
        Ok(())
    }

    async fn restart(
        &self,
        services: &[String],
        _version: Option<&str>,
    ) -> Result<(), ServiceError> {
        skipped(Action::Restart, services);
        Ok(())
    }

    async fn status(&self) -> Result<Vec<ServiceStatus>, ServiceError> {
        Ok(Vec::new())
    }

    async fn current_version(&self) -> Result<Option<String>, ServiceError> {
        Ok(None)
    }

    async fn wait_ready(
        &self,
        _services: &[String],
        _timeout: Duration,
    ) -> Result<(), ServiceError> {
        Ok(())
    }

    fn plan(&self, action: Action, _services: &[String], _version: Option<&str>) -> Vec<String> {
        vec![format!("# no service control configured: {action} skipped")]
    }
}
