//! The `schemaver` command line. Plain data; `lib.rs` resolves it into a plan.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use rail_core::cli::{ConfigArgs, LogArgs, OutputFormat, Shell};

/// Keep versions of the GraphQL schema and diff them, classifying every change as breaking,
/// dangerous or safe.
///
/// Exit codes: 0 no failing change, 1 failing changes found (or the operation failed),
/// 2 invalid or unreadable schema, usage or configuration error, 3 refused.
#[derive(Debug, Parser)]
#[command(name = "schemaver", version = rail_core::VERSION)]
#[command(after_help = "Examples:
  schemaver create --version 1.2.0 --description \"Added uploads\" --from-url http://127.0.0.1:8000/graphql/ --activate
  schemaver compare old.graphql new.graphql --format markdown
  schemaver compare --from 1.1.0 --to 1.2.0 --fail-on dangerous
  schemaver check --schema schema.graphql --against active
  schemaver check --schema schema.graphql --operations src/ --consider-usage --format github
  schemaver compare old.graphql new.graphql --operations src/ persisted.json --format sarif > schema.sarif
  schemaver compare old.graphql new.graphql --allow-invalid
  schemaver validate schema.graphql introspection.json --format json
  schemaver create --version 1.3.0 --schema schema.graphql --format json
  schemaver list --active-only --format json")]
pub struct Cli {
    #[command(flatten)]
    pub config: ConfigArgs,

    #[command(flatten)]
    pub log: LogArgs,

    #[command(flatten)]
    pub store: StoreArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Environment variable choosing the store kind.
pub const ENV_SCHEMA_STORE: &str = "RAIL_SCHEMA_STORE";
/// Environment variable naming the directory store's directory.
pub const ENV_SCHEMA_DIR: &str = "RAIL_SCHEMA_DIR";
/// Environment variable with the PostgreSQL URL (postgres store, import-legacy).
pub const ENV_DATABASE_URL: &str = "DATABASE_URL";
/// Environment variable with the app's GraphQL endpoint, the default for capturing its schema.
pub const ENV_GRAPHQL_URL: &str = "GRAPHQL_URL";

/// Where schema versions are kept.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StoreArgs {
    /// Store kind: a directory (no database needed) or PostgreSQL (DATABASE_URL)
    #[arg(long, global = true, value_enum, env = ENV_SCHEMA_STORE, value_name = "KIND")]
    pub store: Option<StoreKind>,

    /// Directory of the dir store [default: ./schema_versions]
    #[arg(long, global = true, env = ENV_SCHEMA_DIR, value_name = "DIR")]
    pub schema_dir: Option<PathBuf>,

    /// PostgreSQL URL for the postgres store and import-legacy
    #[arg(long, global = true, env = ENV_DATABASE_URL, hide_env_values = true, value_name = "URL")]
    pub database_url: Option<String>,
}

/// Which schema store to use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    #[default]
    Dir,
    Postgres,
}

/// Where a schema comes from: a file (SDL or introspection JSON; `-` is stdin) or a running endpoint.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SchemaSource {
    /// Schema file: SDL (.graphql) or introspection JSON (.json); `-` reads stdin
    #[arg(long, value_name = "FILE", conflicts_with = "from_url")]
    pub schema: Option<PathBuf>,

    /// Introspect the schema of a running GraphQL endpoint [default: GRAPHQL_URL]
    #[arg(long, value_name = "URL")]
    pub from_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Store a new schema version
    Create {
        /// Semantic version, e.g. 1.2.0
        #[arg(long = "version", value_name = "V")]
        version: String,
        /// What changed
        #[arg(long, short = 'd')]
        description: Option<String>,
        #[command(flatten)]
        source: SchemaSource,
        /// Make it the active version
        #[arg(long)]
        activate: bool,
        #[command(flatten)]
        invalid: AllowInvalid,
        #[arg(long, value_enum, default_value_t)]
        format: OutputFormat,
    },
    /// Make a stored version the active one
    Activate {
        #[arg(long = "version", value_name = "V")]
        version: String,
        #[arg(long, value_enum, default_value_t)]
        format: OutputFormat,
    },
    /// List stored versions
    List {
        /// Only the active version
        #[arg(long)]
        active_only: bool,
        #[arg(long, value_enum, default_value_t)]
        format: OutputFormat,
    },
    /// Show one version's details and SDL
    Show {
        /// A stored version, or `active`
        #[arg(long = "version", value_name = "V")]
        version: String,
        #[arg(long, value_enum, default_value_t)]
        format: OutputFormat,
    },
    /// Diff two versions (--from/--to) or two files, classifying each change
    Compare {
        /// Stored version to compare from (or `active`)
        #[arg(long, value_name = "V1", requires = "to", conflicts_with_all = ["old", "new"])]
        from: Option<String>,
        /// Stored version to compare to (or `active`)
        #[arg(long, value_name = "V2", requires = "from")]
        to: Option<String>,
        /// Old schema: SDL or introspection JSON file, `-` for stdin, or an http(s) URL to introspect
        #[arg(requires = "new")]
        old: Option<String>,
        /// New schema: SDL or introspection JSON file, `-` for stdin, or an http(s) URL to introspect
        new: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: DiffFormat,
        /// Exit 1 when a change of this level (or worse) is found
        #[arg(long, value_enum, default_value_t)]
        fail_on: FailOn,
        #[command(flatten)]
        invalid: AllowInvalid,
        #[command(flatten)]
        clients: ClientArgs,
    },
    /// CI gate: compare a schema against the active (or a given) version; exit 1 on breaking changes
    /// (or client operations the new schema breaks, with --operations)
    Check {
        #[command(flatten)]
        source: SchemaSource,
        /// `active` or a stored version
        #[arg(long, default_value = "active", value_name = "active|V")]
        against: String,
        #[arg(long, value_enum, default_value_t)]
        format: DiffFormat,
        #[arg(long, value_enum, default_value_t)]
        fail_on: FailOn,
        #[command(flatten)]
        invalid: AllowInvalid,
        #[command(flatten)]
        clients: ClientArgs,
    },
    /// Delete a version (the active one only with --force)
    Delete {
        #[arg(long = "version", value_name = "V")]
        version: String,
        #[arg(long)]
        force: bool,
        #[arg(long, value_enum, default_value_t)]
        format: OutputFormat,
    },
    /// Re-activate the previously active version
    Rollback {
        #[arg(long, value_enum, default_value_t)]
        format: OutputFormat,
    },
    /// Show the activation history
    History {
        #[arg(long, value_enum, default_value_t)]
        format: OutputFormat,
    },
    /// Check that every stored version (or each given file) parses, validates and matches its checksum
    ///
    /// With files (SDL or introspection JSON, `-` for stdin), each file is validated and reported on
    /// its own; the exit code is 2 if any is invalid or unreadable.
    Validate {
        /// Schema files to validate instead of the stored versions
        #[arg(value_name = "FILE", conflicts_with = "schema")]
        files: Vec<PathBuf>,
        /// Validate this file instead of the stored versions (same as giving it as FILE)
        #[arg(long, value_name = "FILE")]
        schema: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t)]
        format: OutputFormat,
    },
    /// Re-capture the running schema; store a new patch version if it changed
    Refresh {
        /// Endpoint to introspect (default: the configured GraphQL URL)
        #[arg(long, value_name = "URL")]
        from_url: Option<String>,
        /// Activate the new version
        #[arg(long)]
        activate: bool,
        #[command(flatten)]
        invalid: AllowInvalid,
        #[arg(long, value_enum, default_value_t)]
        format: OutputFormat,
    },
    /// Import versions from the old Django table rail_django_graphql_schema_versions
    ///
    /// The table (in DATABASE_URL) holds the metadata; the SDL comes from the old tool's
    /// schema_v<version>.graphql files in --legacy-dir.
    ImportLegacy {
        /// The old tool's schema_versions directory [default: the dir store's directory]
        #[arg(long, value_name = "DIR")]
        legacy_dir: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t)]
        format: OutputFormat,
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

/// Whether a schema that parses but does not validate may be used.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct AllowInvalid {
    /// Use a schema that parses but is not valid (a duplicate or unknown type or field, a missing
    /// interface field), with a warning, instead of stopping with exit code 2
    #[arg(long)]
    pub allow_invalid: bool,
}

impl Command {
    /// Whether the command prints JSON, so its errors are printed as JSON on stdout too.
    pub fn json_output(&self) -> bool {
        match self {
            Command::Create { format, .. }
            | Command::Activate { format, .. }
            | Command::List { format, .. }
            | Command::Show { format, .. }
            | Command::Delete { format, .. }
            | Command::Rollback { format }
            | Command::History { format }
            | Command::Validate { format, .. }
            | Command::Refresh { format, .. }
            | Command::ImportLegacy { format, .. } => *format == OutputFormat::Json,
            Command::Compare { format, .. } | Command::Check { format, .. } => {
                *format == DiffFormat::Json
            }
            Command::Man { .. } | Command::Completions { .. } => false,
        }
    }
}

/// Output format of a diff.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum DiffFormat {
    /// Changes grouped by level, for a terminal
    #[default]
    Text,
    /// For scripts
    Json,
    /// For a pull-request comment or a job summary
    Markdown,
    /// SARIF 2.1.0 (GitHub code scanning and other SARIF viewers)
    Sarif,
    /// GitLab Code Quality report
    Gitlab,
    /// JUnit XML (test report viewers)
    Junit,
    /// GitHub Actions workflow commands (annotations on the pull request)
    Github,
}

/// The client operations to check a schema change against.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClientArgs {
    /// Client operations to validate against both schemas: .graphql files, JS/TS/Python sources
    /// with embedded documents, persisted-query JSON maps, or folders of them (walked)
    #[arg(long, value_name = "PATH", num_args = 1.., action = clap::ArgAction::Append)]
    pub operations: Vec<PathBuf>,

    /// Report a breaking change that none of the operations uses as dangerous ("breaking, unused by
    /// the N known operations"); the exit code then follows the other breaking changes and the
    /// broken operations
    #[arg(long, requires = "operations")]
    pub consider_usage: bool,
}

/// The lowest change level that makes `compare` and `check` exit 1.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    #[default]
    Breaking,
    Dangerous,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
