//! Hostile input: a clear error and exit 2, no crash, bounded memory, nothing written outside the
//! store.

use rail_testkit::TestDir;

use crate::{run_in, schemaver, small_pair};

#[test]
fn a_fifty_megabyte_schema_is_refused_before_it_is_read() {
    let dir = TestDir::new();
    let line = "type T { a: Int b: String c: [Float!]! }\n";
    let big = line.repeat(50 * 1024 * 1024 / line.len() + 1);
    let path = dir.write("big.graphql", &big);
    let out = schemaver().arg("compare").arg(&path).arg(&path).run();
    out.assert_code(2);
    assert!(out.stderr.contains("is larger than 16 MiB"), "{}", out.describe());

    // The same through stdin, where the size is not known in advance.
    let out = schemaver()
        .env("RAIL_SCHEMA_DIR", dir.join("store"))
        .args(["create", "--version", "1.0.0", "--schema", "-"])
        .stdin(big)
        .run();
    out.assert_code(2);
    assert!(out.stderr.contains("stdin is larger than 16 MiB"), "{}", out.describe());
    assert!(!dir.join("store").exists());
}

#[test]
fn a_schema_with_too_many_tokens_is_refused() {
    let dir = TestDir::new();
    let sdl: String = std::iter::once("type Query { a: Int }\n".to_owned())
        .chain((0..250_000).map(|i| format!("type T{i} {{ a: Int }}\n")))
        .collect();
    assert!(sdl.len() < 16 * 1024 * 1024);
    let path = dir.write("many.graphql", sdl);
    let out = schemaver().arg("compare").arg(&path).arg(&path).run();
    out.assert_code(2);
    assert!(out.stderr.contains("token limit reached"), "{}", out.describe());
}

#[test]
fn deeply_nested_introspection_json_is_an_error() {
    let dir = TestDir::new();
    let mut json = String::from(
        r#"{"data":{"__schema":{"queryType":{"name":"Q"},"types":[{"kind":"OBJECT","name":"Q","fields":[{"name":"f","args":[],"type":"#,
    );
    for _ in 0..10_000 {
        json.push_str(r#"{"kind":"NON_NULL","ofType":"#);
    }
    json.push_str(r#"{"kind":"SCALAR","name":"Int"}"#);
    json.push_str(&"}".repeat(10_000));
    json.push_str("}]}]}}}");
    let path = dir.write("deep.json", json);
    let pair = small_pair();
    let out = schemaver().arg("compare").arg(pair.join("v1.graphql")).arg(&path).run();
    out.assert_code(2);
    assert!(out.stderr.contains("deep.json: not valid introspection JSON"), "{}", out.describe());
    assert!(out.stderr.contains("recursion limit"), "{}", out.describe());
}

#[test]
fn deeply_nested_sdl_is_an_error() {
    let dir = TestDir::new();
    let sdl = format!("type Query {{ a: {}Int{} }}", "[".repeat(10_000), "]".repeat(10_000));
    let path = dir.write("deep.graphql", sdl);
    let out = schemaver().arg("compare").arg(&path).arg(&path).run();
    out.assert_code(2);
    assert!(out.stderr.contains("is not valid GraphQL SDL"), "{}", out.describe());
}

#[test]
fn invalid_utf8_is_an_error() {
    let dir = TestDir::new();
    let path = dir.write("bad.graphql", b"type Query { a: Int }\n# \xff\xfe\n");
    let out = schemaver().arg("compare").arg(&path).arg(&path).run();
    out.assert_code(2);
    assert!(
        out.stderr.contains("is not valid UTF-8 (invalid byte at offset 24)"),
        "{}",
        out.describe()
    );
}

#[test]
fn a_version_with_a_path_is_refused_and_nothing_is_written() {
    let pair = small_pair();
    // Deep enough that `../../x` would land inside the test's own directory.
    let store = pair.join("a/b/store");
    for bad in ["../../x", "1.0.0/../../x", "/etc/passwd", "1.0", "1.0.0 2"] {
        let out = run_in(
            &store,
            &["create", "--version", bad, "--schema", pair.join("v1.graphql").to_str().unwrap()],
        );
        out.assert_code(2);
        assert!(out.stderr.contains("invalid version"), "{}", out.describe());
        for command in
            [vec!["activate", "--version", bad], vec!["delete", "--version", bad, "--force"]]
        {
            run_in(&store, &command).assert_code(2);
        }
    }
    assert!(!store.exists(), "nothing may be written for an invalid version");
    assert!(!pair.join("a").exists() && !pair.join("x").exists());
}

#[test]
fn not_a_schema_is_an_error() {
    let dir = TestDir::new();
    let pair = small_pair();
    let v1 = pair.join("v1.graphql");
    for (name, contents, expected) in [
        ("empty.graphql", "", "is empty"),
        ("syntax.graphql", "type Query { a: }", "is not valid GraphQL SDL"),
        ("other.json", r#"{"hello": "world"}"#, "holds no `__schema`"),
        (
            "errors.json",
            r#"{"errors": [{"message": "not allowed"}]}"#,
            "the server answered with errors: not allowed",
        ),
    ] {
        let path = dir.write(name, contents);
        let out = schemaver().arg("compare").arg(&v1).arg(&path).run();
        out.assert_code(2);
        assert!(out.stderr.contains(expected), "{name}: {}", out.describe());
    }
    let out = schemaver().arg("compare").arg(&v1).arg(dir.join("missing.graphql")).run();
    out.assert_code(2);
    assert!(out.stderr.contains("missing.graphql"), "{}", out.describe());
}
