//! `services.backend = "compose"`: `docker compose -f FILE [-f OVERRIDE…] [-p PROJECT] stop|up -d|restart
//! SERVICE…`, the app version passed as `IMAGE_TAG` (`compose.version_variable`) in the environment, for
//! the compose file to use as `image: app:${IMAGE_TAG}`.
//!
//! Compose v2 (`docker compose`) and v1 (`docker-compose`, which Debian and others still ship) are driven
//! with the commands and flags both have: `up -d --no-deps`, `stop --timeout`, `restart --timeout`,
//! `ps -a -q`. Neither's own wait is used (v1 has none): a start or restart returns once every target
//! container runs and, when its image or the compose file gives it a health check, Docker itself says
//! `healthy` (`docker inspect`, `State.Health.Status`).

use std::path::{Path, PathBuf};
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
    program: PathBuf,
    docker: PathBuf,
    files: Vec<PathBuf>,
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
        let mut files = vec![c.file.clone()];
        // An override given as `${VAR:-}` that is unset is no file.
        files.extend(c.override_files.iter().filter(|f| !f.as_os_str().is_empty()).cloned());
        Ok(Self {
            program: c.program.clone(),
            docker: c.docker.clone(),
            files,
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

    /// Compose v1 is its own program; v2 is the `compose` command of `docker`.
    fn is_v1(program: &Path) -> bool {
        program.file_name().is_some_and(|n| n == "docker-compose")
    }

    fn base(&self) -> Cmd {
        let mut cmd = Cmd::new(&self.program);
        if !Self::is_v1(&self.program) {
            cmd = cmd.arg("compose");
        }
        for file in &self.files {
            cmd = cmd.arg("-f").arg(file);
        }
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

    /// `up -d --no-deps SERVICE…`, with the version in the environment: compose recreates the
    /// containers whose image or configuration changed, and leaves the other services alone.
    pub fn up_command(
        &self,
        services: &[String],
        version: Option<&str>,
    ) -> Result<Cmd, ServiceError> {
        let mut cmd = self
            .base()
            .args(["up", "-d", "--no-deps"])
            .args(self.targets(services))
            .timeout(self.start_timeout + self.stop_timeout);
        if let Some(version) = version {
            validate_version(version)?;
            cmd = cmd.env(&self.version_variable, version);
        }
        Ok(cmd)
    }

    /// `run --rm --no-deps -T SERVICE ARGV…` of `version`: a one-off container of the release's image,
    /// removed when the command ends, whose exit status is the command's.
    pub fn run_command(
        &self,
        service: &str,
        version: Option<&str>,
        argv: &[String],
    ) -> Result<Cmd, ServiceError> {
        let mut cmd =
            self.base().args(["run", "--rm", "--no-deps", "-T", service]).args(argv.iter());
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

    /// `ps -a -q SERVICE…`: the ids of the services' containers, running or not.
    pub fn ps_command(&self, services: &[String]) -> Cmd {
        self.base()
            .args(["ps", "-a", "-q"])
            .args(self.targets(services))
            .timeout(self.start_timeout.min(Duration::from_secs(30)))
    }

    /// `docker inspect ID…`.
    pub fn inspect_command(&self, ids: &[String]) -> Cmd {
        Cmd::new(&self.docker)
            .arg("inspect")
            .args(ids)
            .timeout(self.start_timeout.min(Duration::from_secs(30)))
    }

    async fn run(cmd: &Cmd, action: Action) -> Result<(), ServiceError> {
        cmd.run().await.map_err(|source| ServiceError::Command { backend: BACKEND, action, source })
    }

    async fn ps(&self, services: &[String]) -> Result<Vec<ServiceStatus>, ServiceError> {
        let status_error =
            |source| ServiceError::Command { backend: BACKEND, action: Action::Status, source };
        let output = self.ps_command(services).output().await.map_err(status_error)?;
        let ids: Vec<String> = output.stdout_text().split_whitespace().map(str::to_owned).collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let cmd = self.inspect_command(&ids);
        let output = cmd.output().await.map_err(status_error)?;
        parse_inspect(&output.stdout_text())
            .map_err(|detail| ServiceError::Output { command: cmd.display(), detail })
    }

    /// `None` when every target service has a container that runs (and is healthy if it has a check).
    async fn check(&self, services: &[String]) -> Result<Option<String>, ServiceError> {
        let statuses = self.ps(services).await?;
        let targets = self.targets(services);
        let mut waiting = Vec::new();
        for name in targets {
            if !statuses.iter().any(|s| &s.name == name) {
                waiting.push(format!("{name} has no container yet"));
            }
        }
        waiting.extend(
            statuses
                .iter()
                .filter(|s| s.state != ServiceState::Running)
                .map(|s| format!("{} is {}", s.name, s.detail.as_deref().unwrap_or("not running"))),
        );
        if statuses.is_empty() && targets.is_empty() {
            waiting.push("no container yet".into());
        }
        Ok((!waiting.is_empty()).then(|| waiting.join(", ")))
    }
}

/// Containers from `docker inspect`: service name, state and health, image tag.
fn parse_inspect(text: &str) -> Result<Vec<ServiceStatus>, String> {
    let items: Vec<Value> =
        serde_json::from_str(text.trim()).map_err(|e| format!("not a JSON array: {e}"))?;
    Ok(items
        .iter()
        .filter(|item| {
            // One-off containers (`compose run`) are not the service.
            item.pointer("/Config/Labels/com.docker.compose.oneoff").and_then(Value::as_str)
                != Some("True")
        })
        .map(|item| {
            let text = |pointer: &str| item.pointer(pointer).and_then(Value::as_str).unwrap_or("");
            let status = text("/State/Status");
            let health = text("/State/Health/Status");
            let exit_code = item.pointer("/State/ExitCode").and_then(Value::as_i64).unwrap_or(0);
            let state = match (status, health) {
                ("running", "" | "healthy") => ServiceState::Running,
                ("running" | "restarting" | "created", _) => ServiceState::Starting,
                ("exited" | "dead" | "removing", _) if exit_code != 0 => ServiceState::Failed,
                ("exited" | "dead" | "removing" | "paused", _) => ServiceState::Stopped,
                _ => ServiceState::Unknown,
            };
            let service = text("/Config/Labels/com.docker.compose.service");
            let name =
                if service.is_empty() { text("/Name").trim_start_matches('/') } else { service };
            let detail = match (status, health) {
                ("exited", _) => format!("exited with code {exit_code}"),
                (_, "") => status.to_owned(),
                (_, health) => format!("{status} ({health})"),
            };
            let pid = item.pointer("/State/Pid").and_then(Value::as_i64).filter(|p| *p > 0);
            ServiceStatus {
                name: name.to_owned(),
                state,
                pid: pid.and_then(|p| u32::try_from(p).ok()),
                version: image_tag(text("/Config/Image")),
                detail: Some(detail),
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
        let started = Instant::now();
        Self::run(&self.up_command(services, version)?, Action::Start).await?;
        self.wait_ready(services, self.start_timeout.saturating_sub(started.elapsed())).await
    }

    async fn restart(
        &self,
        services: &[String],
        version: Option<&str>,
    ) -> Result<(), ServiceError> {
        let started = Instant::now();
        if version.is_some() {
            // A new image needs new containers: `up` recreates what changed.
            Self::run(&self.up_command(services, version)?, Action::Restart).await?;
        } else {
            Self::run(&self.restart_command(services), Action::Restart).await?;
        }
        self.wait_ready(services, self.start_timeout.saturating_sub(started.elapsed())).await
    }

    async fn status(&self) -> Result<Vec<ServiceStatus>, ServiceError> {
        self.ps(&[]).await
    }

    async fn current_version(&self) -> Result<Option<String>, ServiceError> {
        let statuses = self.ps(&[]).await?;
        let targets = &self.services;
        // The version of the app's own services (not of the database's image) when they are named.
        Ok(statuses
            .iter()
            .filter(|s| targets.is_empty() || targets.contains(&s.name))
            .find_map(|s| s.version.clone()))
    }

    async fn wait_ready(&self, services: &[String], timeout: Duration) -> Result<(), ServiceError> {
        poll_until(BACKEND, timeout, || self.check(services)).await
    }

    fn plan(&self, action: Action, services: &[String], version: Option<&str>) -> Vec<String> {
        let wait = || {
            format!(
                "# then until every container runs and is healthy: {}, then {}",
                self.ps_command(services).display(),
                self.inspect_command(&["ID…".to_owned()]).display()
            )
        };
        let up = || match self.up_command(services, version) {
            Ok(cmd) => cmd.display(),
            Err(err) => format!("# {err}"),
        };
        match action {
            Action::Stop => vec![self.stop_command(services).display()],
            Action::Start => vec![up(), wait()],
            Action::Restart if version.is_some() => vec![up(), wait()],
            Action::Restart => vec![self.restart_command(services).display(), wait()],
            Action::Status | Action::Version | Action::Ready => {
                vec![
                    self.ps_command(services).display(),
                    self.inspect_command(&["ID…".to_owned()]).display(),
                ]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspect_output_gives_service_state_health_and_tag() {
        let text = r#"[
          {"Name":"/shop-web-1","State":{"Status":"running","Pid":42,"ExitCode":0,"Health":{"Status":"healthy"}},
           "Config":{"Image":"registry:5000/shop:v2","Labels":{"com.docker.compose.service":"web"}}},
          {"Name":"/shop-worker-1","State":{"Status":"exited","Pid":0,"ExitCode":1},
           "Config":{"Image":"shop:v2","Labels":{"com.docker.compose.service":"worker"}}},
          {"Name":"/shop-web-2","State":{"Status":"running","Pid":43,"ExitCode":0,"Health":{"Status":"starting"}},
           "Config":{"Image":"shop","Labels":{"com.docker.compose.service":"web"}}},
          {"Name":"/shop_web_run_1","State":{"Status":"running","Pid":44,"ExitCode":0},
           "Config":{"Image":"shop:v3","Labels":{"com.docker.compose.service":"web","com.docker.compose.oneoff":"True"}}}
        ]"#;
        let statuses = parse_inspect(text).unwrap();
        assert_eq!(statuses.len(), 3, "the one-off container is left out");
        assert_eq!(statuses[0].name, "web");
        assert_eq!(statuses[0].state, ServiceState::Running);
        assert_eq!(statuses[0].pid, Some(42));
        assert_eq!(statuses[0].version.as_deref(), Some("v2"));
        assert_eq!(statuses[1].state, ServiceState::Failed);
        assert_eq!(statuses[1].detail.as_deref(), Some("exited with code 1"));
        assert_eq!(statuses[2].state, ServiceState::Starting);
        assert_eq!(statuses[2].detail.as_deref(), Some("running (starting)"));
        assert_eq!(statuses[2].version, None);
        assert!(parse_inspect("[]").unwrap().is_empty());
        assert!(parse_inspect("Error: no such object").is_err());
    }
}
