//! `services.backend = "releases"`: Capistrano-style `<root>/releases/<version>/` directories and a
//! `<root>/current` symlink, with the app started by a configured argument vector that daemonizes
//! (`gunicorn --daemon --pid FILE`) and stopped through its pid file.
//!
//! The symlink is switched atomically: a new link `current.tmp-<pid>` is renamed over `current`, so a
//! reader sees the old release or the new one, never no release. Only the process named by the pid file
//! is ever signalled, and only when it is the app: its working directory is inside the releases root, or
//! its command line names the start program. A stale pid file (its process gone) is removed, never
//! acted on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::{getpgid, Pid};

use super::{
    cmd_from, substitute, validate_version, Action, ServiceController, ServiceError, ServiceState,
    ServiceStatus,
};
use crate::config::{Config, Handover};
use crate::process::Cmd;
use crate::secret::Secret;

const BACKEND: &str = "releases";
/// How long a process may take to die after SIGKILL (it may be in uninterruptible I/O).
const KILL_WAIT: Duration = Duration::from_secs(5);
/// Pause between two looks at the pid file and the ready URL while the app starts: both are cheap,
/// and every pause is time the site spends in maintenance.
const POLL: Duration = Duration::from_millis(50);
/// Timeout of one request of the ready check.
const READY_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// The `releases` backend.
#[derive(Clone)]
pub struct ReleasesController {
    root: PathBuf,
    start: Vec<String>,
    stop: Vec<String>,
    pid_file: PathBuf,
    ready_url: String,
    python: PathBuf,
    env_file: PathBuf,
    env: BTreeMap<String, String>,
    start_timeout: Duration,
    stop_timeout: Duration,
    handover: Handover,
}

impl std::fmt::Debug for ReleasesController {
    // By hand: `env` may hold secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReleasesController")
            .field("root", &self.root)
            .field("start", &self.start)
            .field("stop", &self.stop)
            .field("pid_file", &self.pid_file)
            .field("ready_url", &self.ready_url)
            .finish_non_exhaustive()
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

impl ReleasesController {
    pub fn from_config(config: &Config) -> Result<Self, ServiceError> {
        let r = &config.services.releases;
        let missing = |key| ServiceError::NotConfigured { backend: BACKEND, key };
        if r.root.as_os_str().is_empty() {
            return Err(missing("services.releases.root"));
        }
        if r.start.is_empty() || r.start[0].is_empty() {
            return Err(missing("services.releases.start"));
        }
        if r.pid_file.as_os_str().is_empty() {
            return Err(missing("services.releases.pid_file"));
        }
        Ok(Self {
            root: absolute(&r.root),
            start: r.start.clone(),
            stop: r.stop.clone(),
            pid_file: absolute(&r.pid_file),
            ready_url: r.ready_url.clone(),
            python: config.app.python.clone(),
            env_file: config.app.env_file.clone(),
            env: config.app.env.clone(),
            start_timeout: config.services.start_timeout.get(),
            stop_timeout: config.services.stop_timeout.get(),
            handover: r.handover,
        })
    }

    /// The releases root (`releases/`, `current`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/releases/<version>`.
    pub fn release_dir(&self, version: &str) -> PathBuf {
        self.root.join("releases").join(version)
    }

    /// `<root>/current`.
    pub fn current_link(&self) -> PathBuf {
        self.root.join("current")
    }

    /// The installed releases, sorted by name (hidden directories, half-built ones, are left out).
    pub fn releases(&self) -> Result<Vec<String>, ServiceError> {
        let dir = self.root.join("releases");
        let entries = fs_err::read_dir(&dir).map_err(|source| ServiceError::Io {
            what: "list the releases in",
            path: dir.clone(),
            source,
        })?;
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| validate_version(name).is_ok())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Check that `version` is a valid name and an installed release.
    pub fn check_release(&self, version: &str) -> Result<PathBuf, ServiceError> {
        validate_version(version)?;
        let dir = self.release_dir(version);
        if dir.is_dir() {
            Ok(dir)
        } else {
            Err(ServiceError::UnknownRelease { version: version.to_owned(), path: dir })
        }
    }

    /// Point `current` at `releases/<version>` atomically (a new link renamed over the old one, then the
    /// root directory fsynced). Does not restart anything.
    pub fn set_version(&self, version: &str) -> Result<(), ServiceError> {
        self.check_release(version)?;
        let link = self.current_link();
        let tmp = self.root.join(format!("current.tmp-{}", std::process::id()));
        let io = |what, path: &Path| {
            let path = path.to_owned();
            move |source| ServiceError::Io { what, path, source }
        };
        match fs_err::remove_file(&tmp) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(io("remove the leftover link", &tmp)(err)),
        }
        // Relative, so the root can be moved or mounted elsewhere.
        std::os::unix::fs::symlink(Path::new("releases").join(version), &tmp)
            .map_err(io("create the link", &tmp))?;
        if let Err(err) = fs_err::rename(&tmp, &link) {
            let _ = fs_err::remove_file(&tmp);
            return Err(io("switch", &link)(err));
        }
        fs_err::File::open(&self.root)
            .and_then(|dir| dir.sync_all())
            .map_err(io("sync", &self.root))?;
        tracing::info!(version, link = %link.display(), "current release switched");
        Ok(())
    }

    /// The release `current` points at.
    fn current(&self) -> Result<Option<String>, ServiceError> {
        let link = self.current_link();
        match fs_err::read_link(&link) {
            Ok(target) => Ok(target.file_name().and_then(|n| n.to_str()).map(str::to_owned)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ServiceError::Io { what: "read the link", path: link, source }),
        }
    }

    /// The app's environment: `app.env_file`, then `app.env` (which wins).
    fn app_env(&self) -> Result<Vec<(String, String)>, ServiceError> {
        let mut out = Vec::new();
        if !self.env_file.as_os_str().is_empty() {
            let iter = dotenvy::from_path_iter(&self.env_file)
                .map_err(|source| ServiceError::EnvFile { path: self.env_file.clone(), source })?;
            for item in iter {
                out.push(item.map_err(|source| ServiceError::EnvFile {
                    path: self.env_file.clone(),
                    source,
                })?);
            }
        }
        out.extend(self.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(out)
    }

    /// The start command for release `version`, placeholders replaced, with the app's environment (the
    /// values of secrets, by name or content, shown as `***`).
    pub fn start_command(&self, version: &str) -> Result<Cmd, ServiceError> {
        let root = self.root.to_string_lossy().into_owned();
        let current = self.current_link().to_string_lossy().into_owned();
        let python = self.python.to_string_lossy().into_owned();
        let argv = substitute(
            &self.start,
            &[("root", &root), ("current", &current), ("python", &python), ("version", version)],
        );
        let mut cmd = cmd_from(&argv).cwd(self.current_link()).timeout(self.start_timeout);
        for (key, value) in self.app_env()? {
            // Secret by name or by a credential inside the value; `DEBUG=0` shows as it is.
            if crate::secret::is_secret_variable(&key, &value) {
                cmd = cmd.secret_env(key, &Secret::new(value));
            } else {
                cmd = cmd.env(key, value);
            }
        }
        Ok(cmd)
    }

    fn stop_command(&self, version: Option<&str>) -> Option<Cmd> {
        if self.stop.is_empty() || self.stop[0].is_empty() {
            return None;
        }
        let root = self.root.to_string_lossy().into_owned();
        let current = self.current_link().to_string_lossy().into_owned();
        let python = self.python.to_string_lossy().into_owned();
        let version = version.unwrap_or_default();
        let argv = substitute(
            &self.stop,
            &[("root", &root), ("current", &current), ("python", &python), ("version", version)],
        );
        Some(cmd_from(&argv).timeout(self.stop_timeout))
    }

    /// The pid in the pid file; `None` when there is no file or it holds no pid.
    fn read_pid(&self) -> Result<Option<i32>, ServiceError> {
        match fs_err::read_to_string(&self.pid_file) {
            Ok(text) => Ok(text.trim().parse::<i32>().ok().filter(|pid| *pid > 1)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ServiceError::Io {
                what: "read the pid file",
                path: self.pid_file.clone(),
                source,
            }),
        }
    }

    /// The pid of the running app, removing a stale pid file on the way.
    fn running_pid(&self) -> Result<Option<i32>, ServiceError> {
        let Some(pid) = self.read_pid()? else { return Ok(None) };
        if alive(pid) {
            return Ok(Some(pid));
        }
        self.remove_pid_file_of(pid);
        Ok(None)
    }

    /// Remove the pid file if it still names `pid` (the app may have been restarted meanwhile).
    fn remove_pid_file_of(&self, pid: i32) {
        if self.read_pid().ok().flatten() == Some(pid) {
            tracing::debug!(path = %self.pid_file.display(), pid, "removing a stale pid file");
            let _ = fs_err::remove_file(&self.pid_file);
        }
    }

    /// Whether `pid` is the app: its working directory is inside the root, or its command line names the
    /// start program.
    fn owned(&self, pid: i32) -> bool {
        let root = fs_err::canonicalize(&self.root).unwrap_or_else(|_| self.root.clone());
        if let Ok(cwd) = fs_err::read_link(format!("/proc/{pid}/cwd")) {
            if cwd.starts_with(&root) {
                return true;
            }
        }
        let program =
            Path::new(&self.start[0]).file_name().map(|n| n.to_string_lossy().into_owned());
        match (program, fs_err::read(format!("/proc/{pid}/cmdline"))) {
            (Some(program), Ok(cmdline)) => cmdline
                .split(|b| *b == 0)
                .filter_map(|arg| Path::new(std::str::from_utf8(arg).ok()?).file_name())
                .any(|name| name.to_string_lossy() == program),
            _ => false,
        }
    }

    /// The release a running process was started from (its working directory), if it chdir'ed into one.
    fn running_version(&self, pid: i32) -> Option<String> {
        let releases = fs_err::canonicalize(self.root.join("releases")).ok()?;
        let cwd = fs_err::read_link(format!("/proc/{pid}/cwd")).ok()?;
        let rest = cwd.strip_prefix(&releases).ok()?;
        rest.components().next().and_then(|c| c.as_os_str().to_str()).map(str::to_owned)
    }

    fn not_ours(&self, pid: i32) -> ServiceError {
        ServiceError::ForeignProcess { path: self.pid_file.clone(), pid, root: self.root.clone() }
    }

    async fn stop_app(&self) -> Result<(), ServiceError> {
        self.repair_handover().await?;
        let Some(pid) = self.running_pid()? else {
            tracing::info!(pid_file = %self.pid_file.display(), "the app is not running");
            return Ok(());
        };
        if !self.owned(pid) {
            return Err(self.not_ours(pid));
        }
        let started = Instant::now();
        let version = self.running_version(pid);
        match self.stop_command(version.as_deref()) {
            Some(cmd) => {
                if let Err(err) = cmd.run().await {
                    // The goal is a stopped app: signals still get there.
                    tracing::warn!(error = %err, "the stop command failed; stopping the app by signal");
                    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
                }
            }
            None => {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
        }
        if !wait_dead(pid, self.stop_timeout.saturating_sub(started.elapsed())).await {
            tracing::warn!(pid, timeout = %crate::config::human_duration(self.stop_timeout), "the app did not stop in time; sending SIGKILL");
            // The whole group when the app leads one (gunicorn's workers are in its group).
            if getpgid(Some(Pid::from_raw(pid))) == Ok(Pid::from_raw(pid)) {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            } else {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            if !wait_dead(pid, KILL_WAIT).await {
                return Err(ServiceError::StopTimeout { pid, after: started.elapsed() });
            }
        }
        self.remove_pid_file_of(pid);
        tracing::info!(pid, duration_ms = started.elapsed().as_millis() as u64, "app stopped");
        Ok(())
    }

    async fn start_app(&self, version: Option<&str>) -> Result<(), ServiceError> {
        if let Some(version) = version {
            self.set_version(version)?;
        }
        let current = self
            .current()?
            .ok_or_else(|| ServiceError::NoCurrentRelease { link: self.current_link() })?;
        let started = Instant::now();
        self.repair_handover().await?;
        if let Some(pid) = self.running_pid()? {
            if !self.owned(pid) {
                return Err(self.not_ours(pid));
            }
            if self.running_version(pid).as_deref() == Some(current.as_str()) {
                tracing::info!(pid, version = %current, "the app already runs this release");
                return self.wait_up(self.start_timeout).await;
            }
            self.stop_app().await?;
        }
        let cmd = self.start_command(&current)?;
        cmd.run().await.map_err(|source| ServiceError::Command {
            backend: BACKEND,
            action: Action::Start,
            source,
        })?;
        self.wait_up(self.start_timeout.saturating_sub(started.elapsed())).await?;
        tracing::info!(
            version = %current,
            pid = self.read_pid().ok().flatten(),
            duration_ms = started.elapsed().as_millis() as u64,
            "app started"
        );
        Ok(())
    }

    /// Wait until the pid file names a live process and the ready URL (if any) answers 2xx. A process
    /// that appears and then dies fails at once, with no waiting for the timeout.
    async fn wait_up(&self, timeout: Duration) -> Result<(), ServiceError> {
        let client = self.ready_client();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut seen: Option<i32> = None;
        loop {
            let reason = match self.read_pid()? {
                Some(pid) if alive(pid) => {
                    seen = Some(pid);
                    match self.ready_check(client.as_ref()).await {
                        None => return Ok(()),
                        Some(reason) => reason,
                    }
                }
                Some(pid) => {
                    return Err(exited(timeout, pid));
                }
                None => match seen {
                    Some(pid) => return Err(exited(timeout, pid)),
                    None => format!("no pid file {} yet", self.pid_file.display()),
                },
            };
            if tokio::time::Instant::now() + POLL > deadline {
                return Err(ServiceError::NotReady { backend: BACKEND, after: timeout, reason });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn ready_client(&self) -> Option<reqwest::Client> {
        if self.ready_url.is_empty() {
            return None;
        }
        // The app is local: a proxy from the environment must not stand in between.
        reqwest::Client::builder().timeout(READY_REQUEST_TIMEOUT).no_proxy().build().ok()
    }

    /// `None` when ready; otherwise what the ready URL said.
    async fn ready_check(&self, client: Option<&reqwest::Client>) -> Option<String> {
        let client = client?;
        match client.get(&self.ready_url).send().await {
            Ok(response) if response.status().is_success() => None,
            Ok(response) => Some(format!("{} answered {}", self.ready_url, response.status())),
            Err(err) => Some(format!(
                "{} did not answer: {}",
                self.ready_url,
                crate::notify::error_chain(&err.without_url())
            )),
        }
    }
}

/// gunicorn's pid files during a handover: the new master writes `<pid file>.2` and renames it to the pid
/// file about a second after the old master is gone (which removes the pid file as it exits; versions
/// before 27 first renamed it `<pid file>.oldbin`).
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn read_pid_at(path: &Path) -> Option<i32> {
    fs_err::read_to_string(path).ok()?.trim().parse::<i32>().ok().filter(|pid| *pid > 1)
}

fn cmdline(pid: i32) -> Vec<String> {
    fs_err::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The live children of `pid` (gunicorn's workers, for a master).
fn children(pid: i32) -> Vec<i32> {
    let path = format!("/proc/{pid}/task/{pid}/children");
    fs_err::read_to_string(path)
        .map(|text| {
            text.split_whitespace().filter_map(|p| p.parse().ok()).filter(|p| alive(*p)).collect()
        })
        .unwrap_or_default()
}

impl ReleasesController {
    /// Whether the running app `pid` can hand its socket over: a gunicorn master that chdirs into the
    /// `current` link, so that the master it re-executes loads the release `current` points at.
    fn gunicorn_handover_possible(&self, pid: i32) -> Result<(), String> {
        let argv = cmdline(pid);
        let is_gunicorn = argv.iter().take(3).any(|a| {
            Path::new(a).file_name().is_some_and(|n| n.to_string_lossy().starts_with("gunicorn"))
        });
        if !is_gunicorn {
            return Err(format!("process {pid} is not gunicorn"));
        }
        let link = self.current_link();
        let chdir = argv.iter().enumerate().find_map(|(i, a)| {
            if a == "--chdir" {
                argv.get(i + 1).cloned()
            } else {
                a.strip_prefix("--chdir=").map(str::to_owned)
            }
        });
        match chdir {
            Some(dir) if absolute(Path::new(&dir)) == link => Ok(()),
            Some(dir) => Err(format!(
                "gunicorn {pid} runs with --chdir {dir}, not {}: its re-executed master would load the old code",
                link.display()
            )),
            None => Err(format!(
                "gunicorn {pid} was started without --chdir {}: its re-executed master would load the old code",
                link.display()
            )),
        }
    }

    /// Whether a restart of the running app `pid` uses gunicorn's handover; why not, when it does not.
    fn use_handover(&self, pid: i32) -> Result<bool, ServiceError> {
        match self.handover {
            Handover::StopStart => Ok(false),
            Handover::Auto => match self.gunicorn_handover_possible(pid) {
                Ok(()) => Ok(true),
                Err(why) => {
                    tracing::info!("restarting by stop and start: {why}");
                    Ok(false)
                }
            },
            Handover::Gunicorn => self
                .gunicorn_handover_possible(pid)
                .map(|()| true)
                .map_err(|reason| ServiceError::HandoverFailed { version: String::new(), reason }),
        }
    }

    /// Hand the listening socket from the running gunicorn master `old` to a new master on `version`:
    /// `current` is switched, USR2 makes `old` start a new master on the same socket, and only once the
    /// new master's workers run and the ready URL answers through them is `old` told to stop (WINCH
    /// stops its workers, TERM the master). A new master that dies or never gets ready is stopped, the
    /// link switched back and `old`'s workers started again (HUP): connections wait in the socket's
    /// queue meanwhile, none is refused.
    async fn gunicorn_handover(&self, old: i32, version: &str) -> Result<(), ServiceError> {
        let started = Instant::now();
        let previous = self.current()?;
        self.set_version(version)?;
        let fail =
            |reason: String| ServiceError::HandoverFailed { version: version.to_owned(), reason };
        kill(Pid::from_raw(old), Signal::SIGUSR2)
            .map_err(|e| fail(format!("cannot signal gunicorn {old}: {e}")))?;
        match self.take_over(old, version, started).await {
            Ok(new) => {
                tracing::info!(
                    old,
                    new,
                    version,
                    duration_ms = started.elapsed().as_millis() as u64,
                    "the new release took over the socket"
                );
                Ok(())
            }
            Err(reason) => {
                tracing::warn!(
                    version,
                    "handover failed: {reason}; the previous release keeps serving"
                );
                if let Some(previous) = &previous {
                    let _ = self.set_version(previous);
                }
                self.abandon_new_master(old).await;
                // Its workers, if WINCH stopped them, come back with the old code (the link points back).
                let _ = kill(Pid::from_raw(old), Signal::SIGHUP);
                let _ = self.wait_up(self.start_timeout).await;
                Err(fail(reason))
            }
        }
    }

    /// The second half of a handover: the new master up, ready, and the old one gone; the new pid.
    async fn take_over(&self, old: i32, version: &str, started: Instant) -> Result<i32, String> {
        let deadline = started + self.start_timeout;
        let next_pid = sibling(&self.pid_file, ".2");
        // 1. The new master writes `<pid file>.2` and starts its workers.
        let new = loop {
            if !alive(old) {
                return Err(format!("the running master {old} exited during the handover"));
            }
            if let Some(new) = self.new_master(old) {
                if !children(new).is_empty() {
                    break new;
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no new master with workers (pid file {}) after {}",
                    next_pid.display(),
                    crate::config::human_duration(self.start_timeout)
                ));
            }
            tokio::time::sleep(POLL).await;
        };
        match self.running_version(new) {
            Some(v) if v == version => {}
            other => {
                return Err(format!(
                    "the new master {new} runs {}, not {version}",
                    other.as_deref().unwrap_or("an unknown release")
                ))
            }
        }
        // 2. The old workers finish their requests and leave; once they are gone only the new ones
        // accept, so the ready check below is answered by the new release, never by an old worker that
        // took one more connection on its way out.
        let _ = kill(Pid::from_raw(old), Signal::SIGWINCH);
        let drained_by = Instant::now() + self.stop_timeout;
        loop {
            // The new master is the old one's child too.
            if children(old).iter().all(|pid| *pid == new) {
                break;
            }
            if !alive(new) {
                return Err(format!(
                    "the new master {new} exited: its workers did not boot (see its log)"
                ));
            }
            if Instant::now() >= drained_by {
                return Err(format!(
                    "the old workers did not finish their requests within {}",
                    crate::config::human_duration(self.stop_timeout)
                ));
            }
            tokio::time::sleep(POLL / 5).await;
        }
        // 3. The new release must answer (a worker that cannot load the app makes its master exit).
        let client = self.ready_client();
        loop {
            if !alive(new) {
                return Err(format!(
                    "the new master {new} exited: its workers did not boot (see its log)"
                ));
            }
            let reason = match self.ready_check(client.as_ref()).await {
                None if !children(new).is_empty() => break,
                None => "the new master has no worker".to_owned(),
                Some(reason) => reason,
            };
            if Instant::now() >= deadline {
                return Err(reason);
            }
            tokio::time::sleep(POLL).await;
        }
        // 4. The old master goes; the new one renames its pid file once it sees it gone.
        let _ = kill(Pid::from_raw(old), Signal::SIGTERM);
        if !wait_dead(old, self.stop_timeout).await {
            tracing::warn!(old, "the old master did not stop in time; sending SIGKILL");
            let _ = kill(Pid::from_raw(old), Signal::SIGKILL);
            wait_dead(old, KILL_WAIT).await;
        }
        self.settle_pid_file(new).await;
        Ok(new)
    }

    /// Make the pid file name `new`: gunicorn renames `.2` itself within about a second of the old
    /// master's exit; rail does it when gunicorn has not. The second is waited for, not saved by renaming
    /// first: until gunicorn has seen its parent gone it ignores USR2, so the next restart could not hand
    /// over.
    async fn settle_pid_file(&self, new: i32) {
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if self.read_pid().ok().flatten() == Some(new) {
                return;
            }
            tokio::time::sleep(POLL).await;
        }
        let next_pid = sibling(&self.pid_file, ".2");
        if read_pid_at(&next_pid) == Some(new) {
            let _ = fs_err::rename(&next_pid, &self.pid_file);
        }
    }

    /// The master a handover from `old` started: named by `<pid file>.2` until gunicorn promotes it, by
    /// the pid file afterwards (a daemonized master promotes itself at once).
    fn new_master(&self, old: i32) -> Option<i32> {
        [sibling(&self.pid_file, ".2"), self.pid_file.clone()]
            .iter()
            .filter_map(|path| read_pid_at(path))
            .find(|pid| *pid != old && alive(*pid) && self.owned(*pid))
    }

    /// Stop the master a failed handover started, if it is still there.
    async fn abandon_new_master(&self, old: i32) {
        let next_pid = sibling(&self.pid_file, ".2");
        if let Some(new) = self.new_master(old) {
            {
                let _ = kill(Pid::from_raw(new), Signal::SIGQUIT);
                if !wait_dead(new, self.stop_timeout).await {
                    let _ = killpg(Pid::from_raw(new), Signal::SIGKILL);
                    let _ = kill(Pid::from_raw(new), Signal::SIGKILL);
                    wait_dead(new, KILL_WAIT).await;
                }
            }
        }
        let _ = fs_err::remove_file(&next_pid);
    }

    /// Finish or undo a handover that a killed run left half-way: two masters (the old one named by the
    /// pid file, or by `.oldbin` in gunicorn versions that rename it, and the new one by `.2`), or the new
    /// one alone before it renamed `.2`. Afterwards the pid file names the one master serving.
    async fn repair_handover(&self) -> Result<(), ServiceError> {
        let old_file = sibling(&self.pid_file, ".oldbin");
        let next_file = sibling(&self.pid_file, ".2");
        let live = |path: &Path| read_pid_at(path).filter(|p| alive(*p) && self.owned(*p));
        let Some(new) = live(&next_file) else {
            // No second master. An old master alone under `.oldbin` takes the pid file back.
            if let (Some(old), None) = (live(&old_file), self.read_pid()?) {
                let _ = fs_err::rename(&old_file, &self.pid_file);
                tracing::warn!(old, "an interrupted handover left the old master alone: it stays");
            }
            return Ok(());
        };
        let old = live(&old_file).or_else(|| live(&self.pid_file)).filter(|old| *old != new);
        let Some(old) = old else {
            tracing::warn!(new, "the handover's new master is the only one left: it stays");
            self.settle_pid_file(new).await;
            return Ok(());
        };
        if self.running_version(new) == self.current()? {
            tracing::warn!(old, new, "finishing an interrupted handover: the new master stays");
            let _ = kill(Pid::from_raw(old), Signal::SIGWINCH);
            let _ = kill(Pid::from_raw(old), Signal::SIGTERM);
            if !wait_dead(old, self.stop_timeout).await {
                let _ = kill(Pid::from_raw(old), Signal::SIGKILL);
                wait_dead(old, KILL_WAIT).await;
            }
            self.settle_pid_file(new).await;
        } else {
            tracing::warn!(old, new, "undoing an interrupted handover: the old master stays");
            self.abandon_new_master(old).await;
            let _ = kill(Pid::from_raw(old), Signal::SIGHUP);
            if self.read_pid()? != Some(old) && live(&old_file) == Some(old) {
                let _ = fs_err::rename(&old_file, &self.pid_file);
            }
        }
        Ok(())
    }
}

fn exited(after: Duration, pid: i32) -> ServiceError {
    ServiceError::NotReady {
        backend: BACKEND,
        after,
        reason: format!("the app (pid {pid}) exited right after it started; see its log"),
    }
}

/// Whether `pid` is a live process (a zombie is dead, only not yet reaped).
fn alive(pid: i32) -> bool {
    match fs_err::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|close| stat[close + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        // No such entry: gone. Without /proc at all, ask the kernel (zombies then count as alive).
        Err(_) if Path::new("/proc/self").exists() => false,
        Err(_) => kill(Pid::from_raw(pid), None).is_ok(),
    }
}

/// Wait until `pid` is gone, at most `timeout`; whether it is.
async fn wait_dead(pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !alive(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl ServiceController for ReleasesController {
    fn check_version(&self, version: &str) -> Result<(), ServiceError> {
        self.check_release(version).map(|_| ())
    }

    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn stop(&self, _services: &[String]) -> Result<(), ServiceError> {
        self.stop_app().await
    }

    async fn start(&self, _services: &[String], version: Option<&str>) -> Result<(), ServiceError> {
        self.start_app(version).await
    }

    async fn restart(
        &self,
        _services: &[String],
        version: Option<&str>,
    ) -> Result<(), ServiceError> {
        // Check the target before stopping anything, and switch only once the old app is down.
        if let Some(version) = version {
            self.check_release(version)?;
        }
        self.repair_handover().await?;
        if let Some(pid) = self.running_pid()? {
            if !self.owned(pid) {
                return Err(self.not_ours(pid));
            }
            let target = match version {
                Some(v) => Some(v.to_owned()),
                None => self.current()?,
            };
            if let Some(target) = target {
                if self.use_handover(pid).map_err(|e| match e {
                    ServiceError::HandoverFailed { reason, .. } => {
                        ServiceError::HandoverFailed { version: target.clone(), reason }
                    }
                    other => other,
                })? {
                    return self.gunicorn_handover(pid, &target).await;
                }
            }
        }
        self.stop_app().await?;
        self.start_app(version).await
    }

    async fn status(&self) -> Result<Vec<ServiceStatus>, ServiceError> {
        let current = self.current()?;
        let detail = current.as_ref().map(|c| format!("current -> releases/{c}"));
        let status = match self.read_pid()?.filter(|pid| alive(*pid)) {
            Some(pid) if !self.owned(pid) => ServiceStatus {
                name: "app".into(),
                state: ServiceState::Unknown,
                pid: None,
                version: current,
                detail: Some(self.not_ours(pid).to_string()),
            },
            Some(pid) => {
                let ready = self.ready_check(self.ready_client().as_ref()).await;
                ServiceStatus {
                    name: "app".into(),
                    state: if ready.is_none() {
                        ServiceState::Running
                    } else {
                        ServiceState::Starting
                    },
                    pid: u32::try_from(pid).ok(),
                    version: self.running_version(pid).or(current),
                    detail: ready.or(detail),
                }
            }
            None => ServiceStatus {
                name: "app".into(),
                state: ServiceState::Stopped,
                pid: None,
                version: current,
                detail,
            },
        };
        Ok(vec![status])
    }

    async fn current_version(&self) -> Result<Option<String>, ServiceError> {
        self.current()
    }

    async fn wait_ready(
        &self,
        _services: &[String],
        timeout: Duration,
    ) -> Result<(), ServiceError> {
        self.wait_up(timeout).await
    }

    fn plan(&self, action: Action, _services: &[String], version: Option<&str>) -> Vec<String> {
        let stop = || match self.stop_command(None) {
            Some(cmd) => vec![cmd.display()],
            None => vec![format!(
                "kill -TERM <pid in {}>  (SIGKILL after {})",
                self.pid_file.display(),
                crate::config::human_duration(self.stop_timeout)
            )],
        };
        let start = || {
            let mut lines = Vec::new();
            if let Some(version) = version {
                lines.push(format!(
                    "ln -s releases/{version} current.tmp && mv -T current.tmp {}",
                    self.current_link().display()
                ));
            }
            let release = version.map(str::to_owned).or_else(|| self.current().ok().flatten());
            match release.as_deref().map(|r| self.start_command(r)) {
                Some(Ok(cmd)) => lines.push(cmd.display()),
                Some(Err(err)) => lines.push(format!("# cannot build the start command: {err}")),
                None => lines.push("# no current release to start".into()),
            }
            let ready = if self.ready_url.is_empty() {
                String::new()
            } else {
                format!(" and {} answering 2xx", self.ready_url)
            };
            lines.push(format!("# wait for {} with a live pid{ready}", self.pid_file.display()));
            lines
        };
        let handover = || -> Option<Vec<String>> {
            let pid = self.running_pid().ok().flatten()?;
            if !self.owned(pid) || !self.use_handover(pid).ok()? {
                return None;
            }
            let mut lines = Vec::new();
            if let Some(version) = version {
                lines.push(format!(
                    "ln -s releases/{version} current.tmp && mv -T current.tmp {}",
                    self.current_link().display()
                ));
            }
            lines.push(format!(
                "kill -USR2 {pid}  # gunicorn starts a new master on the same socket"
            ));
            lines.push(format!(
                "# wait for {} with live workers in the new release",
                sibling(&self.pid_file, ".2").display()
            ));
            lines.push(format!(
                "kill -WINCH {pid}  # the old workers finish their requests and leave"
            ));
            if !self.ready_url.is_empty() {
                lines.push(format!(
                    "# wait for {} answering 2xx from the new workers",
                    self.ready_url
                ));
            }
            lines.push(format!(
                "kill -TERM {pid}  # the old master leaves; on failure: HUP it back"
            ));
            Some(lines)
        };
        match action {
            Action::Stop => stop(),
            Action::Start => start(),
            Action::Restart => {
                handover().unwrap_or_else(|| stop().into_iter().chain(start()).collect())
            }
            Action::Status | Action::Version | Action::Ready => Vec::new(),
        }
    }
}
