//! The shared library behind the four rail tools (`deploy`, `rollback`, `healthcheck`, `schemaver`).
//!
//! Everything that touches the outside world lives here, one module per concern, so the binaries stay
//! thin: they parse a command line, build a plan with this crate, and render its outcome.

/// The version `-V` prints: the crate version, the commit built from and the build date.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("RAIL_GIT_COMMIT"),
    ", built ",
    env!("RAIL_BUILD_DATE"),
    ")"
);

pub mod archive;
pub mod backup;
pub mod cli;
pub mod config;
pub mod db;
pub mod exit;
pub mod health;
pub mod journal;
pub mod lock;
pub mod maintenance;
pub mod notify;
pub mod output;
pub mod process;
pub mod progress;
pub mod redis;
pub mod remote;
pub mod restore;
pub mod schema_store;
pub mod secret;
pub mod service;
pub mod store;
