//! Off-site sets: push, pull, verify and restore through a real S3-compatible server (moto), with the
//! faults a remote brings: a stalled server, a killed download, tampered objects, two writers.

#![allow(clippy::case_sensitive_file_extension_comparisons)] // object keys, not files

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use fs_err as fs;
use rail_testkit::{Output, ThrowawayS3, ACCESS_KEY_ID, SECRET_ACCESS_KEY};

use crate::support::{stack_keys, Env};

const BUCKET: &str = "rail-backups";
const PREFIX: &str = "site/prod";

/// Point `env`'s configuration at `s3`, encrypted to a new age identity (or a passphrase variable),
/// and return the identity file's path.
fn use_remote(env: &Env, s3: &ThrowawayS3, extra: &str) -> std::path::PathBuf {
    let identity = env.dir.join("keys/backup.age");
    let mut text = fs::read_to_string(&env.config).unwrap();
    let _ = write!(
        text,
        "\n[backup.remote]\nurl = \"s3://{BUCKET}/{PREFIX}\"\nendpoint = \"{}\"\n\
         access_key_id = \"{ACCESS_KEY_ID}\"\nsecret_access_key = \"{SECRET_ACCESS_KEY}\"\n\
         part_size = \"5MiB\"\n{extra}\n",
        s3.endpoint()
    );
    if !extra.contains("passphrase_env") {
        let _ = writeln!(text, "identity_file = \"{}\"", identity.display());
        if !identity.exists() {
            fs::write(&env.config, &text).unwrap();
            env.rollback(&["keygen", "--age"]).assert_success();
        }
    }
    fs::write(&env.config, text).unwrap();
    identity
}

fn json_of(out: &Output) -> serde_json::Value {
    out.assert_success();
    out.json()
}

fn remote_status(env: &Env, name: &str) -> Option<String> {
    let list = json_of(&env.rollback(&["list", "--remote", "--format", "json"]));
    list["sets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .map(|s| s["status"].as_str().unwrap().to_owned())
}

fn key(name: &str, file: &str) -> String {
    format!("{PREFIX}/{name}/{file}")
}

/// Every file under `dir`, as text (lossy), for a search for secrets.
fn all_text(dir: &Path) -> String {
    let mut out = String::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = fs::read(&path) {
                out.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
    }
    out
}

fn assert_no_secret(what: &str, text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!text.contains(secret), "{what} shows a secret ({}…)", &secret[..6]);
    }
}

#[test]
fn a_set_round_trips_through_the_remote_onto_an_empty_host() {
    let s3 = ThrowawayS3::start(BUCKET);
    let env = Env::new();
    let identity = use_remote(&env, &s3, "");
    env.backup("b1");
    let (db_before, files_before) = (env.db_state(), env.files_state());
    let pushed = env.rollback(&["push", "b1", "-vv", "--format", "json"]);
    let report = json_of(&pushed);
    assert_eq!(report["push"]["outcome"], "uploaded", "{}", pushed.describe());
    assert!(report["push"]["encryption"].as_str().unwrap().starts_with("age"));

    // Every data object is an age file; the manifest is the local one, readable and authenticated.
    let keys = s3.keys(BUCKET, &format!("{PREFIX}/b1/"));
    let manifest = fs::read(env.set_dir("b1").join("manifest.json")).unwrap();
    assert_eq!(s3.get_object(BUCKET, &key("b1", "manifest.json")).unwrap(), manifest);
    let data: Vec<_> =
        keys.iter().filter(|k| !k.ends_with("manifest.json") && !k.ends_with(".claim")).collect();
    assert_eq!(data.len(), 3, "{keys:?}");
    for k in &data {
        assert!(k.ends_with(".age"), "{k}");
        let object = s3.get_object(BUCKET, k).unwrap();
        assert!(object.starts_with(b"age-encryption.org/v1\n"), "{k} is not an age file");
    }
    assert_eq!(remote_status(&env, "b1").as_deref(), Some("complete"));
    // Pushing again is a no-op.
    let again = json_of(&env.rollback(&["push", "b1", "--format", "json"]));
    assert_eq!(again["push"]["outcome"], "already-remote");

    // The host loses everything: the backup directory and the data.
    env.mutate();
    env.db.execute("DROP TABLE events CASCADE; DROP SCHEMA reporting CASCADE;");
    fs::remove_dir_all(env.backups()).unwrap();
    let restored = env.rollback(&["rollback", "--previous", "--remote", "--yes", "-vv"]);
    restored.assert_success();
    assert!(restored.stderr.contains("downloaded `b1`"), "{}", restored.describe());
    let db_after = env.db_state();
    assert_eq!(db_after.schema, db_before.schema, "schema after the restore from the remote");
    assert_eq!(db_after.tables, db_before.tables, "tables after the restore from the remote");
    assert_eq!(env.files_state(), files_before, "static and media after the restore");

    // No secret in any output, journal, manifest or object.
    let identity_text = fs::read_to_string(&identity).unwrap();
    let age_secret = identity_text.lines().find(|l| l.starts_with("AGE-SECRET-KEY-")).unwrap();
    let secrets = [ACCESS_KEY_ID, SECRET_ACCESS_KEY, age_secret];
    for out in [&pushed, &restored] {
        assert_no_secret("output", &format!("{}{}", out.stdout, out.stderr), &secrets);
    }
    assert_no_secret("the backup directory", &all_text(&env.backups()), &secrets);
    let objects: String = s3
        .keys(BUCKET, "")
        .iter()
        .map(|k| String::from_utf8_lossy(&s3.get_object(BUCKET, k).unwrap()).into_owned())
        .collect();
    assert_no_secret("the bucket", &objects, &secrets);
}

#[test]
fn a_passphrase_encrypts_and_never_shows() {
    const PASSPHRASE: &str = "correct horse battery staple 4471";
    let s3 = ThrowawayS3::start(BUCKET);
    let env = Env::new();
    use_remote(&env, &s3, "passphrase_env = \"RAIL_TEST_BACKUP_PASSPHRASE\"");
    env.backup("b1");
    let vars = [("RAIL_TEST_BACKUP_PASSPHRASE", PASSPHRASE)];
    let pushed = env.rollback_with(&["push", "b1", "-vv"], &vars);
    pushed.assert_success();
    let verified = env.rollback_with(&["verify", "b1", "--remote", "-vv"], &vars);
    verified.assert_success();
    assert!(verified.stdout.contains("OK"), "{}", verified.describe());
    // Without the passphrase nothing is decrypted, and the error names the variable.
    let without = env.rollback(&["verify", "b1", "--remote"]);
    without.assert_code(2);
    assert!(without.stderr.contains("RAIL_TEST_BACKUP_PASSPHRASE"), "{}", without.describe());
    // With a wrong one every file fails, by name.
    let wrong = env
        .rollback_with(&["verify", "b1", "--remote"], &[("RAIL_TEST_BACKUP_PASSPHRASE", "not it")]);
    wrong.assert_code(3);
    assert!(wrong.stderr.contains("b1/database.dump"), "{}", wrong.describe());
    for out in [&pushed, &verified, &without, &wrong] {
        assert_no_secret("output", &format!("{}{}", out.stdout, out.stderr), &[PASSPHRASE]);
    }
    assert_no_secret("the backup directory", &all_text(&env.backups()), &[PASSPHRASE]);
}

#[test]
fn tampered_remote_sets_are_refused_naming_what_is_wrong() {
    let s3 = ThrowawayS3::start(BUCKET);
    let env = Env::new();
    use_remote(&env, &s3, "");
    env.backup("b1");
    fs::write(env.static_dir().join("css/extra.css"), "p { color: red }\n").unwrap();
    env.backup("b2");
    env.rollback(&["push", "b1"]).assert_success();
    env.rollback(&["push", "b2"]).assert_success();
    env.rollback(&["verify", "b1", "--remote"]).assert_success();
    let static_key = key("b1", &format!("{}.age", static_file(&env, "b1")));
    let original = s3.get_object(BUCKET, &static_key).unwrap();

    // A flipped byte.
    let mut flipped = original.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x10;
    s3.put_object(BUCKET, &static_key, &flipped);
    let out = env.rollback(&["verify", "b1", "--remote"]);
    out.assert_code(3);
    assert!(out.stderr.contains(&format!("b1/{}", static_file(&env, "b1"))), "{}", out.describe());

    // A valid encrypted file of another set.
    let other =
        s3.get_object(BUCKET, &key("b2", &format!("{}.age", static_file(&env, "b2")))).unwrap();
    s3.put_object(BUCKET, &static_key, &other);
    let out = env.rollback(&["verify", "b1", "--remote"]);
    out.assert_code(3);
    assert!(out.stderr.contains("does not match the manifest"), "{}", out.describe());
    assert!(out.stderr.contains(&format!("b1/{}", static_file(&env, "b1"))), "{}", out.describe());
    s3.put_object(BUCKET, &static_key, &original);
    env.rollback(&["verify", "b1", "--remote"]).assert_success();

    // A manifest re-signed with another key: refused before anything else is downloaded, and neither
    // pulled nor restored.
    let other_key_file = env.dir.join("keys/other.key");
    rail_core::backup::auth::generate_key_file(&other_key_file, false).unwrap();
    let other_keys = rail_core::backup::Keyring::single(
        rail_core::backup::auth::BackupKey::read_file(&other_key_file).unwrap(),
    );
    let manifest_key = key("b1", "manifest.json");
    let text = s3.get_object(BUCKET, &manifest_key).unwrap();
    let mut manifest = rail_core::backup::Manifest::parse(&text, "b1", true).unwrap();
    manifest.app_version = Some("planted".into());
    let scratch = env.dir.join("forged");
    fs::create_dir_all(&scratch).unwrap();
    manifest.write_signed(&scratch, &other_keys).unwrap();
    s3.put_object(BUCKET, &manifest_key, &fs::read(scratch.join("manifest.json")).unwrap());
    assert_eq!(remote_status(&env, "b1").as_deref(), Some("unauthenticated"));
    let out = env.rollback(&["verify", "b1", "--remote"]);
    out.assert_code(3);
    assert!(out.stderr.contains("cannot be trusted"), "{}", out.describe());
    fs::remove_dir_all(env.set_dir("b1")).unwrap();
    let before = env.db_state();
    env.mutate();
    let mutated = env.db_state();
    let out = env.rollback(&["rollback", "b1", "--yes"]);
    out.assert_code(3);
    assert!(out.stderr.contains("cannot be trusted"), "{}", out.describe());
    assert!(!env.set_dir("b1").exists(), "nothing of a forged set is kept");
    assert_eq!(env.db_state(), mutated, "a refused set changes nothing");
    assert_ne!(before, mutated);
    // The stack's own key still signs what rail wrote.
    let _ = stack_keys();
}

/// The static archive's file name in set `name` (it depends on backup.compression).
fn static_file(env: &Env, name: &str) -> String {
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(env.set_dir(name).join("manifest.json")).unwrap())
            .unwrap();
    manifest["components"].as_array().unwrap().iter().find(|c| c["name"] == "static").unwrap()
        ["file"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn an_upload_cut_by_a_stalled_server_is_not_complete_and_a_new_upload_succeeds() {
    let s3 = ThrowawayS3::start(BUCKET);
    let env = Env::new();
    use_remote(&env, &s3, "request_timeout = \"2s\"\nretries = 0\nconcurrency = 2");
    env.make_media_slow(64);
    env.backup("b1");
    let mut push = env.spawn(&["push", "b1"]);
    let started = Env::wait_for(|| s3.open_multipart_uploads(BUCKET) > 0, Duration::from_secs(120));
    assert!(started, "the upload never began a multipart upload");
    s3.pause();
    let out = {
        let push_cell = std::cell::RefCell::new(&mut push);
        let finished =
            Env::wait_for(|| push_cell.borrow_mut().finished(), Duration::from_secs(120));
        s3.resume();
        assert!(finished, "the push did not give up on a stalled server");
        push.wait()
    };
    assert!(!out.success(), "{}", out.describe());
    assert!(out.stderr.contains("b1/media"), "the error names the object: {}", out.describe());
    assert_eq!(remote_status(&env, "b1").as_deref(), Some("incomplete"));
    // The same set is uploaded again, whole.
    let again = env.rollback(&["push", "b1"]);
    again.assert_success();
    assert_eq!(remote_status(&env, "b1").as_deref(), Some("complete"));
    env.rollback(&["verify", "b1", "--remote"]).assert_success();
}

#[test]
fn a_download_killed_midway_resumes_and_nothing_is_restored_from_it() {
    let s3 = ThrowawayS3::start(BUCKET);
    let env = Env::new();
    use_remote(&env, &s3, "");
    env.make_media_slow(64);
    env.backup("b1");
    let (db_before, files_before) = (env.db_state(), env.files_state());
    env.rollback(&["push", "b1"]).assert_success();
    fs::remove_dir_all(env.set_dir("b1")).unwrap();

    let partial = env.backups().join(".partial-b1");
    let mut pull = env.spawn(&["pull", "b1"]);
    let midway = Env::wait_for(
        || {
            let names: Vec<String> = fs::read_dir(&partial)
                .map(|d| {
                    d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()
                })
                .unwrap_or_default();
            names.iter().any(|n| n.starts_with("media") && n.ends_with(".part"))
        },
        Duration::from_secs(120),
    );
    assert!(midway, "the pull never reached the media archive");
    pull.kill();
    let _ = pull.wait();

    // Half a download is not a set: listed as incomplete, refused by a restore.
    let list = json_of(&env.rollback(&["list", "--format", "json"]));
    assert_eq!(list[0]["status"], "incomplete", "{list}");
    env.mutate();
    let mutated = env.db_state();
    let refused = env.rollback(&["rollback", "b1", "--yes"]);
    refused.assert_code(3);
    assert!(refused.stderr.contains("incomplete"), "{}", refused.describe());
    assert_eq!(env.db_state(), mutated);

    // The next pull keeps the files already checked and fetches the rest.
    let pulled = json_of(&env.rollback(&["pull", "b1", "--format", "json"]));
    assert!(pulled["resumed_files"].as_u64().unwrap() >= 1, "{pulled}");
    assert_eq!(pulled["outcome"], "downloaded");
    env.rollback(&["rollback", "b1", "--yes"]).assert_success();
    assert_eq!(env.db_state(), db_before);
    assert_eq!(env.files_state(), files_before);
}

#[test]
fn two_hosts_uploading_one_set_name_at_once_exactly_one_wins() {
    let s3 = ThrowawayS3::start(BUCKET);
    let (a, b) = (Env::new(), Env::new());
    use_remote(&a, &s3, "");
    // Host b encrypts to host a's identity: one team, one key.
    let identity = a.dir.join("keys/backup.age");
    let mut text = fs::read_to_string(&a.config).unwrap();
    text = text.replace(&a.dir.path().display().to_string(), &b.dir.path().display().to_string());
    text = text.replace(a.db.url(), b.db.url());
    text = text.replace(
        &format!("identity_file = \"{}\"", b.dir.join("keys/backup.age").display()),
        &format!("identity_file = \"{}\"", identity.display()),
    );
    fs::write(&b.config, text).unwrap();
    a.make_media_slow(16);
    b.make_media_slow(16);
    a.backup("nightly");
    b.backup("nightly");
    let (pa, pb) = (a.spawn(&["push", "nightly"]), b.spawn(&["push", "nightly"]));
    let (oa, ob) = (pa.wait(), pb.wait());
    let winners = [&oa, &ob].iter().filter(|o| o.success()).count();
    assert_eq!(winners, 1, "exactly one host wins\n{}\n{}", oa.describe(), ob.describe());
    let loser = if oa.success() { &ob } else { &oa };
    loser.assert_code(3);
    assert!(
        loser.stderr.contains("another host") || loser.stderr.contains("different set"),
        "the loser is told why: {}",
        loser.describe()
    );
    // The set in the bucket is the winner's, whole.
    let winner = if oa.success() { &a } else { &b };
    assert_eq!(remote_status(winner, "nightly").as_deref(), Some("complete"));
    winner.rollback(&["verify", "nightly", "--remote"]).assert_success();
    let manifest = s3.get_object(BUCKET, &key("nightly", "manifest.json")).unwrap();
    assert_eq!(manifest, fs::read(winner.set_dir("nightly").join("manifest.json")).unwrap());
}

#[test]
fn healthcheck_backups_watches_the_age_of_the_newest_remote_set() {
    let s3 = ThrowawayS3::start(BUCKET);
    let env = Env::new();
    use_remote(&env, &s3, "max_age = \"26h\"");
    let health = |vars: &[(&str, &str)]| {
        let mut c = rail_testkit::cmd(rail_testkit::bin("healthcheck"));
        c.arg("--config").arg(&env.config).args(["--check", "backups", "--format", "json"]);
        for (k, v) in vars {
            c.env(k, v);
        }
        let out = c.run();
        let report = out.json();
        (out, report["checks"][0].clone())
    };
    let (out, check) = health(&[]);
    out.assert_code(1);
    assert_eq!(check["status"], "critical", "{check}");
    assert!(check["message"].as_str().unwrap().contains("no complete"), "{check}");

    // A set taken 30 hours ago (its manifest re-signed with the stack's key, as rail would have).
    env.backup("old");
    let dir = env.set_dir("old");
    let mut manifest = rail_core::backup::Manifest::read(&dir, "old", true).unwrap();
    manifest.created_at = chrono::Utc::now() - chrono::TimeDelta::hours(30);
    fs::remove_file(dir.join("manifest.json")).unwrap();
    manifest.write_signed(&dir, &stack_keys()).unwrap();
    env.rollback(&["push", "old"]).assert_success();
    let (out, check) = health(&[]);
    out.assert_success();
    assert_eq!(check["status"], "warning", "{check}");
    assert_eq!(check["details"]["newest"], "old");
    let (out, check) = health(&[("RAIL_BACKUP__REMOTE__MAX_AGE", "10h")]);
    out.assert_code(1);
    assert_eq!(check["status"], "critical", "{check}");
    assert!(check["message"].as_str().unwrap().contains("stopped"), "{check}");

    env.backup("fresh");
    env.rollback(&["push", "fresh"]).assert_success();
    let (out, check) = health(&[]);
    out.assert_success();
    assert_eq!(check["status"], "healthy", "{check}");
    assert_eq!(check["details"]["newest"], "fresh");
    assert_eq!(check["details"]["sets"], 2);
}

#[test]
fn remote_retention_is_its_own_and_credentials_come_from_the_aws_variables() {
    let s3 = ThrowawayS3::start(BUCKET);
    let env = Env::new();
    use_remote(&env, &s3, "keep_last = 2");
    // The keys come from the standard variables, not the file.
    let text = fs::read_to_string(&env.config).unwrap();
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("access_key_id") && !l.starts_with("secret_access_key"))
        .fold(String::new(), |mut out, l| {
            let _ = writeln!(out, "{l}");
            out
        });
    fs::write(&env.config, text).unwrap();
    let aws = [("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID), ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)];
    for name in ["s1", "s2", "s3"] {
        env.backup(name);
        let pushed = env.rollback_with(&["push", name, "-vv"], &aws);
        pushed.assert_success();
        assert_no_secret(
            "output",
            &format!("{}{}", pushed.stdout, pushed.stderr),
            &[ACCESS_KEY_ID, SECRET_ACCESS_KEY],
        );
    }
    let list = json_of(&env.rollback_with(&["list", "--remote", "--format", "json"], &aws));
    let names: Vec<&str> =
        list["sets"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["s3", "s2"], "remote keep_last = 2");
    assert!(s3.keys(BUCKET, &format!("{PREFIX}/s1/")).is_empty(), "every object of s1 is gone");
    // Locally, backup.keep_last (10) keeps all three.
    let local = json_of(&env.rollback(&["list", "--format", "json"]));
    assert_eq!(local.as_array().unwrap().len(), 3);
    // Without any credentials the remote says so, naming no secret.
    let denied = env.rollback(&["list", "--remote"]);
    denied.assert_code(2);
    assert!(denied.stderr.contains("no credentials"), "{}", denied.describe());
}
