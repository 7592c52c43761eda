//! Damaged sets are named by verification and refused by a rollback unless `--emergency`.

use rail_core::backup::{Manifest, MANIFEST_FILE};

use crate::support::Env;

type Damage = fn(&std::path::Path);

fn flip_bit(path: &std::path::Path) {
    let mut bytes = fs_err::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x04;
    fs_err::write(path, bytes).unwrap();
}

#[test]
fn every_kind_of_damage_is_named_and_refused() {
    let env = Env::new();
    env.backup("good");
    let cases: Vec<(&str, &str, Damage)> = vec![
        ("flipped-db", "database", |set| flip_bit(&set.join("database.dump.zst"))),
        ("flipped-static", "static", |set| flip_bit(&set.join("static.tar.zst"))),
        ("flipped-media", "media", |set| flip_bit(&set.join("media.tar.zst"))),
        ("truncated-db", "database", |set| {
            let path = set.join("database.dump.zst");
            let len = fs_err::metadata(&path).unwrap().len();
            fs_err::OpenOptions::new().write(true).open(&path).unwrap().set_len(len / 2).unwrap();
        }),
        ("missing-media", "media", |set| fs_err::remove_file(set.join("media.tar.zst")).unwrap()),
        ("edited-manifest", "manifest", |set| {
            let path = set.join(MANIFEST_FILE);
            let text = fs_err::read_to_string(&path)
                .unwrap()
                .replace("\"reason\": \"manual\"", "\"reason\": \"deploy\"");
            fs_err::write(&path, text).unwrap();
        }),
    ];
    for (name, component, damage) in cases {
        copy_set(&env, "good", name);
        damage(&env.set_dir(name));

        for level in ["checksums", "structure"] {
            let out = env.rollback(&["verify", name, "--level", level]);
            out.assert_code(3);
            let failed: Vec<&str> =
                out.stdout.lines().filter(|l| l.starts_with("FAILED")).collect();
            assert!(
                failed.iter().any(|l| l.split_whitespace().nth(1) == Some(component)),
                "{name} at {level}: expected {component} to fail\n{}",
                out.describe()
            );
        }
        let before = env.db_state();
        let out = env.rollback(&["rollback", name, "--yes"]);
        out.assert_code(3);
        assert!(out.stderr.contains(component), "{name}: {}", out.describe());
        assert_eq!(env.db_state(), before, "{name}: a refused rollback changes nothing");
    }
}

#[test]
fn emergency_restores_an_edited_manifest() {
    let env = Env::new();
    env.backup("b1");
    let before = env.db_state();
    env.mutate();
    let path = env.set_dir("b1").join(MANIFEST_FILE);
    let text = fs_err::read_to_string(&path)
        .unwrap()
        .replace("\"environment\": \"test\"", "\"environment\": \"prod\"");
    fs_err::write(&path, text).unwrap();
    env.rollback(&["rollback", "b1", "--yes"]).assert_code(3);
    let out = env.rollback(&["rollback", "b1", "--yes", "--emergency"]);
    out.assert_success();
    assert!(out.stderr.contains("--emergency"), "{}", out.describe());
    assert_eq!(env.db_state().tables, before.tables);
}

#[test]
fn restore_test_level_compares_row_counts() {
    let env = Env::new();
    env.backup("b1");
    let out = env.rollback(&["verify", "b1", "--level", "restore-test"]);
    out.assert_success();
    assert!(out.stdout.contains("row counts match"), "{}", out.describe());
    assert!(env.leftover_databases().is_empty(), "the scratch database is dropped");

    // A manifest that claims other counts (resealed, so only the restore test can tell).
    let dir = env.set_dir("b1");
    let mut manifest = Manifest::read(&dir, "b1", true).unwrap();
    manifest
        .database
        .as_mut()
        .unwrap()
        .tables
        .iter_mut()
        .find(|t| t.table == "events")
        .unwrap()
        .rows += 1;
    fs_err::remove_file(dir.join(MANIFEST_FILE)).unwrap();
    manifest.write_signed(&dir, &crate::support::stack_keys()).unwrap();
    let out = env.rollback(&["verify", "b1", "--level", "restore-test"]);
    out.assert_code(3);
    assert!(
        out.stdout.contains("\"public\".\"events\": 2000 rows, the manifest says 2001"),
        "{}",
        out.describe()
    );
    assert!(env.leftover_databases().is_empty(), "the scratch database is dropped on failure too");
}

#[test]
fn sets_older_than_the_limit_need_emergency() {
    let env = Env::new();
    env.backup("old");
    let dir = env.set_dir("old");
    let mut manifest = Manifest::read(&dir, "old", true).unwrap();
    manifest.created_at -= chrono::Duration::days(45);
    fs_err::remove_file(dir.join(MANIFEST_FILE)).unwrap();
    manifest.write_signed(&dir, &crate::support::stack_keys()).unwrap();
    let out = env.rollback(&["rollback", "old", "--yes"]);
    out.assert_code(3);
    assert!(out.stderr.contains("max_rollback_age_days"), "{}", out.describe());
    env.rollback(&["rollback", "old", "--yes", "--emergency"]).assert_success();
}

/// Copy a set under another name, with its manifest resealed for that name.
pub(crate) fn copy_set(env: &Env, from: &str, to: &str) {
    let (src, dst) = (env.set_dir(from), env.set_dir(to));
    fs_err::create_dir(&dst).unwrap();
    for entry in fs_err::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != MANIFEST_FILE {
            fs_err::copy(entry.path(), dst.join(entry.file_name())).unwrap();
        }
    }
    let mut manifest = Manifest::read(&src, from, true).unwrap();
    to.clone_into(&mut manifest.name);
    manifest.write_signed(&dst, &crate::support::stack_keys()).unwrap();
}
