//! The PostgreSQL store: tables `rail_schema_versions` and `rail_schema_activations`.
//!
//! Tables are created on first use. Every write is one transaction that first takes a transaction
//! advisory lock, so concurrent writers queue instead of racing; a partial unique index keeps at most
//! one version active even against writers that skip the lock. Times and JSON travel as text so the
//! store needs no optional tokio-postgres features.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use tokio_postgres::{Client, GenericClient, NoTls, Row};

use super::{
    rollback_target, Activation, ActivationReason, SchemaStoreError, StoredVersion, VersionInfo,
};
use crate::secret::{redact_url, Secret};

/// Key of the advisory lock that serialises writers ("rail schema" in ASCII).
const LOCK_KEY: i64 = 0x7261_696c_5f73_6368;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS rail_schema_versions (
    version     text PRIMARY KEY,
    description text NOT NULL DEFAULT '',
    sha256      text NOT NULL,
    sdl         text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text NOT NULL DEFAULT '',
    is_active   boolean NOT NULL DEFAULT false,
    metadata    jsonb NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX IF NOT EXISTS rail_schema_versions_one_active
    ON rail_schema_versions (is_active) WHERE is_active;
CREATE TABLE IF NOT EXISTS rail_schema_activations (
    id           bigserial PRIMARY KEY,
    version      text NOT NULL,
    previous     text,
    reason       text NOT NULL,
    activated_at timestamptz NOT NULL DEFAULT now(),
    activated_by text NOT NULL DEFAULT ''
);
";

/// Columns of `rail_schema_versions` in the order [`info_from_row`] reads them.
const INFO_COLUMNS: &str = "version, description, sha256, \
    to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), \
    created_by, is_active, metadata::text";

pub struct PgStore {
    /// Behind a mutex so each write can hold the connection for its whole transaction.
    client: tokio::sync::Mutex<Client>,
}

type Param<'a> = &'a (dyn tokio_postgres::types::ToSql + Sync);

fn db(action: &'static str) -> impl FnOnce(tokio_postgres::Error) -> SchemaStoreError {
    move |source| SchemaStoreError::Database { action, source }
}

/// Connect to PostgreSQL, the password never appearing in errors.
pub(super) async fn connect(url: &Secret) -> Result<Client, SchemaStoreError> {
    let (client, connection) = tokio_postgres::connect(url.expose(), NoTls)
        .await
        .map_err(|source| SchemaStoreError::Connect { target: redact_url(url.expose()), source })?;
    tokio::spawn(async move {
        // The connection ends when the client is dropped; an error then has no one left to tell.
        let _ = connection.await;
    });
    Ok(client)
}

pub(super) fn parse_time(text: &str, what: &str) -> Result<DateTime<Utc>, SchemaStoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| SchemaStoreError::BadValue { what: what.to_owned() })
}

fn info_from_row(row: &Row) -> Result<VersionInfo, SchemaStoreError> {
    let version: String = row.get(0);
    let metadata: String = row.get(6);
    Ok(VersionInfo {
        created_at: parse_time(row.get(3), &format!("created_at of {version}"))?,
        metadata: serde_json::from_str(&metadata)
            .map_err(|_| SchemaStoreError::BadValue { what: format!("metadata of {version}") })?,
        description: row.get(1),
        sha256: row.get(2),
        created_by: row.get(4),
        is_active: row.get(5),
        version,
    })
}

impl PgStore {
    pub async fn connect(url: &Secret) -> Result<Self, SchemaStoreError> {
        let mut client = connect(url).await?;
        let tx = client.transaction().await.map_err(db("creating the schema tables"))?;
        lock(&tx).await?;
        tx.batch_execute(SCHEMA).await.map_err(db("creating the schema tables"))?;
        tx.commit().await.map_err(db("creating the schema tables"))?;
        Ok(Self { client: tokio::sync::Mutex::new(client) })
    }

    pub async fn list(&self) -> Result<Vec<VersionInfo>, SchemaStoreError> {
        infos(&*self.client.lock().await, "", &[]).await
    }

    async fn one(
        &self,
        filter: &str,
        params: &[Param<'_>],
    ) -> Result<Option<StoredVersion>, SchemaStoreError> {
        let sql = format!("SELECT {INFO_COLUMNS}, sdl FROM rail_schema_versions {filter}");
        let client = self.client.lock().await;
        let row = client.query_opt(&sql, params).await.map_err(db("reading a schema version"))?;
        match row {
            Some(row) => Ok(Some(StoredVersion { info: info_from_row(&row)?, sdl: row.get(7) })),
            None => Ok(None),
        }
    }

    pub async fn get(&self, version: &str) -> Result<StoredVersion, SchemaStoreError> {
        self.one("WHERE version = $1", &[&version])
            .await?
            .ok_or_else(|| SchemaStoreError::NotFound { version: version.to_owned() })
    }

    pub async fn active(&self) -> Result<Option<StoredVersion>, SchemaStoreError> {
        self.one("WHERE is_active", &[]).await
    }

    pub async fn create(
        &self,
        info: VersionInfo,
        sdl: &str,
        activation: Option<(ActivationReason, String)>,
    ) -> Result<VersionInfo, SchemaStoreError> {
        let mut info = info;
        info.is_active = activation.is_some();
        let mut client = self.client.lock().await;
        let tx = client.transaction().await.map_err(db("starting a transaction"))?;
        lock(&tx).await?;
        let metadata = info.metadata.to_string();
        let created_at = info.created_at.to_rfc3339();
        let inserted = tx
            .execute(
                "INSERT INTO rail_schema_versions \
                 (version, description, sha256, sdl, created_at, created_by, is_active, metadata) \
                 VALUES ($1, $2, $3, $4, $5::text::timestamptz, $6, false, $7::text::jsonb) \
                 ON CONFLICT (version) DO NOTHING",
                &[
                    &info.version,
                    &info.description,
                    &info.sha256,
                    &sdl,
                    &created_at,
                    &info.created_by,
                    &metadata,
                ],
            )
            .await
            .map_err(db("storing a schema version"))?;
        if inserted == 0 {
            return Err(SchemaStoreError::AlreadyExists { version: info.version });
        }
        if let Some((reason, by)) = &activation {
            switch(&tx, &info.version, *reason, by).await?;
        }
        tx.commit().await.map_err(db("committing a new schema version"))?;
        Ok(info)
    }

    pub async fn activate(
        &self,
        version: &str,
        reason: ActivationReason,
        by: &str,
    ) -> Result<Option<Activation>, SchemaStoreError> {
        let mut client = self.client.lock().await;
        let tx = client.transaction().await.map_err(db("starting a transaction"))?;
        lock(&tx).await?;
        let row = tx
            .query_opt("SELECT is_active FROM rail_schema_versions WHERE version = $1", &[&version])
            .await
            .map_err(db("activating a version"))?;
        let activation = match row {
            None => return Err(SchemaStoreError::NotFound { version: version.to_owned() }),
            Some(row) if row.get::<_, bool>(0) => None,
            Some(_) => Some(switch(&tx, version, reason, by).await?),
        };
        tx.commit().await.map_err(db("committing an activation"))?;
        Ok(activation)
    }

    pub async fn delete(
        &self,
        version: &str,
        force: bool,
    ) -> Result<VersionInfo, SchemaStoreError> {
        let mut client = self.client.lock().await;
        let tx = client.transaction().await.map_err(db("starting a transaction"))?;
        lock(&tx).await?;
        let info = infos(&tx, "WHERE version = $1", &[&version])
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| SchemaStoreError::NotFound { version: version.to_owned() })?;
        if info.is_active && !force {
            return Err(SchemaStoreError::ActiveVersion { version: version.to_owned() });
        }
        tx.execute("DELETE FROM rail_schema_versions WHERE version = $1", &[&version])
            .await
            .map_err(db("deleting a schema version"))?;
        tx.commit().await.map_err(db("committing a deletion"))?;
        Ok(info)
    }

    pub async fn rollback(&self, by: &str) -> Result<Activation, SchemaStoreError> {
        let mut client = self.client.lock().await;
        let tx = client.transaction().await.map_err(db("starting a transaction"))?;
        lock(&tx).await?;
        let history = history(&tx).await?;
        let rows = tx
            .query("SELECT version FROM rail_schema_versions", &[])
            .await
            .map_err(db("reading schema versions"))?;
        let versions: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        let existing: HashSet<&str> = versions.iter().map(String::as_str).collect();
        let current = current(&tx).await?;
        let target = rollback_target(&history, &existing, current.as_deref())
            .ok_or(SchemaStoreError::NothingToRollBack)?;
        let activation = switch(&tx, &target, ActivationReason::Rollback, by).await?;
        tx.commit().await.map_err(db("committing a rollback"))?;
        Ok(activation)
    }

    pub async fn history(&self) -> Result<Vec<Activation>, SchemaStoreError> {
        history(&*self.client.lock().await).await
    }
}

/// Take the writers' advisory lock for the rest of the transaction.
async fn lock(tx: &impl GenericClient) -> Result<(), SchemaStoreError> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await
        .map(|_| ())
        .map_err(db("taking the schema store lock"))
}

async fn infos(
    client: &impl GenericClient,
    filter: &str,
    params: &[Param<'_>],
) -> Result<Vec<VersionInfo>, SchemaStoreError> {
    let sql = format!("SELECT {INFO_COLUMNS} FROM rail_schema_versions {filter}");
    let rows = client.query(&sql, params).await.map_err(db("reading schema versions"))?;
    rows.iter().map(info_from_row).collect()
}

async fn current(tx: &impl GenericClient) -> Result<Option<String>, SchemaStoreError> {
    let row = tx
        .query_opt("SELECT version FROM rail_schema_versions WHERE is_active", &[])
        .await
        .map_err(db("reading the active version"))?;
    Ok(row.map(|r| r.get(0)))
}

/// Make `version` the only active one and record the activation.
async fn switch(
    tx: &impl GenericClient,
    version: &str,
    reason: ActivationReason,
    by: &str,
) -> Result<Activation, SchemaStoreError> {
    let previous = current(tx).await?;
    tx.execute("UPDATE rail_schema_versions SET is_active = false WHERE is_active", &[])
        .await
        .map_err(db("activating a version"))?;
    tx.execute("UPDATE rail_schema_versions SET is_active = true WHERE version = $1", &[&version])
        .await
        .map_err(db("activating a version"))?;
    let row = tx
        .query_one(
            "INSERT INTO rail_schema_activations (version, previous, reason, activated_by) \
             VALUES ($1, $2, $3, $4) \
             RETURNING to_char(activated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
            &[&version, &previous, &reason.as_str(), &by],
        )
        .await
        .map_err(db("recording an activation"))?;
    Ok(Activation {
        version: version.to_owned(),
        previous,
        reason,
        at: parse_time(row.get(0), "activated_at")?,
        by: by.to_owned(),
    })
}

async fn history(client: &impl GenericClient) -> Result<Vec<Activation>, SchemaStoreError> {
    let rows = client
        .query(
            "SELECT version, previous, reason, \
             to_char(activated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), \
             activated_by FROM rail_schema_activations ORDER BY id",
            &[],
        )
        .await
        .map_err(db("reading the activation history"))?;
    rows.iter()
        .map(|row| {
            let reason: String = row.get(2);
            Ok(Activation {
                version: row.get(0),
                previous: row.get(1),
                reason: ActivationReason::parse(&reason).ok_or_else(|| {
                    SchemaStoreError::BadValue { what: format!("activation reason `{reason}`") }
                })?,
                at: parse_time(row.get(3), "activated_at")?,
                by: row.get(4),
            })
        })
        .collect()
}
