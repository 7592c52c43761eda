//! Capturing the running app's schema: an introspection query over HTTP.
//!
//! The answer is read with the same size limit as files, under a timeout. Servers that reject the
//! full query (older ones know neither `isRepeatable` nor deprecated arguments) get the basic query.

use std::time::Duration;

use rail_core::secret::redact_url;

use crate::schema::introspection::{INTROSPECTION_QUERY, INTROSPECTION_QUERY_BASIC};
use crate::schema::MAX_SCHEMA_BYTES;

const TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the schema could not be captured.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CaptureError {
    #[error("invalid GraphQL URL `{url}`")]
    BadUrl { url: String },
    #[error("cannot reach {url}")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered HTTP {status}: {body}")]
    Status { url: String, status: u16, body: String },
    #[error("{url} answered HTTP {status}, a redirect to `{location}`: schemaver does not follow redirects (a capture URL must not lead to other services); give the final URL")]
    Redirect { url: String, status: u16, location: String },
    #[error("the answer of {url} is larger than {} MiB", MAX_SCHEMA_BYTES / (1024 * 1024))]
    TooLarge { url: String },
}

/// POST the introspection query to `url` and return the JSON answer's bytes.
pub(crate) async fn introspect(url: &str) -> Result<Vec<u8>, CaptureError> {
    let shown = redact_url(url);
    let parsed =
        reqwest::Url::parse(url).map_err(|_| CaptureError::BadUrl { url: shown.clone() })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(CaptureError::BadUrl { url: shown });
    }
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("schemaver/", env!("CARGO_PKG_VERSION")))
        // A redirect could turn the POST into a GET elsewhere, with a Referer: never follow one.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|source| CaptureError::Request { url: shown.clone(), source })?;

    let full = post(&client, parsed.clone(), &shown, INTROSPECTION_QUERY).await;
    match full {
        Ok(body) if has_schema(&body) => Ok(body),
        // A GraphQL error (or a 400) on the full query: the server may predate its newer members.
        Ok(_) | Err(CaptureError::Status { status: 400, .. }) => {
            post(&client, parsed, &shown, INTROSPECTION_QUERY_BASIC).await
        }
        Err(e) => Err(e),
    }
}

fn has_schema(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Probe {
        data: Option<serde_json::value::Value>,
    }
    serde_json::from_slice::<Probe>(body)
        .ok()
        .and_then(|p| p.data)
        .is_some_and(|d| d.get("__schema").is_some_and(|s| !s.is_null()))
}

async fn post(
    client: &reqwest::Client,
    url: reqwest::Url,
    shown: &str,
    query: &str,
) -> Result<Vec<u8>, CaptureError> {
    let request = serde_json::json!({ "query": query, "operationName": "IntrospectionQuery" });
    let mut response = client
        .post(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .json(&request)
        .send()
        .await
        .map_err(|source| CaptureError::Request { url: shown.to_owned(), source })?;
    let status = response.status();
    if status.is_redirection() {
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map_or_else(|| "(none)".to_owned(), redact_url);
        return Err(CaptureError::Redirect {
            url: shown.to_owned(),
            status: status.as_u16(),
            location,
        });
    }
    if response.content_length().is_some_and(|n| n > MAX_SCHEMA_BYTES as u64) {
        return Err(CaptureError::TooLarge { url: shown.to_owned() });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|source| CaptureError::Request { url: shown.to_owned(), source })?
    {
        if body.len() + chunk.len() > MAX_SCHEMA_BYTES {
            return Err(CaptureError::TooLarge { url: shown.to_owned() });
        }
        body.extend_from_slice(&chunk);
    }
    // A GraphQL server may answer errors with 4xx and a JSON body; that body is the useful message.
    let graphql_error = status.as_u16() == 400 && body.first() == Some(&b'{');
    if !(status.is_success() || graphql_error) {
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]).trim().to_owned();
        return Err(CaptureError::Status {
            url: shown.to_owned(),
            status: status.as_u16(),
            body: text,
        });
    }
    Ok(body)
}
