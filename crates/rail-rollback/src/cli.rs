//! The `rollback` command line. Plain data; `lib.rs` resolves it into a plan.

use clap::{Parser, Subcommand, ValueEnum};
use rail_core::cli::{ConfigArgs, LogArgs, OutputFormat, Shell};

/// List, verify, create and restore backup sets (database, static, media, GraphQL schema version, app version).
#[derive(Debug, Parser)]
#[command(name = "rollback", version = rail_core::VERSION)]
#[command(after_help = "Examples:
  rollback list --detailed --recent 7
  rollback verify backup_20240115_143022 --level structure
  rollback rollback backup_20240115_143022 --yes
  rollback rollback --previous --confirm
  rollback backup --name before-hotfix
  rollback prune --dry-run
  rollback list --remote
  rollback push backup_20240115_143022
  rollback rollback --previous --remote --yes")]
pub struct Cli {
    #[command(flatten)]
    pub config: ConfigArgs,

    #[command(flatten)]
    pub log: LogArgs,

    /// Output format of the result on stdout
    #[arg(long, global = true, value_enum, default_value_t)]
    pub format: OutputFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List backup sets, newest first (incomplete and legacy ones are marked)
    List {
        /// Show components, sizes, versions and checksums
        #[arg(long)]
        detailed: bool,
        /// Only sets from the last DAYS days
        #[arg(long, value_name = "DAYS")]
        recent: Option<u32>,
        /// List the sets of the remote (backup.remote) instead of the local ones
        #[arg(long)]
        remote: bool,
    },
    /// Restore a backup set
    Rollback(RollbackArgs),
    /// Verify a backup set (the newest one when NAME is omitted); exit 3 when it fails
    Verify {
        /// Backup set name
        name: Option<String>,
        /// How deep to verify
        #[arg(long, value_enum, default_value_t)]
        level: VerifyLevel,
        /// Trust plain-SQL dumps of the older tools, which carry no authentication
        #[arg(long)]
        allow_legacy: bool,
        /// Verify the remote copy: download every file, decrypt it and check it against the
        /// authenticated manifest, writing nothing
        #[arg(long, requires = "name")]
        remote: bool,
    },
    /// Upload a local set to the remote (backup.remote), then apply the remote retention
    Push {
        /// Backup set name (default: the newest complete local set)
        name: Option<String>,
    },
    /// Download a remote set into the local backup directory, checking every file (resumable)
    Pull {
        /// Backup set name (default: the newest complete remote set)
        name: Option<String>,
        /// Download a set whose authentication fails. Loudly
        #[arg(long)]
        emergency: bool,
    },
    /// Take a backup set now
    Backup {
        /// Name of the set (default: backup_YYYYMMDD_HHMMSS)
        #[arg(long)]
        name: Option<String>,
        /// App version to record in the set (default: what the service backend reports)
        #[arg(long, value_name = "VERSION")]
        app_version: Option<String>,
        /// Wait this long for another deploy or rollback to finish instead of refusing at once (e.g. 30s)
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        lock_wait: Option<std::time::Duration>,
    },
    /// Remove sets beyond the retention policy and incomplete leftovers
    Prune {
        /// Show what would be removed and remove nothing
        #[arg(long)]
        dry_run: bool,
        /// Apply backup.remote.keep_last / max_age_days to the remote instead of the local directory
        #[arg(long)]
        remote: bool,
    },
    /// Create a backup key: the key that authenticates every set rail writes (printed: its id only)
    ///
    /// Keep the key off the backup disk and somewhere you will still have it after losing this host:
    /// without it, sets can only be restored with --emergency.
    Keygen {
        /// File to create, mode 0600 (default: backup.key_file)
        #[arg(long, short = 'o', value_name = "PATH")]
        output: Option<std::path::PathBuf>,
        /// Replace an existing key file (sets signed with it then need it in backup.previous_key_files)
        #[arg(long)]
        force: bool,
        /// Create an age identity for encrypting remote backups instead (default path:
        /// backup.remote.identity_file); its recipient (public key) is printed
        #[arg(long)]
        age: bool,
    },
    /// Show finished deploys and rollbacks from the audit log
    History {
        /// Show only the last N runs
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
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

/// Options of `rollback rollback`.
#[derive(Debug, Clone, clap::Args)]
pub struct RollbackArgs {
    /// Backup set to restore
    #[arg(required_unless_present = "previous", conflicts_with = "previous")]
    pub name: Option<String>,

    /// Go back to the previous version: the newest verified set of another app version than the one
    /// running (the newest set if there is none), or finish or undo an interrupted run
    #[arg(long)]
    pub previous: bool,

    /// With --previous: the newest set of the remote (backup.remote), downloaded first. A NAME that is
    /// not in the local directory is always looked for in the remote
    #[arg(long)]
    pub remote: bool,

    /// Ask for confirmation on the terminal
    #[arg(long)]
    pub confirm: bool,

    /// Answer yes to confirmations (needed without a terminal)
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// Skip the safety checks: restore a set that fails verification or authentication, is older than
    /// max_rollback_age_days, or restore as a superuser. Loudly
    #[arg(long)]
    pub emergency: bool,

    /// Restore a plain-SQL dump of the older tools, which carries no authentication
    #[arg(long)]
    pub allow_legacy: bool,

    /// How to restore the database
    #[arg(long, value_enum)]
    pub strategy: Option<Strategy>,

    /// Restore only these components
    #[arg(long, value_enum, value_delimiter = ',', value_name = "LIST")]
    pub components: Vec<Component>,

    /// Wait this long for another deploy or rollback to finish instead of refusing at once (e.g. 30s)
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub lock_wait: Option<std::time::Duration>,
}

/// Verification depth.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum VerifyLevel {
    /// Re-hash every component against the manifest
    #[default]
    Checksums,
    /// Checksums, plus pg_restore --list and reading every archive entry
    Structure,
    /// Structure, plus a restore into a scratch database that is dropped afterwards
    RestoreTest,
}

/// Database restore strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Strategy {
    /// Restore into a new database, then swap names (the old one is kept)
    Swap,
    /// Drop the backed-up objects and restore in one transaction (no CREATEDB needed)
    InPlace,
}

/// A component of a backup set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Component {
    Db,
    Static,
    Media,
    Schema,
    App,
}

impl From<VerifyLevel> for rail_core::config::VerifyLevel {
    fn from(level: VerifyLevel) -> Self {
        match level {
            VerifyLevel::Checksums => Self::Checksums,
            VerifyLevel::Structure => Self::Structure,
            VerifyLevel::RestoreTest => Self::RestoreTest,
        }
    }
}

impl From<Strategy> for rail_core::config::RestoreStrategy {
    fn from(strategy: Strategy) -> Self {
        match strategy {
            Strategy::Swap => Self::Swap,
            Strategy::InPlace => Self::InPlace,
        }
    }
}

/// The components to restore: all when the list is empty.
pub(crate) fn components(list: &[Component]) -> rail_core::restore::Components {
    if list.is_empty() {
        return rail_core::restore::Components::default();
    }
    rail_core::restore::Components {
        database: list.contains(&Component::Db),
        static_files: list.contains(&Component::Static),
        media: list.contains(&Component::Media),
        schema: list.contains(&Component::Schema),
        app: list.contains(&Component::App),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
