//! A private instance of the demo app per test: its own releases root, gunicorn on a free port, its
//! own static, media and maintenance paths, pointed at the test's database and Redis.
//!
//! Releases are built once per version with `docker/demo-app/build_release.py` into
//! `target/stack/release-cache/<version>` (the same cache `cargo xtask stack up` fills, keyed by the
//! same fingerprint of the demo app's sources) and copied from there.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fs_err as fs;
use nix::sys::signal::Signal;
use sha2::{Digest, Sha256};

use crate::db::{query, TestDb};
use crate::http::http_get;
use crate::proc;
use crate::redis::TestRedis;
use crate::stack::Stack;

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    to_hex(&Sha256::digest(bytes))
}

/// A fingerprint of every file under `dir`; must stay the same as xtask's `util::tree_fingerprint`.
fn tree_fingerprint(dir: &Path) -> String {
    fn walk(base: &Path, dir: &Path, files: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).expect("reading the demo app").flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name == "__pycache__" || name.ends_with(".pyc") {
                continue;
            }
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                walk(base, &path, files);
            } else {
                files.push(path.strip_prefix(base).expect("walked below base").to_path_buf());
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, dir, &mut files);
    files.sort();
    let mut hasher = Sha256::new();
    for file in files {
        let contents = fs::read(dir.join(&file)).expect("reading the demo app");
        hasher.update(file.to_string_lossy().as_bytes());
        hasher.update([0]);
        hasher.update((contents.len() as u64).to_le_bytes());
        hasher.update(&contents);
    }
    to_hex(&hasher.finalize())
}

/// Must stay the same as xtask's `stack::app::demo_fingerprint`.
fn demo_fingerprint(demo: &Path) -> String {
    let read = |name: &str| fs::read(demo.join(name)).expect("reading the demo app");
    let parts = [
        tree_fingerprint(&demo.join("src")),
        tree_fingerprint(&demo.join("releases")),
        sha256_hex(&read("build_release.py")),
        sha256_hex(&read("requirements.txt")),
    ];
    sha256_hex(parts.join("\n").as_bytes())
}

/// The built tree of release `version` (`v1`, `v2`, `v3-broken`), from the cache, built if needed.
pub fn built_release(version: &str) -> PathBuf {
    let stack = Stack::get();
    let demo = stack.demo_app_dir();
    let cache = stack.release_cache_dir();
    let fingerprint = demo_fingerprint(&demo);
    let cached = cache.join(version);
    let stamp = cache.join(format!("{version}.fingerprint"));
    let fresh =
        || cached.is_dir() && fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == fingerprint);
    if fresh() {
        return cached;
    }
    fs::create_dir_all(&cache).expect("creating the release cache");
    // Tests running in parallel may all want the same release: one builds it, the others wait.
    let lock =
        fs::File::create(cache.join(format!(".{version}.lock"))).expect("creating a lock file");
    let _guard = nix::fcntl::Flock::lock(lock.into_parts().0, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, err)| err)
        .expect("locking the release cache");
    if fresh() {
        return cached;
    }
    let staging = cache.join(format!(".build-{version}-{}", proc::unique_id()));
    proc::run_ok(
        proc::command(stack.python()).arg(demo.join("build_release.py")).arg(version).arg(&staging),
        "building a demo app release",
    );
    let _ = fs::remove_file(&stamp);
    if cached.exists() {
        fs::remove_dir_all(&cached).expect("removing a stale release build");
    }
    fs::rename(&staging, &cached).expect("moving a release build into the cache");
    fs::write(&stamp, &fingerprint).expect("writing the release fingerprint");
    cached
}

/// A private gunicorn instance of the demo app, stopped (by PID) and removed when dropped.
///
/// Its releases root looks like the stack's (`releases/<version>/`, `current` symlink,
/// `shared/{static,media,app.env}`, `run/gunicorn.pid`, `log/`), so rail's `releases` service backend
/// can deploy to it and restart it.
#[derive(Debug)]
pub struct TestApp {
    root: PathBuf,
    port: u16,
    release: String,
    env: Vec<(String, String)>,
}

impl TestApp {
    /// Starts release `release` against the test's database and Redis.
    pub fn start(release: &str, db: &TestDb, redis: &TestRedis) -> TestApp {
        Self::start_with(release, db.url(), redis.url(), &[])
    }

    /// Starts release `release` against any database and Redis (a throwaway server's, say), with
    /// extra environment variables for the app.
    pub fn start_with(
        release: &str,
        database_url: &str,
        redis_url: &str,
        extra_env: &[(&str, &str)],
    ) -> TestApp {
        let stack = Stack::get();
        let built = built_release(release);
        let root = stack.scratch_dir().join(format!("app-{}", proc::unique_id()));
        for dir in
            ["releases", "shared/static", "shared/media", "run", "log", "maintenance", "backups"]
        {
            fs::create_dir_all(root.join(dir)).expect("creating a test app's dirs");
        }
        proc::copy_tree(&built, &root.join("releases").join(release));
        std::os::unix::fs::symlink(Path::new("releases").join(release), root.join("current"))
            .expect("linking the current release");

        let path = |p: PathBuf| p.display().to_string();
        let mut app_env: Vec<(String, String)> = vec![
            ("DATABASE_URL".into(), database_url.into()),
            ("REDIS_URL".into(), redis_url.into()),
            ("SECRET_KEY".into(), format!("test-{}", proc::unique_id())),
            ("DEBUG".into(), "0".into()),
            ("ALLOWED_HOSTS".into(), "127.0.0.1,localhost".into()),
            ("STATIC_ROOT".into(), path(root.join("shared/static"))),
            ("MEDIA_ROOT".into(), path(root.join("shared/media"))),
            ("RAIL_MAINTENANCE_FILE".into(), path(root.join("maintenance/flag.json"))),
            ("RAIL_MAINTENANCE_KEY".into(), "rail:maintenance".into()),
            ("DEMO_ALLOW_DELAY".into(), "1".into()),
        ];
        for (key, value) in extra_env {
            app_env.retain(|(k, _)| k != key);
            app_env.push(((*key).to_owned(), (*value).to_owned()));
        }
        let env_file = app_env.iter().fold(String::new(), |mut out, (k, v)| {
            let _ = writeln!(out, "{k}={v}");
            out
        });
        fs::write(root.join("shared/app.env"), env_file).expect("writing app.env");

        let mut app = TestApp { root, port: 0, release: release.to_owned(), env: app_env };
        app.migrate();
        for attempt in 1..=3 {
            app.port = proc::free_port();
            match app.try_start() {
                Ok(()) => return app,
                Err(log) if attempt < 3 && log.contains("in use") => {}
                Err(log) => panic!("the demo app ({release}) did not start\n{log}"),
            }
        }
        unreachable!("the last attempt panics or returns")
    }

    fn manage(&self, args: &[&str]) -> String {
        let stack = Stack::get();
        proc::run_ok(
            proc::command(stack.python())
                .env_clear()
                .envs(base_env())
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .current_dir(self.root.join("current"))
                .arg("manage.py")
                .args(args),
            "running the demo app's manage.py",
        )
    }

    /// Applies the current release's migrations, unless the database already has them all (a clone
    /// of the template for v1): starting Django just to learn that takes seconds.
    fn migrate(&self) {
        if !self.migrations_applied() {
            self.manage(&["migrate", "--noinput"]);
        }
    }

    /// Whether every migration file of the current release is recorded in `django_migrations`.
    fn migrations_applied(&self) -> bool {
        let release = self.root.join("current");
        let mut wanted = Vec::new();
        for app in fs::read_dir(&release).into_iter().flatten().flatten() {
            let label = app.file_name().to_string_lossy().into_owned();
            for file in fs::read_dir(app.path().join("migrations")).into_iter().flatten().flatten()
            {
                let name = file.file_name().to_string_lossy().into_owned();
                if let Some(stem) = name.strip_suffix(".py").filter(|s| *s != "__init__") {
                    wanted.push(format!("{label}.{stem}"));
                }
            }
        }
        let database_url =
            self.env.iter().find(|(k, _)| k == "DATABASE_URL").map_or("", |(_, v)| v.as_str());
        let Ok(rows) = query(database_url, "SELECT app || '.' || name FROM django_migrations")
        else {
            return false;
        };
        let applied: Vec<String> =
            rows.into_iter().filter_map(|row| row.into_iter().next().flatten()).collect();
        // Django's own apps are migrated together with the first release's.
        !applied.is_empty() && wanted.iter().all(|w| applied.contains(w))
    }

    fn try_start(&self) -> Result<(), String> {
        let stack = Stack::get();
        let log = self.root.join("log/gunicorn.log");
        let pid_file = self.pid_file();
        let _ = fs::remove_file(&pid_file);
        let output = proc::command(stack.gunicorn())
            .env_clear()
            .envs(base_env())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .arg("demo.wsgi:application")
            .arg("--chdir")
            .arg(self.root.join("current"))
            .arg("--bind")
            .arg(format!("127.0.0.1:{}", self.port))
            .args(["--workers", "2", "--pid"])
            .arg(&pid_file)
            .arg("--daemon")
            .arg("--error-logfile")
            .arg(&log)
            .arg("--capture-output")
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|err| format!("cannot run gunicorn: {err}"))?;
        let health = self.health_url();
        let healthy = || http_get(&health).is_ok_and(|r| r.status == 200);
        let ready = output.status.success()
            && proc::wait_until(Duration::from_secs(60), Duration::from_millis(20), || {
                healthy() || (pid_file.exists() && self.pid().is_none())
            })
            && healthy();
        if ready {
            Ok(())
        } else {
            self.stop();
            Err(format!(
                "gunicorn: {}{}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
                proc::tail_file(&log, 30)
            ))
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:<port>/graphql/`.
    pub fn graphql_url(&self) -> String {
        format!("{}/graphql/", self.url())
    }

    /// `http://127.0.0.1:<port>/health/`.
    pub fn health_url(&self) -> String {
        format!("{}/health/", self.url())
    }

    /// The port gunicorn listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The releases root (`releases/`, `current`, `shared/`, `run/`, `log/`, `maintenance/`, `backups/`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The release it was started with.
    pub fn release(&self) -> &str {
        &self.release
    }

    /// The maintenance flag file the app watches (it exists only during maintenance).
    pub fn maintenance_file(&self) -> PathBuf {
        self.root.join("maintenance/flag.json")
    }

    /// `run/gunicorn.pid`, written by gunicorn (and by whatever restarts it).
    pub fn pid_file(&self) -> PathBuf {
        self.root.join("run/gunicorn.pid")
    }

    /// The gunicorn master's PID while it runs (re-read each time: rail may restart the app).
    pub fn pid(&self) -> Option<i32> {
        proc::read_pid(&self.pid_file()).filter(|pid| proc::pid_runs(*pid, "gunicorn"))
    }

    /// Copies built release `version` into `releases/<version>` (for deploys to switch to); returns
    /// its path.
    pub fn add_release(&self, version: &str) -> PathBuf {
        let dest = self.root.join("releases").join(version);
        if !dest.exists() {
            proc::copy_tree(&built_release(version), &dest);
        }
        dest
    }

    /// Everything a rail config needs to point at this app, with the stack's key names:
    /// `DATABASE_URL`, `REDIS_URL`, `APP_URL`, `HEALTH_URL`, `GRAPHQL_URL`, `RAIL_APP_ROOT`,
    /// `RAIL_APP_ENV`, `RAIL_APP_BIND`, `RAIL_GUNICORN_PID`, `RAIL_APP_LOG_DIR`, `RAIL_PYTHON`,
    /// `RAIL_GUNICORN`, `STATIC_ROOT`, `MEDIA_ROOT`, `RAIL_MAINTENANCE_FILE`, `RAIL_MAINTENANCE_KEY`,
    /// `RAIL_BACKUP_DIR`, `SECRET_KEY`, `PG_BINDIR`, `DEMO_APP_DIR`, `RAIL_RELEASE_CACHE`.
    pub fn env_vars(&self) -> Vec<(String, String)> {
        let stack = Stack::get();
        let path = |p: PathBuf| p.display().to_string();
        let app = |key: &str| {
            self.env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap_or_default()
        };
        vec![
            ("DATABASE_URL".into(), app("DATABASE_URL")),
            ("REDIS_URL".into(), app("REDIS_URL")),
            ("APP_URL".into(), self.url()),
            ("HEALTH_URL".into(), self.health_url()),
            ("GRAPHQL_URL".into(), self.graphql_url()),
            ("RAIL_APP_ROOT".into(), path(self.root.clone())),
            ("RAIL_APP_ENV".into(), path(self.root.join("shared/app.env"))),
            ("RAIL_APP_BIND".into(), format!("127.0.0.1:{}", self.port)),
            ("RAIL_GUNICORN_PID".into(), path(self.pid_file())),
            ("RAIL_APP_LOG_DIR".into(), path(self.root.join("log"))),
            ("RAIL_PYTHON".into(), path(stack.python().to_path_buf())),
            ("RAIL_GUNICORN".into(), path(stack.gunicorn().to_path_buf())),
            ("STATIC_ROOT".into(), app("STATIC_ROOT")),
            ("MEDIA_ROOT".into(), app("MEDIA_ROOT")),
            ("RAIL_MAINTENANCE_FILE".into(), app("RAIL_MAINTENANCE_FILE")),
            ("RAIL_MAINTENANCE_KEY".into(), app("RAIL_MAINTENANCE_KEY")),
            ("RAIL_BACKUP_DIR".into(), path(self.root.join("backups"))),
            ("SECRET_KEY".into(), app("SECRET_KEY")),
            ("PG_BINDIR".into(), stack.var("PG_BINDIR").unwrap_or_default().to_owned()),
            ("DEMO_APP_DIR".into(), path(stack.demo_app_dir())),
            ("RAIL_RELEASE_CACHE".into(), path(stack.release_cache_dir())),
        ]
    }

    /// Stops gunicorn (SIGTERM to the master, SIGKILL after 15 s) and waits until it is gone.
    pub fn stop(&self) {
        if let Some(pid) = self.pid() {
            proc::stop_pid(pid, "gunicorn", Signal::SIGTERM, Duration::from_secs(15));
        }
    }

    /// Starts gunicorn again on the same port with the `current` release, if it is not running.
    pub fn restart(&self) {
        if self.pid().is_none() {
            self.try_start().unwrap_or_else(|log| panic!("the demo app did not restart\n{log}"));
        }
    }
}

/// What the app's processes keep of the test's environment.
fn base_env() -> Vec<(String, String)> {
    ["PATH", "HOME", "LANG", "TMPDIR"]
        .into_iter()
        .filter_map(|key| Some((key.to_owned(), std::env::var(key).ok()?)))
        .collect()
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop();
        let _ = fs::remove_dir_all(&self.root);
    }
}
