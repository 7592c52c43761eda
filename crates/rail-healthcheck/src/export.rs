//! Getting results to monitoring: a metrics file written atomically (node_exporter's textfile collector
//! reads `*.prom` files and must never see half of one) and a push to a Prometheus Pushgateway.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rail_core::health::http::{self, Request};
use rail_core::secret::redact_url;

/// Write `contents` to `path` atomically: a temporary file in the same directory, fsynced, renamed over
/// `path`, then the directory fsynced so the rename survives a crash.
pub(crate) fn write_atomic(path: &Path, contents: &str) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => std::path::PathBuf::from("."),
    };
    let name =
        path.file_name().with_context(|| format!("{} is not a file name", path.display()))?;
    // A leading dot and no .prom suffix: the textfile collector skips the temporary file.
    let tmp = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    let result = (|| -> Result<()> {
        let mut file = fs_err::File::create(&tmp)?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
        drop(file);
        fs_err::rename(&tmp, path)?;
        if let Ok(d) = fs_err::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs_err::remove_file(&tmp);
    }
    result.with_context(|| format!("writing metrics to {}", path.display()))
}

/// The Pushgateway URL of this job and instance: `<base>/metrics/job/rail_healthcheck/instance/<host>`.
/// A URL that already names a job is used as given.
pub(crate) fn push_url(base: &str, instance: &str) -> Result<url::Url> {
    let mut url = url::Url::parse(base)
        .with_context(|| format!("invalid Pushgateway URL {}", redact_url(base)))?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!(
            "invalid Pushgateway URL {}: only http:// and https:// are supported",
            redact_url(base)
        );
    }
    if url.path().contains("/metrics/job/") {
        return Ok(url);
    }
    {
        let mut segments = url
            .path_segments_mut()
            .map_err(|()| anyhow::anyhow!("invalid Pushgateway URL {}", redact_url(base)))?;
        segments.pop_if_empty().extend([
            "metrics",
            "job",
            "rail_healthcheck",
            "instance",
            instance,
        ]);
    }
    Ok(url)
}

/// PUT the metrics to the Pushgateway (replacing this instance's group), failing on a non-2xx answer.
pub(crate) async fn push(url: &url::Url, body: &str, timeout: Duration) -> Result<()> {
    let shown = redact_url(url.as_str());
    let req = Request {
        method: "PUT",
        url: url.as_str(),
        headers: &[],
        body: Some(("text/plain; version=0.0.4; charset=utf-8", body.as_bytes())),
        timeout,
    };
    let resp = match tokio::time::timeout(timeout, http::send(&req)).await {
        Ok(r) => r.with_context(|| format!("pushing metrics to {shown}"))?,
        Err(_) => bail!(
            "pushing metrics to {shown}: no answer within {}",
            humantime::format_duration(timeout)
        ),
    };
    if !(200..300).contains(&resp.status) {
        let text = String::from_utf8_lossy(&resp.body);
        let first = text.lines().next().unwrap_or_default().chars().take(200).collect::<String>();
        bail!(
            "pushing metrics to {shown}: HTTP {}{}",
            resp.status,
            if first.is_empty() { String::new() } else { format!(": {first}") }
        );
    }
    Ok(())
}

/// This host's name, the Pushgateway `instance`.
pub(crate) fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_url_appends_the_grouping_key() {
        assert_eq!(
            push_url("http://127.0.0.1:9091", "web-1").unwrap().as_str(),
            "http://127.0.0.1:9091/metrics/job/rail_healthcheck/instance/web-1"
        );
        assert_eq!(
            push_url("http://gw/prefix/", "a b").unwrap().as_str(),
            "http://gw/prefix/metrics/job/rail_healthcheck/instance/a%20b"
        );
        assert_eq!(
            push_url("http://gw/metrics/job/x", "h").unwrap().as_str(),
            "http://gw/metrics/job/x"
        );
        assert!(push_url("ftp://gw", "h").is_err());
    }

    #[test]
    fn atomic_write_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rail.prom");
        write_atomic(&path, "a 1\n").unwrap();
        write_atomic(&path, "a 2\n").unwrap();
        assert_eq!(fs_err::read_to_string(&path).unwrap(), "a 2\n");
        let names: Vec<_> =
            fs_err::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["rail.prom"]);
    }
}
