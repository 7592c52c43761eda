//! Connections to the app's PostgreSQL server, from a connection URL kept as a [`Secret`].
//!
//! One place opens connections so that timeouts, the application name seen in `pg_stat_activity`,
//! and the redaction of connection errors are the same everywhere.

use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::NoTls;

/// A connected PostgreSQL client, as [`DbTarget::connect`] returns it.
pub use tokio_postgres::Client;

use crate::secret::{redact_url, Secret};

/// Errors of connecting to PostgreSQL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    #[error("invalid database URL {url}")]
    BadUrl {
        url: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("cannot connect to PostgreSQL at {target}")]
    Connect {
        target: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("cannot connect to PostgreSQL at {target}: no answer within {}", crate::config::human_duration(*after))]
    Timeout { target: String, after: Duration },
}

/// Parsed connection settings plus a printable, password-free description.
#[derive(Clone)]
pub struct DbTarget {
    config: tokio_postgres::Config,
    display: String,
}

impl std::fmt::Debug for DbTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display)
    }
}

impl std::fmt::Display for DbTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display)
    }
}

impl DbTarget {
    /// Parse a `postgresql://` URL (or a `key=value` connection string).
    pub fn parse(url: &Secret) -> Result<Self, DbError> {
        let config = tokio_postgres::Config::from_str(url.expose())
            .map_err(|source| DbError::BadUrl { url: redact_url(url.expose()), source })?;
        let display = describe(&config);
        Ok(Self { config, display })
    }

    /// The database name (default: the user name, as libpq does).
    pub fn dbname(&self) -> &str {
        self.config.get_dbname().or_else(|| self.config.get_user()).unwrap_or("postgres")
    }

    pub fn user(&self) -> Option<&str> {
        self.config.get_user()
    }

    /// The same server and credentials, another database.
    #[must_use]
    pub fn with_dbname(&self, dbname: &str) -> Self {
        let mut config = self.config.clone();
        config.dbname(dbname);
        let display = describe(&config);
        Self { config, display }
    }

    /// The underlying settings, for code that needs more than [`connect`](Self::connect).
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// Connect, with `timeout` on the whole connection set-up. The connection is driven on a
    /// tokio task that ends when the client is dropped.
    pub async fn connect(
        &self,
        timeout: Duration,
        application_name: &str,
    ) -> Result<Client, DbError> {
        let mut config = self.config.clone();
        config.application_name(application_name);
        config.connect_timeout(timeout);
        let fut = config.connect(NoTls);
        let (client, connection) = match tokio::time::timeout(timeout, fut).await {
            Ok(Ok(pair)) => pair,
            Ok(Err(source)) => {
                return Err(DbError::Connect { target: self.display.clone(), source })
            }
            Err(_) => {
                return Err(DbError::Timeout { target: self.display.clone(), after: timeout })
            }
        };
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("database connection closed: {e}");
            }
        });
        Ok(client)
    }

    /// The arguments and environment that give libpq programs (pg_dump, pg_restore, psql) this
    /// target without putting the password on their command line: `--host`, `--port`,
    /// `--username`, `--dbname` and `PGPASSWORD` in the environment.
    pub fn libpq_args(&self) -> (Vec<String>, Option<Secret>) {
        let mut args = Vec::new();
        if let Some(host) = self.config.get_hosts().first() {
            match host {
                tokio_postgres::config::Host::Tcp(h) => args.push(format!("--host={h}")),
                tokio_postgres::config::Host::Unix(p) => {
                    args.push(format!("--host={}", p.display()));
                }
            }
        }
        if let Some(port) = self.config.get_ports().first() {
            args.push(format!("--port={port}"));
        }
        if let Some(user) = self.config.get_user() {
            args.push(format!("--username={user}"));
        }
        args.push(format!("--dbname={}", self.dbname()));
        let password = self.config.get_password().map(|p| Secret::new(String::from_utf8_lossy(p)));
        (args, password)
    }
}

fn describe(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().map(|u| format!("{u}@")).unwrap_or_default();
    let db = config.get_dbname().unwrap_or("");
    format!("{user}{host}:{port}/{db}")
}

/// Quote an identifier for SQL (`"name"`, doubling inner quotes).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_never_shows_the_password() {
        let t = DbTarget::parse(&Secret::new("postgresql://rail:s3cret@127.0.0.1:5433/rail_demo"))
            .unwrap();
        assert_eq!(t.to_string(), "rail@127.0.0.1:5433/rail_demo");
        assert_eq!(format!("{t:?}"), "rail@127.0.0.1:5433/rail_demo");
        assert_eq!(t.dbname(), "rail_demo");
        assert_eq!(t.with_dbname("postgres").to_string(), "rail@127.0.0.1:5433/postgres");
        let (args, pw) = t.libpq_args();
        assert_eq!(
            args,
            ["--host=127.0.0.1", "--port=5433", "--username=rail", "--dbname=rail_demo"]
        );
        assert_eq!(pw.unwrap().expose(), "s3cret");
    }

    #[test]
    fn bad_url_error_is_redacted() {
        let err = DbTarget::parse(&Secret::new("postgresql://u:pw@host:notaport/db")).unwrap_err();
        assert!(!err.to_string().contains("pw"), "{err}");
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("rail_demo"), "\"rail_demo\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    }
}
