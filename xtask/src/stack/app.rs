//! The demo app of the stack: its Python venv, built releases, the template database the tests clone,
//! and the app itself under gunicorn.
//!
//! The venv is shared by every checkout on the machine (keyed by the hash of the pinned requirements)
//! because installing it is the slowest part of a cold `up`. Releases are built once per version into
//! `target/stack/release-cache/` and copied from there, so the stack and the tests get identical trees.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use fs_err as fs;
use nix::sys::signal::Signal;

use super::{postgres, Layout, Tools};
use crate::envfile::{url_port, EnvFile};
use crate::util;

/// The database every test database is cloned from: release v1 migrated and seeded.
pub(super) const TEMPLATE_DB: &str = "rail_template";
/// The release the stack and the template start from.
const FIRST_RELEASE: &str = "v1";
/// Written into the venv once `pip install` completed; a venv without it is rebuilt.
const VENV_MARKER: &str = ".rail-install-complete";

pub(super) fn find_python() -> Result<PathBuf, String> {
    let Some(python) = util::which("python3") else {
        return Err("python3 not found in PATH".to_owned());
    };
    // Debian's python3 lacks ensurepip (so `-m venv` fails) until python3-venv is installed.
    match util::run_captured(util::command(&python).args(["-c", "import venv, ensurepip"])) {
        Ok(_) => Ok(python),
        Err(_) => Err(format!(
            "{} cannot create virtual environments (no venv/ensurepip module)",
            python.display()
        )),
    }
}

/// `${XDG_CACHE_HOME:-$HOME/.cache}/rail/demo-venv-<first 12 hex of sha256(requirements.txt)>`.
pub(super) fn venv_dir(layout: &Layout) -> Result<PathBuf> {
    let requirements = layout.demo_app.join("requirements.txt");
    let hash = util::sha256_hex(&fs::read(&requirements)?);
    let cache = match std::env::var_os("XDG_CACHE_HOME").filter(|v| Path::new(v).is_absolute()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".cache"),
    };
    Ok(cache.join("rail").join(format!("demo-venv-{}", &hash[..12])))
}

fn ensure_venv(layout: &Layout, tools: &Tools) -> Result<PathBuf> {
    let venv = venv_dir(layout)?;
    if venv.join(VENV_MARKER).is_file() {
        return Ok(venv);
    }
    // A venv without the marker was interrupted mid-install; venvs cannot be repaired or moved.
    if venv.exists() {
        fs::remove_dir_all(&venv)?;
    }
    fs::create_dir_all(venv.parent().expect("venv has a parent"))?;
    util::stdout_line(&format!("venv: creating {} (once per requirements.txt)", venv.display()));
    util::run_captured(util::command(&tools.python3).args(["-m", "venv"]).arg(&venv))?;
    util::run_captured(
        util::command(venv.join("bin").join("python"))
            .args(["-m", "pip", "install", "--disable-pip-version-check", "--no-input", "-q", "-r"])
            .arg(layout.demo_app.join("requirements.txt")),
    )
    .context("installing the demo app's requirements")?;
    fs::write(venv.join(VENV_MARKER), "")?;
    Ok(venv)
}

/// A fingerprint of everything a built release depends on; a cached build with another one is rebuilt.
/// The testkit computes the same value (rail_testkit::app), so keep the two in step.
pub(super) fn demo_fingerprint(layout: &Layout) -> Result<String> {
    let demo = &layout.demo_app;
    let parts = [
        util::tree_fingerprint(&demo.join("src"))?,
        util::tree_fingerprint(&demo.join("releases"))?,
        util::sha256_hex(&fs::read(demo.join("build_release.py"))?),
        util::sha256_hex(&fs::read(demo.join("requirements.txt"))?),
    ];
    Ok(util::sha256_hex(parts.join("\n").as_bytes()))
}

/// Builds `version` into `target/stack/release-cache/<version>` unless an up-to-date build is there.
fn ensure_release(
    layout: &Layout,
    python: &Path,
    version: &str,
    fingerprint: &str,
) -> Result<PathBuf> {
    let cached = layout.release_cache.join(version);
    let stamp = layout.release_cache.join(format!("{version}.fingerprint"));
    let fresh =
        || cached.is_dir() && fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == fingerprint);
    if fresh() {
        return Ok(cached);
    }
    fs::create_dir_all(&layout.release_cache)?;
    // The testkit builds into the same cache under the same lock (rail_testkit::built_release).
    let lock = fs::File::create(layout.release_cache.join(format!(".{version}.lock")))?;
    let _guard = nix::fcntl::Flock::lock(lock.into_parts().0, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, err)| err)
        .context("locking the release cache")?;
    if fresh() {
        return Ok(cached);
    }
    let staging = layout.release_cache.join(format!(".build-{version}-{}", util::random_hex(4)?));
    util::run_captured(
        util::command(python)
            .arg(layout.demo_app.join("build_release.py"))
            .arg(version)
            .arg(&staging),
    )?;
    let _ = fs::remove_file(&stamp);
    if cached.exists() {
        fs::remove_dir_all(&cached)?;
    }
    fs::rename(&staging, &cached)?;
    fs::write(&stamp, fingerprint)?;
    Ok(cached)
}

/// The environment the app runs with (also written to `app/shared/app.env`).
fn app_env(stack: &EnvFile) -> EnvFile {
    let mut env = EnvFile::default();
    for key in [
        "DATABASE_URL",
        "REDIS_URL",
        "SECRET_KEY",
        "STATIC_ROOT",
        "MEDIA_ROOT",
        "RAIL_MAINTENANCE_FILE",
    ] {
        env.set(key, stack.get(key).unwrap_or_default());
    }
    env.set("DEBUG", "0");
    env.set("ALLOWED_HOSTS", "127.0.0.1,localhost");
    env.set("RAIL_MAINTENANCE_KEY", "rail:maintenance");
    env.set("DEMO_ALLOW_DELAY", "1");
    env
}

/// A command with a cleared environment plus `env`: the app must not depend on the caller's shell.
fn with_env(program: &Path, env: &EnvFile) -> Command {
    let mut cmd = util::command(program);
    cmd.env_clear();
    for key in ["PATH", "HOME", "LANG", "TMPDIR"] {
        if let Some(value) = std::env::var_os(key) {
            cmd.env(key, value);
        }
    }
    cmd.envs(env.iter());
    cmd
}

fn manage(release: &Path, python: &Path, env: &EnvFile, args: &[&str]) -> Result<String> {
    util::run_captured(with_env(python, env).current_dir(release).arg("manage.py").args(args))
}

/// Whether the release has the `seed_demo` management command.
fn has_seed_command(release: &Path) -> bool {
    fs::read_dir(release).is_ok_and(|entries| {
        entries.flatten().any(|app| app.path().join("management/commands/seed_demo.py").is_file())
    })
}

/// Recreates the template database when the demo app changed since it was built; the fingerprint is
/// kept as the database's comment, written last, so a half-built template is never taken as fresh.
fn ensure_template(
    layout: &Layout,
    tools: &Tools,
    stack: &EnvFile,
    python: &Path,
    release: &Path,
    fingerprint: &str,
) -> Result<()> {
    let port: u16 = stack.get("PGPORT").and_then(|p| p.parse().ok()).context("PGPORT missing")?;
    let want = format!("rail-template {fingerprint}");
    let have = postgres::psql(
        layout,
        tools,
        port,
        "postgres",
        &format!("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '{TEMPLATE_DB}'"),
    )?;
    if have.trim() == want {
        util::stdout_line(&format!("template: {TEMPLATE_DB} is up to date"));
        return Ok(());
    }
    util::stdout_line(&format!(
        "template: building {TEMPLATE_DB} ({FIRST_RELEASE} migrated and seeded)"
    ));
    postgres::psql(
        layout,
        tools,
        port,
        "postgres",
        &format!(
            "DO $$BEGIN IF EXISTS (SELECT FROM pg_database WHERE datname = '{TEMPLATE_DB}') THEN \
             ALTER DATABASE {TEMPLATE_DB} IS_TEMPLATE false; END IF; END$$"
        ),
    )?;
    // CREATE and DROP DATABASE refuse to run in a multi-statement query, hence one call each.
    postgres::psql(
        layout,
        tools,
        port,
        "postgres",
        &format!("DROP DATABASE IF EXISTS {TEMPLATE_DB} WITH (FORCE)"),
    )?;
    postgres::psql(
        layout,
        tools,
        port,
        "postgres",
        &format!("CREATE DATABASE {TEMPLATE_DB} OWNER rail"),
    )?;
    let mut env = app_env(stack);
    let database_url = stack.get("DATABASE_URL").unwrap_or_default();
    env.set("DATABASE_URL", database_url.replace("/rail_demo", &format!("/{TEMPLATE_DB}")));
    let scratch = layout.scratch.join(format!("template-{}", util::random_hex(4)?));
    env.set("STATIC_ROOT", scratch.join("static").display().to_string());
    env.set("MEDIA_ROOT", scratch.join("media").display().to_string());
    manage(release, python, &env, &["migrate", "--noinput"])?;
    if has_seed_command(release) {
        manage(release, python, &env, &["seed_demo", "--products", "50"])?;
    }
    let _ = fs::remove_dir_all(&scratch);
    postgres::psql(
        layout,
        tools,
        port,
        "postgres",
        &format!(
            "COMMENT ON DATABASE {TEMPLATE_DB} IS '{want}'; \
             ALTER DATABASE {TEMPLATE_DB} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"
        ),
    )?;
    Ok(())
}

fn running_pid(layout: &Layout) -> Option<i32> {
    util::read_pid(&layout.gunicorn_pid).filter(|pid| util::pid_runs(*pid, "gunicorn"))
}

pub(super) fn running_port(layout: &Layout) -> Option<u16> {
    running_pid(layout)?;
    let env = EnvFile::load(&layout.env_file).ok()??;
    env.get("APP_URL").and_then(url_port)
}

fn healthy(port: u16) -> bool {
    util::http_get(port, "/health/", Duration::from_secs(5)).is_ok_and(|(status, _)| status == 200)
}

pub(super) fn up(layout: &Layout, tools: &Tools, stack: &EnvFile) -> Result<()> {
    if !layout.demo_app.join("build_release.py").is_file() {
        util::stdout_line(&format!(
            "app: skipped, {} has no demo app yet",
            layout.demo_app.display()
        ));
        return Ok(());
    }
    let venv = ensure_venv(layout, tools)?;
    let python = venv.join("bin").join("python");
    let fingerprint = demo_fingerprint(layout)?;
    let first = ensure_release(layout, &python, FIRST_RELEASE, &fingerprint)?;
    ensure_template(layout, tools, stack, &python, &first, &fingerprint)?;
    let port: u16 = stack.get("PGPORT").and_then(|p| p.parse().ok()).context("PGPORT missing")?;
    // The stack's app and database were set up from an older demo app: start over from the new v1,
    // or the stack would serve code and a schema that no longer exist.
    let stamp = layout.app.join(".demo-fingerprint");
    let set_up_from = fs::read_to_string(&stamp).unwrap_or_default();
    if layout.releases.exists() && set_up_from.trim() != fingerprint {
        util::stdout_line(
            "app: the demo app changed; resetting the stack's releases and rail_demo",
        );
        down(layout);
        fs::remove_dir_all(&layout.releases)?;
        let _ = fs::remove_file(&layout.current);
        postgres::psql(
            layout,
            tools,
            port,
            "postgres",
            "DROP DATABASE IF EXISTS rail_demo WITH (FORCE)",
        )?;
    }
    let exists = postgres::psql(
        layout,
        tools,
        port,
        "postgres",
        "SELECT 1 FROM pg_database WHERE datname = 'rail_demo'",
    )?;
    if exists.trim().is_empty() {
        postgres::psql(
            layout,
            tools,
            port,
            "postgres",
            &format!("CREATE DATABASE rail_demo OWNER rail TEMPLATE {TEMPLATE_DB}"),
        )?;
        util::stdout_line("postgres: created rail_demo from the template");
    }

    for dir in [
        &layout.releases,
        &layout.shared_static,
        &layout.shared_media,
        &layout.app_run,
        &layout.app_log,
    ] {
        fs::create_dir_all(dir)?;
    }
    let has_release = fs::read_dir(&layout.releases)?.flatten().any(|e| e.path().is_dir());
    if !has_release {
        util::run_captured(
            util::command("cp")
                .args(["-a", "--reflink=auto"])
                .arg(&first)
                .arg(layout.releases.join(FIRST_RELEASE)),
        )?;
    }
    if fs::symlink_metadata(&layout.current).is_err() {
        std::os::unix::fs::symlink(Path::new("releases").join(FIRST_RELEASE), &layout.current)
            .with_context(|| format!("linking {}", layout.current.display()))?;
    }
    fs::write(&stamp, &fingerprint)?;
    let env = app_env(stack);
    env.save(&layout.app_env)?;

    let app_port = stack.get("APP_URL").and_then(url_port).context("APP_URL missing")?;
    if let Some(pid) = running_pid(layout) {
        if util::wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
            healthy(app_port)
        }) {
            util::stdout_line(&format!("app: running (pid {pid}, http://127.0.0.1:{app_port})"));
            return Ok(());
        }
        bail!("gunicorn (pid {pid}) runs but /health/ does not answer 200: run `cargo xtask stack down` first");
    }
    // A pid file left by a gunicorn that died would look like a start that failed at once.
    let _ = fs::remove_file(&layout.gunicorn_pid);
    let current = layout.current.clone();
    manage(&current, &python, &env, &["migrate", "--noinput"])?;
    manage(&current, &python, &env, &["collectstatic", "--noinput"])?;
    let log = layout.app_log.join("gunicorn.log");
    util::run_captured(
        with_env(&venv.join("bin").join("gunicorn"), &env)
            .arg("demo.wsgi:application")
            .arg("--chdir")
            .arg(&current)
            .arg("--bind")
            .arg(format!("127.0.0.1:{app_port}"))
            .args(["--workers", "2", "--pid"])
            .arg(&layout.gunicorn_pid)
            .arg("--daemon")
            .arg("--error-logfile")
            .arg(&log)
            .arg("--capture-output"),
    )?;
    let ready = util::wait_until(Duration::from_secs(60), Duration::from_millis(100), || {
        healthy(app_port) || (layout.gunicorn_pid.exists() && running_pid(layout).is_none())
    });
    if !ready || !healthy(app_port) {
        bail!(
            "the demo app did not answer 200 on /health/ within 60 s\n{}",
            util::tail_file(&log, 30)
        );
    }
    let pid = running_pid(layout).map_or_else(|| "?".to_owned(), |p| p.to_string());
    util::stdout_line(&format!("app: started (pid {pid}, http://127.0.0.1:{app_port})"));
    Ok(())
}

/// Installs built release `version` into the stack's `releases/` (for `deploy --version` to switch
/// to) unless it is there.
pub(crate) fn install_release(layout: &Layout, version: &str) -> Result<PathBuf> {
    let python = venv_dir(layout)?.join("bin").join("python");
    let fingerprint = demo_fingerprint(layout)?;
    let built = ensure_release(layout, &python, version, &fingerprint)?;
    let dest = layout.releases.join(version);
    if !dest.exists() {
        util::run_captured(
            util::command("cp").args(["-a", "--reflink=auto"]).arg(&built).arg(&dest),
        )?;
    }
    Ok(dest)
}

/// Makes the next `up` start the stack's app over from release v1 and a fresh `rail_demo`, as if the
/// demo app had changed.
pub(crate) fn forget_setup(layout: &Layout) -> Result<()> {
    let stamp = layout.app.join(".demo-fingerprint");
    if stamp.exists() {
        fs::write(&stamp, "")?;
    }
    Ok(())
}

/// Stops the gunicorn master whose pid file is `path` (its workers follow). Returns whether one ran.
pub(super) fn stop_pid_file(path: &Path) -> bool {
    util::read_pid(path).is_some_and(|pid| {
        util::stop_pid(pid, "gunicorn", Signal::SIGTERM, Duration::from_secs(15))
    })
}

pub(super) fn down(layout: &Layout) -> usize {
    let stopped = stop_pid_file(&layout.gunicorn_pid);
    if stopped {
        util::stdout_line("app: stopped");
    }
    usize::from(stopped)
}

pub(super) fn status(layout: &Layout, env: &EnvFile) -> String {
    let release = fs::read_link(&layout.current)
        .map_or_else(|_| "none".to_owned(), |p| p.display().to_string());
    let port = env.get("APP_URL").and_then(url_port);
    match (running_pid(layout), port) {
        (Some(pid), Some(port)) => {
            let health = match util::http_get(port, "/health/", Duration::from_secs(5)) {
                Ok((status, _)) => format!("/health/ {status}"),
                Err(err) => format!("/health/ unreachable: {err}"),
            };
            format!(
                "app: running (pid {pid}, http://127.0.0.1:{port}, current -> {release}, {health})"
            )
        }
        _ => format!("app: stopped (current -> {release})"),
    }
}
