//! The deploy strategy: whether a deploy opens the maintenance window, decided from each pending
//! migration's own SQL (`sqlmigrate`, read by `analysis`), and what an online deploy does differently:
//! migrations under `lock_timeout` with bounded retries.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rail_core::config::{Config, DeployStrategy};
use rail_core::db::DbTarget;
use serde::{Deserialize, Serialize};

use crate::analysis::{self, MigrationAnalysis, Verdict};
use crate::django::Django;

/// The strategy a run takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Chosen {
    /// No maintenance window: the running release serves throughout.
    Online,
    /// The maintenance window around the migration and the restart.
    Maintenance,
}

impl Chosen {
    pub fn name(self) -> &'static str {
        match self {
            Chosen::Online => "online",
            Chosen::Maintenance => "maintenance",
        }
    }
}

/// What the pre-checks decided, and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Decision {
    /// `deploy.strategy`.
    pub configured: DeployStrategy,
    pub chosen: Chosen,
    /// One sentence: why this strategy.
    pub reason: String,
    /// Set when the configured strategy refuses the deploy (`online` and a migration that needs the
    /// window): the pre-checks fail with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// The analysis of every pending migration, in plan order.
    pub migrations: Vec<MigrationAnalysis>,
}

impl Decision {
    /// A few words for a progress line: the strategy and, when a migration decided it, which one and
    /// by which rule (the reason in full is in the journal and the dry run).
    pub fn brief(&self) -> String {
        let culprit = self
            .migrations
            .iter()
            .filter(|m| m.verdict != Verdict::Online)
            .find_map(|m| m.findings.iter().find(|f| f.verdict == m.verdict).map(|f| (m, f)));
        match (self.configured, self.chosen, culprit) {
            (DeployStrategy::Maintenance, _, _) => "maintenance window (deploy.strategy)".into(),
            (_, Chosen::Maintenance, Some((m, f))) => {
                format!("maintenance window: {} ({})", m.migration, f.rule)
            }
            (_, Chosen::Maintenance, None) => "maintenance window".into(),
            (_, Chosen::Online, _) => "online".into(),
        }
    }
}

/// Read every pending migration's SQL (`sqlmigrate`, `deploy.online.analysis_jobs` at once) and the
/// sizes of the tables it touches, and classify each.
pub async fn analyse(
    cfg: &Config,
    dj: &Django<'_>,
    pending: &[String],
) -> anyhow::Result<Vec<MigrationAnalysis>> {
    if pending.is_empty() {
        return Ok(Vec::new());
    }
    let jobs = Arc::new(tokio::sync::Semaphore::new(cfg.deploy.online.analysis_jobs.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for (index, name) in pending.iter().enumerate() {
        let (app, migration) = name
            .split_once('.')
            .with_context(|| format!("pending migration `{name}` is not APP.NAME"))?;
        let cmd = dj.sqlmigrate(app, migration)?;
        let jobs = Arc::clone(&jobs);
        let name = name.clone();
        set.spawn(async move {
            let _permit = jobs.acquire_owned().await;
            let out = cmd.output().await.with_context(|| format!("sqlmigrate of {name}"))?;
            anyhow::Ok((index, out.stdout_text()))
        });
    }
    let mut sql = vec![String::new(); pending.len()];
    while let Some(joined) = set.join_next().await {
        let (index, text) = joined.context("a sqlmigrate task failed")??;
        sql[index] = text;
    }
    let tables: BTreeSet<String> =
        sql.iter().flat_map(|text| analysis::tables_needing_size(text)).collect();
    let rows = if tables.is_empty() {
        std::collections::BTreeMap::new()
    } else {
        table_rows(cfg, &tables.into_iter().collect::<Vec<_>>()).await?
    };
    let lookup = |table: &str| rows.get(table).copied();
    let opts = analysis::Options {
        lock_risk_rows: cfg.deploy.online.lock_risk_rows,
        table_rows: &lookup,
        assume_safe: &cfg.deploy.online.assume_safe,
    };
    Ok(pending.iter().zip(&sql).map(|(name, text)| analysis::analyze(name, text, &opts)).collect())
}

/// The strategy of a run from its pending migrations (or why they could not be read): the migrations
/// are analysed only when the verdict matters (not for `maintenance`, not with `--migrate-to`). The
/// deploy's pre-checks and its dry run decide through this one function.
pub async fn decide_for(
    cfg: &Config,
    dj: &Django<'_>,
    strategy: DeployStrategy,
    migrate_to: bool,
    pending: Result<&[String], String>,
) -> Decision {
    let analysis = match pending {
        _ if strategy == DeployStrategy::Maintenance || migrate_to => Ok(Vec::new()),
        Ok(pending) => analyse(cfg, dj, pending).await.map_err(|e| format!("{e:#}")),
        Err(e) => Err(format!("the pending migrations could not be read: {e}")),
    };
    decide(strategy, analysis, migrate_to)
}

/// Estimated rows of each named table in the app's schemas, from `pg_class` (the planner's estimate,
/// kept by autovacuum and ANALYZE; for a table never analysed, its size at about 100 bytes a row).
async fn table_rows(
    cfg: &Config,
    tables: &[String],
) -> anyhow::Result<std::collections::BTreeMap<String, u64>> {
    let url = cfg.database_url().context("database.url is not set")?;
    let db = DbTarget::parse(&url)?;
    let client = db.connect(cfg.database.connect_timeout.get(), "rail-deploy").await?;
    let rows = client
        .query(
            "SELECT c.relname::text, \
                    CASE WHEN c.reltuples >= 0 THEN c.reltuples::bigint \
                         ELSE pg_relation_size(c.oid) / 100 END \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY (current_schemas(false)) \
               AND c.relname = ANY ($1)",
            &[&tables],
        )
        .await
        .context("reading table sizes from pg_class")?;
    Ok(rows
        .iter()
        .map(|row| {
            let name: String = row.get(0);
            let n: i64 = row.get(1);
            (name, u64::try_from(n).unwrap_or(0))
        })
        .collect())
}

/// The strategy for a run, from the configuration and the analysis (`Err` when it could not be made).
pub fn decide(
    configured: DeployStrategy,
    analysis: Result<Vec<MigrationAnalysis>, String>,
    migrate_to: bool,
) -> Decision {
    let decision = |chosen, reason: String, refused: Option<String>, migrations| Decision {
        configured,
        chosen,
        reason,
        refused,
        migrations,
    };
    if configured == DeployStrategy::Maintenance {
        return decision(
            Chosen::Maintenance,
            "deploy.strategy = \"maintenance\"".into(),
            None,
            analysis.unwrap_or_default(),
        );
    }
    let refuse = |why: &str| {
        (configured == DeployStrategy::Online).then(|| {
            format!("deploy.strategy = \"online\" refuses this deploy: {why}; deploy it with --strategy maintenance")
        })
    };
    if migrate_to {
        let why = "--migrate-to runs migrations backwards or part-way, which rail does not analyse";
        return decision(Chosen::Maintenance, why.into(), refuse(why), Vec::new());
    }
    let migrations = match analysis {
        Ok(m) => m,
        Err(e) => {
            let why = format!("the pending migrations could not be analysed ({e})");
            return decision(Chosen::Maintenance, why.clone(), refuse(&why), Vec::new());
        }
    };
    if migrations.is_empty() {
        return decision(Chosen::Online, "no migration is pending".into(), None, migrations);
    }
    let worst = migrations.iter().map(|m| m.verdict).max().unwrap_or(Verdict::Online);
    let first = |verdict: Verdict| {
        migrations.iter().find(|m| m.verdict == verdict).map(|m| {
            match m.findings.iter().find(|f| f.verdict == verdict) {
                Some(f) => format!("{}: {} ({}): {}", m.migration, f.rule, f.reason, f.fix),
                None => m.migration.clone(),
            }
        })
    };
    let count = migrations.len();
    let plural = if count == 1 { "" } else { "s" };
    match worst {
        Verdict::Online => decision(
            Chosen::Online,
            format!("every pending migration is online ({count} migration{plural})"),
            None,
            migrations,
        ),
        Verdict::LockRisk => {
            let why = first(Verdict::LockRisk).unwrap_or_default();
            if configured == DeployStrategy::Online {
                decision(
                    Chosen::Online,
                    format!("deploy.strategy = \"online\"; lock risk, bounded by deploy.online.lock_timeout: {why}"),
                    None,
                    migrations,
                )
            } else {
                decision(Chosen::Maintenance, format!("lock risk: {why}"), None, migrations)
            }
        }
        Verdict::Maintenance => {
            let why = first(Verdict::Maintenance).unwrap_or_default();
            let refused = refuse(&why);
            decision(Chosen::Maintenance, format!("needs the window: {why}"), refused, migrations)
        }
    }
}

/// `PGOPTIONS` for an online deploy's migrations: the configured `lock_timeout`, added to what the
/// app's environment already sets.
pub fn pgoptions(cfg: &Config, existing: Option<&str>) -> String {
    let ms = cfg.deploy.online.lock_timeout.get().as_millis();
    let own = format!("-c lock_timeout={ms}");
    match existing.map(str::trim).filter(|s| !s.is_empty()) {
        Some(existing) => format!("{existing} {own}"),
        None => own,
    }
}

/// Whether a failed migration failed on `lock_timeout` (and may be tried again).
pub fn is_lock_timeout(error: &anyhow::Error) -> bool {
    let text = format!("{error:#}");
    text.contains("lock timeout") || text.contains("LockNotAvailable") || text.contains("55P03")
}

/// The pause before the `attempt`-th retry (1-based): 1 s, 2 s, 4 s… at most 15 s.
pub fn retry_pause(attempt: u32) -> Duration {
    Duration::from_secs((1u64 << attempt.saturating_sub(1).min(4)).min(15))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::Finding;

    fn analysed(name: &str, verdict: Verdict, rule: &str) -> MigrationAnalysis {
        MigrationAnalysis {
            migration: name.into(),
            verdict,
            assumed_safe: false,
            findings: if verdict == Verdict::Online {
                Vec::new()
            } else {
                vec![Finding {
                    rule: rule.into(),
                    verdict,
                    statement: "ALTER TABLE x".into(),
                    table: Some("x".into()),
                    reason: "the reason".into(),
                    fix: "the fix".into(),
                }]
            },
            statements: 1,
        }
    }

    #[test]
    fn auto_goes_online_only_when_every_migration_is_online() {
        let online = decide(
            DeployStrategy::Auto,
            Ok(vec![
                analysed("a.0001", Verdict::Online, ""),
                analysed("a.0002", Verdict::Online, ""),
            ]),
            false,
        );
        assert_eq!(online.chosen, Chosen::Online);
        assert!(online.reason.contains("2 migrations"), "{}", online.reason);
        let risky = decide(
            DeployStrategy::Auto,
            Ok(vec![
                analysed("a.0001", Verdict::Online, ""),
                analysed("a.0002", Verdict::LockRisk, "index"),
            ]),
            false,
        );
        assert_eq!(risky.chosen, Chosen::Maintenance);
        assert!(risky.reason.contains("a.0002: index"), "{}", risky.reason);
        assert!(risky.refused.is_none());
        let none = decide(DeployStrategy::Auto, Ok(Vec::new()), false);
        assert_eq!(none.chosen, Chosen::Online);
    }

    #[test]
    fn online_refuses_what_needs_the_window_and_says_why() {
        let d = decide(
            DeployStrategy::Online,
            Ok(vec![analysed("catalog.0002_product_stock", Verdict::Maintenance, "drop-column")]),
            false,
        );
        let refused = d.refused.expect("refused");
        assert!(refused.contains("catalog.0002_product_stock: drop-column"), "{refused}");
        assert!(refused.contains("the fix"), "{refused}");
        let lock = decide(
            DeployStrategy::Online,
            Ok(vec![analysed("a.0002", Verdict::LockRisk, "index")]),
            false,
        );
        assert_eq!(lock.chosen, Chosen::Online);
        assert!(lock.refused.is_none());
        let unknown = decide(DeployStrategy::Online, Err("sqlmigrate failed".into()), false);
        assert!(unknown.refused.unwrap().contains("sqlmigrate failed"));
        assert!(decide(DeployStrategy::Online, Ok(Vec::new()), true).refused.is_some());
        assert!(decide(DeployStrategy::Auto, Ok(Vec::new()), true).refused.is_none());
    }

    #[test]
    fn maintenance_is_maintenance_whatever_the_analysis() {
        let d = decide(DeployStrategy::Maintenance, Ok(Vec::new()), false);
        assert_eq!(d.chosen, Chosen::Maintenance);
        assert!(d.refused.is_none());
    }

    #[test]
    fn lock_timeout_joins_the_app_s_own_pgoptions() {
        let cfg = Config::default();
        assert_eq!(pgoptions(&cfg, None), "-c lock_timeout=2000");
        assert_eq!(
            pgoptions(&cfg, Some("-c search_path=app")),
            "-c search_path=app -c lock_timeout=2000"
        );
        assert_eq!(retry_pause(1), Duration::from_secs(1));
        assert_eq!(retry_pause(3), Duration::from_secs(4));
        assert_eq!(retry_pause(30), Duration::from_secs(15));
    }
}
