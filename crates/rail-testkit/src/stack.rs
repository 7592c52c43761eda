//! The local stack that `cargo xtask stack up` started, as the tests see it: the settings it wrote to
//! `target/stack/env`, read once per test process.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use fs_err as fs;

/// The running local stack: its PostgreSQL cluster, Redis, demo app and the paths around them.
///
/// Every value comes from `target/stack/env` (or `$RAIL_STACK_DIR/env`), which `cargo xtask stack up`
/// writes; the keys are documented there and in `xtask/src/stack/mod.rs`.
#[derive(Debug)]
pub struct Stack {
    dir: PathBuf,
    vars: BTreeMap<String, String>,
}

/// The workspace root, found from this crate's manifest directory.
pub fn workspace_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        manifest.ancestors().nth(2).expect("the testkit lives in crates/rail-testkit").to_path_buf()
    })
}

impl Stack {
    /// The stack, read from its env file on first use.
    ///
    /// Panics with "run `cargo xtask stack up` first" when the stack was never brought up.
    pub fn get() -> &'static Stack {
        Self::loaded()
            .as_ref()
            .unwrap_or_else(|why| panic!("{why}: run `cargo xtask stack up` first"))
    }

    /// The stack when it was brought up, else `None` (for defaults that need not have one).
    pub fn try_get() -> Option<&'static Stack> {
        Self::loaded().as_ref().ok()
    }

    fn loaded() -> &'static Result<Stack, String> {
        static STACK: OnceLock<Result<Stack, String>> = OnceLock::new();
        STACK.get_or_init(|| {
            let dir = std::env::var_os("RAIL_STACK_DIR")
                .map_or_else(|| workspace_root().join("target").join("stack"), PathBuf::from);
            Stack::load(&dir)
        })
    }

    /// A URL of the cluster's superuser `postgres` for database `name`, through the stack's Unix socket
    /// (trusted locally): for tests that set up what the app's role may not (event triggers, roles).
    pub fn admin_url_for(&self, name: &str) -> String {
        let socket = self.var("PGHOST").unwrap_or("/tmp");
        let port = self.var("PGPORT").unwrap_or("5432");
        format!("host={socket} port={port} user=postgres dbname={name}")
    }

    fn load(dir: &Path) -> Result<Stack, String> {
        let path = dir.join("env");
        let text = fs::read_to_string(&path)
            .map_err(|err| format!("cannot read the stack's env file: {err}"))?;
        let vars = parse_env(&text);
        for key in ["DATABASE_URL", "REDIS_URL", "PG_BINDIR"] {
            if !vars.contains_key(key) {
                return Err(format!("{} has no {key}", path.display()));
            }
        }
        Ok(Stack { dir: dir.to_path_buf(), vars })
    }

    /// `target/stack/`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Any key of the env file (`DATABASE_URL`, `PGPORT`, `RAIL_PYTHON`, …).
    pub fn var(&self, key: &str) -> Option<&str> {
        self.vars.get(key).map(String::as_str)
    }

    /// Every key of the env file.
    pub fn vars(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    fn required(&self, key: &str) -> &str {
        self.var(key).unwrap_or_else(|| {
            panic!("the stack's env file has no {key}: run `cargo xtask stack up` first")
        })
    }

    /// `postgresql://rail:<password>@127.0.0.1:<port>/rail_demo`, the stack's own database.
    pub fn database_url(&self) -> &str {
        self.required("DATABASE_URL")
    }

    /// A URL of the stack's cluster for database `name`, with the same role and password.
    pub fn database_url_for(&self, name: &str) -> String {
        let url = self.database_url();
        let base = url.rsplit_once('/').map_or(url, |(base, _)| base);
        format!("{base}/{name}")
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn redis_url(&self) -> &str {
        self.required("REDIS_URL")
    }

    /// The demo app of the stack, `http://127.0.0.1:<port>`.
    pub fn app_url(&self) -> &str {
        self.required("APP_URL")
    }

    /// `$APP_URL/graphql/`.
    pub fn graphql_url(&self) -> &str {
        self.required("GRAPHQL_URL")
    }

    /// The path of a PostgreSQL 15 program (`pg_dump`, `psql`, …), called by real path.
    pub fn pg_bin(&self, tool: &str) -> PathBuf {
        Path::new(self.required("PG_BINDIR")).join(tool)
    }

    /// The demo app venv's python.
    pub fn python(&self) -> &Path {
        Path::new(self.required("RAIL_PYTHON"))
    }

    /// The demo app venv's gunicorn.
    pub fn gunicorn(&self) -> &Path {
        Path::new(self.required("RAIL_GUNICORN"))
    }

    /// The database every [`TestDb`](crate::TestDb) is cloned from.
    pub fn template_db(&self) -> &str {
        self.var("RAIL_TEMPLATE_DB").unwrap_or("rail_template")
    }

    /// `docker/demo-app/`.
    pub fn demo_app_dir(&self) -> PathBuf {
        self.var("DEMO_APP_DIR")
            .map_or_else(|| workspace_root().join("docker").join("demo-app"), PathBuf::from)
    }

    /// Where throwaway servers and test apps keep their files, so `cargo xtask stack down` can stop
    /// those a killed test left behind.
    pub(crate) fn scratch_dir(&self) -> PathBuf {
        let dir =
            self.var("RAIL_SCRATCH_DIR").map_or_else(|| self.dir.join("scratch"), PathBuf::from);
        fs::create_dir_all(&dir).expect("creating the stack's scratch dir");
        dir
    }

    pub(crate) fn release_cache_dir(&self) -> PathBuf {
        self.var("RAIL_RELEASE_CACHE").map_or_else(|| self.dir.join("release-cache"), PathBuf::from)
    }

    pub(crate) fn pg_template_dir(&self) -> PathBuf {
        self.var("RAIL_PG_TEMPLATE_DIR").map_or_else(|| self.dir.join("pg-template"), PathBuf::from)
    }

    pub(crate) fn redis_server(&self) -> PathBuf {
        PathBuf::from(self.var("REDIS_SERVER").unwrap_or("redis-server"))
    }
}

/// Reads `KEY=VALUE` lines (the format `cargo xtask stack up` writes); comments and blank lines skipped.
pub(crate) fn parse_env(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_env_file_format() {
        let vars =
            parse_env("# comment\n\nA=1\nURL=postgresql://u:p@h:1/d?x=y\n  B = two \nnot a line\n");
        assert_eq!(vars.get("A").map(String::as_str), Some("1"));
        assert_eq!(vars.get("URL").map(String::as_str), Some("postgresql://u:p@h:1/d?x=y"));
        assert_eq!(vars.get("B").map(String::as_str), Some("two"));
        assert_eq!(vars.len(), 3);
    }

    #[test]
    fn a_missing_env_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let err = Stack::load(dir.path()).unwrap_err();
        assert!(err.starts_with("cannot read the stack's env file"), "{err}");
        fs::write(dir.path().join("env"), "DATABASE_URL=x\n").unwrap();
        let err = Stack::load(dir.path()).unwrap_err();
        assert!(err.ends_with("has no REDIS_URL"), "{err}");
    }

    #[test]
    fn database_url_for_swaps_the_database_name() {
        let stack = Stack {
            dir: PathBuf::from("/s"),
            vars: parse_env("DATABASE_URL=postgresql://rail:pw@127.0.0.1:5/rail_demo\n"),
        };
        assert_eq!(stack.database_url_for("t_1"), "postgresql://rail:pw@127.0.0.1:5/t_1");
    }
}
