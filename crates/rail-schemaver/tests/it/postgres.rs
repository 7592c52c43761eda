//! The PostgreSQL store and the import from the old Django table, on a database of the test's own.

use rail_testkit::{Output, TestDb, TestDir};

use crate::{schemaver, small_pair};

fn pg(db: &TestDb, args: &[&str]) -> Output {
    schemaver().env("RAIL_SCHEMA_STORE", "postgres").env("DATABASE_URL", db.url()).args(args).run()
}

fn assert_no_password(db: &TestDb, out: &Output) {
    assert!(
        !out.stdout.contains(db.password()) && !out.stderr.contains(db.password()),
        "{}",
        out.describe()
    );
}

#[test]
fn the_version_lifecycle_in_postgres() {
    let db = TestDb::new();
    let pair = small_pair();
    let v1 = pair.join("v1.graphql").display().to_string();
    let v2 = pair.join("v2.graphql").display().to_string();

    // The tables are created on first use.
    let out = pg(&db, &["list"]);
    out.assert_success();
    assert_eq!(out.stdout, "No schema versions stored\n");
    assert_eq!(
        db.query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_name LIKE 'rail_schema_%'"
        )
        .as_deref(),
        Some("2")
    );

    pg(&db, &["create", "--version", "1.0.0", "-d", "first", "--schema", &v1, "--activate"])
        .assert_success();
    pg(&db, &["create", "--version", "1.1.0", "--schema", &v2]).assert_success();
    pg(&db, &["create", "--version", "1.1.0", "--schema", &v2]).assert_code(3);
    assert_eq!(
        db.query_one("SELECT version FROM rail_schema_versions WHERE is_active").as_deref(),
        Some("1.0.0")
    );
    assert_eq!(
        db.query_one("SELECT sdl FROM rail_schema_versions WHERE version = '1.0.0'").as_deref(),
        Some(pair.read("v1.graphql").as_str())
    );

    pg(&db, &["check", "--schema", &v2]).assert_code(1);
    let out = pg(&db, &["compare", "--from", "active", "--to", "1.1.0", "--format", "json"]);
    out.assert_code(1);
    assert_eq!(out.json()["counts"]["breaking"], 1);

    pg(&db, &["activate", "--version", "1.1.0"]).assert_success();
    pg(&db, &["delete", "--version", "1.1.0"]).assert_code(3);
    let out = pg(&db, &["rollback"]);
    out.assert_success();
    assert_eq!(out.stdout, "Rolled back to schema version 1.0.0 (was 1.1.0)\n");
    assert_eq!(db.query_one("SELECT count(*) FROM rail_schema_activations").as_deref(), Some("3"));
    let history = pg(&db, &["history", "--format", "json"]).json();
    assert_eq!(history[2]["reason"], "rollback");
    assert_eq!(history[2]["previous"], "1.1.0");

    let show = pg(&db, &["show", "--version", "1.0.0", "--format", "json"]);
    show.assert_success();
    assert_eq!(show.json()["description"], "first");
    pg(&db, &["validate"]).assert_success();
    db.execute("UPDATE rail_schema_versions SET sdl = sdl || ' ' WHERE version = '1.1.0'");
    let out = pg(&db, &["validate"]);
    out.assert_code(2);
    assert!(out.stdout.contains("1.1.0: 1 problem(s)\n  checksum mismatch"), "{}", out.describe());

    pg(&db, &["delete", "--version", "1.1.0"]).assert_success();
    let out = pg(&db, &["delete", "--version", "1.0.0", "--force"]);
    out.assert_success();
    assert_no_password(&db, &out);
    assert_eq!(db.query_one("SELECT count(*) FROM rail_schema_versions").as_deref(), Some("0"));
}

#[test]
fn concurrent_writers_keep_one_active_version() {
    let db = TestDb::new();
    let pair = small_pair();
    let v1 = pair.join("v1.graphql").display().to_string();
    pg(&db, &["list"]).assert_success();
    let running: Vec<_> = (0..6)
        .map(|i| {
            schemaver()
                .env("RAIL_SCHEMA_STORE", "postgres")
                .env("DATABASE_URL", db.url())
                .args(["create", "--version", &format!("1.0.{i}"), "--schema", &v1, "--activate"])
                .spawn()
        })
        .collect();
    for r in running {
        r.wait().assert_success();
    }
    assert_eq!(db.query_one("SELECT count(*) FROM rail_schema_versions").as_deref(), Some("6"));
    assert_eq!(
        db.query_one("SELECT count(*) FROM rail_schema_versions WHERE is_active").as_deref(),
        Some("1")
    );
    assert_eq!(db.query_one("SELECT count(*) FROM rail_schema_activations").as_deref(), Some("6"));
}

#[test]
fn an_unreachable_store_is_an_error_without_the_password() {
    let out = schemaver()
        .env("RAIL_SCHEMA_STORE", "postgres")
        .env("DATABASE_URL", "postgresql://rail:sup3rsecret@127.0.0.1:1/nothing")
        .arg("list")
        .run();
    out.assert_code(1);
    assert!(
        out.stderr.contains(
            "cannot connect to the schema store at postgresql://rail:***@127.0.0.1:1/nothing"
        ),
        "{}",
        out.describe()
    );
    assert!(!out.stderr.contains("sup3rsecret"));

    let out = schemaver().env("RAIL_SCHEMA_STORE", "postgres").arg("list").run();
    out.assert_code(2);
    assert!(out.stderr.contains("no PostgreSQL URL: set DATABASE_URL"), "{}", out.describe());
}

#[test]
fn import_legacy_reads_the_old_table_and_files() {
    let db = TestDb::new();
    let dir = TestDir::new();
    let pair = small_pair();
    let (v1, v2) = (pair.read("v1.graphql"), pair.read("v2.graphql"));
    let legacy = dir.join("schema_versions");
    dir.write("schema_versions/schema_v1.0.graphql", &v1);
    dir.write("schema_versions/schema_v1.1.0.graphql", &v2);
    let hash = rail_core::schema_store::sha256_hex(&v1);
    db.execute(&format!(
        "CREATE TABLE rail_django_graphql_schema_versions (
            id bigserial PRIMARY KEY, version varchar(50) UNIQUE NOT NULL, description text NOT NULL,
            schema_hash varchar(64) NOT NULL, created_at timestamptz NOT NULL, created_by varchar(100) NOT NULL,
            migration_files jsonb NOT NULL, rollback_instructions text, is_active boolean NOT NULL,
            metadata jsonb NOT NULL);
         INSERT INTO rail_django_graphql_schema_versions
            (version, description, schema_hash, created_at, created_by, migration_files, rollback_instructions, is_active, metadata)
         VALUES
            ('1.0', 'first', '{hash}', '2024-01-01T10:00:00Z', 'system', '[\"0001_initial\"]', NULL, false, '{{}}'),
            ('1.1.0', 'second', 'stale', '2024-02-01T10:00:00Z', 'alice', '[]', 'revert', true, '{{\"k\": 1}}'),
            ('backup-20240301-120000', 'backup', 'x', '2024-03-01T10:00:00Z', 'bob', '[]', NULL, false, '{{}}'),
            ('2.0.0', 'no file', 'x', '2024-04-01T10:00:00Z', 'bob', '[]', NULL, false, '{{}}');"
    ));
    let store = dir.join("store");
    let import = || {
        schemaver()
            .env("RAIL_SCHEMA_DIR", &store)
            .env("DATABASE_URL", db.url())
            .args(["import-legacy", "--legacy-dir"])
            .arg(&legacy)
            .run()
    };

    let out = import();
    out.assert_code(1);
    assert_no_password(&db, &out);
    assert!(
        out.stdout.contains("Activated schema version 1.1.0, active in the legacy table"),
        "{}",
        out.describe()
    );
    assert!(
        out.stdout
            .contains("Imported 2 legacy version(s); 0 already present, 2 could not be imported"),
        "{}",
        out.describe()
    );
    assert!(
        out.stderr
            .contains("skipped legacy version `backup-20240301-120000`: not a semantic version"),
        "{}",
        out.describe()
    );
    assert!(out.stderr.contains("skipped legacy version `2.0.0`"), "{}", out.describe());
    assert!(
        out.stderr.contains("legacy version `1.1.0`: its file does not match the recorded hash"),
        "{}",
        out.describe()
    );

    let list =
        schemaver().env("RAIL_SCHEMA_DIR", &store).args(["list", "--format", "json"]).run().json();
    let rows: Vec<(&str, &str, &str, bool)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_str().unwrap(),
                v["created_by"].as_str().unwrap(),
                v["created_at"].as_str().unwrap(),
                v["is_active"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("1.0.0", "system", "2024-01-01T10:00:00Z", false),
            ("1.1.0", "alice", "2024-02-01T10:00:00Z", true)
        ]
    );
    assert_eq!(list[0]["metadata"]["legacy_version"], "1.0");
    assert_eq!(list[0]["metadata"]["migration_files"], serde_json::json!(["0001_initial"]));

    // Importing again changes nothing.
    let out = import();
    assert!(
        out.stdout.contains("Imported 0 legacy version(s); 2 already present"),
        "{}",
        out.describe()
    );

    // As JSON: what was imported, what was there, and why each other row was not.
    let out = schemaver()
        .env("RAIL_SCHEMA_DIR", &store)
        .env("DATABASE_URL", db.url())
        .args(["import-legacy", "--format", "json", "--legacy-dir"])
        .arg(&legacy)
        .run();
    out.assert_code(1);
    let json = out.json();
    assert_eq!(json["imported"], serde_json::json!([]));
    assert_eq!(json["already_present"], serde_json::json!(["1.0.0", "1.1.0"]));
    assert_eq!(json["activated"], serde_json::Value::Null);
    assert_eq!(json["failed"][0]["version"], "backup-20240301-120000");
    assert_eq!(json["failed"][0]["reason"], "not a semantic version");
    assert_eq!(json["failed"][1]["version"], "2.0.0");

    // No legacy table: a clear error.
    let empty = TestDb::new();
    let out = schemaver()
        .env("RAIL_SCHEMA_DIR", &store)
        .env("DATABASE_URL", empty.url())
        .arg("import-legacy")
        .run();
    out.assert_code(1);
    assert!(
        out.stderr.contains("the legacy table rail_django_graphql_schema_versions does not exist"),
        "{}",
        out.describe()
    );
}
