//! Servers of a test's own, for tests that stop, kill or fill a server: never the shared stack's.
//!
//! A throwaway PostgreSQL starts from a copy of the data directory that `cargo xtask stack up`
//! initialised once (`target/stack/pg-template`), so it is up in well under two seconds instead of
//! running initdb. Both kinds live under `target/stack/scratch/`, where `cargo xtask stack down` finds
//! and stops any that a killed test left behind.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fs_err as fs;
use nix::sys::signal::Signal;

use crate::db::{query, Rows};
use crate::proc;
use crate::redis::{redis_command, Reply};
use crate::stack::Stack;

/// A private PostgreSQL 15 server on a free port of 127.0.0.1, stopped and removed when dropped.
///
/// The superuser is `postgres` with a password (TCP connections use scram-sha-256); there is no Unix
/// socket.
#[derive(Debug)]
pub struct ThrowawayPostgres {
    dir: PathBuf,
    data: PathBuf,
    port: u16,
    password: String,
    pg_ctl: PathBuf,
}

impl ThrowawayPostgres {
    /// Starts a server with default settings.
    pub fn start() -> ThrowawayPostgres {
        Self::start_with(&[])
    }

    /// Starts a server with extra `postgresql.conf` settings, e.g. `[("max_connections", "5")]`.
    pub fn start_with(settings: &[(&str, &str)]) -> ThrowawayPostgres {
        let stack = Stack::get();
        let template = stack.pg_template_dir();
        assert!(
            template.join("ready").is_file(),
            "no pre-initialised data directory at {}: run `cargo xtask stack up` first",
            template.display()
        );
        let password =
            fs::read_to_string(template.join("password")).expect("reading the template's password");
        let dir = stack.scratch_dir().join(format!("pg-{}", proc::unique_id()));
        fs::create_dir(&dir).expect("creating a throwaway server's dir");
        // The server writes its log here, as the postgres user when the tests run as root.
        proc::give_to_postgres(&dir);
        let data = dir.join("data");
        proc::copy_tree(&template.join("data"), &data);
        let mut server = ThrowawayPostgres {
            dir,
            data,
            port: 0,
            password: password.trim().to_owned(),
            pg_ctl: stack.pg_bin("pg_ctl"),
        };
        // Another process may grab the free port before the server binds it: retry with another.
        for attempt in 1..=5 {
            server.port = proc::free_port();
            server.write_conf(settings);
            match server.try_start() {
                Ok(()) => return server,
                Err(log) if attempt < 5 && log.contains("could not bind") => {}
                Err(log) => panic!("a throwaway PostgreSQL did not start\n{log}"),
            }
        }
        unreachable!("the last attempt panics or returns")
    }

    fn write_conf(&self, settings: &[(&str, &str)]) {
        let mut conf = format!(
            "port = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n\
             max_connections = 50\nshared_buffers = 16MB\n",
            self.port
        );
        for (key, value) in settings {
            let _ = writeln!(conf, "{key} = '{}'", value.replace('\'', "''"));
        }
        let path = self.data.join("rail.conf");
        fs::write(&path, conf).expect("writing rail.conf");
        proc::give_to_postgres(&path);
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    fn try_start(&self) -> Result<(), String> {
        let output = proc::as_postgres(&self.pg_ctl)
            .current_dir(&self.dir)
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.log_path())
            .args(["-w", "-t", "30", "-s", "start"])
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|err| format!("cannot run pg_ctl: {err}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "pg_ctl: {}{}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
                proc::tail_file(&self.log_path(), 20)
            ))
        }
    }

    /// `postgresql://postgres:<password>@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// The URL of database `name` on this server.
    pub fn url_for(&self, name: &str) -> String {
        format!("postgresql://postgres:{}@127.0.0.1:{}/{name}", self.password, self.port)
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `postgres` superuser's password (inside [`url`](Self::url)).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The data directory (owned by the `postgres` user when the tests run as root).
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// Runs SQL on database `postgres`; panics on error.
    pub fn query(&self, sql: &str) -> Rows {
        query(&self.url(), sql)
            .unwrap_or_else(|err| panic!("query on a throwaway PostgreSQL failed: {err}\n{sql}"))
    }

    /// The postmaster's PID while it runs.
    pub fn pid(&self) -> Option<i32> {
        proc::read_pid(&self.data.join("postmaster.pid"))
            .filter(|pid| proc::pid_runs(*pid, "postgres"))
    }

    /// Stops the server cleanly (fast shutdown) and waits until it is gone.
    pub fn stop(&mut self) {
        if let Some(pid) = self.pid() {
            assert!(
                proc::stop_pid(pid, "postgres", Signal::SIGINT, Duration::from_secs(30)),
                "a throwaway PostgreSQL did not stop"
            );
        }
    }

    /// SIGKILLs the postmaster, as a crash would, then its backends (which would otherwise linger and
    /// keep the next start from taking over the shared memory).
    pub fn kill(&mut self) {
        if let Some(pid) = self.pid() {
            let backends = proc::children(pid);
            proc::signal(pid, Signal::SIGKILL);
            for backend in backends {
                proc::signal(backend, Signal::SIGKILL);
            }
            proc::wait_until(Duration::from_secs(10), Duration::from_millis(10), || {
                !proc::pid_alive(pid)
            });
        }
    }

    /// Starts the server again on the same port and data (after [`stop`](Self::stop) or
    /// [`kill`](Self::kill); after a kill this is crash recovery).
    pub fn restart(&mut self) {
        if self.pid().is_none() {
            // A killed postmaster may linger as a zombie until init reaps it, and PostgreSQL takes a
            // pid file naming a zombie for a running server: the file is stale, remove it.
            let _ = fs::remove_file(self.data.join("postmaster.pid"));
            self.try_start()
                .unwrap_or_else(|log| panic!("a throwaway PostgreSQL did not restart\n{log}"));
        }
    }
}

impl Drop for ThrowawayPostgres {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            // Immediate shutdown: the data is thrown away anyway.
            proc::stop_pid(pid, "postgres", Signal::SIGQUIT, Duration::from_secs(10));
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A private Redis on a free port of 127.0.0.1, without persistence, stopped and removed when dropped.
#[derive(Debug)]
pub struct ThrowawayRedis {
    dir: PathBuf,
    port: u16,
    args: Vec<String>,
    server: PathBuf,
}

impl ThrowawayRedis {
    /// Starts a server with default settings.
    pub fn start() -> ThrowawayRedis {
        Self::start_with(&[])
    }

    /// Starts a server with extra command-line settings, e.g. `["--maxmemory", "2mb"]`.
    pub fn start_with(args: &[&str]) -> ThrowawayRedis {
        let stack = Stack::get();
        let dir = stack.scratch_dir().join(format!("redis-{}", proc::unique_id()));
        fs::create_dir(&dir).expect("creating a throwaway server's dir");
        let mut server = ThrowawayRedis {
            dir,
            port: 0,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            server: stack.redis_server(),
        };
        for attempt in 1..=5 {
            server.port = proc::free_port();
            match server.try_start() {
                Ok(()) => return server,
                Err(log) if attempt < 5 && log.contains("Address already in use") => {}
                Err(log) => panic!("a throwaway Redis did not start\n{log}"),
            }
        }
        unreachable!("the last attempt panics or returns")
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("redis.pid")
    }

    fn try_start(&self) -> Result<(), String> {
        let log = self.dir.join("redis.log");
        let _ = fs::remove_file(self.pid_file());
        let output = proc::command(&self.server)
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--daemonize", "yes", "--dir"])
            .arg(&self.dir)
            .arg("--pidfile")
            .arg(self.pid_file())
            .arg("--logfile")
            .arg(&log)
            .args(&self.args)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|err| format!("cannot run redis-server: {err}"))?;
        let started = output.status.success()
            && proc::wait_until(Duration::from_secs(10), Duration::from_millis(5), || {
                redis_command(&self.url(), &["PING"])
                    .is_ok_and(|r| r == Reply::Status("PONG".to_owned()))
                    || (self.pid_file().exists() && self.pid().is_none())
            })
            && self.pid().is_some();
        if started {
            Ok(())
        } else {
            Err(format!(
                "redis-server: {}{}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
                proc::tail_file(&log, 20)
            ))
        }
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs one command on database 0; panics on I/O errors.
    pub fn cmd(&self, args: &[&str]) -> Reply {
        redis_command(&self.url(), args)
            .unwrap_or_else(|err| panic!("redis {args:?} on a throwaway Redis: {err}"))
    }

    /// The server's PID while it runs.
    pub fn pid(&self) -> Option<i32> {
        proc::read_pid(&self.pid_file()).filter(|pid| proc::pid_runs(*pid, "redis-server"))
    }

    /// Stops the server (SIGTERM) and waits until it is gone.
    pub fn stop(&mut self) {
        if let Some(pid) = self.pid() {
            assert!(
                proc::stop_pid(pid, "redis-server", Signal::SIGTERM, Duration::from_secs(10)),
                "a throwaway Redis did not stop"
            );
        }
    }

    /// SIGKILLs the server and waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(pid) = self.pid() {
            proc::signal(pid, Signal::SIGKILL);
            proc::wait_until(Duration::from_secs(10), Duration::from_millis(5), || {
                !proc::pid_alive(pid)
            });
        }
    }

    /// Starts the server again on the same port (empty: it keeps nothing on disk).
    pub fn restart(&mut self) {
        if self.pid().is_none() {
            self.try_start()
                .unwrap_or_else(|log| panic!("a throwaway Redis did not restart\n{log}"));
        }
    }
}

impl Drop for ThrowawayRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = fs::remove_dir_all(&self.dir);
    }
}
