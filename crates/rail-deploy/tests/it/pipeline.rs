//! Whole deploys: v1 → v2 succeeds, v3-broken rolls back by itself.

use crate::support::{assert_same_state, logical_state, World};

#[test]
fn deploy_v1_to_v2_adds_the_column_and_the_field() {
    let w = World::new("v1", &["v2"]);
    assert_eq!(w.served_release().as_deref(), Some("v1"));
    assert!(!w.graphql_fields("ProductType").iter().any(|f| f == "stock"));

    let out = w.deploy(&["--version", "v2", "--yes"]).run();
    out.assert_success();
    assert!(out.stdout.contains("deployed"), "{}", out.describe());

    let column = w.db.query_one(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'catalog_product' AND column_name = 'stock'",
    );
    assert_eq!(column.as_deref(), Some("stock"));
    assert_eq!(w.served_release().as_deref(), Some("v2"));
    assert!(w.graphql_fields("ProductType").iter().any(|f| f == "stock"));
    assert!(!w.app.maintenance_file().exists());
    assert!(!out.stdout.contains(w.db.password()) && !out.stderr.contains(w.db.password()));
}

#[test]
fn deploy_v3_broken_fails_in_its_migration_and_rolls_back_to_v2() {
    let w = World::new("v2", &["v3-broken"]);
    assert_eq!(w.served_release().as_deref(), Some("v2"));
    w.db.execute("UPDATE catalog_product SET stock = 7 WHERE id % 3 = 0");
    let before = logical_state(&w.db);

    let out = w.deploy(&["--version", "v3-broken", "--yes"]).run();
    out.assert_code(4);
    assert!(out.stdout.contains("rolled back"), "{}", out.describe());
    assert!(out.stderr.contains("migrate") || out.stdout.contains("migrate"), "{}", out.describe());

    assert_same_state(&logical_state(&w.db), &before, "the database after the rollback");
    let review = w.db.query_one("SELECT to_regclass('public.catalog_review')::text");
    assert_eq!(review, None, "the half-created table is gone");
    assert_eq!(w.served_release().as_deref(), Some("v2"));
    assert_eq!(w.health_status(), Some(200));
    assert!(!w.app.maintenance_file().exists());
}
