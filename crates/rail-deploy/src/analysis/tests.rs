use super::fixtures::*;
use super::*;

const BIG: u64 = 10_000_000;
const THRESHOLD: u64 = 1_000_000;

/// Every table has `rows` rows.
fn run(sql: &str, rows: Option<u64>) -> MigrationAnalysis {
    run_with(sql, rows, THRESHOLD, &[])
}

fn run_with(sql: &str, rows: Option<u64>, threshold: u64, safe: &[String]) -> MigrationAnalysis {
    let sizes = move |_: &str| rows;
    let opts = Options { lock_risk_rows: threshold, table_rows: &sizes, assume_safe: safe };
    analyze("shop.test", sql, &opts)
}

fn rule_names(a: &MigrationAnalysis) -> Vec<&str> {
    a.findings.iter().map(|f| f.rule.as_str()).collect()
}

/// The analysis has exactly these rules (in order), and the verdict is the worst of them.
#[track_caller]
fn expect(a: &MigrationAnalysis, verdict: Verdict, rules: &[&str]) {
    assert_eq!(rule_names(a), rules, "{a:#?}");
    assert_eq!(a.verdict, verdict, "{a:#?}");
    for f in &a.findings {
        let rule = super::rules().iter().find(|r| r.0 == f.rule).expect("a listed rule");
        assert_eq!(f.verdict, rule.1, "{f:#?}");
        assert!(!f.reason.is_empty() && !f.fix.is_empty() && !f.statement.is_empty(), "{f:#?}");
    }
}

// The demo app's own migrations.

#[test]
fn demo_v2_stock_field_with_a_python_default_needs_the_window() {
    let a = analyze(
        "catalog.0002_product_stock",
        DEMO_CATALOG_0002_PRODUCT_STOCK,
        &Options { lock_risk_rows: THRESHOLD, table_rows: &|_| Some(10), assume_safe: &[] },
    );
    assert_eq!(a.migration, "catalog.0002_product_stock");
    expect(&a, Verdict::Maintenance, &["add-column-not-null-without-db-default"]);
    assert_eq!(a.statements, 2);
    let f = &a.findings[0];
    assert_eq!(f.table.as_deref(), Some("catalog_product"));
    assert_eq!(
        f.statement,
        r#"ALTER TABLE "catalog_product" ADD COLUMN "stock" integer DEFAULT 0 NOT NULL CHECK ("stock" >= 0)"#
    );
    assert_eq!(
        f.fix,
        "use `db_default=0` (Django ≥ 5.0) so the running release's inserts keep working"
    );
    assert!(f.reason.contains("INSERT"), "{}", f.reason);
}

#[test]
fn demo_v2_on_a_large_table_also_checks_every_row_for_the_positive_integer_check() {
    let a = run(DEMO_CATALOG_0002_PRODUCT_STOCK, Some(BIG));
    expect(
        &a,
        Verdict::Maintenance,
        &["add-column-not-null-without-db-default", "add-check-constraint"],
    );
    assert!(a.findings[1].reason.contains("~10000000 rows"), "{}", a.findings[1].reason);
}

#[test]
fn demo_v3_broken_runs_python_so_needs_the_window() {
    let a = run(DEMO_CATALOG_0003_REVIEW_BROKEN, Some(BIG));
    // CREATE TABLE is online, and so is filling the table it just created; the RunPython is not.
    expect(&a, Verdict::Maintenance, &["run-python"]);
    assert_eq!(a.statements, 2);
    assert_eq!(a.findings[0].statement, "-- Raw Python operation");
    assert_eq!(a.findings[0].table, None);
    assert_eq!(
        a.findings[0].fix,
        "mark it in deploy.online.assume_safe if the running release survives it"
    );
    assert_eq!(tables_needing_size(DEMO_CATALOG_0003_REVIEW_BROKEN), Vec::<String>::new());
}

#[test]
fn demo_v4_nullable_barcode_is_online() {
    let a = run(DEMO_CATALOG_0003_PRODUCT_BARCODE, Some(BIG));
    expect(&a, Verdict::Online, &[]);
    assert_eq!(a.statements, 1);
}

#[test]
fn demo_initial_migration_is_online_whatever_the_sizes_as_its_tables_are_new() {
    let a = run_with(DEMO_CATALOG_0001_INITIAL, None, 0, &[]);
    expect(&a, Verdict::Online, &[]);
    assert_eq!(a.statements, 6);
    assert_eq!(tables_needing_size(DEMO_CATALOG_0001_INITIAL), Vec::<String>::new());
}

#[test]
fn assume_safe_makes_the_verdict_online_and_keeps_the_findings() {
    let safe = vec!["catalog.0003_review_broken".to_owned()];
    let opts = Options { lock_risk_rows: THRESHOLD, table_rows: &|_| None, assume_safe: &safe };
    let a = analyze("catalog.0003_review_broken", DEMO_CATALOG_0003_REVIEW_BROKEN, &opts);
    assert_eq!(a.verdict, Verdict::Online);
    assert!(a.assumed_safe);
    assert_eq!(rule_names(&a), ["run-python"]);
    let other = analyze("catalog.0002_product_stock", DEMO_CATALOG_0002_PRODUCT_STOCK, &opts);
    assert!(!other.assumed_safe);
    assert_eq!(other.verdict, Verdict::Maintenance);
}

// Online: what the running release does not notice.

#[test]
fn nullable_column_is_online() {
    expect(&run(SHOP_0002_ITEM_NOTE, Some(BIG)), Verdict::Online, &[]);
}

#[test]
fn db_default_is_online_as_the_default_stays() {
    expect(&run(SHOP_0004_ITEM_FLAG, Some(BIG)), Verdict::Online, &[]);
    // A stable function (Now() is STATEMENT_TIMESTAMP()) is computed once: no rewrite.
    expect(&run(SHOP_0018_ITEM_SEEN, Some(BIG)), Verdict::Online, &[]);
}

#[test]
fn not_valid_constraint_then_validate_is_online() {
    let a = run(SHOP_0021_NOT_VALID, Some(BIG));
    expect(&a, Verdict::Online, &[]);
    assert_eq!(a.statements, 2);
}

#[test]
fn dropping_an_index_or_a_constraint_and_dropping_not_null_are_online() {
    expect(&run(SHOP_0022_REMOVE_INDEX, Some(BIG)), Verdict::Online, &[]);
    expect(&run(SHOP_0023_ALTER_NULL, Some(BIG)), Verdict::Online, &[]);
}

#[test]
fn create_model_with_foreign_keys_to_large_tables_is_online() {
    expect(&run(SHOP_0012_CREATE_ORDER, Some(BIG)), Verdict::Online, &[]);
    expect(&run(SHOP_0027_M2M, Some(BIG)), Verdict::Online, &[]);
    expect(&run(SHOP_0001_INITIAL, Some(BIG)), Verdict::Online, &[]);
}

#[test]
fn run_sql_is_read_statement_by_statement() {
    // SET lock_timeout, CREATE INDEX CONCURRENTLY and COMMENT, outside a transaction.
    let a = run(SHOP_0028_RUNSQL_MULTI, Some(BIG));
    expect(&a, Verdict::Online, &[]);
    assert_eq!(a.statements, 3);
}

#[test]
fn nullable_foreign_key_column_is_not_checked_row_by_row_but_its_index_is_built() {
    // ADD COLUMN … NULL REFERENCES …: PostgreSQL skips checking the new, all-NULL column.
    let a = run(SHOP_0010_ITEM_TAG, Some(BIG));
    expect(&a, Verdict::LockRisk, &["create-index"]);
    assert_eq!(a.statements, 3);
    expect(&run(SHOP_0010_ITEM_TAG, Some(10)), Verdict::Online, &[]);
}

// Lock risk: depends on the table's size.

#[test]
fn create_index_is_a_lock_risk_on_a_large_table_only() {
    let a = run(SHOP_0008_ITEM_NAME_IDX, Some(BIG));
    expect(&a, Verdict::LockRisk, &["create-index"]);
    assert_eq!(a.findings[0].table.as_deref(), Some("shop_item"));
    assert_eq!(a.findings[0].statement, r#"CREATE INDEX "item_name_idx" ON "shop_item" ("name")"#);
    assert!(a.findings[0].fix.contains("AddIndexConcurrently"));
    expect(&run(SHOP_0008_ITEM_NAME_IDX, Some(THRESHOLD)), Verdict::Online, &[]);
    assert_eq!(tables_needing_size(SHOP_0008_ITEM_NAME_IDX), ["shop_item"]);
}

#[test]
fn create_index_concurrently_is_online_on_a_large_table() {
    let a = run(SHOP_0009_ITEM_PRICE_IDX, Some(BIG));
    expect(&a, Verdict::Online, &[]);
    assert_eq!(a.statements, 1);
    assert_eq!(tables_needing_size(SHOP_0009_ITEM_PRICE_IDX), Vec::<String>::new());
}

#[test]
fn unknown_size_is_a_risk_only_with_a_zero_threshold() {
    expect(&run_with(SHOP_0008_ITEM_NAME_IDX, None, THRESHOLD, &[]), Verdict::Online, &[]);
    expect(&run_with(SHOP_0008_ITEM_NAME_IDX, None, 0, &[]), Verdict::LockRisk, &["create-index"]);
    expect(&run_with(SHOP_0008_ITEM_NAME_IDX, Some(0), 0, &[]), Verdict::Online, &[]);
}

#[test]
fn foreign_key_constraint_on_an_existing_table_is_a_lock_risk() {
    let a = run(SHOP_0033_ITEM_OWNER_FK, Some(BIG));
    expect(&a, Verdict::LockRisk, &["add-foreign-key"]);
    assert_eq!(a.findings[0].table.as_deref(), Some("shop_item"));
    expect(&run(SHOP_0033_ITEM_OWNER_FK, Some(10)), Verdict::Online, &[]);
}

#[test]
fn check_constraint_on_an_existing_table_is_a_lock_risk() {
    expect(
        &run(SHOP_0011_ITEM_PRICE_POSITIVE, Some(BIG)),
        Verdict::LockRisk,
        &["add-check-constraint"],
    );
}

#[test]
fn unique_constraint_or_unique_column_is_a_lock_risk() {
    expect(
        &run(SHOP_0019_ITEM_UNIQUE_NAME, Some(BIG)),
        Verdict::LockRisk,
        &["add-unique-constraint"],
    );
    // A unique CharField: the UNIQUE of the new column, then Django's varchar_pattern_ops index.
    expect(
        &run(SHOP_0024_ITEM_CODE, Some(BIG)),
        Verdict::LockRisk,
        &["add-unique-constraint", "create-index"],
    );
}

#[test]
fn volatile_db_default_rewrites_the_table() {
    let a = run(SHOP_0017_ITEM_UUID, Some(BIG));
    expect(&a, Verdict::LockRisk, &["table-rewrite"]);
    assert!(a.findings[0].reason.contains("volatile"), "{}", a.findings[0].reason);
    expect(&run(SHOP_0017_ITEM_UUID, Some(10)), Verdict::Online, &[]);
}

#[test]
fn data_migration_on_a_large_table_is_a_lock_risk() {
    let a = run(SHOP_0014_RUNSQL, Some(BIG));
    expect(&a, Verdict::LockRisk, &["data-migration"]);
    assert_eq!(a.findings[0].statement, "UPDATE shop_item SET qty = 0 WHERE qty IS NULL");
    expect(&run(SHOP_0014_RUNSQL, Some(10)), Verdict::Online, &[]);
}

// Maintenance: the running release breaks, or the effect is unknown.

#[test]
fn python_default_dropped_again_needs_the_window_and_names_db_default() {
    let a = run(SHOP_0003_ITEM_STOCK, Some(10));
    expect(&a, Verdict::Maintenance, &["add-column-not-null-without-db-default"]);
    assert!(a.findings[0].fix.contains("`db_default=0`"), "{}", a.findings[0].fix);
    // A callable default (timezone.now) is written as a timestamp literal: no value to suggest.
    let a = run(SHOP_0025_ITEM_CREATED, Some(10));
    expect(&a, Verdict::Maintenance, &["add-column-not-null-without-db-default"]);
    assert!(a.findings[0].fix.contains("`db_default=…`"), "{}", a.findings[0].fix);
}

#[test]
fn not_null_column_without_default_needs_the_window() {
    let a = run(SHOP_0029_RUNSQL_NOT_NULL, Some(0));
    expect(&a, Verdict::Maintenance, &["add-column-not-null-without-default"]);
    assert_eq!(a.findings[0].table.as_deref(), Some("shop_item"));
}

#[test]
fn remove_field_needs_the_window() {
    let a = run(SHOP_0005_REMOVE_ITEM_LEGACY, Some(0));
    expect(&a, Verdict::Maintenance, &["drop-column"]);
    assert!(a.findings[0].reason.contains("`legacy`"), "{}", a.findings[0].reason);
}

#[test]
fn delete_model_needs_the_window() {
    let a = run(SHOP_0013_DELETE_ORDER, Some(0));
    expect(&a, Verdict::Maintenance, &["drop-table"]);
    assert_eq!(a.findings[0].table.as_deref(), Some("shop_order"));
}

#[test]
fn renames_need_the_window() {
    let a = run(SHOP_0006_RENAME_ITEM_NOTE, Some(0));
    expect(&a, Verdict::Maintenance, &["rename-column"]);
    assert!(a.findings[0].fix.contains("db_column='note'"), "{}", a.findings[0].fix);
    let a = run(SHOP_0020_RENAME_TAG, Some(0));
    expect(&a, Verdict::Maintenance, &["rename-table"]);
    assert_eq!(a.findings[0].table.as_deref(), Some("shop_tag"));
}

#[test]
fn column_type_change_needs_the_window() {
    expect(&run(SHOP_0007_ALTER_ITEM_PRICE, Some(0)), Verdict::Maintenance, &["alter-column-type"]);
    // Widening a varchar, then db_index: both indexes are lock risks on a large table.
    expect(
        &run(SHOP_0026_WIDEN, Some(BIG)),
        Verdict::Maintenance,
        &["alter-column-type", "create-index", "create-index"],
    );
}

#[test]
fn alter_field_to_not_null_needs_the_window() {
    let a = run(SHOP_0016_ALTER_ITEM_QTY, Some(BIG));
    // SET DEFAULT, UPDATE … WHERE NULL, SET CONSTRAINTS, SET NOT NULL, DROP DEFAULT.
    expect(&a, Verdict::Maintenance, &["data-migration", "set-not-null"]);
    assert_eq!(a.statements, 5);
    expect(&run(SHOP_0016_ALTER_ITEM_QTY, Some(10)), Verdict::Maintenance, &["set-not-null"]);
}

#[test]
fn run_python_needs_the_window() {
    let a = run(SHOP_0015_RUNPYTHON, Some(0));
    expect(&a, Verdict::Maintenance, &["run-python"]);
    assert_eq!(a.statements, 0);
    assert!(a.findings[0].reason.contains("Raw Python operation"), "{}", a.findings[0].reason);
}

#[test]
fn unknown_statement_needs_the_window() {
    let a = run(SHOP_0030_RUNSQL_TRUNCATE, Some(0));
    expect(&a, Verdict::Maintenance, &["unknown-ddl"]);
    assert!(a.findings[0].reason.contains("TRUNCATE"), "{}", a.findings[0].reason);
}

#[test]
fn unparsable_statement_needs_the_window_and_the_rest_is_still_read() {
    let a = run(SHOP_0031_RUNSQL_TYPO, Some(BIG));
    expect(&a, Verdict::Maintenance, &["unparsable", "data-migration"]);
    assert_eq!(a.statements, 2);
    let f = &a.findings[0];
    assert_eq!(f.statement, "ALTER TABLE shop_item ADD COLUM size integer");
    assert!(f.reason.contains("syntax error"), "{}", f.reason);
    // Not even tokens: the whole text is one unknown statement.
    let a = run("BEGIN;\nSELECT 'unterminated;\nCOMMIT;\n", Some(0));
    expect(&a, Verdict::Maintenance, &["unparsable"]);
}

#[test]
fn tables_needing_size_names_each_existing_table_once() {
    assert_eq!(tables_needing_size(DEMO_CATALOG_0002_PRODUCT_STOCK), ["catalog_product"]);
    assert_eq!(tables_needing_size(SHOP_0026_WIDEN), ["shop_item"]);
    assert_eq!(tables_needing_size(SHOP_0032_ITEM_OWNER), ["shop_item"]);
    assert_eq!(tables_needing_size(SHOP_0005_REMOVE_ITEM_LEGACY), Vec::<String>::new());
    assert_eq!(tables_needing_size(SHOP_0027_M2M), Vec::<String>::new());
}

#[test]
fn long_statements_are_shortened() {
    let columns: Vec<String> = (0..80).map(|i| format!("\"c{i}\"")).collect();
    let sql = format!("CREATE INDEX \"i\" ON \"t\" ({});", columns.join(", "));
    let a = run(&sql, Some(BIG));
    let statement = &a.findings[0].statement;
    assert_eq!(statement.chars().count(), 300);
    assert!(statement.ends_with('…'));
}

#[test]
fn verdicts_are_ordered_and_serialized_in_kebab_case() {
    assert!(Verdict::Online < Verdict::LockRisk && Verdict::LockRisk < Verdict::Maintenance);
    assert_eq!(serde_json::to_string(&Verdict::LockRisk).unwrap(), "\"lock-risk\"");
    for v in [Verdict::Online, Verdict::LockRisk, Verdict::Maintenance] {
        assert_eq!(serde_json::to_string(&v).unwrap(), format!("\"{}\"", v.name()));
    }
}

// The rule reference of docs/migrations.md.

const DOCS: &str = include_str!("../../../../docs/migrations.md");
const BEGIN: &str = "<!-- rules: begin -->\n";
const END: &str = "<!-- rules: end -->";

#[test]
fn every_rule_is_documented_and_every_documented_rule_exists() {
    let (_, section) = DOCS.split_once(BEGIN).expect("the begin marker");
    let (section, _) = section.split_once(END).expect("the end marker");
    let documented: Vec<&str> = section
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`').map(|(name, _)| name))
        .collect();
    let listed: Vec<&str> = super::rules().iter().map(|r| r.0).collect();
    assert_eq!(documented, listed);
}

/// The table in docs/migrations.md is `rules_markdown()`; `RAIL_UPDATE_DOCS=1` rewrites it.
#[test]
fn docs_rule_table_is_generated_from_the_rules() {
    let table = rules_markdown();
    let (head, rest) = DOCS.split_once(BEGIN).expect("the begin marker");
    let (current, tail) = rest.split_once(END).expect("the end marker");
    if current != table && std::env::var_os("RAIL_UPDATE_DOCS").is_some() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/migrations.md");
        std::fs::write(path, format!("{head}{BEGIN}{table}{END}{tail}")).unwrap();
        return;
    }
    assert_eq!(current, table, "docs/migrations.md is stale: run the test with RAIL_UPDATE_DOCS=1");
}
