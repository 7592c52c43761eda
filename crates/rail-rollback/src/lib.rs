//! The `rollback` tool: list, verify, create, prune and restore backup sets, and show the history of runs.
//!
//! Each subcommand lives in a module of its own; this one parses the command line, loads the
//! configuration, sets up logging and turns the outcome into rail's exit codes (`docs/exit-codes.md`):
//! 0 done, 1 failed before changing anything, 2 usage or configuration error, 3 refused (lock held,
//! verification failed, confirmation declined, set too old), 4 failed and put back, 5 failed and could
//! not be put back.

mod backup;
mod cli;
mod history;
mod hooks;
mod list;
mod prune;
mod remote;
mod restore;
mod run;
mod verify;

use std::process::ExitCode;

pub use cli::Cli;
use cli::Command;
use rail_core::config::{Config, ConfigError, LoadOptions};
use rail_core::{exit, output};

/// An outcome with its own exit code and message (a refusal, a failure that was put back).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct Exit {
    pub code: u8,
    pub message: String,
}

impl Exit {
    pub(crate) fn refused(message: impl Into<String>) -> anyhow::Error {
        Self { code: exit::REFUSED, message: message.into() }.into()
    }

    pub(crate) fn usage(message: impl Into<String>) -> anyhow::Error {
        Self { code: exit::USAGE, message: message.into() }.into()
    }

    pub(crate) fn with_code(code: u8, message: impl Into<String>) -> anyhow::Error {
        Self { code, message: message.into() }.into()
    }
}

/// Everything a subcommand needs.
pub(crate) struct Ctx {
    pub cli: Cli,
    pub cfg: Config,
}

/// Run `rollback` with the given command line and return its exit code.
pub fn run(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let cli: Cli = match rail_core::cli::parse(args) {
        Ok(cli) => cli,
        Err(code) => return ExitCode::from(code),
    };
    if let Command::Man { dir } = &cli.command {
        return ExitCode::from(rail_core::cli::man_command::<Cli>("rollback", dir));
    }
    if let Command::Completions { shell } = cli.command {
        rail_core::cli::print_completions::<Cli>(shell, "rollback");
        return ExitCode::SUCCESS;
    }
    let loaded = match rail_core::config::load(&LoadOptions::from_args(&cli.config)) {
        Ok(loaded) => loaded,
        Err(error) => {
            output::report_error(&anyhow::Error::new(error));
            return ExitCode::from(exit::USAGE);
        }
    };
    let changes = match &cli.command {
        Command::Rollback(_) => Some("rollback rollback"),
        Command::Backup { .. } => Some("rollback backup"),
        Command::Prune { dry_run: false, .. } => Some("rollback prune"),
        _ => None,
    };
    if let Some(command) = changes {
        if let Err(error) = loaded.require_configured(command) {
            output::report_error(&anyhow::Error::new(error));
            return ExitCode::from(exit::USAGE);
        }
    }
    let log_file =
        Some(loaded.config.monitoring.log_file.as_path()).filter(|p| !p.as_os_str().is_empty());
    if let Err(error) = output::init_logging(&cli.log, log_file) {
        // A log file that cannot be opened must not stop a rollback: log to stderr only.
        output::stderr_line(&format!("warning: {}", rail_core::backup::error_chain(&error)));
        let _ = output::init_logging(&cli.log, None);
    }
    let runtime =
        match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
            Ok(runtime) => runtime,
            Err(error) => {
                output::stderr_line(&format!("error: cannot start the async runtime: {error}"));
                return ExitCode::from(exit::FAILED);
            }
        };
    let mut cfg = loaded.config;
    match &cli.command {
        Command::Rollback(args) => cfg.rollback.allow_legacy |= args.allow_legacy,
        Command::Verify { allow_legacy, .. } => cfg.rollback.allow_legacy |= allow_legacy,
        _ => {}
    }
    let ctx = Ctx { cli, cfg };
    let result = runtime.block_on(async {
        tokio::select! {
            result = dispatch(&ctx) => result,
            signal = interrupted() => Err(Exit::with_code(
                exit::FAILED,
                format!("interrupted by {signal}: programs started were stopped, and the next run reports and repairs this one"),
            )),
        }
    });
    // Blocking tasks (archive writers) that outlived a cancelled future must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            output::report_error(&error);
            ExitCode::from(exit_code(&error))
        }
    }
}

async fn dispatch(ctx: &Ctx) -> anyhow::Result<u8> {
    match &ctx.cli.command {
        Command::List { remote: true, detailed, recent } => {
            remote::list(ctx, *detailed, *recent).await
        }
        Command::List { detailed, recent, .. } => list::run(ctx, *detailed, *recent),
        Command::Rollback(args) => restore::run(ctx, args).await,
        Command::Verify { name: Some(name), remote: true, .. } => remote::verify(ctx, name).await,
        Command::Verify { name, level, .. } => {
            verify::run(ctx, name.as_deref(), (*level).into()).await
        }
        Command::Push { name } => remote::push(ctx, name.as_deref()).await,
        Command::Pull { name, emergency } => remote::pull(ctx, name.as_deref(), *emergency).await,
        Command::Backup { name, app_version, lock_wait } => {
            backup::run(ctx, name.as_deref(), app_version.as_deref(), *lock_wait).await
        }
        Command::Prune { dry_run, remote: true } => remote::prune(ctx, *dry_run).await,
        Command::Prune { dry_run, .. } => prune::run(ctx, *dry_run).await,
        Command::History { limit } => history::run(ctx, *limit),
        Command::Keygen { output, force, age: true } => {
            remote::keygen(ctx, output.as_deref(), *force)
        }
        Command::Keygen { output, force, .. } => keygen(ctx, output.as_deref(), *force),
        Command::Completions { .. } | Command::Man { .. } => Ok(exit::SUCCESS),
    }
}

/// `rollback keygen`: a new key file; only its id is shown.
fn keygen(ctx: &Ctx, output: Option<&std::path::Path>, force: bool) -> anyhow::Result<u8> {
    let path = match output {
        Some(path) => path.to_owned(),
        None if !ctx.cfg.backup.key_file.as_os_str().is_empty() => ctx.cfg.backup.key_file.clone(),
        None => {
            return Err(Exit::with_code(
                exit::USAGE,
                "say where the key goes: --output PATH (or set backup.key_file)",
            ))
        }
    };
    let id = rail_core::backup::auth::generate_key_file(&path, force)
        .map_err(|e| Exit::with_code(exit::USAGE, rail_core::backup::error_chain(&e)))?;
    if ctx.cli.format == rail_core::cli::OutputFormat::Json {
        output::stdout_line(&output::render_json(
            &serde_json::json!({ "path": path, "key_id": id }),
        )?)?;
    } else {
        output::stdout_line(&format!(
            "backup key {id} written to {} (mode 0600)\nset backup.key_file = \"{}\" (or RAIL_BACKUP_KEY to its content) and keep a copy off this host: without it, sets can only be restored with --emergency",
            path.display(),
            path.display()
        ))?;
    }
    Ok(exit::SUCCESS)
}

/// Wait for SIGINT or SIGTERM. Returning drops the running command, which stops the programs it started
/// (their process groups) and removes a partial set; a restore cut short is repaired by the next run.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) =
        (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

/// The exit code an error stands for.
fn exit_code(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        if let Some(exit) = cause.downcast_ref::<Exit>() {
            return exit.code;
        }
        if let Some(error) = cause.downcast_ref::<rail_core::remote::RemoteError>() {
            return match error {
                e if e.is_refusal() => exit::REFUSED,
                rail_core::remote::RemoteError::NotConfigured
                | rail_core::remote::RemoteError::BadUrl { .. }
                | rail_core::remote::RemoteError::Crypt(_)
                | rail_core::remote::RemoteError::NoCredentials { .. }
                | rail_core::remote::RemoteError::NotFound { .. } => exit::USAGE,
                _ => exit::FAILED,
            };
        }
        if let Some(rail_core::lock::LockError::Held { .. }) =
            cause.downcast_ref::<rail_core::lock::LockError>()
        {
            return exit::REFUSED;
        }
        if cause.downcast_ref::<ConfigError>().is_some() {
            return exit::USAGE;
        }
        if let Some(
            rail_core::restore::RestoreError::Privileged { .. }
            | rail_core::restore::RestoreError::HostileDump { .. },
        ) = cause.downcast_ref::<rail_core::restore::RestoreError>()
        {
            return exit::REFUSED;
        }
        if let Some(rail_core::backup::BackupError::Key(_)) =
            cause.downcast_ref::<rail_core::backup::BackupError>()
        {
            return exit::USAGE;
        }
        if let Some(
            rail_core::store::StoreError::InvalidName { .. }
            | rail_core::store::StoreError::NotFound { .. },
        ) = cause.downcast_ref::<rail_core::store::StoreError>()
        {
            return exit::USAGE;
        }
        if let Some(
            rail_core::backup::BackupError::NoDatabase
            | rail_core::backup::BackupError::Store(
                rail_core::store::StoreError::InvalidName { .. }
                | rail_core::store::StoreError::NotFound { .. },
            ),
        ) = cause.downcast_ref::<rail_core::backup::BackupError>()
        {
            return exit::USAGE;
        }
    }
    exit::FAILED
}
