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
    /// Environment whose configuration is loaded: deploy-configs/<ENV>.toml and .env.<ENV> (one must
    /// exist); default $RAIL_ENVIRONMENT, then production
    #[arg(long, short = 'e', global = true, value_name = "ENV")]
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

/// Write the man pages of the binary `name` into `dir`: `<name>.1`, then `<name>-<sub>.1` for each
/// subcommand, recursively (`deploy-maintenance-on.1`). Returns the files written, in order.
pub fn write_man_pages<P: clap::CommandFactory>(
    name: &'static str,
    dir: &std::path::Path,
) -> std::io::Result<Vec<PathBuf>> {
    fs_err::create_dir_all(dir)?;
    let mut written = Vec::new();
    write_page(&P::command().name(name), name, dir, &mut written)?;
    Ok(written)
}

fn write_page(
    cmd: &clap::Command,
    page: &str,
    dir: &std::path::Path,
    written: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    // clap names a page after its command: a subcommand's page carries the full `bin-sub` name. The
    // names live for the rest of this short-lived process.
    let named: &'static str = Box::leak(page.to_owned().into_boxed_str());
    clap_mangen::Man::new(cmd.clone().name(named)).render(&mut buf)?;
    let path = dir.join(format!("{page}.1"));
    fs_err::write(&path, buf)?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        write_page(sub, &format!("{page}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}

/// The `man` subcommand of every binary: write the pages into `dir` and list them; the exit code.
pub fn man_command<P: clap::CommandFactory>(name: &'static str, dir: &std::path::Path) -> u8 {
    match write_man_pages::<P>(name, dir) {
        Ok(written) => {
            for path in written {
                let _ = crate::output::stdout_line(&path.display().to_string());
            }
            crate::exit::SUCCESS
        }
        Err(e) => {
            crate::output::report_error(
                &anyhow::Error::new(e).context(format!("writing man pages into {}", dir.display())),
            );
            crate::exit::FAILED
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{Parser, Subcommand};

    use super::*;

    /// A tool with a nested subcommand and a hidden one.
    #[derive(Debug, Parser)]
    #[command(about = "A tool")]
    struct Tool {
        /// Say more
        #[arg(long)]
        loud: bool,
        #[command(subcommand)]
        command: Option<Sub>,
    }

    #[derive(Debug, Subcommand)]
    enum Sub {
        /// Switch things
        Switch {
            #[command(subcommand)]
            action: Action,
        },
        #[command(hide = true)]
        Secret,
    }

    #[derive(Debug, Subcommand)]
    enum Action {
        /// Turn it on
        On {
            /// For how long
            #[arg(long)]
            ttl: Option<String>,
        },
        Off,
    }

    #[test]
    fn man_pages_cover_every_visible_subcommand_under_its_full_name() {
        let dir = tempfile::tempdir().unwrap();
        let written = write_man_pages::<Tool>("tool", dir.path()).unwrap();
        let names: Vec<String> =
            written.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["tool.1", "tool-switch.1", "tool-switch-on.1", "tool-switch-off.1"]);
        let main = fs_err::read_to_string(dir.path().join("tool.1")).unwrap();
        assert!(main.contains(".TH tool 1") && main.contains("\\-\\-loud"), "{main}");
        let on = fs_err::read_to_string(dir.path().join("tool-switch-on.1")).unwrap();
        assert!(on.contains("tool\\-switch\\-on") && on.contains("\\-\\-ttl"), "{on}");
    }

    #[test]
    fn an_unwritable_directory_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        fs_err::write(&file, "x").unwrap();
        let err = write_man_pages::<Tool>("tool", &file).unwrap_err().to_string();
        assert!(err.contains("not-a-dir"), "{err}");
    }
}
