//! `cargo xtask test [--full]`: brings the stack up if needed (the native stack, and the private Docker
//! engine with the images the container tests use), then runs every test of the workspace.
//!
//! nextest runs each test in its own process, which suits tests that start servers; plain `cargo test`
//! is the fallback on machines without it. Extra arguments are passed through. `--full` sets
//! `RAIL_TEST_FULL=1`: the kill drills then run every step boundary of every scenario (the online
//! deploy and the containers too), where the default run takes a subset that still covers every step.

use std::ffi::OsString;
use std::path::Path;

use anyhow::{Context, Result};

use crate::stack;
use crate::util;

pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let full = args.iter().any(|a| a == "--full");
    let args: Vec<String> = args.iter().filter(|a| *a != "--full").cloned().collect();
    let layout = stack::Layout::new(root);
    stack::up(&layout)?;
    // The container tests' images carry the binaries of this build.
    crate::demo::build_tools(root)?;
    stack::up_engine(root, &layout, &root.join("target").join("debug"))?;
    let mut cmd = util::command(cargo());
    if full {
        cmd.env("RAIL_TEST_FULL", "1");
    }
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
    cmd.args(&args).current_dir(root);
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
