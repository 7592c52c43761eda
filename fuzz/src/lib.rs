//! What each fuzz target does with its input: the bytes become a file where the tools would read one,
//! and the parser's entry point reads it. A parser may refuse anything; it must not panic, hang or,
//! for tar extraction, write outside its directory.

use std::collections::BTreeMap;
use std::path::Path;

use rail_core::config::{load, LoadOptions};

/// The configuration loader on a file named `name` (its extension picks TOML or the seed's JSON).
pub fn config_file(data: &[u8], name: &str) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join(name);
    std::fs::write(&path, data).expect("writing the input");
    let opts = LoadOptions {
        config_file: Some(path),
        config_dir: Some(dir.path().to_owned()),
        dotenv_dir: Some(dir.path().to_owned()),
        env: Some(BTreeMap::from([("HOME".to_owned(), "/nonexistent".to_owned())])),
        ..LoadOptions::default()
    };
    let _ = load(&opts);
}

/// The dotenv layer: the input as `.env`, no configuration file.
pub fn dotenv(data: &[u8]) {
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::write(dir.path().join(".env"), data).expect("writing the input");
    let opts = LoadOptions {
        config_dir: Some(dir.path().to_owned()),
        dotenv_dir: Some(dir.path().to_owned()),
        env: Some(BTreeMap::new()),
        ..LoadOptions::default()
    };
    let _ = load(&opts);
}

/// The manifest parser, sealed and not, and the authentication of what it accepts.
pub fn manifest(data: &[u8]) {
    use rail_core::backup::auth::{BackupKey, Keyring};
    use rail_core::backup::Manifest;
    let keys = Keyring::single(
        BackupKey::parse(&format!("rail-backup-key-v1:{}", "5a".repeat(32)), "fuzz").expect("a key"),
    );
    for check_seal in [true, false] {
        if let Ok(manifest) = Manifest::parse(data, "fuzz_set", check_seal) {
            let _ = manifest.compute_seal();
            let _ = keys.verify(&manifest);
        }
    }
}

/// The run journal reader and the audit log's reader and chain check.
pub fn journal(data: &[u8]) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let journal_dir = dir.path().join("journal");
    std::fs::create_dir(&journal_dir).expect("a journal dir");
    let run = journal_dir.join("20260101T000000Z-abcdef.jsonl");
    std::fs::write(&run, data).expect("writing the input");
    let _ = rail_core::journal::read(&run);
    let _ = rail_core::journal::find_unfinished(&journal_dir);
    let audit = rail_core::journal::audit::path(&journal_dir);
    std::fs::write(&audit, data).expect("writing the input");
    let _ = rail_core::journal::audit::read(&audit, 5);
    let _ = rail_core::journal::audit::verify(&audit, None);
}

/// Check and extract the input as an archive into a scratch directory, then assert that nothing was
/// written outside it and that no link inside it leads outside.
pub fn tar_extract(data: &[u8]) {
    use std::sync::atomic::AtomicBool;
    use rail_core::archive::{check_tar, extract_tar, ExtractOptions, Limits};
    let dir = tempfile::tempdir().expect("a temp dir");
    let archive = dir.path().join("input.tar");
    std::fs::write(&archive, data).expect("writing the input");
    let _ = check_tar(&archive);
    let out = dir.path().join("out");
    let cancel = AtomicBool::new(false);
    let opts = ExtractOptions {
        preserve_owner: false,
        cancel: &cancel,
        progress: &|_| {},
        limits: Limits { entries: Some(10_000), content_bytes: Some(64 * 1024 * 1024), min_free: 0 },
    };
    let _ = extract_tar(&archive, &out, &opts);
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("the scratch dir")
        .map(|e| e.expect("an entry").file_name())
        .collect();
    names.sort();
    assert!(names.iter().all(|n| n == "input.tar" || n == "out"), "written outside: {names:?}");
    if out.is_dir() {
        let root = out.canonicalize().expect("the output dir");
        walk(&out, &root);
    }
}

fn walk(dir: &Path, root: &Path) {
    for entry in std::fs::read_dir(dir).expect("a directory").flatten() {
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).expect("metadata");
        if meta.file_type().is_symlink() {
            // A link to something that exists must resolve inside the tree; a dangling one is harmless.
            if let Ok(real) = path.canonicalize() {
                assert!(real.starts_with(root), "{} leads to {}", path.display(), real.display());
            }
        } else if meta.is_dir() {
            walk(&path, root);
        }
    }
}

/// schemaver's SDL reader and validation (JSON-looking input goes to the introspection reader, as
/// for a file).
pub fn sdl(data: &[u8]) {
    let _ = rail_schemaver::schema::load(data, "fuzz.graphql");
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = rail_schemaver::schema::validate_sdl(text, "fuzz.graphql");
    }
}

/// schemaver's introspection JSON reader, and the SDL printed from what it accepts.
pub fn introspection(data: &[u8]) {
    if let Ok(converted) = rail_schemaver::schema::introspection::from_json(data) {
        let _ = rail_schemaver::schema::print::print_schema(&converted.schema);
    }
}

/// schemaver's finders of GraphQL documents in JavaScript/TypeScript, Python and persisted-query
/// maps: whatever the input, they end, and every document they find starts on a line of the source.
pub fn operations(data: &[u8]) {
    use rail_schemaver::operations::extract;
    let Ok(text) = std::str::from_utf8(data) else { return };
    let lines = text.split('\n').count();
    let check = |docs: &[extract::Embedded]| {
        for doc in docs {
            assert!((1..=lines).contains(&doc.line), "line {} of {lines}", doc.line);
            assert!(doc.text.len() <= text.len(), "a document larger than its source");
        }
    };
    if let Ok(docs) = extract::javascript(text) {
        check(&docs);
    }
    check(&extract::python(text));
    if let Ok(entries) = extract::persisted_map(text) {
        for entry in entries {
            assert!((1..=lines).contains(&entry.line));
        }
    }
}
