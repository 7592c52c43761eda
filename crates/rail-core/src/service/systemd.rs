//! `services.backend = "systemd"`: `systemctl [--user] stop|start|restart|is-active UNIT…`.
//!
//! The app version reaches the units through `systemd.version_file`, written atomically before a start or
//! restart as `APP_VERSION=<version>` (`systemd.version_variable`), for the unit to read with
//! `EnvironmentFile=`. `systemctl start` already waits for the unit's own start-up; rail then waits until
//! `is-active` says `active` for every unit.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{
    capture, poll_until, validate_version, Action, ServiceController, ServiceError, ServiceState,
    ServiceStatus,
};
use crate::config::Config;
use crate::process::Cmd;

const BACKEND: &str = "systemd";

/// The `systemd` backend.
#[derive(Debug, Clone)]
pub struct SystemdController {
    program: PathBuf,
    user: bool,
    units: Vec<String>,
    version_file: PathBuf,
    version_variable: String,
    start_timeout: Duration,
    stop_timeout: Duration,
}

impl SystemdController {
    pub fn from_config(config: &Config) -> Result<Self, ServiceError> {
        let s = &config.services.systemd;
        Ok(Self {
            program: s.program.clone(),
            user: s.user,
            units: s.units.clone(),
            version_file: s.version_file.clone(),
            version_variable: if s.version_variable.is_empty() {
                "APP_VERSION".into()
            } else {
                s.version_variable.clone()
            },
            start_timeout: config.services.start_timeout.get(),
            stop_timeout: config.services.stop_timeout.get(),
        })
    }

    /// The configured units, else the names given.
    fn targets<'a>(&'a self, services: &'a [String]) -> &'a [String] {
        if self.units.is_empty() {
            services
        } else {
            &self.units
        }
    }

    fn base(&self) -> Cmd {
        let cmd = Cmd::new(&self.program);
        if self.user {
            cmd.arg("--user")
        } else {
            cmd
        }
    }

    /// The units of an action; an action on no unit at all is a configuration error.
    fn units_of<'a>(&'a self, services: &'a [String]) -> Result<&'a [String], ServiceError> {
        let units = self.targets(services);
        if units.is_empty() {
            Err(ServiceError::NotConfigured { backend: BACKEND, key: "services.systemd.units" })
        } else {
            Ok(units)
        }
    }

    /// `systemctl [--user] <verb> UNIT…`.
    pub fn command(&self, verb: &str, services: &[String]) -> Cmd {
        let timeout = if verb == "stop" { self.stop_timeout } else { self.start_timeout };
        self.base().arg(verb).args(self.targets(services)).timeout(timeout)
    }

    /// Write the version file atomically (a temporary file renamed over it), when one is configured.
    pub(super) fn write_version(&self, version: Option<&str>) -> Result<(), ServiceError> {
        let Some(version) = version else { return Ok(()) };
        validate_version(version)?;
        if self.version_file.as_os_str().is_empty() {
            tracing::warn!(
                version,
                "systemd.version_file is not set: the units are restarted without a version"
            );
            return Ok(());
        }
        let path = &self.version_file;
        let io = |source| ServiceError::Io {
            what: "write the version file",
            path: path.clone(),
            source,
        };
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        let tmp = dir.join(format!(
            ".{}.tmp-{}",
            path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
            std::process::id()
        ));
        let result = (|| {
            let mut file = fs_err::File::create(&tmp)?;
            writeln!(file, "{}={version}", self.version_variable)?;
            file.sync_all()?;
            fs_err::rename(&tmp, path)?;
            fs_err::File::open(dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = fs_err::remove_file(&tmp);
        }
        result.map_err(io)?;
        tracing::info!(version, path = %path.display(), "app version written for the units");
        Ok(())
    }

    async fn run(cmd: &Cmd, action: Action) -> Result<(), ServiceError> {
        cmd.run().await.map_err(|source| ServiceError::Command { backend: BACKEND, action, source })
    }

    /// The state of each unit from `is-active` (which exits non-zero unless all are active).
    async fn states(&self, services: &[String]) -> Result<Vec<(String, String)>, ServiceError> {
        let units = self.targets(services);
        if units.is_empty() {
            return Ok(Vec::new());
        }
        let cmd = self.command("is-active", services);
        let (stdout, ended) = capture(&cmd).await.map_err(|source| ServiceError::Command {
            backend: BACKEND,
            action: Action::Status,
            source,
        })?;
        let lines: Vec<&str> = stdout.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        if lines.len() != units.len() {
            // Not one state per unit: systemctl itself failed (no systemd, no bus).
            return match ended {
                Err(source) => {
                    Err(ServiceError::Command { backend: BACKEND, action: Action::Status, source })
                }
                Ok(()) => Err(ServiceError::Output {
                    command: cmd.display(),
                    detail: format!("{} lines for {} units", lines.len(), units.len()),
                }),
            };
        }
        Ok(units.iter().cloned().zip(lines.into_iter().map(str::to_owned)).collect())
    }

    async fn check(&self, services: &[String]) -> Result<Option<String>, ServiceError> {
        let waiting: Vec<String> = self
            .states(services)
            .await?
            .into_iter()
            .filter(|(_, state)| state != "active")
            .map(|(unit, state)| format!("{unit} is {state}"))
            .collect();
        Ok((!waiting.is_empty()).then(|| waiting.join(", ")))
    }
}

fn state_of(text: &str) -> ServiceState {
    match text {
        "active" => ServiceState::Running,
        "activating" | "reloading" | "refreshing" => ServiceState::Starting,
        "inactive" | "deactivating" => ServiceState::Stopped,
        "failed" => ServiceState::Failed,
        _ => ServiceState::Unknown,
    }
}

impl ServiceController for SystemdController {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn stop(&self, services: &[String]) -> Result<(), ServiceError> {
        self.units_of(services)?;
        Self::run(&self.command("stop", services), Action::Stop).await
    }

    async fn start(&self, services: &[String], version: Option<&str>) -> Result<(), ServiceError> {
        let started = Instant::now();
        self.write_version(version)?;
        self.units_of(services)?;
        Self::run(&self.command("start", services), Action::Start).await?;
        self.wait_ready(services, self.start_timeout.saturating_sub(started.elapsed())).await
    }

    async fn restart(
        &self,
        services: &[String],
        version: Option<&str>,
    ) -> Result<(), ServiceError> {
        let started = Instant::now();
        self.write_version(version)?;
        self.units_of(services)?;
        Self::run(&self.command("restart", services), Action::Restart).await?;
        self.wait_ready(services, self.start_timeout.saturating_sub(started.elapsed())).await
    }

    async fn status(&self) -> Result<Vec<ServiceStatus>, ServiceError> {
        let version = self.current_version().await?;
        Ok(self
            .states(&[])
            .await?
            .into_iter()
            .map(|(unit, state)| ServiceStatus {
                name: unit,
                state: state_of(&state),
                pid: None,
                version: version.clone(),
                detail: Some(state),
            })
            .collect())
    }

    /// The version last written to the version file.
    async fn current_version(&self) -> Result<Option<String>, ServiceError> {
        if self.version_file.as_os_str().is_empty() {
            return Ok(None);
        }
        let text = match fs_err::read_to_string(&self.version_file) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(ServiceError::Io {
                    what: "read the version file",
                    path: self.version_file.clone(),
                    source,
                })
            }
        };
        let prefix = format!("{}=", self.version_variable);
        Ok(text
            .lines()
            .find_map(|line| line.trim().strip_prefix(&prefix))
            .map(|v| v.trim().trim_matches('"').to_owned())
            .filter(|v| !v.is_empty()))
    }

    async fn wait_ready(&self, services: &[String], timeout: Duration) -> Result<(), ServiceError> {
        poll_until(BACKEND, timeout, || self.check(services)).await
    }

    fn plan(&self, action: Action, services: &[String], version: Option<&str>) -> Vec<String> {
        let mut lines = Vec::new();
        if let (Some(version), Action::Start | Action::Restart) = (version, action) {
            if !self.version_file.as_os_str().is_empty() {
                lines.push(format!(
                    "write {}={version} to {}",
                    self.version_variable,
                    self.version_file.display()
                ));
            }
        }
        let verb = match action {
            Action::Stop => "stop",
            Action::Start => "start",
            Action::Restart => "restart",
            Action::Status | Action::Version | Action::Ready => "is-active",
        };
        lines.push(self.command(verb, services).display());
        if matches!(action, Action::Start | Action::Restart) {
            lines.push(format!(
                "# then until active: {}",
                self.command("is-active", services).display()
            ));
        }
        lines
    }
}
