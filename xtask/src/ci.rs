//! `cargo xtask ci`: what CI checks, in the order that fails fastest: formatting, lints (warnings are
//! errors), then the tests as `cargo xtask test` runs them, without stopping at the first failure, then
//! a short run of every fuzz target.
//!
//! The fuzz targets build with nightly in a workspace of their own, which takes minutes: that build
//! (and cargo-fuzz's install, where it is missing) runs at the lowest CPU priority from the start, so it
//! takes only the time the main build and the tests leave idle (linking, waits on servers and images).

use std::path::Path;
use std::time::Instant;

use anyhow::Result;

use crate::test::{self, cargo};
use crate::util;

pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let fuzz_build = crate::fuzz::nightly().then(|| {
        let root = root.to_owned();
        util::stdout_line(
            "==> cargo +nightly fuzz build: started in the background at low priority",
        );
        std::thread::spawn(move || crate::fuzz::prepare_in_background(&root))
    });
    step("cargo fmt --all --check", || {
        util::run(util::command(cargo()).args(["fmt", "--all", "--check"]).current_dir(root))
    })?;
    step("cargo clippy --workspace --all-targets -- -D warnings", || {
        util::run(
            util::command(cargo())
                .args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])
                .current_dir(root),
        )
    })?;
    let mut test_args = vec!["--no-fail-fast".to_owned()];
    test_args.extend_from_slice(args);
    let tests = step("cargo xtask test", || test::run(root, &test_args));
    // A short run of every fuzz target: new crashes in the parsers show up here; long runs are
    // `cargo xtask fuzz --time 600`.
    let fuzzing = if let Some(build) = fuzz_build {
        step("cargo xtask fuzz --time 10", || {
            let built = build.join().map_err(|_| anyhow::anyhow!("the fuzz build panicked"))?;
            util::stdout_line(&format!("    (background build: {built:.1} s)"));
            crate::fuzz::run(root, &["--time".to_owned(), "10".to_owned()])
        })
    } else {
        util::stdout_line(
            "==> cargo xtask fuzz: skipped (needs the nightly toolchain and cargo-fuzz)",
        );
        Ok(())
    };
    tests.and(fuzzing)
}

fn step(name: &str, body: impl FnOnce() -> Result<()>) -> Result<()> {
    util::stdout_line(&format!("==> {name}"));
    let started = Instant::now();
    let result = body();
    let verdict = if result.is_ok() { "ok" } else { "FAILED" };
    util::stdout_line(&format!(
        "==> {name}: {verdict} in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    result
}
