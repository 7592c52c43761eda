//! The `healthcheck` tool: concurrent checks of everything the app depends on.

mod cli;

use std::process::ExitCode;

pub use cli::Cli;
use cli::Command;
use rail_core::{exit, output};

/// Run `healthcheck` with the given command line and return its exit code.
pub fn run(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let cli: Cli = match rail_core::cli::parse(args) {
        Ok(cli) => cli,
        Err(code) => return ExitCode::from(code),
    };
    match cli.command {
        Some(Command::Completions { shell }) => {
            rail_core::cli::print_completions::<Cli>(shell, "healthcheck");
            ExitCode::SUCCESS
        }
        None => {
            output::stderr_line("error: healthcheck is not implemented yet");
            ExitCode::from(exit::USAGE)
        }
    }
}
