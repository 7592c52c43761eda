//! Retention: which sets and restore leftovers go, and removing them.
//!
//! Complete sets beyond `backup.keep_last` or older than `backup.max_age_days` (0 turns either rule off)
//! are removed, except the newest set that passes checksum verification, which is never removed. Sets
//! without a manifest are leftovers of dead runs and always go; damaged sets go once older than
//! `max_age_days`. Legacy dumps are the older tools' and are left alone. Of what restores kept (the
//! replaced databases and directories), the newest generation stays unless older than `max_age_days`;
//! unfinished restored copies and scratch databases go. Callers hold the run lock, so nothing removed is
//! in use.

use chrono::{Duration as ChronoDuration, NaiveDateTime, Utc};
use serde::Serialize;

use super::{list, store, verify, BackupError, Progress, SetStatus, VerifyLevel};
use crate::config::Config;
use crate::restore::{self, LeftoverKind};
use crate::store::{BackupStore, EntryKind, StoreEntry};

/// What a prune removes (or, in a dry run, would remove).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PrunePlan {
    pub dry_run: bool,
    /// The newest verified set, which is never removed.
    pub protected: Option<String>,
    pub items: Vec<PruneItem>,
    /// Problems that did not stop the prune (the database was unreachable for leftovers).
    pub warnings: Vec<String>,
}

/// One thing removed.
#[derive(Debug, Clone, Serialize)]
pub struct PruneItem {
    pub kind: PruneKind,
    /// Set name, database name or directory path.
    pub name: String,
    pub reason: String,
    /// Bytes on disk, for sets.
    pub size: Option<u64>,
    /// The store entry of a set.
    #[serde(skip)]
    entry: Option<StoreEntry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PruneKind {
    Set,
    Incomplete,
    Damaged,
    KeptDatabase,
    KeptDirectory,
    Unfinished,
}

/// Work out what retention removes and, unless `dry_run`, remove it.
pub async fn prune(
    cfg: &Config,
    dry_run: bool,
    progress: &dyn Progress,
) -> Result<PrunePlan, BackupError> {
    let now = Utc::now();
    let keep_last = cfg.backup.keep_last as usize;
    let max_age = (cfg.backup.max_age_days > 0)
        .then(|| ChronoDuration::days(i64::from(cfg.backup.max_age_days)));
    let too_old = |t: Option<chrono::DateTime<Utc>>| matches!((max_age, t), (Some(age), Some(t)) if now - t > age);
    let entries = list(cfg)?;
    let mut plan = PrunePlan { dry_run, ..PrunePlan::default() };

    let mut complete_index = 0;
    let mut candidates = Vec::new();
    for entry in &entries {
        match entry.status {
            SetStatus::Incomplete => plan.items.push(PruneItem {
                kind: PruneKind::Incomplete,
                name: entry.name.clone(),
                reason: "incomplete: left by a run that did not finish".into(),
                size: Some(entry.size),
                entry: Some(entry.entry.clone()),
            }),
            SetStatus::Damaged if too_old(entry.created_at) => plan.items.push(PruneItem {
                kind: PruneKind::Damaged,
                name: entry.name.clone(),
                reason: format!("damaged and older than {} days", cfg.backup.max_age_days),
                size: Some(entry.size),
                entry: Some(entry.entry.clone()),
            }),
            SetStatus::Complete => {
                let beyond = keep_last > 0 && complete_index >= keep_last;
                if beyond || too_old(entry.created_at) {
                    let reason = if beyond {
                        format!("beyond keep_last = {keep_last}")
                    } else {
                        format!("older than max_age_days = {}", cfg.backup.max_age_days)
                    };
                    candidates.push((entry.entry.clone(), reason, entry.size));
                }
                complete_index += 1;
            }
            // Unauthenticated sets are not known to be rail's: never counted, never removed.
            SetStatus::Damaged
            | SetStatus::Legacy
            | SetStatus::Unauthenticated
            | SetStatus::Foreign => {}
        }
    }
    if !candidates.is_empty() {
        for entry in entries.iter().filter(|e| e.status == SetStatus::Complete) {
            if verify(cfg, &entry.name, VerifyLevel::Checksums, progress).await?.ok() {
                plan.protected = Some(entry.name.clone());
                break;
            }
        }
    }
    for (entry, reason, size) in candidates {
        if plan.protected.as_deref() != Some(entry.name.as_str()) {
            plan.items.push(PruneItem {
                kind: PruneKind::Set,
                name: entry.name.clone(),
                reason,
                size: Some(size),
                entry: Some(entry),
            });
        }
    }

    if cfg.database_url().is_some() {
        match restore::leftovers(cfg).await {
            Ok(leftovers) => {
                let newest = leftovers.iter().filter_map(|l| l.stamp.clone()).max();
                for leftover in leftovers {
                    let (kind, reason) = match leftover.kind {
                        LeftoverKind::Unfinished => (
                            PruneKind::Unfinished,
                            "left by a restore or verification that did not finish".to_owned(),
                        ),
                        LeftoverKind::KeptDatabase | LeftoverKind::KeptDirectory => {
                            let stamp_time = leftover
                                .stamp
                                .as_deref()
                                .and_then(|s| {
                                    NaiveDateTime::parse_from_str(s.get(..14)?, "%Y%m%d%H%M%S").ok()
                                })
                                .map(|t| t.and_utc());
                            let kind = if leftover.kind == LeftoverKind::KeptDatabase {
                                PruneKind::KeptDatabase
                            } else {
                                PruneKind::KeptDirectory
                            };
                            if leftover.stamp != newest {
                                (kind, "replaced by an earlier restore; a newer restore's copy is kept".to_owned())
                            } else if too_old(stamp_time) {
                                (
                                    kind,
                                    format!(
                                        "replaced by a restore more than {} days ago",
                                        cfg.backup.max_age_days
                                    ),
                                )
                            } else {
                                continue;
                            }
                        }
                    };
                    plan.items.push(PruneItem {
                        kind,
                        name: leftover.name,
                        reason,
                        size: None,
                        entry: None,
                    });
                }
            }
            Err(error) => plan
                .warnings
                .push(format!("restore leftovers not checked: {}", super::error_chain(&error))),
        }
    }

    if !dry_run {
        let store = store(cfg);
        for item in &plan.items {
            match item.kind {
                PruneKind::Set | PruneKind::Damaged | PruneKind::Incomplete => {
                    if let Some(entry) = item.entry.as_ref().filter(|e| e.kind != EntryKind::Legacy)
                    {
                        store.remove(entry)?;
                    }
                }
                PruneKind::KeptDatabase | PruneKind::KeptDirectory | PruneKind::Unfinished => {
                    let leftover = restore::Leftover {
                        kind: LeftoverKind::Unfinished,
                        name: item.name.clone(),
                        stamp: None,
                    };
                    if let Err(error) = restore::remove_leftover(cfg, &leftover).await {
                        plan.warnings.push(format!(
                            "cannot remove {}: {}",
                            item.name,
                            super::error_chain(&error)
                        ));
                    }
                }
            }
            tracing::info!(name = %item.name, reason = %item.reason, "pruned");
        }
    }
    Ok(plan)
}
