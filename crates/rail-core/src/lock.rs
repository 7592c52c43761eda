//! The run lock: a PostgreSQL advisory lock that a deploy or rollback holds on a dedicated connection for
//! its whole run, so two runs never change the same database at once.
//!
//! The lock lives on the server, not in a file: when a run dies, however it dies, its connection closes
//! and the server frees the lock, so there is never a stale lock to clean up. It is taken in the server's
//! `postgres` maintenance database, with a key derived from the target database's name, because a
//! restore renames and drops the target database itself and must not take the lock down with it.
//!
//! A refused run must be able to say who holds the lock. The holder writes its identity (run id, kind,
//! host, pid, start time) into the unlogged table `rail_lock_holders` of the maintenance database, keyed
//! by its backend pid, and also into its connection's `application_name` (`rail:<kind>:<run id>:<pid>@<host>`,
//! cut at PostgreSQL's 63 bytes) for roles that may not create that table. The lock itself is the only
//! truth: rows whose backend is gone are stale and ignored, and cleaned up by the next holder.

use std::fmt;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use crate::db::{DbError, DbTarget};
use crate::journal::{host_name, RunId, RunKind};

/// The database the lock connection uses: one that a restore never renames or drops.
pub const MAINTENANCE_DATABASE: &str = "postgres";
/// How often a waiting run tries again.
const RETRY_EVERY: Duration = Duration::from_millis(250);
/// Limit on connecting and on each query of the lock connection.
const TIMEOUT: Duration = Duration::from_secs(10);
/// PostgreSQL cuts `application_name` to this many bytes.
const APPLICATION_NAME_MAX: usize = 63;

/// Errors of taking, checking and releasing the run lock.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    #[error("cannot connect to the lock database")]
    Connect {
        #[source]
        source: DbError,
    },
    #[error("lock query failed on {server}")]
    Query {
        server: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("lock query on {server} got no answer within {}", crate::config::human_duration(*after))]
    Timeout { server: String, after: Duration },
    #[error("{}", held_message(owner))]
    Held { owner: Box<LockOwner> },
    #[error("the run lock on {server} was lost: its connection is gone")]
    Lost { server: String },
}

fn held_message(owner: &LockOwner) -> String {
    match owner {
        LockOwner::Rail(holder) => format!("another rail run holds the lock: {holder}"),
        LockOwner::Other { backend_pid, application_name } => format!(
            "the lock is held by a session that is not a rail run (server backend pid {backend_pid}, \
             application_name `{application_name}`)"
        ),
    }
}

/// Who holds (or asks for) the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub run_id: RunId,
    pub kind: RunKind,
    pub host: String,
    pub pid: u32,
    pub started_at: DateTime<Utc>,
}

impl Holder {
    /// This process, running `run_id`.
    pub fn current(run_id: &RunId, kind: RunKind) -> Self {
        Self {
            run_id: run_id.clone(),
            kind,
            host: host_name(),
            pid: std::process::id(),
            started_at: Utc::now(),
        }
    }

    /// The compact form kept in `application_name`, cut to what PostgreSQL keeps.
    fn application_name(&self) -> String {
        let mut name = format!("rail:{}:{}:{}@{}", self.kind, self.run_id, self.pid, self.host);
        if name.len() > APPLICATION_NAME_MAX {
            let mut end = APPLICATION_NAME_MAX;
            while !name.is_char_boundary(end) {
                end -= 1;
            }
            name.truncate(end);
        }
        name
    }

    /// Read back [`Holder::application_name`]; the host may be cut short, and the start time is the one
    /// in the run id.
    fn from_application_name(name: &str) -> Option<Self> {
        let mut parts = name.splitn(4, ':');
        if parts.next()? != "rail" {
            return None;
        }
        let kind = parts.next()?.parse().ok()?;
        let run_id: RunId = parts.next()?.parse().ok()?;
        let (pid, host) = parts.next()?.split_once('@')?;
        Some(Self {
            started_at: run_id.started_at(),
            run_id,
            kind,
            host: host.to_owned(),
            pid: pid.parse().ok()?,
        })
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} run {} on {} (pid {}) since {}",
            self.kind,
            self.run_id,
            self.host,
            self.pid,
            self.started_at.format("%Y-%m-%d %H:%M:%S UTC")
        )
    }
}

/// Whoever holds the lock of a database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LockOwner {
    /// A rail run.
    Rail(Holder),
    /// Some other session took the same advisory lock key.
    Other { backend_pid: i32, application_name: String },
}

impl fmt::Display for LockOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rail(holder) => holder.fmt(f),
            Self::Other { backend_pid, application_name } => {
                write!(f, "a session that is not a rail run (server backend pid {backend_pid}, application_name `{application_name}`)")
            }
        }
    }
}

/// The advisory lock key of a database: the first 8 bytes of SHA-256("rail:lock:<name>"), the same in
/// every rail version and on every host.
pub fn lock_key(database: &str) -> i64 {
    let digest = Sha256::digest(format!("rail:lock:{database}").as_bytes());
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// The run lock of one database, held until [`RunLock::release`] or drop (or the death of the process).
pub struct RunLock {
    client: Client,
    server: String,
    key: i64,
    holder: Holder,
}

impl fmt::Debug for RunLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunLock")
            .field("server", &self.server)
            .field("key", &self.key)
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

const CREATE_TABLE: &str = "CREATE UNLOGGED TABLE IF NOT EXISTS rail_lock_holders (
    backend_pid integer PRIMARY KEY,
    lock_key bigint NOT NULL,
    holder text NOT NULL,
    acquired_at timestamptz NOT NULL DEFAULT now())";

/// `pg_locks` row of the advisory lock `$1` (a bigint key is split into classid, objid, objsubid = 1).
const LOCK_ROW: &str = "l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND l.classid = ((($1::bigint) >> 32) & 4294967295)::oid
    AND l.objid = (($1::bigint) & 4294967295)::oid";

impl RunLock {
    /// Take the run lock of the database `db`. When another run holds it, fail at once with
    /// [`LockError::Held`] naming the holder, or keep trying every 250 ms for up to `wait`.
    pub async fn acquire(
        db: &DbTarget,
        holder: &Holder,
        wait: Option<Duration>,
    ) -> Result<Self, LockError> {
        let server = db.with_dbname(MAINTENANCE_DATABASE);
        let key = lock_key(db.dbname());
        let client = server
            .connect(TIMEOUT, &holder.application_name())
            .await
            .map_err(|source| LockError::Connect { source })?;
        let lock = Self { client, server: server.to_string(), key, holder: holder.clone() };
        let mut deadline = wait.map(|wait| Instant::now() + wait);
        let mut dead_grace_given = false;
        loop {
            let row = lock.query_one("SELECT pg_try_advisory_lock($1)", &[&key]).await?;
            if row.get::<_, bool>(0) {
                lock.record_holder().await;
                tracing::info!(database = db.dbname(), run_id = %holder.run_id, "run lock taken");
                return Ok(lock);
            }
            let owner = owner_of(&lock.client, &lock.server, key).await?;
            // A run of this host that is gone (killed) still holds the lock until the server notices
            // its connection closed, which a loaded server may take a moment to do: wait for that
            // rather than refusing the run that comes to clean up after it.
            if let Some(LockOwner::Rail(dead)) = &owner {
                if !dead_grace_given && dead.host == host_name() && !process_alive(dead.pid) {
                    dead_grace_given = true;
                    let until = Instant::now() + DEAD_HOLDER_GRACE;
                    deadline = Some(deadline.map_or(until, |d| d.max(until)));
                    tracing::debug!(pid = dead.pid, "the lock holder's process is gone; waiting for the server to end its session");
                }
            }
            if deadline.is_some_and(|deadline| Instant::now() < deadline) {
                if let Some(owner) = &owner {
                    tracing::debug!(%owner, "waiting for the run lock");
                }
                tokio::time::sleep(RETRY_EVERY).await;
            } else if let Some(owner) = owner {
                return Err(LockError::Held { owner: Box::new(owner) });
            }
            // Otherwise the lock was released between the two queries: try again at once.
        }
    }

    /// Who holds this lock.
    pub fn holder(&self) -> &Holder {
        &self.holder
    }

    /// Fail with [`LockError::Lost`] when the lock connection died (the lock is then free and another run
    /// may have taken it): call it before each step that changes something.
    pub async fn check_alive(&self) -> Result<(), LockError> {
        let lost = || LockError::Lost { server: self.server.clone() };
        if self.client.is_closed() {
            return Err(lost());
        }
        let sql = format!("SELECT EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = pg_backend_pid() AND {LOCK_ROW})");
        match self.query_one(&sql, &[&self.key]).await {
            Ok(row) if row.get::<_, bool>(0) => Ok(()),
            Ok(_) | Err(LockError::Query { .. } | LockError::Timeout { .. }) => Err(lost()),
            Err(other) => Err(other),
        }
    }

    /// Release the lock and close its connection. (Dropping the lock releases it too, when the connection
    /// closes; this says when it happened and cleans up the holder row.)
    pub async fn release(self) -> Result<(), LockError> {
        if let Err(error) = self
            .client
            .execute("DELETE FROM rail_lock_holders WHERE backend_pid = pg_backend_pid()", &[])
            .await
        {
            tracing::debug!(%error, "no holder row to remove");
        }
        self.query_one("SELECT pg_advisory_unlock($1)", &[&self.key]).await?;
        tracing::info!(run_id = %self.holder.run_id, "run lock released");
        Ok(())
    }

    /// Write the holder row, best effort: a role that may not create the table is still identified by
    /// its application_name.
    async fn record_holder(&self) {
        let holder = serde_json::to_string(&self.holder).expect("holders always serialize");
        let steps = [
            (CREATE_TABLE, Vec::new()),
            (
                "DELETE FROM rail_lock_holders WHERE backend_pid = pg_backend_pid() \
                 OR backend_pid NOT IN (SELECT pid FROM pg_stat_activity)",
                Vec::new(),
            ),
            (
                "INSERT INTO rail_lock_holders (backend_pid, lock_key, holder) VALUES (pg_backend_pid(), $1, $2)",
                vec![&self.key as &(dyn tokio_postgres::types::ToSql + Sync), &holder],
            ),
        ];
        for (sql, params) in steps {
            let mut result = self.client.execute(sql, &params).await;
            if result.is_err() && sql == CREATE_TABLE {
                // Two first runs creating the table at the same time: one loses the race; the table is
                // there now.
                result = self.client.execute(sql, &params).await;
            }
            if let Err(error) = result {
                tracing::debug!(%error, "cannot record the lock holder in rail_lock_holders");
                return;
            }
        }
    }

    async fn query_one(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<tokio_postgres::Row, LockError> {
        query_one(&self.client, &self.server, sql, params).await
    }
}

async fn query_one(
    client: &Client,
    server: &str,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<tokio_postgres::Row, LockError> {
    match tokio::time::timeout(TIMEOUT, client.query_one(sql, params)).await {
        Ok(result) => {
            result.map_err(|source| LockError::Query { server: server.to_owned(), source })
        }
        Err(_) => Err(LockError::Timeout { server: server.to_owned(), after: TIMEOUT }),
    }
}

/// Who holds lock `key` on the server `client` is connected to, if anyone.
/// How long a run waits for the server to end the session of a lock holder whose process is gone.
const DEAD_HOLDER_GRACE: Duration = Duration::from_secs(10);

/// Whether process `pid` of this host exists (signal 0).
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else { return false };
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH)
    )
}

async fn owner_of(client: &Client, server: &str, key: i64) -> Result<Option<LockOwner>, LockError> {
    let sql = format!(
        "SELECT l.pid, coalesce(a.application_name, ''), to_regclass('rail_lock_holders') IS NOT NULL
         FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE {LOCK_ROW} LIMIT 1"
    );
    let rows = match tokio::time::timeout(TIMEOUT, client.query(&sql, &[&key])).await {
        Ok(result) => {
            result.map_err(|source| LockError::Query { server: server.to_owned(), source })?
        }
        Err(_) => return Err(LockError::Timeout { server: server.to_owned(), after: TIMEOUT }),
    };
    let Some(row) = rows.first() else { return Ok(None) };
    let backend_pid: i32 = row.get(0);
    let application_name: String = row.get(1);
    let has_table: bool = row.get(2);
    if has_table {
        let recorded = client
            .query_opt(
                "SELECT holder FROM rail_lock_holders WHERE backend_pid = $1 AND lock_key = $2",
                &[&backend_pid, &key],
            )
            .await
            .ok()
            .flatten()
            .and_then(|row| serde_json::from_str::<Holder>(row.get(0)).ok());
        if let Some(holder) = recorded {
            return Ok(Some(LockOwner::Rail(holder)));
        }
    }
    Ok(Some(match Holder::from_application_name(&application_name) {
        Some(holder) => LockOwner::Rail(holder),
        None => LockOwner::Other { backend_pid, application_name },
    }))
}

/// Who holds the run lock of `db` right now, without taking it (`deploy status`, dry runs).
pub async fn current_holder(db: &DbTarget) -> Result<Option<LockOwner>, LockError> {
    let server = db.with_dbname(MAINTENANCE_DATABASE);
    let client = server
        .connect(TIMEOUT, "rail:status")
        .await
        .map_err(|source| LockError::Connect { source })?;
    owner_of(&client, &server.to_string(), lock_key(db.dbname())).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_distinct() {
        assert_eq!(lock_key("app"), lock_key("app"));
        assert_ne!(lock_key("app"), lock_key("app2"));
        // Part of the contract between rail versions: a new version must exclude an old one.
        assert_eq!(lock_key("rail_demo"), {
            let d = Sha256::digest(b"rail:lock:rail_demo");
            i64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
        });
    }

    #[test]
    fn application_name_round_trips_and_fits() {
        let run_id: RunId = "20260102T030405Z-a1b2c3".parse().unwrap();
        let holder = Holder {
            run_id: run_id.clone(),
            kind: RunKind::Rollback,
            host: "web-1".into(),
            pid: 4242,
            started_at: run_id.started_at(),
        };
        let name = holder.application_name();
        assert_eq!(name, "rail:rollback:20260102T030405Z-a1b2c3:4242@web-1");
        assert_eq!(Holder::from_application_name(&name), Some(holder.clone()));

        let long =
            Holder { host: "a-very-long-host-name.eu-west-1.compute.internal".into(), ..holder };
        let name = long.application_name();
        assert_eq!(name.len(), 63);
        let back = Holder::from_application_name(&name).unwrap();
        assert_eq!((back.run_id, back.pid), (long.run_id.clone(), 4242));
        assert!(long.host.starts_with(&back.host));
        assert_eq!(Holder::from_application_name("psql"), None);
    }

    #[test]
    fn held_message_names_the_holder() {
        let run_id: RunId = "20260102T030405Z-a1b2c3".parse().unwrap();
        let holder = Holder {
            started_at: run_id.started_at(),
            run_id,
            kind: RunKind::Deploy,
            host: "ci-runner".into(),
            pid: 77,
        };
        let err = LockError::Held { owner: Box::new(LockOwner::Rail(holder)) };
        assert_eq!(
            err.to_string(),
            "another rail run holds the lock: deploy run 20260102T030405Z-a1b2c3 on ci-runner (pid 77) \
             since 2026-01-02 03:04:05 UTC"
        );
    }
}
