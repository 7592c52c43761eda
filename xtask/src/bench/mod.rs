//! `cargo xtask bench`: side-by-side timings of rail's binaries against the programs they replace.
//!
//! Each comparison runs its sides alternately, round after round (the order flips every round so that
//! drift in machine load hits both sides alike), after a few warm-up rounds, and prints the median of
//! each side and their ratio against the target. Wall time is measured around spawn and wait, as a user
//! or a container runtime sees it. Benchmarks are never timed tests: a busy machine makes them noisy, and
//! a missed target is a finding to look at, not a flaky failure.

mod backup;
mod deploy;
mod health;
mod offsite;
mod schemaver;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::util;

const USAGE: &str = "\
usage: cargo xtask bench [GROUP] [--rounds N]

groups:
  health           healthcheck vs curl, pg_isready and redis-cli (default)
  health-monitor   RSS of `healthcheck --monitor` over time [--minutes M] [--interval DUR]
  schemaver        schemaver compare vs graphql-inspector diff on the GitHub pair bbcdd330 -> 503d8f18
                   (installs @graphql-inspector/cli from npm under target/bench once) [--rounds N]
  schemaver-ops    schemaver compare --operations with 1,000 operations generated from GitHub's schema,
                   on the pair 2024-07-08 -> 2025-02-27, vs the same compare without them [--rounds N]
  backup           rollback backup / rollback rollback vs pg_dump -Fc + tar czf and single-job pg_restore
                   on about 1 GB of database and 500 MB of media, generated once under target/bench [--rounds N, default 3]
  deploy           deploy of the running release vs the same commands in a shell script, and the maintenance
                   window vs backup + migrate + restart-to-healthy + 0.5 s [--rounds N, default 5]
                   [--migration-rounds M, default 3]";

/// Options shared by the groups.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) rounds: usize,
    pub(crate) warmup: usize,
    pub(crate) minutes: f64,
    pub(crate) interval: String,
}

pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    // Rounds of minutes each, and data of its own: the backup group reads its own arguments.
    if args.first().map(String::as_str) == Some("backup") {
        return backup::run(root, &args[1..]);
    }
    if args.first().map(String::as_str) == Some("deploy") {
        return deploy::run(root, &args[1..]);
    }
    let mut opts = Options { rounds: 40, warmup: 3, minutes: 10.0, interval: "1s".into() };
    let mut group = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value =
            |name: &str| it.next().cloned().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--rounds" => {
                opts.rounds = value("--rounds")?.parse().context("--rounds takes a number")?;
            }
            "--minutes" => {
                opts.minutes = value("--minutes")?.parse().context("--minutes takes a number")?;
            }
            "--interval" => opts.interval = value("--interval")?,
            "-h" | "--help" => {
                util::stdout_line(USAGE);
                return Ok(());
            }
            other if group.is_none() && !other.starts_with('-') => group = Some(other.to_owned()),
            other => bail!("unknown argument `{other}`\n\n{USAGE}"),
        }
    }
    if opts.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    match group.as_deref().unwrap_or("health") {
        "health" => health::speed(root, &opts),
        "health-monitor" => health::monitor_rss(root, &opts),
        "schemaver" => schemaver::compare(root, &opts),
        "schemaver-ops" => schemaver::operations(root, &opts),
        other => bail!("unknown bench group `{other}`\n\n{USAGE}"),
    }
}

/// One side of a comparison: a label and the commands it runs one after another (usually one).
pub(crate) struct Side {
    pub(crate) label: String,
    pub(crate) commands: Vec<Command>,
    /// Exit codes that count as success (a diff tool exits 1 when it finds breaking changes).
    pub(crate) ok_codes: Vec<i32>,
}

impl Side {
    pub(crate) fn one(label: impl Into<String>, cmd: Command) -> Self {
        Self { label: label.into(), commands: vec![cmd], ok_codes: vec![0] }
    }

    /// Run every command, in order, and return the wall time. A command that fails makes the benchmark
    /// meaningless, so it is an error.
    fn time(&mut self) -> Result<Duration> {
        let started = Instant::now();
        for cmd in &mut self.commands {
            let status = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .with_context(|| format!("running `{}`", util::display(cmd)))?;
            if !status.code().is_some_and(|c| self.ok_codes.contains(&c)) {
                bail!("`{}` failed ({status}) during the benchmark", util::display(cmd));
            }
        }
        Ok(started.elapsed())
    }
}

/// Medians of every side after `opts.rounds` alternating rounds.
pub(crate) fn measure(sides: &mut [Side], opts: &Options) -> Result<Vec<Duration>> {
    for _ in 0..opts.warmup {
        for side in sides.iter_mut() {
            side.time()?;
        }
    }
    let mut samples: Vec<Vec<Duration>> = vec![Vec::with_capacity(opts.rounds); sides.len()];
    for round in 0..opts.rounds {
        let n = sides.len();
        for k in 0..n {
            // Rotate the starting side every round.
            let i = (k + round) % n;
            samples[i].push(sides[i].time()?);
        }
    }
    Ok(samples.into_iter().map(median).collect())
}

pub(crate) fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    let mid = v.len() / 2;
    if v.len() % 2 == 0 && mid > 0 {
        (v[mid - 1] + v[mid]) / 2
    } else {
        v[mid]
    }
}

pub(crate) fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// A comparison's verdict line: `ratio 1.03 (target <= 1.20) ok`.
pub(crate) fn verdict(ratio: f64, target: f64) -> (String, bool) {
    let ok = ratio <= target;
    (format!("ratio {ratio:.2} (target <= {target:.2}) {}", if ok { "ok" } else { "MISSED" }), ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_samples() {
        let d = Duration::from_millis;
        assert_eq!(median(vec![d(3), d(1), d(2)]), d(2));
        assert_eq!(median(vec![d(4), d(1), d(2), d(3)]), Duration::from_micros(2500));
        assert_eq!(median(vec![d(7)]), d(7));
    }
}
