//! The `deploy` tool: a locked, journaled deploy pipeline that rolls back by itself on failure.

mod cli;
pub mod django;
pub mod engine;

use std::process::ExitCode;

pub use cli::Cli;
use cli::Command;
use rail_core::{exit, output};

/// Run `deploy` with the given command line and return its exit code.
pub fn run(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let cli: Cli = match rail_core::cli::parse(args) {
        Ok(cli) => cli,
        Err(code) => return ExitCode::from(code),
    };
    match cli.command {
        Some(Command::Completions { shell }) => {
            rail_core::cli::print_completions::<Cli>(shell, "deploy");
            ExitCode::SUCCESS
        }
        _ => {
            output::stderr_line("error: deploy is not implemented yet");
            ExitCode::from(exit::USAGE)
        }
    }
}
