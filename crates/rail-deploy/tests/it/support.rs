//! A deploy test's world: a database, a Redis db, the demo app running a release, and the command
//! that runs `deploy` against them with `deploy-configs/local.toml`; plus what the tests read back
//! afterwards: journals, logical dumps, file trees, Redis contents, and a webhook receiver.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rail_core::config::{Config, LoadOptions};
use rail_deploy::engine::Step;
use rail_testkit::{cmd, workspace_root, Cmd, Output, TestApp, TestDb, TestDir, TestRedis};
use serde_json::Value;

/// The Redis key of maintenance mode (`maintenance.redis_key`, the app's `RAIL_MAINTENANCE_KEY`).
pub(crate) const MAINTENANCE_KEY: &str = "rail:maintenance";

/// Generous limit for one deploy on a loaded 2-core machine: only a hung run should hit it.
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(600);

pub(crate) struct World {
    pub(crate) db: TestDb,
    pub(crate) redis: TestRedis,
    pub(crate) app: TestApp,
    pub(crate) dir: TestDir,
}

impl World {
    /// The demo app running `release`, with `others` installed beside it for deploys to switch to.
    pub(crate) fn new(release: &str, others: &[&str]) -> World {
        let db = TestDb::new();
        let redis = TestRedis::new();
        let app = TestApp::start(release, &db, &redis);
        for other in others {
            app.add_release(other);
        }
        World { db, redis, app, dir: TestDir::new() }
    }

    pub(crate) fn config() -> PathBuf {
        workspace_root().join("deploy-configs/local.toml")
    }

    /// The environment `deploy` gets (on top of `PATH`, `HOME`, `LANG`, `TMPDIR`).
    pub(crate) fn deploy_env(&self) -> Vec<(String, String)> {
        let mut env = self.app.env_vars();
        env.push(("RAIL_STACK_DIR".into(), self.dir.path().display().to_string()));
        env.push((
            "RAIL_APP_ENV".into(),
            self.app.root().join("shared/app.env").display().to_string(),
        ));
        env
    }

    /// `deploy ARGS` against this world.
    pub(crate) fn deploy(&self, args: &[&str]) -> Cmd {
        self.deploy_with_config(&Self::config(), args)
    }

    /// `deploy SUBCOMMAND… --config FILE` against this world (the options after the subcommand).
    pub(crate) fn deploy_sub(&self, args: &[&str]) -> Cmd {
        let mut c = cmd(env!("CARGO_BIN_EXE_deploy"));
        c.args(args).arg("--config").arg(Self::config());
        c.envs(self.deploy_env());
        c.timeout(DEPLOY_TIMEOUT);
        c
    }

    /// `deploy --config CONFIG ARGS` against this world.
    pub(crate) fn deploy_with_config(&self, config: &Path, args: &[&str]) -> Cmd {
        let mut c = cmd(env!("CARGO_BIN_EXE_deploy"));
        c.arg("--config").arg(config).args(args);
        c.envs(self.deploy_env());
        c.timeout(DEPLOY_TIMEOUT);
        c
    }

    /// The configuration `deploy` sees in this world with `extra` environment variables, loaded by
    /// the same library code.
    pub(crate) fn loaded_config(&self, extra: &[(&str, &str)]) -> Config {
        let mut env: BTreeMap<String, String> = self.deploy_env().into_iter().collect();
        for (k, v) in extra {
            env.insert((*k).to_owned(), (*v).to_owned());
        }
        let opts = LoadOptions {
            config_file: Some(Self::config()),
            env: Some(env),
            dotenv_dir: Some(self.dir.path().to_path_buf()),
            ..LoadOptions::default()
        };
        rail_core::config::load(&opts).expect("the test configuration loads").config
    }

    /// The steps a deploy runs in this world, from the library itself.
    pub(crate) fn steps(&self, no_backup: bool) -> Vec<Step> {
        rail_deploy::engine::steps(&self.loaded_config(&[]), no_backup)
    }

    /// The release the app says it runs.
    pub(crate) fn served_release(&self) -> Option<String> {
        let resp = rail_testkit::http_get(&self.app.health_url()).ok()?;
        resp.json().get("release").and_then(|r| r.as_str()).map(str::to_owned)
    }

    pub(crate) fn health_status(&self) -> Option<u16> {
        rail_testkit::http_get(&self.app.health_url()).ok().map(|r| r.status)
    }

    /// Status of a GraphQL `{ __typename }` POST, `None` when the app does not answer at all.
    pub(crate) fn graphql_status(&self) -> Option<u16> {
        let query = serde_json::json!({ "query": "{ __typename }" });
        rail_testkit::http_post_json(&self.app.graphql_url(), &query).ok().map(|r| r.status)
    }

    pub(crate) fn graphql_fields(&self, type_name: &str) -> Vec<String> {
        let query = serde_json::json!({
            "query": format!("{{ __type(name: \"{type_name}\") {{ fields {{ name }} }} }}")
        });
        let resp =
            rail_testkit::http_post_json(&self.app.graphql_url(), &query).expect("GraphQL answers");
        resp.json()["data"]["__type"]["fields"]
            .as_array()
            .map(|fields| {
                fields.iter().filter_map(|f| f["name"].as_str().map(str::to_owned)).collect()
            })
            .unwrap_or_default()
    }

    /// Whether `catalog_product.stock` exists (the column v2's migration adds).
    pub(crate) fn has_stock_column(&self) -> bool {
        self.db
            .query_one(
                "SELECT column_name FROM information_schema.columns \
                 WHERE table_name = 'catalog_product' AND column_name = 'stock'",
            )
            .is_some()
    }

    /// `RAIL_BACKUP_DIR` of this world.
    pub(crate) fn backup_dir(&self) -> PathBuf {
        self.app.root().join("backups")
    }

    pub(crate) fn journal_dir(&self) -> PathBuf {
        self.backup_dir().join("journal")
    }

    /// The run ids that have a journal, oldest first.
    pub(crate) fn run_ids(&self) -> Vec<String> {
        let Ok(entries) = fs_err::read_dir(self.journal_dir()) else { return Vec::new() };
        let mut ids: Vec<String> = entries
            .flatten()
            .filter_map(|e| {
                e.file_name().to_str().and_then(|n| n.strip_suffix(".jsonl")).map(str::to_owned)
            })
            .collect();
        ids.sort();
        ids
    }

    /// The only run of this world so far; panics when there are none or several.
    #[track_caller]
    pub(crate) fn only_run_id(&self) -> String {
        let ids = self.run_ids();
        assert_eq!(
            ids.len(),
            1,
            "expected exactly one journal in {}",
            self.journal_dir().display()
        );
        ids.into_iter().next().expect("one id")
    }

    /// The journal of `run_id`, one event per line.
    pub(crate) fn journal(&self, run_id: &str) -> Journal {
        let path = self.journal_dir().join(format!("{run_id}.jsonl"));
        let text = fs_err::read_to_string(&path).expect("reading a journal");
        let events = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("journal line {l:?}: {e}")))
            .collect();
        Journal { events }
    }

    /// The maintenance key in the app's Redis db, if set.
    pub(crate) fn maintenance_key(&self) -> Option<String> {
        self.redis.get(MAINTENANCE_KEY)
    }

    /// Every key of the Redis db with its serialized value (`DUMP`), to compare before and after.
    pub(crate) fn redis_contents(&self) -> BTreeMap<String, Option<Vec<u8>>> {
        self.redis
            .keys()
            .into_iter()
            .map(|k| {
                let value = match self.redis.cmd(&["DUMP", &k]) {
                    rail_testkit::Reply::Bulk(bytes) => bytes,
                    _ => None,
                };
                (k, value)
            })
            .collect()
    }

    /// Where `current` points.
    pub(crate) fn current_link(&self) -> PathBuf {
        fs_err::read_link(self.app.root().join("current")).expect("reading the current link")
    }

    pub(crate) fn static_root(&self) -> PathBuf {
        self.app.root().join("shared/static")
    }

    pub(crate) fn media_root(&self) -> PathBuf {
        self.app.root().join("shared/media")
    }

    /// The app's own variables (`shared/app.env`).
    pub(crate) fn app_env(&self) -> Vec<(String, String)> {
        let text = fs_err::read_to_string(self.app.root().join("shared/app.env"))
            .expect("reading app.env");
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// A value of the app's environment (`SECRET_KEY`, …).
    pub(crate) fn app_var(&self, key: &str) -> String {
        self.app_env().into_iter().find(|(k, _)| k == key).map(|(_, v)| v).unwrap_or_default()
    }

    /// Run `manage.py ARGS` of the current release with the app's environment, as an operator would.
    pub(crate) fn manage(&self, args: &[&str]) -> Output {
        let python =
            self.deploy_env().into_iter().find(|(k, _)| k == "RAIL_PYTHON").map(|(_, v)| v);
        let mut c = cmd(python.expect("RAIL_PYTHON is set"));
        c.arg("manage.py").args(args).envs(self.app_env());
        c.current_dir(self.app.root().join("current"));
        c.timeout(Duration::from_secs(300));
        c.run()
    }

    /// Secrets that must never show: the database password and the app's secret key.
    pub(crate) fn secrets(&self) -> Vec<String> {
        vec![self.db.password().to_owned(), self.app_var("SECRET_KEY")]
    }

    /// Panics if any secret of this world appears in `text`.
    #[track_caller]
    pub(crate) fn assert_no_secret(&self, text: &str, what: &str) {
        for secret in self.secrets() {
            assert!(!secret.is_empty(), "a secret of the world is empty");
            assert!(!text.contains(&secret), "{what} shows a secret:\n{text}");
        }
    }
}

impl Drop for World {
    /// A rollback keeps the database it replaced as `<name>__rail_pre_<time>` (its safety copy); the
    /// world's database is dropped by `TestDb`, its copies here, so the shared cluster does not fill up.
    fn drop(&mut self) {
        let admin = rail_testkit::Stack::get().database_url_for("postgres");
        let prefix = format!("{}__rail_", self.db.name());
        let Ok(rows) = rail_testkit::query(&admin, "SELECT datname FROM pg_database") else {
            return;
        };
        for name in rows.into_iter().filter_map(|r| r.into_iter().next().flatten()) {
            if name.starts_with(&prefix) {
                let _ = rail_testkit::query(
                    &admin,
                    &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
                );
            }
        }
    }
}

/// The events of one run's journal.
#[derive(Debug, Clone)]
pub(crate) struct Journal {
    pub(crate) events: Vec<Value>,
}

impl Journal {
    /// The time of the first `event` (`step_begin`, `step_end`, `start`, `finish`) of `step`.
    pub(crate) fn ts(&self, event: &str, step: Option<&str>) -> Option<DateTime<Utc>> {
        self.events
            .iter()
            .find(|e| e["event"] == event && step.is_none_or(|s| e["step"] == s))
            .and_then(|e| e["ts"].as_str())
            .map(|ts| ts.parse().unwrap_or_else(|err| panic!("journal ts {ts}: {err}")))
    }

    /// The data of the first `step_end` of `step` (`null` when it never ended).
    pub(crate) fn end_data(&self, step: &str) -> Value {
        self.events
            .iter()
            .find(|e| e["event"] == "step_end" && e["step"] == step)
            .map(|e| e["data"].clone())
            .unwrap_or_default()
    }

    /// The `outcome` of the `finish` line, if the run finished.
    pub(crate) fn finish_outcome(&self) -> Option<String> {
        self.events
            .iter()
            .rev()
            .find(|e| e["event"] == "finish")
            .and_then(|e| e["outcome"].as_str())
            .map(str::to_owned)
    }

    /// The steps that began, in order (repeats included).
    pub(crate) fn begun(&self) -> Vec<String> {
        self.events
            .iter()
            .filter(|e| e["event"] == "step_begin")
            .filter_map(|e| e["step"].as_str().map(str::to_owned))
            .collect()
    }
}

/// A full logical dump, normalised so that two databases with the same schema and rows compare equal:
/// pg_dump's per-run `\restrict` keys are dropped and the rows of each table are sorted (a restore
/// may store them in another physical order).
pub(crate) fn logical_state(db: &TestDb) -> String {
    normalise_dump(&db.dump())
}

/// [`logical_state`] of a dump taken otherwise (of a database in a container, say).
pub(crate) fn normalise_dump(dump: &str) -> String {
    let mut out = Vec::new();
    let mut rows: Vec<&str> = Vec::new();
    let mut in_copy = false;
    for line in dump.lines() {
        if line.starts_with("\\restrict") || line.starts_with("\\unrestrict") {
            continue;
        }
        if in_copy {
            if line == "\\." {
                rows.sort_unstable();
                out.append(&mut rows);
                out.push(line);
                in_copy = false;
            } else {
                rows.push(line);
            }
            continue;
        }
        in_copy = line.starts_with("COPY ");
        out.push(line);
    }
    out.join("\n")
}

/// [`logical_state`] comparable across databases: `django_migrations.applied` (the time each
/// migration ran, different in every database) is masked.
pub(crate) fn comparable_state(db: &TestDb) -> String {
    mask_migration_times(&logical_state(db))
}

/// Drop the last column (`applied`) of the `django_migrations` rows of a dump.
pub(crate) fn mask_migration_times(state: &str) -> String {
    let mut out = Vec::new();
    let mut in_migrations = false;
    for line in state.lines() {
        if in_migrations {
            if line == "\\." {
                in_migrations = false;
                out.push(line.to_owned());
            } else {
                let masked = line.rsplit_once('\t').map_or(line, |(rest, _)| rest);
                out.push(format!("{masked}\t<applied>"));
            }
            continue;
        }
        in_migrations = line.starts_with("COPY ") && line.contains("\"django_migrations\"");
        out.push(line.to_owned());
    }
    out.join("\n")
}

/// Assert two logical states are equal, showing the first lines that differ rather than both dumps.
#[track_caller]
pub(crate) fn assert_same_state(actual: &str, expected: &str, what: &str) {
    if let Some(diff) = state_diff(actual, expected) {
        panic!("{what}: {diff}");
    }
}

/// `None` when equal, else where two logical states first differ.
pub(crate) fn state_diff(actual: &str, expected: &str) -> Option<String> {
    if actual == expected {
        return None;
    }
    let a: Vec<&str> = actual.lines().collect();
    let e: Vec<&str> = expected.lines().collect();
    let first = a.iter().zip(&e).position(|(x, y)| x != y).unwrap_or(a.len().min(e.len()));
    let window = |v: &[&str]| v[first.saturating_sub(3)..(first + 8).min(v.len())].join("\n");
    Some(format!(
        "logical dumps differ at line {} ({} vs {} lines)\n--- actual ---\n{}\n--- expected ---\n{}",
        first + 1,
        a.len(),
        e.len(),
        window(&a),
        window(&e)
    ))
}

/// Every entry below `dir` (relative path → kind, size and a hash of the contents or link target),
/// to compare a tree before and after; empty when `dir` does not exist.
pub(crate) fn tree_digest(dir: &Path) -> BTreeMap<String, String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(entries) = fs_err::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            let rel = path.strip_prefix(base).expect("below base").display().to_string();
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() {
                out.insert(rel, "dir".into());
                walk(base, &path, out);
            } else if kind.is_symlink() {
                let target = fs_err::read_link(&path).map(|t| t.display().to_string());
                out.insert(rel, format!("link -> {}", target.unwrap_or_default()));
            } else {
                let bytes = fs_err::read(&path).unwrap_or_default();
                let mut h = std::collections::hash_map::DefaultHasher::new();
                bytes.hash(&mut h);
                out.insert(rel, format!("file {} bytes {:016x}", bytes.len(), h.finish()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// A port on 127.0.0.1 that nothing listens on (bound once, then released).
pub(crate) fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    listener.local_addr().expect("a bound address").port()
}

/// `text` of a command's stdout and stderr together, for message checks.
pub(crate) fn all_output(out: &Output) -> String {
    format!("{}\n{}", out.stdout, out.stderr)
}

/// A real HTTP server on 127.0.0.1 that answers every request 200 and keeps the bodies it got.
pub(crate) struct WebhookReceiver {
    port: u16,
    bodies: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl WebhookReceiver {
    pub(crate) fn start() -> WebhookReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the webhook receiver");
        let port = listener.local_addr().expect("a bound address").port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let bodies = Arc::clone(&bodies);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    if let Some(body) = serve_one(stream) {
                        bodies.lock().expect("receiver lock").push(body);
                    }
                }
            })
        };
        WebhookReceiver { port, bodies, stop, thread: Some(thread) }
    }

    /// `http://127.0.0.1:<port>/hook`.
    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// The bodies received so far.
    pub(crate) fn bodies(&self) -> Vec<String> {
        self.bodies.lock().expect("receiver lock").clone()
    }
}

/// Read one request (headers, then `Content-Length` bytes of body), answer 200, return the body.
fn serve_one(stream: TcpStream) -> Option<String> {
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).ok()?;
    let mut stream = stream;
    let _ = stream.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
    );
    Some(String::from_utf8_lossy(&body).into_owned())
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Poll `cond` every 50 ms until it holds; panics after `limit` (a bound against hanging, far above
/// what the condition needs: not a timing assertion).
#[track_caller]
/// Whether a process (not a zombie waiting for its adoptive parent) with this pid exists.
pub(crate) fn alive(pid: i32) -> bool {
    fs_err::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next());
        !matches!(state, Some("Z" | "X") | None)
    })
}

pub(crate) fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The [`comparable_state`] of a fresh v1 database after `manage.py migrate` of `release`, run
/// directly, without a deploy: what the release's migrations alone make of v1.
///
/// `pipeline` checks that a clean deploy of v2 ends in exactly this state, so the disaster drills can
/// use it as their post-deploy reference without paying for a whole extra deploy.
pub(crate) fn migrated_state(release: &str) -> String {
    let db = TestDb::new();
    let redis = TestRedis::new();
    let dir = TestDir::new();
    let stack = rail_testkit::Stack::get();
    let out = cmd(stack.python())
        .args(["manage.py", "migrate", "--noinput"])
        .current_dir(rail_testkit::built_release(release))
        .env("DATABASE_URL", db.url())
        .env("REDIS_URL", redis.url())
        .env("SECRET_KEY", "reference-only")
        .env("DEBUG", "0")
        .env("ALLOWED_HOSTS", "127.0.0.1")
        .env("STATIC_ROOT", dir.join("static"))
        .env("MEDIA_ROOT", dir.join("media"))
        // The release cache is shared: leave no bytecode in it.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .timeout(Duration::from_secs(300))
        .run();
    out.assert_success();
    comparable_state(&db)
}
