//! Service control: stopping, starting and restarting the app on the version a deploy or rollback wants.
//!
//! [`ServiceController`] is what deploy and rollback call; [`controller`] builds the backend the
//! configuration chooses (`services.backend`): `releases` (Capistrano-style release directories and a
//! `current` symlink, processes started by a configured argument vector, used by the local stack and the
//! tests), `command` (an argument vector per action), `compose`, `systemd`, `kubernetes`, or `none`.
//!
//! Every action has a timeout (`services.start_timeout`, `services.stop_timeout`), every program runs
//! through [`crate::process::Cmd`], and start and restart return only once the service reports itself up,
//! or fail saying why. The app version is validated before it reaches a path, an argument or a file.
//!
//! Which services an action applies to: the backend's own list when the configuration has one
//! (`compose.services`, `systemd.units`, `kubernetes.deployments`), else the names the caller passes
//! (`deploy.services`). The `releases` backend runs one app and ignores the names.

mod command;
mod compose;
mod kubernetes;
mod none;
mod releases;
mod systemd;
#[cfg(test)]
mod tests;

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

pub use self::command::CommandController;
pub use self::compose::ComposeController;
pub use self::kubernetes::{KubernetesController, REPLICAS_ANNOTATION};
pub use self::none::NoneController;
pub use self::releases::ReleasesController;
pub use self::systemd::SystemdController;
use crate::config::{Config, ServiceBackend};
use crate::process::{Cmd, ProcessError};

/// Pause between two looks at a service that is coming up.
const POLL: Duration = Duration::from_millis(200);

/// What a controller was doing when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Stop,
    Start,
    Restart,
    Status,
    Version,
    Ready,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Stop => "stop",
            Self::Start => "start",
            Self::Restart => "restart",
            Self::Status => "query the status of",
            Self::Version => "read the version of",
            Self::Ready => "wait for",
        })
    }
}

/// Errors of service control.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    #[error("the {backend} service backend needs `{key}` in the configuration")]
    NotConfigured { backend: &'static str, key: &'static str },
    #[error("invalid app version `{version}`: use letters, digits, `.`, `_` and `-` (not starting with `.`)")]
    InvalidVersion { version: String },
    #[error("release `{version}` does not exist: {path} is not a directory")]
    UnknownRelease { version: String, path: PathBuf },
    #[error("`{key}` uses {{version}}, but no app version was given and none is current")]
    NeedsVersion { key: &'static str },
    #[error("no release to start: {link} does not exist and no app version was given")]
    NoCurrentRelease { link: PathBuf },
    #[error("cannot {action} the app ({backend} backend)")]
    Command {
        backend: &'static str,
        action: Action,
        #[source]
        source: ProcessError,
    },
    #[error("cannot {what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the app's environment file {path}")]
    EnvFile {
        path: PathBuf,
        #[source]
        source: dotenvy::Error,
    },
    #[error("the app ({backend} backend) is not up after {}: {reason}", crate::config::human_duration(*after))]
    NotReady { backend: &'static str, after: Duration, reason: String },
    #[error("the app (pid {pid}) is still running {} after SIGTERM and SIGKILL", crate::config::human_duration(*after))]
    StopTimeout { pid: i32, after: Duration },
    #[error(
        "the pid file {path} names process {pid}, which is not the app (not started from {root}); it was not signalled"
    )]
    ForeignProcess { path: PathBuf, pid: i32, root: PathBuf },
    #[error("unexpected output from `{command}`: {detail}")]
    Output { command: String, detail: String },
    #[error("release `{version}` did not take over from the running app: {reason}; the previous release keeps serving")]
    HandoverFailed { version: String, reason: String },
}

/// How a service is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    Running,
    /// Up, but not (yet) ready: a health check starting, a rollout in progress.
    Starting,
    Stopped,
    Failed,
    Unknown,
}

/// One service as its backend sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceStatus {
    pub name: String,
    pub state: ServiceState,
    pub pid: Option<u32>,
    /// The app version it runs, when the backend can tell.
    pub version: Option<String>,
    pub detail: Option<String>,
}

/// Stopping, starting and restarting the app. `services` are names as the backend knows them (see the
/// module docs for which list applies); `version` is the app version to run, `None` for the current one.
pub trait ServiceController: Send + Sync {
    /// The backend's name, as in `services.backend`.
    fn backend(&self) -> &'static str;

    /// Stop the services, waiting at most `services.stop_timeout` (then killing what the backend can).
    fn stop(&self, services: &[String]) -> impl Future<Output = Result<(), ServiceError>> + Send;

    /// Start the services on `version` (or the current one) and wait until they are up.
    fn start(
        &self,
        services: &[String],
        version: Option<&str>,
    ) -> impl Future<Output = Result<(), ServiceError>> + Send;

    /// Restart the services on `version` (or the current one) and wait until they are up.
    fn restart(
        &self,
        services: &[String],
        version: Option<&str>,
    ) -> impl Future<Output = Result<(), ServiceError>> + Send;

    /// The state of every service the backend controls.
    fn status(&self) -> impl Future<Output = Result<Vec<ServiceStatus>, ServiceError>> + Send;

    /// The app version that runs (or would run at the next start); `None` when the backend cannot tell.
    fn current_version(&self) -> impl Future<Output = Result<Option<String>, ServiceError>> + Send;

    /// Wait until the services report themselves up, at most `timeout`.
    fn wait_ready(
        &self,
        services: &[String],
        timeout: Duration,
    ) -> impl Future<Output = Result<(), ServiceError>> + Send;

    /// The commands an action would run, redacted, for `--dry-run` plans.
    fn plan(&self, action: Action, services: &[String], version: Option<&str>) -> Vec<String>;

    /// Whether `version` could be started, checked before anything is stopped: a valid name, and for
    /// backends that can tell without changing anything, an installed one.
    fn check_version(&self, version: &str) -> Result<(), ServiceError> {
        validate_version(version)
    }
}

/// The backend chosen by the configuration.
#[derive(Debug)]
pub enum Controller {
    None(NoneController),
    Releases(ReleasesController),
    Compose(ComposeController),
    Systemd(SystemdController),
    Command(CommandController),
    Kubernetes(KubernetesController),
}

/// The controller of `services.backend`, its configuration checked.
pub fn controller(config: &Config) -> Result<Controller, ServiceError> {
    Ok(match config.services.backend {
        ServiceBackend::None => Controller::None(NoneController),
        ServiceBackend::Releases => Controller::Releases(ReleasesController::from_config(config)?),
        ServiceBackend::Compose => Controller::Compose(ComposeController::from_config(config)?),
        ServiceBackend::Systemd => Controller::Systemd(SystemdController::from_config(config)?),
        ServiceBackend::Command => Controller::Command(CommandController::from_config(config)?),
        ServiceBackend::Kubernetes => {
            Controller::Kubernetes(KubernetesController::from_config(config)?)
        }
    })
}

/// Call the same method on whichever backend this is.
macro_rules! dispatch {
    ($self:expr, $c:ident => $call:expr) => {
        match $self {
            Controller::None($c) => $call,
            Controller::Releases($c) => $call,
            Controller::Compose($c) => $call,
            Controller::Systemd($c) => $call,
            Controller::Command($c) => $call,
            Controller::Kubernetes($c) => $call,
        }
    };
}

impl ServiceController for Controller {
    fn backend(&self) -> &'static str {
        dispatch!(self, c => c.backend())
    }

    async fn stop(&self, services: &[String]) -> Result<(), ServiceError> {
        dispatch!(self, c => c.stop(services).await)
    }

    async fn start(&self, services: &[String], version: Option<&str>) -> Result<(), ServiceError> {
        dispatch!(self, c => c.start(services, version).await)
    }

    async fn restart(
        &self,
        services: &[String],
        version: Option<&str>,
    ) -> Result<(), ServiceError> {
        dispatch!(self, c => c.restart(services, version).await)
    }

    async fn status(&self) -> Result<Vec<ServiceStatus>, ServiceError> {
        dispatch!(self, c => c.status().await)
    }

    async fn current_version(&self) -> Result<Option<String>, ServiceError> {
        dispatch!(self, c => c.current_version().await)
    }

    async fn wait_ready(&self, services: &[String], timeout: Duration) -> Result<(), ServiceError> {
        dispatch!(self, c => c.wait_ready(services, timeout).await)
    }

    fn plan(&self, action: Action, services: &[String], version: Option<&str>) -> Vec<String> {
        dispatch!(self, c => c.plan(action, services, version))
    }

    fn check_version(&self, version: &str) -> Result<(), ServiceError> {
        dispatch!(self, c => c.check_version(version))
    }
}

/// Check an app version before it becomes part of a path, an argument, an image tag or a file: letters,
/// digits, `.`, `_`, `-`, at most 128 characters (an image tag's limit), not starting with `.` (no `..`,
/// no hidden directories).
pub fn validate_version(version: &str) -> Result<(), ServiceError> {
    let ok = !version.is_empty()
        && version.len() <= 128
        && !version.starts_with('.')
        && !version.contains("..")
        && version.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ServiceError::InvalidVersion { version: version.to_owned() })
    }
}

/// Replace `{name}` placeholders in every argument.
fn substitute(argv: &[String], vars: &[(&str, &str)]) -> Vec<String> {
    argv.iter()
        .map(|arg| {
            vars.iter()
                .fold(arg.clone(), |acc, (name, value)| acc.replace(&format!("{{{name}}}"), value))
        })
        .collect()
}

/// Whether any argument holds `{name}`.
fn uses(argv: &[String], name: &str) -> bool {
    let placeholder = format!("{{{name}}}");
    argv.iter().any(|arg| arg.contains(&placeholder))
}

/// A command from a configured argument vector (program first).
fn cmd_from(argv: &[String]) -> Cmd {
    Cmd::new(&argv[0]).args(&argv[1..])
}

/// Run `cmd` and return its stdout even when it exits non-zero (`systemctl is-active` says "inactive"
/// with exit code 3), together with how it ended.
async fn capture(cmd: &Cmd) -> Result<(String, Result<(), ProcessError>), ProcessError> {
    use tokio::io::AsyncReadExt as _;
    let mut running = cmd.spawn()?;
    let mut stdout = Vec::new();
    if let Some(mut pipe) = running.stdout.take() {
        // A read error only shortens the output; how the program ended is what `wait` reports.
        let _ = pipe.read_to_end(&mut stdout).await;
    }
    let ended = running.wait().await.map(|_| ());
    if let Err(ProcessError::Timeout { .. } | ProcessError::Io { .. }) = &ended {
        return Err(ended.unwrap_err());
    }
    Ok((String::from_utf8_lossy(&stdout).into_owned(), ended))
}

/// The tag of an image reference (`registry:5000/app:v2` → `v2`); `None` without a tag.
fn image_tag(image: &str) -> Option<String> {
    let name = image.split('@').next().unwrap_or(image);
    let last = name.rsplit('/').next().unwrap_or(name);
    last.rsplit_once(':').map(|(_, tag)| tag.to_owned()).filter(|t| !t.is_empty())
}

/// Poll `check` every [`POLL`] until it says ready (`Ok(None)`) or `timeout` passes; the error then says
/// what the last look found.
async fn poll_until<F, Fut>(
    backend: &'static str,
    timeout: Duration,
    mut check: F,
) -> Result<(), ServiceError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<String>, ServiceError>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let reason = match tokio::time::timeout(remaining.max(POLL), check()).await {
            Ok(Ok(None)) => return Ok(()),
            Ok(Ok(Some(reason))) => reason,
            Ok(Err(err)) => return Err(err),
            Err(_) => "the last check did not finish in time".to_owned(),
        };
        if tokio::time::Instant::now() + POLL > deadline {
            return Err(ServiceError::NotReady { backend, after: timeout, reason });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Whole seconds for a program's own `--timeout` option, at least one.
fn secs(duration: Duration) -> String {
    duration.as_secs().max(1).to_string()
}
