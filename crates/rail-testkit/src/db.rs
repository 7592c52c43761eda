//! A fresh PostgreSQL database per test, cloned from the stack's template, and plain SQL helpers.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::proc;
use crate::stack::Stack;

/// Rows of a simple query: each value as PostgreSQL's text form, `None` for NULL.
pub type Rows = Vec<Vec<Option<String>>>;

/// Runs `future` on a runtime of its own: tests are plain `#[test]` functions.
pub(crate) fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building a tokio runtime")
        .block_on(future)
}

/// Runs `sql` (one or more statements, simple query protocol) on the database at `url`; returns
/// the rows of every statement that returned some.
pub fn query(url: &str, sql: &str) -> Result<Rows, tokio_postgres::Error> {
    block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        let driver = tokio::spawn(connection);
        let messages = client.simple_query(sql).await;
        drop(client);
        let _ = driver.await;
        let mut rows = Vec::new();
        for message in messages? {
            if let tokio_postgres::SimpleQueryMessage::Row(row) = message {
                rows.push((0..row.len()).map(|i| row.get(i).map(str::to_owned)).collect());
            }
        }
        Ok(rows)
    })
}

/// A database of its own for one test: `t_<time>_<random>`, cloned from the stack's template (the
/// demo app's v1, migrated and seeded), dropped when the value is dropped.
///
/// ```no_run
/// let db = rail_testkit::TestDb::new();
/// assert_eq!(db.query_one("SELECT count(*) FROM catalog_product").as_deref(), Some("50"));
/// ```
#[derive(Debug)]
pub struct TestDb {
    name: String,
    url: String,
}

impl TestDb {
    /// Creates the database (`CREATE DATABASE … TEMPLATE rail_template`).
    pub fn new() -> TestDb {
        let stack = Stack::get();
        let secs = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let name = format!("t_{secs}_{}", proc::unique_id());
        let admin = stack.database_url_for("postgres");
        query(&admin, &format!("CREATE DATABASE {name} TEMPLATE {}", stack.template_db())).unwrap_or_else(|err| {
            panic!("creating test database {name} on the stack's cluster (is the stack up? `cargo xtask stack up`): {err}")
        });
        let url = stack.database_url_for(&name);
        TestDb { name, url }
    }

    /// `postgresql://rail:<password>@127.0.0.1:<port>/<name>`: the password is in it, as in a real
    /// config, so tests can check that it never shows.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name, `t_<unix seconds>_<12 hex>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The password inside [`url`](Self::url).
    pub fn password(&self) -> &str {
        let userinfo =
            self.url.split_once("://").and_then(|(_, rest)| rest.split_once('@')).map(|(u, _)| u);
        userinfo.and_then(|u| u.split_once(':')).map_or("", |(_, p)| p)
    }

    /// Runs `sql` on this database; panics on error.
    pub fn query(&self, sql: &str) -> Rows {
        query(&self.url, sql)
            .unwrap_or_else(|err| panic!("query on {} failed: {err}\n{sql}", self.name))
    }

    /// Runs statements that return nothing; panics on error.
    pub fn execute(&self, sql: &str) {
        self.query(sql);
    }

    /// Runs `sql` on this database as the cluster's superuser (what the app's role may not do).
    pub fn admin_execute(&self, sql: &str) {
        query(&Stack::get().admin_url_for(&self.name), sql).unwrap_or_else(|err| {
            let detail =
                err.as_db_error().map_or_else(|| err.to_string(), |e| e.message().to_owned());
            panic!("admin query on {} failed: {detail}\n{sql}", self.name)
        });
    }

    /// The first column of the first row, if any.
    pub fn query_one(&self, sql: &str) -> Option<String> {
        self.query(sql).into_iter().next().and_then(|row| row.into_iter().next().flatten())
    }

    /// A full logical dump in plain SQL (`pg_dump`, without owners and privileges), to compare the
    /// database before and after an operation.
    pub fn dump(&self) -> String {
        let stack = Stack::get();
        proc::run_ok(
            proc::command(stack.pg_bin("pg_dump"))
                .env_clear()
                .args(["--no-owner", "--no-privileges", "--quote-all-identifiers", "-d"])
                .arg(&self.url),
            "dumping a test database",
        )
    }
}

impl Default for TestDb {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Best effort: a failing test must still report its own failure, not this one.
        let admin = Stack::get().database_url_for("postgres");
        let _ = query(&admin, &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        // The copies a restore keeps or leaves beside it (`<name>__rail_pre_<stamp>` and the like).
        let copies = format!(
            "SELECT datname FROM pg_database WHERE starts_with(datname, '{}__rail_')",
            self.name
        );
        for row in query(&admin, &copies).unwrap_or_default() {
            if let Some(Some(name)) = row.first() {
                let _ = query(&admin, &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
            }
        }
    }
}
