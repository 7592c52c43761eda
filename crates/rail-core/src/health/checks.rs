//! The checks themselves. Each returns an [`Outcome`]; timing, timeouts and secret scrubbing are done by
//! the runner in `mod.rs`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::http::{self, Request};
use super::{millis, thresholds, CheckName, CheckResult, Gauge, Outcome, Status};
use crate::config::{Config, FilesystemCheck, LatencyThresholds};
use crate::db::DbTarget;
use crate::redis::redis;
use crate::secret::{redact_url, Secret};

/// Name the checks' database sessions carry in `pg_stat_activity`.
const APPLICATION_NAME: &str = "rail-healthcheck";
/// Largest maintenance document read (the app's middleware has the same limit).
const MAX_FLAG_BYTES: u64 = 64 * 1024;
/// One round trip: the liveness query, client connections, the limit and the server version.
const DATABASE_SQL: &str =
    "SELECT 1, (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'), \
     current_setting('max_connections'), current_setting('server_version')";

/// What the checks share: the configuration and the headers of HTTP checks.
pub(super) struct Ctx<'a> {
    pub(super) cfg: &'a Config,
    pub(super) headers: Vec<(String, Secret)>,
}

/// `3.2 ms`, `612 ms`, `2.31 s`.
fn fmt_duration(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}

fn fmt_threshold(d: Duration) -> String {
    crate::config::human_duration(d)
}

/// An error and its causes on one line, skipping a cause that repeats its parent's text.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut last = out.clone();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !text.is_empty() && !last.contains(&text) {
            let _ = write!(out, ": {text}");
        }
        last = text;
        source = cause.source();
    }
    out
}

/// Status of a latency against thresholds.
fn latency_status(latency: Duration, t: &LatencyThresholds) -> Status {
    if latency >= t.critical_latency.get() {
        Status::Critical
    } else if latency >= t.warning_latency.get() {
        Status::Warning
    } else {
        Status::Healthy
    }
}

/// Escalate `outcome` when `latency` crosses the thresholds of `name`.
fn apply_latency(outcome: &mut Outcome, latency: Duration, t: &LatencyThresholds) {
    let status = latency_status(latency, t);
    if status > Status::Healthy {
        let limit = if status == Status::Critical { t.critical_latency } else { t.warning_latency };
        // The message already says how long the answer took; the reason says by how much that is too long.
        outcome.escalate(status, &format!("slow ({status} over {})", fmt_threshold(limit.get())));
    }
}

/// Status of a percentage against warning and critical levels.
fn percent_status(value: f64, warning: f64, critical: f64) -> Status {
    if value >= critical {
        Status::Critical
    } else if value >= warning {
        Status::Warning
    } else {
        Status::Healthy
    }
}

pub(super) async fn database(ctx: &Ctx<'_>, timeout: Duration) -> Outcome {
    let Some(url) = ctx.cfg.database_url() else {
        return Outcome::critical("the database is not configured");
    };
    let target = match DbTarget::parse(&url) {
        Ok(t) => t,
        Err(e) => return Outcome::critical(error_chain(&e)),
    };
    let started = Instant::now();
    let client = match target.connect(timeout, APPLICATION_NAME).await {
        Ok(c) => c,
        Err(e) => return Outcome::critical(error_chain(&e)).detail("target", target.to_string()),
    };
    let connect = started.elapsed();
    let rows = client.simple_query(DATABASE_SQL).await;
    let latency = started.elapsed();
    let mut out = Outcome::default().detail("target", target.to_string());
    out.latency = Some(latency);
    out.set("latency_ms", millis(latency));
    out.set("connect_ms", millis(connect));
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => {
            out.escalate(
                Status::Critical,
                &format!("connected, but the query failed: {}", error_chain(&e)),
            );
            return out;
        }
    };
    let Some(row) = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
        _ => None,
    }) else {
        out.escalate(Status::Critical, "SELECT 1 returned no row");
        return out;
    };
    let get = |i: usize| row.get(i).unwrap_or_default();
    if get(0) != "1" {
        out.escalate(Status::Critical, &format!("SELECT 1 returned {:?}", get(0)));
        return out;
    }
    let connections: f64 = get(1).parse().unwrap_or(0.0);
    let max_connections: f64 = get(2).parse().unwrap_or(0.0);
    let version = get(3).split_whitespace().next().unwrap_or_default().to_owned();
    out.set("server_version", version.clone());
    out.set("connections", connections);
    out.set("max_connections", max_connections);
    out.gauge("database_connections", "Client connections to the PostgreSQL server.", connections);
    out.gauge(
        "database_max_connections",
        "max_connections of the PostgreSQL server.",
        max_connections,
    );
    let mut message =
        format!("PostgreSQL {version} answered SELECT 1 in {}", fmt_duration(latency));
    if max_connections > 0.0 {
        let pct = connections / max_connections * 100.0;
        out.set("connections_percent", (pct * 10.0).round() / 10.0);
        let _ = write!(message, "; {connections} of {max_connections} connections in use");
        let h = &ctx.cfg.health;
        let status =
            percent_status(pct, h.connections_warning_percent, h.connections_critical_percent);
        out.message = message;
        if status > Status::Healthy {
            out.escalate(status, &format!("{pct:.0}% of max_connections in use"));
        }
    } else {
        out.message = message;
    }
    apply_latency(&mut out, latency, &ctx.cfg.health.database);
    out
}

pub(super) async fn redis(ctx: &Ctx<'_>, timeout: Duration) -> Outcome {
    let url = &ctx.cfg.redis.url;
    let target = redact_url(url.expose());
    let started = Instant::now();
    let mut conn = match redis_connect(url, timeout).await {
        Ok(c) => c,
        Err(e) => return Outcome::critical(e).detail("target", target),
    };
    let connect = started.elapsed();
    let pong: Result<String, _> = redis::cmd("PING").query_async(&mut conn).await;
    let latency = started.elapsed();
    let mut out = Outcome::default().detail("target", target.clone());
    out.latency = Some(latency);
    out.set("latency_ms", millis(latency));
    out.set("connect_ms", millis(connect));
    match pong {
        Ok(p) if p == "PONG" => {}
        Ok(other) => {
            out.escalate(Status::Critical, &format!("PING answered {other:?} instead of PONG"));
            return out;
        }
        Err(e) => {
            out.escalate(Status::Critical, &format!("PING failed: {}", error_chain(&e)));
            return out;
        }
    }
    let mut message = format!("PING answered in {}", fmt_duration(latency));
    match redis::cmd("INFO").arg("memory").query_async::<String>(&mut conn).await {
        Ok(info) => {
            let field = |key: &str| {
                info.lines().find_map(|l| {
                    l.strip_prefix(key)?.strip_prefix(':')?.trim().parse::<f64>().ok()
                })
            };
            let used = field("used_memory").unwrap_or(0.0);
            let max = field("maxmemory").unwrap_or(0.0);
            out.set("used_memory", used);
            out.set("maxmemory", max);
            out.gauge("redis_used_memory_bytes", "Memory used by Redis.", used);
            out.gauge("redis_maxmemory_bytes", "maxmemory of Redis (0: no limit).", max);
            let _ = write!(message, "; {} used", crate::config::ByteSize(used as u64));
            if max > 0.0 {
                let pct = used / max * 100.0;
                out.set("memory_percent", (pct * 10.0).round() / 10.0);
                let _ = write!(
                    message,
                    " of {} maxmemory ({pct:.0}%)",
                    crate::config::ByteSize(max as u64)
                );
                out.message = message;
                let h = &ctx.cfg.health;
                let status =
                    percent_status(pct, h.memory_warning_percent, h.memory_critical_percent);
                if status > Status::Healthy {
                    out.escalate(status, &format!("{pct:.0}% of maxmemory in use"));
                }
            } else {
                out.message = message;
            }
        }
        Err(e) => {
            // PING passed: the server is up; INFO may be renamed away (rename-command) on managed Redis.
            out.set("info_error", error_chain(&e));
            out.message = message;
        }
    }
    apply_latency(&mut out, latency, &ctx.cfg.health.redis);
    out
}

/// One Redis connection whose set-up and every command wait up to `timeout`. redis-rs' own defaults (1 s
/// to connect, 500 ms per command) would cut the configured timeouts short, so they are replaced.
async fn redis_connect(
    url: &Secret,
    timeout: Duration,
) -> Result<redis::aio::MultiplexedConnection, String> {
    use crate::redis::RedisError;
    let target = redact_url(url.expose());
    let client = redis::Client::open(url.expose())
        .map_err(|source| error_chain(&RedisError::BadUrl { url: target.clone(), source }))?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    match tokio::time::timeout(
        timeout,
        client.get_multiplexed_async_connection_with_config(&config),
    )
    .await
    {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(source)) if source.is_timeout() => {
            Err(error_chain(&RedisError::Timeout { target, after: timeout }))
        }
        Ok(Err(source)) => Err(error_chain(&RedisError::Connect { target, source })),
        Err(_) => Err(error_chain(&RedisError::Timeout { target, after: timeout })),
    }
}

/// Statuses a health endpoint may report in its JSON `status` field.
fn app_status(value: &str) -> Status {
    match value.to_ascii_lowercase().as_str() {
        "ok" | "healthy" | "pass" | "passing" | "up" | "green" => Status::Healthy,
        "warn" | "warning" | "degraded" | "yellow" => Status::Warning,
        _ => Status::Critical,
    }
}

/// The failing parts an app lists in its health JSON (`checks: {name: {status, message}}`).
fn failing_parts(body: &Value) -> Vec<String> {
    let Some(checks) = body.get("checks").and_then(Value::as_object) else { return Vec::new() };
    checks
        .iter()
        .filter_map(|(name, check)| {
            let status = check.get("status").and_then(Value::as_str).unwrap_or("ok");
            (app_status(status) > Status::Healthy).then(|| {
                match check.get("message").and_then(Value::as_str) {
                    Some(msg) => format!("{name}: {msg}"),
                    None => format!("{name}: {status}"),
                }
            })
        })
        .collect()
}

/// A maintenance answer from nginx or the app: 503 with `{"status": "maintenance"}`.
fn is_maintenance(resp: &http::Response, body: Option<&Value>) -> bool {
    resp.status == 503
        && body.and_then(|b| b.get("status")).and_then(Value::as_str) == Some("maintenance")
}

pub(super) async fn application(ctx: &Ctx<'_>, timeout: Duration) -> Outcome {
    let Some(url) = ctx.cfg.health_url() else {
        return Outcome::critical("the application is not configured");
    };
    let shown = redact_url(&url);
    let started = Instant::now();
    let req = Request { method: "GET", url: &url, headers: &ctx.headers, body: None, timeout };
    let resp = match http::send(&req).await {
        Ok(r) => r,
        Err(e) => return Outcome::critical(error_chain(&e)).detail("url", shown),
    };
    let latency = started.elapsed();
    let body = resp.json();
    let mut out = Outcome::default().detail("url", shown.clone());
    out.latency = Some(latency);
    out.set("http_status", resp.status);
    out.set("latency_ms", millis(latency));
    let reported =
        body.as_ref().and_then(|b| b.get("status")).and_then(Value::as_str).map(str::to_owned);
    if let Some(b) = &body {
        for key in ["release", "version"] {
            if let Some(v) = b.get(key).filter(|v| v.is_string() || v.is_number()) {
                out.set(key, v.clone());
            }
        }
        if let Some(m) = b.get("maintenance").filter(|m| !m.is_null()) {
            // The demo app's health JSON reports maintenance without its bypass token; keep only known keys.
            let mut kept = Map::new();
            for key in ["active", "since", "run_id", "reason", "expires_at", "sources"] {
                if let Some(v) = m.get(key) {
                    kept.insert(key.to_owned(), v.clone());
                }
            }
            out.set("maintenance", Value::Object(kept));
        }
        if let Some(s) = &reported {
            out.set("app_status", s.clone());
        }
    }
    let parts = body.as_ref().map(failing_parts).unwrap_or_default();
    if !parts.is_empty() {
        out.set("failing", parts.clone());
    }
    let mut suffix = String::new();
    if let Some(s) = &reported {
        let _ = write!(suffix, ", status {s:?}");
    }
    if !parts.is_empty() {
        let _ = write!(suffix, " ({})", parts.join("; "));
    }
    if !(200..300).contains(&resp.status) {
        out.status = Status::Critical;
        out.message =
            format!("HTTP {} from {shown} in {}{suffix}", resp.status, fmt_duration(latency));
        // Redirects are not followed: a health URL that moved must be configured where it went.
        if let Some(location) =
            resp.header("location").filter(|_| (300..400).contains(&resp.status))
        {
            let _ = write!(
                out.message,
                " (redirects to {}; set app.health_url to it)",
                redact_url(location)
            );
        }
        return out;
    }
    out.message = format!("HTTP {} in {}{suffix}", resp.status, fmt_duration(latency));
    if let Some(s) = &reported {
        let status = app_status(s);
        if status > Status::Healthy {
            out.status = status;
            let message = body.as_ref().and_then(|b| b.get("message")).and_then(Value::as_str);
            if let Some(m) = message {
                let _ = write!(out.message, ": {m}");
            }
        }
    }
    apply_latency(&mut out, latency, &ctx.cfg.health.application);
    out
}

pub(super) async fn graphql(ctx: &Ctx<'_>, timeout: Duration) -> Outcome {
    let Some(url) = ctx.cfg.graphql_url() else {
        return Outcome::critical("the GraphQL endpoint is not configured");
    };
    let shown = redact_url(&url);
    let payload = json!({ "query": ctx.cfg.health.graphql_query }).to_string();
    let started = Instant::now();
    let req = Request {
        method: "POST",
        url: &url,
        headers: &ctx.headers,
        body: Some(("application/json", payload.as_bytes())),
        timeout,
    };
    let resp = match http::send(&req).await {
        Ok(r) => r,
        Err(e) => return Outcome::critical(error_chain(&e)).detail("url", shown),
    };
    let latency = started.elapsed();
    let body = resp.json();
    let mut out = Outcome::default().detail("url", shown.clone());
    out.latency = Some(latency);
    out.set("http_status", resp.status);
    out.set("latency_ms", millis(latency));
    if is_maintenance(&resp, body.as_ref()) {
        out.status = Status::Warning;
        out.message = format!(
            "in maintenance: HTTP 503 from {shown} (it answers again when maintenance ends)"
        );
        out.set("maintenance", true);
        return out;
    }
    let errors: Vec<String> = body
        .as_ref()
        .and_then(|b| b.get("errors"))
        .and_then(Value::as_array)
        .map(|errs| {
            errs.iter()
                .map(|e| {
                    e.get("message")
                        .and_then(Value::as_str)
                        .map_or_else(|| e.to_string(), str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default();
    if !errors.is_empty() {
        out.set("errors", errors.clone());
    }
    if resp.status != 200 {
        out.status = Status::Critical;
        out.message = format!("HTTP {} from {shown} in {}", resp.status, fmt_duration(latency));
        if let Some(first) = errors.first() {
            let _ = write!(out.message, ": {first}");
        }
        return out;
    }
    let Some(body) = body else {
        out.status = Status::Critical;
        out.message = format!("HTTP 200 from {shown}, but the body is not JSON");
        return out;
    };
    if let Some(first) = errors.first() {
        out.status = Status::Critical;
        out.message = format!(
            "the query {:?} returned {} error(s): {first}",
            ctx.cfg.health.graphql_query,
            errors.len()
        );
        return out;
    }
    if body.get("data").is_none_or(Value::is_null) {
        out.status = Status::Critical;
        "the answer has no `data`".clone_into(&mut out.message);
        return out;
    }
    out.message = format!("query answered in {}", fmt_duration(latency));
    apply_latency(&mut out, latency, &ctx.cfg.health.graphql);
    out
}

pub(super) async fn filesystem(ctx: &Ctx<'_>) -> Outcome {
    let paths = super::filesystem_paths(ctx.cfg);
    let limits = ctx.cfg.health.filesystem.clone();
    // statvfs and file creation block (a hung NFS mount blocks for good): off the runtime's thread, so the
    // timeout still ends the check.
    match tokio::task::spawn_blocking(move || check_paths(&paths, &limits)).await {
        Ok(out) => out,
        Err(e) => Outcome::critical(format!("the filesystem check failed: {e}")),
    }
}

fn check_paths(paths: &[PathBuf], limits: &FilesystemCheck) -> Outcome {
    let mut out = Outcome::default();
    let mut entries = Vec::new();
    let mut problems: Vec<(Status, String)> = Vec::new();
    let mut least_free: Option<(f64, String)> = None;
    for path in paths {
        let shown = path.display().to_string();
        let mut entry = Map::new();
        entry.insert("path".into(), shown.clone().into());
        match fs_err::metadata(path) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                problems.push((Status::Critical, format!("{shown} is not a directory")));
                entry.insert("error".into(), "not a directory".into());
                entries.push(Value::Object(entry));
                continue;
            }
            Err(e) => {
                let what = if e.kind() == std::io::ErrorKind::NotFound {
                    "does not exist".to_owned()
                } else {
                    io_reason(&e)
                };
                problems.push((Status::Critical, format!("{shown} {what}")));
                entry.insert("error".into(), what.into());
                entries.push(Value::Object(entry));
                continue;
            }
        }
        match probe_write(path) {
            Ok(()) => {
                entry.insert("writable".into(), true.into());
            }
            Err(e) => {
                entry.insert("writable".into(), false.into());
                problems.push((
                    Status::Critical,
                    format!("{shown} is not writable ({})", io_reason(&e)),
                ));
            }
        }
        match nix::sys::statvfs::statvfs(path) {
            Ok(st) => {
                let frsize = st.fragment_size();
                let free = st.blocks_available() * frsize;
                let total = st.blocks() * frsize;
                let pct = if total > 0 { free as f64 / total as f64 * 100.0 } else { 100.0 };
                entry.insert("free_bytes".into(), free.into());
                entry.insert("total_bytes".into(), total.into());
                entry.insert("free_percent".into(), ((pct * 10.0).round() / 10.0).into());
                out.gauges.push(Gauge {
                    name: "filesystem_free_bytes",
                    help: "Free space available to the tools on the filesystem of a checked directory.",
                    labels: vec![("path", shown.clone())],
                    value: free as f64,
                });
                out.gauges.push(Gauge {
                    name: "filesystem_size_bytes",
                    help: "Size of the filesystem of a checked directory.",
                    labels: vec![("path", shown.clone())],
                    value: total as f64,
                });
                let free_text = format!("{} free ({pct:.0}%)", crate::config::ByteSize(free));
                if free < limits.min_free_space.bytes() {
                    problems.push((
                        Status::Critical,
                        format!(
                            "{shown}: {free_text}, below the floor of {}",
                            limits.min_free_space
                        ),
                    ));
                } else if pct < limits.min_free_percent {
                    problems.push((
                        Status::Critical,
                        format!("{shown}: {free_text}, below {}%", limits.min_free_percent),
                    ));
                } else if pct < limits.warning_free_percent {
                    problems.push((
                        Status::Warning,
                        format!("{shown}: {free_text}, below {}%", limits.warning_free_percent),
                    ));
                }
                if least_free.as_ref().is_none_or(|(p, _)| pct < *p) {
                    least_free = Some((pct, format!("{shown} has {free_text}")));
                }
            }
            Err(e) => {
                problems.push((
                    Status::Critical,
                    format!("cannot read the free space of {shown}: {e}"),
                ));
            }
        }
        entries.push(Value::Object(entry));
    }
    out.set("paths", entries);
    out.set("min_free_space_bytes", limits.min_free_space.bytes());
    out.set("min_free_percent", limits.min_free_percent);
    problems.sort_by_key(|p| std::cmp::Reverse(p.0));
    if let Some((status, _)) = problems.first() {
        out.status = *status;
        out.message = problems.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>().join("; ");
    } else {
        let n = paths.len();
        out.message = format!(
            "{n} director{} writable{}",
            if n == 1 { "y" } else { "ies" },
            least_free.map(|(_, m)| format!("; least free: {m}")).unwrap_or_default()
        );
    }
    out
}

fn io_reason(e: &std::io::Error) -> String {
    // fs-err's message repeats the path; the kind and OS text are what a reader needs here.
    std::io::Error::from(e.kind()).to_string().to_lowercase()
}

/// Create and remove a file in `dir`: the only sure test that the tools can write there.
fn probe_write(dir: &Path) -> std::io::Result<()> {
    let name = format!(".rail-healthcheck-{}-{:08x}", std::process::id(), rand::random::<u32>());
    let path = dir.join(name);
    let file = fs_err::OpenOptions::new().write(true).create_new(true).open(&path)?;
    drop(file);
    fs_err::remove_file(&path)
}

/// Load and memory of the host (or of the container's cgroup), read from /proc and /sys.
#[derive(Debug, Clone, Default)]
pub(super) struct HostMetrics {
    load1: Option<f64>,
    cores: usize,
    memory_used_percent: Option<f64>,
    memory_total: Option<u64>,
    memory_available: Option<u64>,
    memory_source: &'static str,
}

#[allow(clippy::unused_async)] // Joined with the other checks; reading /proc never blocks.
pub(super) async fn host_metrics() -> HostMetrics {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let load1 = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()));
    let mut m = HostMetrics { load1, cores, memory_source: "host", ..HostMetrics::default() };
    // A container's limit is what the app runs out of, not the host's memory.
    let cgroup_max = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    let cgroup_cur = std::fs::read_to_string("/sys/fs/cgroup/memory.current")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    if let (Some(max), Some(cur)) = (cgroup_max, cgroup_cur) {
        if max > 0 {
            m.memory_total = Some(max);
            m.memory_available = Some(max.saturating_sub(cur));
            m.memory_used_percent = Some(cur as f64 / max as f64 * 100.0);
            m.memory_source = "cgroup";
            return m;
        }
    }
    if let Ok(meminfo) = std::fs::read_to_string("/proc/meminfo") {
        let kib = |key: &str| {
            meminfo.lines().find_map(|l| {
                l.strip_prefix(key)?
                    .strip_prefix(':')?
                    .split_whitespace()
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
        };
        if let (Some(total), Some(avail)) = (kib("MemTotal"), kib("MemAvailable")) {
            if total > 0 {
                m.memory_total = Some(total * 1024);
                m.memory_available = Some(avail * 1024);
                m.memory_used_percent =
                    Some((total - avail.min(total)) as f64 / total as f64 * 100.0);
            }
        }
    }
    m
}

/// Latency thresholds over the other checks' answers, plus the host's load and memory.
pub(super) fn performance(ctx: &Ctx<'_>, host: &HostMetrics, probes: &[&CheckResult]) -> Outcome {
    let cfg = ctx.cfg;
    let mut out = Outcome::default();
    let mut problems: Vec<(Status, String)> = Vec::new();
    let mut latencies = Map::new();
    let mut slowest: Option<(CheckName, Duration)> = None;
    for probe in probes {
        // A dependency that did not answer is its own check's failure, not a performance one.
        let (Some(latency), Some(t)) = (probe.latency, thresholds(cfg, probe.name)) else {
            continue;
        };
        latencies.insert(probe.name.as_str().into(), millis(latency).into());
        if slowest.is_none_or(|(_, l)| latency > l) {
            slowest = Some((probe.name, latency));
        }
        let status = latency_status(latency, t);
        if status > Status::Healthy {
            let limit =
                if status == Status::Critical { t.critical_latency } else { t.warning_latency };
            problems.push((
                status,
                format!(
                    "{} answered in {} ({status} over {})",
                    probe.name,
                    fmt_duration(latency),
                    fmt_threshold(limit.get())
                ),
            ));
        }
    }
    out.set("latency_ms", latencies);
    let p = &cfg.health.performance;
    let mut summary = Vec::new();
    out.set("cores", host.cores);
    if let Some(load) = host.load1 {
        let per_core = load / host.cores as f64;
        out.set("load_1m", load);
        out.set("load_per_core", (per_core * 100.0).round() / 100.0);
        out.gauge(
            "host_load_per_core",
            "One-minute load average divided by the number of cores.",
            per_core,
        );
        summary.push(format!("load {per_core:.2} per core"));
        let status = if per_core >= p.load_critical {
            Status::Critical
        } else if per_core >= p.load_warning {
            Status::Warning
        } else {
            Status::Healthy
        };
        if status > Status::Healthy {
            let limit = if status == Status::Critical { p.load_critical } else { p.load_warning };
            problems.push((status, format!("load {per_core:.2} per core ({status} over {limit})")));
        }
    }
    if let Some(pct) = host.memory_used_percent {
        out.set("memory_used_percent", (pct * 10.0).round() / 10.0);
        out.set("memory_source", host.memory_source);
        if let Some(t) = host.memory_total {
            out.set("memory_total_bytes", t);
        }
        if let Some(a) = host.memory_available {
            out.set("memory_available_bytes", a);
        }
        out.gauge(
            "host_memory_used_ratio",
            "Share of memory in use (of the cgroup limit in a container).",
            pct / 100.0,
        );
        summary.push(format!("memory {pct:.0}% used"));
        let status = percent_status(pct, p.memory_warning_percent, p.memory_critical_percent);
        if status > Status::Healthy {
            let limit = if status == Status::Critical {
                p.memory_critical_percent
            } else {
                p.memory_warning_percent
            };
            problems.push((status, format!("memory {pct:.0}% used ({status} over {limit}%)")));
        }
    }
    if let Some((name, latency)) = slowest {
        summary.push(format!("slowest {name} {}", fmt_duration(latency)));
    }
    problems.sort_by_key(|p| std::cmp::Reverse(p.0));
    out.status = problems.first().map_or(Status::Healthy, |(s, _)| *s);
    out.message = if problems.is_empty() {
        summary.join(", ")
    } else {
        problems.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>().join("; ")
    };
    out
}

/// One active maintenance signal as read from the flag file or the Redis key (never its bypass token).
#[derive(Debug, Default)]
struct Signal {
    source: &'static str,
    since: Option<DateTime<Utc>>,
    run_id: Option<String>,
    reason: Option<String>,
    expires_at: Option<DateTime<Utc>>,
    /// Why the document could not be read, when it could not (the signal still counts, as in the app).
    error: Option<String>,
}

/// RFC 3339 timestamps; a naive one is taken as UTC, as the app does.
fn parse_time(v: Option<&Value>) -> Option<DateTime<Utc>> {
    let s = v?.as_str()?.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").ok().map(|n| n.and_utc())
}

fn parse_signal(source: &'static str, raw: &[u8]) -> Signal {
    match serde_json::from_slice::<Value>(raw) {
        Ok(doc @ Value::Object(_)) => {
            let text = |k: &str| doc.get(k).and_then(Value::as_str).map(str::to_owned);
            Signal {
                source,
                since: parse_time(doc.get("since")),
                run_id: text("run_id"),
                reason: text("reason"),
                expires_at: parse_time(doc.get("expires_at")),
                error: None,
            }
        }
        _ => Signal {
            source,
            error: Some("not a JSON maintenance document".into()),
            ..Signal::default()
        },
    }
}

/// `timeout` is the maintenance check's own; `redis_timeout` the redis check's. The Redis key is given the
/// shorter of the latter and most of the former, so a hung Redis is reported here as an unreadable key
/// (its own check fails) instead of failing the maintenance check by its timeout.
pub(super) async fn maintenance(
    ctx: &Ctx<'_>,
    timeout: Duration,
    redis_timeout: Duration,
) -> Outcome {
    let cfg = ctx.cfg;
    let now = Utc::now();
    let mut out = Outcome::default();
    let mut active: Vec<Signal> = Vec::new();
    let mut notes: Vec<String> = Vec::new();

    let flag = &cfg.maintenance.flag_file;
    if !flag.as_os_str().is_empty() {
        out.set("flag_file", flag.display().to_string());
        match read_flag(flag) {
            Ok(None) => {}
            Ok(Some(bytes)) => {
                let signal = parse_signal("file", &bytes);
                if signal.expires_at.is_some_and(|e| e <= now) {
                    // The app and nginx differ here: the app ignores an expired file, nginx only sees it exists.
                    notes.push(format!(
                        "the flag file {} expired at {} and is ignored by the app; `deploy maintenance off` removes it",
                        flag.display(),
                        signal.expires_at.map(|t| t.to_rfc3339()).unwrap_or_default()
                    ));
                    out.set("flag_file_expired", true);
                } else {
                    active.push(signal);
                }
            }
            Err(e) => {
                // The app fails closed on a flag file it cannot read: the site is in maintenance.
                active.push(Signal {
                    source: "file",
                    error: Some(io_reason(&e)),
                    ..Signal::default()
                });
            }
        }
    }

    let key = &cfg.maintenance.redis_key;
    if !cfg.redis.url.is_empty() && !key.is_empty() {
        out.set("redis_key", key.clone());
        let patience = redis_timeout.min(timeout.mul_f64(0.8));
        let read =
            tokio::time::timeout(patience, read_redis_key(&cfg.redis.url, key, patience)).await;
        let read = read.unwrap_or_else(|_| {
            Err(format!("no answer within {}", crate::config::human_duration(patience)))
        });
        match read {
            Ok(None) => {}
            Ok(Some((raw, ttl_ms))) => {
                let mut signal = parse_signal("redis", raw.as_bytes());
                if signal.expires_at.is_none() && ttl_ms > 0 {
                    signal.expires_at = Some(now + chrono::Duration::milliseconds(ttl_ms));
                }
                active.push(signal);
            }
            Err(e) => {
                // The redis check reports an unreachable Redis; the app treats it as "no key" too.
                notes.push(format!("the Redis key could not be read ({e})"));
                out.set("redis_error", e);
            }
        }
    }

    out.set("active", !active.is_empty());
    if active.is_empty() {
        "maintenance off".clone_into(&mut out.message);
        if !notes.is_empty() {
            let _ = write!(out.message, "; {}", notes.join("; "));
        }
        return out;
    }

    // The oldest signal says how long the site has been down.
    active.sort_by_key(|s| s.since.unwrap_or(now));
    let first = &active[0];
    let sources: Vec<&str> = active.iter().map(|s| s.source).collect();
    out.set("sources", sources.clone());
    let stale_after = cfg.maintenance.stale_after.get();
    out.set("stale_after_seconds", stale_after.as_secs());
    let mut message;
    if let Some(since) = first.since {
        let age = (now - since).to_std().unwrap_or_default();
        out.set("since", since.to_rfc3339());
        out.set("age_seconds", age.as_secs());
        let age_text = crate::config::human_duration(Duration::from_secs(age.as_secs()));
        let since_text = since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let stale = age > stale_after;
        out.set("stale", stale);
        if stale {
            out.status = Status::Critical;
            message = format!(
                "stale: maintenance on for {age_text} (since {since_text}), longer than maintenance.stale_after ({})",
                fmt_threshold(stale_after)
            );
        } else {
            out.status = Status::Warning;
            message = format!("maintenance on since {since_text} ({age_text} ago)");
        }
    } else {
        out.status = Status::Warning;
        message = "maintenance on (since unknown)".to_owned();
    }
    if let Some(run) = active.iter().find_map(|s| s.run_id.as_deref()) {
        out.set("run_id", run);
        let _ = write!(message, ", run {run}");
    }
    if let Some(reason) = active.iter().find_map(|s| s.reason.as_deref()) {
        out.set("reason", reason);
        let _ = write!(message, ", reason: {reason}");
    }
    if let Some(exp) = active.iter().filter_map(|s| s.expires_at).max() {
        out.set("expires_at", exp.to_rfc3339());
    }
    let errors: Vec<String> = active
        .iter()
        .filter_map(|s| s.error.as_ref().map(|e| format!("{}: {e}", s.source)))
        .collect();
    if !errors.is_empty() {
        out.set("errors", errors.clone());
        let _ = write!(message, " (unreadable signal: {})", errors.join(", "));
    }
    let _ = write!(message, " [{}]", sources.join(", "));
    out.message = message;
    out
}

/// The flag file's bytes, `None` when it does not exist.
fn read_flag(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    match fs_err::File::open(path) {
        Ok(f) => {
            let mut buf = Vec::new();
            f.take(MAX_FLAG_BYTES).read_to_end(&mut buf)?;
            Ok(Some(buf))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The key's value and its remaining time to live in ms (negative: none), `None` when absent.
async fn read_redis_key(
    url: &Secret,
    key: &str,
    timeout: Duration,
) -> Result<Option<(String, i64)>, String> {
    let mut conn = redis_connect(url, timeout).await?;
    let (value, ttl): (Option<String>, i64) = redis::pipe()
        .cmd("GET")
        .arg(key)
        .cmd("PTTL")
        .arg(key)
        .query_async(&mut conn)
        .await
        .map_err(|e| error_chain(&e))?;
    Ok(value.map(|v| (v, ttl)))
}

/// The age of the newest complete, authenticated set in the remote against `backup.remote.max_age`:
/// warning past it, critical past twice it, or when there is none or the remote cannot be read.
pub(super) async fn backups(ctx: &Ctx<'_>) -> Outcome {
    let cfg = ctx.cfg;
    let max_age = cfg.backup.remote.max_age.get();
    let remote = match crate::remote::Remote::from_config(cfg) {
        Ok(remote) => remote,
        Err(e) => {
            return Outcome::critical(format!(
                "the remote cannot be used: {}",
                crate::backup::error_chain(&e)
            ))
        }
    };
    let keys = match crate::backup::keyring(cfg) {
        Ok(keys) => keys,
        Err(e) => return Outcome::critical(crate::backup::error_chain(&e)),
    };
    let mut out = Outcome::default().detail("remote", remote.url());
    out.set("max_age_seconds", max_age.as_secs());
    let entries = match remote.list(&keys).await {
        Ok(entries) => entries,
        Err(e) => {
            out.escalate(
                Status::Critical,
                &format!("the remote cannot be listed: {}", crate::backup::error_chain(&e)),
            );
            return out;
        }
    };
    let complete = entries.iter().filter(|e| e.status == crate::backup::SetStatus::Complete);
    out.set("sets", complete.clone().count());
    let not_trusted = entries
        .iter()
        .filter(|e| {
            matches!(
                e.status,
                crate::backup::SetStatus::Unauthenticated | crate::backup::SetStatus::Damaged
            )
        })
        .count();
    out.set("untrusted_sets", not_trusted);
    let Some((newest, created)) =
        complete.filter_map(|e| e.created_at.map(|t| (e, t))).max_by_key(|(_, t)| *t)
    else {
        out.escalate(
            Status::Critical,
            &format!("no complete, authenticated set in {}", remote.url()),
        );
        return out;
    };
    let age = (Utc::now() - created).to_std().unwrap_or_default();
    out.set("newest", newest.name.clone());
    out.set("newest_created_at", created.to_rfc3339());
    out.set("newest_age_seconds", age.as_secs());
    out.gauge(
        "backups_newest_age_seconds",
        "Age of the newest complete off-site backup set",
        age.as_secs_f64(),
    );
    let shown = crate::config::human_duration(Duration::from_secs(age.as_secs()));
    out.message = format!("the newest off-site set, {}, is {shown} old", newest.name);
    let limit = crate::config::human_duration(max_age);
    if age > max_age * 2 {
        out.escalate(
            Status::Critical,
            &format!("off-site backups stopped: older than twice {limit}"),
        );
    } else if age > max_age {
        out.escalate(Status::Warning, &format!("older than backup.remote.max_age = {limit}"));
    }
    if not_trusted > 0 {
        out.escalate(
            Status::Warning,
            &format!("{not_trusted} remote set(s) fail authentication or are damaged"),
        );
    }
    out
}
