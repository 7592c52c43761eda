//! `services.backend = "compose"`: `docker compose -f FILE [-p PROJECT] stop|up -d|restart SERVICE…`, the
//! app version passed as `IMAGE_TAG` (`compose.version_variable`) in the environment, for the compose file
//! to use as `image: app:${IMAGE_TAG}`.
//!
//! A start or a restart onto a version is `up -d --wait`: compose recreates the containers whose image
//! changed and waits until they run (and are healthy, when they have a health check). A plain restart is
//! `restart`, then the same wait by polling `ps`.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::{
    image_tag, poll_until, secs, validate_version, Action, ServiceController, ServiceError,
    ServiceState, ServiceStatus,
};
use crate::config::Config;
use crate::process::Cmd;

const BACKEND: &str = "compose";

/// The `compose` backend.
#[derive(Debug, Clone)]
pub struct ComposeController {
    program: std::path::PathBuf,
    file: std::path::PathBuf,
    project: String,
    services: Vec<String>,
    version_variable: String,
    start_timeout: Duration,
    stop_timeout: Duration,
}

impl ComposeController {
    pub fn from_config(config: &Config) -> Result<Self, ServiceError> {
        let c = &config.services.compose;
        if c.file.as_os_str().is_empty() {
            return Err(ServiceError::NotConfigured {
                backend: BACKEND,
                key: "services.compose.file",
            });
        }
        Ok(Self {
            program: c.program.clone(),
            file: c.file.clone(),
            project: c.project.clone(),
            services: c.services.clone(),
            version_variable: c.version_variable.clone(),
            start_timeout: config.services.start_timeout.get(),
            stop_timeout: config.services.stop_timeout.get(),
        })
    }

    /// The configured services, else the ones given.
    fn targets<'a>(&'a self, services: &'a [String]) -> &'a [String] {
        if self.services.is_empty() {
            services
        } else {
            &self.services
        }
    }

    fn base(&self) -> Cmd {
        let mut cmd = Cmd::new(&self.program).arg("compose").arg("-f").arg(&self.file);
        if !self.project.is_empty() {
            cmd = cmd.arg("-p").arg(&self.project);
        }
        cmd
    }

    /// `stop --timeout N SERVICE…`: compose's own grace period is `services.stop_timeout`.
    pub fn stop_command(&self, services: &[String]) -> Cmd {
        self.base()
            .args(["stop", "--timeout", &secs(self.stop_timeout)])
            .args(self.targets(services))
            // Compose waits the grace period, then kills: give it a little more.
            .timeout(self.stop_timeout + Duration::from_secs(15))
    }

    /// `up -d --wait --wait-timeout N SERVICE…`, with the version in the environment.
    pub fn up_command(
        &self,
        services: &[String],
        version: Option<&str>,
    ) -> Result<Cmd, ServiceError> {
        let mut cmd = self
            .base()
            .args(["up", "-d", "--wait", "--wait-timeout", &secs(self.start_timeout)])
            .args(self.targets(services))
            .timeout(self.start_timeout + Duration::from_secs(15));
        if let Some(version) = version {
            validate_version(version)?;
            cmd = cmd.env(&self.version_variable, version);
        }
        Ok(cmd)
    }

    /// `restart --timeout N SERVICE…` (same containers, same image).
    pub fn restart_command(&self, services: &[String]) -> Cmd {
        self.base()
            .args(["restart", "--timeout", &secs(self.stop_timeout)])
            .args(self.targets(services))
            .timeout(self.stop_timeout + self.start_timeout)
    }

    /// `ps --all --format json SERVICE…`.
    pub fn ps_command(&self, services: &[String]) -> Cmd {
        self.base()
            .args(["ps", "--all", "--format", "json"])
            .args(self.targets(services))
            .timeout(self.start_timeout.min(Duration::from_secs(30)))
    }

    async fn run(cmd: &Cmd, action: Action) -> Result<(), ServiceError> {
        cmd.run().await.map_err(|source| ServiceError::Command { backend: BACKEND, action, source })
    }

    async fn ps(&self, services: &[String]) -> Result<Vec<ServiceStatus>, ServiceError> {
        let cmd = self.ps_command(services);
        let output = cmd.output().await.map_err(|source| ServiceError::Command {
            backend: BACKEND,
            action: Action::Status,
            source,
        })?;
        parse_ps(&output.stdout_text())
            .map_err(|detail| ServiceError::Output { command: cmd.display(), detail })
    }

    /// `None` when every target container runs (and is healthy if it has a check).
    async fn check(&self, services: &[String]) -> Result<Option<String>, ServiceError> {
        let statuses = self.ps(services).await?;
        if statuses.is_empty() {
            return Ok(Some("no container yet".into()));
        }
        let waiting: Vec<String> = statuses
            .iter()
            .filter(|s| s.state != ServiceState::Running)
            .map(|s| format!("{} is {}", s.name, s.detail.as_deref().unwrap_or("not running")))
            .collect();
        Ok((!waiting.is_empty()).then(|| waiting.join(", ")))
    }
}

/// Containers from `docker compose ps --format json`: a JSON array (older compose) or one object per line.
fn parse_ps(text: &str) -> Result<Vec<ServiceStatus>, String> {
    let text = text.trim();
    let items: Vec<Value> = if text.is_empty() {
        Vec::new()
    } else if text.starts_with('[') {
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?
    } else {
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).map_err(|e| format!("not JSON: {e}")))
            .collect::<Result<_, _>>()?
    };
    Ok(items
        .iter()
        .map(|item| {
            let field = |name: &str| item.get(name).and_then(Value::as_str).unwrap_or_default();
            let state = field("State");
            let health = field("Health");
            let state = match (state, health) {
                ("running", "" | "healthy") => ServiceState::Running,
                ("running" | "restarting" | "created", _) => ServiceState::Starting,
                ("exited" | "dead" | "removing", _)
                    if item.get("ExitCode").and_then(Value::as_i64).unwrap_or(0) != 0 =>
                {
                    ServiceState::Failed
                }
                ("exited" | "dead" | "removing" | "paused", _) => ServiceState::Stopped,
                _ => ServiceState::Unknown,
            };
            let name = if field("Service").is_empty() { field("Name") } else { field("Service") };
            let status_text = field("Status");
            ServiceStatus {
                name: name.to_owned(),
                state,
                pid: None,
                version: image_tag(field("Image")),
                detail: (!status_text.is_empty()).then(|| status_text.to_owned()),
            }
        })
        .collect())
}

impl ServiceController for ComposeController {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn stop(&self, services: &[String]) -> Result<(), ServiceError> {
        Self::run(&self.stop_command(services), Action::Stop).await
    }

    async fn start(&self, services: &[String], version: Option<&str>) -> Result<(), ServiceError> {
        Self::run(&self.up_command(services, version)?, Action::Start).await
    }

    async fn restart(
        &self,
        services: &[String],
        version: Option<&str>,
    ) -> Result<(), ServiceError> {
        if version.is_some() {
            // A new image needs new containers: `up` recreates what changed, and waits.
            return Self::run(&self.up_command(services, version)?, Action::Restart).await;
        }
        let started = Instant::now();
        Self::run(&self.restart_command(services), Action::Restart).await?;
        self.wait_ready(services, self.start_timeout.saturating_sub(started.elapsed())).await
    }

    async fn status(&self) -> Result<Vec<ServiceStatus>, ServiceError> {
        self.ps(&[]).await
    }

    async fn current_version(&self) -> Result<Option<String>, ServiceError> {
        Ok(self.ps(&[]).await?.into_iter().find_map(|s| s.version))
    }

    async fn wait_ready(&self, services: &[String], timeout: Duration) -> Result<(), ServiceError> {
        poll_until(BACKEND, timeout, || self.check(services)).await
    }

    fn plan(&self, action: Action, services: &[String], version: Option<&str>) -> Vec<String> {
        let up = || match self.up_command(services, version) {
            Ok(cmd) => cmd.display(),
            Err(err) => format!("# {err}"),
        };
        match action {
            Action::Stop => vec![self.stop_command(services).display()],
            Action::Start => vec![up()],
            Action::Restart if version.is_some() => vec![up()],
            Action::Restart => vec![
                self.restart_command(services).display(),
                format!(
                    "# then until every container runs: {}",
                    self.ps_command(services).display()
                ),
            ],
            Action::Status | Action::Version | Action::Ready => {
                vec![self.ps_command(services).display()]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_output_of_both_compose_formats_parses() {
        let lines = concat!(
            r#"{"Name":"shop-web-1","Service":"web","State":"running","Health":"healthy","Image":"registry:5000/shop:v2","Status":"Up 3 minutes (healthy)"}"#,
            "\n",
            r#"{"Name":"shop-worker-1","Service":"worker","State":"exited","ExitCode":1,"Health":"","Image":"shop:v2","Status":"Exited (1)"}"#,
            "\n"
        );
        let statuses = parse_ps(lines).unwrap();
        assert_eq!(statuses.len(), 2);
        assert_eq!(statuses[0].name, "web");
        assert_eq!(statuses[0].state, ServiceState::Running);
        assert_eq!(statuses[0].version.as_deref(), Some("v2"));
        assert_eq!(statuses[1].state, ServiceState::Failed);
        let array = r#"[{"Service":"web","State":"running","Health":"starting","Image":"shop"}]"#;
        let statuses = parse_ps(array).unwrap();
        assert_eq!(statuses[0].state, ServiceState::Starting);
        assert_eq!(statuses[0].version, None);
        assert!(parse_ps("").unwrap().is_empty());
        assert!(parse_ps("Error: no such project").is_err());
    }
}
