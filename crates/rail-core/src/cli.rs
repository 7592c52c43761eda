//! Command-line option groups shared by the four binaries, pulled in with `#[command(flatten)]`.
//!
//! These are plain data: validation and resolution happen in [`crate::config`].

use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// Environment variable naming the environment (`production`, `staging`, `local`).
pub const ENV_ENVIRONMENT: &str = "RAIL_ENVIRONMENT";
/// Environment variable naming a configuration file.
pub const ENV_CONFIG: &str = "RAIL_CONFIG";
/// Environment variable choosing the log format.
pub const ENV_LOG_FORMAT: &str = "RAIL_LOG_FORMAT";

/// Which configuration to load.
#[derive(Debug, Clone, Default, Args)]
pub struct ConfigArgs {
    /// Environment whose configuration is loaded: deploy-configs/<ENV>.toml and .env.<ENV>
    #[arg(long, short = 'e', global = true, env = ENV_ENVIRONMENT, value_name = "ENV")]
    pub environment: Option<String>,

    /// Configuration file (TOML, or the older JSON deployment-<env>.json / rollback_config.json)
    #[arg(long, short = 'c', global = true, env = ENV_CONFIG, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Logging and colour options.
#[derive(Debug, Clone, Default, Args)]
pub struct LogArgs {
    /// More log output on stderr (repeat for more)
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Only errors on stderr
    #[arg(long, short = 'q', global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Log line format on stderr
    #[arg(long, global = true, value_enum, default_value_t, env = ENV_LOG_FORMAT, value_name = "FORMAT")]
    pub log_format: LogFormat,

    /// Never colour output (also honoured: the NO_COLOR environment variable)
    #[arg(long, global = true)]
    pub no_color: bool,
}

/// Format of log lines on stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Format of the result on stdout, for commands that offer text and JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
}

/// Parse a command line, turning clap's errors into rail's exit codes: help and version print and
/// exit 0, usage errors print and exit [`crate::exit::USAGE`].
pub fn parse<P: clap::Parser>(args: impl IntoIterator<Item = std::ffi::OsString>) -> Result<P, u8> {
    P::try_parse_from(args).map_err(|e| {
        let code = if e.use_stderr() { crate::exit::USAGE } else { crate::exit::SUCCESS };
        // clap renders help, version and usage errors itself, with colour when allowed.
        let _ = e.print();
        code
    })
}

/// Which shell to generate completions for.
pub use clap_complete::Shell;

/// Write shell completions for the binary `name` to stdout.
pub fn print_completions<P: clap::CommandFactory>(shell: Shell, name: &str) {
    let mut cmd = P::command();
    clap_complete::generate(shell, &mut cmd, name, &mut std::io::stdout());
}
