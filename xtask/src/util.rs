//! Small helpers shared by the subcommands: running programs, processes by PID, ports, HTTP and hashing.
//!
//! xtask keeps its dependencies few, so the little HTTP and Redis talk it needs to wait for services is
//! done here over plain TCP.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use fs_err as fs;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use sha2::{Digest, Sha256};

/// The workspace root: xtask's manifest lives one level below it.
pub(crate) fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

/// Cargo's target directory: `CARGO_TARGET_DIR`, else `target/` in the workspace.
pub(crate) fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

/// A `Command` for `program`.
///
/// xtask is developer tooling, not the product, so it spawns programs directly instead of through
/// `rail_core::process`.
#[allow(clippy::disallowed_methods)]
pub(crate) fn command(program: impl AsRef<OsStr>) -> Command {
    Command::new(program)
}

/// The command line of `cmd`, for messages.
pub(crate) fn display(cmd: &Command) -> String {
    let mut line = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// Runs `cmd` with inherited stdio; fails unless it exits 0.
pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running `{}`", display(cmd)))?;
    if !status.success() {
        bail!("`{}` failed: {status}", display(cmd));
    }
    Ok(())
}

/// Runs `cmd` with its output captured; fails unless it exits 0, showing the end of what it printed.
pub(crate) fn run_captured(cmd: &mut Command) -> Result<String> {
    let output =
        cmd.stdin(Stdio::null()).output().with_context(|| format!("running `{}`", display(cmd)))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        bail!(
            "`{}` failed: {}\n{}{}",
            display(cmd),
            output.status,
            tail(&stdout, 30),
            tail(&stderr, 30)
        );
    }
    Ok(stdout)
}

/// The last `lines` lines of `text`.
pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    let mut out = String::new();
    for line in &all[start..] {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The last lines of a log file, or a note that it cannot be read.
pub(crate) fn tail_file(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => format!(
            "--- last lines of {} ---\n{}",
            path.display(),
            tail(&String::from_utf8_lossy(&bytes), lines)
        ),
        Err(err) => format!("(cannot read {}: {err})\n", path.display()),
    }
}

/// Whether xtask runs as root (then PostgreSQL runs as the `postgres` user).
pub(crate) fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Finds `program` in PATH.
pub(crate) fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|candidate| candidate.is_file())
}

/// Reads the first line of a pid file.
pub(crate) fn read_pid(path: &Path) -> Option<i32> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().next()?.trim().parse().ok().filter(|pid| *pid > 0)
}

/// Whether `pid` is a live process (a zombie counts as gone: nothing may reap it here).
pub(crate) fn pid_alive(pid: i32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised command name, which may itself hold spaces or parentheses.
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("Z" | "X") | None)
}

/// Whether `pid` is alive and its command line mentions `expect`, so a recycled PID is never signalled.
pub(crate) fn pid_runs(pid: i32, expect: &str) -> bool {
    if !pid_alive(pid) {
        return false;
    }
    fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|raw| String::from_utf8_lossy(&raw).replace('\0', " ").contains(expect))
}

/// Sends `signal` to `pid` if it runs `expect`, waits up to `grace` for it to go, then kills it.
/// Returns whether a process was stopped.
pub(crate) fn stop_pid(pid: i32, expect: &str, signal: Signal, grace: Duration) -> bool {
    if !pid_runs(pid, expect) {
        return false;
    }
    let target = Pid::from_raw(pid);
    let _ = kill(target, signal);
    if wait_until(grace, Duration::from_millis(50), || !pid_alive(pid)) {
        return true;
    }
    let _ = kill(target, Signal::SIGKILL);
    wait_until(Duration::from_secs(5), Duration::from_millis(50), || !pid_alive(pid));
    true
}

/// Polls `ready` every `interval` until it holds or `timeout` passes.
pub(crate) fn wait_until(
    timeout: Duration,
    interval: Duration,
    mut ready: impl FnMut() -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(interval);
    }
}

/// A port on 127.0.0.1 that nothing listens on right now.
pub(crate) fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port on 127.0.0.1")?;
    Ok(listener.local_addr()?.port())
}

/// Whether `port` on 127.0.0.1 can be bound.
pub(crate) fn port_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// Hex of `n` random bytes from the kernel.
pub(crate) fn random_hex(n: usize) -> Result<String> {
    let mut bytes = vec![0u8; n];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    Ok(to_hex(&bytes))
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    to_hex(&Sha256::digest(bytes))
}

/// The HTTP status and body of `GET path` on 127.0.0.1:`port` (HTTP/1.0, so the server closes).
pub(crate) fn http_get(port: u16, path: &str, timeout: Duration) -> Result<(u16, String)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("no HTTP status line from 127.0.0.1:{port}"))?;
    let body = text.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    Ok((status, body))
}

/// Whether a Redis server answers PING on 127.0.0.1:`port`.
pub(crate) fn redis_ping(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    stream.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// Makes every ancestor of `path` traversable by other users, so the `postgres` user can reach a
/// data directory inside a root-owned checkout. Only the execute bit is added.
pub(crate) fn ensure_traversable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for dir in path.ancestors().skip(1) {
        if dir.as_os_str().is_empty() {
            continue;
        }
        let meta = fs::metadata(dir)?;
        let mode = meta.permissions().mode();
        if mode & 0o001 == 0 {
            fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o001)).with_context(
                || format!("making {} traversable for the postgres user", dir.display()),
            )?;
            eprintln!(
                "note: added o+x to {} so the postgres user can reach the stack",
                dir.display()
            );
        }
    }
    Ok(())
}

/// A fingerprint of every file under `dir` (names and contents; bytecode caches skipped).
pub(crate) fn tree_fingerprint(dir: &Path) -> Result<String> {
    fn walk(base: &Path, dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name == "__pycache__" || name.ends_with(".pyc") {
                continue;
            }
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                walk(base, &path, files)?;
            } else {
                files.push(path.strip_prefix(base).expect("walked below base").to_path_buf());
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(dir, dir, &mut files)?;
    files.sort();
    let mut hasher = Sha256::new();
    for file in files {
        let contents = fs::read(dir.join(&file))?;
        hasher.update(file.to_string_lossy().as_bytes());
        hasher.update([0]);
        hasher.update((contents.len() as u64).to_le_bytes());
        hasher.update(&contents);
    }
    Ok(to_hex(&hasher.finalize()))
}

/// One line on stdout; a closed pipe (`| head`) is not worth a panic.
pub(crate) fn stdout_line(line: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// `program` of the PyPI package `spec`, installed once per machine into a venv of its own:
/// `${XDG_CACHE_HOME:-$HOME/.cache}/rail/<name>-venv-<first 12 hex of sha256(spec)>`.
pub(crate) fn pip_tool(name: &str, spec: &str, program: &str) -> anyhow::Result<PathBuf> {
    use anyhow::Context as _;
    let cache = match std::env::var_os("XDG_CACHE_HOME").filter(|v| Path::new(v).is_absolute()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".cache"),
    };
    let venv =
        cache.join("rail").join(format!("{name}-venv-{}", &sha256_hex(spec.as_bytes())[..12]));
    let found = venv.join("bin").join(program);
    let marker = venv.join(".rail-install-complete");
    if marker.is_file() && found.is_file() {
        return Ok(found);
    }
    if venv.exists() {
        fs_err::remove_dir_all(&venv)?;
    }
    fs_err::create_dir_all(venv.parent().expect("a venv has a parent"))?;
    stdout_line(&format!("{name}: installing {spec} into {}", venv.display()));
    run_captured(command("python3").args(["-m", "venv"]).arg(&venv))?;
    run_captured(command(venv.join("bin").join("python")).args([
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "-q",
        spec,
    ]))
    .with_context(|| format!("installing {spec}"))?;
    fs_err::write(&marker, "")?;
    Ok(found)
}
