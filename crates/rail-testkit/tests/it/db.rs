use rail_testkit::{query, Stack, TestDb};

#[test]
fn a_test_db_is_a_seeded_clone_of_the_template() {
    let db = TestDb::new();
    assert!(db.name().starts_with("t_"), "{}", db.name());
    assert!(db.url().ends_with(&format!("/{}", db.name())));
    assert!(!db.password().is_empty() && db.url().contains(db.password()));
    assert_eq!(db.query_one("SELECT current_database()").as_deref(), Some(db.name()));
    // The template is the demo app's v1, migrated and seeded with 50 products.
    assert_eq!(db.query_one("SELECT count(*) FROM catalog_product").as_deref(), Some("50"));
    let migrations =
        db.query_one("SELECT count(*) FROM django_migrations WHERE app = 'catalog'").unwrap();
    assert!(migrations.parse::<u32>().unwrap() >= 1);
}

#[test]
fn test_dbs_are_isolated_and_dropped() {
    let admin = Stack::get().database_url_for("postgres");
    let exists = |name: &str| {
        query(&admin, &format!("SELECT 1 FROM pg_database WHERE datname = '{name}'")).unwrap().len()
            == 1
    };
    let first = TestDb::new();
    let second = TestDb::new();
    assert_ne!(first.name(), second.name());
    first.execute("DELETE FROM catalog_product");
    assert_eq!(first.query_one("SELECT count(*) FROM catalog_product").as_deref(), Some("0"));
    assert_eq!(second.query_one("SELECT count(*) FROM catalog_product").as_deref(), Some("50"));

    let name = first.name().to_owned();
    assert!(exists(&name));
    drop(first);
    assert!(!exists(&name), "{name} still exists after drop");
}

#[test]
fn a_dump_shows_the_schema_and_data() {
    let db = TestDb::new();
    db.execute("CREATE TABLE marker (note text); INSERT INTO marker VALUES ('dumped')");
    let dump = db.dump();
    assert!(dump.contains("CREATE TABLE \"public\".\"marker\""), "{dump}");
    assert!(dump.contains("dumped"));
    assert!(!dump.contains(db.password()));
}
