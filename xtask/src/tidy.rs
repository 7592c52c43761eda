//! Repository rules checked as ordinary tests: they fail `cargo xtask test` the moment a rule is broken.

use std::path::{Path, PathBuf};

use fs_err as fs;

use crate::util::project_root;

/// Every package's manifest: `crates/*/Cargo.toml` and xtask's.
fn manifests(root: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(root.join("crates"))
        .unwrap()
        .map(|entry| entry.unwrap().path().join("Cargo.toml"))
        .filter(|path| path.is_file())
        .collect();
    found.push(root.join("xtask").join("Cargo.toml"));
    found.sort();
    found
}

#[test]
fn every_crate_inherits_the_workspace_lints() {
    let root = project_root();
    let manifests = manifests(&root);
    assert!(manifests.len() >= 2, "found no crates under {}", root.display());
    let offenders: Vec<String> = manifests
        .iter()
        .filter(|path| {
            let manifest: toml::Table = toml::from_str(&fs::read_to_string(path).unwrap())
                .unwrap_or_else(|err| panic!("{} does not parse: {err}", path.display()));
            let inherits = manifest
                .get("lints")
                .and_then(|lints| lints.get("workspace"))
                .and_then(toml::Value::as_bool)
                .unwrap_or(false);
            !inherits
        })
        .map(|path| path.strip_prefix(&root).unwrap().display().to_string())
        .collect();
    assert!(offenders.is_empty(), "these manifests lack `[lints] workspace = true`: {offenders:?}");
}

#[test]
fn the_ci_script_runs_exactly_cargo_xtask_ci() {
    let script = fs::read_to_string(project_root().join(".ci").join("run")).unwrap();
    let runs: Vec<&str> =
        script.lines().map(str::trim).filter(|line| line.starts_with("cargo xtask ci")).collect();
    assert_eq!(
        runs,
        ["cargo xtask ci"],
        "the CI script must run the README's test command as it is"
    );
}
