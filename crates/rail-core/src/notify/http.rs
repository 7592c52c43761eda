//! POSTing JSON to Slack and to the generic webhook.
//!
//! Webhook URLs are secrets (anyone holding a Slack webhook URL can post to the channel), so the URL never
//! reaches a log or an error: errors are taken without it, and logs name the host only.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};
use reqwest::StatusCode;
use serde_json::Value;

use super::{error_chain, AttemptError};
use crate::secret::Secret;

/// How much of a failed answer's body is reported: Slack explains itself in a word or two.
const BODY_EXCERPT: usize = 200;

/// A client shared by the channels of one [`super::send_all`]: no redirects (a redirect could carry the
/// payload elsewhere), `timeout` to connect and per request.
pub(super) fn client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .user_agent(concat!("rail/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout)
        .timeout(timeout)
        .build()
        .map_err(|err| format!("cannot build the HTTP client: {}", error_chain(&err)))
}

/// The host (and port) of a webhook URL, which is all a log may show of it.
pub(super) fn host_of(url: &Secret) -> String {
    match url::Url::parse(url.expose()) {
        Ok(parsed) => match (parsed.host_str(), parsed.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => "<url without host>".to_owned(),
        },
        Err(_) => "<invalid url>".to_owned(),
    }
}

/// One POST of `body` as JSON. 2xx is success; 408, 429 and 5xx are worth retrying, other answers are not.
pub(super) async fn post_json(
    client: Option<&Result<reqwest::Client, String>>,
    url: &Secret,
    headers: &BTreeMap<String, Secret>,
    body: &Value,
) -> Result<(), AttemptError> {
    let client = match client {
        Some(Ok(client)) => client,
        Some(Err(message)) => return Err(AttemptError::permanent(message.clone())),
        None => return Err(AttemptError::permanent("no HTTP client")),
    };
    if url.is_empty() {
        return Err(AttemptError::permanent("no URL is configured"));
    }
    let parsed = url::Url::parse(url.expose())
        .map_err(|_| AttemptError::permanent("the configured URL is not a valid URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(AttemptError::permanent(format!(
            "the configured URL must be http or https, not {}",
            parsed.scheme()
        )));
    }
    let mut request = client.post(parsed).json(body);
    for (name, value) in headers {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| AttemptError::permanent(format!("invalid header name `{name}`")))?;
        let mut value = HeaderValue::from_str(value.expose())
            .map_err(|_| AttemptError::permanent(format!("invalid value for header `{name}`")))?;
        value.set_sensitive(true);
        request = request.header(header, value);
    }
    let response = request.send().await.map_err(|err| {
        let err = err.without_url();
        // A request that could not even be built (bad URL parts) fails the same way every time.
        let permanent = err.is_builder();
        AttemptError { message: error_chain(&err), permanent }
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let text = response.text().await.unwrap_or_default();
    let excerpt: String = text.trim().chars().take(BODY_EXCERPT).collect();
    let message = if excerpt.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {excerpt}")
    };
    let retry = status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT;
    Err(AttemptError { message, permanent: !retry })
}
