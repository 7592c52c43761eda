//! A deploy test's world: a database, a Redis db, the demo app running a release, and the command
//! that runs `deploy` against them with `deploy-configs/local.toml`.

use std::path::PathBuf;

use rail_testkit::{cmd, workspace_root, Cmd, TestApp, TestDb, TestDir, TestRedis};

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

    /// `deploy ARGS` against this world.
    pub(crate) fn deploy(&self, args: &[&str]) -> Cmd {
        let mut c = cmd(env!("CARGO_BIN_EXE_deploy"));
        c.arg("--config").arg(Self::config()).args(args);
        c.envs(self.app.env_vars());
        c.env("RAIL_STACK_DIR", self.dir.path());
        c.env("RAIL_APP_ENV", self.app.root().join("shared/app.env"));
        c
    }

    /// The release the app says it runs.
    pub(crate) fn served_release(&self) -> Option<String> {
        let resp = rail_testkit::http_get(&self.app.health_url()).ok()?;
        resp.json().get("release").and_then(|r| r.as_str()).map(str::to_owned)
    }

    pub(crate) fn health_status(&self) -> Option<u16> {
        rail_testkit::http_get(&self.app.health_url()).ok().map(|r| r.status)
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
}

/// A full logical dump, normalised so that two databases with the same schema and rows compare equal:
/// pg_dump's per-run `\restrict` keys are dropped and the rows of each table are sorted (a restore
/// may store them in another physical order).
pub(crate) fn logical_state(db: &TestDb) -> String {
    let dump = db.dump();
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
                out.extend(rows.drain(..));
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

/// Assert two logical states are equal, showing the first lines that differ rather than both dumps.
#[track_caller]
pub(crate) fn assert_same_state(actual: &str, expected: &str, what: &str) {
    if actual == expected {
        return;
    }
    let a: Vec<&str> = actual.lines().collect();
    let e: Vec<&str> = expected.lines().collect();
    let first = a.iter().zip(&e).position(|(x, y)| x != y).unwrap_or(a.len().min(e.len()));
    let window = |v: &[&str]| v[first.saturating_sub(3)..(first + 8).min(v.len())].join("\n");
    panic!(
        "{what}: logical dumps differ at line {} ({} vs {} lines)\n--- actual ---\n{}\n--- expected ---\n{}",
        first + 1,
        a.len(),
        e.len(),
        window(&a),
        window(&e)
    );
}
