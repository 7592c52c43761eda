//! Test support for rail: the local stack's connection settings, a fresh database per test, temp dirs.
//!
//! Every crate's integration tests (`tests/it/main.rs`) use it to run the real binaries against real
//! servers, in parallel, without sharing mutable state:
//!
//! - [`Stack::get`]: the stack `cargo xtask stack up` started (PostgreSQL 15, Redis 7, the demo app),
//!   read from `target/stack/env`;
//! - [`TestDb`]: a database of the test's own, cloned from the template `rail_template` (the demo
//!   app's v1, migrated and seeded), dropped afterwards;
//! - [`TestRedis`]: a Redis database index of the test's own, flushed afterwards;
//! - [`TestDir`]: a temp dir;
//! - [`bin`], [`cmd`], [`run`]: the workspace's binaries run with a cleared environment, their
//!   [`Output`] filtered for snapshots ([`filter`]);
//! - [`ThrowawayPostgres`], [`ThrowawayRedis`]: servers of the test's own, for tests that stop, kill
//!   or fill a server;
//! - [`TestApp`]: a private gunicorn instance of the demo app with its own releases root;
//! - [`ComposeStack`]: `docker/docker-compose.yml` as a compose project of the test's own, on the
//!   private Docker engine `cargo xtask test` started;
//! - [`http_get`], [`http_post_json`], [`redis_command`], [`query`]: small clients to look at what the
//!   tools did.
//!
//! Everything is blocking: tests are plain `#[test]` functions; where an async client is needed the
//! testkit runs it on a runtime of its own.
//!
//! ```no_run
//! use rail_testkit::{cmd, bin, TestDb, TestRedis};
//!
//! let db = TestDb::new();
//! let redis = TestRedis::new();
//! let out = cmd(bin("healthcheck"))
//!     .args(["--check", "database", "--check", "redis"])
//!     .env("DATABASE_URL", db.url())
//!     .env("REDIS_URL", redis.url())
//!     .run();
//! out.assert_success();
//! assert!(!out.stdout.contains(db.password()));
//! ```

mod app;
mod cmd;
mod compose;
mod db;
mod dir;
mod http;
mod proc;
mod redis;
mod s3;
mod stack;
mod throwaway;

pub use app::{built_release, TestApp};
pub use cmd::{bin, cmd, filter, run, snapshot_filters, Cmd, Output, Running};
pub use compose::{ComposeStack, HEALTH_INTERVAL_SECS};
pub use db::{query, Rows, TestDb};
pub use dir::TestDir;
pub use http::{http_get, http_post_json, http_request, HttpResponse};
pub use redis::{redis_command, Reply, TestRedis};
pub use s3::{RawResponse, ThrowawayS3, ACCESS_KEY_ID, SECRET_ACCESS_KEY};
pub use stack::{workspace_root, Stack};
pub use throwaway::{ThrowawayPostgres, ThrowawayRedis};
