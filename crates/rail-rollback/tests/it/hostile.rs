//! Hostile archives and names are refused without writing outside their place.

use std::io::Write;

use rail_core::backup::{ComponentKind, Manifest, MANIFEST_FILE};

use std::path::Path;

use rail_testkit::{cmd, Stack};

use crate::support::Env;

/// A gzip-compressed tar with one raw entry, so names `tar::Builder` refuses can be written.
fn evil_tar(name: &[u8], kind: tar::EntryType, link: &[u8], data: &[u8]) -> Vec<u8> {
    let mut header = tar::Header::new_old();
    header.as_old_mut().name[..name.len()].copy_from_slice(name);
    header.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    header.set_entry_type(kind);
    header.set_mode(0o644);
    header.set_size(data.len() as u64);
    header.set_cksum();
    let mut raw = header.as_bytes().to_vec();
    raw.extend_from_slice(data);
    raw.resize(raw.len().div_ceil(512) * 512 + 1024, 0);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    gz.finish().unwrap()
}

/// Replace the static archive of `set` with a gzip one and reseal its manifest, so that only the
/// archive's content can give it away.
fn plant(env: &Env, set: &str, archive: &[u8]) {
    let dir = env.set_dir(set);
    let mut manifest = Manifest::read(&dir, set, true).unwrap();
    let component =
        manifest.components.iter_mut().find(|c| c.name == ComponentKind::Static).unwrap();
    fs_err::remove_file(dir.join(&component.file)).unwrap();
    fs_err::write(dir.join("static.tar.gz"), archive).unwrap();
    let digest = rail_core::archive::hash_file(&dir.join("static.tar.gz")).unwrap();
    "static.tar.gz".clone_into(&mut component.file);
    rail_core::backup::format::TAR_GZIP.clone_into(&mut component.format);
    component.size = digest.size;
    component.sha256 = digest.sha256;
    component.entries = Some(1);
    fs_err::remove_file(dir.join(MANIFEST_FILE)).unwrap();
    manifest.write_signed(&dir, &crate::support::stack_keys()).unwrap();
}

#[test]
fn archives_with_traversal_or_escaping_links_are_refused() {
    use tar::EntryType::{Regular, Symlink};
    let env = Env::new();
    env.backup("b1");
    let cases: [(&str, &[u8], tar::EntryType, &[u8]); 3] = [
        ("dotdot", b"../x", Regular, b""),
        ("absolute", b"/etc/x", Regular, b""),
        ("root-link", b"root", Symlink, b"/"),
    ];
    for (name, path, kind, link) in cases {
        crate::corruption::copy_set(&env, "b1", name);
        plant(&env, name, &evil_tar(path, kind, link, b"pwned"));
        let app_before: Vec<_> = fs_err::read_dir(env.dir.join("app"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        let static_before = crate::support::tree(&env.static_dir());

        let out = env.rollback(&["verify", name, "--level", "structure"]);
        out.assert_code(3);
        assert!(out.stdout.contains("FAILED  static"), "{name}: {}", out.describe());
        assert!(out.stdout.contains("unsafe entry"), "{name}: {}", out.describe());

        // Even when verification is skipped, extraction refuses, and nothing changes.
        let out = env.rollback(&["rollback", name, "--yes", "--emergency"]);
        out.assert_code(1);
        assert!(out.stderr.contains("unsafe entry"), "{name}: {}", out.describe());
        assert!(!env.dir.join("x").exists() && !env.dir.join("app/x").exists());
        assert!(!std::path::Path::new("/etc/x").exists());
        let app_after: Vec<_> = fs_err::read_dir(env.dir.join("app"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(app_after, app_before, "{name}: nothing is left beside the live directories");
        assert_eq!(crate::support::tree(&env.static_dir()), static_before, "{name}");
    }
}

#[test]
fn hostile_backup_names_are_refused() {
    let env = Env::new();
    for name in ["../../etc", "a/b", "", "..", ".partial-x", "x y"] {
        for args in
            [vec!["rollback", name, "--yes"], vec!["verify", name], vec!["backup", "--name", name]]
        {
            let out = env.rollback(&args);
            out.assert_code(2);
            assert!(out.stderr.contains("invalid backup name"), "{args:?}: {}", out.describe());
        }
    }
    // A name that reads as options to whatever program is handed it.
    for args in [
        vec!["backup", "--name=-rf"],
        vec!["verify", "--", "-rf"],
        vec!["rollback", "--yes", "--", "-rf"],
    ] {
        let out = env.rollback(&args);
        out.assert_code(2);
        assert!(
            out.stderr.contains("must start with a letter or a digit"),
            "{args:?}: {}",
            out.describe()
        );
    }
    assert!(!env.dir.join("etc").exists());
    assert!(
        !env.backups().exists()
            || fs_err::read_dir(env.backups())
                .unwrap()
                .all(|e| e.unwrap().file_name() == "journal")
    );
}

/// A set whose dump was replaced with one of another database that runs programs on the server (an
/// event trigger, and a function doing `COPY … TO PROGRAM` called from an expression index), its
/// manifest resealed the way anyone who can write the backup directory can.
fn plant_hostile_dump(env: &Env, set: &str, marker: &Path) {
    let evil = format!(
        "CREATE FUNCTION run_program() RETURNS int LANGUAGE plpgsql VOLATILE AS $f$
         BEGIN COPY (SELECT 1) TO PROGRAM 'cat > {marker}'; RETURN 1; END $f$;
         CREATE FUNCTION evil(x int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $f$
         BEGIN PERFORM run_program(); RETURN x; END $f$;
         CREATE TABLE planted (x int);
         INSERT INTO planted VALUES (1);
         CREATE INDEX planted_evil ON planted (evil(x));
         CREATE FUNCTION boom() RETURNS event_trigger LANGUAGE plpgsql AS $f$
         BEGIN COPY (SELECT 1) TO PROGRAM 'cat > {marker}'; END $f$;
         CREATE EVENT TRIGGER boom ON ddl_command_start EXECUTE FUNCTION boom();",
        marker = marker.display()
    );
    env.db.admin_execute(&evil);
    // The planted code does run when PostgreSQL executes it: its absence later means it never ran.
    // (`cat` reads what COPY writes; a program that exits at once would make COPY fail now and then.)
    assert!(marker.exists(), "the planted index did not run its program at creation");
    // Written as rail writes its dumps (custom format through zstd), where the manifest says.
    let dump = Stack::get().pg_bin("pg_dump");
    let dir = env.set_dir(set);
    let file = Manifest::read(&dir, set, true)
        .unwrap()
        .component(ComponentKind::Database)
        .unwrap()
        .file
        .clone();
    assert_eq!(file, "database.dump.zst");
    let raw = env.dir.join("planted.dump");
    let out = cmd(dump)
        .args(["--format=custom", "--compress=0", "--file"])
        .arg(&raw)
        .arg("--dbname")
        .arg(Stack::get().admin_url_for(env.db.name()))
        .run();
    out.assert_success();
    let mut encoder =
        rail_core::archive::zstd_encoder(fs_err::File::create(dir.join(&file)).unwrap()).unwrap();
    encoder.write_all(&fs_err::read(&raw).unwrap()).unwrap();
    encoder.finish().unwrap();
    // The live database is the app's again; the planted objects live only in the dump.
    env.db.admin_execute(
        "DROP EVENT TRIGGER boom; DROP FUNCTION boom(); DROP TABLE planted; DROP FUNCTION evil(int);
         DROP FUNCTION run_program();",
    );
    fs_err::remove_file(marker).unwrap();
    let mut manifest = Manifest::read(&dir, set, true).unwrap();
    let component =
        manifest.components.iter_mut().find(|c| c.name == ComponentKind::Database).unwrap();
    let digest = rail_core::archive::hash_file(&dir.join(&file)).unwrap();
    component.size = digest.size;
    component.sha256 = digest.sha256;
    fs_err::remove_file(dir.join(MANIFEST_FILE)).unwrap();
    manifest.write_unsigned(&dir).unwrap();
}

#[test]
fn a_planted_dump_never_runs_and_unauthenticated_sets_are_refused() {
    let env = Env::new();
    env.backup("b1");
    // Somewhere the server's own user can write.
    let marker = std::env::temp_dir().join(format!("rail-planted-{}", std::process::id()));
    plant_hostile_dump(&env, "b1", &marker);
    let before = env.db_state();

    // Resealed without the key: not authenticated, refused at every level and by the restore.
    for level in ["checksums", "structure", "restore-test"] {
        let out = env.rollback(&["verify", "b1", "--level", level]);
        out.assert_code(3);
        assert!(out.stdout.contains("authentication"), "{level}: {}", out.describe());
    }
    let out = env.rollback(&["rollback", "b1", "--yes"]);
    out.assert_code(3);
    assert!(out.stderr.contains("cannot be trusted"), "{}", out.describe());
    let list = env.rollback(&["list", "--format", "json"]).json();
    assert_eq!(list[0]["status"], "unauthenticated", "{list}");

    // Signed with a key rail does not know: refused, naming the key.
    let dir = env.set_dir("b1");
    let other = rail_testkit::TestDir::new();
    let other_key = other.path().join("other.key");
    rail_core::backup::auth::generate_key_file(&other_key, false).unwrap();
    let other_ring = rail_core::backup::Keyring::single(
        rail_core::backup::auth::BackupKey::read_file(&other_key).unwrap(),
    );
    let manifest = Manifest::read(&dir, "b1", true).unwrap();
    fs_err::remove_file(dir.join(MANIFEST_FILE)).unwrap();
    let manifest = manifest.write_signed(&dir, &other_ring).unwrap();
    let out = env.rollback(&["rollback", "b1", "--yes"]);
    out.assert_code(3);
    assert!(out.stderr.contains("not configured"), "{}", out.describe());

    // Even with --emergency, or signed with the real key (a stolen key, an insider), the dump's
    // contents are refused before anything runs.
    let out = env.rollback(&["rollback", "b1", "--yes", "--emergency"]);
    out.assert_code(3);
    assert!(out.stderr.contains("EVENT TRIGGER"), "{}", out.describe());
    fs_err::remove_file(dir.join(MANIFEST_FILE)).unwrap();
    manifest.write_signed(&dir, &crate::support::stack_keys()).unwrap();
    let out = env.rollback(&["verify", "b1", "--level", "restore-test"]);
    out.assert_code(3);
    assert!(out.stdout.contains("FUNCTION"), "{}", out.describe());
    let out = env.rollback(&["rollback", "b1", "--yes"]);
    out.assert_code(3);
    assert!(
        out.stderr.contains("FUNCTION") && out.stderr.contains("EVENT TRIGGER"),
        "{}",
        out.describe()
    );

    assert!(!marker.exists(), "the planted code ran");
    assert_eq!(env.db_state().tables, before.tables, "the live database is untouched");
    assert!(env.leftover_databases().is_empty(), "{:?}", env.leftover_databases());
}

#[test]
fn keys_are_required_to_write_and_rotated_keys_still_verify() {
    let env = Env::new();
    // No key: no set is written.
    let out = env.rollback_with(&["backup", "--name", "nokey"], &[("RAIL_BACKUP_KEY_FILE", "")]);
    out.assert_code(2);
    assert!(out.stderr.contains("rollback keygen"), "{}", out.describe());
    assert!(!env.set_dir("nokey").exists());

    // keygen: 0600, never prints the key, refuses to overwrite.
    let keys = rail_testkit::TestDir::new();
    let old_key = keys.path().join("old.key");
    let out = env.rollback(&["keygen", "--output", old_key.to_str().unwrap()]);
    out.assert_success();
    let text = fs_err::read_to_string(&old_key).unwrap();
    let secret = text.trim().trim_start_matches("rail-backup-key-v1:");
    assert!(!out.stdout.contains(secret) && !out.stderr.contains(secret));
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&fs_err::metadata(&old_key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    env.rollback(&["keygen", "--output", old_key.to_str().unwrap()]).assert_code(2);

    let old = old_key.to_str().unwrap();
    env.rollback_with(&["backup", "--name", "signed-old"], &[("RAIL_BACKUP_KEY_FILE", old)])
        .assert_success();
    // Rotation: a new key signs, the old one still verifies what it signed.
    let new_key = keys.path().join("new.key");
    env.rollback(&["keygen", "--output", new_key.to_str().unwrap()]).assert_success();
    let new = new_key.to_str().unwrap();
    let out = env.rollback_with(&["verify", "signed-old"], &[("RAIL_BACKUP_KEY_FILE", new)]);
    out.assert_code(3);
    let out = env.rollback_with(
        &["verify", "signed-old"],
        &[("RAIL_BACKUP_KEY_FILE", new), ("RAIL_BACKUP__PREVIOUS_KEY_FILES", old)],
    );
    out.assert_success();
}

#[test]
fn a_forged_date_does_not_beat_retention() {
    let env = Env::new();
    env.backup("real-1");
    env.backup("real-2");
    // A copy of a real set, dated 2099 and resealed without the key.
    crate::corruption::copy_set(&env, "real-2", "forged");
    let dir = env.set_dir("forged");
    let mut manifest = Manifest::read(&dir, "forged", true).unwrap();
    manifest.created_at = "2099-01-01T00:00:00Z".parse().unwrap();
    fs_err::remove_file(dir.join(MANIFEST_FILE)).unwrap();
    manifest.clone().write_unsigned(&dir).unwrap();

    let list = env.rollback(&["list", "--format", "json"]).json();
    assert_eq!(list[0]["name"], "forged");
    assert_eq!(list[0]["status"], "unauthenticated");
    // keep_last = 1 keeps the newest real set, and leaves the forged one alone.
    let out = env.rollback_with(&["prune"], &[("RAIL_BACKUP__KEEP_LAST", "1")]);
    out.assert_success();
    assert!(env.set_dir("real-2").exists(), "{}", out.describe());
    assert!(!env.set_dir("real-1").exists(), "{}", out.describe());
    assert!(env.set_dir("forged").exists(), "a set rail cannot vouch for is not removed either");
    // --previous takes the newest authenticated set.
    let out = env.rollback(&["rollback", "--previous", "--yes"]);
    out.assert_success();
    assert!(out.stdout.contains("real-2") || out.stderr.contains("real-2"), "{}", out.describe());

    // Signed, but dated in the future: still refused.
    fs_err::remove_file(dir.join(MANIFEST_FILE)).unwrap();
    manifest.write_signed(&dir, &crate::support::stack_keys()).unwrap();
    let out = env.rollback(&["rollback", "forged", "--yes"]);
    out.assert_code(3);
    assert!(out.stderr.contains("in the future"), "{}", out.describe());
}
