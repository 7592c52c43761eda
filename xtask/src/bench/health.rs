//! `cargo xtask bench health`: `healthcheck` against the one-liners it replaces, on the local stack.
//!
//! - `healthcheck --check application` against `curl -fsS $HEALTH_URL` (target: at most 1.2×);
//! - every check at once against the slowest single check run alone (at most 1.2×: they run
//!   concurrently) and against `pg_isready`, `redis-cli ping` and `curl` of the app and of the GraphQL
//!   endpoint run one after another (at most 0.5×).
//!
//! `cargo xtask bench health-monitor` watches the resident memory of `healthcheck --monitor` over time.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{measure, ms, verdict, Options, Side};
use crate::envfile::EnvFile;
use crate::{stack, test, util};

/// The stack's variables `healthcheck` reads.
const PASSED_VARS: &[&str] = &[
    "DATABASE_URL",
    "REDIS_URL",
    "APP_URL",
    "GRAPHQL_URL",
    "STATIC_ROOT",
    "MEDIA_ROOT",
    "RAIL_MAINTENANCE_FILE",
    "RAIL_MAINTENANCE_KEY",
    "RAIL_BACKUP_DIR",
];

const CHECKS: &[&str] =
    &["database", "redis", "application", "graphql", "filesystem", "performance", "maintenance"];

struct Bench {
    binary: PathBuf,
    env: EnvFile,
    cwd: PathBuf,
}

impl Bench {
    fn prepare(root: &Path) -> Result<Self> {
        let env = stack::up(&stack::Layout::new(root))?;
        util::stdout_line("building healthcheck (release)");
        util::run(
            util::command(test::cargo())
                .args(["build", "--release", "-p", "rail-healthcheck"])
                .current_dir(root),
        )?;
        let target = util::target_dir(root);
        let binary = target.join("release").join("healthcheck");
        if !binary.is_file() {
            bail!("{} was not built", binary.display());
        }
        // Away from the workspace, so deploy-configs/ and .env files there are not read: the environment
        // alone configures it, as in a container.
        let cwd = stack::Layout::new(root).scratch.join("bench-health");
        fs_err::create_dir_all(&cwd)?;
        Ok(Self { binary, env, cwd })
    }

    fn var(&self, key: &str) -> Result<String> {
        self.env
            .get(key)
            .map(str::to_owned)
            .with_context(|| format!("{key} is missing from target/stack/env"))
    }

    fn healthcheck(&self, args: &[&str]) -> Command {
        let mut cmd = util::command(&self.binary);
        cmd.args(args).env_clear().current_dir(&self.cwd);
        for key in ["PATH", "HOME"] {
            if let Some(v) = std::env::var_os(key) {
                cmd.env(key, v);
            }
        }
        for key in PASSED_VARS {
            if let Some(v) = self.env.get(key) {
                cmd.env(key, v);
            }
        }
        // The timings are the point; a busy machine must not turn the performance check critical.
        cmd.env("RAIL_HEALTH__PERFORMANCE__LOAD_CRITICAL", "1000")
            .env("RAIL_HEALTH__PERFORMANCE__LOAD_WARNING", "1000");
        cmd
    }
}

fn curl(args: &[&str]) -> Command {
    let mut cmd = util::command("curl");
    cmd.args(["-fsS", "-o", "/dev/null"]).args(args);
    cmd
}

pub(crate) fn speed(root: &Path, opts: &Options) -> Result<()> {
    let bench = Bench::prepare(root)?;
    let health_url = bench.var("HEALTH_URL")?;
    let graphql_url = bench.var("GRAPHQL_URL")?;
    let redis_url = bench.var("REDIS_URL")?;
    let pg_bindir = bench.var("PG_BINDIR")?;
    let pg_port = bench.var("PGPORT")?;
    let pg_db = bench.var("PGDATABASE")?;
    for program in ["curl", "redis-cli"] {
        if util::which(program).is_none() {
            bail!("`{program}` is not installed; the benchmark compares against it");
        }
    }
    // Sanity: every side works before anything is timed.
    let sanity = bench.healthcheck(&[]).output().context("running healthcheck")?;
    if !sanity.status.success() {
        bail!("healthcheck fails on the stack:\n{}", String::from_utf8_lossy(&sanity.stdout));
    }
    let mut failed = Vec::new();

    util::stdout_line(&format!(
        "\n1. one check: healthcheck --check application vs curl -fsS {health_url}"
    ));
    util::stdout_line(&format!(
        "   {} rounds, alternating, after {} warm-up rounds",
        opts.rounds, opts.warmup
    ));
    let mut sides = vec![
        Side::one(
            "healthcheck --check application",
            bench.healthcheck(&["--check", "application"]),
        ),
        Side::one("curl -fsS $HEALTH_URL", curl(&[&health_url])),
    ];
    let medians = measure(&mut sides, opts)?;
    for (side, m) in sides.iter().zip(&medians) {
        util::stdout_line(&format!("   {:<42} median {:>10}", side.label, ms(*m)));
    }
    let (line, ok) = verdict(medians[0].as_secs_f64() / medians[1].as_secs_f64(), 1.2);
    util::stdout_line(&format!("   {line}"));
    if !ok {
        failed.push("healthcheck --check application vs curl");
    }

    util::stdout_line("\n2. all checks at once vs each check alone vs the one-liners in sequence");
    util::stdout_line(&format!(
        "   {} rounds, rotating order, after {} warm-up rounds",
        opts.rounds, opts.warmup
    ));
    let mut sides = vec![Side::one("healthcheck (all 7 checks)", bench.healthcheck(&[]))];
    for check in CHECKS {
        sides.push(Side::one(
            format!("healthcheck --check {check}"),
            bench.healthcheck(&["--check", check]),
        ));
    }
    let mut pg_isready = util::command(Path::new(&pg_bindir).join("pg_isready"));
    pg_isready.args(["-h", "127.0.0.1", "-p", &pg_port, "-d", &pg_db]);
    let mut redis_cli = util::command("redis-cli");
    redis_cli.args(["-u", &redis_url, "ping"]);
    let query = r#"{"query":"{ __typename }"}"#;
    sides.push(Side {
        label: "pg_isready; redis-cli ping; curl app; curl graphql".into(),
        commands: vec![
            pg_isready,
            redis_cli,
            curl(&[&health_url]),
            curl(&["-H", "Content-Type: application/json", "--data", query, &graphql_url]),
        ],
        ok_codes: vec![0],
    });
    let medians = measure(&mut sides, opts)?;
    for (side, m) in sides.iter().zip(&medians) {
        util::stdout_line(&format!("   {:<52} median {:>10}", side.label, ms(*m)));
    }
    let all = medians[0].as_secs_f64();
    // `performance` alone runs the other probes to weigh their latencies, so it is "all" under another
    // name; the target is measured against the slowest check that does one thing.
    let (slowest_index, slowest) = medians[1..=CHECKS.len()]
        .iter()
        .enumerate()
        .filter(|(i, _)| CHECKS[*i] != "performance")
        .max_by_key(|(_, m)| **m)
        .map(|(i, m)| (i, m.as_secs_f64()))
        .expect("there are checks");
    let sequence = medians[CHECKS.len() + 1].as_secs_f64();
    util::stdout_line(&format!("   all vs the slowest single check ({}):", CHECKS[slowest_index]));
    let (line, ok) = verdict(all / slowest, 1.2);
    util::stdout_line(&format!("   {line}"));
    if !ok {
        failed.push("all checks vs the slowest single check");
    }
    util::stdout_line("   all vs the one-liners in sequence:");
    let (line, ok) = verdict(all / sequence, 0.5);
    util::stdout_line(&format!("   {line}"));
    if !ok {
        failed.push("all checks vs the one-liners in sequence");
    }

    if failed.is_empty() {
        Ok(())
    } else {
        bail!(
            "targets missed: {} (a busy machine skews timings: rerun before concluding)",
            failed.join(", ")
        )
    }
}

/// Resident set size of `pid` in KiB, from /proc.
fn rss_kib(pid: i32) -> Option<u64> {
    let status = fs_err::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")?.split_whitespace().next()?.parse().ok())
}

pub(crate) fn monitor_rss(root: &Path, opts: &Options) -> Result<()> {
    let bench = Bench::prepare(root)?;
    let total = Duration::from_secs_f64(opts.minutes * 60.0);
    // The first tenth of the run (at most a minute) is warm-up: allocator arenas and lazy statics settle.
    let warmup = (total / 10).min(Duration::from_secs(60));
    let sample_every = Duration::from_secs(5).min(total / 20).max(Duration::from_millis(200));
    let mut child = bench
        .healthcheck(&["--monitor", "--interval", &opts.interval])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting healthcheck --monitor")?;
    let pid = i32::try_from(child.id()).context("pid")?;
    util::stdout_line(&format!(
        "healthcheck --monitor --interval {} (pid {pid}) for {}; RSS sampled every {:?}, warm-up {:?}",
        opts.interval,
        humantime_like(total),
        sample_every,
        warmup
    ));
    let started = Instant::now();
    let mut after_warmup: Vec<u64> = Vec::new();
    let mut first = None;
    let mut last_print = Duration::ZERO;
    let result = loop {
        std::thread::sleep(sample_every);
        let elapsed = started.elapsed();
        if let Ok(Some(status)) = child.try_wait() {
            break Err(anyhow::anyhow!("healthcheck --monitor exited early: {status}"));
        }
        let Some(rss) = rss_kib(pid) else {
            break Err(anyhow::anyhow!("cannot read the RSS of pid {pid}"));
        };
        first.get_or_insert(rss);
        if elapsed >= warmup {
            after_warmup.push(rss);
        }
        if elapsed.saturating_sub(last_print) >= Duration::from_secs(60) || elapsed >= total {
            last_print = elapsed;
            util::stdout_line(&format!(
                "  t={:>5.0}s  rss={:.2} MiB",
                elapsed.as_secs_f64(),
                rss as f64 / 1024.0
            ));
        }
        if elapsed >= total {
            break Ok(());
        }
    };
    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    let _ = child.wait();
    result?;
    let (Some(min), Some(max)) = (after_warmup.iter().min(), after_warmup.iter().max()) else {
        bail!("no samples after the warm-up");
    };
    let spread = max - min;
    util::stdout_line(&format!(
        "first sample {:.2} MiB; after warm-up: min {:.2} MiB, max {:.2} MiB, last {:.2} MiB, spread {} KiB over {} samples",
        first.unwrap_or_default() as f64 / 1024.0,
        *min as f64 / 1024.0,
        *max as f64 / 1024.0,
        after_warmup.last().copied().unwrap_or_default() as f64 / 1024.0,
        spread,
        after_warmup.len()
    ));
    let (line, ok) = (format!("spread {spread} KiB (target <= 1024 KiB)"), spread <= 1024);
    util::stdout_line(&format!("{line} {}", if ok { "ok" } else { "MISSED" }));
    if ok {
        Ok(())
    } else {
        bail!("the RSS of healthcheck --monitor grew by {spread} KiB after the warm-up")
    }
}

fn humantime_like(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 && s % 60 == 0 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}
