//! The `deploy` command line. Plain data; `lib.rs` resolves it into a plan.

use clap::{Parser, Subcommand};
use rail_core::cli::{ConfigArgs, LogArgs, OutputFormat, Shell};

/// Run a deploy as a locked, journaled, resumable pipeline that rolls back by itself on failure.
///
/// Steps: pre-checks, maintenance on, backup (+ verify), migrations, collectstatic, cache clear,
/// restart services with the new app version, health-gated post-checks, maintenance off,
/// schema version activation, notifications.
#[derive(Debug, Parser)]
// `--version` takes the app version to deploy (as the older tool's users expect), so rail's own
// version is printed by `-V` alone.
#[command(name = "deploy", version = rail_core::VERSION, disable_version_flag = true)]
#[command(after_help = "Examples:
  deploy --environment staging --version v2
  deploy --config deployment-production.json --dry-run
  deploy --resume
  deploy maintenance status
  deploy history --format json")]
pub struct Cli {
    #[command(flatten)]
    pub config: ConfigArgs,

    #[command(flatten)]
    pub log: LogArgs,

    /// Output format of the result on stdout
    #[arg(long, global = true, value_enum, default_value_t)]
    pub format: OutputFormat,

    /// Print rail's version
    #[arg(short = 'V', action = clap::ArgAction::Version)]
    pub print_version: (),

    #[command(flatten)]
    pub run: RunArgs,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Options of a deploy run.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RunArgs {
    /// App version to deploy (image tag, release name or git sha)
    #[arg(long = "version", value_name = "APP_VERSION")]
    pub app_version: Option<String>,

    /// Skip the backup (refused in production unless --yes)
    #[arg(long)]
    pub no_backup: bool,

    /// Migrate to this migration instead of the latest: APP:MIGRATION (manage.py migrate APP MIGRATION)
    #[arg(long, value_name = "APP:MIGRATION")]
    pub migrate_to: Option<String>,

    /// Do not roll back automatically when a step fails
    #[arg(long)]
    pub no_rollback: bool,

    /// How to meet the running site, instead of deploy.strategy: auto, online or maintenance
    #[arg(long, value_name = "STRATEGY", value_parser = parse_strategy)]
    pub strategy: Option<rail_core::config::DeployStrategy>,

    /// Print the plan computed against the live system and change nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Finish (or undo) a deploy that died part-way
    #[arg(long)]
    pub resume: bool,

    /// Wait this long for another deploy or rollback to finish instead of refusing at once (e.g. 30s)
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub lock_wait: Option<std::time::Duration>,

    /// Answer yes to confirmations (needed without a terminal)
    #[arg(long, short = 'y')]
    pub yes: bool,
}

impl RunArgs {
    /// The first deploy-run option given, for refusing it next to a subcommand.
    pub(crate) fn given_flag(&self) -> Option<&'static str> {
        [
            (self.app_version.is_some(), "--version"),
            (self.no_backup, "--no-backup"),
            (self.migrate_to.is_some(), "--migrate-to"),
            (self.no_rollback, "--no-rollback"),
            (self.strategy.is_some(), "--strategy"),
            (self.dry_run, "--dry-run"),
            (self.resume, "--resume"),
            (self.lock_wait.is_some(), "--lock-wait"),
            (self.yes, "--yes"),
        ]
        .into_iter()
        .find_map(|(given, flag)| given.then_some(flag))
    }
}

fn parse_strategy(raw: &str) -> Result<rail_core::config::DeployStrategy, String> {
    use rail_core::config::DeployStrategy;
    match raw {
        "auto" => Ok(DeployStrategy::Auto),
        "online" => Ok(DeployStrategy::Online),
        "maintenance" => Ok(DeployStrategy::Maintenance),
        other => Err(format!("`{other}` is not a strategy: use auto, online or maintenance")),
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the lock holder, the last run and any interrupted run
    Status,
    /// Show finished deploys and rollbacks from the audit log
    History {
        /// Show only the last N runs
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },
    /// Drive maintenance mode by hand
    Maintenance {
        #[command(subcommand)]
        action: MaintenanceAction,
    },
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

#[derive(Debug, Clone, Subcommand)]
pub enum MaintenanceAction {
    /// Put the app into maintenance (flag file and Redis key, both with an expiry)
    On {
        /// Why, shown in status and to monitoring
        #[arg(long, default_value = "manual")]
        reason: String,
        /// How long before maintenance expires by itself (e.g. 30m)
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        ttl: Option<std::time::Duration>,
        /// Change maintenance even while a deploy or rollback runs (it owns maintenance until it ends)
        #[arg(long)]
        force: bool,
    },
    /// Take the app out of maintenance
    Off {
        /// Switch maintenance off even while a deploy or rollback runs: its window would be cut open
        #[arg(long)]
        force: bool,
    },
    /// Show whether maintenance is on, since when, by which run, and whether it is stale
    Status,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
