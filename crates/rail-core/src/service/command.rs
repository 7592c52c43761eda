//! `services.backend = "command"`: a configured argument vector per action, `{version}` replaced by the
//! app version. Without a `restart` command a restart is a stop then a start; with a `status` command
//! (exit 0 = up) start and restart wait until it succeeds.

use std::time::{Duration, Instant};

use super::{
    capture, cmd_from, poll_until, substitute, uses, validate_version, Action, ServiceController,
    ServiceError, ServiceState, ServiceStatus,
};
use crate::config::Config;
use crate::process::Cmd;

const BACKEND: &str = "command";

/// The `command` backend.
#[derive(Debug, Clone)]
pub struct CommandController {
    start: Vec<String>,
    stop: Vec<String>,
    restart: Vec<String>,
    status: Vec<String>,
    current_version: Vec<String>,
    start_timeout: Duration,
    stop_timeout: Duration,
}

impl CommandController {
    pub fn from_config(config: &Config) -> Result<Self, ServiceError> {
        let c = &config.services.command;
        let set = |argv: &Vec<String>| argv.first().is_some_and(|p| !p.is_empty());
        if !set(&c.start) {
            return Err(ServiceError::NotConfigured {
                backend: BACKEND,
                key: "services.command.start",
            });
        }
        if !set(&c.stop) {
            return Err(ServiceError::NotConfigured {
                backend: BACKEND,
                key: "services.command.stop",
            });
        }
        let keep = |argv: &Vec<String>| if set(argv) { argv.clone() } else { Vec::new() };
        Ok(Self {
            start: c.start.clone(),
            stop: c.stop.clone(),
            restart: keep(&c.restart),
            status: keep(&c.status),
            current_version: keep(&c.current_version),
            start_timeout: config.services.start_timeout.get(),
            stop_timeout: config.services.stop_timeout.get(),
        })
    }

    /// The command of one configured action, `{version}` replaced. `key` names it in errors.
    fn build(
        argv: &[String],
        key: &'static str,
        version: Option<&str>,
        timeout: Duration,
    ) -> Result<Cmd, ServiceError> {
        let argv = if uses(argv, "version") {
            let version = version.ok_or(ServiceError::NeedsVersion { key })?;
            validate_version(version)?;
            substitute(argv, &[("version", version)])
        } else {
            argv.to_vec()
        };
        Ok(cmd_from(&argv).timeout(timeout))
    }

    pub fn stop_command(&self) -> Result<Cmd, ServiceError> {
        Self::build(&self.stop, "services.command.stop", None, self.stop_timeout)
    }

    pub fn start_command(&self, version: Option<&str>) -> Result<Cmd, ServiceError> {
        Self::build(&self.start, "services.command.start", version, self.start_timeout)
    }

    /// `None` when no restart command is configured (a restart is then a stop and a start).
    pub fn restart_command(&self, version: Option<&str>) -> Result<Option<Cmd>, ServiceError> {
        if self.restart.is_empty() {
            return Ok(None);
        }
        Self::build(&self.restart, "services.command.restart", version, self.start_timeout)
            .map(Some)
    }

    async fn run(cmd: &Cmd, action: Action) -> Result<(), ServiceError> {
        cmd.run().await.map_err(|source| ServiceError::Command { backend: BACKEND, action, source })
    }

    /// `None` when up, else why not; always up without a status command.
    async fn check(&self) -> Result<Option<String>, ServiceError> {
        if self.status.is_empty() {
            return Ok(None);
        }
        let cmd = cmd_from(&self.status).timeout(self.start_timeout);
        let (stdout, ended) = capture(&cmd).await.map_err(|source| ServiceError::Command {
            backend: BACKEND,
            action: Action::Status,
            source,
        })?;
        Ok(match ended {
            Ok(()) => None,
            Err(err) => {
                let said = stdout.trim();
                Some(if said.is_empty() { err.to_string() } else { format!("{err}: {said}") })
            }
        })
    }
}

impl ServiceController for CommandController {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn stop(&self, _services: &[String]) -> Result<(), ServiceError> {
        Self::run(&self.stop_command()?, Action::Stop).await
    }

    async fn start(&self, services: &[String], version: Option<&str>) -> Result<(), ServiceError> {
        let started = Instant::now();
        Self::run(&self.start_command(version)?, Action::Start).await?;
        self.wait_ready(services, self.start_timeout.saturating_sub(started.elapsed())).await
    }

    async fn restart(
        &self,
        services: &[String],
        version: Option<&str>,
    ) -> Result<(), ServiceError> {
        let started = Instant::now();
        if let Some(cmd) = self.restart_command(version)? {
            Self::run(&cmd, Action::Restart).await?;
        } else {
            // Build both first: a start that cannot be built must not leave the app stopped.
            let start = self.start_command(version)?;
            Self::run(&self.stop_command()?, Action::Stop).await?;
            Self::run(&start, Action::Start).await?;
        }
        self.wait_ready(services, self.start_timeout.saturating_sub(started.elapsed())).await
    }

    async fn status(&self) -> Result<Vec<ServiceStatus>, ServiceError> {
        let (state, detail) = if self.status.is_empty() {
            (ServiceState::Unknown, Some("no status command configured".to_owned()))
        } else {
            match self.check().await? {
                None => (ServiceState::Running, None),
                Some(reason) => (ServiceState::Stopped, Some(reason)),
            }
        };
        Ok(vec![ServiceStatus {
            name: "app".into(),
            state,
            pid: None,
            version: self.current_version().await?,
            detail,
        }])
    }

    async fn current_version(&self) -> Result<Option<String>, ServiceError> {
        if self.current_version.is_empty() {
            return Ok(None);
        }
        let cmd = cmd_from(&self.current_version).timeout(self.start_timeout);
        let output = cmd.output().await.map_err(|source| ServiceError::Command {
            backend: BACKEND,
            action: Action::Version,
            source,
        })?;
        let version = output.stdout_text().trim().to_owned();
        Ok((!version.is_empty()).then_some(version))
    }

    async fn wait_ready(
        &self,
        _services: &[String],
        timeout: Duration,
    ) -> Result<(), ServiceError> {
        poll_until(BACKEND, timeout, || self.check()).await
    }

    fn plan(&self, action: Action, _services: &[String], version: Option<&str>) -> Vec<String> {
        let show = |cmd: Result<Cmd, ServiceError>| match cmd {
            Ok(cmd) => cmd.display(),
            Err(err) => format!("# {err}"),
        };
        let mut lines = match action {
            Action::Stop => vec![show(self.stop_command())],
            Action::Start => vec![show(self.start_command(version))],
            Action::Restart => match self.restart_command(version) {
                Ok(Some(cmd)) => vec![cmd.display()],
                Ok(None) => vec![show(self.stop_command()), show(self.start_command(version))],
                Err(err) => vec![format!("# {err}")],
            },
            Action::Status | Action::Ready => {
                if self.status.is_empty() {
                    Vec::new()
                } else {
                    vec![cmd_from(&self.status).display()]
                }
            }
            Action::Version => {
                if self.current_version.is_empty() {
                    Vec::new()
                } else {
                    vec![cmd_from(&self.current_version).display()]
                }
            }
        };
        if matches!(action, Action::Start | Action::Restart) && !self.status.is_empty() {
            lines.push(format!("# then until it succeeds: {}", cmd_from(&self.status).display()));
        }
        lines
    }
}
