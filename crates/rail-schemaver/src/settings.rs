//! Resolving where the store is and where the app answers.
//!
//! Flags win over `RAIL_SCHEMA_STORE`, `RAIL_SCHEMA_DIR`, `DATABASE_URL` and `GRAPHQL_URL` (clap reads
//! the environment for the flags that have one), which win over the rail configuration named by
//! `--config` or `--environment` (`[schema] store`, `directory`, `capture_url`, `database.url`,
//! `app.graphql_url`). Without `--config` or `--environment` no configuration file is read, so
//! `schemaver compare a.graphql b.graphql` in CI needs nothing else.

use std::path::PathBuf;

use anyhow::anyhow;
use rail_core::schema_store::StoreLocation;
use rail_core::secret::Secret;

use rail_core::cli::ConfigArgs;
use rail_core::config::{LoadOptions, SchemaStoreKind};

use crate::cli::{StoreArgs, StoreKind, ENV_DATABASE_URL, ENV_GRAPHQL_URL};
use crate::Fail;

/// The dir store's directory when none is given: the old Django tool's `schema_versions/`.
pub(crate) const DEFAULT_SCHEMA_DIR: &str = "schema_versions";

/// Fill what flags and variables leave unset from the rail configuration, when one is named; also
/// the configured endpoint to introspect.
pub(crate) fn with_config(
    mut args: StoreArgs,
    config: &ConfigArgs,
) -> Result<(StoreArgs, Option<String>), Fail> {
    if config.config.is_none() && config.environment.is_none() {
        return Ok((args, None));
    }
    let loaded = rail_core::config::load(&LoadOptions::from_args(config))
        .map_err(|e| Fail::usage(anyhow::Error::new(e)))?;
    let cfg = &loaded.config;
    if args.store.is_none() {
        args.store = Some(match cfg.schema.store {
            SchemaStoreKind::Dir => StoreKind::Dir,
            SchemaStoreKind::Postgres => StoreKind::Postgres,
        });
    }
    if args.schema_dir.is_none() && !cfg.schema.directory.as_os_str().is_empty() {
        args.schema_dir = Some(cfg.schema.directory.clone());
    }
    if args.database_url.as_deref().is_none_or(|u| u.trim().is_empty()) {
        args.database_url = cfg.database_url().map(|u| u.expose().to_owned());
    }
    let capture = Some(cfg.schema.capture_url.trim().to_owned())
        .filter(|u| !u.is_empty())
        .or_else(|| cfg.graphql_url());
    Ok((args, capture))
}

/// The store to open.
pub(crate) fn store_location(args: &StoreArgs) -> Result<StoreLocation, Fail> {
    match args.store.unwrap_or_default() {
        StoreKind::Dir => Ok(StoreLocation::Dir(schema_dir(args))),
        StoreKind::Postgres => Ok(StoreLocation::Postgres { url: database_url(args)? }),
    }
}

/// The dir store's directory (also where the old tool's files are looked for).
pub(crate) fn schema_dir(args: &StoreArgs) -> PathBuf {
    args.schema_dir.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_SCHEMA_DIR))
}

/// The PostgreSQL URL, required.
pub(crate) fn database_url(args: &StoreArgs) -> Result<Secret, Fail> {
    match args.database_url.as_deref().filter(|u| !u.trim().is_empty()) {
        Some(url) => Ok(Secret::new(url.trim())),
        None => Err(Fail::usage(anyhow!(
            "no PostgreSQL URL: set {ENV_DATABASE_URL} or pass --database-url"
        ))),
    }
}

/// The GraphQL endpoint: the flag, else `GRAPHQL_URL`.
pub(crate) fn graphql_url(flag: Option<&str>) -> Option<String> {
    flag.map(str::to_owned)
        .or_else(|| std::env::var(ENV_GRAPHQL_URL).ok())
        .filter(|u| !u.trim().is_empty())
}

/// Who is acting, for `created_by` and the activation history: `user@host`.
pub(crate) fn actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".to_owned());
    let host = fs_err::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    if host.is_empty() {
        user
    } else {
        format!("{user}@{host}")
    }
}
