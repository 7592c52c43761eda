//! Configuration: built-in defaults < file < `.env.<environment>` / `.env` < process environment < flags.
//!
//! Each layer is turned into a JSON tree; the trees are merged key by key, every key is checked against
//! the model (an unknown key is an error naming the key, where it came from and the closest known key),
//! and the result is deserialized into [`Config`] with the path of any bad value in the error.
//! Files are TOML (`deploy-configs/<environment>.toml`) or the older tools' JSON, unchanged.
//! String values in files may use `${VAR}` and `${VAR:-default}`, read from the dotenv and process layers.

mod legacy;
mod model;
mod units;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

pub use model::*;
pub use units::{human_duration, ByteSize, HumanDuration};

use crate::secret::Secret;

/// Configuration files larger than this are refused before they are parsed.
pub const MAX_FILE_SIZE: u64 = 1024 * 1024;
/// Environment variable naming the directory of per-environment files (default `deploy-configs`).
pub const ENV_CONFIG_DIR: &str = "RAIL_CONFIG_DIR";
/// The environment used when none is given.
pub const DEFAULT_ENVIRONMENT: &str = "production";

/// Conventional variable names and the keys they set. `RAIL_<SECTION>__<KEY>` sets any other key.
pub const ENV_KEYS: &[(&str, &str)] = &[
    ("DATABASE_URL", "database.url"),
    ("REDIS_URL", "redis.url"),
    ("SECRET_KEY", "app.secret_key"),
    ("APP_URL", "app.url"),
    ("GRAPHQL_URL", "app.graphql_url"),
    ("STATIC_ROOT", "app.static_dir"),
    ("MEDIA_ROOT", "app.media_dir"),
    ("RAIL_MAINTENANCE_FILE", "maintenance.flag_file"),
    ("RAIL_MAINTENANCE_KEY", "maintenance.redis_key"),
    ("RAIL_BACKUP_DIR", "backup.directory"),
    ("RAIL_BACKUP_KEY", "backup.key"),
    ("RAIL_BACKUP_KEY_FILE", "backup.key_file"),
];

/// Where a value came from, for error messages and `--dry-run` plans.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "lowercase")]
pub enum Origin {
    Default,
    File(PathBuf),
    Dotenv(PathBuf),
    Env(String),
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("the built-in default"),
            Origin::File(p) | Origin::Dotenv(p) => write!(f, "{}", p.display()),
            Origin::Env(v) => write!(f, "environment variable {v}"),
            Origin::Flag(n) => write!(f, "flag --{n}"),
        }
    }
}

/// Errors of loading a configuration. Each names the key and where its value came from.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read configuration file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("configuration file {} is {size} bytes; configuration files are limited to {MAX_FILE_SIZE} bytes", path.display())]
    TooLarge { path: PathBuf, size: u64 },
    #[error("configuration file {} is not valid {format}", path.display())]
    Parse {
        path: PathBuf,
        format: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("configuration file {} must hold a table of settings at the top level", path.display())]
    NotATable { path: PathBuf },
    #[error("unknown key `{key}` in {origin}{}", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    UnknownKey { key: String, origin: Origin, suggestion: Option<String> },
    #[error("invalid value for `{key}` in {origin}: {message}")]
    InvalidValue { key: String, origin: Origin, message: String },
    #[error("`{key}` in {origin} uses ${{{var}}}, but {var} is not set (set it, or write ${{{var}:-default}})")]
    UnsetVariable { key: String, origin: Origin, var: String },
    #[error("`{key}` in {origin}: unterminated ${{ in \"{value}\"")]
    BadInterpolation { key: String, origin: Origin, value: String },
    #[error("invalid environment variable {var}: {message}")]
    BadEnv { var: String, message: String },
    #[error("cannot read {}", path.display())]
    Dotenv {
        path: PathBuf,
        #[source]
        source: dotenvy::Error,
    },
    #[error("{key} is not set; set it in {places}")]
    Missing { key: String, places: String },
    #[error("backup.directory `{}` (from {origin}) {problem}", dir.display())]
    BackupDirectory { dir: PathBuf, origin: Origin, problem: String },
    #[error("--environment {environment}: no configuration for it; looked for {} (a typo? otherwise create one of them, or pass --config FILE)", list_paths(looked))]
    UnknownEnvironment { environment: String, looked: Vec<PathBuf> },
    #[error("{command} changes the live system, but nothing configures one: no configuration file, no dotenv file and no setting in the environment (looked for {}); pass --config FILE or --environment ENV, or set DATABASE_URL and the rest in the environment", list_paths(looked))]
    DefaultsOnly { command: String, looked: Vec<PathBuf> },
}

fn list_paths(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// What to load. [`LoadOptions::default`] reads the process environment.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--environment`; default `RAIL_ENVIRONMENT`, then [`DEFAULT_ENVIRONMENT`]. An environment given
    /// here must have a configuration file or a `.env.<environment>` file (unless `config_file` is set).
    pub environment: Option<String>,
    /// `--config FILE`; default `<config_dir>/<environment>.toml` when it exists.
    pub config_file: Option<PathBuf>,
    /// Directory of per-environment files; default `RAIL_CONFIG_DIR`, then `deploy-configs`.
    pub config_dir: Option<PathBuf>,
    /// Directory holding `.env` and `.env.<environment>`; default the current directory.
    pub dotenv_dir: Option<PathBuf>,
    /// The process environment; `None` reads the real one. Tests pass their own.
    pub env: Option<BTreeMap<String, String>>,
    /// Values from command-line flags: (dotted key, flag name, value).
    pub overrides: Vec<(String, String, Value)>,
}

impl LoadOptions {
    /// Options from the shared `--config` / `--environment` flags.
    pub fn from_args(args: &crate::cli::ConfigArgs) -> Self {
        Self {
            environment: args.environment.clone(),
            config_file: args.config.clone(),
            ..Self::default()
        }
    }

    /// Add a command-line override of `key`.
    #[must_use]
    pub fn with_override(mut self, key: &str, flag: &str, value: impl Into<Value>) -> Self {
        self.overrides.push((key.to_owned(), flag.to_owned(), value.into()));
        self
    }
}

/// A loaded configuration and where each of its values came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// The configuration file read, if any.
    pub file: Option<PathBuf>,
    /// Dotted key → origin, for every key set by something other than the defaults.
    pub origins: BTreeMap<String, Origin>,
    /// The files looked for (configuration file, dotenv files), found or not.
    pub looked: Vec<PathBuf>,
}

impl Loaded {
    /// Where `key` came from.
    pub fn origin(&self, key: &str) -> Origin {
        self.origins.get(key).cloned().unwrap_or(Origin::Default)
    }

    /// The places a missing `key` could be set, for [`ConfigError::Missing`].
    pub fn places_for(&self, key: &str) -> String {
        let mut places = Vec::new();
        match &self.file {
            Some(file) => places.push(format!("`{key}` in {}", file.display())),
            None => places.push(format!("`{key}` in a configuration file (--config FILE or deploy-configs/<environment>.toml)")),
        }
        for (var, k) in ENV_KEYS {
            if *k == key {
                places.push(format!("the environment variable {var}"));
            }
        }
        places.push(format!("the environment variable {}", env_var_for(key)));
        places.push(".env or .env.<environment>".into());
        places.join(", ")
    }

    /// A [`ConfigError::Missing`] for `key`.
    pub fn missing(&self, key: &str) -> ConfigError {
        ConfigError::Missing { key: key.to_owned(), places: self.places_for(key) }
    }

    /// Whether nothing but the built-in defaults says which system to act on: no configuration file
    /// and no key of the system's sections (`database`, `redis`, `app`, `services`, `backup.directory`)
    /// set by a dotenv file, the environment or a flag.
    pub fn defaults_only(&self) -> bool {
        self.file.is_none()
            && !self.origins.keys().any(|key| {
                ["database.", "redis.", "app.", "services."].iter().any(|p| key.starts_with(p))
                    || key == "backup.directory"
            })
    }

    /// Refuse a `command` that changes the live system when [`Self::defaults_only`]: a mistyped
    /// environment or a missing file must not act on built-in defaults.
    pub fn require_configured(&self, command: &str) -> Result<(), ConfigError> {
        if self.defaults_only() {
            return Err(ConfigError::DefaultsOnly {
                command: command.to_owned(),
                looked: self.looked.clone(),
            });
        }
        Ok(())
    }
}

/// Where the configuration's JSON Schema is kept, relative to the workspace root: written by
/// `cargo xtask docs`, referenced by the shipped TOML files (`#:schema`), checked current by a test.
pub const SCHEMA_PATH: &str = "docs/rail-config.schema.json";

/// The JSON Schema of a TOML configuration file, generated from [`Config`], pretty-printed with a
/// final newline. Editors that read `#:schema` (taplo, Even Better TOML) complete and check keys.
pub fn json_schema() -> String {
    let mut schema =
        serde_json::to_value(schemars::schema_for!(Config)).expect("a generated schema serializes");
    if let Value::Object(map) = &mut schema {
        map.insert("$id".into(), Value::String("rail-config.schema.json".into()));
        map.insert(
            "title".into(),
            Value::String("rail configuration (deploy-configs/<environment>.toml)".into()),
        );
    }
    drop_redacted_defaults(&mut schema);
    let mut text = serde_json::to_string_pretty(&schema).expect("JSON serializes");
    text.push('\n');
    text
}

/// A secret's default serializes as `***`: no default is better than a false one.
fn drop_redacted_defaults(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map.get("default").and_then(Value::as_str) == Some(crate::secret::REDACTED) {
                map.remove("default");
            }
            if let Some(default) = map.get_mut("default") {
                strip_redacted(default);
            }
            map.values_mut().for_each(drop_redacted_defaults);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_redacted_defaults),
        _ => {}
    }
}

fn strip_redacted(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| v.as_str() != Some(crate::secret::REDACTED));
            map.values_mut().for_each(strip_redacted);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_redacted),
        _ => {}
    }
}

/// The name a configuration value has in files (`checksums`, `releases`, `custom`), for messages:
/// never the Rust name of the variant.
pub fn value_name<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".to_owned(),
    }
}

/// The `RAIL_<SECTION>__<KEY>` variable that sets `key`.
pub fn env_var_for(key: &str) -> String {
    format!("RAIL_{}", key.replace('.', "__").to_uppercase())
}

impl Config {
    /// The database URL, built from `database.url` or from host, port, name, user and password.
    pub fn database_url(&self) -> Option<Secret> {
        if !self.database.url.is_empty() {
            return Some(self.database.url.clone());
        }
        if self.database.name.is_empty() {
            return None;
        }
        let db = &self.database;
        let mut url = url::Url::parse("postgresql://localhost").expect("static URL parses");
        let host = if db.host.is_empty() { "localhost" } else { db.host.as_str() };
        url.set_host(Some(host)).ok()?;
        url.set_port(Some(db.port)).ok()?;
        if !db.user.is_empty() {
            url.set_username(&db.user).ok()?;
        }
        if !db.password.is_empty() {
            url.set_password(Some(db.password.expose())).ok()?;
        }
        url.set_path(&db.name);
        Some(Secret::new(url.to_string()))
    }

    /// The health URL: `app.health_url`, or `<app.url>/health/`.
    pub fn health_url(&self) -> Option<String> {
        non_empty(&self.app.health_url).or_else(|| join_url(&self.app.url, "health/"))
    }

    /// The GraphQL URL: `app.graphql_url`, or `<app.url>/graphql/`.
    pub fn graphql_url(&self) -> Option<String> {
        non_empty(&self.app.graphql_url).or_else(|| join_url(&self.app.url, "graphql/"))
    }

    /// Every secret of the configuration, to scrub text that comes from outside.
    pub fn secrets(&self) -> Vec<Secret> {
        let mut out = vec![
            self.database.url.clone(),
            self.database.password.clone(),
            self.redis.url.clone(),
            self.app.secret_key.clone(),
            self.backup.key.clone(),
            self.notifications.slack.webhook_url.clone(),
            self.notifications.webhook.url.clone(),
            self.notifications.email.password.clone(),
            self.backup.remote.access_key_id.clone(),
            self.backup.remote.secret_access_key.clone(),
            self.backup.remote.session_token.clone(),
        ];
        // The standard AWS variables the remote falls back to, and the backup passphrase.
        for name in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"]
            .into_iter()
            .chain(Some(self.backup.remote.passphrase_env.as_str()).filter(|n| !n.is_empty()))
        {
            if let Ok(value) = std::env::var(name) {
                out.push(Secret::new(value));
            }
        }
        for value in self.notifications.webhook.headers.values() {
            out.push(value.clone());
            // `Bearer <token>`: the token alone may show up in a server's error text too.
            if let Some((_, token)) = value.expose().rsplit_once(' ') {
                out.push(Secret::new(token));
            }
        }
        for url in [&self.database.url, &self.redis.url] {
            if let Ok(parsed) = url::Url::parse(url.expose()) {
                if let Some(pw) = parsed.password() {
                    out.push(Secret::new(pw));
                    if let Ok(decoded) = urlencoding_decode(pw) {
                        out.push(Secret::new(decoded));
                    }
                }
            }
        }
        out.retain(|s| !s.is_empty());
        out
    }
}

fn urlencoding_decode(s: &str) -> Result<String, std::str::Utf8Error> {
    let bytes: Vec<u8> = url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned().into_bytes())
        .unwrap_or_default();
    String::from_utf8(bytes).map_err(|e| e.utf8_error())
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

fn join_url(base: &str, path: &str) -> Option<String> {
    if base.is_empty() {
        return None;
    }
    Some(format!("{}/{path}", base.trim_end_matches('/')))
}

/// Load the configuration.
pub fn load(opts: &LoadOptions) -> Result<Loaded, ConfigError> {
    let process_env: BTreeMap<String, String> = match &opts.env {
        Some(env) => env.clone(),
        None => std::env::vars().collect(),
    };
    let environment = opts
        .environment
        .clone()
        .or_else(|| process_env.get(crate::cli::ENV_ENVIRONMENT).cloned())
        .unwrap_or_else(|| DEFAULT_ENVIRONMENT.to_owned());
    validate_environment_name(&environment)?;

    // Dotenv files sit below the process environment: a variable set for real wins.
    let dotenv_dir = opts.dotenv_dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let mut env: BTreeMap<String, (String, Origin)> = BTreeMap::new();
    let own_env_file = dotenv_dir.join(format!(".env.{environment}"));
    for path in [dotenv_dir.join(".env"), own_env_file.clone()] {
        if path.is_file() {
            for item in dotenvy::from_path_iter(&path)
                .map_err(|source| ConfigError::Dotenv { path: path.clone(), source })?
            {
                let (k, v) =
                    item.map_err(|source| ConfigError::Dotenv { path: path.clone(), source })?;
                env.insert(k, (v, Origin::Dotenv(path.clone())));
            }
        }
    }
    for (k, v) in &process_env {
        env.insert(k.clone(), (v.clone(), Origin::Env(k.clone())));
    }

    let schema = schema_tree();
    let mut tree = Map::new();
    let mut origins = BTreeMap::new();

    // The per-environment file, looked for when no --config names one.
    let candidate = opts.config_file.is_none().then(|| {
        opts.config_dir
            .clone()
            .or_else(|| process_env.get(ENV_CONFIG_DIR).map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("deploy-configs"))
            .join(format!("{environment}.toml"))
    });
    let file = opts.config_file.clone().or_else(|| candidate.clone().filter(|c| c.is_file()));
    let looked: Vec<PathBuf> =
        candidate.into_iter().chain([dotenv_dir.join(".env"), own_env_file.clone()]).collect();
    // An environment named on the command line must name something: a typo (`-e prod`) would
    // otherwise plan and act on the built-in defaults.
    if opts.environment.is_some() && file.is_none() && !own_env_file.is_file() {
        let looked = looked.into_iter().filter(|p| *p != dotenv_dir.join(".env")).collect();
        return Err(ConfigError::UnknownEnvironment { environment, looked });
    }
    if let Some(path) = &file {
        let mut file_tree = read_file(path, &schema)?;
        let origin = Origin::File(path.clone());
        interpolate(&mut file_tree, "", &origin, &env)?;
        check_keys(&file_tree, &schema, "", &origin)?;
        overlay(&mut tree, file_tree, "", &origin, &mut origins);
    }

    // The environment layer: conventional names, then RAIL_<SECTION>__<KEY>.
    let mut env_tree = Map::new();
    let mut env_origins: Vec<(String, Origin)> = Vec::new();
    for (var, key) in ENV_KEYS {
        if let Some((value, origin)) = env.get(*var) {
            set_path(&mut env_tree, key, coerce(&schema, key, value, var)?);
            env_origins.push(((*key).to_owned(), origin.clone()));
        }
    }
    for (var, (value, origin)) in &env {
        let Some(rest) = var.strip_prefix("RAIL_") else { continue };
        if !rest.contains("__") {
            continue;
        }
        let key = rest.to_lowercase().replace("__", ".");
        if lookup(&schema, &key).is_none() && !is_free_form_parent(&schema, &key) {
            let suggestion = suggest_path(&schema, &key).map(|s| env_var_for(&s));
            return Err(ConfigError::UnknownKey {
                key: var.clone(),
                origin: origin.clone(),
                suggestion,
            });
        }
        set_path(&mut env_tree, &key, coerce(&schema, &key, value, var)?);
        env_origins.push((key, origin.clone()));
    }
    merge(&mut tree, env_tree);
    origins.extend(env_origins);

    for (key, flag, value) in &opts.overrides {
        set_path(&mut tree, key, value.clone());
        origins.insert(key.clone(), Origin::Flag(flag.clone()));
    }
    if !tree.contains_key("environment") {
        tree.insert("environment".into(), Value::String(environment.clone()));
    }

    let config: Config = serde_path_to_error::deserialize(Value::Object(tree)).map_err(|e| {
        let key = e.path().to_string();
        let origin = origins
            .get(&key)
            .cloned()
            .unwrap_or_else(|| file.clone().map_or(Origin::Default, Origin::File));
        ConfigError::InvalidValue { key, origin, message: e.into_inner().to_string() }
    })?;
    check_backup_directory(&config, &origins)?;
    Ok(Loaded { config, file, origins, looked })
}

/// Directories a backup directory may not be: the root, and the system's own.
const SYSTEM_DIRS: &[&str] = &[
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/media",
    "/mnt", "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var",
];
/// Trees no backup directory may be inside.
const SYSTEM_TREES: &[&str] = &[
    "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/proc", "/sbin", "/sys", "/usr",
];

/// The backup directory is where rail writes, prunes and restores from: it may not be a system
/// directory, nor inside or around a directory a deploy or restore replaces (static, media, releases),
/// where a swap would delete the sets or a prune the app's files.
fn check_backup_directory(
    config: &Config,
    origins: &BTreeMap<String, Origin>,
) -> Result<(), ConfigError> {
    let dir = &config.backup.directory;
    let fail = |problem: String| ConfigError::BackupDirectory {
        dir: dir.clone(),
        origin: origins.get("backup.directory").cloned().unwrap_or(Origin::Default),
        problem,
    };
    if dir.as_os_str().is_empty() {
        return Err(fail("is empty".into()));
    }
    let resolved = resolve_path(dir);
    let shown = resolved.display().to_string();
    if SYSTEM_DIRS.iter().any(|d| resolved == Path::new(d)) {
        return Err(fail(format!(
            "resolves to {shown}, a system directory: give backups a directory of their own"
        )));
    }
    if let Some(tree) = SYSTEM_TREES.iter().find(|t| resolved.starts_with(t)) {
        return Err(fail(format!(
            "resolves to {shown}, inside {tree}: give backups a directory of their own"
        )));
    }
    let releases = if config.services.releases.root.as_os_str().is_empty() {
        PathBuf::new()
    } else {
        config.services.releases.root.join("releases")
    };
    for (key, other) in [
        ("app.static_dir", &config.app.static_dir),
        ("app.media_dir", &config.app.media_dir),
        ("the releases directory (services.releases.root)", &releases),
    ] {
        if other.as_os_str().is_empty() {
            continue;
        }
        let other = resolve_path(other);
        let relation = if resolved == other {
            "is"
        } else if resolved.starts_with(&other) {
            "is inside"
        } else if other.starts_with(&resolved) {
            "contains"
        } else {
            continue;
        };
        return Err(fail(format!(
            "{relation} {key} ({}): a deploy or restore replaces that directory, and prune would take its folders for sets; keep backups apart",
            other.display()
        )));
    }
    Ok(())
}

/// `path` made absolute, `.` and `..` resolved, and symbolic links resolved as far as the path exists.
fn resolve_path(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let mut clean = PathBuf::new();
    for part in absolute.components() {
        match part {
            std::path::Component::ParentDir => {
                clean.pop();
            }
            std::path::Component::CurDir => {}
            other => clean.push(other),
        }
    }
    // The longest part that exists, with its links resolved, then the rest.
    let mut existing = clean.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = fs_err::canonicalize(existing) {
            let mut out = real;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = parent;
            }
            _ => return clean,
        }
    }
}

fn validate_environment_name(name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::BadEnv {
            var: "environment".into(),
            message: format!("`{name}` is not an environment name (letters, digits, - and _ only)"),
        })
    }
}

/// The model's keys as a tree: every key of [`Config::default`] serialized.
fn schema_tree() -> Map<String, Value> {
    match serde_json::to_value(Config::default()) {
        Ok(Value::Object(map)) => map,
        _ => unreachable!("Config serializes to an object"),
    }
}

fn read_file(path: &Path, schema: &Map<String, Value>) -> Result<Map<String, Value>, ConfigError> {
    let meta = fs_err::metadata(path)
        .map_err(|e| ConfigError::Read { path: path.to_owned(), source: e })?;
    if meta.len() > MAX_FILE_SIZE {
        return Err(ConfigError::TooLarge { path: path.to_owned(), size: meta.len() });
    }
    let text = fs_err::read_to_string(path)
        .map_err(|e| ConfigError::Read { path: path.to_owned(), source: e })?;
    let is_json = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let value: Value = if is_json {
        serde_json::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            format: "JSON",
            source: Box::new(e),
        })?
    } else {
        // toml's error quotes the offending line, which may hold a URL with its password.
        let table: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            format: "TOML",
            source: crate::secret::redact_credentials(&e.to_string()).into(),
        })?;
        serde_json::to_value(table).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            format: "TOML",
            source: Box::new(e),
        })?
    };
    let Value::Object(map) = value else {
        return Err(ConfigError::NotATable { path: path.to_owned() });
    };
    if !is_json {
        return Ok(map);
    }
    let native_keys: Vec<String> = schema.keys().cloned().collect();
    let kind = legacy::classify(&map, &native_keys);
    let translated = legacy::translate(kind, map);
    // Unknown keys of a legacy file are suggested against that file's own keys.
    if kind != legacy::JsonKind::Native {
        for key in translated.keys() {
            if !schema.contains_key(key) {
                let suggestion = best_match(key, legacy::legacy_key_hint(kind).iter().copied());
                return Err(ConfigError::UnknownKey {
                    key: key.clone(),
                    origin: Origin::File(path.to_owned()),
                    suggestion,
                });
            }
        }
    }
    Ok(translated)
}

/// Replace `${VAR}` and `${VAR:-default}` in every string of `tree`; `$$` is a literal `$`.
fn interpolate(
    tree: &mut Map<String, Value>,
    prefix: &str,
    origin: &Origin,
    env: &BTreeMap<String, (String, Origin)>,
) -> Result<(), ConfigError> {
    for (k, v) in tree.iter_mut() {
        let key = join_key(prefix, k);
        interpolate_value(v, &key, origin, env)?;
    }
    Ok(())
}

fn interpolate_value(
    v: &mut Value,
    key: &str,
    origin: &Origin,
    env: &BTreeMap<String, (String, Origin)>,
) -> Result<(), ConfigError> {
    match v {
        Value::String(s) if s.contains('$') => *s = expand(s, key, origin, env)?,
        Value::Array(items) => {
            for item in items {
                interpolate_value(item, key, origin, env)?;
            }
        }
        Value::Object(map) => interpolate(map, key, origin, env)?,
        _ => {}
    }
    Ok(())
}

fn expand(
    s: &str,
    key: &str,
    origin: &Origin,
    env: &BTreeMap<String, (String, Origin)>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(end) = body.find('}') else {
                return Err(ConfigError::BadInterpolation {
                    key: key.to_owned(),
                    origin: origin.clone(),
                    value: s.to_owned(),
                });
            };
            let expr = &body[..end];
            let (var, default) = match expr.split_once(":-") {
                Some((var, default)) => (var, Some(default)),
                None => (expr, None),
            };
            match (env.get(var), default) {
                (Some((value, _)), _) if !value.is_empty() || default.is_none() => {
                    out.push_str(value);
                }
                (_, Some(default)) => out.push_str(default),
                (None, None) => {
                    return Err(ConfigError::UnsetVariable {
                        key: key.to_owned(),
                        origin: origin.clone(),
                        var: var.to_owned(),
                    })
                }
                (Some(_), None) => unreachable!("covered by the first arm"),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Check every key of `tree` against `schema`, reporting the first unknown one.
fn check_keys(
    tree: &Map<String, Value>,
    schema: &Map<String, Value>,
    prefix: &str,
    origin: &Origin,
) -> Result<(), ConfigError> {
    for (k, v) in tree {
        let key = join_key(prefix, k);
        match schema.get(k) {
            None => {
                let suggestion =
                    best_match(k, schema.keys().map(String::as_str)).map(|s| join_key(prefix, &s));
                return Err(ConfigError::UnknownKey { key, origin: origin.clone(), suggestion });
            }
            Some(Value::Object(sub)) if !sub.is_empty() => {
                if let Value::Object(inner) = v {
                    check_keys(inner, sub, &key, origin)?;
                }
                // A non-table where a section is expected is reported by deserialization, with its type.
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn best_match<'a>(key: &str, candidates: impl Iterator<Item = &'a str>) -> Option<String> {
    candidates
        .map(|c| (strsim::jaro_winkler(key, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.to_owned())
}

fn suggest_path(schema: &Map<String, Value>, key: &str) -> Option<String> {
    let mut paths = Vec::new();
    collect_paths(schema, "", &mut paths);
    best_match(key, paths.iter().map(String::as_str))
}

fn collect_paths(schema: &Map<String, Value>, prefix: &str, out: &mut Vec<String>) {
    for (k, v) in schema {
        let key = join_key(prefix, k);
        if let Value::Object(sub) = v {
            if !sub.is_empty() {
                collect_paths(sub, &key, out);
                continue;
            }
        }
        out.push(key);
    }
}

fn lookup<'a>(schema: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    let mut parts = key.split('.');
    let mut node = schema.get(parts.next()?)?;
    for part in parts {
        node = node.as_object()?.get(part)?;
    }
    Some(node)
}

/// Whether `key` sits inside a free-form table (`app.env.FOO`, `health.headers.X-Token`).
fn is_free_form_parent(schema: &Map<String, Value>, key: &str) -> bool {
    key.rsplit_once('.')
        .and_then(|(parent, _)| lookup(schema, parent))
        .is_some_and(|v| v.as_object().is_some_and(Map::is_empty))
}

/// Turn an environment string into the type the model expects at `key`.
fn coerce(
    schema: &Map<String, Value>,
    key: &str,
    value: &str,
    var: &str,
) -> Result<Value, ConfigError> {
    let bad = |what: &str| ConfigError::BadEnv {
        var: var.to_owned(),
        message: format!("`{value}` is not {what}"),
    };
    Ok(match lookup(schema, key) {
        Some(Value::Bool(_)) => match value.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Value::Bool(true),
            "0" | "false" | "no" | "off" => Value::Bool(false),
            _ => return Err(bad("a boolean (true/false)")),
        },
        Some(Value::Number(n)) => if n.is_f64() {
            value
                .parse::<f64>()
                .ok()
                .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
        } else {
            value.parse::<i64>().ok().map(Value::from)
        }
        .ok_or_else(|| bad("a number"))?,
        Some(Value::Array(_)) => Value::Array(
            value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.into()))
                .collect(),
        ),
        Some(Value::Object(sub)) if !sub.is_empty() => {
            return Err(ConfigError::BadEnv {
                var: var.to_owned(),
                message: format!("`{key}` is a section; set one of its keys instead"),
            })
        }
        _ => Value::String(value.to_owned()),
    })
}

fn join_key(prefix: &str, k: &str) -> String {
    if prefix.is_empty() {
        k.to_owned()
    } else {
        format!("{prefix}.{k}")
    }
}

fn set_path(tree: &mut Map<String, Value>, key: &str, value: Value) {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().expect("split yields at least one part");
    let mut node = tree;
    for part in parts {
        let entry = node.entry(part.to_owned()).or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        node = entry.as_object_mut().expect("just made an object");
    }
    node.insert(last.to_owned(), value);
}

/// Merge `top` into `base`, table by table.
fn merge(base: &mut Map<String, Value>, top: Map<String, Value>) {
    for (k, v) in top {
        match (base.get_mut(&k), v) {
            (Some(Value::Object(b)), Value::Object(t)) => merge(b, t),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Merge `top` into `base` and record the origin of every leaf.
fn overlay(
    base: &mut Map<String, Value>,
    top: Map<String, Value>,
    prefix: &str,
    origin: &Origin,
    origins: &mut BTreeMap<String, Origin>,
) {
    record_origins(&top, prefix, origin, origins);
    merge(base, top);
}

fn record_origins(
    tree: &Map<String, Value>,
    prefix: &str,
    origin: &Origin,
    origins: &mut BTreeMap<String, Origin>,
) {
    for (k, v) in tree {
        let key = join_key(prefix, k);
        if let Value::Object(sub) = v {
            record_origins(sub, &key, origin, origins);
        }
        origins.insert(key, origin.clone());
    }
}

#[cfg(test)]
mod tests;
