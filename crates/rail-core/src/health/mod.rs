//! Health checks of everything the app depends on: `database`, `redis`, `application`, `graphql`,
//! `filesystem`, `performance` and `maintenance`.
//!
//! [`run_checks`] runs the selected checks concurrently on the caller's tokio runtime, each under its own
//! timeout, and returns a [`Report`] whose JSON form keeps the older health script's shape. A check whose
//! dependency is not configured (no `DATABASE_URL`…) is skipped and listed as such, never failed. A check
//! never returns an error: a dependency that refuses, hangs or answers nonsense is a `critical` result
//! with a message saying which. `healthcheck` renders the report; `deploy` and `rollback` run the same
//! checks as post-checks (sending the maintenance bypass header through [`RunOptions::extra_headers`]).

mod checks;
pub mod http;

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use crate::config::{BackupConfig, Config, LatencyThresholds};
use crate::secret::{redact_url, scrub, Secret};

/// The checks, in the order they are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CheckName {
    Database,
    Redis,
    Application,
    Graphql,
    Filesystem,
    Performance,
    Maintenance,
    /// The age of the newest off-site set. Runs only when asked for (`--check backups`): it lists the
    /// bucket, which a container's probe every 30 s should not.
    Backups,
}

impl CheckName {
    /// Every check, in report order.
    pub const ALL: [CheckName; 8] = [
        Self::Database,
        Self::Redis,
        Self::Application,
        Self::Graphql,
        Self::Filesystem,
        Self::Performance,
        Self::Maintenance,
        Self::Backups,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Database => "database",
            Self::Redis => "redis",
            Self::Application => "application",
            Self::Graphql => "graphql",
            Self::Filesystem => "filesystem",
            Self::Performance => "performance",
            Self::Maintenance => "maintenance",
            Self::Backups => "backups",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for CheckName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for CheckName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl FromStr for CheckName {
    type Err = HealthError;

    /// A check name, also in the older tools' spellings (`graphql_endpoint`, `app`, `db`).
    fn from_str(raw: &str) -> Result<Self, HealthError> {
        let name = raw.trim().to_ascii_lowercase().replace('-', "_");
        let found = match name.as_str() {
            "database" | "db" | "postgres" | "postgresql" => Self::Database,
            "redis" | "cache" => Self::Redis,
            "application" | "app" | "http" => Self::Application,
            "graphql" | "graphql_endpoint" => Self::Graphql,
            "filesystem" | "disk" | "fs" => Self::Filesystem,
            "performance" | "perf" => Self::Performance,
            "maintenance" => Self::Maintenance,
            "backups" | "backup" | "offsite" => Self::Backups,
            _ => {
                let suggestion = Self::ALL
                    .iter()
                    .map(|c| (strsim::jaro_winkler(&name, c.as_str()), c.as_str()))
                    .filter(|(score, _)| *score > 0.8)
                    .max_by(|a, b| a.0.total_cmp(&b.0))
                    .map(|(_, c)| c.to_owned());
                return Err(HealthError::UnknownCheck { name: raw.to_owned(), suggestion });
            }
        };
        Ok(found)
    }
}

/// Parse a list of check names (command line, `deploy.health_checks`), dropping repeats.
pub fn parse_selection<S: AsRef<str>>(names: &[S]) -> Result<Vec<CheckName>, HealthError> {
    let mut out: Vec<CheckName> = Vec::new();
    for raw in names {
        // `--check database,redis` is accepted as well as repeated flags.
        for part in raw.as_ref().split(',').filter(|p| !p.trim().is_empty()) {
            let name: CheckName = part.parse()?;
            if !out.contains(&name) {
                out.push(name);
            }
        }
    }
    Ok(out)
}

/// Status of one check, and of a whole report (the worst of its checks). Ordered: healthy < warning <
/// critical.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Healthy,
    Warning,
    Critical,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }

    /// 0 healthy, 1 warning, 2 critical: the value of the Prometheus status gauges.
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A number a check measured, exported as a Prometheus gauge `rail_health_<name>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Gauge {
    /// Metric name after the `rail_health_` prefix, e.g. `database_connections`.
    pub name: &'static str,
    pub help: &'static str,
    /// Extra labels besides `check` (e.g. the path of a filesystem).
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

/// The result of one check.
#[derive(Debug, Clone)]
pub struct CheckResult {
    pub name: CheckName,
    pub status: Status,
    /// One line for humans, without secrets.
    pub message: String,
    /// Measurements and facts (latency_ms, connections, paths…), without secrets.
    pub details: Map<String, Value>,
    /// Wall time of the check.
    pub duration: Duration,
    /// The latency of the dependency's answer, when it answered (what `performance` weighs).
    pub latency: Option<Duration>,
    pub timestamp: DateTime<Utc>,
    pub gauges: Vec<Gauge>,
}

impl Serialize for CheckResult {
    /// The older script's shape: name, status, message, details, duration_ms, timestamp.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("CheckResult", 6)?;
        st.serialize_field("name", &self.name)?;
        st.serialize_field("status", &self.status)?;
        st.serialize_field("message", &self.message)?;
        st.serialize_field("details", &self.details)?;
        st.serialize_field("duration_ms", &millis(self.duration))?;
        st.serialize_field("timestamp", &rfc3339(self.timestamp))?;
        st.end()
    }
}

/// A check that did not run because what it checks is not configured.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub name: CheckName,
    /// What to set to enable it.
    pub reason: String,
}

/// The outcome of one run of the checks.
#[derive(Debug, Clone)]
pub struct Report {
    /// The worst status of the checks that ran (healthy when none ran).
    pub overall: Status,
    pub timestamp: DateTime<Utc>,
    /// In report order ([`CheckName::ALL`]).
    pub checks: Vec<CheckResult>,
    pub skipped: Vec<Skipped>,
    pub total_duration: Duration,
}

impl Report {
    /// How many checks ended in `status`.
    pub fn count(&self, status: Status) -> usize {
        self.checks.iter().filter(|c| c.status == status).count()
    }

    /// True when a check is critical: the run fails (exit 1, Docker marks the container unhealthy).
    pub fn is_critical(&self) -> bool {
        self.overall == Status::Critical
    }

    pub fn get(&self, name: CheckName) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// The critical checks as `name: message`, joined by `; `: what a failure message quotes.
    pub fn critical_summary(&self) -> String {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Critical)
            .map(|c| format!("{}: {}", c.name.as_str(), c.message))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl Serialize for Report {
    /// The older script's shape, plus `skipped_checks`.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(10))?;
        m.serialize_entry("overall_status", &self.overall)?;
        m.serialize_entry("timestamp", &rfc3339(self.timestamp))?;
        m.serialize_entry("total_checks", &self.checks.len())?;
        m.serialize_entry("healthy_checks", &self.count(Status::Healthy))?;
        m.serialize_entry("warning_checks", &self.count(Status::Warning))?;
        m.serialize_entry("critical_checks", &self.count(Status::Critical))?;
        m.serialize_entry("total_duration_ms", &millis(self.total_duration))?;
        m.serialize_entry("checks", &self.checks)?;
        m.serialize_entry("skipped_checks", &self.skipped)?;
        m.end()
    }
}

/// Milliseconds with two decimals, as the JSON output carries them.
pub fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 100_000.0).round() / 100.0
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// How a run differs from the configured defaults.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Timeout of every check, replacing the configured ones (`--timeout`).
    pub timeout: Option<Duration>,
    /// Headers sent by the application and graphql checks besides `health.headers`, e.g. the maintenance
    /// bypass header during a deploy. Values are secrets and never printed.
    pub extra_headers: Vec<(String, Secret)>,
}

/// Errors of choosing checks. Check failures are not errors: they are results.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HealthError {
    #[error(
        "unknown check `{name}`{}; the checks are database, redis, application, graphql, filesystem, performance, maintenance, backups",
        suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default()
    )]
    UnknownCheck { name: String, suggestion: Option<String> },
    #[error("the {name} check is not configured: {hint}")]
    NotConfigured { name: CheckName, hint: String },
    #[error("invalid {what} {value}")]
    BadSetting {
        what: &'static str,
        value: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Why `name` cannot run with `cfg`, or `None` when it can: what to set, naming the variable and key.
pub fn not_configured(cfg: &Config, name: CheckName) -> Option<String> {
    let missing = match name {
        CheckName::Database => cfg.database_url().is_none(),
        CheckName::Redis => cfg.redis.url.is_empty(),
        CheckName::Application => cfg.health_url().is_none(),
        CheckName::Graphql => cfg.graphql_url().is_none(),
        CheckName::Filesystem => filesystem_paths(cfg).is_empty(),
        CheckName::Performance => false,
        CheckName::Maintenance => {
            cfg.maintenance.flag_file.as_os_str().is_empty()
                && (cfg.redis.url.is_empty() || cfg.maintenance.redis_key.is_empty())
        }
        CheckName::Backups => !cfg.backup.remote.is_configured(),
    };
    missing.then(|| {
        match name {
            CheckName::Database => "set DATABASE_URL (or `database.url`, or `database.name` with host, port and user)",
            CheckName::Redis => "set REDIS_URL (or `redis.url`)",
            CheckName::Application => "set APP_URL (or `app.url`, or `app.health_url`)",
            CheckName::Graphql => "set GRAPHQL_URL or APP_URL (or `app.graphql_url`, or `app.url`)",
            CheckName::Filesystem => {
                "set `health.filesystem.paths`, or STATIC_ROOT, MEDIA_ROOT or RAIL_BACKUP_DIR (`app.static_dir`, `app.media_dir`, `backup.directory`)"
            }
            CheckName::Performance => unreachable!("performance needs no configuration"),
            CheckName::Maintenance => {
                "set RAIL_MAINTENANCE_FILE (`maintenance.flag_file`), or REDIS_URL for the `maintenance.redis_key` key"
            }
            CheckName::Backups => "set `backup.remote.url` (RAIL_BACKUP__REMOTE__URL)",
        }
        .to_owned()
    })
}

/// Check that the settings the selected checks use parse (URLs), so that a typo is a configuration
/// error (exit 2) instead of a critical check.
pub fn validate(cfg: &Config, selection: &[CheckName]) -> Result<(), HealthError> {
    let wanted = |n| {
        selection.is_empty()
            || selection.contains(&n)
            || selection.contains(&CheckName::Performance)
    };
    if wanted(CheckName::Database) {
        if let Some(url) = cfg.database_url() {
            crate::db::DbTarget::parse(&url).map_err(|e| HealthError::BadSetting {
                what: "database URL",
                value: redact_url(url.expose()),
                source: Box::new(e),
            })?;
        }
    }
    if wanted(CheckName::Redis) && !cfg.redis.url.is_empty() {
        crate::redis::redis::Client::open(cfg.redis.url.expose()).map_err(|e| {
            HealthError::BadSetting {
                what: "Redis URL",
                value: redact_url(cfg.redis.url.expose()),
                source: Box::new(e),
            }
        })?;
    }
    for (name, what, url) in [
        (CheckName::Application, "health URL", cfg.health_url()),
        (CheckName::Graphql, "GraphQL URL", cfg.graphql_url()),
    ] {
        if let (true, Some(url)) = (wanted(name), url) {
            match url::Url::parse(&url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
                Ok(_) => {
                    return Err(HealthError::BadSetting {
                        what,
                        value: redact_url(&url),
                        source: "only http:// and https:// URLs with a host are supported".into(),
                    })
                }
                Err(e) => {
                    return Err(HealthError::BadSetting {
                        what,
                        value: redact_url(&url),
                        source: Box::new(e),
                    })
                }
            }
        }
    }
    Ok(())
}

/// The timeout of check `name`: `--timeout`, else the check's own, else `health.timeout`.
pub fn check_timeout(cfg: &Config, name: CheckName, opts: &RunOptions) -> Duration {
    if let Some(t) = opts.timeout {
        return t;
    }
    let own = thresholds(cfg, name).and_then(|t| t.timeout);
    own.unwrap_or(cfg.health.timeout).get()
}

/// The latency thresholds of the checks that have them.
pub fn thresholds(cfg: &Config, name: CheckName) -> Option<&LatencyThresholds> {
    match name {
        CheckName::Database => Some(&cfg.health.database),
        CheckName::Redis => Some(&cfg.health.redis),
        CheckName::Application => Some(&cfg.health.application),
        CheckName::Graphql => Some(&cfg.health.graphql),
        _ => None,
    }
}

/// The directories the filesystem check looks at: `health.filesystem.paths`, else the app's static and
/// media directories and the backup directory. The built-in default backup directory (`backups`,
/// relative to wherever the tool runs) is only looked at when configured, so a container probe run from
/// `/` does not fail on a directory nobody asked for.
pub fn filesystem_paths(cfg: &Config) -> Vec<PathBuf> {
    if !cfg.health.filesystem.paths.is_empty() {
        return cfg.health.filesystem.paths.clone();
    }
    let mut out = Vec::new();
    for p in [&cfg.app.static_dir, &cfg.app.media_dir] {
        if !p.as_os_str().is_empty() && !out.contains(p) {
            out.push(p.clone());
        }
    }
    let backup = &cfg.backup.directory;
    if !backup.as_os_str().is_empty()
        && *backup != BackupConfig::default().directory
        && !out.contains(backup)
    {
        out.push(backup.clone());
    }
    out
}

/// What one check found, before timing is added.
#[derive(Debug, Default)]
struct Outcome {
    status: Status,
    message: String,
    details: Map<String, Value>,
    latency: Option<Duration>,
    gauges: Vec<Gauge>,
}

impl Outcome {
    fn new(status: Status, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), ..Self::default() }
    }

    fn critical(message: impl Into<String>) -> Self {
        Self::new(Status::Critical, message)
    }

    fn detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.details.insert(key.to_owned(), value.into());
    }

    fn gauge(&mut self, name: &'static str, help: &'static str, value: f64) {
        self.gauges.push(Gauge { name, help, labels: Vec::new(), value });
    }

    /// Raise the status to at least `status`, putting `reason` first in the message.
    fn escalate(&mut self, status: Status, reason: &str) {
        if status > self.status {
            self.status = status;
            self.message = if self.message.is_empty() {
                reason.to_owned()
            } else {
                format!("{reason}; {}", self.message)
            };
        }
    }
}

/// Run a check under its timeout and stamp it.
async fn timed(
    name: CheckName,
    timeout: Duration,
    fut: impl Future<Output = Outcome>,
) -> CheckResult {
    let timestamp = Utc::now();
    let started = Instant::now();
    // Boxed: the checks' futures (a PostgreSQL connection set-up above all) are large, and seven of them
    // are joined.
    let outcome = match tokio::time::timeout(timeout, Box::pin(fut)).await {
        Ok(outcome) => outcome,
        Err(_) => Outcome::critical(format!(
            "no answer within {}",
            crate::config::human_duration(timeout)
        ))
        .detail("timeout_ms", millis(timeout)),
    };
    CheckResult {
        name,
        status: outcome.status,
        message: outcome.message,
        details: outcome.details,
        duration: started.elapsed(),
        latency: outcome.latency,
        timestamp,
        gauges: outcome.gauges,
    }
}

/// Run the selected checks (all when `selection` is empty) concurrently and report.
///
/// Checks that are not configured are listed in [`Report::skipped`]. `performance` weighs the latencies
/// of the database, redis, application and graphql checks; when it is selected without them, they are
/// run for it but not reported.
pub async fn run_checks(cfg: &Config, selection: &[CheckName], opts: &RunOptions) -> Report {
    let timestamp = Utc::now();
    let started = Instant::now();
    // `backups` lists a bucket: only when asked for by name.
    let wanted: Vec<CheckName> =
        CheckName::ALL
            .into_iter()
            .filter(|n| {
                if selection.is_empty() {
                    *n != CheckName::Backups
                } else {
                    selection.contains(n)
                }
            })
            .collect();
    let mut skipped = Vec::new();
    let mut report_set = [false; CheckName::ALL.len()];
    for name in &wanted {
        match not_configured(cfg, *name) {
            Some(reason) => skipped.push(Skipped { name: *name, reason }),
            None => report_set[name.index()] = true,
        }
    }
    let mut run_set = report_set;
    if report_set[CheckName::Performance.index()] {
        for probe in
            [CheckName::Database, CheckName::Redis, CheckName::Application, CheckName::Graphql]
        {
            if not_configured(cfg, probe).is_none() {
                run_set[probe.index()] = true;
            }
        }
    }

    let mut headers: Vec<(String, Secret)> =
        cfg.health.headers.iter().map(|(k, v)| (k.clone(), Secret::new(v.clone()))).collect();
    headers.extend(opts.extra_headers.iter().cloned());
    let ctx = checks::Ctx { cfg, headers };
    let run = |name: CheckName| run_set[name.index()];
    let timeout = |name| check_timeout(cfg, name, opts);

    let (database, redis, application, graphql, filesystem, host, maintenance, backups) = tokio::join!(
        maybe(run(CheckName::Database), || timed(
            CheckName::Database,
            timeout(CheckName::Database),
            checks::database(&ctx, timeout(CheckName::Database))
        )),
        maybe(run(CheckName::Redis), || timed(
            CheckName::Redis,
            timeout(CheckName::Redis),
            checks::redis(&ctx, timeout(CheckName::Redis))
        )),
        maybe(run(CheckName::Application), || timed(
            CheckName::Application,
            timeout(CheckName::Application),
            checks::application(&ctx, timeout(CheckName::Application))
        )),
        maybe(run(CheckName::Graphql), || timed(
            CheckName::Graphql,
            timeout(CheckName::Graphql),
            checks::graphql(&ctx, timeout(CheckName::Graphql))
        )),
        maybe(run(CheckName::Filesystem), || timed(
            CheckName::Filesystem,
            timeout(CheckName::Filesystem),
            checks::filesystem(&ctx)
        )),
        maybe(run(CheckName::Performance), || async { checks::host_metrics().await }),
        maybe(run(CheckName::Maintenance), || timed(
            CheckName::Maintenance,
            timeout(CheckName::Maintenance),
            checks::maintenance(&ctx, timeout(CheckName::Maintenance), timeout(CheckName::Redis))
        )),
        maybe(run(CheckName::Backups), || timed(
            CheckName::Backups,
            timeout(CheckName::Backups),
            checks::backups(&ctx)
        )),
    );

    let performance = host.map(|host| {
        let timestamp = Utc::now();
        let probes: Vec<&CheckResult> =
            [&database, &redis, &application, &graphql].into_iter().flatten().collect();
        let outcome = checks::performance(&ctx, &host, &probes);
        CheckResult {
            name: CheckName::Performance,
            status: outcome.status,
            message: outcome.message,
            details: outcome.details,
            duration: started.elapsed(),
            latency: None,
            timestamp,
            gauges: outcome.gauges,
        }
    });

    let secrets = {
        // A connection URL without a password is not secret, and messages name their target by it.
        let plain = |u: &Secret| url::Url::parse(u.expose()).is_ok_and(|p| p.password().is_none());
        let mut s: Vec<Secret> = cfg
            .secrets()
            .into_iter()
            .filter(|x| !((*x == cfg.database.url || *x == cfg.redis.url) && plain(x)))
            .collect();
        s.extend(ctx.headers.iter().map(|(_, v)| v.clone()));
        s
    };
    let checks: Vec<CheckResult> =
        [database, redis, application, graphql, filesystem, performance, maintenance, backups]
            .into_iter()
            .flatten()
            .filter(|c| report_set[c.name.index()])
            .map(|mut c| {
                c.message = scrub(&c.message, &secrets);
                c
            })
            .collect();
    let overall = checks.iter().map(|c| c.status).max().unwrap_or_default();
    Report { overall, timestamp, checks, skipped, total_duration: started.elapsed() }
}

async fn maybe<F: Future>(enabled: bool, make: impl FnOnce() -> F) -> Option<F::Output> {
    if enabled {
        Some(make().await)
    } else {
        None
    }
}

#[cfg(test)]
mod tests;
