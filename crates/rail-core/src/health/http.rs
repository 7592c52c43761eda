//! A one-shot HTTP client for health checks and metric pushes.
//!
//! Plain `http://` URLs are served by a small HTTP/1.1 client over a tokio `TcpStream`: one request per
//! connection (`Connection: close`), the response head parsed by `httparse`, the body read by
//! `Content-Length`, chunked encoding or to the end of the stream, and capped in size. It costs no TLS
//! set-up and no certificate store, which matters for a probe that Docker forks every 30 seconds.
//! `https://` URLs go through reqwest (rustls, bundled roots), built only when such a URL is used.
//!
//! Callers put the whole request under their own timeout; nothing here waits forever on its own terms,
//! but nothing here times out either.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::secret::{redact_url, Secret};

/// Largest response body kept; a health endpoint answering more is cut (and said so).
pub const MAX_BODY: usize = 1024 * 1024;
/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// How many response headers are parsed.
const MAX_HEADERS: usize = 64;
/// User-Agent of every request, so the app's logs can tell probes from users.
pub const USER_AGENT: &str = concat!("rail-healthcheck/", env!("CARGO_PKG_VERSION"));

/// Errors of one HTTP exchange. URLs in them are redacted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    #[error("invalid URL {url}")]
    BadUrl {
        url: String,
        #[source]
        source: url::ParseError,
    },
    #[error("unsupported URL {url}: only http:// and https:// are supported")]
    Scheme { url: String },
    #[error("cannot connect to {target}")]
    Connect {
        target: String,
        #[source]
        source: std::io::Error,
    },
    #[error("i/o error talking to {target}")]
    Io {
        target: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid HTTP response from {target}: {reason}")]
    BadResponse { target: String, reason: String },
    #[error("request to {target} failed")]
    Tls {
        target: String,
        #[source]
        source: reqwest::Error,
    },
}

/// One request.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: &'a str,
    pub url: &'a str,
    /// Extra headers; their values may be secrets and never appear in errors.
    pub headers: &'a [(String, Secret)],
    /// Body and its content type.
    pub body: Option<(&'a str, &'a [u8])>,
    /// Only used by the https client, which owns its connection set-up; plain http relies on the
    /// caller's timeout.
    pub timeout: Duration,
}

/// A response: status, headers (names lowercased) and the body, cut at [`MAX_BODY`].
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body was longer than [`MAX_BODY`] and was cut.
    pub truncated: bool,
}

impl Response {
    /// The first header called `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The body as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Send one request and read the whole response.
pub async fn send(req: &Request<'_>) -> Result<Response, HttpError> {
    let url = url::Url::parse(req.url)
        .map_err(|source| HttpError::BadUrl { url: redact_url(req.url), source })?;
    match url.scheme() {
        "http" => send_plain(req, &url).await,
        "https" => send_tls(req, &url).await,
        _ => Err(HttpError::Scheme { url: redact_url(req.url) }),
    }
}

async fn send_plain(req: &Request<'_>, url: &url::Url) -> Result<Response, HttpError> {
    let target = redact_url(url.as_str());
    let host = url.host_str().ok_or_else(|| HttpError::Scheme { url: target.clone() })?;
    // `Url` keeps IPv6 literals in brackets; the socket address wants them bare.
    let bare_host = host.trim_start_matches('[').trim_end_matches(']');
    let port = url.port_or_known_default().unwrap_or(80);
    let mut stream = TcpStream::connect((bare_host, port))
        .await
        .map_err(|source| HttpError::Connect { target: target.clone(), source })?;
    let _ = stream.set_nodelay(true);

    let head = request_head(req, url);
    let io_err = |source| HttpError::Io { target: target.clone(), source };
    // One write for head and body: a small request leaves in one segment.
    let mut out = head.into_bytes();
    if let Some((_, body)) = req.body {
        out.extend_from_slice(body);
    }
    stream.write_all(&out).await.map_err(io_err)?;

    read_response(&mut stream, &target).await
}

/// The request line and headers. Credentials in the URL become Basic authentication.
fn request_head(req: &Request<'_>, url: &url::Url) -> String {
    use std::fmt::Write as _;
    let mut path = url.path().to_owned();
    if let Some(q) = url.query() {
        path.push('?');
        path.push_str(q);
    }
    let host = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_owned(),
    };
    let mut head = format!(
        "{} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {USER_AGENT}\r\nAccept: application/json, text/plain;q=0.9, */*;q=0.1\r\nConnection: close\r\n",
        req.method
    );
    if !url.username().is_empty() {
        let user = percent_decode(url.username());
        let password = url.password().map(percent_decode).unwrap_or_default();
        let _ = write!(
            head,
            "Authorization: Basic {}\r\n",
            base64(format!("{user}:{password}").as_bytes())
        );
    }
    for (name, value) in req.headers {
        // Header injection: a configured value with a line break is dropped rather than sent.
        if !name.contains(['\r', '\n', ':']) && !value.expose().contains(['\r', '\n']) {
            let _ = write!(head, "{name}: {}\r\n", value.expose());
        }
    }
    match req.body {
        Some((content_type, body)) => {
            let _ =
                write!(head, "Content-Type: {content_type}\r\nContent-Length: {}\r\n", body.len());
        }
        None if req.method != "GET" && req.method != "HEAD" => {
            head.push_str("Content-Length: 0\r\n");
        }
        None => {}
    }
    head.push_str("\r\n");
    head
}

async fn read_response(stream: &mut TcpStream, target: &str) -> Result<Response, HttpError> {
    let io_err = |source| HttpError::Io { target: target.to_owned(), source };
    let bad = |reason: String| HttpError::BadResponse { target: target.to_owned(), reason };

    let mut buf: Vec<u8> = Vec::new();
    loop {
        let n = read_more(stream, &mut buf).await.map_err(io_err)?;
        if n == 0 {
            return Err(bad(if buf.is_empty() {
                "the server closed the connection without answering".into()
            } else {
                "the connection closed inside the response head".into()
            }));
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut headers);
        match parsed.parse(&buf) {
            Ok(httparse::Status::Complete(head_len)) => {
                let status = parsed.code.unwrap_or_default();
                let headers: Vec<(String, String)> = parsed
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).trim().to_owned(),
                        )
                    })
                    .collect();
                // Interim responses (100 Continue) are skipped: the real answer follows.
                if (100..200).contains(&status) && status != 101 {
                    buf.drain(..head_len);
                    continue;
                }
                let rest = buf.split_off(head_len);
                let (body, truncated) = read_body(stream, &headers, rest, status, target).await?;
                return Ok(Response { status, headers, body, truncated });
            }
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
                return Err(bad(format!("response head larger than {MAX_HEAD} bytes")));
            }
            Ok(httparse::Status::Partial) => {}
            Err(e) => return Err(bad(e.to_string())),
        }
    }
}

async fn read_body(
    stream: &mut TcpStream,
    headers: &[(String, String)],
    mut already: Vec<u8>,
    status: u16,
    target: &str,
) -> Result<(Vec<u8>, bool), HttpError> {
    let io_err = |source| HttpError::Io { target: target.to_owned(), source };
    let bad = |reason: String| HttpError::BadResponse { target: target.to_owned(), reason };
    if status == 204 || status == 304 {
        return Ok((Vec::new(), false));
    }
    let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let chunked = header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().split(',').any(|t| t.trim() == "chunked"));
    if chunked {
        return read_chunked(stream, already, target).await;
    }
    if let Some(len) = header("content-length") {
        let len: usize = len.parse().map_err(|_| bad(format!("bad Content-Length `{len}`")))?;
        let keep = len.min(MAX_BODY);
        while already.len() < keep {
            let n = read_more(stream, &mut already).await.map_err(io_err)?;
            if n == 0 {
                return Err(bad(format!("body ended after {} of {len} bytes", already.len())));
            }
        }
        already.truncate(keep);
        return Ok((already, len > MAX_BODY));
    }
    // No length: the body runs to the end of the connection.
    loop {
        if already.len() > MAX_BODY {
            already.truncate(MAX_BODY);
            return Ok((already, true));
        }
        if read_more(stream, &mut already).await.map_err(io_err)? == 0 {
            return Ok((already, false));
        }
    }
}

/// Decode `Transfer-Encoding: chunked`, keeping at most [`MAX_BODY`] bytes.
async fn read_chunked(
    stream: &mut TcpStream,
    mut raw: Vec<u8>,
    target: &str,
) -> Result<(Vec<u8>, bool), HttpError> {
    let io_err = |source| HttpError::Io { target: target.to_owned(), source };
    let bad = |reason: &str| HttpError::BadResponse {
        target: target.to_owned(),
        reason: reason.to_owned(),
    };
    let mut body = Vec::new();
    let mut pos = 0usize;
    loop {
        // Parse as many complete chunks as the buffer holds.
        loop {
            match httparse::parse_chunk_size(&raw[pos..]) {
                Ok(httparse::Status::Complete((used, size))) => {
                    let size = usize::try_from(size).map_err(|_| bad("chunk size too large"))?;
                    if size == 0 {
                        return Ok((body, false));
                    }
                    let start = pos + used;
                    let end = start.checked_add(size).ok_or_else(|| bad("chunk size too large"))?;
                    if raw.len() < end + 2 {
                        break;
                    }
                    body.extend_from_slice(&raw[start..end]);
                    if body.len() > MAX_BODY {
                        body.truncate(MAX_BODY);
                        return Ok((body, true));
                    }
                    pos = end + 2;
                }
                Ok(httparse::Status::Partial) => break,
                Err(_) => return Err(bad("bad chunk size")),
            }
        }
        // Keep the unparsed tail only, so memory stays bounded by one chunk.
        raw.drain(..pos);
        pos = 0;
        if raw.len() > MAX_BODY + 64 {
            return Err(bad("chunk larger than the body limit"));
        }
        if read_more(stream, &mut raw).await.map_err(io_err)? == 0 {
            return Err(bad("the connection closed inside a chunked body"));
        }
    }
}

/// Append what the stream has to `buf` (up to 8 KiB more), returning how much; 0 at the end.
/// Reading into the heap keeps the request futures small.
async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    buf.reserve(8192);
    stream.read_buf(buf).await
}

async fn send_tls(req: &Request<'_>, url: &url::Url) -> Result<Response, HttpError> {
    let target = redact_url(url.as_str());
    let tls_err = |source| HttpError::Tls { target: target.clone(), source };
    let client = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .timeout(req.timeout)
        // Like the plain-HTTP path: a check reports what its URL answers, and goes nowhere else.
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .build()
        .map_err(tls_err)?;
    let method =
        reqwest::Method::from_bytes(req.method.as_bytes()).map_err(|_| HttpError::BadResponse {
            target: target.clone(),
            reason: format!("bad method {}", req.method),
        })?;
    let mut builder = client.request(method, url.clone());
    for (name, value) in req.headers {
        builder = builder.header(name.as_str(), value.expose());
    }
    if let Some((content_type, body)) = req.body {
        builder = builder.header("content-type", content_type).body(body.to_vec());
    }
    let mut resp = builder.send().await.map_err(tls_err)?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).trim().to_owned())
        })
        .collect();
    let mut body = Vec::new();
    let mut truncated = false;
    while let Some(chunk) = resp.chunk().await.map_err(tls_err)? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BODY {
            body.truncate(MAX_BODY);
            truncated = true;
            break;
        }
    }
    Ok(Response { status, headers, body, truncated })
}

fn percent_decode(s: &str) -> String {
    let bytes: Vec<u8> =
        url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
            .next()
            .map(|(_, v)| v.into_owned().into_bytes())
            .unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Standard base64 with padding, for a Basic authentication header (the one place it is needed).
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for group in input.chunks(3) {
        let b = [group[0], group.get(1).copied().unwrap_or(0), group.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= group.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want);
        }
    }

    #[test]
    fn request_head_carries_query_headers_and_basic_auth() {
        let url = url::Url::parse("http://u%40x:p%2Bw@127.0.0.1:8000/health/?delay_ms=5").unwrap();
        let headers = [
            ("X-Rail-Maintenance-Bypass".to_owned(), Secret::new("tok")),
            ("X-Bad".to_owned(), Secret::new("a\r\nInjected: 1")),
        ];
        let req = Request {
            method: "GET",
            url: url.as_str(),
            headers: &headers,
            body: None,
            timeout: Duration::from_secs(1),
        };
        let head = request_head(&req, &url);
        assert!(
            head.starts_with("GET /health/?delay_ms=5 HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"),
            "{head}"
        );
        assert!(head.contains("X-Rail-Maintenance-Bypass: tok\r\n"));
        assert!(!head.contains("Injected"));
        assert!(
            head.contains(&format!("Authorization: Basic {}\r\n", base64(b"u@x:p+w"))),
            "{head}"
        );
        assert!(head.ends_with("\r\n\r\n"));
    }
}
