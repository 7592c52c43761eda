//! `cargo xtask demo`: the main job end to end on the local stack, as a newcomer first sees it.
//!
//! It starts the stack's app over from release v1 and a fresh database, then runs the real binaries:
//! deploy v1, capture the schema, deploy v2 (a migration and a new GraphQL field), capture again,
//! deploy v3-broken (its migration fails half-way; the deploy rolls itself back), healthcheck, a
//! schema compare, and deploy v4 (a nullable column: online, without a maintenance window). Each command
//! is printed with its output and its time; a summary closes the run.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use fs_err as fs;

use crate::envfile::EnvFile;
use crate::stack::{self, Layout};
use crate::test::cargo;
use crate::util;

/// One command of the demo and what it should end with.
struct Step {
    title: &'static str,
    bin: &'static str,
    args: Vec<String>,
    expect: i32,
}

/// Builds the four binaries (debug), as the demo and the docker stack use them.
pub(crate) fn build_tools(root: &Path) -> Result<()> {
    util::stdout_line("== building the tools");
    let mut build = util::command(cargo());
    build.args([
        "build",
        "-q",
        "-p",
        "rail-deploy",
        "-p",
        "rail-healthcheck",
        "-p",
        "rail-schemaver",
        "-p",
        "rail-rollback",
    ]);
    util::run(build.current_dir(root)).context("building the tools")
}

pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let layout = Layout::new(root);
    let (engine, _rest) = stack::engine_arg(args)?;
    let docker = engine == stack::EngineKind::Docker;
    build_tools(root)?;

    // The backups and schema versions of an earlier demo: it starts over from v1.
    let leftovers = if docker {
        [layout.stack.join("compose-backups"), layout.stack.join("compose-schema_versions")]
    } else {
        [layout.backups.clone(), layout.stack.join("schema_versions")]
    };
    for leftover in leftovers.iter().filter(|l| l.exists()) {
        fs::remove_dir_all(leftover)?;
    }
    let env = if docker {
        util::stdout_line("== the compose stack, started over from release v1");
        let engine = stack::docker::engine_up(&layout)?;
        if stack::docker::compose_running(root, &engine) {
            stack::docker::compose_down(root, &engine)?;
        }
        stack::up_docker(root, &layout, "v1")?
    } else {
        util::stdout_line("== the local stack, started over from release v1");
        stack::forget_setup(&layout)?;
        let _ = fs::remove_file(&layout.maintenance_flag);
        let env = stack::up(&layout)?;
        for version in ["v2", "v3-broken", "v4"] {
            stack::install_release(&layout, version)?;
        }
        env
    };

    let config =
        root.join("deploy-configs").join(if docker { "compose.toml" } else { "local.toml" });
    let app_url = if docker {
        env.get("COMPOSE_APP_URL").context("COMPOSE_APP_URL missing from the stack env")?
    } else {
        env.get("APP_URL").context("APP_URL missing from the stack env")?
    }
    .to_owned();
    let graphql = format!("{app_url}/graphql/");
    let cfg = |rest: &[&str]| -> Vec<String> {
        let mut v = vec!["--config".to_owned(), config.display().to_string()];
        v.extend(rest.iter().map(|s| (*s).to_owned()));
        v
    };
    let mut steps = vec![
        Step {
            title: "deploy v1 (no pending migration)",
            bin: "deploy",
            args: cfg(&["--version", "v1", "--yes"]),
            expect: 0,
        },
        Step {
            title: "record the served GraphQL schema as 1.0.0",
            bin: "schemaver",
            args: cfg(&[
                "create",
                "--version",
                "1.0.0",
                "--description",
                "release v1",
                "--from-url",
                &graphql,
                "--activate",
            ]),
            expect: 0,
        },
        Step {
            title: "deploy v2 (migration + new GraphQL field)",
            bin: "deploy",
            args: cfg(&["--version", "v2", "--yes"]),
            expect: 0,
        },
        Step {
            title: "record the served GraphQL schema as 1.1.0",
            bin: "schemaver",
            args: cfg(&[
                "create",
                "--version",
                "1.1.0",
                "--description",
                "release v2",
                "--from-url",
                &graphql,
                "--activate",
            ]),
            expect: 0,
        },
        Step {
            title: "deploy v3-broken (its migration fails half-way: rolls back by itself)",
            bin: "deploy",
            args: cfg(&["--version", "v3-broken", "--yes"]),
            expect: 4,
        },
        // Every check but `performance`, which judges this machine's load rather than the site.
        Step {
            title: "healthcheck: the site serves v2 with v2's data",
            bin: "healthcheck",
            args: cfg(&[
                "--check",
                "database",
                "--check",
                "redis",
                "--check",
                "application",
                "--check",
                "graphql",
                "--check",
                "filesystem",
                "--check",
                "maintenance",
            ]),
            expect: 0,
        },
        Step {
            title: "schemaver compare 1.0.0 -> 1.1.0",
            bin: "schemaver",
            args: cfg(&["compare", "--from", "1.0.0", "--to", "1.1.0"]),
            expect: 0,
        },
    ];
    if !docker {
        steps.push(Step {
            title: "deploy v4 (a nullable column: online, the site never closes)",
            bin: "deploy",
            args: cfg(&["--version", "v4", "--yes"]),
            expect: 0,
        });
    }

    let mut summary = Vec::new();
    for step in &steps {
        util::stdout_line("");
        util::stdout_line(&format!("== {}", step.title));
        let bin = util::target_dir(root).join("debug").join(step.bin);
        let mut cmd = util::command(&bin);
        cmd.args(&step.args).current_dir(root);
        apply_env(&mut cmd, &env, &layout, docker);
        util::stdout_line(&format!("$ {} {}", step.bin, step.args.join(" ")));
        let started = Instant::now();
        let status = cmd.status().with_context(|| format!("running {}", bin.display()))?;
        let took = started.elapsed();
        let code = status.code().unwrap_or(-1);
        let ok = code == step.expect;
        summary.push((step.title, code, step.expect, took, ok));
        if !ok {
            print_summary(&summary);
            bail!("`{}` exited {code}, expected {}", step.bin, step.expect);
        }
    }
    let served = util::http_get(
        crate::envfile::url_port(&app_url).context("the app URL has no port")?,
        "/health/",
        Duration::from_secs(5),
    )?;
    util::stdout_line("");
    util::stdout_line(&format!(
        "== the app now answers /health/ with {}: {}",
        served.0,
        served.1.trim()
    ));
    print_summary(&summary);
    Ok(())
}

fn apply_env(cmd: &mut std::process::Command, env: &EnvFile, layout: &Layout, docker: bool) {
    for (key, value) in env.iter() {
        cmd.env(key, value);
    }
    if docker {
        // deploy-configs/compose.toml's backups and schema versions, beside the rest of the stack.
        cmd.env("RAIL_BACKUP_DIR", layout.stack.join("compose-backups"));
        cmd.env("RAIL_SCHEMA_DIR", layout.stack.join("compose-schema_versions"));
    }
    // deploy-configs/local.toml puts schemaver's dir store under it, beside the rest of the stack's state.
    cmd.env("RAIL_STACK_DIR", &layout.stack);
    // The demo's output is for reading: plain log lines.
    cmd.env("NO_COLOR", "1");
}

fn print_summary(summary: &[(&str, i32, i32, Duration, bool)]) {
    util::stdout_line("");
    util::stdout_line("== summary");
    for (title, code, expect, took, ok) in summary {
        let mark = if *ok { "ok" } else { "UNEXPECTED" };
        util::stdout_line(&format!(
            "  {:>7.2}s  exit {code} (expected {expect}) {mark:10}  {title}",
            took.as_secs_f64()
        ));
    }
}
