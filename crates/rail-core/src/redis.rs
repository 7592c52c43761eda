//! Connections to the app's Redis server, from a URL kept as a [`Secret`].

use std::time::Duration;

pub use deadpool_redis::redis;
use redis::aio::MultiplexedConnection;

use crate::secret::{redact_url, Secret};

/// Errors of connecting to Redis.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisError {
    #[error("invalid Redis URL {url}")]
    BadUrl {
        url: String,
        #[source]
        source: redis::RedisError,
    },
    #[error("cannot connect to Redis at {target}")]
    Connect {
        target: String,
        #[source]
        source: redis::RedisError,
    },
    #[error("cannot connect to Redis at {target}: no answer within {}", crate::config::human_duration(*after))]
    Timeout { target: String, after: Duration },
}

/// Open one multiplexed connection, with `timeout` on the set-up.
pub async fn connect(url: &Secret, timeout: Duration) -> Result<MultiplexedConnection, RedisError> {
    let target = redact_url(url.expose());
    let client = redis::Client::open(url.expose())
        .map_err(|source| RedisError::BadUrl { url: target.clone(), source })?;
    match tokio::time::timeout(timeout, client.get_multiplexed_async_connection()).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(source)) => Err(RedisError::Connect { target, source }),
        Err(_) => Err(RedisError::Timeout { target, after: timeout }),
    }
}
