//! `cargo xtask stack up|down|status`: the local stack as native processes under `target/stack/`.
//!
//! The stack is what `docker/docker-compose.yml` runs, without containers: a private PostgreSQL 15
//! cluster, a private Redis 7 and the demo app under gunicorn, each on a free port of 127.0.0.1.
//! `up` is idempotent: it starts only what does not run yet, keeps ports and secrets in
//! `target/stack/env`, and returns once every service answers. `down` stops by PID what `up` (and the
//! testkit's throwaway servers) started. Nothing here touches the machine's own PostgreSQL or Redis.

mod app;
pub(crate) use app::{forget_setup, install_release};
pub(crate) mod docker;
mod postgres;
mod redis;
mod s3;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use fs_err as fs;

use crate::envfile::{url_password, url_port, EnvFile};
use crate::util;

/// Where everything of the stack lives. Other tools (the testkit, `xtask demo`) rely on this layout.
pub(crate) struct Layout {
    pub(crate) stack: PathBuf,
    pub(crate) env_file: PathBuf,
    pub(crate) pg: PathBuf,
    pub(crate) pg_data: PathBuf,
    pub(crate) pg_socket: PathBuf,
    pub(crate) pg_log: PathBuf,
    pub(crate) pg_template: PathBuf,
    pub(crate) redis: PathBuf,
    pub(crate) app: PathBuf,
    pub(crate) releases: PathBuf,
    pub(crate) current: PathBuf,
    pub(crate) shared_static: PathBuf,
    pub(crate) shared_media: PathBuf,
    pub(crate) app_env: PathBuf,
    pub(crate) app_run: PathBuf,
    pub(crate) gunicorn_pid: PathBuf,
    pub(crate) app_log: PathBuf,
    pub(crate) backups: PathBuf,
    /// The key that authenticates the stack's backup sets (as `rollback keygen` writes it).
    pub(crate) backup_key: PathBuf,
    pub(crate) maintenance_flag: PathBuf,
    pub(crate) release_cache: PathBuf,
    pub(crate) scratch: PathBuf,
    pub(crate) demo_app: PathBuf,
}

impl Layout {
    pub(crate) fn new(root: &Path) -> Self {
        let stack = root.join("target").join("stack");
        let pg = stack.join("pg");
        let app = stack.join("app");
        Self {
            env_file: stack.join("env"),
            pg_data: pg.join("data"),
            pg_socket: pg.join("socket"),
            pg_log: pg.join("log"),
            pg_template: stack.join("pg-template"),
            pg,
            redis: stack.join("redis"),
            releases: app.join("releases"),
            current: app.join("current"),
            shared_static: app.join("shared").join("static"),
            shared_media: app.join("shared").join("media"),
            app_env: app.join("shared").join("app.env"),
            app_run: app.join("run"),
            gunicorn_pid: app.join("run").join("gunicorn.pid"),
            app_log: app.join("log"),
            app,
            backups: stack.join("backups"),
            backup_key: stack.join("backup.key"),
            maintenance_flag: stack.join("maintenance").join("flag.json"),
            release_cache: stack.join("release-cache"),
            scratch: stack.join("scratch"),
            demo_app: root.join("docker").join("demo-app"),
            stack,
        }
    }
}

const USAGE: &str = "usage: cargo xtask stack up [--engine native|docker] | down | status";

/// Which stack `up` brings up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EngineKind {
    Native,
    Docker,
}

/// `--engine native|docker` (or `--engine=…`) among `args`; native when absent.
pub(crate) fn engine_arg(args: &[String]) -> Result<(EngineKind, Vec<String>)> {
    let mut kind = EngineKind::Native;
    let mut rest = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let value = if arg == "--engine" {
            Some(iter.next().map(String::as_str).unwrap_or_default().to_owned())
        } else {
            arg.strip_prefix("--engine=").map(str::to_owned)
        };
        match value.as_deref() {
            None => rest.push(arg.clone()),
            Some("native") => kind = EngineKind::Native,
            Some("docker") => kind = EngineKind::Docker,
            Some(other) => bail!("--engine `{other}`: use native or docker"),
        }
    }
    Ok((kind, rest))
}

pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let layout = Layout::new(root);
    let (engine, args) = engine_arg(args)?;
    match args.first().map(String::as_str) {
        Some("up") if engine == EngineKind::Docker => {
            let env = up_docker(root, &layout, "v1")?;
            print!("{}", env.render_redacted());
            util::stdout_line(&format!("(values in full: {})", layout.env_file.display()));
            Ok(())
        }
        Some("up") => {
            let env = up(&layout)?;
            print!("{}", env.render_redacted());
            util::stdout_line(&format!("(values in full: {})", layout.env_file.display()));
            Ok(())
        }
        Some("down") => down(&layout),
        Some("status") => status(&layout),
        Some(other) => bail!("unknown stack command `{other}`\n{USAGE}"),
        None => bail!("{USAGE}"),
    }
}

/// The programs the stack needs, found on this machine.
pub(crate) struct Tools {
    pub(crate) pg_bindir: PathBuf,
    pub(crate) redis_server: PathBuf,
    pub(crate) python3: PathBuf,
}

impl Tools {
    /// Finds every program, or fails naming the Debian packages that bring the missing ones.
    fn find() -> Result<Self> {
        let mut missing = Vec::new();
        let pg_bindir = postgres::find_bindir()
            .map_err(|why| missing.push(("postgresql-15 postgresql-client-15", why)));
        let redis_server = redis::find_server().map_err(|why| missing.push(("redis-server", why)));
        let python3 = app::find_python().map_err(|why| missing.push(("python3 python3-venv", why)));
        if missing.is_empty() {
            return Ok(Self {
                pg_bindir: pg_bindir.expect("checked"),
                redis_server: redis_server.expect("checked"),
                python3: python3.expect("checked"),
            });
        }
        let mut message = String::from("the stack needs programs this machine lacks:\n");
        let mut packages = Vec::new();
        for (package, why) in &missing {
            let _ = writeln!(message, "  - {why}");
            packages.push(*package);
        }
        let _ = write!(message, "install them with: apt-get install -y {}", packages.join(" "));
        bail!(message)
    }
}

/// Ports and secrets of the stack: chosen once, kept in the env file, reused while still free.
struct Settings {
    pg_port: u16,
    pg_password: String,
    redis_port: u16,
    app_port: u16,
    secret_key: String,
}

impl Settings {
    fn choose(layout: &Layout, previous: &EnvFile) -> Result<Self> {
        let mut taken = Vec::new();
        let pg_port = pick_port(
            postgres::running_port(layout),
            previous.get("PGPORT").and_then(|p| p.parse().ok()),
            &mut taken,
        )?;
        let redis_port = pick_port(
            redis::running_port(layout),
            previous.get("REDIS_URL").and_then(url_port),
            &mut taken,
        )?;
        let app_port = pick_port(
            app::running_port(layout),
            previous.get("APP_URL").and_then(url_port),
            &mut taken,
        )?;
        let pg_password = match previous.get("DATABASE_URL").and_then(url_password) {
            Some(password) => password.to_owned(),
            None => util::random_hex(16)?,
        };
        let secret_key = match previous.get("SECRET_KEY") {
            Some(key) if !key.is_empty() => key.to_owned(),
            _ => util::random_hex(32)?,
        };
        Ok(Self { pg_port, pg_password, redis_port, app_port, secret_key })
    }
}

/// The port of the running service, else the remembered one if still free, else a fresh free one.
fn pick_port(running: Option<u16>, remembered: Option<u16>, taken: &mut Vec<u16>) -> Result<u16> {
    let port = match (running, remembered) {
        (Some(port), _) => port,
        (None, Some(port)) if !taken.contains(&port) && util::port_free(port) => port,
        _ => loop {
            let port = util::free_port()?;
            if !taken.contains(&port) {
                break port;
            }
        },
    };
    taken.push(port);
    Ok(port)
}

/// Everything a tool or test needs to find the stack, in the order it is written.
fn stack_env(layout: &Layout, tools: &Tools, settings: &Settings) -> EnvFile {
    let path = |p: &Path| p.display().to_string();
    let app_url = format!("http://127.0.0.1:{}", settings.app_port);
    let venv = app::venv_dir(layout).map(|v| path(&v)).unwrap_or_default();
    let mut env = EnvFile::default();
    env.set("RAIL_STACK_DIR", path(&layout.stack));
    env.set(
        "DATABASE_URL",
        format!(
            "postgresql://rail:{}@127.0.0.1:{}/rail_demo",
            settings.pg_password, settings.pg_port
        ),
    );
    env.set("PGHOST", path(&layout.pg_socket));
    env.set("PGPORT", settings.pg_port.to_string());
    env.set("PGUSER", "rail");
    env.set("PGDATABASE", "rail_demo");
    env.set("PG_BINDIR", path(&tools.pg_bindir));
    env.set("PG_DATA", path(&layout.pg_data));
    env.set("RAIL_TEMPLATE_DB", app::TEMPLATE_DB);
    env.set("RAIL_PG_TEMPLATE_DIR", path(&layout.pg_template));
    env.set("REDIS_URL", format!("redis://127.0.0.1:{}/0", settings.redis_port));
    env.set("REDIS_SERVER", path(&tools.redis_server));
    env.set("APP_URL", app_url.clone());
    env.set("HEALTH_URL", format!("{app_url}/health/"));
    env.set("GRAPHQL_URL", format!("{app_url}/graphql/"));
    env.set("RAIL_APP_ROOT", path(&layout.app));
    env.set("RAIL_APP_ENV", path(&layout.app_env));
    env.set("RAIL_APP_BIND", format!("127.0.0.1:{}", settings.app_port));
    env.set("RAIL_GUNICORN_PID", path(&layout.gunicorn_pid));
    env.set("RAIL_APP_LOG_DIR", path(&layout.app_log));
    env.set("RAIL_PYTHON", format!("{venv}/bin/python"));
    env.set("RAIL_GUNICORN", format!("{venv}/bin/gunicorn"));
    env.set("STATIC_ROOT", path(&layout.shared_static));
    env.set("MEDIA_ROOT", path(&layout.shared_media));
    env.set("RAIL_MAINTENANCE_FILE", path(&layout.maintenance_flag));
    env.set("RAIL_MAINTENANCE_KEY", "rail:maintenance");
    env.set("RAIL_BACKUP_DIR", path(&layout.backups));
    env.set("RAIL_BACKUP_KEY_FILE", path(&layout.backup_key));
    env.set("RAIL_RELEASE_CACHE", path(&layout.release_cache));
    env.set("RAIL_SCRATCH_DIR", path(&layout.scratch));
    env.set("DEMO_APP_DIR", path(&layout.demo_app));
    env.set("DEMO_VENV", venv);
    env.set("SECRET_KEY", settings.secret_key.clone());
    env
}

/// Brings the whole stack up and returns its env file.
pub(crate) fn up(layout: &Layout) -> Result<EnvFile> {
    let tools = Tools::find()?;
    for dir in [&layout.stack, &layout.backups, &layout.scratch, &layout.release_cache] {
        fs::create_dir_all(dir)?;
    }
    fs::create_dir_all(layout.maintenance_flag.parent().expect("flag has a parent"))?;
    ensure_backup_key(&layout.backup_key)?;
    let previous = EnvFile::load(&layout.env_file)?.unwrap_or_default();
    let settings = Settings::choose(layout, &previous)?;
    let mut env = stack_env(layout, &tools, &settings);
    env.set("RAIL_S3_SERVER", s3::ensure()?.display().to_string());
    // What the container engine and the compose stack wrote stays.
    for (key, value) in previous.iter() {
        if env.get(key).is_none() {
            env.set(key, value);
        }
    }
    // Saved before anything starts, so ports and passwords survive a failed `up`.
    env.save(&layout.env_file)?;

    postgres::up(layout, &tools, settings.pg_port, &settings.pg_password)?;
    redis::up(layout, &tools, settings.redis_port)?;
    app::up(layout, &tools, &env)?;
    Ok(env)
}

/// Writes how to reach the engine into the stack's env file.
pub(crate) fn record_engine(
    root: &Path,
    layout: &Layout,
    engine: &docker::Engine,
) -> Result<EnvFile> {
    let mut env = EnvFile::load(&layout.env_file)?.unwrap_or_default();
    engine.describe(root, &mut env);
    env.save(&layout.env_file)?;
    Ok(env)
}

/// `stack up --engine docker`: the engine, the images, then docker-compose.yml on `release`.
pub(crate) fn up_docker(root: &Path, layout: &Layout, release: &str) -> Result<EnvFile> {
    fs::create_dir_all(&layout.stack)?;
    crate::demo::build_tools(root)?;
    let engine = docker::engine_up(layout)?;
    docker::build_images(root, &engine, &root.join("target/debug"))?;
    let mut env = record_engine(root, layout, &engine)?;
    let running = docker::compose_running(root, &engine);
    let settings = docker::ComposeSettings::choose(&env, running)?;
    settings.describe(docker::PROJECT, &mut env);
    ensure_backup_key(&layout.backup_key)?;
    env.set("RAIL_BACKUP_KEY_FILE", layout.backup_key.display().to_string());
    if env.get("SECRET_KEY").is_none_or(str::is_empty) {
        env.set("SECRET_KEY", util::random_hex(32)?);
    }
    env.save(&layout.env_file)?;
    if running {
        util::stdout_line(&format!("compose stack {}: running", docker::PROJECT));
    } else {
        docker::compose_up(root, &engine, &env, release)?;
    }
    Ok(env)
}

/// The stack's backup key, kept across `up`s: a new one would leave every existing set unauthenticated.
fn ensure_backup_key(path: &Path) -> Result<()> {
    use fs_err::os::unix::fs::OpenOptionsExt as _;
    use std::io::Write as _;
    if path.exists() {
        return Ok(());
    }
    let text = format!("rail-backup-key-v1:{}\n", util::random_hex(32)?);
    let mut file = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    util::stdout_line(&format!("backup key: created {}", path.display()));
    Ok(())
}

/// Stops, by PID, everything `up` and the testkit started under `target/stack/`.
fn down(layout: &Layout) -> Result<()> {
    let mut stopped = app::down(layout);
    stopped += redis::down(layout);
    stopped += postgres::down(layout);
    stopped += stop_scratch(layout)?;
    // The engine last: its containers (the compose stack's and any a test left) go with it.
    stopped += usize::from(docker::engine_down(layout));
    util::stdout_line(&format!("stack down: stopped {stopped} process(es)"));
    Ok(())
}

/// Stops throwaway servers and test apps that the testkit left under `target/stack/scratch/`
/// (a test process killed by a timeout never runs its destructors).
fn stop_scratch(layout: &Layout) -> Result<usize> {
    let Ok(entries) = fs::read_dir(&layout.scratch) else {
        return Ok(0);
    };
    let mut stopped = 0;
    for entry in entries {
        let dir = entry?.path();
        stopped += usize::from(postgres::stop_data_dir(&dir.join("data")));
        stopped += usize::from(redis::stop_pid_file(&dir.join("redis.pid")));
        stopped += usize::from(app::stop_pid_file(&dir.join("run").join("gunicorn.pid")));
        stopped += usize::from(s3::stop_pid_file(&dir.join("s3.pid")));
        fs::remove_dir_all(&dir)?;
    }
    Ok(stopped)
}

fn status(layout: &Layout) -> Result<()> {
    let Some(env) = EnvFile::load(&layout.env_file)? else {
        util::stdout_line("stack: not set up (run `cargo xtask stack up`)");
        return Ok(());
    };
    util::stdout_line(&format!("stack dir: {}", layout.stack.display()));
    util::stdout_line(&postgres::status(layout, &env));
    util::stdout_line(&redis::status(layout, &env));
    util::stdout_line(&app::status(layout, &env));
    let leftovers = fs::read_dir(&layout.scratch).map_or(0, Iterator::count);
    if leftovers > 0 {
        util::stdout_line(&format!(
            "scratch: {leftovers} test instance dir(s) under {} (removed by `stack down`)",
            layout.scratch.display()
        ));
    }
    Ok(())
}
