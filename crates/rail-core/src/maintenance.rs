//! Maintenance mode: the two signals that put the app into maintenance, written and removed by rail.
//!
//! The flag file (read by nginx and the app's middleware) and the Redis key (read by the middleware) carry
//! the same JSON document: `{"since", "run_id", "reason", "expires_at", "bypass_token"}`, times in RFC 3339
//! UTC. Both carry an expiry, so a deploy killed half-way cannot leave the site down for ever: the key
//! has a Redis TTL, and the app ignores a flag file whose `expires_at` has passed (nginx only sees that
//! the file exists, which is why [`disable`] removes it and `healthcheck` reports a leftover one).
//!
//! The bypass token lets rail's own post-deploy checks through while the site is closed; it is a secret
//! and never printed. A Redis outage while maintenance goes on is a warning, not a failure, when the flag
//! file is configured: the flag file alone closes the site.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::redis::redis;
use crate::secret::Secret;

/// The header that lets a request through maintenance when it carries the bypass token.
pub const BYPASS_HEADER: &str = "X-Rail-Maintenance-Bypass";

/// The flag file is world-readable: nginx runs as another user.
const FLAG_MODE: u32 = 0o644;
/// A flag file larger than this is not a flag file rail wrote.
const MAX_FLAG_BYTES: u64 = 64 * 1024;

/// Errors of switching maintenance mode.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MaintenanceError {
    #[error(
        "maintenance mode has no signal to use: set maintenance.flag_file, or redis.url and maintenance.redis_key"
    )]
    NotConfigured,
    #[error("cannot write the maintenance flag file {path}")]
    WriteFlag {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot remove the maintenance flag file {path}")]
    RemoveFlag {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the maintenance flag file {path}")]
    ReadFlag {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot reach Redis for the maintenance key `{key}`")]
    RedisConnect {
        key: String,
        #[source]
        source: crate::redis::RedisError,
    },
    #[error("Redis failed on the maintenance key `{key}`")]
    RedisCommand {
        key: String,
        #[source]
        source: redis::RedisError,
    },
    #[error("Redis did not answer within {} on the maintenance key `{key}`", crate::config::human_duration(*after))]
    RedisTimeout { key: String, after: Duration },
}

/// The document both signals carry.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Document {
    since: String,
    run_id: String,
    reason: String,
    expires_at: String,
    bypass_token: String,
}

/// Maintenance as [`enable`] turned it on.
#[derive(Debug, Clone)]
pub struct MaintenanceState {
    pub since: DateTime<Utc>,
    pub run_id: String,
    pub reason: String,
    pub expires_at: DateTime<Utc>,
    /// Sent in [`BYPASS_HEADER`] by rail's own checks; never shown.
    pub bypass_token: Secret,
    /// The flag file written, when one is configured.
    pub flag_file: Option<PathBuf>,
    /// Whether the Redis key was set.
    pub redis_key_set: bool,
    /// What did not work but did not stop maintenance from going on (Redis down while the flag file
    /// was written).
    pub warnings: Vec<String>,
}

/// Which signal says the site is in maintenance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    File,
    Redis,
    Both,
}

/// Maintenance as found by [`status`].
#[derive(Debug, Clone, Serialize)]
pub struct MaintenanceInfo {
    pub since: Option<DateTime<Utc>>,
    pub run_id: Option<String>,
    pub reason: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Only an expired flag file is left: the app serves normally (nginx still answers 503 until the
    /// file is removed).
    pub expired: bool,
    pub source: Source,
    /// Why the flag file could not be read; the app then treats the site as closed (fail closed).
    pub problem: Option<String>,
    #[serde(skip)]
    pub bypass_token: Option<Secret>,
}

impl MaintenanceInfo {
    /// Whether the app is in maintenance because of this.
    pub fn is_on(&self) -> bool {
        !self.expired
    }

    /// On for longer than `stale_after` (`maintenance.stale_after`): a deploy probably died in it.
    pub fn is_stale(&self, stale_after: Duration, now: DateTime<Utc>) -> bool {
        let limit = chrono::Duration::from_std(stale_after).unwrap_or(chrono::Duration::MAX);
        self.since.is_some_and(|since| now - since > limit) || self.expired
    }
}

/// What [`status`] found, and what it could not look at.
#[derive(Debug, Clone, Default)]
pub struct MaintenanceStatus {
    /// `None` when neither signal is there.
    pub info: Option<MaintenanceInfo>,
    pub warnings: Vec<String>,
}

impl MaintenanceStatus {
    /// Whether the app is in maintenance.
    pub fn is_on(&self) -> bool {
        self.info.as_ref().is_some_and(MaintenanceInfo::is_on)
    }
}

/// The header name and value that let a request through maintenance.
pub fn bypass_header(state: &MaintenanceState) -> (&'static str, Secret) {
    (BYPASS_HEADER, state.bypass_token.clone())
}

/// Where the signals are, from the configuration.
struct Signals<'a> {
    flag_file: Option<&'a Path>,
    redis: Option<(&'a Secret, &'a str)>,
    timeout: Duration,
}

impl<'a> Signals<'a> {
    fn of(config: &'a Config) -> Self {
        let m = &config.maintenance;
        let flag_file = (!m.flag_file.as_os_str().is_empty()).then_some(m.flag_file.as_path());
        let redis = (!m.redis_key.is_empty() && !config.redis.url.is_empty())
            .then_some((&config.redis.url, m.redis_key.as_str()));
        Self { flag_file, redis, timeout: config.redis.connect_timeout.get() }
    }
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn new_token() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Put the app into maintenance for at most `ttl`: write the flag file (atomically, 0644) and set the Redis
/// key with the same TTL, each when configured. Fails when no signal could be set.
pub async fn enable(
    config: &Config,
    run_id: &str,
    reason: &str,
    ttl: Duration,
) -> Result<MaintenanceState, MaintenanceError> {
    let signals = Signals::of(config);
    if signals.flag_file.is_none() && signals.redis.is_none() {
        return Err(MaintenanceError::NotConfigured);
    }
    // Whole seconds: that is what the Redis TTL and the documents carry.
    let ttl = Duration::from_secs(ttl.as_secs().max(1));
    let since = Utc::now();
    let since = since - chrono::Duration::nanoseconds(i64::from(since.timestamp_subsec_nanos()));
    let expires_at = since + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
    let token = new_token();
    let document = Document {
        since: rfc3339(since),
        run_id: run_id.to_owned(),
        reason: reason.to_owned(),
        expires_at: rfc3339(expires_at),
        bypass_token: token.clone(),
    };
    let json = serde_json::to_string(&document).expect("the maintenance document serializes");

    if let Some(path) = signals.flag_file {
        write_flag(path, json.as_bytes())
            .map_err(|source| MaintenanceError::WriteFlag { path: path.to_owned(), source })?;
        tracing::info!(path = %path.display(), run_id, until = %document.expires_at, "maintenance flag file written");
    }
    let mut warnings = Vec::new();
    let mut redis_key_set = false;
    if let Some((url, key)) = signals.redis {
        let set = with_redis(url, key, signals.timeout, |mut conn| {
            let json = json.clone();
            async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(json)
                    .arg("EX")
                    .arg(ttl.as_secs())
                    .query_async::<()>(&mut conn)
                    .await
            }
        })
        .await;
        match set {
            Ok(()) => {
                redis_key_set = true;
                tracing::info!(key, run_id, until = %document.expires_at, "maintenance key set in Redis");
            }
            Err(err) if signals.flag_file.is_some() => {
                let warning = format!(
                    "{}; maintenance is on through the flag file only",
                    crate::notify::error_chain(&err)
                );
                tracing::warn!("{warning}");
                warnings.push(warning);
            }
            Err(err) => return Err(err),
        }
    }
    Ok(MaintenanceState {
        since,
        run_id: run_id.to_owned(),
        reason: reason.to_owned(),
        expires_at,
        bypass_token: Secret::new(token),
        flag_file: signals.flag_file.map(Path::to_owned),
        redis_key_set,
        warnings,
    })
}

/// End maintenance: remove the flag file and delete the Redis key. A key that cannot be deleted (Redis
/// down) is a warning when the flag file is configured, since the key expires by itself; the returned
/// list holds such warnings.
pub async fn disable(config: &Config) -> Result<Vec<String>, MaintenanceError> {
    let signals = Signals::of(config);
    if signals.flag_file.is_none() && signals.redis.is_none() {
        return Err(MaintenanceError::NotConfigured);
    }
    if let Some(path) = signals.flag_file {
        if remove_flag(path)
            .map_err(|source| MaintenanceError::RemoveFlag { path: path.to_owned(), source })?
        {
            tracing::info!(path = %path.display(), "maintenance flag file removed");
        }
    }
    let mut warnings = Vec::new();
    if let Some((url, key)) = signals.redis {
        let deleted = with_redis(url, key, signals.timeout, |mut conn| async move {
            redis::cmd("DEL").arg(key).query_async::<u64>(&mut conn).await
        })
        .await;
        match deleted {
            Ok(n) => {
                if n > 0 {
                    tracing::info!(key, "maintenance key deleted from Redis");
                }
            }
            Err(err) if signals.flag_file.is_some() => {
                let warning = format!(
                    "{}; the key expires by itself within maintenance.ttl, and the app ignores it while Redis is down",
                    crate::notify::error_chain(&err)
                );
                tracing::warn!("{warning}");
                warnings.push(warning);
            }
            Err(err) => return Err(err),
        }
    }
    Ok(warnings)
}

/// Whether the app is in maintenance, and since when and why. It follows the app's rules: an expired flag
/// file does not count (it is reported with `expired`), an unreadable one does, and a Redis outage counts
/// as no key (with a warning) unless Redis is the only signal, which is an error.
pub async fn status(config: &Config) -> Result<MaintenanceStatus, MaintenanceError> {
    let signals = Signals::of(config);
    let now = Utc::now();
    let file = match signals.flag_file {
        Some(path) => read_flag(path)
            .map_err(|source| MaintenanceError::ReadFlag { path: path.to_owned(), source })?,
        None => None,
    };
    let mut warnings = Vec::new();
    let mut key: Option<(Option<Document>, Option<i64>)> = None;
    if let Some((url, name)) = signals.redis {
        let found = with_redis(url, name, signals.timeout, |mut conn| async move {
            let (value, ttl): (Option<String>, i64) = redis::pipe()
                .cmd("GET")
                .arg(name)
                .cmd("TTL")
                .arg(name)
                .query_async(&mut conn)
                .await?;
            Ok((value, ttl))
        })
        .await;
        match found {
            Ok((Some(value), ttl)) => {
                key = Some((serde_json::from_str(&value).ok(), (ttl > 0).then_some(ttl)));
            }
            Ok((None, _)) => {}
            Err(err) if signals.flag_file.is_some() => {
                let warning = format!(
                    "{}; the app treats the key as absent",
                    crate::notify::error_chain(&err)
                );
                tracing::warn!("{warning}");
                warnings.push(warning);
            }
            Err(err) => return Err(err),
        }
    }
    Ok(MaintenanceStatus { info: combine(file, key, now), warnings })
}

/// What the flag file holds: its document (or why it could not be parsed).
enum Flag {
    Parsed(Document),
    Garbled(String),
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text.trim()).ok().map(|t| t.with_timezone(&Utc))
}

/// The status from what each signal holds, by the app's rules.
fn combine(
    file: Option<Flag>,
    key: Option<(Option<Document>, Option<i64>)>,
    now: DateTime<Utc>,
) -> Option<MaintenanceInfo> {
    let from_doc = |doc: &Document, source| MaintenanceInfo {
        since: parse_time(&doc.since),
        run_id: Some(doc.run_id.clone()),
        reason: Some(doc.reason.clone()),
        expires_at: parse_time(&doc.expires_at),
        expired: false,
        source,
        problem: None,
        bypass_token: (!doc.bypass_token.is_empty()).then(|| Secret::new(&doc.bypass_token)),
    };
    let file_info = file.map(|flag| match flag {
        Flag::Parsed(doc) => {
            let mut info = from_doc(&doc, Source::File);
            // Like the app: a missing expiry never ends by itself, an unparsable one counts as on.
            info.expired = info.expires_at.is_some_and(|at| at <= now);
            if info.expires_at.is_none() && !doc.expires_at.is_empty() {
                info.problem = Some("invalid expires_at".into());
            }
            info
        }
        Flag::Garbled(problem) => MaintenanceInfo {
            since: None,
            run_id: None,
            reason: None,
            expires_at: None,
            expired: false,
            source: Source::File,
            problem: Some(problem),
            bypass_token: None,
        },
    });
    let key_info = key.map(|(doc, ttl)| {
        let mut info = match &doc {
            Some(doc) => from_doc(doc, Source::Redis),
            None => MaintenanceInfo {
                since: None,
                run_id: None,
                reason: None,
                expires_at: None,
                expired: false,
                source: Source::Redis,
                problem: Some("the maintenance key's value is not a JSON document".into()),
                bypass_token: None,
            },
        };
        if let Some(ttl) = ttl {
            info.expires_at = Some(now + chrono::Duration::seconds(ttl));
        }
        info
    });
    match (file_info, key_info) {
        (Some(file), Some(key)) if file.is_on() => Some(MaintenanceInfo {
            source: Source::Both,
            // The later of the two expiries is when the site opens again.
            expires_at: file.expires_at.max(key.expires_at),
            problem: file.problem.or(key.problem),
            ..file
        }),
        (Some(_), Some(key)) => Some(key),
        (file, key) => file.or(key),
    }
}

/// Write `contents` to `path` so that readers see the old file or the new one, never part of one: a
/// temporary file beside it, fsynced, mode 0644, renamed over it, then the directory fsynced.
fn write_flag(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = parent_dir(path);
    fs_err::create_dir_all(dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}-{}", std::process::id(), new_token()));
    let result = (|| {
        let mut file = fs_err::File::create(&tmp)?;
        file.write_all(contents)?;
        // Explicitly, whatever the umask: nginx reads the file as another user.
        file.file().set_permissions(std::fs::Permissions::from_mode(FLAG_MODE))?;
        file.sync_all()?;
        fs_err::rename(&tmp, path)?;
        fs_err::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs_err::remove_file(&tmp);
    }
    result
}

/// Remove the flag file; `false` when there was none.
fn remove_flag(path: &Path) -> std::io::Result<bool> {
    match fs_err::remove_file(path) {
        Ok(()) => {
            fs_err::File::open(parent_dir(path))?.sync_all()?;
            Ok(true)
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(err),
    }
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// The flag file's document; `None` when there is no file. A file that exists but cannot be parsed is
/// [`Flag::Garbled`] (the app fails closed on it); one that cannot be read at all is an error.
fn read_flag(path: &Path) -> std::io::Result<Option<Flag>> {
    let meta = match fs_err::metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    if meta.len() > MAX_FLAG_BYTES {
        return Ok(Some(Flag::Garbled("flag file too large".into())));
    }
    let bytes = match fs_err::read(path) {
        Ok(bytes) => bytes,
        // Removed between the two calls: maintenance just ended.
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    Ok(Some(match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(value) if value.is_object() => Flag::Parsed(document_from(&value)),
        Ok(_) => Flag::Garbled("flag file is not a JSON object".into()),
        Err(_) => Flag::Garbled("unreadable flag file".into()),
    }))
}

/// A document from a JSON object whose fields may be missing or of another type (written by hand).
fn document_from(value: &serde_json::Value) -> Document {
    let field =
        |name: &str| value.get(name).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
    Document {
        since: field("since"),
        run_id: field("run_id"),
        reason: field("reason"),
        expires_at: field("expires_at"),
        bypass_token: field("bypass_token"),
    }
}

/// Connect and run one operation on the maintenance key, all within `timeout`.
async fn with_redis<T, F, Fut>(
    url: &Secret,
    key: &str,
    timeout: Duration,
    op: F,
) -> Result<T, MaintenanceError>
where
    F: FnOnce(redis::aio::MultiplexedConnection) -> Fut,
    Fut: std::future::Future<Output = Result<T, redis::RedisError>>,
{
    let conn = crate::redis::connect(url, timeout)
        .await
        .map_err(|source| MaintenanceError::RedisConnect { key: key.to_owned(), source })?;
    match tokio::time::timeout(timeout, op(conn)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(source)) => Err(MaintenanceError::RedisCommand { key: key.to_owned(), source }),
        Err(_) => Err(MaintenanceError::RedisTimeout { key: key.to_owned(), after: timeout }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(expires_at: &str) -> Document {
        Document {
            since: "2024-01-15T14:30:22Z".into(),
            run_id: "run-1".into(),
            reason: "deploy v2".into(),
            expires_at: expires_at.into(),
            bypass_token: "0123456789abcdef0123456789abcdef".into(),
        }
    }

    fn at(text: &str) -> DateTime<Utc> {
        parse_time(text).unwrap()
    }

    #[test]
    fn a_live_flag_file_is_on() {
        let info = combine(
            Some(Flag::Parsed(doc("2024-01-15T15:00:00Z"))),
            None,
            at("2024-01-15T14:40:00Z"),
        )
        .unwrap();
        assert!(info.is_on());
        assert_eq!(info.source, Source::File);
        assert_eq!(info.run_id.as_deref(), Some("run-1"));
        assert_eq!(info.since, Some(at("2024-01-15T14:30:22Z")));
        assert_eq!(info.bypass_token.unwrap().expose(), "0123456789abcdef0123456789abcdef");
    }

    #[test]
    fn an_expired_flag_file_is_off_but_reported() {
        let info = combine(
            Some(Flag::Parsed(doc("2024-01-15T15:00:00Z"))),
            None,
            at("2024-01-15T15:00:01Z"),
        )
        .unwrap();
        assert!(info.expired && !info.is_on());
        assert!(info.is_stale(Duration::from_secs(3600), at("2024-01-15T15:00:01Z")));
    }

    #[test]
    fn a_garbled_flag_file_fails_closed() {
        let info =
            combine(Some(Flag::Garbled("unreadable flag file".into())), None, Utc::now()).unwrap();
        assert!(info.is_on());
        assert_eq!(info.problem.as_deref(), Some("unreadable flag file"));
        let bad_time = combine(Some(Flag::Parsed(doc("tomorrow"))), None, Utc::now()).unwrap();
        assert!(bad_time.is_on());
        assert_eq!(bad_time.problem.as_deref(), Some("invalid expires_at"));
    }

    #[test]
    fn both_signals_combine_and_the_key_outlives_an_expired_file() {
        let now = at("2024-01-15T14:40:00Z");
        let both = combine(
            Some(Flag::Parsed(doc("2024-01-15T15:00:00Z"))),
            Some((Some(doc("2024-01-15T15:00:00Z")), Some(1800))),
            now,
        )
        .unwrap();
        assert_eq!(both.source, Source::Both);
        assert_eq!(both.expires_at, Some(at("2024-01-15T15:10:00Z")));
        let key_only = combine(
            Some(Flag::Parsed(doc("2024-01-15T14:00:00Z"))),
            Some((Some(doc("2024-01-15T15:00:00Z")), Some(60))),
            now,
        )
        .unwrap();
        assert_eq!(key_only.source, Source::Redis);
        assert!(key_only.is_on());
        assert!(combine(None, None, now).is_none());
    }

    #[test]
    fn stale_after_since() {
        let info = combine(
            Some(Flag::Parsed(doc("2024-01-16T00:00:00Z"))),
            None,
            at("2024-01-15T14:40:00Z"),
        )
        .unwrap();
        assert!(!info.is_stale(Duration::from_secs(3600), at("2024-01-15T15:00:00Z")));
        assert!(info.is_stale(Duration::from_secs(3600), at("2024-01-15T15:31:00Z")));
    }

    #[test]
    fn tokens_are_32_hex_chars_and_differ() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn the_bypass_token_is_not_serialized() {
        let info =
            combine(Some(Flag::Parsed(doc("2024-01-15T15:00:00Z"))), None, Utc::now()).unwrap();
        let json = serde_json::to_string(&info).unwrap();
        assert!(!json.contains("0123456789abcdef"), "{json}");
    }
}
