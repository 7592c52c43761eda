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
    let nextest = has_nextest();
    // The container tests' images: the Debian base and the stand-ins while cargo builds the tools, the
    // tools and app images (which carry this build's binaries) while cargo builds the tests. Image
    // builds mostly wait on the network and the disk, compiling is CPU.
    let started = std::time::Instant::now();
    let engine = stack::docker::engine_up(&layout)?;
    let base = {
        let (root, engine) = (root.to_owned(), engine.clone());
        std::thread::spawn(move || stack::docker::build_base_images(&root, &engine))
    };
    crate::demo::build_tools(root)?;
    let images = {
        let (root, engine) = (root.to_owned(), engine.clone());
        std::thread::spawn(move || -> Result<()> {
            base.join().map_err(|_| anyhow::anyhow!("the image build panicked"))??;
            stack::docker::build_app_images(&root, &engine, &root.join("target").join("debug"))
        })
    };
    let mut build = test_command(nextest, &args);
    build.arg("--no-run").args(build_args(&args));
    let compiled = util::run(build.current_dir(root)).context("building the tests");
    images.join().map_err(|_| anyhow::anyhow!("the image build panicked"))??;
    compiled?;
    util::stdout_line(&format!(
        "images and tests: ready in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    stack::record_engine(root, &layout, &engine)?;
    if !nextest {
        util::stdout_line("cargo-nextest is not installed: running `cargo test` instead");
    }
    let mut cmd = test_command(nextest, &args);
    if full {
        cmd.env("RAIL_TEST_FULL", "1");
    }
    cmd.args(&args).current_dir(root);
    util::stdout_line(&format!("$ {}", util::display(&cmd)));
    util::run(&mut cmd).context("tests failed")
}

/// `cargo nextest run` (or `cargo test`), over the workspace unless `args` name packages.
fn test_command(nextest: bool, args: &[String]) -> std::process::Command {
    let mut cmd = util::command(cargo());
    if nextest {
        cmd.args(["nextest", "run"]);
    } else {
        cmd.arg("test");
    }
    if !narrowed(args) {
        cmd.arg("--workspace");
    }
    cmd
}

/// `-p crate` narrows the run; with `--workspace` beside it cargo would still build everything.
fn narrowed(args: &[String]) -> bool {
    args.iter()
        .any(|a| a == "-p" || a.starts_with("--package") || (a.starts_with("-p") && a.len() > 2))
}

/// The arguments of a test run that choose what is built: the packages, the profile, cargo's own.
fn build_args(args: &[String]) -> Vec<String> {
    let mut kept = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let takes_value = arg == "-p" || arg == "--package" || arg == "--cargo-profile";
        if takes_value {
            kept.push(arg.clone());
            kept.extend(iter.next().cloned());
        } else if arg.starts_with("--package=")
            || (arg.starts_with("-p") && arg.len() > 2)
            || arg.starts_with("--cargo")
            || arg == "--release"
        {
            kept.push(arg.clone());
        }
    }
    kept
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

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| (*a).to_owned()).collect()
    }

    #[test]
    fn the_build_keeps_what_chooses_the_binaries_and_drops_the_filters() {
        let args =
            strings(&["-p", "rail-deploy", "-E", "test(/compose/)", "--release", "-prail-core"]);
        assert_eq!(build_args(&args), strings(&["-p", "rail-deploy", "--release", "-prail-core"]));
        assert!(narrowed(&args));
        let args = strings(&["--package=rail-core", "--no-capture", "--cargo-profile", "ci"]);
        assert_eq!(build_args(&args), strings(&["--package=rail-core", "--cargo-profile", "ci"]));
        assert!(narrowed(&args));
        assert!(!narrowed(&strings(&["-E", "test(/x/)"])));
    }
}
