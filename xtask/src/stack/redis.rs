//! The stack's private Redis 7: no persistence, 1024 databases so every test can have an index of its
//! own, daemonised with a pid file under `target/stack/redis/`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};
use fs_err as fs;
use nix::sys::signal::Signal;

use super::{Layout, Tools};
use crate::envfile::{url_port, EnvFile};
use crate::util;

pub(super) fn find_server() -> Result<PathBuf, String> {
    let Some(server) = util::which("redis-server") else {
        return Err("redis-server (Redis 7) not found in PATH".to_owned());
    };
    let version = util::run_captured(util::command(&server).arg("--version")).unwrap_or_default();
    // "Redis server v=7.0.15 sha=..."
    let major = version
        .split_whitespace()
        .find_map(|word| word.strip_prefix("v="))
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.parse::<u32>().ok());
    match major {
        Some(m) if m >= 7 => Ok(server),
        _ => Err(format!("{} is not Redis 7 or newer ({})", server.display(), version.trim())),
    }
}

fn pid_file(layout: &Layout) -> PathBuf {
    layout.redis.join("redis.pid")
}

fn running_pid(layout: &Layout) -> Option<i32> {
    util::read_pid(&pid_file(layout)).filter(|pid| util::pid_runs(*pid, "redis-server"))
}

pub(super) fn running_port(layout: &Layout) -> Option<u16> {
    running_pid(layout)?;
    let env = EnvFile::load(&layout.env_file).ok()??;
    env.get("REDIS_URL").and_then(url_port)
}

/// A value for redis.conf: quoted, because paths may hold spaces.
fn quoted(path: &Path) -> String {
    format!("\"{}\"", path.display().to_string().replace('\\', "\\\\").replace('"', "\\\""))
}

pub(super) fn up(layout: &Layout, tools: &Tools, port: u16) -> Result<()> {
    fs::create_dir_all(&layout.redis)?;
    if let Some(pid) = running_pid(layout) {
        if !util::redis_ping(port) {
            bail!("redis (pid {pid}) does not answer on 127.0.0.1:{port}: run `cargo xtask stack down` first");
        }
        util::stdout_line(&format!("redis: running (pid {pid}, 127.0.0.1:{port})"));
        return Ok(());
    }
    let conf = layout.redis.join("redis.conf");
    let log = layout.redis.join("redis.log");
    fs::write(
        &conf,
        format!(
            "# Written by `cargo xtask stack up`.\n\
             bind 127.0.0.1\n\
             port {port}\n\
             protected-mode yes\n\
             daemonize yes\n\
             pidfile {}\n\
             logfile {}\n\
             dir {}\n\
             # One database per test (the testkit hands out indexes 1..1023).\n\
             databases 1024\n\
             save \"\"\n\
             appendonly no\n",
            quoted(&pid_file(layout)),
            quoted(&log),
            quoted(&layout.redis),
        ),
    )?;
    util::run_captured(util::command(&tools.redis_server).arg(&conf))?;
    if !util::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        util::redis_ping(port)
    }) {
        bail!(
            "redis did not answer on 127.0.0.1:{port} within 10 s\n{}",
            util::tail_file(&log, 20)
        );
    }
    let pid = running_pid(layout).map_or_else(|| "?".to_owned(), |p| p.to_string());
    util::stdout_line(&format!("redis: started (pid {pid}, 127.0.0.1:{port})"));
    Ok(())
}

/// Stops the redis-server whose pid file is `path`. Returns whether one was running.
pub(super) fn stop_pid_file(path: &Path) -> bool {
    util::read_pid(path).is_some_and(|pid| {
        util::stop_pid(pid, "redis-server", Signal::SIGTERM, Duration::from_secs(10))
    })
}

pub(super) fn down(layout: &Layout) -> usize {
    let stopped = stop_pid_file(&pid_file(layout));
    if stopped {
        util::stdout_line("redis: stopped");
    }
    usize::from(stopped)
}

pub(super) fn status(layout: &Layout, env: &EnvFile) -> String {
    let port = env.get("REDIS_URL").and_then(url_port);
    match running_pid(layout) {
        Some(pid) => format!(
            "redis: running (pid {pid}, 127.0.0.1:{}, {})",
            port.map_or_else(|| "?".to_owned(), |p| p.to_string()),
            if port.is_some_and(util::redis_ping) {
                "answers PING"
            } else {
                "does not answer PING"
            }
        ),
        None => format!(
            "redis: stopped (port {} when up)",
            port.map_or_else(|| "?".to_owned(), |p| p.to_string())
        ),
    }
}
