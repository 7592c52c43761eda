//! The S3-compatible server the tests start on their own ports: moto in server mode.
//!
//! A `moto_server` on the PATH is used as it is; otherwise one is installed once per machine into a
//! venv of its own (`${XDG_CACHE_HOME:-$HOME/.cache}/rail/s3-venv-<hash of the pin>`), like the demo
//! app's. The stack records it as `RAIL_S3_SERVER`; the testkit starts one server per test.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use nix::sys::signal::Signal;

use crate::util;

/// The moto release the tests were written against (its `[server]` extra brings Flask).
const MOTO: &str = "moto[server]==5.2.1";

/// The `moto_server` program: on the PATH, or installed into the S3 venv.
pub(super) fn ensure() -> Result<PathBuf> {
    match util::which("moto_server") {
        Some(found) => Ok(found),
        None => util::pip_tool("s3", MOTO, "moto_server"),
    }
}

/// Stops the moto server whose PID the testkit recorded in `pid_file`.
pub(super) fn stop_pid_file(pid_file: &Path) -> bool {
    util::read_pid(pid_file).is_some_and(|pid| {
        util::stop_pid(pid, "moto_server", Signal::SIGTERM, Duration::from_secs(10))
    })
}
