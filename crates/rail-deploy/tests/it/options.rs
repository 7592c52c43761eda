//! Command-line options that guard or shape a deploy: `--no-backup` in production, `--migrate-to`,
//! and invalid input.

use crate::support::{all_output, World};

#[test]
fn no_backup_in_production_is_refused_without_yes() {
    let w = World::new("v1", &["v2"]);
    let local = fs_err::read_to_string(World::config()).expect("reading local.toml");
    assert!(local.contains("environment = \"local\""));
    let production = w.dir.write(
        "production.toml",
        local.replace("environment = \"local\"", "environment = \"production\""),
    );

    let out = w.deploy_with_config(&production, &["--version", "v2", "--no-backup"]).run();
    assert_eq!(out.code, Some(3), "{}", out.describe());
    assert!(
        out.stderr.contains("--no-backup") && out.stderr.contains("--yes"),
        "{}",
        out.describe()
    );
    assert!(w.run_ids().is_empty(), "no run started");
    assert!(!w.has_stock_column());
    assert_eq!(w.served_release().as_deref(), Some("v1"));
    w.assert_no_secret(&all_output(&out), "deploy's output");
}

#[test]
fn migrate_to_an_earlier_migration_migrates_back() {
    let w = World::new("v2", &[]);
    assert!(w.has_stock_column());

    let out = w.deploy(&["--migrate-to", "catalog:0001_initial", "--yes"]).run();
    out.assert_success();
    assert!(!w.has_stock_column(), "the column of 0002 is gone");
    let applied = w.db.query_one(
        "SELECT count(*) FROM django_migrations WHERE app = 'catalog' AND name = '0002_product_stock'",
    );
    assert_eq!(applied.as_deref(), Some("0"));
    assert_eq!(w.served_release().as_deref(), Some("v2"));
    assert_eq!(w.health_status(), Some(200));
}

#[test]
fn invalid_arguments_are_usage_errors_that_change_nothing() {
    let w = World::new("v1", &["v2"]);
    let cases: [&[&str]; 5] = [
        &["--version", "../x", "--yes"],
        &["--version", "v2/../../etc", "--yes"],
        &["--version", "v2", "--migrate-to", "catalog;drop", "--yes"],
        &["--version", "v2", "--lock-wait", "soon", "--yes"],
        &["--version", "v2", "--no-such-flag"],
    ];
    for args in cases {
        let out = w.deploy(args).run();
        assert_eq!(out.code, Some(2), "{args:?}\n{}", out.describe());
        assert!(!out.stderr.trim().is_empty(), "{args:?} says why\n{}", out.describe());
    }
    let out = w.deploy(&["--version", "../x", "--yes"]).run();
    assert!(out.stderr.contains("not a valid app version"), "{}", out.describe());
    assert!(w.run_ids().is_empty(), "no run started");
    assert_eq!(w.served_release().as_deref(), Some("v1"));
}

#[test]
fn man_pages_are_written_without_any_configuration() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut c = rail_testkit::cmd(env!("CARGO_BIN_EXE_deploy"));
    c.args(["man", "--dir"]).arg(dir.path()).current_dir(dir.path());
    let out = c.run();
    out.assert_success();
    for page in ["deploy.1", "deploy-status.1", "deploy-history.1", "deploy-maintenance-on.1"] {
        let path = dir.path().join(page);
        assert!(
            out.stdout.contains(&path.display().to_string()),
            "{page} listed\n{}",
            out.describe()
        );
        let text = fs_err::read_to_string(&path).expect("the page was written");
        assert!(text.starts_with(".ie") || text.contains(".TH"), "{page} is a man page");
    }
    let main = fs_err::read_to_string(dir.path().join("deploy.1")).unwrap();
    for flag in ["dry\\-run", "resume", "lock\\-wait", "migrate\\-to", "no\\-rollback"] {
        assert!(main.contains(flag), "deploy.1 documents --{flag}");
    }
}
