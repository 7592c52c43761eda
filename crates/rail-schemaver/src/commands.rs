//! One function per subcommand: read schemas, talk to the store, print the outcome.

use std::collections::HashSet;
use std::io::{IsTerminal as _, Read as _};
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use rail_core::cli::OutputFormat;
use rail_core::exit;
use rail_core::output::{stderr_line, stdout_line};
use rail_core::schema_store::{
    parse_version, read_legacy_versions, sha256_hex, ActivationReason, NewVersion, SchemaStore,
    SchemaStoreError, StoredVersion, VersionInfo, LEGACY_TABLE,
};
use serde_json::json;

use crate::cli::{Cli, ClientArgs, Command, DiffFormat, FailOn, SchemaSource, ENV_GRAPHQL_URL};
use crate::diff::{self, Counts};
use crate::operations::{self, Catalog};
use crate::report::{self, Clients, Report, SchemaRef};
use crate::schema::{self, Loaded, Unvalidated, MAX_SCHEMA_BYTES};
use crate::{capture, settings, Fail};

/// What every command needs besides its own arguments.
struct Ctx {
    quiet: bool,
    colour: bool,
    /// `--allow-invalid`: a schema that parses but does not validate is used, with a warning.
    allow_invalid: bool,
    /// The endpoint to introspect when no flag or `GRAPHQL_URL` names one: `schema.capture_url`, else
    /// the app's GraphQL URL, from the rail configuration when one is named.
    capture_url: Option<String>,
}

impl Ctx {
    fn warn(&self, message: &str) {
        if !self.quiet {
            stderr_line(&format!("warning: {message}"));
        }
    }
}

fn print(text: &str) -> Result<(), Fail> {
    stdout_line(text).map_err(|e| Fail::failed(anyhow!(e).context("cannot write to stdout")))
}

fn print_json(value: &serde_json::Value) -> Result<(), Fail> {
    print(&serde_json::to_string_pretty(value).unwrap_or_default())
}

/// How many validation problems an error lists before saying how many more there are.
const PROBLEMS_SHOWN: usize = 20;

/// Run the parsed command line; `Ok` carries the exit code.
pub(crate) async fn dispatch(cli: Cli) -> Result<u8, Fail> {
    let colour = std::io::stdout().is_terminal()
        && !cli.log.no_color
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let (store_args, capture_url) = settings::with_config(cli.store, &cli.config)?;
    let allow_invalid = match &cli.command {
        Command::Create { invalid, .. }
        | Command::Compare { invalid, .. }
        | Command::Check { invalid, .. }
        | Command::Refresh { invalid, .. } => invalid.allow_invalid,
        _ => false,
    };
    let ctx = Ctx { quiet: cli.log.quiet, colour, allow_invalid, capture_url };
    let open = || async {
        let location = settings::store_location(&store_args)?;
        SchemaStore::open(&location).await.map_err(Fail::from)
    };
    match cli.command {
        Command::Create { version, description, source, activate, format, .. } => {
            let version = parse_version(&version)?;
            let (loaded, origin) = read_source(&source, &ctx).await?;
            let new = New { version, description, loaded, origin, activate };
            create(&ctx, &open().await?, new, format, None).await
        }
        Command::Activate { version, format } => {
            let version = parse_version(&version)?;
            let activation = open()
                .await?
                .activate(&version, ActivationReason::Activate, &settings::actor())
                .await?;
            if format == OutputFormat::Json {
                let previous = activation.as_ref().and_then(|a| a.previous.clone());
                print_json(&json!({
                    "version": version.to_string(),
                    "previous": previous,
                    "changed": activation.is_some(),
                }))?;
                return Ok(exit::SUCCESS);
            }
            match activation {
                Some(a) => match a.previous {
                    Some(prev) => {
                        print(&format!("Activated schema version {} (was {prev})", a.version))?;
                    }
                    None => print(&format!("Activated schema version {}", a.version))?,
                },
                None => print(&format!("Schema version {version} is already active"))?,
            }
            Ok(exit::SUCCESS)
        }
        Command::List { active_only, format } => list(&open().await?, active_only, format).await,
        Command::Show { version, format } => show(&open().await?, &version, format).await,
        Command::Compare { from, to, old, new, format, fail_on, clients, .. } => {
            let (old, new) = match (from, to, old, new) {
                (Some(from), Some(to), None, None) => {
                    let store = open().await?;
                    let old = stored_raw(&fetch_stored(&store, &from).await?);
                    let new = stored_raw(&fetch_stored(&store, &to).await?);
                    (old, new)
                }
                (None, None, Some(old), Some(new)) => {
                    (raw_pointer(&old).await?, raw_pointer(&new).await?)
                }
                _ => {
                    return Err(Fail::usage(anyhow!(
                        "give two schema files (OLD NEW) or two stored versions (--from V1 --to V2)"
                    )))
                }
            };
            diff_report(&ctx, &old, &new, &clients, format, fail_on)
        }
        Command::Check { source, against, format, fail_on, clients, .. } => {
            let new = raw_source(&source, &ctx).await?;
            let store = open().await?;
            let old = stored_raw(&fetch_stored(&store, &against).await?);
            diff_report(&ctx, &old, &new, &clients, format, fail_on)
        }
        Command::Delete { version, force, format } => {
            let version = parse_version(&version)?;
            let info = open().await?.delete(&version, force).await?;
            if format == OutputFormat::Json {
                print_json(&json!({"deleted": info.version, "was_active": info.is_active}))?;
            } else if info.is_active {
                print(&format!(
                    "Deleted schema version {} (it was active; no version is active now)",
                    info.version
                ))?;
            } else {
                print(&format!("Deleted schema version {}", info.version))?;
            }
            Ok(exit::SUCCESS)
        }
        Command::Rollback { format } => {
            let a = open().await?.rollback(&settings::actor()).await?;
            if format == OutputFormat::Json {
                print_json(&json!({"version": a.version, "previous": a.previous}))?;
                return Ok(exit::SUCCESS);
            }
            match a.previous {
                Some(prev) => {
                    print(&format!("Rolled back to schema version {} (was {prev})", a.version))?;
                }
                None => print(&format!("Rolled back to schema version {}", a.version))?,
            }
            Ok(exit::SUCCESS)
        }
        Command::History { format } => history(&open().await?, format).await,
        Command::Validate { mut files, schema, format } => {
            files.extend(schema);
            if files.is_empty() {
                validate_store(&open().await?, format).await
            } else {
                validate_files(&files, format)
            }
        }
        Command::Refresh { from_url, activate, format, .. } => {
            let source = SchemaSource { schema: None, from_url };
            let (loaded, origin) = read_source(&source, &ctx).await?;
            refresh(&ctx, &open().await?, loaded, &origin, activate, format).await
        }
        Command::ImportLegacy { legacy_dir, format } => {
            let url = settings::database_url(&store_args)?;
            let dir = legacy_dir.unwrap_or_else(|| settings::schema_dir(&store_args));
            let rows = read_legacy_versions(&url).await?;
            import_legacy(&ctx, &open().await?, rows, &dir, format).await
        }
        Command::Completions { .. } | Command::Man { .. } => Ok(exit::SUCCESS),
    }
}

/// Turn a read schema's warnings into warnings on stderr, and refuse an invalid schema (exit 2)
/// unless `--allow-invalid` was given.
fn loaded(ctx: &Ctx, loaded: Loaded, name: &str) -> Result<Loaded, Fail> {
    for w in &loaded.warnings {
        ctx.warn(&format!("{name}: {w}"));
    }
    if loaded.is_valid() {
        return Ok(loaded);
    }
    let n = loaded.problems.len();
    let mut listed: Vec<&str> =
        loaded.problems.iter().take(PROBLEMS_SHOWN).map(String::as_str).collect();
    let more = format!(
        "… and {} more (`schemaver validate` lists them all)",
        n.saturating_sub(PROBLEMS_SHOWN)
    );
    if n > PROBLEMS_SHOWN {
        listed.push(&more);
    }
    let list = listed.join("\n  ");
    if ctx.allow_invalid {
        ctx.warn(&format!(
            "{name} is not a valid GraphQL schema ({n} problem(s)); used anyway (--allow-invalid):\n  {list}"
        ));
        Ok(loaded)
    } else {
        Err(Fail::usage(anyhow!(
            "{name} is not a valid GraphQL schema ({n} problem(s)); fix it, or pass --allow-invalid \
             to use it anyway:\n  {list}"
        )))
    }
}

/// Read a file with the size limit; `-` is stdin.
fn read_bytes(path: &Path) -> Result<Vec<u8>, Fail> {
    let name =
        if path.as_os_str() == "-" { "stdin".to_owned() } else { path.display().to_string() };
    let too_large = || Fail::usage(schema::SchemaError::TooLarge { name: name.clone() });
    let limit = MAX_SCHEMA_BYTES as u64 + 1;
    let mut bytes = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .lock()
            .take(limit)
            .read_to_end(&mut bytes)
            .map_err(|e| Fail::usage(anyhow!(e).context("cannot read the schema from stdin")))?;
    } else {
        let file = fs_err::File::open(path).map_err(Fail::usage)?;
        if file.metadata().is_ok_and(|m| m.len() >= limit) {
            return Err(too_large());
        }
        file.take(limit)
            .read_to_end(&mut bytes)
            .map_err(|e| Fail::usage(anyhow!(e).context(format!("cannot read {name}"))))?;
    }
    if bytes.len() > MAX_SCHEMA_BYTES {
        return Err(too_large());
    }
    Ok(bytes)
}

/// `--schema FILE`, `--from-url URL`, or else GRAPHQL_URL.
async fn read_source(source: &SchemaSource, ctx: &Ctx) -> Result<(Loaded, String), Fail> {
    let raw = raw_source(source, ctx).await?;
    let l = schema::load(&raw.bytes, &raw.name).map_err(Fail::usage)?;
    Ok((loaded(ctx, l, &raw.name)?, raw.name))
}

/// A schema's bytes and the name to show for it, not parsed yet.
struct Raw {
    bytes: Vec<u8>,
    name: String,
    /// The file it was read from (not stdin, an endpoint or the store), for reports that point at
    /// lines in it.
    file: Option<String>,
}

/// A compare operand's bytes: a file, `-`, or an http(s) URL to introspect.
async fn raw_pointer(pointer: &str) -> Result<Raw, Fail> {
    if pointer.starts_with("http://") || pointer.starts_with("https://") {
        let name = rail_core::secret::redact_url(pointer);
        let bytes = capture::introspect(pointer).await.map_err(Fail::usage)?;
        return Ok(Raw { bytes, name, file: None });
    }
    let path = PathBuf::from(pointer);
    let name = if pointer == "-" { "stdin".to_owned() } else { path.display().to_string() };
    let file = (pointer != "-").then(|| name.clone());
    Ok(Raw { bytes: read_bytes(&path)?, name, file })
}

async fn raw_source(source: &SchemaSource, ctx: &Ctx) -> Result<Raw, Fail> {
    if let Some(path) = &source.schema {
        return raw_pointer(&path.to_string_lossy()).await;
    }
    match settings::graphql_url(source.from_url.as_deref()).or_else(|| ctx.capture_url.clone()) {
        Some(url) => Ok(Raw {
            bytes: capture::introspect(&url).await.map_err(Fail::usage)?,
            name: rail_core::secret::redact_url(&url),
            file: None,
        }),
        None => Err(Fail::usage(anyhow!(
            "no schema given: pass --schema FILE (`-` for stdin) or --from-url URL, or set {ENV_GRAPHQL_URL} \
             (or app.graphql_url / schema.capture_url in the file of --config)"
        ))),
    }
}

fn stored_raw(stored: &StoredVersion) -> Raw {
    Raw {
        bytes: stored.sdl.clone().into_bytes(),
        name: format!("schema version {}", stored.info.version),
        file: None,
    }
}

/// Parse two schemas at once: parsing is most of a compare's time, and the two are independent.
/// Validation is left for later, to run beside the diff.
fn read_two(old: &Raw, new: &Raw) -> Result<(Unvalidated, Unvalidated), Fail> {
    let (o, n) = std::thread::scope(|scope| {
        let worker = scope.spawn(|| schema::read(&new.bytes, &new.name));
        let o = schema::read(&old.bytes, &old.name);
        let n = worker.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (o, n)
    });
    Ok((o.map_err(Fail::usage)?, n.map_err(Fail::usage)?))
}

async fn fetch_stored(store: &SchemaStore, which: &str) -> Result<StoredVersion, Fail> {
    if which.trim() == "active" {
        return store
            .active()
            .await?
            .ok_or_else(|| Fail::usage(anyhow!("no schema version is active")));
    }
    Ok(store.get(&parse_version(which)?).await?)
}

/// Diff two schemas and, with `--operations`, check the client operations against both; print the
/// report and return the exit code. The operations are read while the schemas are parsed.
fn diff_report(
    ctx: &Ctx,
    old: &Raw,
    new: &Raw,
    clients: &ClientArgs,
    format: DiffFormat,
    fail_on: FailOn,
) -> Result<u8, Fail> {
    let (schemas, catalog) = std::thread::scope(|scope| {
        let reader = (!clients.operations.is_empty())
            .then(|| scope.spawn(|| Catalog::read(&clients.operations)));
        let schemas = read_two(old, new);
        let catalog =
            reader.map(|r| r.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
        (schemas, catalog)
    });
    let (old_read, new_read) = schemas?;
    // Both schemas are validated on one thread while the diff runs on another: the diff needs only
    // the models, and a compare then takes no longer than before validation was added.
    let (
        Unvalidated { read: old_read, pending: old_pending },
        Unvalidated { read: new_read, pending: new_pending },
    ) = (old_read, new_read);
    let (mut changes, (old_valid, new_valid)) = std::thread::scope(|scope| {
        let worker = scope.spawn(move || (old_pending.validate(), new_pending.validate()));
        let changes = diff::diff_and_simplify(&old_read.model, &new_read.model);
        (changes, worker.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    });
    let old_schema = loaded(ctx, old_read.with(old_valid.0, old_valid.1), &old.name)?;
    let new_schema = loaded(ctx, new_read.with(new_valid.0, new_valid.1), &new.name)?;
    let catalog = catalog.transpose().map_err(Fail::usage)?;
    let clients = catalog.map(|catalog| {
        for w in &catalog.warnings {
            ctx.warn(w);
        }
        if catalog.operations.is_empty() {
            ctx.warn(&format!("no operations found in {} file(s) of --operations", catalog.files));
        }
        let verdicts = operations::check(&catalog, &old_schema.compiled, &new_schema.compiled);
        if clients.consider_usage {
            if verdicts.iter().all(|v| v.uses.is_none()) {
                ctx.warn(
                    "no operation is valid on the old schema: --consider-usage downgrades nothing",
                );
            }
            report::consider_usage(&mut changes, &verdicts, &new_schema.model);
        }
        Clients { verdicts, files: catalog.files, consider_usage: clients.consider_usage }
    });
    // Lines can be given only in SDL files; introspection JSON has none to point at.
    let sdl_file =
        |raw: &Raw, loaded: &Loaded| raw.file.clone().filter(|_| !loaded.from_introspection);
    let (old_file, new_file) = (sdl_file(old, &old_schema), sdl_file(new, &new_schema));
    let report = Report {
        changes,
        clients,
        old: SchemaRef {
            name: &old.name,
            file: old_file.as_deref(),
            compiled: &old_schema.compiled,
        },
        new: SchemaRef {
            name: &new.name,
            file: new_file.as_deref(),
            compiled: &new_schema.compiled,
        },
        fail_on,
    };
    print(&report.render(format, ctx.colour))?;
    Ok(if report.failing() { exit::FAILED } else { exit::SUCCESS })
}

/// A version to store.
struct New {
    version: semver::Version,
    description: Option<String>,
    loaded: Loaded,
    origin: String,
    activate: bool,
}

/// Store a new version. `extra` (refresh's comparison with the version it started from) is merged
/// into the JSON report.
async fn create(
    ctx: &Ctx,
    store: &SchemaStore,
    new: New,
    format: OutputFormat,
    extra: Option<serde_json::Value>,
) -> Result<u8, Fail> {
    let New { version, description, loaded, origin, activate } = new;
    if let Some(active) = store.active().await? {
        if active.info.sha256 == sha256_hex(&loaded.sdl) {
            ctx.warn(&format!(
                "the schema is identical to the active version {}",
                active.info.version
            ));
        }
    }
    let metadata = json!({
        "source": origin,
        "format": if loaded.from_introspection { "introspection" } else { "sdl" },
        "types": loaded.model.types.len(),
        "tool": concat!("schemaver ", env!("CARGO_PKG_VERSION")),
    });
    let info = store
        .create(NewVersion {
            version,
            description: description.unwrap_or_default(),
            sdl: loaded.sdl,
            created_by: settings::actor(),
            created_at: None,
            metadata,
            activate: activate.then_some(ActivationReason::Activate),
        })
        .await?;
    if format == OutputFormat::Json {
        let mut value = serde_json::to_value(&info).unwrap_or_default();
        value["types"] = json!(loaded.model.types.len());
        value["valid"] = json!(loaded.problems.is_empty());
        value["problems"] = json!(loaded.problems);
        if let Some(serde_json::Value::Object(extra)) = extra {
            for (k, v) in extra {
                value[k] = v;
            }
        }
        return print_json(&value).map(|()| exit::SUCCESS);
    }
    print(&format!(
        "Created schema version {} ({} types, sha256 {}){}",
        info.version,
        loaded.model.types.len(),
        &info.sha256[..12],
        if info.is_active { ", now active" } else { "" }
    ))?;
    Ok(exit::SUCCESS)
}

fn short_time(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%SZ").to_string()
}

/// Left-aligned columns, two spaces apart; the last column is not padded.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            out.push_str(cell);
            if i < last {
                out.extend(std::iter::repeat_n(' ', w - cell.chars().count() + 2));
            }
        }
        out.trim_end().to_owned()
    };
    let mut out = vec![line(header.to_vec())];
    out.extend(rows.iter().map(|r| line(r.iter().map(String::as_str).collect())));
    out.join("\n")
}

async fn list(store: &SchemaStore, active_only: bool, format: OutputFormat) -> Result<u8, Fail> {
    let mut versions = store.list().await?;
    if active_only {
        versions.retain(|v| v.is_active);
    }
    match format {
        // `--active-only` gives the one object (or null), so `jq -r .version` works as it did with
        // the old tool.
        OutputFormat::Json if active_only => {
            print(&serde_json::to_string_pretty(&versions.first()).unwrap_or_default())?;
        }
        OutputFormat::Json => print(&serde_json::to_string_pretty(&versions).unwrap_or_default())?,
        OutputFormat::Text if versions.is_empty() => {
            print(if active_only {
                "No active schema version"
            } else {
                "No schema versions stored"
            })?;
        }
        OutputFormat::Text => {
            let rows: Vec<Vec<String>> = versions
                .iter()
                .map(|v| {
                    vec![
                        v.version.clone(),
                        if v.is_active { "*".into() } else { String::new() },
                        short_time(&v.created_at),
                        v.created_by.clone(),
                        v.sha256.chars().take(12).collect(),
                        v.description.replace('\n', " "),
                    ]
                })
                .collect();
            print(&table(&["VERSION", "ACTIVE", "CREATED", "BY", "SHA256", "DESCRIPTION"], &rows))?;
        }
    }
    Ok(exit::SUCCESS)
}

async fn show(store: &SchemaStore, which: &str, format: OutputFormat) -> Result<u8, Fail> {
    let stored = fetch_stored(store, which).await?;
    let info = &stored.info;
    match format {
        OutputFormat::Json => {
            let mut value = serde_json::to_value(info).unwrap_or_default();
            value["sdl"] = json!(stored.sdl);
            value["checksum_ok"] = json!(sha256_hex(&stored.sdl) == info.sha256);
            print(&serde_json::to_string_pretty(&value).unwrap_or_default())?;
        }
        OutputFormat::Text => {
            let checksum = if sha256_hex(&stored.sdl) == info.sha256 {
                ""
            } else {
                "  (MISMATCH: the SDL was changed)"
            };
            print(&format!(
                "Version:     {}{}\nCreated:     {} by {}\nSHA-256:     {}{checksum}\nDescription: {}\nMetadata:    {}\n\n{}",
                info.version,
                if info.is_active { " (active)" } else { "" },
                short_time(&info.created_at),
                info.created_by,
                info.sha256,
                info.description,
                info.metadata,
                stored.sdl.trim_end()
            ))?;
        }
    }
    Ok(exit::SUCCESS)
}

async fn history(store: &SchemaStore, format: OutputFormat) -> Result<u8, Fail> {
    let history = store.history().await?;
    match format {
        OutputFormat::Json => print(&serde_json::to_string_pretty(&history).unwrap_or_default())?,
        OutputFormat::Text if history.is_empty() => print("No activations recorded")?,
        OutputFormat::Text => {
            let rows: Vec<Vec<String>> = history
                .iter()
                .map(|a| {
                    vec![
                        short_time(&a.at),
                        a.version.clone(),
                        a.previous.clone().unwrap_or_else(|| "-".into()),
                        a.reason.as_str().to_owned(),
                        a.by.clone(),
                    ]
                })
                .collect();
            print(&table(&["WHEN", "VERSION", "PREVIOUS", "REASON", "BY"], &rows))?;
        }
    }
    Ok(exit::SUCCESS)
}

fn print_problems(name: &str, problems: &[String]) -> Result<(), Fail> {
    print(&format!("{name}: {} problem(s)", problems.len()))?;
    for p in problems {
        print(&format!("  {}", p.replace('\n', "\n  ")))?;
    }
    Ok(())
}

/// Validate each file on its own (SDL or introspection JSON, read as `compare` reads them); an
/// unreadable file is a problem of that file, not the end of the run.
fn validate_files(paths: &[PathBuf], format: OutputFormat) -> Result<u8, Fail> {
    let mut reports = Vec::with_capacity(paths.len());
    for path in paths {
        let name =
            if path.as_os_str() == "-" { "stdin".to_owned() } else { path.display().to_string() };
        let (kind, problems, warnings) = match read_bytes(path)
            .and_then(|bytes| schema::load(&bytes, &name).map_err(Fail::usage))
        {
            Err(fail) => (None, vec![format!("{:#}", fail.error)], Vec::new()),
            Ok(l) => {
                let kind = if l.from_introspection { "introspection" } else { "sdl" };
                (Some(kind), l.problems, l.warnings)
            }
        };
        reports.push((name, kind, problems, warnings));
    }
    let invalid = reports.iter().filter(|r| !r.2.is_empty()).count();
    if format == OutputFormat::Json {
        let files: Vec<serde_json::Value> = reports
            .iter()
            .map(|(name, kind, problems, warnings)| {
                json!({
                    "file": name,
                    "format": kind,
                    "ok": problems.is_empty(),
                    "problems": problems,
                    "warnings": warnings,
                })
            })
            .collect();
        print_json(&json!({"ok": invalid == 0, "files": files}))?;
    } else {
        for (name, _, problems, warnings) in &reports {
            if problems.is_empty() {
                print(&format!("{name}: ok"))?;
            } else {
                print_problems(name, problems)?;
            }
            for w in warnings {
                print(&format!("  warning: {w}"))?;
            }
        }
        if reports.len() > 1 {
            if invalid == 0 {
                print(&format!("All {} file(s) valid", reports.len()))?;
            } else {
                print(&format!("{invalid} of {} file(s) failed validation", reports.len()))?;
            }
        }
    }
    Ok(if invalid == 0 { exit::SUCCESS } else { exit::USAGE })
}

async fn validate_store(store: &SchemaStore, format: OutputFormat) -> Result<u8, Fail> {
    let versions = store.list().await?;
    let mut failed = 0;
    let mut reports = Vec::with_capacity(versions.len());
    for info in &versions {
        let name = format!("{}{}", info.version, if info.is_active { " (active)" } else { "" });
        let mut problems = Vec::new();
        match store.get(&parse_version(&info.version)?).await {
            Ok(stored) => {
                let actual = sha256_hex(&stored.sdl);
                if actual != info.sha256 {
                    problems.push(format!(
                        "checksum mismatch: stored {}, SDL hashes to {actual}",
                        info.sha256
                    ));
                }
                problems.extend(schema::validate_sdl(
                    &stored.sdl,
                    &format!("schema_v{}.graphql", info.version),
                ));
            }
            Err(e) => problems.push(format!("{:#}", anyhow!(e))),
        }
        if !problems.is_empty() {
            failed += 1;
        }
        reports.push((name, info, problems));
    }
    if format == OutputFormat::Json {
        let list: Vec<serde_json::Value> = reports
            .iter()
            .map(|(_, info, problems)| {
                json!({
                    "version": info.version,
                    "active": info.is_active,
                    "ok": problems.is_empty(),
                    "problems": problems,
                })
            })
            .collect();
        print_json(&json!({"ok": failed == 0, "versions": list}))?;
        return Ok(if failed == 0 { exit::SUCCESS } else { exit::USAGE });
    }
    if versions.is_empty() {
        print("No schema versions stored")?;
        return Ok(exit::SUCCESS);
    }
    for (name, _, problems) in &reports {
        if problems.is_empty() {
            print(&format!("{name}: ok"))?;
        } else {
            print_problems(name, problems)?;
        }
    }
    if failed == 0 {
        print(&format!("All {} version(s) valid", versions.len()))?;
        Ok(exit::SUCCESS)
    } else {
        print(&format!("{failed} of {} version(s) failed validation", versions.len()))?;
        Ok(exit::USAGE)
    }
}

/// The next patch version after `base` that is not taken.
fn next_patch(base: &semver::Version, taken: &HashSet<String>) -> semver::Version {
    let mut next = semver::Version::new(base.major, base.minor, base.patch + 1);
    while taken.contains(&next.to_string()) {
        next.patch += 1;
    }
    next
}

async fn refresh(
    ctx: &Ctx,
    store: &SchemaStore,
    captured: Loaded,
    origin: &str,
    activate: bool,
    format: OutputFormat,
) -> Result<u8, Fail> {
    let versions = store.list().await?;
    let base: Option<VersionInfo> =
        versions.iter().find(|v| v.is_active).or_else(|| versions.last()).cloned();
    let taken: HashSet<String> = versions.iter().map(|v| v.version.clone()).collect();
    let (version, description, counts) = match &base {
        None => (semver::Version::new(1, 0, 0), format!("captured from {origin}"), None),
        Some(base) => {
            let stored = store.get(&parse_version(&base.version)?).await?;
            let old = schema::load(stored.sdl.as_bytes(), &base.version).map_err(Fail::usage)?;
            let changes = diff::diff_and_simplify(&old.model, &captured.model);
            if changes.is_empty() {
                if format == OutputFormat::Json {
                    print_json(&json!({
                        "changed": false,
                        "version": base.version,
                        "base": base.version,
                    }))?;
                } else {
                    print(&format!(
                        "The running schema is unchanged since version {}",
                        base.version
                    ))?;
                }
                return Ok(exit::SUCCESS);
            }
            let c = Counts::of(&changes);
            let base_version = base.semver().ok_or_else(|| {
                Fail::failed(anyhow!("stored version `{}` is not a semantic version", base.version))
            })?;
            (
                next_patch(&base_version, &taken),
                format!(
                    "captured from {origin}: {} breaking, {} dangerous, {} safe change(s) since {}",
                    c.breaking, c.dangerous, c.safe, base.version
                ),
                Some(c),
            )
        }
    };
    let extra = json!({
        "changed": true,
        "base": base.as_ref().map(|b| b.version.clone()),
        "counts": counts,
    });
    let new = New {
        version,
        description: Some(description),
        loaded: captured,
        origin: origin.to_owned(),
        activate,
    };
    create(ctx, store, new, format, Some(extra)).await
}

/// The old tool's free-text versions, made semantic where the intent is clear (`1.2` → `1.2.0`).
fn legacy_version(raw: &str) -> Option<semver::Version> {
    if let Ok(v) = parse_version(raw) {
        return Some(v);
    }
    let bare = raw.trim().trim_start_matches(['v', 'V']);
    let parts: Vec<&str> = bare.split('.').collect();
    if (1..=2).contains(&parts.len())
        && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        let padded = format!("{bare}{}", ".0".repeat(3 - parts.len()));
        return parse_version(&padded).ok();
    }
    None
}

async fn import_legacy(
    ctx: &Ctx,
    store: &SchemaStore,
    rows: Vec<rail_core::schema_store::LegacyVersion>,
    dir: &Path,
    format: OutputFormat,
) -> Result<u8, Fail> {
    if rows.is_empty() {
        if format == OutputFormat::Json {
            print_json(&json!({
                "imported": [], "already_present": [], "failed": [], "activated": null,
            }))?;
        } else {
            print(&format!("The legacy table {LEGACY_TABLE} is empty; nothing to import"))?;
        }
        return Ok(exit::SUCCESS);
    }
    let mut imported: Vec<String> = Vec::new();
    let mut present: Vec<String> = Vec::new();
    // (the old version string, why it was not imported)
    let mut failed: Vec<(String, String)> = Vec::new();
    let mut fail = |raw: &str, reason: String| {
        ctx.warn(&format!("skipped legacy version `{raw}`: {reason}"));
        failed.push((raw.to_owned(), reason));
    };
    let mut activate: Option<semver::Version> = None;
    let by = settings::actor();
    for row in &rows {
        let raw = &row.version;
        let Some(version) = legacy_version(raw) else {
            fail(raw, "not a semantic version".to_owned());
            continue;
        };
        // The old tool named files after the raw version; only plain file names are followed.
        if raw.is_empty() || raw.contains(['/', '\\', '\0']) || raw == "." || raw == ".." {
            fail(raw, "unsafe file name".to_owned());
            continue;
        }
        let path = dir.join(format!("schema_v{raw}.graphql"));
        let sdl = match read_bytes(&path).and_then(|b| {
            String::from_utf8(b)
                .map_err(|_| Fail::usage(anyhow!("{} is not valid UTF-8", path.display())))
        }) {
            Ok(sdl) => sdl,
            Err(e) => {
                fail(raw, format!("{:#}", e.error));
                continue;
            }
        };
        let sha = sha256_hex(&sdl);
        match store.get(&version).await {
            Ok(existing) if existing.info.sha256 == sha => {
                present.push(version.to_string());
                if row.is_active {
                    activate.get_or_insert(version);
                }
                continue;
            }
            Ok(_) => {
                fail(raw, format!("version {version} already exists with a different schema"));
                continue;
            }
            Err(SchemaStoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        if !row.schema_hash.is_empty() && !row.schema_hash.eq_ignore_ascii_case(&sha) {
            ctx.warn(&format!(
                "legacy version `{raw}`: its file does not match the recorded hash (imported anyway)"
            ));
        }
        let metadata = json!({
            "imported_from": LEGACY_TABLE,
            "legacy_version": raw,
            "legacy_schema_hash": row.schema_hash,
            "legacy_hash_matches": row.schema_hash.eq_ignore_ascii_case(&sha),
            "migration_files": row.migration_files,
            "rollback_instructions": row.rollback_instructions,
            "legacy_metadata": row.metadata,
        });
        store
            .create(NewVersion {
                version: version.clone(),
                description: row.description.clone(),
                sdl,
                created_by: if row.created_by.is_empty() {
                    by.clone()
                } else {
                    row.created_by.clone()
                },
                created_at: Some(row.created_at),
                metadata,
                activate: None,
            })
            .await?;
        imported.push(version.to_string());
        if row.is_active {
            activate = Some(version);
        }
    }
    let mut activated = None;
    if let Some(version) = activate {
        match store.active().await? {
            None => {
                store.activate(&version, ActivationReason::Import, &by).await?;
                if format != OutputFormat::Json {
                    print(&format!(
                        "Activated schema version {version}, active in the legacy table"
                    ))?;
                }
                activated = Some(version.to_string());
            }
            Some(active) if active.info.version != version.to_string() => ctx.warn(&format!(
                "kept the active version {}; the legacy table had {version} active",
                active.info.version
            )),
            Some(_) => {}
        }
    }
    if format == OutputFormat::Json {
        let failed: Vec<serde_json::Value> =
            failed.iter().map(|(v, why)| json!({"version": v, "reason": why})).collect();
        print_json(&json!({
            "imported": imported,
            "already_present": present,
            "failed": failed,
            "activated": activated,
        }))?;
    } else {
        print(&format!(
            "Imported {} legacy version(s); {} already present, {} could not be imported",
            imported.len(),
            present.len(),
            failed.len()
        ))?;
    }
    Ok(if failed.is_empty() { exit::SUCCESS } else { exit::FAILED })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_versions_are_normalised_when_clear() {
        assert_eq!(legacy_version("1.2").unwrap().to_string(), "1.2.0");
        assert_eq!(legacy_version("v2").unwrap().to_string(), "2.0.0");
        assert_eq!(legacy_version("1.2.3").unwrap().to_string(), "1.2.3");
        assert!(legacy_version("backup-20240101-120000").is_none());
        assert!(legacy_version("../../etc").is_none());
    }

    #[test]
    fn next_patch_skips_taken_versions() {
        let taken: HashSet<String> = ["1.2.1".to_owned()].into_iter().collect();
        let base = semver::Version::parse("1.2.0-rc.1").unwrap();
        assert_eq!(next_patch(&base, &taken).to_string(), "1.2.2");
    }
}
