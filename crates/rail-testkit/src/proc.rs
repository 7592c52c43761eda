//! Process plumbing shared by the servers the testkit starts: spawning, PIDs, signals, ports, ids.
//!
//! Every server is stopped by the PID it recorded, after checking that the PID still runs the expected
//! program, so a recycled PID is never signalled.

use std::ffi::OsStr;
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fs_err as fs;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A `Command` for `program`.
///
/// The testkit is test support, not the product, so it spawns programs directly instead of through
/// `rail_core::process` (which it must not depend on: rail-core's own tests use the testkit).
#[allow(clippy::disallowed_methods)]
pub(crate) fn command(program: impl AsRef<OsStr>) -> Command {
    Command::new(program)
}

/// Runs `cmd` to completion; panics with its output unless it exits 0.
pub(crate) fn run_ok(cmd: &mut Command, what: &str) -> String {
    let output = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|err| panic!("{what}: cannot run {:?}: {err}", cmd.get_program()));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what}: {:?} failed ({})\n{stdout}{}",
        cmd.get_program(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

pub(crate) fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A command running `program` as the `postgres` user when the tests run as root (PostgreSQL refuses
/// to run as root), else as ourselves.
pub(crate) fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut cmd = command("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        command(program)
    }
}

/// Gives `path` to the `postgres` user when running as root.
pub(crate) fn give_to_postgres(path: &Path) {
    if !is_root() {
        return;
    }
    let user = nix::unistd::User::from_name("postgres")
        .ok()
        .flatten()
        .expect("running as root needs a `postgres` user to run PostgreSQL as");
    std::os::unix::fs::chown(path, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
        .unwrap_or_else(|err| panic!("giving {} to postgres: {err}", path.display()));
}

/// Reads the first line of a pid file.
pub(crate) fn read_pid(path: &Path) -> Option<i32> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().next()?.trim().parse().ok().filter(|pid| *pid > 0)
}

/// Whether `pid` is a live process; zombies count as gone, as nothing may reap them.
pub(crate) fn pid_alive(pid: i32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("Z" | "X") | None)
}

/// Whether `pid` is alive and its command line mentions `expect`.
pub(crate) fn pid_runs(pid: i32, expect: &str) -> bool {
    pid_alive(pid)
        && fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|raw| String::from_utf8_lossy(&raw).replace('\0', " ").contains(expect))
}

/// The PIDs whose parent is `pid`.
pub(crate) fn children(pid: i32) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|child| {
            fs::read_to_string(format!("/proc/{child}/stat")).ok().is_some_and(|stat| {
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok())
                    == Some(pid)
            })
        })
        .collect()
}

pub(crate) fn signal(pid: i32, sig: Signal) {
    let _ = kill(Pid::from_raw(pid), sig);
}

/// Sends `sig` to `pid` if it runs `expect`, waits up to `grace`, then SIGKILLs it. Returns whether
/// the process is gone.
pub(crate) fn stop_pid(pid: i32, expect: &str, sig: Signal, grace: Duration) -> bool {
    if !pid_runs(pid, expect) {
        return true;
    }
    signal(pid, sig);
    if wait_until(grace, Duration::from_millis(10), || !pid_alive(pid)) {
        return true;
    }
    signal(pid, Signal::SIGKILL);
    wait_until(Duration::from_secs(5), Duration::from_millis(10), || !pid_alive(pid))
}

/// Polls `ready` every `interval` until it holds or `timeout` passes; returns whether it held.
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

/// A port on 127.0.0.1 that nothing listens on right now. Another process may take it before the
/// server binds it, so the servers retry with a new port when binding fails.
pub(crate) fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding 127.0.0.1:0");
    listener.local_addr().expect("a bound socket has an address").port()
}

/// A short id unique across the processes and threads of a test run.
pub(crate) fn unique_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // RandomState is seeded randomly per process: enough to tell concurrent test processes apart.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos());
    format!("{:012x}", hasher.finish() & 0xffff_ffff_ffff)
}

/// Copies a directory tree, keeping owners and modes (a data directory must stay the server's),
/// sharing blocks with the source where the filesystem can.
pub(crate) fn copy_tree(from: &Path, to: &Path) {
    run_ok(
        command("cp").args(["-a", "--reflink=auto"]).arg(from).arg(to),
        "copying a directory tree",
    );
}

/// The last lines of a log file, for failure messages.
pub(crate) fn tail_file(path: &Path, lines: usize) -> String {
    let text = fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    format!("--- last lines of {} ---\n{}", path.display(), all[start..].join("\n"))
}
