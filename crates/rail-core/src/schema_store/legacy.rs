//! Reading the old Django tool's table, `rail_django_graphql_schema_versions`.
//!
//! That table kept metadata only (version, description, SHA-256 of the SDL, author, flags); the SDL
//! itself lived in `schema_versions/schema_v<version>.graphql` beside the app, which `schemaver
//! import-legacy` reads. Its versions were free text (max 50 characters), so they are returned as
//! written and normalised by the caller.

use chrono::{DateTime, Utc};

use super::postgres::{connect, parse_time};
use super::SchemaStoreError;
use crate::secret::Secret;

/// The old tool's table.
pub const LEGACY_TABLE: &str = "rail_django_graphql_schema_versions";

/// One row of the old table.
#[derive(Debug, Clone, PartialEq)]
pub struct LegacyVersion {
    pub version: String,
    pub description: String,
    /// SHA-256 of the SDL as the old tool wrote it.
    pub schema_hash: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub is_active: bool,
    pub migration_files: serde_json::Value,
    pub rollback_instructions: Option<String>,
    pub metadata: serde_json::Value,
}

/// Every row of the old table, oldest first.
pub async fn read_legacy_versions(url: &Secret) -> Result<Vec<LegacyVersion>, SchemaStoreError> {
    let client = connect(url).await?;
    let exists: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&LEGACY_TABLE])
        .await
        .map_err(|source| SchemaStoreError::Database {
            action: "looking for the legacy table",
            source,
        })?
        .get(0);
    if !exists {
        return Err(SchemaStoreError::NoLegacyTable);
    }
    let rows = client
        .query(
            &format!(
                "SELECT version, coalesce(description, ''), coalesce(schema_hash, ''), \
                 to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), \
                 coalesce(created_by, ''), coalesce(is_active, false), \
                 coalesce(migration_files::text, '[]'), rollback_instructions, \
                 coalesce(metadata::text, '{{}}') \
                 FROM {LEGACY_TABLE} ORDER BY created_at, version"
            ),
            &[],
        )
        .await
        .map_err(|source| SchemaStoreError::Database {
            action: "reading the legacy table",
            source,
        })?;
    rows.iter()
        .map(|row| {
            let version: String = row.get(0);
            let json = |i: usize, what: &str| {
                serde_json::from_str::<serde_json::Value>(row.get(i)).map_err(|_| {
                    SchemaStoreError::BadValue { what: format!("{what} of legacy {version}") }
                })
            };
            Ok(LegacyVersion {
                description: row.get(1),
                schema_hash: row.get(2),
                created_at: parse_time(row.get(3), &format!("created_at of legacy {version}"))?,
                created_by: row.get(4),
                is_active: row.get(5),
                migration_files: json(6, "migration_files")?,
                rollback_instructions: row.get(7),
                metadata: json(8, "metadata")?,
                version,
            })
        })
        .collect()
}
