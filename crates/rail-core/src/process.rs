//! The one wrapper that spawns external programs (pg_dump, pg_restore, psql, manage.py, docker, systemctl,
//! kubectl).
//!
//! Every program runs from an argument vector, never through a shell string. Each child gets its own process
//! group so that a timeout, or dropping the future or [`Running`] that owns it, ends the whole tree it
//! started: SIGTERM first, SIGKILL after a grace period. stderr is always captured (its last 64 KiB) so a
//! failure can say why, and every command line that reaches a log, an error or a dry-run plan is redacted:
//! secret arguments and environment values print as `***`, URL passwords are masked, and the captured
//! stderr is scrubbed of every secret the command was given.
//!
//! Children never get a terminal on stdin: a program that would prompt (psql asking for a password) must
//! be told not to (`--no-password`), or it waits until its timeout.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::task::{AbortHandle, JoinHandle};

use crate::secret::{redact_url, scrub, Secret, REDACTED};

/// How much of a child's stderr is kept: the end of it, where the reason for a failure usually is.
const STDERR_KEEP: usize = 64 * 1024;
/// How many lines of stderr a [`ProcessError::Failed`] carries.
const STDERR_TAIL_LINES: usize = 20;
/// Default time between SIGTERM and SIGKILL when a process group is stopped.
const DEFAULT_GRACE: Duration = Duration::from_secs(5);
/// After the program itself has exited, how long its pipes may stay open (held by a background process it
/// left behind) before reading them is given up.
const DRAIN: Duration = Duration::from_secs(2);

/// Errors of running an external program. The command in each is the redacted display.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    #[error("could not start `{program}`")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` timed out after {}", crate::config::human_duration(*after))]
    Timeout { command: String, after: Duration },
    #[error("`{command}` {}{}", describe_status(*status), stderr_suffix(stderr_tail))]
    Failed { command: String, status: ExitStatus, stderr_tail: String },
    #[error("i/o error talking to `{command}`")]
    Io {
        command: String,
        #[source]
        source: std::io::Error,
    },
}

impl ProcessError {
    /// One line: the command, how it ended and the last line of what it printed on stderr (for a
    /// Python traceback, the exception), for places that show a failure briefly.
    pub fn summary(&self) -> String {
        match self {
            Self::Failed { command, status, stderr_tail } => {
                let last = stderr_tail.lines().rev().map(str::trim).find(|l| !l.is_empty());
                match last {
                    Some(line) => format!("`{command}` {}: {line}", describe_status(*status)),
                    None => format!("`{command}` {}", describe_status(*status)),
                }
            }
            other => {
                let mut text = other.to_string();
                let mut source = std::error::Error::source(other);
                while let Some(cause) = source {
                    text = format!("{text}: {cause}");
                    source = cause.source();
                }
                text
            }
        }
    }

    /// The exit status of a program that ran and failed.
    pub fn status(&self) -> Option<ExitStatus> {
        match self {
            Self::Failed { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// "exited with code 3" or "was killed by signal 9".
fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => format!("ended with {status}"),
    }
}

fn stderr_suffix(tail: &str) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!("; its stderr ends with:\n{tail}")
    }
}

#[derive(Clone)]
enum Arg {
    Plain(OsString),
    Secret(Secret),
}

#[derive(Clone)]
enum EnvOp {
    Set(OsString, OsString),
    SetSecret(OsString, Secret),
    Remove(OsString),
}

/// A command to run: program, argument vector, working directory, environment and timeout.
///
/// Built by value (`Cmd::new("pg_dump").arg("--format=custom")...`) and cheap to clone, so a backend can
/// keep a template and add arguments per call.
#[derive(Clone)]
pub struct Cmd {
    program: PathBuf,
    args: Vec<Arg>,
    cwd: Option<PathBuf>,
    env: Vec<EnvOp>,
    env_clear: bool,
    timeout: Option<Duration>,
    grace: Duration,
    stdin_piped: bool,
    extra_secrets: Vec<Secret>,
}

impl fmt::Debug for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Cmd").field(&self.display()).finish()
    }
}

impl Cmd {
    /// A command running `program`, found on `PATH` when it has no slash.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            cwd: None,
            env: Vec::new(),
            env_clear: false,
            timeout: None,
            grace: DEFAULT_GRACE,
            stdin_piped: false,
            extra_secrets: Vec::new(),
        }
    }

    /// Append one argument. A URL with a password is masked wherever the command is shown.
    #[must_use]
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(Arg::Plain(arg.into()));
        self
    }

    /// Append several arguments.
    #[must_use]
    pub fn args<I, A>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = A>,
        A: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(|a| Arg::Plain(a.into())));
        self
    }

    /// Append an argument that is passed for real but shown as `***`.
    #[must_use]
    pub fn secret_arg(mut self, secret: &Secret) -> Self {
        self.args.push(Arg::Secret(secret.clone()));
        self
    }

    /// Run in `dir` instead of the current directory.
    #[must_use]
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Set an environment variable for the child. Shown in [`Cmd::display`] as `KEY=value`.
    #[must_use]
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push(EnvOp::Set(key.into(), value.into()));
        self
    }

    /// Set an environment variable whose value is secret (`PGPASSWORD`). Shown as `KEY=***`.
    #[must_use]
    pub fn secret_env(mut self, key: impl Into<OsString>, value: &Secret) -> Self {
        self.env.push(EnvOp::SetSecret(key.into(), value.clone()));
        self
    }

    /// Start the child with an empty environment (then add what it needs with [`Cmd::env`]).
    #[must_use]
    pub fn env_clear(mut self) -> Self {
        self.env_clear = true;
        self.env.clear();
        self
    }

    /// Remove a variable the child would otherwise inherit.
    #[must_use]
    pub fn env_remove(mut self, key: impl Into<OsString>) -> Self {
        self.env.push(EnvOp::Remove(key.into()));
        self
    }

    /// Stop the program (and everything it started) if it runs longer than `limit`. Default: no limit.
    #[must_use]
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// Time between SIGTERM and SIGKILL when the program is stopped (default 5 s).
    #[must_use]
    pub fn kill_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Give [`Running::stdin`] a pipe to write to (only meaningful with [`Cmd::spawn`]; otherwise stdin is
    /// empty).
    #[must_use]
    pub fn stdin_piped(mut self) -> Self {
        self.stdin_piped = true;
        self
    }

    /// Scrub this secret from captured output too, when the program may print it without having been
    /// given it through [`Cmd::secret_arg`] or [`Cmd::secret_env`] (a password inside a config file).
    #[must_use]
    pub fn scrub_secret(mut self, secret: &Secret) -> Self {
        self.extra_secrets.push(secret.clone());
        self
    }

    /// The program this command runs.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// The redacted argument vector, program first: for dry-run plans and tests of backends.
    pub fn argv(&self) -> Vec<String> {
        std::iter::once(self.program.to_string_lossy().into_owned())
            .chain(self.args.iter().map(|arg| match arg {
                Arg::Plain(a) => redact_url(&a.to_string_lossy()),
                Arg::Secret(_) => REDACTED.to_owned(),
            }))
            .collect()
    }

    /// The command as a shell-quoted line without its environment, secrets shown as `***`: what
    /// errors and `-v` logs show.
    pub fn display_argv(&self) -> String {
        self.argv().iter().map(|w| shell_quote(w)).collect::<Vec<_>>().join(" ")
    }

    /// The command as a shell-quoted line, preceded by the variables it sets, with every secret shown as
    /// `***`: what dry-run plans and `-vv` logs show.
    pub fn display(&self) -> String {
        let mut words = Vec::new();
        if self.env_clear {
            words.push("env -i".to_owned());
        }
        for op in &self.env {
            match op {
                EnvOp::Set(k, v) => words.push(format!(
                    "{}={}",
                    k.to_string_lossy(),
                    shell_quote(&redact_url(&v.to_string_lossy()))
                )),
                EnvOp::SetSecret(k, _) => words.push(format!("{}={REDACTED}", k.to_string_lossy())),
                EnvOp::Remove(_) => {}
            }
        }
        words.push(shell_quote(&self.program.to_string_lossy()));
        for arg in &self.args {
            words.push(match arg {
                Arg::Plain(a) => shell_quote(&redact_url(&a.to_string_lossy())),
                Arg::Secret(_) => REDACTED.to_owned(),
            });
        }
        words.join(" ")
    }

    /// Every secret this command carries, to scrub from what the program prints.
    fn secrets(&self) -> Vec<Secret> {
        let mut secrets = self.extra_secrets.clone();
        for arg in &self.args {
            match arg {
                Arg::Secret(s) => secrets.push(s.clone()),
                Arg::Plain(a) => secrets.extend(url_password(&a.to_string_lossy())),
            }
        }
        for op in &self.env {
            match op {
                EnvOp::SetSecret(_, s) => secrets.push(s.clone()),
                EnvOp::Set(_, v) => secrets.extend(url_password(&v.to_string_lossy())),
                EnvOp::Remove(_) => {}
            }
        }
        secrets
    }

    /// Run to completion, capturing stdout (whole) and stderr (its last 64 KiB). A non-zero exit is
    /// [`ProcessError::Failed`]. For output larger than fits comfortably in memory use [`Cmd::spawn`].
    pub async fn output(&self) -> Result<Output, ProcessError> {
        let mut running = self.start()?;
        let stdout = running.stdout.take().expect("stdout is piped");
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let reader = tokio::spawn(read_into(stdout, Arc::clone(&buffer), usize::MAX));
        let finished = running.finish(Some(reader)).await;
        let stdout = std::mem::take(&mut *buffer.lock().expect("stdout buffer lock"));
        let finished = finished?;
        Ok(Output { status: finished.status, stdout, stderr: finished.stderr })
    }

    /// Run to completion; what the program prints is logged at debug level.
    pub async fn run(&self) -> Result<(), ProcessError> {
        let output = self.output().await?;
        if !output.stdout.is_empty() {
            tracing::debug!(
                command = %self.display_argv(),
                stdout = %scrub(&String::from_utf8_lossy(&output.stdout), &self.secrets()),
                "program output"
            );
        }
        if !output.stderr.is_empty() {
            tracing::debug!(command = %self.display_argv(), stderr = %output.stderr, "program stderr");
        }
        Ok(())
    }

    /// Start the program with stdout piped to [`Running::stdout`], for streaming (pg_dump into a hashing
    /// writer). Read stdout to its end, then call [`Running::wait`]. Needs a tokio runtime.
    pub fn spawn(&self) -> Result<Running, ProcessError> {
        self.start()
    }

    fn start(&self) -> Result<Running, ProcessError> {
        let shown = self.display_argv();
        let shown_env = self.display();
        // The single place in rail that creates a process: everything else goes through `Cmd`.
        #[allow(clippy::disallowed_methods)]
        let mut command = tokio::process::Command::new(&self.program);
        for arg in &self.args {
            match arg {
                Arg::Plain(a) => command.arg(a),
                Arg::Secret(s) => command.arg(s.expose()),
            };
        }
        if let Some(dir) = &self.cwd {
            command.current_dir(dir);
        }
        if self.env_clear {
            command.env_clear();
        }
        for op in &self.env {
            match op {
                EnvOp::Set(k, v) => command.env(k, v),
                EnvOp::SetSecret(k, s) => command.env(k, OsStr::new(s.expose())),
                EnvOp::Remove(k) => command.env_remove(k),
            };
        }
        command
            .stdin(if self.stdin_piped { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group, so that stopping it reaches the processes it started, and a Ctrl-C on the
            // terminal reaches rail (which stops its children in order) instead of every child at once.
            .process_group(0);

        tracing::debug!(command = %shown, "starting");
        let mut child = command.spawn().map_err(|source| ProcessError::Spawn {
            program: self.program.to_string_lossy().into_owned(),
            source,
        })?;
        let pgid = child.id().map(|pid| Pid::from_raw(pid as i32));
        let mut guard = GroupGuard { pgid, grace: self.grace, armed: true, watchdog: None };

        let stderr_buf = Arc::new(Mutex::new(Vec::new()));
        let stderr_task = child
            .stderr
            .take()
            .map(|stderr| tokio::spawn(read_into(stderr, Arc::clone(&stderr_buf), STDERR_KEEP)));

        let timed_out = Arc::new(AtomicBool::new(false));
        let watchdog = match (self.timeout, pgid) {
            (Some(limit), Some(pgid)) => {
                let timed_out = Arc::clone(&timed_out);
                let grace = self.grace;
                Some(tokio::spawn(async move {
                    tokio::time::sleep(limit).await;
                    timed_out.store(true, Ordering::SeqCst);
                    // Blocking: it polls until the group is gone or the grace period is over.
                    let _ = tokio::task::spawn_blocking(move || stop_group(pgid, grace)).await;
                }))
            }
            _ => None,
        };
        guard.watchdog = watchdog.as_ref().map(JoinHandle::abort_handle);

        Ok(Running {
            stdout: child.stdout.take(),
            stdin: child.stdin.take(),
            child,
            display: shown,
            display_env: shown_env,
            secrets: self.secrets(),
            timeout: self.timeout,
            started: Instant::now(),
            stderr_buf,
            stderr_task,
            timed_out,
            watchdog,
            guard,
        })
    }
}

/// What a finished program printed.
#[derive(Debug, Clone)]
pub struct Output {
    pub status: ExitStatus,
    /// Everything the program wrote to stdout, unaltered.
    pub stdout: Vec<u8>,
    /// The last 64 KiB of stderr, lossily decoded and scrubbed of the command's secrets.
    pub stderr: String,
}

impl Output {
    /// stdout decoded as UTF-8 (invalid bytes replaced).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// How a streamed program ended (stdout went to the caller).
#[derive(Debug, Clone)]
pub struct Finished {
    pub status: ExitStatus,
    /// The last 64 KiB of stderr, scrubbed of the command's secrets.
    pub stderr: String,
}

/// A started program. Dropping it before [`Running::wait`] returns stops its whole process group.
pub struct Running {
    /// The program's stdout, to read to its end before [`Running::wait`] (an unread full pipe blocks it).
    pub stdout: Option<ChildStdout>,
    /// The program's stdin when the command was built with [`Cmd::stdin_piped`]; drop it to send EOF.
    pub stdin: Option<ChildStdin>,
    child: Child,
    /// The argument vector, for errors and `-v`.
    display: String,
    /// The environment it set and the argument vector, for `-vv`.
    display_env: String,
    secrets: Vec<Secret>,
    timeout: Option<Duration>,
    started: Instant,
    stderr_buf: Arc<Mutex<Vec<u8>>>,
    stderr_task: Option<JoinHandle<()>>,
    timed_out: Arc<AtomicBool>,
    watchdog: Option<JoinHandle<()>>,
    guard: GroupGuard,
}

impl fmt::Debug for Running {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Running")
            .field("command", &self.display)
            .field("pid", &self.pid())
            .finish_non_exhaustive()
    }
}

impl Running {
    /// The program's process id, which is also its process group id. `None` once it has been reaped.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The redacted command line.
    pub fn command(&self) -> &str {
        &self.display
    }

    /// Wait for the program to exit. A non-zero exit is [`ProcessError::Failed`], running past the
    /// command's timeout is [`ProcessError::Timeout`].
    pub async fn wait(self) -> Result<Finished, ProcessError> {
        self.finish(None).await
    }

    async fn finish(
        mut self,
        stdout_reader: Option<JoinHandle<()>>,
    ) -> Result<Finished, ProcessError> {
        // A pipe the caller kept would make a program that reads stdin wait forever.
        drop(self.stdin.take());
        let status = self.child.wait().await;
        let timed_out = self.timed_out.load(Ordering::SeqCst);
        if let Some(watchdog) = self.watchdog.take() {
            if timed_out {
                // Let it finish: it escalates to SIGKILL for what ignored SIGTERM.
                let _ = watchdog.await;
            } else {
                watchdog.abort();
            }
        }
        // The program is gone (and reaped): nothing of its group needs stopping any more. Processes it
        // left running in the background on purpose are not ours to kill.
        self.guard.armed = false;
        let status =
            status.map_err(|source| ProcessError::Io { command: self.display.clone(), source })?;

        // One deadline for both pipes: a background process typically holds both open.
        let deadline = tokio::time::Instant::now() + DRAIN;
        for task in [stdout_reader, self.stderr_task.take()].into_iter().flatten() {
            drain(task, deadline).await;
        }
        let stderr = {
            let raw = self.stderr_buf.lock().expect("stderr buffer lock");
            scrub(&String::from_utf8_lossy(&raw), &self.secrets)
        };
        let elapsed = self.started.elapsed();
        let duration_ms = elapsed.as_millis() as u64;

        if timed_out {
            let after = self.timeout.unwrap_or(elapsed);
            tracing::warn!(command = %self.display, duration_ms, "timed out");
            return Err(ProcessError::Timeout { command: self.display.clone(), after });
        }
        if tracing::enabled!(tracing::Level::DEBUG) {
            tracing::debug!(command = %self.display_env, duration_ms, status = %describe_status(status), "ran");
        } else {
            tracing::info!(command = %self.display, duration_ms, status = %describe_status(status), "ran");
        }
        if status.success() {
            Ok(Finished { status, stderr })
        } else {
            Err(ProcessError::Failed {
                command: self.display.clone(),
                status,
                stderr_tail: last_lines(&stderr, STDERR_TAIL_LINES),
            })
        }
    }
}

/// Wait for a pipe reader to reach EOF, but not past `deadline`: a background process the program left
/// behind may hold the pipe open for as long as it runs.
async fn drain(task: JoinHandle<()>, deadline: tokio::time::Instant) {
    let abort = task.abort_handle();
    if tokio::time::timeout_at(deadline, task).await.is_err() {
        tracing::debug!(
            "a background process still holds the program's output open; not waiting for it"
        );
        abort.abort();
    }
}

/// Read `source` to its end into `buffer`, keeping at most its last `keep` bytes.
async fn read_into<R: tokio::io::AsyncRead + Unpin>(
    mut source: R,
    buffer: Arc<Mutex<Vec<u8>>>,
    keep: usize,
) {
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match source.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let mut buf = buffer.lock().expect("output buffer lock");
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > keep {
                    let excess = buf.len() - keep;
                    buf.drain(..excess);
                }
            }
        }
    }
}

/// Stops a child's process group when the [`Running`] (or the `output()` future) is dropped early.
struct GroupGuard {
    pgid: Option<Pid>,
    grace: Duration,
    armed: bool,
    /// The timeout's watchdog, which must not fire at a group id that may since have been reused.
    watchdog: Option<AbortHandle>,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(watchdog) = &self.watchdog {
            watchdog.abort();
        }
        if let (true, Some(pgid)) = (self.armed, self.pgid) {
            // SIGTERM now; the wait for the grace period and the SIGKILL happen off this thread, which may
            // be an async worker.
            let _ = killpg(pgid, Signal::SIGTERM);
            let grace = self.grace;
            std::thread::spawn(move || stop_group(pgid, grace));
        }
    }
}

/// SIGTERM (and SIGCONT, so a stopped process can act on it) to the whole group, then SIGKILL to whatever
/// is left after `grace`. Blocking.
fn stop_group(pgid: Pid, grace: Duration) {
    if killpg(pgid, Signal::SIGTERM).is_err() {
        return; // the group is already gone
    }
    let _ = killpg(pgid, Signal::SIGCONT);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !group_alive(pgid) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = killpg(pgid, Signal::SIGKILL);
}

/// Whether any process (zombies excluded: they are dead, only not yet reaped) is in the group.
fn group_alive(pgid: Pid) -> bool {
    if killpg(pgid, None).is_err() {
        return false;
    }
    // killpg succeeds for a group of zombies too; /proc tells them apart where it is available.
    match fs_err::read_dir("/proc") {
        Ok(entries) => entries.filter_map(Result::ok).any(|entry| {
            fs_err::read_to_string(entry.path().join("stat"))
                .ok()
                .and_then(|stat| parse_stat(&stat))
                .is_some_and(|(state, pgrp)| pgrp == pgid.as_raw() && state != 'Z' && state != 'X')
        }),
        Err(_) => true,
    }
}

/// State and process group from the text of `/proc/<pid>/stat`.
fn parse_stat(stat: &str) -> Option<(char, i32)> {
    // The command name (field 2) is in parentheses and may hold spaces: parse from its end.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
}

/// The password of `raw` if it is a URL with one, raw and percent-decoded, to scrub from output.
fn url_password(raw: &str) -> Vec<Secret> {
    let Ok(url) = url::Url::parse(raw) else { return Vec::new() };
    let Some(password) = url.password() else { return Vec::new() };
    let mut out = vec![Secret::new(password)];
    let decoded = percent_decode(password);
    if decoded != password {
        out.push(Secret::new(decoded));
    }
    out
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex_value(bytes[i + 1]), hex_value(bytes[i + 2])) {
                out.push(hi * 16 + lo);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(byte: u8) -> Option<u8> {
    (byte as char).to_digit(16).map(|d| d as u8)
}

/// The last `n` lines of `text`, without a trailing newline.
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Quote `word` for a POSIX shell when it holds anything but plainly safe characters.
pub fn shell_quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word.bytes().all(|b| b.is_ascii_alphanumeric() || b"_@%+=:,./-".contains(&b));
    if safe {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_and_redacts() {
        let password = Secret::new("s3cr3t");
        let cmd = Cmd::new("pg_dump")
            .arg("--format=custom")
            .arg("--file")
            .arg("/backups/my dump")
            .arg("postgresql://app:s3cr3t@db:5432/app")
            .secret_arg(&password)
            .env("IMAGE_TAG", "v2")
            .secret_env("PGPASSWORD", &password);
        assert_eq!(
            cmd.display(),
            "IMAGE_TAG=v2 PGPASSWORD=*** pg_dump --format=custom --file '/backups/my dump' \
             'postgresql://app:***@db:5432/app' ***"
        );
        assert_eq!(
            cmd.argv(),
            [
                "pg_dump",
                "--format=custom",
                "--file",
                "/backups/my dump",
                "postgresql://app:***@db:5432/app",
                "***"
            ]
        );
        assert!(!format!("{cmd:?}").contains("s3cr3t"));
    }

    #[test]
    fn shell_quote_handles_quotes_and_empty() {
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("a;b"), "'a;b'");
        assert_eq!(shell_quote("app:0042_add_field"), "app:0042_add_field");
    }

    #[test]
    fn url_passwords_are_scrubbed_decoded_too() {
        let cmd = Cmd::new("psql").arg("postgresql://u:p%40ss@h/db");
        let secrets = cmd.secrets();
        assert_eq!(
            scrub("auth failed for p@ss and p%40ss", &secrets),
            "auth failed for *** and ***"
        );
    }

    #[test]
    fn stat_parsing_survives_odd_names() {
        assert_eq!(parse_stat("123 (a b) c) S 1 456 456 0"), Some(('S', 456)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn last_lines_keeps_the_end() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(last_lines("", 2), "");
    }
}
