//! A rollback brings back exactly what was backed up.

use crate::support::{Env, Settings};

fn round_trip(env: &Env, extra_args: &[&str]) {
    env.backup("b1");
    let (db_before, files_before) = (env.db_state(), env.files_state());

    env.mutate();
    assert_ne!(env.db_state(), db_before, "the mutation must change the database");
    assert_ne!(env.files_state(), files_before, "the mutation must change the files");

    let mut args = vec!["rollback", "b1", "--yes"];
    args.extend_from_slice(extra_args);
    let out = env.rollback(&args);
    out.assert_success();
    assert!(out.stdout.contains("restored `b1`"), "{}", out.describe());

    let db_after = env.db_state();
    assert_eq!(db_after.schema, db_before.schema, "schema after the rollback");
    assert_eq!(db_after.tables, db_before.tables, "table contents after the rollback");
    let (static_after, media_after) = env.files_state();
    assert_eq!(static_after, files_before.0, "static tree after the rollback");
    assert_eq!(media_after, files_before.1, "media tree after the rollback");
}

#[test]
fn swap_restore_is_exact() {
    let env = Env::new();
    round_trip(&env, &[]);
    // The uncompressed copy that let pg_restore run jobs is gone.
    let copies: Vec<_> = fs_err::read_dir(env.backups())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".rail-restore-"))
        .collect();
    assert!(copies.is_empty(), "{copies:?}");
    // The replaced database and directories are kept beside the live ones.
    let kept = env.leftover_databases();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].starts_with(&format!("{}__rail_pre_", env.db.name())), "{kept:?}");
    let siblings: Vec<_> = fs_err::read_dir(env.dir.join("app"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".rail-pre-"))
        .collect();
    assert_eq!(siblings.len(), 2, "{siblings:?}");
    // The audit log has the run.
    let history = env.rollback(&["history", "--format", "json"]);
    history.assert_success();
    let runs = history.json();
    assert_eq!(runs.as_array().unwrap().len(), 1, "{}", history.stdout);
    assert_eq!(runs[0]["outcome"], "success");
    assert_eq!(runs[0]["backup"], "b1");
}

#[test]
fn in_place_restore_is_exact_and_takes_a_safety_copy() {
    let env = Env::new();
    round_trip(&env, &["--strategy", "in-place"]);
    // The dump pg_restore replayed into psql was the zstd one.
    assert!(env.set_dir("b1").join("database.dump.zst").is_file());
    assert!(env.leftover_databases().is_empty(), "in place keeps no database copy");
    let list = env.rollback(&["list", "--format", "json"]);
    let sets = list.json();
    let reasons: Vec<_> = sets
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["manifest"]["reason"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(reasons.iter().any(|r| r.starts_with("pre-rollback ")), "{reasons:?}");
    // The safety copy is the newest set, but --previous means the version before, not undoing the rollback.
    let out = env.rollback(&["rollback", "--previous", "--yes", "--strategy", "in-place"]);
    out.assert_success();
    assert!(out.stdout.contains("restored `b1`"), "{}", out.describe());
}

#[test]
fn directory_format_round_trip() {
    let env = Env::with(&Settings { backup: "format = \"directory\"\njobs = 2", sections: "" });
    round_trip(&env, &[]);
    assert!(env.set_dir("b1").join("database").is_dir());
}

#[test]
fn only_the_chosen_components_are_restored() {
    let env = Env::new();
    env.backup("b1");
    let db_before = env.db_state();
    env.mutate();
    let files_mutated = env.files_state();
    env.rollback(&["rollback", "b1", "--yes", "--components", "db"]).assert_success();
    assert_eq!(env.db_state().tables, db_before.tables);
    assert_eq!(env.files_state(), files_mutated, "files must stay as they were");
}

#[test]
fn the_schema_version_comes_back_even_when_deleted_since() {
    use rail_core::schema_store::{
        parse_version, ActivationReason, NewVersion, SchemaStore, StoreLocation,
    };
    let env = Env::with(&Settings {
        backup: "",
        sections: "[schema]\nstore = \"dir\"\ndirectory = \"{root}/schema\"\n",
    });
    let location = StoreLocation::Dir(env.dir.join("schema"));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let create = |version: &str, sdl: &str| {
        runtime.block_on(async {
            let store = SchemaStore::open(&location).await.unwrap();
            let new = NewVersion {
                version: parse_version(version).unwrap(),
                description: String::new(),
                sdl: sdl.to_owned(),
                created_by: "test".into(),
                created_at: None,
                metadata: serde_json::json!({}),
                activate: Some(ActivationReason::Activate),
            };
            store.create(new).await.unwrap();
        });
    };
    let active = || {
        runtime
            .block_on(async { SchemaStore::open(&location).await.unwrap().active().await.unwrap() })
    };
    create("1.0.0", "type Query { a: Int }");
    env.backup("b1");
    let manifest = env.rollback(&["list", "--format", "json"]).json()[0]["manifest"].clone();
    assert_eq!(manifest["schema_version"], "1.0.0");
    assert_eq!(
        fs_err::read_to_string(env.set_dir("b1").join("schema.graphql")).unwrap(),
        "type Query { a: Int }"
    );

    create("1.1.0", "type Query { a: Int b: Int }");
    runtime.block_on(async {
        let store = SchemaStore::open(&location).await.unwrap();
        store.delete(&parse_version("1.0.0").unwrap(), false).await.unwrap();
    });
    env.rollback(&["rollback", "b1", "--yes"]).assert_success();
    let now = active().expect("a version is active");
    assert_eq!(now.info.version, "1.0.0");
    assert_eq!(now.sdl, "type Query { a: Int }");
}

/// `(file, format)` of each component the manifest of `set` lists, schema aside.
fn components(env: &Env, set: &str) -> Vec<(String, String)> {
    let manifest: serde_json::Value = serde_json::from_str(
        &fs_err::read_to_string(env.set_dir(set).join("manifest.json")).unwrap(),
    )
    .unwrap();
    manifest["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] != "schema")
        .map(|c| (c["file"].as_str().unwrap().to_owned(), c["format"].as_str().unwrap().to_owned()))
        .collect()
}

fn names(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(f, c)| ((*f).to_owned(), (*c).to_owned())).collect()
}

#[test]
fn default_sets_are_zstd_round_trip_and_verify_at_every_level() {
    let env = Env::new();
    round_trip(&env, &[]);
    assert_eq!(
        components(&env, "b1"),
        names(&[
            ("database.dump.zst", "pg_dump-custom+zstd"),
            ("static.tar.zst", "tar+zstd"),
            ("media.tar.zst", "tar+zstd"),
        ])
    );
    let set = env.set_dir("b1");
    assert!(!set.join("database.dump").exists() && !set.join("static.tar.gz").exists());
    // zstd's magic number: the dump really is compressed, not pg_dump's own format renamed.
    let head = fs_err::read(set.join("database.dump.zst")).unwrap();
    assert_eq!(head[..4], [0x28, 0xb5, 0x2f, 0xfd]);
    for level in ["checksums", "structure", "restore-test"] {
        let out = env.rollback(&["verify", "b1", "--level", level]);
        out.assert_success();
    }
    // A flipped bit in a zstd archive is found and refused like one in a gzip archive.
    let path = set.join("media.tar.zst");
    let mut bytes = fs_err::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    fs_err::write(&path, bytes).unwrap();
    let out = env.rollback(&["verify", "b1", "--level", "structure"]);
    out.assert_code(3);
    assert!(out.stdout.contains("media") || out.stderr.contains("media"), "{}", out.describe());
}

#[test]
fn a_damaged_zstd_dump_is_named_even_when_its_checksum_was_forged() {
    let env = &Env::new();
    env.backup("good");
    let before = env.db_state();
    crate::corruption::copy_set(env, "good", "bad");
    let dir = env.set_dir("bad");
    let path = dir.join("database.dump.zst");
    flip_middle_bit(&path);
    for level in ["checksums", "structure"] {
        let out = env.rollback(&["verify", "bad", "--level", level]);
        out.assert_code(3);
        assert!(
            out.stdout.lines().any(|l| l.starts_with("FAILED")
                && l.contains("database")
                && l.contains("database.dump.zst: checksum mismatch")),
            "{level}: {}",
            out.describe()
        );
    }

    // The manifest resealed with the damaged file's checksum (someone who holds the key): only
    // decompressing the dump can tell, and the report still names the file.
    reseal_database(env, "bad");
    env.rollback(&["verify", "bad", "--level", "checksums"]).assert_success();
    let out = env.rollback(&["verify", "bad", "--level", "structure"]);
    out.assert_code(3);
    assert!(
        out.stdout.lines().any(|l| l.starts_with("FAILED")
            && l.contains("database")
            && l.contains("database.dump.zst")),
        "{}",
        out.describe()
    );
    // A rollback (verifying checksums only) finds it while decompressing, and switches nothing in.
    env.mutate();
    let (mutated, files) = (env.db_state(), env.files_state());
    let out = env.rollback(&["rollback", "bad", "--yes"]);
    assert!(!out.success(), "{}", out.describe());
    assert!(out.stderr.contains("cannot read the dump"), "{}", out.describe());
    assert!(out.stderr.contains("database.dump.zst"), "{}", out.describe());
    assert_eq!(env.db_state(), mutated, "a failed rollback changes nothing");
    assert_eq!(env.files_state(), files, "a failed rollback changes nothing");
    assert_ne!(mutated, before);
    // In place, psql gets the dump as pg_restore decompresses it: what it got is never committed.
    let out = env.rollback(&["rollback", "bad", "--yes", "--strategy", "in-place"]);
    assert!(!out.success(), "{}", out.describe());
    assert!(out.stderr.contains("database.dump.zst"), "{}", out.describe());
    let list = env.rollback(&["list", "--format", "json"]);
    assert_eq!(
        env.db_state().tables,
        mutated.tables,
        "a failed in-place restore commits nothing: {}\nLIST {}",
        out.describe(),
        list.stdout
    );
    assert!(env.leftover_databases().is_empty(), "{:?}", env.leftover_databases());
}

/// Flip a bit in the middle of `path` (inside the compressed data, past any header).
fn flip_middle_bit(path: &std::path::Path) {
    let mut bytes = fs_err::read(path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x10;
    fs_err::write(path, &bytes).unwrap();
}

/// Reseal the manifest of `set` with its dump's checksum as the file is now, as someone holding the
/// key could: only reading the dump can tell it is damaged.
fn reseal_database(env: &Env, set: &str) {
    let dir = env.set_dir(set);
    let mut manifest = rail_core::backup::Manifest::read(&dir, set, true).unwrap();
    let component = manifest
        .components
        .iter_mut()
        .find(|c| c.name == rail_core::backup::ComponentKind::Database)
        .unwrap();
    let digest = rail_core::archive::hash_file(&dir.join(&component.file)).unwrap();
    component.size = digest.size;
    component.sha256 = digest.sha256;
    fs_err::remove_file(dir.join("manifest.json")).unwrap();
    manifest.write_signed(&dir, &crate::support::stack_keys()).unwrap();
}

#[test]
fn an_in_place_restore_that_fails_half_way_commits_nothing() {
    // pg_dump's own compression: pg_restore finds the damage only when it reaches it, after the
    // large object (which it used to wrap in a COMMIT of its own) and part of the data.
    let env = &Env::with(&Settings { backup: "compression = \"gzip\"", sections: "" });
    env.backup("bad");
    flip_middle_bit(&env.set_dir("bad").join("database.dump"));
    reseal_database(env, "bad");
    env.mutate();
    let mutated = env.db_state();
    let out = env.rollback(&["rollback", "bad", "--yes", "--strategy", "in-place"]);
    assert!(!out.success(), "{}", out.describe());
    assert!(out.stderr.contains("pg_restore"), "{}", out.describe());
    assert_eq!(env.db_state(), mutated, "a failed in-place restore commits nothing");
}

#[test]
fn gzip_sets_of_before_still_verify_and_restore() {
    // Written with gzip, as sets were before zstd became the default…
    let env = Env::with(&Settings { backup: "compression = \"gzip\"", sections: "" });
    env.backup("old");
    assert_eq!(
        components(&env, "old"),
        names(&[
            ("database.dump", "pg_dump-custom"),
            ("static.tar.gz", "tar+gzip"),
            ("media.tar.gz", "tar+gzip"),
        ])
    );
    // pg_dump's own format (`PGDMP`), compressed by pg_dump itself.
    assert_eq!(&fs_err::read(env.set_dir("old").join("database.dump")).unwrap()[..5], b"PGDMP");
    let (db_before, files_before) = (env.db_state(), env.files_state());

    // …then read by the default configuration.
    let text = fs_err::read_to_string(&env.config).unwrap().replace("compression = \"gzip\"", "");
    fs_err::write(&env.config, text).unwrap();
    for level in ["checksums", "structure", "restore-test"] {
        env.rollback(&["verify", "old", "--level", level]).assert_success();
    }
    env.mutate();
    let out = env.rollback(&["rollback", "old", "--yes"]);
    out.assert_success();
    let db_after = env.db_state();
    assert_eq!(db_after.schema, db_before.schema);
    assert_eq!(db_after.tables, db_before.tables);
    assert_eq!(env.files_state(), files_before);

    // In place too, from the gzip dump (after a mutation, through the pre-rollback safety copy).
    env.mutate();
    let out = env.rollback(&["rollback", "old", "--yes", "--strategy", "in-place"]);
    out.assert_success();
    assert_eq!(env.db_state().tables, db_before.tables);
}
