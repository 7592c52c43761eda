//! The rules, and the walk over a migration's statements that applies them.

use std::collections::HashSet;

use pg_query::protobuf::{
    self, AlterTableCmd, AlterTableType, ColumnDef, ConstrType, Constraint, ObjectType, RangeVar,
    Token,
};
use pg_query::NodeEnum;

use super::{Finding, Verdict};

/// One rule: what it catches and the generic fix (a finding may name a more precise one).
pub(super) struct Rule {
    pub(super) name: &'static str,
    pub(super) verdict: Verdict,
    pub(super) catches: &'static str,
    pub(super) fix: &'static str,
}

const DROP_TABLE: Rule = Rule {
    name: "drop-table",
    verdict: Verdict::Maintenance,
    catches: "DROP TABLE / DROP VIEW of an existing table: the running release still queries it",
    fix: "remove the model from the code first (SeparateDatabaseAndState, state only) and drop the table in a later release",
};
const DROP_COLUMN: Rule = Rule {
    name: "drop-column",
    verdict: Verdict::Maintenance,
    catches: "ALTER TABLE … DROP COLUMN: the running release names every column of its models in its queries",
    fix: "remove the field from the code first (SeparateDatabaseAndState, state only) and drop the column in a later release",
};
const RENAME_TABLE: Rule = Rule {
    name: "rename-table",
    verdict: Verdict::Maintenance,
    catches: "ALTER TABLE … RENAME TO: the running release queries the old name",
    fix: "keep the table's name with `db_table`, or rename across two releases (new name as a view first)",
};
const RENAME_COLUMN: Rule = Rule {
    name: "rename-column",
    verdict: Verdict::Maintenance,
    catches: "ALTER TABLE … RENAME COLUMN: the running release queries the old name",
    fix: "keep the column's name with `db_column`, or add a new column, copy, and drop the old one a release later",
};
const ADD_NOT_NULL_DROPPED_DEFAULT: Rule = Rule {
    name: "add-column-not-null-without-db-default",
    verdict: Verdict::Maintenance,
    catches: "ADD COLUMN … DEFAULT x NOT NULL whose DEFAULT a later DROP DEFAULT of the same migration removes (Django's `AddField(default=…)`): the running release's INSERTs, which do not name the column, then fail",
    fix: "use `db_default=…` (Django ≥ 5.0) so the running release's inserts keep working",
};
const ADD_NOT_NULL_NO_DEFAULT: Rule = Rule {
    name: "add-column-not-null-without-default",
    verdict: Verdict::Maintenance,
    catches: "ADD COLUMN … NOT NULL with no default: it fails on a table with rows, and the running release's INSERTs fail on it",
    fix: "add the column nullable, or with `db_default=…` (Django ≥ 5.0)",
};
const ALTER_COLUMN_TYPE: Rule = Rule {
    name: "alter-column-type",
    verdict: Verdict::Maintenance,
    catches: "ALTER COLUMN … TYPE: usually rewrites the table under an ACCESS EXCLUSIVE lock, and the running release reads and writes the old type",
    fix: "add a column of the new type, write both, backfill, and switch over across releases; or deploy it in the maintenance window",
};
const SET_NOT_NULL: Rule = Rule {
    name: "set-not-null",
    verdict: Verdict::Maintenance,
    catches: "ALTER COLUMN … SET NOT NULL (Django's AlterField to `null=False`): scans the table under an ACCESS EXCLUSIVE lock, and the running release may still write NULL",
    fix: "once the running release writes no NULL: add `CHECK (col IS NOT NULL) NOT VALID`, VALIDATE it, then SET NOT NULL (no scan then)",
};
const RUN_PYTHON: Rule = Rule {
    name: "run-python",
    verdict: Verdict::Maintenance,
    catches: "an operation sqlmigrate cannot write as SQL (RunPython): its effect is unknown",
    fix: "mark it in deploy.online.assume_safe if the running release survives it",
};
const UNPARSABLE: Rule = Rule {
    name: "unparsable",
    verdict: Verdict::Maintenance,
    catches: "a statement PostgreSQL's parser rejects: its effect is unknown",
    fix: "check the migration's SQL with `manage.py sqlmigrate`, or mark it in deploy.online.assume_safe if the running release survives it",
};
const UNKNOWN_DDL: Rule = Rule {
    name: "unknown-ddl",
    verdict: Verdict::Maintenance,
    catches: "any other statement not known to be safe while the running release serves (TRUNCATE, DO, triggers, CREATE OR REPLACE, ALTER TABLE forms not listed here…)",
    fix: "deploy it in the maintenance window, or mark it in deploy.online.assume_safe if the running release survives it",
};
const CREATE_INDEX: Rule = Rule {
    name: "create-index",
    verdict: Verdict::LockRisk,
    catches: "CREATE INDEX without CONCURRENTLY on a large existing table: writes to it wait for the whole build",
    fix: "use AddIndexConcurrently (django.contrib.postgres.operations) in a migration with `atomic = False`",
};
const ADD_FOREIGN_KEY: Rule = Rule {
    name: "add-foreign-key",
    verdict: Verdict::LockRisk,
    catches: "ADD CONSTRAINT … FOREIGN KEY without NOT VALID on a large existing table: every row is checked while writes to both tables wait",
    fix: "add it NOT VALID, then VALIDATE CONSTRAINT in a later migration (it does not block writes)",
};
const ADD_CHECK: Rule = Rule {
    name: "add-check-constraint",
    verdict: Verdict::LockRisk,
    catches: "a CHECK constraint without NOT VALID (ADD CONSTRAINT, or a new column's own CHECK such as a PositiveIntegerField's) on a large existing table: every row is checked under an ACCESS EXCLUSIVE lock",
    fix: "AddConstraintNotValid, then ValidateConstraint in a later migration (django.contrib.postgres.operations)",
};
const ADD_UNIQUE: Rule = Rule {
    name: "add-unique-constraint",
    verdict: Verdict::LockRisk,
    catches: "ADD CONSTRAINT … UNIQUE / PRIMARY KEY / EXCLUDE, or a new UNIQUE column, on a large existing table: the index is built under an ACCESS EXCLUSIVE lock",
    fix: "CREATE UNIQUE INDEX CONCURRENTLY first, then ADD CONSTRAINT … UNIQUE USING INDEX (RunSQL with state_operations)",
};
const TABLE_REWRITE: Rule = Rule {
    name: "table-rewrite",
    verdict: Verdict::LockRisk,
    catches: "ADD COLUMN with a volatile default (now() is not; random(), gen_random_uuid(), clock_timestamp(), a serial or identity are), a stored generated column, SET TABLESPACE / LOGGED / UNLOGGED / ACCESS METHOD on a large existing table: every row is rewritten under an ACCESS EXCLUSIVE lock",
    fix: "add the column nullable without the default, backfill it in batches, then set the default",
};
const DATA_MIGRATION: Rule = Rule {
    name: "data-migration",
    verdict: Verdict::LockRisk,
    catches: "INSERT / UPDATE / DELETE / MERGE on a large existing table inside the migration: its row locks are held until the migration commits",
    fix: "backfill in batches outside the migration (a management command), or mark it in deploy.online.assume_safe",
};

pub(super) const ALL: [Rule; 17] = [
    DROP_TABLE,
    DROP_COLUMN,
    RENAME_TABLE,
    RENAME_COLUMN,
    ADD_NOT_NULL_DROPPED_DEFAULT,
    ADD_NOT_NULL_NO_DEFAULT,
    ALTER_COLUMN_TYPE,
    SET_NOT_NULL,
    RUN_PYTHON,
    UNPARSABLE,
    UNKNOWN_DDL,
    CREATE_INDEX,
    ADD_FOREIGN_KEY,
    ADD_CHECK,
    ADD_UNIQUE,
    TABLE_REWRITE,
    DATA_MIGRATION,
];

const fn table<const N: usize>(rules: &[Rule; N]) -> [(&'static str, Verdict, &'static str); N] {
    let mut out = [("", Verdict::Online, ""); N];
    let mut i = 0;
    while i < N {
        out[i] = (rules[i].name, rules[i].verdict, rules[i].catches);
        i += 1;
    }
    out
}

pub(super) static TABLE: [(&str, Verdict, &str); ALL.len()] = table(&ALL);

/// What sqlmigrate prints in place of an operation that has no SQL (RunPython).
const NOT_SQL: &str = "-- THIS OPERATION CANNOT BE WRITTEN AS SQL";
/// The longest statement text a finding keeps.
const STATEMENT_CHARS: usize = 300;

/// One statement of the text: its source, and its parse tree or the parser's message.
struct Piece<'a> {
    text: &'a str,
    node: Result<Option<NodeEnum>, String>,
}

/// Apply the rules to a migration's sqlmigrate text: the findings and the number of statements.
/// `rows` gives a table's estimated rows; a table is large when it has more than `lock_risk_rows`
/// (unknown: only when `lock_risk_rows` is 0).
pub(super) fn check(
    text: &str,
    lock_risk_rows: u64,
    rows: &mut dyn FnMut(&str) -> Option<u64>,
) -> (Vec<Finding>, usize) {
    let pieces = split(text);
    let mut walk = Walk {
        lock_risk_rows,
        rows,
        new_tables: HashSet::new(),
        findings: Vec::new(),
        dropped_defaults: dropped_defaults(&pieces),
    };
    let mut statements = 0;
    for (index, piece) in pieces.iter().enumerate() {
        match &piece.node {
            Ok(None | Some(NodeEnum::TransactionStmt(_))) => {}
            Ok(Some(node)) => {
                statements += 1;
                walk.statement(index, piece.text, node);
            }
            Err(message) => {
                statements += 1;
                let reason = format!(
                    "PostgreSQL's parser rejects this statement ({message}), so its effect is unknown"
                );
                walk.push(&UNPARSABLE, piece.text, None, reason, None);
            }
        }
    }
    for description in python_operations(text) {
        let reason = format!(
            "the operation `{description}` runs Python code whose effect on the schema and the data rail cannot see"
        );
        walk.findings.push(Finding {
            rule: RUN_PYTHON.name.to_owned(),
            verdict: RUN_PYTHON.verdict,
            statement: format!("-- {description}"),
            table: None,
            reason,
            fix: RUN_PYTHON.fix.to_owned(),
        });
    }
    (walk.findings, statements)
}

/// The descriptions of the operations sqlmigrate could not write as SQL (the `-- …` header before
/// each marker).
fn python_operations(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut header: Option<&str> = None;
    for line in text.lines().map(str::trim) {
        if line == NOT_SQL {
            out.push(header.unwrap_or("operation").to_owned());
        } else if let Some(comment) = line.strip_prefix("-- ") {
            header = Some(comment.trim());
        }
    }
    out
}

/// The statements of the text: from one parse of the whole when it parses, else split on the
/// scanner's semicolons and parsed one by one, so that one bad statement does not hide the others.
fn split(text: &str) -> Vec<Piece<'_>> {
    if let Ok(parsed) = pg_query::parse(text, pg_query::ParserOptions::DEFAULT) {
        return parsed
            .protobuf
            .stmts
            .into_iter()
            .map(|raw| {
                let start = usize::try_from(raw.stmt_location).unwrap_or(0);
                let end = match usize::try_from(raw.stmt_len) {
                    Ok(0) | Err(_) => text.len(),
                    Ok(len) => start + len,
                };
                Piece {
                    text: text.get(start..end).unwrap_or(text),
                    node: Ok(raw.stmt.and_then(|n| n.node)),
                }
            })
            .collect();
    }
    let tokens = match pg_query::scan(text) {
        Ok(scan) => scan.tokens,
        // Not even tokens (an unterminated quote): the whole text is one unknown statement.
        Err(e) => return vec![Piece { text, node: Err(e.to_string()) }],
    };
    let mut pieces = Vec::new();
    let mut start = 0usize;
    let mut has_code = false;
    let mut push = |from: usize, to: usize, has_code: bool| {
        let source = text.get(from..to).unwrap_or_default();
        if has_code {
            let node = pg_query::parse(source, pg_query::ParserOptions::DEFAULT)
                .map(|p| {
                    p.protobuf.stmts.into_iter().next().and_then(|s| s.stmt).and_then(|n| n.node)
                })
                .map_err(|e| e.to_string());
            pieces.push(Piece { text: source, node });
        }
    };
    for token in &tokens {
        let kind = Token::try_from(token.token).unwrap_or(Token::Nul);
        if kind == Token::Ascii59 {
            let end = usize::try_from(token.start).unwrap_or(start);
            push(start, end, has_code);
            start = usize::try_from(token.end).unwrap_or(end);
            has_code = false;
        } else if !matches!(kind, Token::SqlComment | Token::CComment) {
            has_code = true;
        }
    }
    push(start, text.len(), has_code);
    pieces
}

/// Every (statement index, table, column) of an `ALTER COLUMN … DROP DEFAULT`.
fn dropped_defaults(pieces: &[Piece<'_>]) -> Vec<(usize, String, String)> {
    let mut out = Vec::new();
    for (index, piece) in pieces.iter().enumerate() {
        let Ok(Some(NodeEnum::AlterTableStmt(stmt))) = &piece.node else { continue };
        let table = relation_name(stmt.relation.as_ref());
        for cmd in alter_cmds(&stmt.cmds) {
            if subtype(cmd) == AlterTableType::AtColumnDefault && cmd.def.is_none() {
                out.push((index, table.clone(), cmd.name.to_lowercase()));
            }
        }
    }
    out
}

fn alter_cmds(cmds: &[protobuf::Node]) -> impl Iterator<Item = &AlterTableCmd> {
    cmds.iter().filter_map(|n| match &n.node {
        Some(NodeEnum::AlterTableCmd(cmd)) => Some(&**cmd),
        _ => None,
    })
}

fn subtype(cmd: &AlterTableCmd) -> AlterTableType {
    AlterTableType::try_from(cmd.subtype).unwrap_or(AlterTableType::Undefined)
}

fn relation_name(relation: Option<&RangeVar>) -> String {
    relation.map(|r| r.relname.to_lowercase()).unwrap_or_default()
}

/// The statement as a finding shows it: comments before it dropped, whitespace collapsed, shortened.
fn display(text: &str) -> String {
    let code: Vec<&str> = text
        .lines()
        .map(str::trim)
        .skip_while(|line| line.is_empty() || line.starts_with("--"))
        .collect();
    let collapsed = code.join(" ").split_whitespace().collect::<Vec<_>>().join(" ");
    let collapsed = collapsed.trim_end_matches(';').trim_end().to_owned();
    if collapsed.chars().count() > STATEMENT_CHARS {
        let mut short: String = collapsed.chars().take(STATEMENT_CHARS - 1).collect();
        short.push('…');
        short
    } else {
        collapsed
    }
}

fn rows_text(rows: Option<u64>) -> String {
    rows.map_or_else(|| "is of unknown size".to_owned(), |n| format!("has ~{n} rows"))
}

struct Walk<'r> {
    lock_risk_rows: u64,
    rows: &'r mut dyn FnMut(&str) -> Option<u64>,
    /// Tables created earlier in this migration: new and empty, no running code uses them.
    new_tables: HashSet<String>,
    findings: Vec<Finding>,
    dropped_defaults: Vec<(usize, String, String)>,
}

impl Walk<'_> {
    fn push(
        &mut self,
        rule: &Rule,
        text: &str,
        table: Option<&str>,
        reason: String,
        fix: Option<String>,
    ) {
        self.findings.push(Finding {
            rule: rule.name.to_owned(),
            verdict: rule.verdict,
            statement: display(text),
            table: table.filter(|t| !t.is_empty()).map(str::to_owned),
            reason,
            fix: fix.unwrap_or_else(|| rule.fix.to_owned()),
        });
    }

    fn is_new(&self, table: &str) -> bool {
        self.new_tables.contains(table)
    }

    /// The table's size in words ("has ~N rows") when it is large enough for a lock-holding statement to
    /// be a risk; `None` when it is small or new.
    fn large(&mut self, table: &str) -> Option<String> {
        if table.is_empty() || self.is_new(table) {
            return None;
        }
        let rows = (self.rows)(table);
        let large = match rows {
            Some(n) => n > self.lock_risk_rows,
            None => self.lock_risk_rows == 0,
        };
        large.then(|| rows_text(rows))
    }

    /// A lock-risk rule, applied only when the table is large.
    fn lock_risk(&mut self, rule: &Rule, text: &str, table: &str, why: &str) {
        if let Some(size) = self.large(table) {
            let reason = format!("{why}, and `{table}` {size}");
            self.push(rule, text, Some(table), reason, None);
        }
    }

    fn unknown(&mut self, text: &str, table: Option<&str>, what: &str) {
        let reason = format!(
            "{what} is not a statement rail knows to be safe while the running release serves"
        );
        self.push(&UNKNOWN_DDL, text, table, reason, None);
    }

    fn statement(&mut self, index: usize, text: &str, node: &NodeEnum) {
        match node {
            NodeEnum::CreateStmt(stmt) => {
                let table = relation_name(stmt.relation.as_ref());
                if stmt.partbound.is_some() || !stmt.inh_relations.is_empty() {
                    // A partition or child table locks and changes its parent.
                    self.unknown(text, Some(&table), "CREATE TABLE … PARTITION OF / INHERITS");
                }
                self.new_tables.insert(table);
            }
            NodeEnum::CreateTableAsStmt(stmt) => {
                let table = relation_name(stmt.into.as_ref().and_then(|i| i.rel.as_ref()));
                self.new_tables.insert(table);
            }
            NodeEnum::IndexStmt(stmt) => {
                let table = relation_name(stmt.relation.as_ref());
                if !stmt.concurrent {
                    let what = if stmt.unique { "CREATE UNIQUE INDEX" } else { "CREATE INDEX" };
                    let why = format!(
                        "{what} without CONCURRENTLY blocks writes while it builds the index"
                    );
                    self.lock_risk(&CREATE_INDEX, text, &table, &why);
                }
            }
            NodeEnum::AlterTableStmt(stmt) => self.alter_table(index, text, stmt),
            NodeEnum::RenameStmt(stmt) => self.rename(text, stmt),
            NodeEnum::DropStmt(stmt) => self.drop(text, stmt),
            NodeEnum::InsertStmt(stmt) => self.dml(text, "INSERT into", stmt.relation.as_ref()),
            NodeEnum::UpdateStmt(stmt) => self.dml(text, "UPDATE of", stmt.relation.as_ref()),
            NodeEnum::DeleteStmt(stmt) => self.dml(text, "DELETE from", stmt.relation.as_ref()),
            NodeEnum::MergeStmt(stmt) => self.dml(text, "MERGE into", stmt.relation.as_ref()),
            NodeEnum::ViewStmt(stmt) if stmt.replace => {
                let table = relation_name(stmt.view.as_ref());
                self.unknown(text, Some(&table), "CREATE OR REPLACE VIEW");
            }
            NodeEnum::CreateFunctionStmt(stmt) if stmt.replace => {
                self.unknown(text, None, "CREATE OR REPLACE FUNCTION");
            }
            NodeEnum::VacuumStmt(stmt)
                if stmt.options.iter().any(|o| match &o.node {
                    Some(NodeEnum::DefElem(d)) => d.defname.eq_ignore_ascii_case("full"),
                    _ => false,
                }) =>
            {
                self.unknown(text, None, "VACUUM FULL");
            }
            // Known to be safe: new objects, reads, settings, comments, sequences.
            NodeEnum::ViewStmt(_)
            | NodeEnum::CreateFunctionStmt(_)
            | NodeEnum::VacuumStmt(_)
            | NodeEnum::CreateSeqStmt(_)
            | NodeEnum::AlterSeqStmt(_)
            | NodeEnum::CommentStmt(_)
            | NodeEnum::VariableSetStmt(_)
            | NodeEnum::VariableShowStmt(_)
            | NodeEnum::ConstraintsSetStmt(_)
            | NodeEnum::SelectStmt(_)
            | NodeEnum::CreateExtensionStmt(_)
            | NodeEnum::CreateSchemaStmt(_)
            | NodeEnum::TransactionStmt(_) => {}
            _ => {
                let what = first_words(text);
                self.unknown(text, None, &format!("`{what}`"));
            }
        }
    }

    fn dml(&mut self, text: &str, what: &str, relation: Option<&RangeVar>) {
        let table = relation_name(relation);
        let why = format!("{what} a large table inside the migration holds its row locks until the migration commits");
        self.lock_risk(&DATA_MIGRATION, text, &table, &why);
    }

    fn rename(&mut self, text: &str, stmt: &protobuf::RenameStmt) {
        let table = relation_name(stmt.relation.as_ref());
        if self.is_new(&table) {
            return;
        }
        match ObjectType::try_from(stmt.rename_type).unwrap_or(ObjectType::Undefined) {
            ObjectType::ObjectTable | ObjectType::ObjectView | ObjectType::ObjectMatview => {
                let reason = format!(
                    "the running release still queries `{table}` by its old name, so it fails once the rename commits (renamed to `{}`)",
                    stmt.newname
                );
                self.push(&RENAME_TABLE, text, Some(&table), reason, None);
            }
            ObjectType::ObjectColumn => {
                let reason = format!(
                    "the running release still queries column `{}` of `{table}` by its old name, so it fails once the rename commits",
                    stmt.subname
                );
                let fix = format!(
                    "keep the column's name with `db_column='{}'`, or add a new column, copy, and drop the old one a release later",
                    stmt.subname
                );
                self.push(&RENAME_COLUMN, text, Some(&table), reason, Some(fix));
            }
            // Index and constraint names are not used by the running code.
            ObjectType::ObjectIndex
            | ObjectType::ObjectTabconstraint
            | ObjectType::ObjectSequence => {}
            _ => self.unknown(text, Some(&table), "this RENAME"),
        }
    }

    fn drop(&mut self, text: &str, stmt: &protobuf::DropStmt) {
        match ObjectType::try_from(stmt.remove_type).unwrap_or(ObjectType::Undefined) {
            // An index's name is not used by the running code; a DROP INDEX is a catalog change.
            ObjectType::ObjectIndex => {}
            ObjectType::ObjectTable | ObjectType::ObjectView | ObjectType::ObjectMatview => {
                for table in stmt.objects.iter().filter_map(object_name) {
                    if self.is_new(&table) {
                        continue;
                    }
                    let reason = format!(
                        "the running release still reads and writes `{table}`, so its requests fail once the table is gone"
                    );
                    self.push(&DROP_TABLE, text, Some(&table), reason, None);
                }
            }
            _ => self.unknown(text, None, "this DROP"),
        }
    }

    fn alter_table(&mut self, index: usize, text: &str, stmt: &protobuf::AlterTableStmt) {
        let table = relation_name(stmt.relation.as_ref());
        if ObjectType::try_from(stmt.objtype).unwrap_or(ObjectType::Undefined)
            == ObjectType::ObjectIndex
        {
            // ALTER INDEX … SET (…) and the like: not run by Django, not known to be safe.
            self.unknown(text, None, "ALTER INDEX");
            return;
        }
        if self.is_new(&table) {
            return;
        }
        for cmd in alter_cmds(&stmt.cmds) {
            let column = cmd.name.to_lowercase();
            match subtype(cmd) {
                AlterTableType::AtAddColumn => {
                    if let Some(NodeEnum::ColumnDef(def)) =
                        cmd.def.as_ref().and_then(|d| d.node.as_ref())
                    {
                        self.add_column(index, text, &table, def);
                    }
                }
                AlterTableType::AtDropColumn => {
                    let reason = format!(
                        "the running release names column `{column}` of `{table}` in its queries, so they fail once it is dropped"
                    );
                    self.push(&DROP_COLUMN, text, Some(&table), reason, None);
                }
                AlterTableType::AtAlterColumnType => {
                    let reason = format!(
                        "changing the type of `{table}`.`{column}` usually rewrites the table and its indexes under an ACCESS EXCLUSIVE lock, and the running release reads and writes the old type"
                    );
                    self.push(&ALTER_COLUMN_TYPE, text, Some(&table), reason, None);
                }
                AlterTableType::AtSetNotNull => self.set_not_null(text, &table, &column),
                AlterTableType::AtAddConstraint => {
                    if let Some(NodeEnum::Constraint(c)) =
                        cmd.def.as_ref().and_then(|d| d.node.as_ref())
                    {
                        self.add_constraint(text, &table, c);
                    }
                }
                AlterTableType::AtSetTableSpace
                | AlterTableType::AtSetLogged
                | AlterTableType::AtSetUnLogged
                | AlterTableType::AtSetAccessMethod => {
                    self.lock_risk(
                        &TABLE_REWRITE,
                        text,
                        &table,
                        "this ALTER TABLE rewrites every row under an ACCESS EXCLUSIVE lock",
                    );
                }
                // Catalog-only changes the running release does not notice.
                AlterTableType::AtColumnDefault
                | AlterTableType::AtDropNotNull
                | AlterTableType::AtValidateConstraint
                | AlterTableType::AtDropConstraint
                | AlterTableType::AtAddIdentity
                | AlterTableType::AtSetStatistics => {}
                other => {
                    let what = format!("ALTER TABLE subcommand {}", other.as_str_name());
                    self.unknown(text, Some(&table), &what);
                }
            }
        }
    }

    fn set_not_null(&mut self, text: &str, table: &str, column: &str) {
        let reason = format!(
            "SET NOT NULL on `{table}`.`{column}` scans the table under an ACCESS EXCLUSIVE lock, and the running release may still write NULL there"
        );
        self.push(&SET_NOT_NULL, text, Some(table), reason, None);
    }

    fn add_column(&mut self, index: usize, text: &str, table: &str, def: &ColumnDef) {
        let column = def.colname.to_lowercase();
        let constraints: Vec<&Constraint> = def
            .constraints
            .iter()
            .filter_map(|n| match &n.node {
                Some(NodeEnum::Constraint(c)) => Some(&**c),
                _ => None,
            })
            .collect();
        let kind =
            |c: &Constraint| ConstrType::try_from(c.contype).unwrap_or(ConstrType::Undefined);
        let not_null = def.is_not_null
            || constraints
                .iter()
                .any(|c| matches!(kind(c), ConstrType::ConstrNotnull | ConstrType::ConstrPrimary));
        let default = constraints
            .iter()
            .find(|c| kind(c) == ConstrType::ConstrDefault)
            .and_then(|c| c.raw_expr.as_deref())
            .or(def.raw_default.as_deref())
            .and_then(|n| n.node.as_ref());
        let serial = def.type_name.as_ref().and_then(|t| t.names.last()).is_some_and(|n| {
            matches!(&n.node, Some(NodeEnum::String(s))
                if matches!(s.sval.as_str(), "serial" | "serial2" | "serial4" | "serial8" | "smallserial" | "bigserial"))
        });
        let identity = constraints.iter().any(|c| kind(c) == ConstrType::ConstrIdentity);
        let stored = constraints.iter().any(|c| kind(c) == ConstrType::ConstrGenerated);
        let has_default = default.is_some() || serial || identity || stored;

        if not_null && !has_default {
            let reason = format!(
                "`{table}`.`{column}` is NOT NULL with no default: the ALTER fails on a table with rows, and the running release's INSERTs, which do not name the column, fail on it"
            );
            self.push(&ADD_NOT_NULL_NO_DEFAULT, text, Some(table), reason, None);
        }
        if not_null && default.is_some() {
            let dropped = self
                .dropped_defaults
                .iter()
                .any(|(at, t, c)| *at > index && t == table && *c == column);
            if dropped {
                let value = default.and_then(python_literal).unwrap_or_else(|| "…".to_owned());
                let reason = format!(
                    "`{table}`.`{column}` is NOT NULL and its DEFAULT is dropped again by this migration, so the running release's INSERTs, which do not name the column, fail with a not-null violation"
                );
                let fix = format!(
                    "use `db_default={value}` (Django ≥ 5.0) so the running release's inserts keep working"
                );
                self.push(&ADD_NOT_NULL_DROPPED_DEFAULT, text, Some(table), reason, Some(fix));
            }
        }
        let volatile = default.is_some_and(|d| !stable_expr(d));
        if volatile || serial || identity || stored {
            let what = if stored {
                "a stored generated column".to_owned()
            } else if serial || identity {
                "a serial or identity column".to_owned()
            } else {
                format!("ADD COLUMN `{column}` with a volatile default")
            };
            let why = format!("{what} rewrites every row under an ACCESS EXCLUSIVE lock");
            self.lock_risk(&TABLE_REWRITE, text, table, &why);
        }
        for c in &constraints {
            match kind(c) {
                ConstrType::ConstrCheck if !c.skip_validation => {
                    let why = format!("the CHECK of the new column `{column}` is checked against every row under an ACCESS EXCLUSIVE lock");
                    self.lock_risk(&ADD_CHECK, text, table, &why);
                }
                ConstrType::ConstrUnique | ConstrType::ConstrPrimary => {
                    let why = format!("the UNIQUE / PRIMARY KEY of the new column `{column}` builds its index under an ACCESS EXCLUSIVE lock");
                    self.lock_risk(&ADD_UNIQUE, text, table, &why);
                }
                // PostgreSQL skips checking a new column's foreign key unless the column has a default.
                ConstrType::ConstrForeign if default.is_some() && !c.skip_validation => {
                    let why = format!("the foreign key of the new column `{column}` is checked against every row while writes wait");
                    self.lock_risk(&ADD_FOREIGN_KEY, text, table, &why);
                }
                _ => {}
            }
        }
    }

    fn add_constraint(&mut self, text: &str, table: &str, c: &Constraint) {
        match ConstrType::try_from(c.contype).unwrap_or(ConstrType::Undefined) {
            ConstrType::ConstrForeign if !c.skip_validation => {
                self.lock_risk(
                    &ADD_FOREIGN_KEY,
                    text,
                    table,
                    "adding a FOREIGN KEY without NOT VALID checks every row while writes to both tables wait",
                );
            }
            ConstrType::ConstrCheck if !c.skip_validation => {
                self.lock_risk(
                    &ADD_CHECK,
                    text,
                    table,
                    "adding a CHECK without NOT VALID checks every row under an ACCESS EXCLUSIVE lock",
                );
            }
            ConstrType::ConstrUnique | ConstrType::ConstrPrimary | ConstrType::ConstrExclusion
                if c.indexname.is_empty() =>
            {
                self.lock_risk(
                    &ADD_UNIQUE,
                    text,
                    table,
                    "adding a UNIQUE / PRIMARY KEY / EXCLUDE constraint builds its index under an ACCESS EXCLUSIVE lock",
                );
            }
            ConstrType::ConstrNotnull => {
                let column = c
                    .keys
                    .iter()
                    .find_map(|k| match &k.node {
                        Some(NodeEnum::String(s)) => Some(s.sval.to_lowercase()),
                        _ => None,
                    })
                    .unwrap_or_default();
                self.set_not_null(text, table, &column);
            }
            // NOT VALID, USING INDEX: catalog changes.
            _ => {}
        }
    }
}

/// The name of a dropped object (its last name part), lowercased.
fn object_name(node: &protobuf::Node) -> Option<String> {
    let parts = match &node.node {
        Some(NodeEnum::List(list)) => &list.items,
        _ => return None,
    };
    parts.iter().rev().find_map(|p| match &p.node {
        Some(NodeEnum::String(s)) => Some(s.sval.to_lowercase()),
        _ => None,
    })
}

/// The first words of a statement, for naming a statement rail does not know.
fn first_words(text: &str) -> String {
    display(text).split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// Functions that are not volatile, so that a column default calling them is computed once and
/// stored in the catalog instead of rewriting the table. Anything else counts as volatile.
const STABLE_FUNCTIONS: &[&str] = &[
    "now",
    "statement_timestamp",
    "transaction_timestamp",
    "current_timestamp",
    "localtimestamp",
    "current_date",
    "lower",
    "upper",
    "btrim",
    "ltrim",
    "rtrim",
    "concat",
    "concat_ws",
    "length",
    "abs",
    "round",
    "floor",
    "ceil",
    "md5",
    "replace",
    "left",
    "right",
    "to_jsonb",
    "to_json",
    "jsonb_build_object",
    "json_build_object",
    "jsonb_build_array",
    "json_build_array",
    "make_date",
    "make_interval",
    "date_trunc",
    "timezone",
];

/// Whether a default expression is free of volatile function calls (constants, casts, operators and
/// the functions of `STABLE_FUNCTIONS`). Any expression not understood counts as volatile.
fn stable_expr(node: &NodeEnum) -> bool {
    let all =
        |nodes: &[protobuf::Node]| nodes.iter().all(|n| n.node.as_ref().is_none_or(stable_expr));
    let opt = |n: &Option<Box<protobuf::Node>>| {
        n.as_deref().and_then(|n| n.node.as_ref()).is_none_or(stable_expr)
    };
    match node {
        NodeEnum::AConst(_)
        | NodeEnum::SqlvalueFunction(_)
        | NodeEnum::String(_)
        | NodeEnum::Integer(_) => true,
        NodeEnum::TypeCast(c) => opt(&c.arg),
        NodeEnum::AExpr(e) => opt(&e.lexpr) && opt(&e.rexpr),
        NodeEnum::BoolExpr(e) => all(&e.args),
        NodeEnum::CoalesceExpr(e) => all(&e.args),
        NodeEnum::MinMaxExpr(e) => all(&e.args),
        NodeEnum::NullTest(e) => opt(&e.arg),
        NodeEnum::AArrayExpr(e) => all(&e.elements),
        NodeEnum::List(l) => all(&l.items),
        NodeEnum::FuncCall(f) => {
            let name = f.funcname.last().and_then(|n| match &n.node {
                Some(NodeEnum::String(s)) => Some(s.sval.to_lowercase()),
                _ => None,
            });
            name.is_some_and(|name| STABLE_FUNCTIONS.contains(&name.as_str())) && all(&f.args)
        }
        _ => false,
    }
}

/// A constant default as Django's `db_default=` would take it (`0`, `'x'`, `False`), when it is one.
fn python_literal(node: &NodeEnum) -> Option<String> {
    use protobuf::a_const::Val;
    let NodeEnum::AConst(c) = node else { return None };
    match c.val.as_ref()? {
        Val::Ival(i) => Some(i.ival.to_string()),
        Val::Fval(f) => Some(f.fval.clone()),
        Val::Boolval(b) => Some(if b.boolval { "True" } else { "False" }.to_owned()),
        Val::Sval(s) => Some(format!("'{}'", s.sval.replace('\\', "\\\\").replace('\'', "\\'"))),
        Val::Bsval(_) => None,
    }
}
