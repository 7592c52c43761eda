//! The `schemaver` tool: a registry of GraphQL schema versions with a classifying diff.

mod cli;

use std::process::ExitCode;

pub use cli::Cli;
use cli::Command;
use rail_core::{exit, output};

/// Run `schemaver` with the given command line and return its exit code.
pub fn run(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let cli: Cli = match rail_core::cli::parse(args) {
        Ok(cli) => cli,
        Err(code) => return ExitCode::from(code),
    };
    match cli.command {
        Command::Completions { shell } => {
            rail_core::cli::print_completions::<Cli>(shell, "schemaver");
            ExitCode::SUCCESS
        }
        _ => {
            output::stderr_line("error: schemaver is not implemented yet");
            ExitCode::from(exit::USAGE)
        }
    }
}
