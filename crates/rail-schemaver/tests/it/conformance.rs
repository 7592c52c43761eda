//! Conformance with GraphQL Inspector on public schemas: every change Inspector reports is reported
//! with the same type, path, level and message, and every change schemaver reports beyond those is
//! one that Inspector's `simplifyChanges` rule hid.

use std::collections::{HashMap, HashSet};

use rail_schemaver::diff::{diff, parent_path, Change, ChangeType};
use serde_json::Value;

use crate::{public_schema, schemaver, shared_schemas};

type Key = (String, String, Option<String>, String);

fn key(c: &Value) -> Key {
    let level = match c["level"].as_str().unwrap_or_default() {
        "NON_BREAKING" => "safe".to_owned(),
        other => other.to_lowercase(),
    };
    (
        c["type"].as_str().unwrap_or_default().to_owned(),
        level,
        c["path"].as_str().map(str::to_owned),
        c["message"].as_str().unwrap_or_default().to_owned(),
    )
}

fn change_key(c: &Change) -> Key {
    (c.kind.as_str().to_owned(), c.level.as_str().to_owned(), c.path.clone(), c.message.clone())
}

/// GraphQL Inspector's `simplifyChanges`, written down from its documented behaviour: a change is
/// dropped when its path, or its path's parent, is the path of an earlier change of one of these
/// types.
fn inspector_simplify(changes: &[Change]) -> Vec<&Change> {
    use ChangeType as T;
    let simple = |t: ChangeType| {
        t.is_directive_usage_added()
            || matches!(
                t,
                T::DirectiveAdded
                    | T::DirectiveArgumentAdded
                    | T::DirectiveLocationAdded
                    | T::DirectiveUsageArgumentAdded
                    | T::EnumValueAdded
                    | T::EnumValueDeprecationReasonAdded
                    | T::FieldAdded
                    | T::FieldArgumentAdded
                    | T::FieldDeprecationAdded
                    | T::FieldDeprecationRemoved
                    | T::FieldDeprecationReasonChanged
                    | T::EnumValueDeprecationReasonChanged
                    | T::FieldDeprecationReasonAdded
                    | T::FieldDescriptionAdded
                    | T::InputFieldAdded
                    | T::InputFieldDescriptionAdded
                    | T::ObjectTypeInterfaceAdded
                    | T::TypeAdded
                    | T::TypeDescriptionAdded
                    | T::UnionMemberAdded
            )
    };
    let mut seen: HashSet<&str> = HashSet::new();
    let mut kept = Vec::new();
    for c in changes {
        let Some(path) = c.path.as_deref() else {
            kept.push(c);
            continue;
        };
        let hidden = seen.contains(path) || seen.contains(parent_path(path));
        if simple(c.kind) {
            seen.insert(path);
        }
        if !hidden {
            kept.push(c);
        }
    }
    kept
}

/// One of Inspector's reports: `{old, new, counts, changes:[{type, level, path, message}]}`.
fn check_report(report_name: &str) -> (usize, usize) {
    let report: Value = serde_json::from_str(
        &fs_err::read_to_string(shared_schemas().join("inspector").join(report_name)).unwrap(),
    )
    .unwrap();
    let old = public_schema(report["old"].as_str().unwrap());
    let new = public_schema(report["new"].as_str().unwrap());

    let out = schemaver().arg("compare").arg(&old).arg(&new).args(["--format", "json"]).run();
    assert!(matches!(out.code, Some(0 | 1)), "{}", out.describe());
    let ours: Vec<Key> = out.json()["changes"].as_array().unwrap().iter().map(key).collect();
    let theirs: Vec<Key> = report["changes"].as_array().unwrap().iter().map(key).collect();

    let ours_set: HashSet<&Key> = ours.iter().collect();
    let missing: Vec<&Key> = theirs.iter().filter(|k| !ours_set.contains(k)).collect();
    assert!(
        missing.is_empty(),
        "{report_name}: Inspector reports changes schemaver does not: {missing:#?}"
    );
    assert_eq!(ours_set.len(), ours.len(), "{report_name}: schemaver repeats a change");

    // Every extra change must exist in the full diff and be one Inspector's rule drops.
    let load = |p: &std::path::Path| {
        rail_schemaver::schema::load(&fs_err::read(p).unwrap(), &p.display().to_string())
            .unwrap()
            .model
    };
    let full = diff(&load(&old), &load(&new));
    let kept_by_inspector: HashSet<Key> =
        inspector_simplify(&full).into_iter().map(change_key).collect();
    let full_keys: HashSet<Key> = full.iter().map(change_key).collect();
    let theirs_set: HashSet<&Key> = theirs.iter().collect();
    let theirs_owned: HashSet<Key> = theirs.iter().cloned().collect();
    assert!(
        kept_by_inspector == theirs_owned,
        "{report_name}: Inspector's rule applied to schemaver's full diff should give Inspector's report"
    );
    let extras: Vec<&Key> = ours.iter().filter(|k| !theirs_set.contains(k)).collect();
    for extra in &extras {
        assert!(full_keys.contains(*extra), "{report_name}: {extra:?} is not in the full diff");
        assert!(
            !kept_by_inspector.contains(*extra),
            "{report_name}: {extra:?} is extra but Inspector's rule would keep it"
        );
    }

    let counts = &out.json()["counts"];
    let mut by_level: HashMap<&str, u64> = HashMap::new();
    for k in &ours {
        *by_level.entry(k.1.as_str()).or_default() += 1;
    }
    for level in ["breaking", "dangerous", "safe"] {
        assert_eq!(
            counts[level].as_u64(),
            Some(by_level.get(level).copied().unwrap_or(0)),
            "{level}"
        );
    }
    (theirs.len(), extras.len())
}

#[test]
fn github_one_day_apart_matches_inspector() {
    assert_eq!(check_report("github-1.json"), (1, 0));
}

#[test]
fn saleor_matches_inspector() {
    assert_eq!(check_report("saleor-1.json"), (14, 0));
}

#[test]
fn shopify_introspection_matches_inspector() {
    assert_eq!(check_report("shopify.json"), (174, 0));
}

#[test]
fn github_fifteen_months_matches_inspector_and_shows_what_it_hides() {
    let (theirs, extras) = check_report("github-15mo.json");
    assert_eq!(theirs, 974);
    // Inspector hides, among others, a second interface on `Issue` and two union members: each
    // sits under a path where something else was added first.
    assert_eq!(extras, 15);
    let out = schemaver()
        .arg("compare")
        .arg(public_schema("github_2023-04-07_bbcdd330.graphql"))
        .arg(public_schema("github_2024-07-08_503d8f18.graphql"))
        .args(["--format", "json"])
        .run();
    out.assert_code(1);
    let json = out.json();
    assert!(json["changes"].as_array().unwrap().iter().any(|c| {
        c["type"] == "OBJECT_TYPE_INTERFACE_ADDED"
            && c["path"] == "Issue"
            && c["message"] == "'Issue' object implements 'SubscribableThread' interface"
            && c["level"] == "dangerous"
    }));
    assert_eq!(json["counts"], serde_json::json!({"breaking": 3, "dangerous": 53, "safe": 933}));
}

#[test]
fn every_report_in_the_shared_folder_is_checked() {
    let mut names: Vec<String> = fs_err::read_dir(shared_schemas().join("inspector"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| std::path::Path::new(n).extension().is_some_and(|e| e == "json"))
        .collect();
    names.sort();
    for name in &names {
        check_report(name);
    }
    assert!(names.len() >= 4, "expected Inspector's reports, found {names:?}");
}
