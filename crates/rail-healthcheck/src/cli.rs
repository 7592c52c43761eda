//! The `healthcheck` command line. Plain data; `lib.rs` resolves it into a plan.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use rail_core::cli::{ConfigArgs, LogArgs, Shell};

/// Check the database, Redis, the app, its GraphQL endpoint, the filesystem and latency, concurrently.
///
/// Exit 0 when nothing is critical, 1 otherwise (Docker's HEALTHCHECK contract), 2 on a usage or
/// configuration error. With --nagios: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
/// The environment alone (DATABASE_URL, REDIS_URL, APP_URL, GRAPHQL_URL) is enough configuration.
#[derive(Debug, Parser)]
#[command(name = "healthcheck", version = rail_core::VERSION, args_conflicts_with_subcommands = true)]
#[command(after_help = "Examples:
  healthcheck
  healthcheck --check database --check redis --format json
  healthcheck --format prometheus --export-metrics /var/lib/node_exporter/rail.prom
  healthcheck --monitor --interval 30s --alert-on-failure
  HEALTHCHECK CMD [\"healthcheck\", \"--check\", \"application\", \"--timeout\", \"2s\"]")]
pub struct Cli {
    #[command(flatten)]
    pub config: ConfigArgs,

    #[command(flatten)]
    pub log: LogArgs,

    /// Run only this check (repeatable): database, redis, application, graphql, filesystem, performance, maintenance, backups (only when named)
    #[arg(long = "check", value_name = "NAME")]
    pub checks: Vec<String>,

    /// Output format
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,

    /// Timeout of each check (overrides the configured ones), e.g. 2s or 500ms; a bare number is seconds
    #[arg(long, value_name = "DURATION", value_parser = parse_interval)]
    pub timeout: Option<Duration>,

    /// Run the checks repeatedly until stopped (SIGINT/SIGTERM), printing a line per state change only
    /// (NDJSON events with --format json); exports and pushes happen on every run
    #[arg(long)]
    pub monitor: bool,

    /// Interval between runs with --monitor (e.g. 30s; a bare number is seconds)
    #[arg(long, value_name = "DURATION", value_parser = parse_interval, default_value = "30s")]
    pub interval: Duration,

    /// Send a health alert through the configured notifications when a check goes critical (and, with
    /// --monitor, when it recovers)
    #[arg(long)]
    pub alert_on_failure: bool,

    /// Write the results to FILE atomically: Prometheus text for node_exporter's textfile collector, or
    /// the JSON report when FILE ends in .json
    #[arg(long, value_name = "FILE")]
    pub export_metrics: Option<PathBuf>,

    /// Push the results to a Prometheus Pushgateway at URL
    #[arg(long, value_name = "URL")]
    pub prometheus_endpoint: Option<String>,

    /// Nagios plugin exit codes: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN
    #[arg(long)]
    pub nagios: bool,

    /// Run every check (accepted for compatibility; all configured checks run by default)
    #[arg(long, hide = true)]
    pub comprehensive: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Output format of the results.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Json,
    Prometheus,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write the man pages of this command and its subcommands into a directory
    Man {
        /// Where the pages go (created when missing)
        #[arg(long, value_name = "DIR", default_value = "docs/man")]
        dir: std::path::PathBuf,
    },
    /// Print shell completions
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
}

/// `--interval` and `--timeout` take a duration (`30s`, `1m`) or, as the older tool did, a bare number of
/// seconds.
fn parse_interval(raw: &str) -> Result<Duration, String> {
    if let Ok(secs) = raw.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(raw).map_err(|e| format!("`{raw}` is not a duration: {e}"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
