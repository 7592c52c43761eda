//! The S3-compatible server the tests start on their own ports: moto in server mode.
//!
//! A `moto_server` on the PATH is used as it is; otherwise one is installed once per machine into a
//! venv of its own (`${XDG_CACHE_HOME:-$HOME/.cache}/rail/s3-venv-<hash of the pin>`), like the demo
//! app's. The stack records it as `RAIL_S3_SERVER`; the testkit starts one server per test.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use fs_err as fs;
use nix::sys::signal::Signal;

use crate::util;

/// The moto release the tests were written against (its `[server]` extra brings Flask).
const MOTO: &str = "moto[server]==5.2.1";
const VENV_MARKER: &str = ".rail-install-complete";

/// The `moto_server` program: on the PATH, or installed into the S3 venv.
pub(super) fn ensure(python3: &Path) -> Result<PathBuf> {
    if let Some(found) = util::which("moto_server") {
        return Ok(found);
    }
    let cache = match std::env::var_os("XDG_CACHE_HOME").filter(|v| Path::new(v).is_absolute()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".cache"),
    };
    let venv =
        cache.join("rail").join(format!("s3-venv-{}", &util::sha256_hex(MOTO.as_bytes())[..12]));
    let program = venv.join("bin").join("moto_server");
    if venv.join(VENV_MARKER).is_file() && program.is_file() {
        return Ok(program);
    }
    if venv.exists() {
        fs::remove_dir_all(&venv)?;
    }
    fs::create_dir_all(venv.parent().expect("venv has a parent"))?;
    util::stdout_line(&format!("s3: installing {MOTO} into {}", venv.display()));
    util::run_captured(util::command(python3).args(["-m", "venv"]).arg(&venv))?;
    util::run_captured(util::command(venv.join("bin").join("python")).args([
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "-q",
        MOTO,
    ]))
    .context("installing moto, the S3-compatible test server")?;
    fs::write(venv.join(VENV_MARKER), "")?;
    Ok(program)
}

/// Stops the moto server whose PID the testkit recorded in `pid_file`.
pub(super) fn stop_pid_file(pid_file: &Path) -> bool {
    util::read_pid(pid_file).is_some_and(|pid| {
        util::stop_pid(pid, "moto_server", Signal::SIGTERM, Duration::from_secs(10))
    })
}
