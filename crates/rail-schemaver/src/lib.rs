//! The `schemaver` tool: a registry of GraphQL schema versions with a classifying diff.
//!
//! `cli` parses the command line, [`settings`] resolves where the store is, `schema` reads SDL or
//! introspection JSON into one model, `diff` classifies every change the way GraphQL Inspector does
//! (without hiding any), and `commands` runs each subcommand against `rail_core::schema_store`.

mod capture;
pub mod cli;
mod commands;
pub mod diff;
pub mod operations;
pub mod report;
pub mod schema;
mod settings;

use std::process::ExitCode;

pub use cli::Cli;
use cli::Command;
use rail_core::{exit, output};

/// Why a command stopped, and the exit code that says so.
#[derive(Debug)]
pub(crate) struct Fail {
    pub code: u8,
    pub error: anyhow::Error,
}

impl Fail {
    /// An invalid or unreadable schema, or a usage or configuration error (exit 2).
    pub(crate) fn usage(error: impl Into<anyhow::Error>) -> Self {
        Self { code: exit::USAGE, error: error.into() }
    }

    /// The operation failed (exit 1).
    pub(crate) fn failed(error: impl Into<anyhow::Error>) -> Self {
        Self { code: exit::FAILED, error: error.into() }
    }
}

impl From<rail_core::schema_store::SchemaStoreError> for Fail {
    fn from(e: rail_core::schema_store::SchemaStoreError) -> Self {
        use rail_core::schema_store::SchemaStoreError as E;
        let code = match &e {
            E::InvalidVersion { .. } | E::NotFound { .. } => exit::USAGE,
            E::ActiveVersion { .. } | E::AlreadyExists { .. } => exit::REFUSED,
            _ => exit::FAILED,
        };
        Self { code, error: e.into() }
    }
}

/// Run `schemaver` with the given command line and return its exit code.
pub fn run(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let cli: Cli = match rail_core::cli::parse(args) {
        Ok(cli) => cli,
        Err(code) => return ExitCode::from(code),
    };
    if let Command::Man { dir } = &cli.command {
        return ExitCode::from(rail_core::cli::man_command::<Cli>("schemaver", dir));
    }
    if let Command::Completions { shell } = cli.command {
        rail_core::cli::print_completions::<Cli>(shell, "schemaver");
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            output::stderr_line(&format!("error: cannot start the async runtime: {e}"));
            return ExitCode::from(exit::FAILED);
        }
    };
    let json = cli.command.json_output();
    match runtime.block_on(commands::dispatch(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(fail) => {
            output::report_error(&fail.error);
            if json {
                // A script reading stdout gets an object it can parse instead of nothing.
                let value = serde_json::json!({
                    "error": format!("{:#}", fail.error),
                    "exit_code": fail.code,
                });
                let _ =
                    output::stdout_line(&serde_json::to_string_pretty(&value).unwrap_or_default());
            }
            ExitCode::from(fail.code)
        }
    }
}
