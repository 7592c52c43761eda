//! The subcommands against the directory store.

use rail_testkit::TestDir;
use serde_json::Value;

use crate::{public_schema, run_in, schemaver, small_pair};

fn path(dir: &TestDir, name: &str) -> String {
    dir.join(name).display().to_string()
}

#[test]
fn compare_files_in_every_format_with_exit_codes() {
    let pair = small_pair();
    let (v1, v2) = (path(&pair, "v1.graphql"), path(&pair, "v2.graphql"));

    let out = schemaver().args(["compare", &v1, &v2, "--format", "json"]).run();
    out.assert_code(1);
    let json = out.json();
    assert_eq!(json["counts"], serde_json::json!({"breaking": 1, "dangerous": 1, "safe": 1}));
    let changes: Vec<(String, String, String)> = json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["type"].as_str().unwrap().to_owned(),
                c["level"].as_str().unwrap().to_owned(),
                c["path"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("ENUM_VALUE_ADDED".into(), "dangerous".into(), "E.Z".into()),
            ("FIELD_REMOVED".into(), "breaking".into(), "Query.b".into()),
            ("FIELD_ADDED".into(), "safe".into(), "Query.c".into()),
        ]
    );

    let out = schemaver().args(["compare", &v1, &v2]).run();
    out.assert_code(1);
    assert!(out.stdout.contains("Breaking changes (1)"), "{}", out.describe());
    assert!(out.stdout.contains("FIELD_REMOVED Query.b"), "{}", out.describe());
    assert!(
        out.stdout.ends_with("3 changes: 1 breaking, 1 dangerous, 1 safe\n"),
        "{}",
        out.describe()
    );
    assert!(!out.stdout.contains('\x1b'), "no colour when stdout is not a terminal");

    let out = schemaver().args(["compare", &v1, &v2, "--format", "markdown"]).run();
    assert!(out.stdout.starts_with("## GraphQL schema changes"), "{}", out.describe());
    assert!(out.stdout.contains("<summary>✔ Safe changes (1)</summary>"), "{}", out.describe());

    // Reversed: the added field is removed (breaking), Z removed (breaking), b added (safe).
    schemaver().args(["compare", &v2, &v1, "--fail-on", "breaking"]).run().assert_code(1);
    // Only additions: exit 0 unless dangerous ones fail too.
    let dir = TestDir::new();
    let v3 =
        dir.write("v3.graphql", "type Query { a: Int c: Float d: ID e: E }\nenum E { X Y Z W }\n");
    schemaver().args(["compare", &v2]).arg(&v3).run().assert_success();
    schemaver()
        .args(["compare", &v2])
        .arg(&v3)
        .args(["--fail-on", "dangerous"])
        .run()
        .assert_code(1);
    let out = schemaver().args(["compare", &v1, &v1]).run();
    out.assert_success();
    assert_eq!(out.stdout, "No changes detected\n");
}

#[test]
fn introspection_json_and_stdin_are_accepted_wherever_sdl_is() {
    let json = public_schema("shopify_storefront_2026-01_d46c8864.json");
    let out = schemaver()
        .args(["compare", "-"])
        .arg(&json)
        .args(["--format", "json"])
        .stdin(fs_err::read(&json).unwrap())
        .run();
    out.assert_success();
    assert_eq!(out.json()["changes"], serde_json::json!([]));
}

#[test]
fn the_version_lifecycle() {
    let pair = small_pair();
    let store = pair.join("store");
    let (v1, v2) = (path(&pair, "v1.graphql"), path(&pair, "v2.graphql"));

    let out = run_in(
        &store,
        &["create", "--version", "1.0.0", "-d", "first", "--schema", &v1, "--activate"],
    );
    out.assert_success();
    assert!(
        out.stdout.starts_with("Created schema version 1.0.0 (2 types, sha256 "),
        "{}",
        out.describe()
    );
    assert!(store.join("index.json").is_file());
    assert_eq!(
        fs_err::read_to_string(store.join("schema_v1.0.0.graphql")).unwrap(),
        pair.read("v1.graphql")
    );

    // A leading `v` is accepted and dropped; the same version again is refused.
    run_in(&store, &["create", "--version", "v1.1.0", "--schema", &v2]).assert_success();
    let out = run_in(&store, &["create", "--version", "1.1.0", "--schema", &v2]);
    out.assert_code(3);
    assert!(out.stderr.contains("schema version 1.1.0 already exists"), "{}", out.describe());

    let list = run_in(&store, &["list", "--format", "json"]).json();
    let versions: Vec<(&str, bool)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].as_str().unwrap(), v["is_active"].as_bool().unwrap()))
        .collect();
    assert_eq!(versions, [("1.0.0", true), ("1.1.0", false)]);
    // As the old tool's scripts used it: `list --active-only --format json | jq -r .version`.
    let active = run_in(&store, &["list", "--active-only", "--format", "json"]).json();
    assert_eq!(active["version"], "1.0.0");
    let text = run_in(&store, &["list"]);
    assert!(text.stdout.starts_with("VERSION  ACTIVE  CREATED"), "{}", text.describe());

    let show = run_in(&store, &["show", "--version", "1.0.0", "--format", "json"]).json();
    assert_eq!(show["sdl"], pair.read("v1.graphql"));
    assert_eq!(show["description"], "first");
    assert_eq!(show["checksum_ok"], true);

    // CI gate: v2 against the active v1 has a breaking change.
    run_in(&store, &["check", "--schema", &v2]).assert_code(1);
    run_in(&store, &["check", "--schema", &v1]).assert_success();
    run_in(&store, &["check", "--schema", &v1, "--against", "1.1.0"]).assert_code(1);
    let out = run_in(&store, &["compare", "--from", "1.0.0", "--to", "1.1.0", "--format", "json"]);
    out.assert_code(1);
    assert_eq!(out.json()["counts"]["breaking"], 1);

    let out = run_in(&store, &["activate", "--version", "1.1.0"]);
    out.assert_success();
    assert_eq!(out.stdout, "Activated schema version 1.1.0 (was 1.0.0)\n");
    run_in(&store, &["activate", "--version", "1.1.0"]).assert_success();
    let out = run_in(&store, &["activate", "--version", "9.9.9"]);
    out.assert_code(2);
    assert!(out.stderr.contains("schema version 9.9.9 does not exist"), "{}", out.describe());

    let out = run_in(&store, &["delete", "--version", "1.1.0"]);
    out.assert_code(3);
    assert!(out.stderr.contains("use --force"), "{}", out.describe());

    let out = run_in(&store, &["rollback"]);
    out.assert_success();
    assert_eq!(out.stdout, "Rolled back to schema version 1.0.0 (was 1.1.0)\n");
    let out = run_in(&store, &["rollback"]);
    out.assert_code(1);
    assert!(out.stderr.contains("no earlier activation to roll back to"), "{}", out.describe());

    let history = run_in(&store, &["history", "--format", "json"]).json();
    let reasons: Vec<(&str, &str)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["version"].as_str().unwrap(), a["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(reasons, [("1.0.0", "activate"), ("1.1.0", "activate"), ("1.0.0", "rollback")]);

    run_in(&store, &["delete", "--version", "1.1.0"]).assert_success();
    assert!(!store.join("schema_v1.1.0.graphql").exists());
    run_in(&store, &["delete", "--version", "1.0.0", "--force"]).assert_success();
    let none: Value = run_in(&store, &["list", "--active-only", "--format", "json"]).json();
    assert!(none.is_null());
    let out = run_in(&store, &["check", "--schema", &v1]);
    out.assert_code(2);
    assert!(out.stderr.contains("no schema version is active"), "{}", out.describe());
}

#[test]
fn validate_names_the_duplicate_fields_and_tampered_files() {
    let dir = TestDir::new();
    let store = dir.join("store");
    let github = public_schema("github_2025-02-27_597478f9.graphql");
    let github = github.to_str().unwrap();

    // The schema parses but is invalid: refused, unless --allow-invalid stores it with a warning.
    let out = run_in(&store, &["create", "--version", "2.0.0", "--schema", github]);
    out.assert_code(2);
    assert!(
        out.stderr.contains("is not a valid GraphQL schema (2 problem(s))"),
        "{}",
        out.describe()
    );
    assert!(!store.join("schema_v2.0.0.graphql").exists());
    let out =
        run_in(&store, &["create", "--version", "2.0.0", "--schema", github, "--allow-invalid"]);
    out.assert_success();
    assert!(out.stderr.contains("used anyway (--allow-invalid)"), "{}", out.describe());

    let out = schemaver().args(["validate", "--schema", github]).run();
    out.assert_code(2);
    for field in ["repositoryDeployKeySetting", "repositoryDeployKeySettingOrganizations"] {
        assert!(
            out.stdout.contains(&format!(
                "duplicate definitions for the `{field}` field of object type `EnterpriseOwnerInfo`"
            )),
            "{}",
            out.describe()
        );
    }

    let pair = small_pair();
    run_in(&store, &["create", "--version", "1.0.0", "--schema", &path(&pair, "v1.graphql")])
        .assert_success();
    run_in(&store, &["create", "--version", "1.1.0", "--schema", &path(&pair, "v2.graphql")])
        .assert_success();
    fs_err::write(store.join("schema_v1.1.0.graphql"), "type Query { a: Int }\n").unwrap();

    let out = run_in(&store, &["validate"]);
    out.assert_code(2);
    assert!(out.stdout.contains("1.0.0: ok"), "{}", out.describe());
    assert!(out.stdout.contains("1.1.0: 1 problem(s)\n  checksum mismatch"), "{}", out.describe());
    assert!(out.stdout.contains("2.0.0: 2 problem(s)"), "{}", out.describe());
    assert!(out.stdout.ends_with("2 of 3 version(s) failed validation\n"), "{}", out.describe());

    // A valid file and a valid store pass.
    schemaver().args(["validate", "--schema", &path(&pair, "v1.graphql")]).run().assert_success();
    let clean = dir.join("clean");
    run_in(&clean, &["create", "--version", "1.0.0", "--schema", &path(&pair, "v1.graphql")])
        .assert_success();
    run_in(&clean, &["validate"]).assert_success();
}

#[test]
fn help_names_every_subcommand_and_exit_codes() {
    let out = schemaver().arg("--help").run();
    out.assert_success();
    for word in
        ["create", "activate", "compare", "check", "rollback", "import-legacy", "Exit codes"]
    {
        assert!(out.stdout.contains(word), "{word}: {}", out.describe());
    }
    schemaver().arg("frobnicate").run().assert_code(2);
    schemaver().args(["compare", "only-one.graphql"]).run().assert_code(2);
}

#[test]
fn the_store_is_read_from_the_rail_configuration_below_flags_and_variables() {
    let pair = small_pair();
    let dir = TestDir::new();
    let configured = dir.join("configured-store");
    let config = dir.write(
        "rail.toml",
        format!("[schema]\nstore = \"dir\"\ndirectory = \"{}\"\n", configured.display()),
    );
    let config = config.display().to_string();

    schemaver()
        .args(["--config", &config, "create", "--version", "1.0.0"])
        .args(["--schema", &path(&pair, "v1.graphql"), "--activate"])
        .run()
        .assert_success();
    assert!(configured.join("index.json").is_file(), "the configured directory holds the store");
    let listed = schemaver().args(["--config", &config, "list", "--format", "json"]).run();
    listed.assert_success();
    assert!(listed.stdout.contains("1.0.0"), "{}", listed.describe());

    // RAIL_SCHEMA_DIR (like --schema-dir) wins over the file.
    let elsewhere = dir.join("from-variable");
    let out = run_in(&elsewhere, &["--config", &config, "list", "--format", "json"]);
    out.assert_success();
    assert!(!out.stdout.contains("1.0.0"), "the variable's empty store\n{}", out.describe());

    // A mistake in the file is a configuration error naming the key and the file.
    let bad = dir.write("bad.toml", "[schema]\nstroe = \"dir\"\n");
    let out = schemaver().args(["--config", &bad.display().to_string(), "list"]).run();
    out.assert_code(2);
    assert!(out.stderr.contains("stroe") && out.stderr.contains("bad.toml"), "{}", out.describe());
}

/// Small schemas that parse but are not valid, each with the words its problem must be named by.
const INVALID: [(&str, &str, &str); 4] = [
    (
        "duplicate-type.graphql",
        "type Query { a: Int }\ntype T { x: Int }\ntype T { y: Int }\n",
        "`T`",
    ),
    ("duplicate-field.graphql", "type Query { a: Int\n  a: String }\n", "`a` field"),
    ("unknown-type.graphql", "type Query { a: Missing }\n", "Missing"),
    (
        "missing-interface-field.graphql",
        "type Query { n: Node }\ninterface Node { id: ID! }\ntype User implements Node { name: String }\n",
        "id",
    ),
];

#[test]
fn an_invalid_schema_is_exit_2_naming_the_file_and_problem_unless_allowed() {
    let pair = small_pair();
    let v1 = path(&pair, "v1.graphql");
    let dir = TestDir::new();
    let store = dir.join("store");
    run_in(&store, &["create", "--version", "1.0.0", "--schema", &v1, "--activate"])
        .assert_success();
    for (name, sdl, words) in INVALID {
        let file = dir.write(name, sdl).display().to_string();
        for args in [
            vec!["compare", &v1, &file],
            vec!["compare", &file, &v1],
            vec!["check", "--schema", &file],
        ] {
            let out = run_in(&store, &args);
            out.assert_code(2);
            assert!(
                out.stderr.contains(&format!("{file} is not a valid GraphQL schema")),
                "{name} {args:?}: {}",
                out.describe()
            );
            assert!(out.stderr.contains(words), "{name}: {}", out.describe());
            assert!(out.stderr.contains("--allow-invalid"), "{name}: {}", out.describe());
            assert!(out.stdout.is_empty(), "no report for an invalid schema: {}", out.describe());

            // Allowed: a warning, and the diff goes on. From v1, its `b` and `e` are gone
            // (breaking); towards v1 they are added (safe).
            let mut allowed = args.clone();
            allowed.push("--allow-invalid");
            let out = run_in(&store, &allowed);
            let from_v1 = args[1] == v1.as_str() || args[0] == "check";
            if from_v1 {
                out.assert_code(1);
            } else {
                assert!(matches!(out.code, Some(0 | 1)), "{}", out.describe());
            }
            assert!(
                out.stderr.contains("warning: ") && out.stderr.contains(words),
                "{}",
                out.describe()
            );
            assert!(out.stdout.contains("FIELD_REMOVED Query.b") == from_v1, "{}", out.describe());
        }
        let out = run_in(&store, &["create", "--version", "2.0.0", "--schema", &file]);
        out.assert_code(2);
        assert!(
            out.stderr.contains(&format!("{file} is not a valid GraphQL schema")),
            "{}",
            out.describe()
        );
    }
    // A stored version that is invalid is refused as an operand too.
    let file = dir.write("invalid.graphql", INVALID[2].1).display().to_string();
    run_in(&store, &["create", "--version", "3.0.0", "--schema", &file, "--allow-invalid"])
        .assert_success();
    let out = run_in(&store, &["compare", "--from", "1.0.0", "--to", "3.0.0"]);
    out.assert_code(2);
    assert!(
        out.stderr.contains("schema version 3.0.0 is not a valid GraphQL schema"),
        "{}",
        out.describe()
    );

    // Introspection JSON is validated too: an interface field the object lacks.
    let json = dir.write(
        "introspection.json",
        r#"{"data":{"__schema":{"queryType":{"name":"Query"},"types":[
            {"kind":"OBJECT","name":"Query","fields":[{"name":"n","args":[],"type":{"kind":"INTERFACE","name":"Node"}}],"interfaces":[]},
            {"kind":"INTERFACE","name":"Node","fields":[{"name":"id","args":[],"type":{"kind":"SCALAR","name":"ID"}}],"possibleTypes":[{"kind":"OBJECT","name":"User"}]},
            {"kind":"OBJECT","name":"User","fields":[{"name":"name","args":[],"type":{"kind":"SCALAR","name":"String"}}],"interfaces":[{"kind":"INTERFACE","name":"Node"}]}
        ],"directives":[]}}}"#,
    );
    let out = schemaver().args(["compare", &v1]).arg(&json).run();
    out.assert_code(2);
    assert!(
        out.stderr.contains("introspection.json is not a valid GraphQL schema"),
        "{}",
        out.describe()
    );
}

#[test]
fn validate_reports_each_file_and_exits_2_if_any_is_invalid() {
    let pair = small_pair();
    let dir = TestDir::new();
    let v1 = path(&pair, "v1.graphql");
    let bad = dir.write(INVALID[2].0, INVALID[2].1).display().to_string();
    let syntax = dir.write("syntax.graphql", "type Query {").display().to_string();
    let json = public_schema("shopify_storefront_2026-01_d46c8864.json").display().to_string();

    let out = schemaver().args(["validate", &v1, &json]).run();
    out.assert_success();
    assert_eq!(out.stdout, format!("{v1}: ok\n{json}: ok\nAll 2 file(s) valid\n"));

    let out = schemaver().args(["validate", &v1, &bad, &syntax]).run();
    out.assert_code(2);
    assert!(out.stdout.contains(&format!("{v1}: ok\n")), "{}", out.describe());
    assert!(out.stdout.contains(&format!("{bad}: 1 problem(s)\n  1:")), "{}", out.describe());
    assert!(out.stdout.contains("Missing"), "{}", out.describe());
    assert!(out.stdout.contains(&format!("{syntax}: 1 problem(s)")), "{}", out.describe());
    assert!(out.stdout.ends_with("2 of 3 file(s) failed validation\n"), "{}", out.describe());

    let out = schemaver()
        .args(["validate", &v1, &bad])
        .arg(dir.join("missing.graphql"))
        .args(["--format", "json"])
        .run();
    out.assert_code(2);
    let json = out.json();
    assert_eq!(json["ok"], false);
    let files = json["files"].as_array().unwrap();
    assert_eq!(files.len(), 3);
    assert_eq!(files[0]["file"], v1.as_str());
    assert_eq!((files[0]["ok"].as_bool(), files[0]["format"].as_str()), (Some(true), Some("sdl")));
    assert_eq!(files[1]["ok"], false);
    assert!(files[1]["problems"][0].as_str().unwrap().contains("Missing"), "{json}");
    assert_eq!(files[2]["format"], serde_json::Value::Null);
    assert!(files[2]["problems"][0].as_str().unwrap().contains("missing.graphql"), "{json}");

    // With no file, the store is validated as before; as JSON too.
    let store = dir.join("store");
    run_in(&store, &["create", "--version", "1.0.0", "--schema", &v1]).assert_success();
    let out = run_in(&store, &["validate", "--format", "json"]);
    out.assert_success();
    assert_eq!(
        out.json(),
        serde_json::json!({"ok": true, "versions": [{"version": "1.0.0", "active": false, "ok": true, "problems": []}]})
    );
}

#[test]
fn every_subcommand_speaks_json() {
    let pair = small_pair();
    let store = pair.join("store");
    let (v1, v2) = (path(&pair, "v1.graphql"), path(&pair, "v2.graphql"));

    let out = run_in(
        &store,
        &["create", "--version", "1.0.0", "--schema", &v1, "--activate", "--format", "json"],
    );
    out.assert_success();
    let created = out.json();
    assert_eq!(created["version"], "1.0.0");
    assert_eq!(created["is_active"], true);
    assert_eq!(created["types"], 2);
    assert_eq!(created["valid"], true);
    assert_eq!(created["sha256"].as_str().unwrap().len(), 64);
    run_in(&store, &["create", "--version", "1.1.0", "--schema", &v2]).assert_success();

    let out = run_in(&store, &["activate", "--version", "1.1.0", "--format", "json"]);
    out.assert_success();
    assert_eq!(
        out.json(),
        serde_json::json!({"version": "1.1.0", "previous": "1.0.0", "changed": true})
    );
    let out = run_in(&store, &["activate", "--version", "1.1.0", "--format", "json"]);
    assert_eq!(
        out.json(),
        serde_json::json!({"version": "1.1.0", "previous": null, "changed": false})
    );

    let out = run_in(&store, &["rollback", "--format", "json"]);
    out.assert_success();
    assert_eq!(out.json(), serde_json::json!({"version": "1.0.0", "previous": "1.1.0"}));

    let out = run_in(&store, &["delete", "--version", "1.1.0", "--format", "json"]);
    out.assert_success();
    assert_eq!(out.json(), serde_json::json!({"deleted": "1.1.0", "was_active": false}));

    // Errors are JSON on stdout too, with the exit code; the message still goes to stderr.
    for (args, code, words) in [
        (vec!["delete", "--version", "1.0.0", "--format", "json"], 3, "use --force"),
        (vec!["activate", "--version", "9.9.9", "--format", "json"], 2, "9.9.9 does not exist"),
        (
            vec!["create", "--version", "1.0.0", "--schema", &v1, "--format", "json"],
            3,
            "already exists",
        ),
    ] {
        let out = run_in(&store, &args);
        out.assert_code(code);
        let json = out.json();
        assert_eq!(json["exit_code"], code, "{}", out.describe());
        assert!(json["error"].as_str().unwrap().contains(words), "{}", out.describe());
        assert!(out.stderr.contains(words), "{}", out.describe());
    }
    let out = run_in(&store, &["rollback", "--format", "json"]);
    out.assert_code(1);
    assert!(
        out.json()["error"].as_str().unwrap().contains("no earlier activation"),
        "{}",
        out.describe()
    );
    // refresh needs an endpoint; without one it is a usage error, as JSON.
    let out = run_in(&store, &["refresh", "--format", "json"]);
    out.assert_code(2);
    assert!(
        out.json()["error"].as_str().unwrap().contains("no schema given"),
        "{}",
        out.describe()
    );
}
