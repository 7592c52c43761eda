//! Classifies a Django migration from the SQL that `manage.py sqlmigrate` prints for it: `online` (the
//! running release keeps working while it runs and after), `lock-risk` (it holds a lock that blocks the
//! site for as long as a large table takes to scan, rewrite or index) or `maintenance` (the running
//! release breaks on it, or rail cannot tell).
//!
//! The SQL is read with PostgreSQL's own parser (`pg_query`), statement by statement, against the rules
//! of [`rules()`]. Pure and synchronous: the caller runs `sqlmigrate` and reads the table sizes.

#[cfg(test)]
mod fixtures;
mod rules;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

/// How a migration can be deployed. Ordered: the worst of several wins.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// The running release keeps working during and after the migration, and no long lock is held.
    Online,
    /// Safe for the running release, but it holds a lock on a large table for as long as a scan,
    /// rewrite or index build takes.
    LockRisk,
    /// The running release breaks on it, or its effect is unknown: the maintenance window.
    Maintenance,
}

impl Verdict {
    /// The kebab-case name, as serialized.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Online => "online",
            Verdict::LockRisk => "lock-risk",
            Verdict::Maintenance => "maintenance",
        }
    }
}

/// One statement that is not plainly online, and the rule that caught it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The rule's kebab-case name, e.g. `add-column-not-null-without-db-default`.
    pub rule: String,
    pub verdict: Verdict,
    /// The statement, whitespace collapsed, at most about 300 characters.
    pub statement: String,
    /// The table it touches (unqualified, lowercased), when there is one.
    pub table: Option<String>,
    /// Why the running release breaks, or why it locks.
    pub reason: String,
    /// What to do instead.
    pub fix: String,
}

/// The analysis of one migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationAnalysis {
    /// `app.name`, e.g. `catalog.0002_product_stock`.
    pub migration: String,
    /// The worst verdict of the findings (`Online` when there are none, or when assumed safe).
    pub verdict: Verdict,
    /// Listed in `deploy.online.assume_safe`: the verdict is `Online` whatever the findings.
    pub assumed_safe: bool,
    /// Every statement that is not plainly online.
    pub findings: Vec<Finding>,
    /// SQL statements seen (transaction control such as BEGIN/COMMIT excluded).
    pub statements: usize,
}

/// What the analysis needs to know beyond the SQL.
pub struct Options<'a> {
    /// Tables with more rows than this make lock-holding statements `lock-risk`.
    pub lock_risk_rows: u64,
    /// Estimated rows of a table (`pg_class.reltuples`); `None` when unknown, which counts as an
    /// empty table unless `lock_risk_rows` is 0.
    pub table_rows: &'a dyn Fn(&str) -> Option<u64>,
    /// `app.name` entries of `deploy.online.assume_safe`.
    pub assume_safe: &'a [String],
}

/// Analyse one migration from its sqlmigrate text.
pub fn analyze(migration: &str, sqlmigrate_output: &str, opts: &Options<'_>) -> MigrationAnalysis {
    let mut size = |table: &str| (opts.table_rows)(table);
    let (findings, statements) = rules::check(sqlmigrate_output, opts.lock_risk_rows, &mut size);
    let assumed_safe = opts.assume_safe.iter().any(|m| m.trim() == migration);
    let worst = findings.iter().map(|f| f.verdict).max().unwrap_or(Verdict::Online);
    MigrationAnalysis {
        migration: migration.to_owned(),
        verdict: if assumed_safe { Verdict::Online } else { worst },
        assumed_safe,
        findings,
        statements,
    }
}

/// The tables whose size matters to [`analyze`] for this text (so the caller can read only those from
/// `pg_class` before calling it), lowercased, unqualified, each once, in order of appearance.
pub fn tables_needing_size(sqlmigrate_output: &str) -> Vec<String> {
    let mut asked: Vec<String> = Vec::new();
    let mut record = |table: &str| {
        if !asked.iter().any(|t| t == table) {
            asked.push(table.to_owned());
        }
        None
    };
    // With no threshold to pass, every size question is asked and none changes the path taken.
    rules::check(sqlmigrate_output, u64::MAX, &mut record);
    asked
}

/// Every rule: (name, verdict, one-line description), for docs and `--help`.
pub fn rules() -> &'static [(&'static str, Verdict, &'static str)] {
    &rules::TABLE
}

/// The rule reference of docs/migrations.md, as a Markdown table: name, verdict, what it catches, fix.
pub fn rules_markdown() -> String {
    let rows = rules::ALL.iter().map(|rule| {
        format!("| `{}` | {} | {} | {} |\n", rule.name, rule.verdict.name(), rule.catches, rule.fix)
    });
    let head = "| rule | verdict | what it catches | the fix |\n|---|---|---|---|\n";
    std::iter::once(head.to_owned()).chain(rows).collect()
}
