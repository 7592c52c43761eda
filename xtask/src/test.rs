//! `cargo xtask test`: brings the stack up if needed, then runs every test of the workspace.
//!
//! nextest runs each test in its own process, which suits tests that start servers; plain `cargo test`
//! is the fallback on machines without it. Extra arguments are passed through.

use std::ffi::OsString;
use std::path::Path;

use anyhow::{Context, Result};

use crate::stack;
use crate::util;

pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    stack::up(&stack::Layout::new(root))?;
    let mut cmd = util::command(cargo());
    if has_nextest() {
        cmd.args(["nextest", "run"]);
    } else {
        util::stdout_line("cargo-nextest is not installed: running `cargo test` instead");
        cmd.arg("test");
    }
    // `-p crate` narrows the run; with `--workspace` beside it cargo would still build everything.
    if !args
        .iter()
        .any(|a| a == "-p" || a.starts_with("--package") || (a.starts_with("-p") && a.len() > 2))
    {
        cmd.arg("--workspace");
    }
    cmd.args(args).current_dir(root);
    util::stdout_line(&format!("$ {}", util::display(&cmd)));
    util::run(&mut cmd).context("tests failed")
}

/// The cargo that runs xtask (cargo sets CARGO for the programs it runs).
pub(crate) fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

fn has_nextest() -> bool {
    util::command(cargo())
        .args(["nextest", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
