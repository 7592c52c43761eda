//! Running the workspace's binaries as a user would: a cleared environment, captured output, a
//! timeout, and snapshot filters that make the output stable across runs and machines.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::OnceLock;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use regex::Regex;

use crate::proc;
use crate::stack::workspace_root;

/// The path of a workspace binary (`deploy`, `rollback`, `healthcheck`, `schemaver`) in the target
/// directory the running test was built into.
///
/// In its own crate's tests prefer `env!("CARGO_BIN_EXE_deploy")`, which makes cargo build it; for
/// another crate's binary this finds `target/<profile>/<name>`, built by `cargo nextest run --workspace`
/// or `cargo build --bins`.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    // Test executables live in target/<profile>/deps/.
    let profile_dir =
        exe.parent().and_then(Path::parent).expect("the test runs from target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.is_file(),
        "binary `{name}` is not built at {}: run `cargo build --bins` (or the tests through `cargo xtask test`)",
        path.display()
    );
    path
}

/// A program to run, built up like `std::process::Command`; see [`cmd`].
#[derive(Debug, Clone)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    dir: Option<PathBuf>,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
}

/// A command for `program` that will run with a cleared environment: only `PATH`, `HOME` (and `LANG`,
/// `TMPDIR`) of the test process are kept, plus what [`Cmd::env`] adds. Default timeout: 120 s.
pub fn cmd(program: impl AsRef<OsStr>) -> Cmd {
    Cmd {
        program: program.as_ref().to_owned(),
        args: Vec::new(),
        envs: Vec::new(),
        dir: None,
        stdin: None,
        timeout: Duration::from_secs(120),
    }
}

/// Runs `cmd` to completion; see [`Cmd::run`].
pub fn run(cmd: &Cmd) -> Output {
    cmd.run()
}

impl Cmd {
    /// Adds an argument.
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable (on top of the cleared environment).
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Self {
        self.envs.push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Sets environment variables, e.g. a [`TestApp::env_vars`](crate::TestApp::env_vars).
    pub fn envs<I, K, V>(&mut self, vars: I) -> &mut Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        for (k, v) in vars {
            self.env(k, v);
        }
        self
    }

    /// The working directory (default: the test's).
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Self {
        self.dir = Some(dir.as_ref().to_owned());
        self
    }

    /// Bytes written to the program's stdin (otherwise stdin is empty).
    pub fn stdin(&mut self, input: impl Into<Vec<u8>>) -> &mut Self {
        self.stdin = Some(input.into());
        self
    }

    /// After this long the program is killed and [`Output::timed_out`] is set.
    pub fn timeout(&mut self, timeout: Duration) -> &mut Self {
        self.timeout = timeout;
        self
    }

    /// Starts the program in its own process group; see [`Running`].
    pub fn spawn(&self) -> Running {
        let mut command = proc::command(&self.program);
        command.args(&self.args).env_clear();
        for key in ["PATH", "HOME", "LANG", "TMPDIR"] {
            if let Some(value) = std::env::var_os(key) {
                command.env(key, value);
            }
        }
        // The stack's backup key, as an operator's environment would hold it, unless the test says
        // otherwise (set `RAIL_BACKUP_KEY_FILE` to "" for a run without one).
        if !self.envs.iter().any(|(k, _)| k == "RAIL_BACKUP_KEY_FILE" || k == "RAIL_BACKUP_KEY") {
            if let Some(key) = crate::Stack::try_get().and_then(|s| s.var("RAIL_BACKUP_KEY_FILE")) {
                command.env("RAIL_BACKUP_KEY_FILE", key);
            }
        }
        command.envs(self.envs.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &self.dir {
            command.current_dir(dir);
        }
        command
            .stdin(if self.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", self.program.to_string_lossy()));
        if let Some(input) = self.stdin.clone() {
            let mut pipe = child.stdin.take().expect("stdin is piped");
            // A program that does not read its input closes the pipe; that is its business.
            std::thread::spawn(move || {
                let _ = pipe.write_all(&input);
            });
        }
        let stdout = reader(child.stdout.take().expect("stdout is piped"));
        let stderr = reader(child.stderr.take().expect("stderr is piped"));
        Running {
            child,
            stdout: Some(stdout),
            stderr: Some(stderr),
            timeout: self.timeout,
            started: Instant::now(),
        }
    }

    /// Runs the program to completion (or its timeout) and returns what it did.
    pub fn run(&self) -> Output {
        self.spawn().wait()
    }
}

fn reader(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

/// A program started by [`Cmd::spawn`], e.g. to kill it mid-way.
#[derive(Debug)]
pub struct Running {
    child: Child,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
    timeout: Duration,
    started: Instant,
}

impl Running {
    /// The program's PID (also its process group id).
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends SIGKILL to the program (only the program: its children are left, as after a real
    /// `kill -9`).
    pub fn kill(&mut self) {
        proc::signal(self.pid(), nix::sys::signal::Signal::SIGKILL);
    }

    /// Sends `signal` to the program.
    pub fn signal(&mut self, signal: nix::sys::signal::Signal) {
        proc::signal(self.pid(), signal);
    }

    /// Whether the program has exited.
    pub fn finished(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits for the program (killing it at its timeout) and returns its output.
    pub fn wait(mut self) -> Output {
        let mut timed_out = false;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("waiting for a child") {
                break status;
            }
            if self.started.elapsed() >= self.timeout {
                timed_out = true;
                // The whole process group: whatever the program started must not outlive the test.
                proc::signal(-self.pid(), nix::sys::signal::Signal::SIGKILL);
                break self.child.wait().expect("waiting for a killed child");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let text = |handle: Option<JoinHandle<Vec<u8>>>| {
            String::from_utf8_lossy(&handle.and_then(|h| h.join().ok()).unwrap_or_default())
                .into_owned()
        };
        Output {
            code: status.code(),
            signal: std::os::unix::process::ExitStatusExt::signal(&status),
            stdout: text(self.stdout.take()),
            stderr: text(self.stderr.take()),
            timed_out,
        }
    }
}

/// What a program did: exit code, stdout, stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The exit code; `None` when a signal ended the program.
    pub code: Option<i32>,
    /// The signal that ended the program, if one did.
    pub signal: Option<i32>,
    /// Everything the program printed on stdout (lossy UTF-8).
    pub stdout: String,
    /// Everything the program printed on stderr (lossy UTF-8).
    pub stderr: String,
    /// Whether the program was killed at its timeout.
    pub timed_out: bool,
}

impl Output {
    /// Whether the program exited 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Panics, showing everything, unless the program exited with `code`.
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert!(self.code == Some(code), "expected exit code {code}\n{}", self.describe());
        self
    }

    /// Panics, showing everything, unless the program exited 0.
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        self.assert_code(0)
    }

    /// stdout parsed as JSON; panics, showing everything, if it is not.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|err| panic!("stdout is not JSON: {err}\n{}", self.describe()))
    }

    /// Exit code, stdout and stderr, unfiltered, for failure messages.
    pub fn describe(&self) -> String {
        self.render(str::to_owned)
    }

    /// Exit code, stdout and stderr with [`filter`] applied, for snapshots:
    ///
    /// ```text
    /// exit code: 0
    /// ----- stdout -----
    /// …
    /// ----- stderr -----
    /// …
    /// ```
    pub fn snapshot(&self) -> String {
        self.render(filter)
    }

    fn render(&self, f: impl Fn(&str) -> String) -> String {
        let status = match (self.code, self.signal) {
            (Some(code), _) => format!("exit code: {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            (None, None) => "exit code: unknown".to_owned(),
        };
        let timeout = if self.timed_out { " (timed out)" } else { "" };
        format!(
            "{status}{timeout}\n----- stdout -----\n{}----- stderr -----\n{}",
            f(&self.stdout),
            f(&self.stderr)
        )
    }
}

/// The snapshot filters as `(regex, replacement)` pairs, in the order they apply; for
/// `insta::Settings::add_filter` when a test snapshots text of its own.
///
/// They replace: the scratch, stack, workspace and temp directories (`[SCRATCH]`, `[STACK]`, `[ROOT]`,
/// `[TEMP]`), ports on 127.0.0.1/localhost (`[PORT]`), timestamps (`[TIMESTAMP]`), durations
/// (`[DURATION]`) and PIDs (`[PID]`). Passwords are never filtered: a snapshot must show a leak.
pub fn snapshot_filters() -> Vec<(String, String)> {
    let root = workspace_root();
    let stack = std::env::var_os("RAIL_STACK_DIR")
        .map_or_else(|| root.join("target").join("stack"), PathBuf::from);
    let temp = std::env::temp_dir();
    let temp = temp.to_string_lossy();
    let temp = temp.trim_end_matches('/');
    let path = |p: &Path| regex::escape(&p.to_string_lossy());
    vec![
        (format!(r"{}/[^/\s]+", path(&stack.join("scratch"))), "[SCRATCH]".to_owned()),
        (path(&stack), "[STACK]".to_owned()),
        (path(root), "[ROOT]".to_owned()),
        (format!(r"{}/\.?tmp[A-Za-z0-9_]+", regex::escape(temp)), "[TEMP]".to_owned()),
        (r"(127\.0\.0\.1|localhost|\[::1\]):\d{2,5}\b".to_owned(), "$1:[PORT]".to_owned()),
        (
            r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2}|\sUTC)?"
                .to_owned(),
            "[TIMESTAMP]".to_owned(),
        ),
        (r"\d{8}[T_-]\d{6}Z?".to_owned(), "[TIMESTAMP]".to_owned()),
        (r"\b\d+(?:\.\d+)?\s?(?:ns|µs|us|ms|s)\b".to_owned(), "[DURATION]".to_owned()),
        (r"\b(pid:?\s*)\d+\b".to_owned(), "${1}[PID]".to_owned()),
    ]
}

/// Applies [`snapshot_filters`] to `text`.
pub fn filter(text: &str) -> String {
    static FILTERS: OnceLock<Vec<(Regex, String)>> = OnceLock::new();
    let filters = FILTERS.get_or_init(|| {
        snapshot_filters()
            .into_iter()
            .map(|(re, to)| (Regex::new(&re).expect("snapshot filters are valid regexes"), to))
            .collect()
    });
    let mut out = text.to_owned();
    for (re, to) in filters {
        out = re.replace_all(&out, to.as_str()).into_owned();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_paths_ports_times_durations_and_pids() {
        let root = workspace_root().display().to_string();
        let tmp = std::env::temp_dir().join(".tmpAb12Cd").join("backups");
        let text = format!(
            "{root}/target/stack/scratch/pg-0123/data {root}/target/stack/env {root}/Cargo.toml {}\n\
             connect 127.0.0.1:54321 localhost:6379 at 2024-05-01T12:30:00.123Z and 2024-05-01 12:30:00+00:00\n\
             backup_20240501_123000 took 1.25s (12ms, 3 µs) pid 4242 password hunter2",
            tmp.display()
        );
        assert_eq!(
            filter(&text),
            "[SCRATCH]/data [STACK]/env [ROOT]/Cargo.toml [TEMP]/backups\n\
             connect 127.0.0.1:[PORT] localhost:[PORT] at [TIMESTAMP] and [TIMESTAMP]\n\
             backup_[TIMESTAMP] took [DURATION] ([DURATION], [DURATION]) pid [PID] password hunter2"
        );
    }

    #[test]
    fn snapshot_shows_code_and_both_streams() {
        let output = Output {
            code: Some(3),
            signal: None,
            stdout: "took 5ms\n".to_owned(),
            stderr: "error: x\n".to_owned(),
            timed_out: false,
        };
        assert_eq!(
            output.snapshot(),
            "exit code: 3\n----- stdout -----\ntook [DURATION]\n----- stderr -----\nerror: x\n"
        );
        assert!(!output.success());
    }
}
