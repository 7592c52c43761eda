//! A minimal blocking HTTP/1.0 client for talking to servers on 127.0.0.1 in tests (the demo app,
//! webhook receivers): one request per connection, the body read to the end.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A response: status, headers (names lowercased) and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Every header, name lowercased, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body as (lossy UTF-8) text.
    pub body: String,
}

impl HttpResponse {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON; panics, showing it, if it is not.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|err| {
            panic!("HTTP {} body is not JSON: {err}\n{}", self.status, self.body)
        })
    }
}

/// `GET url` (JSON accepted).
pub fn http_get(url: &str) -> std::io::Result<HttpResponse> {
    http_request("GET", url, &[("Accept", "application/json")], None)
}

/// `POST url` with a JSON body.
pub fn http_post_json(url: &str, body: &serde_json::Value) -> std::io::Result<HttpResponse> {
    let body = body.to_string();
    http_request(
        "POST",
        url,
        &[("Content-Type", "application/json"), ("Accept", "application/json")],
        Some(&body),
    )
}

/// Any request to an `http://host:port/path` URL; 30 s timeout.
pub fn http_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> std::io::Result<HttpResponse> {
    let invalid = || {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("not an http:// URL: {url}"))
    };
    let rest = url.strip_prefix("http://").ok_or_else(invalid)?;
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
    let mut stream = TcpStream::connect(authority)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut request =
        format!("{method} {path} HTTP/1.0\r\nHost: {authority}\r\nConnection: close\r\n");
    for (name, value) in headers {
        let _ = write!(request, "{name}: {value}\r\n");
    }
    let body = body.unwrap_or_default();
    let _ = write!(request, "Content-Length: {}\r\n\r\n{body}", body.len());
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no HTTP status line from {authority}")))?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(HttpResponse { status, headers, body: body.to_owned() })
}
