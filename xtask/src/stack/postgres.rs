//! The stack's private PostgreSQL 15 cluster, and the pre-initialised data directory that the testkit
//! copies for throwaway servers.
//!
//! The cluster is created with `initdb` and run with `pg_ctl`, as the `postgres` user when xtask runs as
//! root (PostgreSQL refuses to run as root). Local socket connections are trusted; TCP connections need
//! the `rail` role's password, so the tools under test always handle a URL with a secret in it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use fs_err as fs;
use nix::sys::signal::Signal;

use super::{Layout, Tools};
use crate::envfile::EnvFile;
use crate::util;

/// The programs the stack and the tests call by real path (Debian's `/usr/bin` wrappers pick a
/// cluster by themselves, which is not what we want).
const NEEDED: [&str; 6] = ["initdb", "pg_ctl", "postgres", "psql", "pg_dump", "pg_restore"];

/// Finds the PostgreSQL 15 bin directory: the versioned Debian directory, else `pg_config --bindir`.
pub(super) fn find_bindir() -> Result<PathBuf, String> {
    let mut candidates = vec![PathBuf::from("/usr/lib/postgresql/15/bin")];
    if let Some(pg_config) = util::which("pg_config") {
        if let Ok(out) = util::run_captured(util::command(pg_config).arg("--bindir")) {
            candidates.push(PathBuf::from(out.trim()));
        }
    }
    for dir in &candidates {
        if NEEDED.iter().all(|tool| dir.join(tool).is_file()) && major_version(dir) == Some(15) {
            return Ok(dir.clone());
        }
    }
    Err(format!(
        "PostgreSQL 15 server and client programs ({}) not found in {}",
        NEEDED.join(", "),
        candidates.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(" or ")
    ))
}

fn major_version(bindir: &Path) -> Option<u32> {
    let out = util::run_captured(util::command(bindir.join("postgres")).arg("--version")).ok()?;
    // "postgres (PostgreSQL) 15.19 (Debian 15.19-0+deb12u1)"
    let version = out.split_whitespace().nth(2)?;
    version.split('.').next()?.parse().ok()
}

/// A command running `program` as the user that owns the cluster.
fn as_postgres(program: &Path) -> Command {
    if util::is_root() {
        let mut cmd = util::command("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        util::command(program)
    }
}

/// Gives `path` to the `postgres` user when running as root.
fn give_to_postgres(path: &Path) -> Result<()> {
    if !util::is_root() {
        return Ok(());
    }
    let user = nix::unistd::User::from_name("postgres")
        .context("looking up the postgres user")?
        .context("there is no `postgres` user to run the server as (it comes with the postgresql-15 package)")?;
    std::os::unix::fs::chown(path, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
        .with_context(|| format!("giving {} to the postgres user", path.display()))
}

/// Creates `dir` owned by the server's user with `mode`.
fn server_dir(dir: &Path, mode: u32) -> Result<()> {
    fs::create_dir_all(dir)?;
    give_to_postgres(dir)?;
    fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// The postmaster's PID and port from `postmaster.pid`, if it runs.
fn postmaster(data: &Path) -> Option<(i32, Option<u16>)> {
    let text = std::fs::read_to_string(data.join("postmaster.pid")).ok()?;
    let mut lines = text.lines();
    let pid: i32 = lines.next()?.trim().parse().ok()?;
    // Line 4 of postmaster.pid is the port.
    let port = lines.nth(2).and_then(|p| p.trim().parse().ok());
    util::pid_runs(pid, "postgres").then_some((pid, port))
}

pub(super) fn running_port(layout: &Layout) -> Option<u16> {
    postmaster(&layout.pg_data).and_then(|(_, port)| port)
}

pub(super) fn up(layout: &Layout, tools: &Tools, port: u16, password: &str) -> Result<()> {
    if util::is_root() {
        util::ensure_traversable(&layout.pg)?;
    }
    fs::create_dir_all(&layout.pg)?;
    server_dir(&layout.pg_socket, 0o755)?;
    server_dir(&layout.pg_log, 0o755)?;
    if !layout.pg_data.join("PG_VERSION").is_file() {
        init_cluster(layout, tools)?;
    }
    ensure_throwaway_template(layout, tools)?;

    if let Some((pid, running)) = postmaster(&layout.pg_data) {
        if running != Some(port) {
            bail!("postgres (pid {pid}) runs on port {running:?}, not {port}: run `cargo xtask stack down` first");
        }
        util::stdout_line(&format!("postgres: running (pid {pid}, 127.0.0.1:{port})"));
    } else {
        // A postmaster killed moments ago may linger as a zombie until init reaps it, and PostgreSQL
        // takes a pid file naming a zombie for a running server: the file is stale, remove it.
        let _ = fs::remove_file(layout.pg_data.join("postmaster.pid"));
        write_conf(layout, port)?;
        let log = layout.pg_log.join("postgres.log");
        let started = util::run_captured(
            as_postgres(&tools.pg_bindir.join("pg_ctl"))
                .current_dir(&layout.pg)
                .arg("-D")
                .arg(&layout.pg_data)
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", "60", "-s", "start"]),
        );
        if let Err(err) = started {
            bail!("{err:#}\n{}", util::tail_file(&log, 20));
        }
        let (pid, _) =
            postmaster(&layout.pg_data).context("postgres started but wrote no postmaster.pid")?;
        util::stdout_line(&format!("postgres: started (pid {pid}, 127.0.0.1:{port})"));
    }
    // The role's password is (re)set on every `up`, so the env file is always the truth. The app's role
    // is what a production app should have: no superuser, CREATEDB for rail's swap restore, and
    // CREATE in the `postgres` database's public schema, where the run lock records its holder.
    psql(
        layout,
        tools,
        port,
        "postgres",
        &format!(
            "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'rail') THEN CREATE ROLE rail; END IF; END$$;
             ALTER ROLE rail WITH LOGIN NOSUPERUSER CREATEDB PASSWORD '{password}';
             GRANT CREATE ON SCHEMA public TO rail;"
        ),
    )?;
    prune_test_databases(layout, tools, port)?;
    Ok(())
}

/// Drops test databases (`t_<unix seconds>_<id>`, see rail_testkit::TestDb) older than a day: a
/// test process killed by a timeout never drops its own.
fn prune_test_databases(layout: &Layout, tools: &Tools, port: u16) -> Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let names = psql(
        layout,
        tools,
        port,
        "postgres",
        "SELECT datname FROM pg_database WHERE datname ~ '^t_[0-9]+_[0-9a-f]+$'",
    )?;
    for name in names.lines() {
        let created: u64 = name.split('_').nth(1).and_then(|s| s.parse().ok()).unwrap_or(now);
        if now.saturating_sub(created) > 24 * 3600 {
            psql(
                layout,
                tools,
                port,
                "postgres",
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            )?;
            util::stdout_line(&format!(
                "postgres: dropped {name}, left behind by a test a day ago"
            ));
        }
    }
    Ok(())
}

fn init_cluster(layout: &Layout, tools: &Tools) -> Result<()> {
    // A half-initialised directory from an interrupted run is of no use.
    if layout.pg_data.exists() {
        fs::remove_dir_all(&layout.pg_data)?;
    }
    server_dir(&layout.pg_data, 0o700)?;
    util::stdout_line(&format!("postgres: initdb {}", layout.pg_data.display()));
    util::run_captured(
        as_postgres(&tools.pg_bindir.join("initdb"))
            .current_dir(&layout.pg)
            .arg("-D")
            .arg(&layout.pg_data)
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-instructions",
            ]),
    )?;
    append_include(&layout.pg_data)
}

/// Makes `postgresql.conf` read our settings from `rail.conf`, which `up` rewrites (the port may change).
fn append_include(data: &Path) -> Result<()> {
    let conf = data.join("postgresql.conf");
    let mut text = fs::read_to_string(&conf)?;
    text.push_str("\n# Settings of the rail stack, rewritten by `cargo xtask stack up` and the testkit.\ninclude_if_exists = 'rail.conf'\n");
    fs::write(&conf, text)?;
    Ok(())
}

fn write_conf(layout: &Layout, port: u16) -> Result<()> {
    let socket = layout.pg_socket.display().to_string();
    // Unix socket paths are limited to 107 bytes, including the `.s.PGSQL.<port>` name.
    if socket.len() + 20 > 107 {
        bail!("the socket directory {socket} is too long for a Unix socket path; use a shorter checkout path");
    }
    let conf = layout.pg_data.join("rail.conf");
    fs::write(
        &conf,
        format!(
            "port = {port}\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\n\
             max_connections = 200\n\
             # Commits need not wait for the disk; crash safety (fsync) stays on.\n\
             synchronous_commit = off\n",
            socket.replace('\'', "''")
        ),
    )?;
    give_to_postgres(&conf)
}

/// The data directory that the testkit copies for each throwaway server: initdb'd once, small WAL
/// segments so that the copy is quick, a password for TCP in `password` beside it.
fn ensure_throwaway_template(layout: &Layout, tools: &Tools) -> Result<()> {
    let dir = &layout.pg_template;
    if dir.join("ready").is_file() {
        return Ok(());
    }
    if dir.exists() {
        fs::remove_dir_all(dir)?;
    }
    fs::create_dir_all(dir)?;
    let data = dir.join("data");
    server_dir(&data, 0o700)?;
    let password = util::random_hex(16)?;
    let pwfile = dir.join("password");
    fs::write(&pwfile, &password)?;
    // initdb reads the file as the server's user.
    give_to_postgres(&pwfile)?;
    util::stdout_line(&format!(
        "postgres: initdb {} (template of throwaway servers)",
        data.display()
    ));
    util::run_captured(
        as_postgres(&tools.pg_bindir.join("initdb"))
            .current_dir(dir)
            .arg("-D")
            .arg(&data)
            .arg(format!("--pwfile={}", pwfile.display()))
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-instructions",
                "--wal-segsize=1",
            ]),
    )?;
    append_include(&data)?;
    fs::write(dir.join("ready"), "")?;
    Ok(())
}

/// Runs SQL through psql on the cluster's socket as `user`; returns what it printed (tuples only).
pub(super) fn psql(
    layout: &Layout,
    tools: &Tools,
    port: u16,
    user: &str,
    sql: &str,
) -> Result<String> {
    util::run_captured(
        util::command(tools.pg_bindir.join("psql"))
            .env_remove("PGPASSWORD")
            .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&layout.pg_socket)
            .args(["-p", &port.to_string(), "-U", user, "-d", "postgres", "-c", sql]),
    )
    .with_context(|| {
        format!("running SQL on the stack's cluster: {}", sql.lines().next().unwrap_or_default())
    })
}

/// Stops the postmaster of `data` by PID (fast shutdown). Returns whether one was running.
pub(super) fn stop_data_dir(data: &Path) -> bool {
    match postmaster(data) {
        Some((pid, _)) => util::stop_pid(pid, "postgres", Signal::SIGINT, Duration::from_secs(30)),
        None => false,
    }
}

pub(super) fn down(layout: &Layout) -> usize {
    let stopped = stop_data_dir(&layout.pg_data);
    if stopped {
        util::stdout_line("postgres: stopped");
    }
    usize::from(stopped)
}

pub(super) fn status(layout: &Layout, env: &EnvFile) -> String {
    match postmaster(&layout.pg_data) {
        Some((pid, port)) => format!(
            "postgres: running (pid {pid}, 127.0.0.1:{}, data {})",
            port.map_or_else(|| "?".to_owned(), |p| p.to_string()),
            layout.pg_data.display()
        ),
        None => format!("postgres: stopped (port {} when up)", env.get("PGPORT").unwrap_or("?")),
    }
}
