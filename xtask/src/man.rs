//! `cargo xtask man`: the man pages of the four binaries, written by each binary's own `man`
//! subcommand into `docs/man/` (generated, so not kept in git). `cargo xtask docs`: the generated
//! file kept in git (the configuration schema), then the man pages.

use std::path::Path;

use anyhow::{Context, Result};

use crate::test::cargo;
use crate::util;

const BINARIES: [&str; 4] = ["deploy", "rollback", "healthcheck", "schemaver"];

pub(crate) fn run(root: &Path, _args: &[String]) -> Result<()> {
    let mut build = util::command(cargo());
    build.args(["build", "-q"]);
    for bin in BINARIES {
        build.args(["-p", &format!("rail-{bin}")]);
    }
    util::run(build.current_dir(root)).context("building the binaries")?;
    let target = util::target_dir(root);
    let dir = root.join("docs").join("man");
    let mut pages = 0;
    for bin in BINARIES {
        let out = util::run_captured(
            util::command(target.join("debug").join(bin)).arg("man").arg("--dir").arg(&dir),
        )?;
        pages += out.lines().count();
    }
    util::stdout_line(&format!(
        "{pages} man pages in {} (man -l docs/man/deploy.1)",
        dir.display()
    ));
    Ok(())
}

/// `cargo xtask docs`: regenerate the configuration schema (kept in git, checked current by a test)
/// and the man pages (generated into docs/man/, not kept).
pub(crate) fn docs(root: &Path, _args: &[String]) -> Result<()> {
    let mut test = util::command(cargo());
    test.args([
        "test",
        "-q",
        "-p",
        "rail-core",
        "--lib",
        "config::tests::the_config_schema_file_is_current",
    ])
    .env("RAIL_WRITE_SCHEMA", "1")
    .current_dir(root);
    util::run(&mut test).context("writing the configuration schema")?;
    util::stdout_line("docs/rail-config.schema.json written");
    run(root, &[])
}
