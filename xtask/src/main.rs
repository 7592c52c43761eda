//! Project automation, run as `cargo xtask <command>` from anywhere in the workspace.
//!
//! Commands: `stack up|down|status` (the local stack of native PostgreSQL, Redis and the demo app),
//! `test` (the stack, then the whole workspace's tests), `ci` (format and lint checks, then `test`) and
//! `bench` (timings of the binaries against the programs they replace).
//! Each command lives in a module of its own; xtask changes to the workspace root first, so paths in
//! the commands are relative to it.

// xtask is a terminal tool: printing is its job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod ci;
mod demo;
mod dist;
#[cfg(test)]
mod docs_drift;
mod envfile;
mod fuzz;
mod man;
mod stack;
mod test;
#[cfg(test)]
mod tidy;
mod util;

use std::process::ExitCode;

use anyhow::{bail, Context, Result};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  demo [--engine docker]  the main job on the local stack: deploy v1, v2, v3-broken (rolls back), healthcheck, schemaver, v4 online
                 (with --engine docker: the same against docker/docker-compose.yml, through nginx; no v4)
  stack up [--engine docker]  start PostgreSQL, Redis and the demo app under target/stack/ (idempotent);
                 with --engine docker: a private dockerd, the images, and docker/docker-compose.yml
  stack down     stop everything the stack and the tests started there
  stack status   say what runs
  test [--full] [ARGS]  bring the stack and the Docker engine up, then run the workspace's tests (ARGS go to nextest / cargo test);
                 --full: every kill drill of every scenario (native, online, containers)
  ci [ARGS]      cargo fmt --check, cargo clippy -D warnings, then `test`
  bench [GROUP]  side-by-side timings against the programs rail replaces (`bench --help`)
  man            write the four binaries' man pages into docs/man/
  docs           regenerate docs/rail-config.schema.json (kept in git) and the man pages
  dist           the release tarball in target/dist/: binaries, completions, man pages, licences, SHA256SUMS
  fuzz [TARGET] [--time S]  run the cargo-fuzz targets (nightly) for S seconds each (default 60)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<()> {
    let root = util::project_root();
    std::env::set_current_dir(&root).with_context(|| format!("changing to {}", root.display()))?;
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("stack") => stack::run(&root, rest),
        Some("bench") => bench::run(&root, rest),
        Some("test") => test::run(&root, rest),
        Some("demo") => demo::run(&root, rest),
        Some("ci") => ci::run(&root, rest),
        Some("man") => man::run(&root, rest),
        Some("docs") => man::docs(&root, rest),
        Some("dist") => dist::run(&root, rest),
        Some("fuzz") => fuzz::run(&root, rest),
        Some("help" | "-h" | "--help") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown command `{other}`\n\n{USAGE}"),
    }
}
