//! `--operations`: client operations validated against both schemas, from `.graphql` files, from
//! documents embedded in JavaScript/TypeScript and Python, and from persisted-query maps; their
//! verdicts in every report format; and the limits that keep hostile input bounded.

use std::path::{Path, PathBuf};

use rail_testkit::{workspace_root, Output, TestDir};
use serde_json::Value;

use crate::{public_schema, schemaver};

/// The Saleor dashboard's operations, beside the workspace (never copied into it).
fn saleor_operations() -> PathBuf {
    let dir = workspace_root().join("../shared/graphql-operations/saleor-dashboard/operations");
    assert!(
        dir.is_dir(),
        "the Saleor dashboard operations are missing: expected {} beside the workspace",
        dir.display()
    );
    dir
}

/// The operations broken in a JSON report, as (name, file name, [(error file name, line, message)]).
type Broken = Vec<(String, String, Vec<(String, u64, String)>)>;

fn file_name(path: &str) -> String {
    Path::new(path).file_name().unwrap().to_string_lossy().into_owned()
}

fn broken(json: &Value) -> Broken {
    json["operations"]["broken"]
        .as_array()
        .unwrap_or_else(|| panic!("no operations in {json}"))
        .iter()
        .map(|op| {
            let errors = op["errors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    (
                        file_name(e["file"].as_str().unwrap()),
                        e["line"].as_u64().unwrap(),
                        e["message"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            (
                op["name"].as_str().unwrap_or("(anonymous)").to_owned(),
                file_name(op["file"].as_str().unwrap()),
                errors,
            )
        })
        .collect()
}

fn find<'a>(broken: &'a Broken, name: &str) -> &'a (String, String, Vec<(String, u64, String)>) {
    broken.iter().find(|b| b.0 == name).unwrap_or_else(|| {
        panic!(
            "{name} is not reported broken; broken: {:?}",
            broken.iter().map(|b| &b.0).collect::<Vec<_>>()
        )
    })
}

fn change<'a>(json: &'a Value, kind: &str, path: &str) -> &'a Value {
    json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == kind && c["path"] == path)
        .unwrap_or_else(|| panic!("no {kind} {path} in the report"))
}

const SALEOR_NEW: &str = "saleor_2026-08-21_723cd4eb.graphql";
const SALEOR_OLD: &str = "saleor_3.20.0_1ce97784.graphql";

fn saleor(old: &str, new: &str, extra: &[&str]) -> Output {
    schemaver()
        .arg("compare")
        .arg(public_schema(old))
        .arg(public_schema(new))
        .arg("--operations")
        .arg(saleor_operations())
        .args(["--format", "json"])
        .args(extra)
        .run()
}

/// Going back from the schema the dashboard targets to Saleor 3.20 removes what the dashboard uses:
/// `Query.refundSettings` (in 2026-08-21 at line 260, absent from 3.20) and `Query.orders(where:)`
/// with its `OrderWhereInput`.
#[test]
fn saleor_dashboard_operations_broken_by_going_back_to_3_20() {
    let out = saleor(SALEOR_NEW, SALEOR_OLD, &[]);
    out.assert_code(1);
    let json = out.json();
    let broken = broken(&json);

    let (_, file, errors) = find(&broken, "RefundSettings");
    assert_eq!(file, "refundsSettings__queries.graphql");
    // `query RefundSettings {` is line 1 of that file, `refundSettings {` line 2.
    assert_eq!(
        errors[0],
        (
            "refundsSettings__queries.graphql".to_owned(),
            2,
            "type `Query` does not have a field `refundSettings`".to_owned()
        )
    );
    let (_, file, errors) = find(&broken, "OrderList");
    assert_eq!(file, "orders__queries.graphql");
    assert!(
        errors.iter().any(|e| e.2 == "cannot find type `OrderWhereInput` in this document"),
        "{errors:?}"
    );
    // A fragment in another file is where the error is: OrderDetails spreads fragments of
    // fragments__orders.graphql whose `OrderLine.discounts` 3.20 lacks.
    let (_, file, errors) = find(&broken, "OrderDetails");
    assert_eq!(file, "orders__queries.graphql");
    assert!(
        errors.iter().any(|e| e.0 == "fragments__orders.graphql"
            && e.2 == "type `OrderLine` does not have a field `discounts`"),
        "{errors:?}"
    );
    // Operations that only read what 3.20 has are not broken: `shop { name }` and the like.
    assert!(!broken.iter().any(|b| b.0 == "ShopInfo"), "{broken:?}");
    // The schema change behind RefundSettings is breaking, as is the diff's.
    assert_eq!(change(&json, "FIELD_REMOVED", "Query.refundSettings")["level"], "breaking");
    // Every operation is checked: as many as the files' lines that open one (434 at the start of a
    // line, and 21 indented in components__ConditionalFilter__API__queries.graphql).
    let mut opening = 0;
    for entry in fs_err::read_dir(saleor_operations()).unwrap() {
        let text = fs_err::read_to_string(entry.unwrap().path()).unwrap();
        opening += text
            .lines()
            .filter(|l| {
                ["query ", "mutation ", "subscription "]
                    .iter()
                    .any(|k| l.trim_start().starts_with(k))
            })
            .count();
    }
    assert_eq!(
        json["operations"]["checked"].as_u64(),
        Some(opening as u64),
        "{}",
        json["operations"]
    );
    assert_eq!(json["operations"]["files"], 129);
}

/// With `--consider-usage`, a breaking change no dashboard operation touches is dangerous, and one
/// that an operation uses stays breaking.
#[test]
fn saleor_breaking_changes_unused_by_the_dashboard_are_dangerous() {
    let out = saleor(SALEOR_NEW, SALEOR_OLD, &["--consider-usage"]);
    out.assert_code(1);
    let json = out.json();
    let known = json["operations"]["known"].as_u64().unwrap();
    // `App.breakerState` (2026-08-21, line 3022) is gone from 3.20, and no dashboard operation
    // selects `breakerState`.
    let unused = change(&json, "FIELD_REMOVED", "App.breakerState");
    assert_eq!(unused["level"], "dangerous");
    assert_eq!(unused["unused"], true);
    assert_eq!(unused["note"], format!("breaking, unused by the {known} known operations"));
    // `AccountConfirmModeEnum` is gone too, and no operation names it, but it is the type of
    // `ShopSettingsInput.accountConfirmMergeMode`, and ShopSettingsUpdate sends a
    // `$shopSettingsInput: ShopSettingsInput!` the client fills at run time: it stays breaking.
    let used = change(&json, "TYPE_REMOVED", "AccountConfirmModeEnum");
    assert_eq!(used["level"], "breaking");
    let used = change(&json, "FIELD_REMOVED", "Query.refundSettings");
    assert_eq!(used["level"], "breaking");
    assert!(used.get("unused").is_none(), "{used}");
    // `Query.orders(where:)` is passed by OrderList: its removal stays breaking.
    assert_eq!(change(&json, "FIELD_ARGUMENT_REMOVED", "Query.orders.where")["level"], "breaking");
    let counts = &json["counts"];
    let plain = saleor(SALEOR_NEW, SALEOR_OLD, &[]).json();
    assert_eq!(
        counts["breaking"].as_u64().unwrap()
            + json["operations"]["unused_breaking_changes"].as_u64().unwrap(),
        plain["counts"]["breaking"].as_u64().unwrap(),
        "every downgraded change was breaking"
    );
}

/// Forward, from 3.20 to the schema the dashboard targets: most of its operations become valid, and
/// the one that uses what the newer schema removed (`Mutation.exportGiftCards`, with
/// `ExportGiftCardsInput`) breaks. Operations already invalid on 3.20 are not judged.
#[test]
fn saleor_dashboard_forward_breaks_only_what_the_new_schema_removed() {
    let out = saleor(SALEOR_OLD, SALEOR_NEW, &[]);
    out.assert_code(1);
    let json = out.json();
    let broken = broken(&json);
    let (_, file, errors) = find(&broken, "ExportGiftCards");
    assert_eq!(file, "giftCards__GiftCardExportDialogContent__mutations.graphql");
    assert!(
        errors
            .iter()
            .any(|e| e.1 == 1 && e.2 == "cannot find type `ExportGiftCardsInput` in this document"),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.1 == 2 && e.2 == "type `Mutation` does not have a field `exportGiftCards`"),
        "{errors:?}"
    );
    // RefundSettings targets the newer schema: invalid on 3.20, so not judged.
    let invalid = json["operations"]["invalid_on_old"].as_array().unwrap();
    assert!(invalid.iter().any(|op| op["name"] == "RefundSettings"), "{}", json["operations"]);
    assert!(!broken.iter().any(|b| b.0 == "RefundSettings"));
}

/// The old schema of the hand-written matrix: each case changes one thing of it.
const OLD: &str = r"type Query {
  user(id: ID!): User
  search(term: String, limit: Int): [Result!]!
  node(id: ID!): Node
  users(filter: UserFilter): [User!]!
  byRole(role: Role!): [User!]!
}
interface Node { id: ID! }
type User implements Node { id: ID! name: String email: String }
type Post implements Node { id: ID! title: String }
union Result = User | Post
enum Role { ADMIN EDITOR VIEWER }
input UserFilter { role: Role nameContains: String }
";

/// `OLD` with `from` replaced by `to`.
fn changed(from: &str, to: &str) -> String {
    assert!(OLD.contains(from), "{from}");
    OLD.replacen(from, to, 1)
}

/// Compare OLD → `new` with the given operation files; the one broken operation, its file and its
/// errors.
fn one_broken(new: &str, files: &[(&str, &str)]) -> (String, String, Vec<(String, u64, String)>) {
    let dir = TestDir::new();
    let old = dir.write("old.graphql", OLD);
    let new = dir.write("new.graphql", new);
    for (name, text) in files {
        dir.write(format!("ops/{name}"), text);
    }
    let out = schemaver()
        .arg("compare")
        .arg(&old)
        .arg(&new)
        .arg("--operations")
        .arg(dir.join("ops"))
        .args(["--format", "json"])
        .run();
    out.assert_code(1);
    let json = out.json();
    let mut broken = broken(&json);
    assert_eq!(broken.len(), 1, "{}", json["operations"]);
    assert_eq!(json["operations"]["invalid_on_old"], serde_json::json!([]));
    broken.remove(0)
}

fn assert_error(errors: &[(String, u64, String)], file: &str, line: u64, words: &str) {
    assert!(
        errors.iter().any(|e| e.0 == file && e.1 == line && e.2.contains(words)),
        "expected {file}:{line} `{words}` in {errors:?}"
    );
}

#[test]
fn an_operation_breaks_when_its_field_is_removed() {
    let new = changed("name: String email: String", "name: String");
    let (name, file, errors) = one_broken(
        &new,
        &[("a.graphql", "# users\nquery UserEmail {\n  user(id: \"1\") {\n    email\n  }\n}\n")],
    );
    assert_eq!((name.as_str(), file.as_str()), ("UserEmail", "a.graphql"));
    assert_error(&errors, "a.graphql", 4, "type `User` does not have a field `email`");
}

#[test]
fn an_operation_breaks_when_its_argument_is_removed() {
    let new = changed("search(term: String, limit: Int)", "search(term: String)");
    let (name, _, errors) = one_broken(
        &new,
        &[("b.graphql", "query Search {\n  search(term: \"x\", limit: 3) { __typename }\n}\n")],
    );
    assert_eq!(name, "Search");
    assert_error(
        &errors,
        "b.graphql",
        2,
        "the argument `limit` is not supported by `Query.search`",
    );
}

#[test]
fn an_operation_breaks_when_its_argument_type_changes() {
    let new = changed("limit: Int)", "limit: String)");
    let (name, _, errors) = one_broken(
        &new,
        &[(
            "c.graphql",
            "query Limited($n: Int) {\n  search(term: \"x\",\n    limit: $n) { __typename }\n}\n",
        )],
    );
    assert_eq!(name, "Limited");
    assert_error(
        &errors,
        "c.graphql",
        3,
        "variable `$n` of type `Int` cannot be used for argument `limit` of type `String`",
    );
}

#[test]
fn an_operation_breaks_when_a_required_argument_is_added() {
    let new = changed("users(filter: UserFilter)", "users(filter: UserFilter, first: Int!)");
    let (name, _, errors) =
        one_broken(&new, &[("d.graphql", "query Everyone {\n  users {\n    id\n  }\n}\n")]);
    assert_eq!(name, "Everyone");
    assert_error(&errors, "d.graphql", 2, "first");
}

#[test]
fn an_operation_breaks_when_its_enum_value_is_removed() {
    let new = changed("enum Role { ADMIN EDITOR VIEWER }", "enum Role { ADMIN VIEWER }");
    let (name, _, errors) =
        one_broken(&new, &[("e.graphql", "query Editors {\n  byRole(role: EDITOR) { id }\n}\n")]);
    assert_eq!(name, "Editors");
    assert_error(&errors, "e.graphql", 2, "EDITOR");
}

#[test]
fn an_operation_breaks_when_a_union_member_under_its_inline_fragment_is_removed() {
    let new = changed("union Result = User | Post", "union Result = User");
    let (name, _, errors) = one_broken(
        &new,
        &[("f.graphql", "query Found {\n  search(term: \"x\") {\n    ... on User { name }\n    ... on Post { title }\n  }\n}\n")],
    );
    assert_eq!(name, "Found");
    assert_error(&errors, "f.graphql", 4, "Post");
}

/// The fragment lives in another file, as code generators lay them out; the error is at the spread.
#[test]
fn an_operation_breaks_when_its_fragment_type_no_longer_implements_the_interface() {
    let new = changed("type Post implements Node {", "type Post {");
    let (name, file, errors) = one_broken(
        &new,
        &[
            (
                "g.graphql",
                "query PostNode {\n  node(id: \"1\") {\n    id\n    ...PostTitle\n  }\n}\n",
            ),
            ("fragments/post.graphql", "fragment PostTitle on Post {\n  title\n}\n"),
        ],
    );
    assert_eq!((name.as_str(), file.as_str()), ("PostNode", "g.graphql"));
    assert_error(&errors, "g.graphql", 4, "PostTitle");
}

#[test]
fn an_operation_breaks_when_the_input_field_its_variable_fills_changes_type() {
    let new = changed("nameContains: String }", "nameContains: Int }");
    let (name, _, errors) = one_broken(
        &new,
        &[("h.graphql", "query Named($name: String) {\n  users(filter: {\n    nameContains: $name\n  }) { id }\n}\n")],
    );
    assert_eq!(name, "Named");
    // `nameContains: $name` is on line 3: a String variable where an Int goes.
    assert_error(&errors, "h.graphql", 3, "expected value of type Int, found a variable");
}

/// A variable of an input type is used whole: a change inside that type is not unused, though no
/// validation error can show it (the client sends the value at run time).
#[test]
fn consider_usage_counts_a_whole_input_type_behind_a_variable() {
    let dir = TestDir::new();
    let old = dir.write("old.graphql", OLD);
    let new = dir.write(
        "new.graphql",
        changed("nameContains: String }", "nameContains: Int }").replacen(
            "type Post implements Node { id: ID! title: String }",
            "type Post implements Node { id: ID! }",
            1,
        ),
    );
    dir.write("ops/q.graphql", "query Filtered($f: UserFilter) {\n  users(filter: $f) { id }\n}\n");
    let out = schemaver()
        .arg("compare")
        .arg(&old)
        .arg(&new)
        .arg("--operations")
        .arg(dir.join("ops"))
        .args(["--consider-usage", "--format", "json"])
        .run();
    out.assert_code(1);
    let json = out.json();
    assert_eq!(json["operations"]["broken"], serde_json::json!([]));
    assert_eq!(
        change(&json, "INPUT_FIELD_TYPE_CHANGED", "UserFilter.nameContains")["level"],
        "breaking"
    );
    let title = change(&json, "FIELD_REMOVED", "Post.title");
    assert_eq!(title["level"], "dangerous");
    assert_eq!(title["note"], "breaking, unused by the 1 known operations");

    // Without the input type change, nothing breaking is used: exit 0.
    let new = dir.write(
        "new2.graphql",
        OLD.replacen(
            "type Post implements Node { id: ID! title: String }",
            "type Post implements Node { id: ID! }",
            1,
        ),
    );
    let out = schemaver()
        .arg("compare")
        .arg(&old)
        .arg(&new)
        .arg("--operations")
        .arg(dir.join("ops"))
        .arg("--consider-usage")
        .run();
    out.assert_success();
    assert!(
        out.stdout.contains("(breaking, unused by the 1 known operations)"),
        "{}",
        out.describe()
    );
    // Without --consider-usage the same change fails the gate.
    schemaver()
        .arg("compare")
        .arg(&old)
        .arg(&new)
        .arg("--operations")
        .arg(dir.join("ops"))
        .run()
        .assert_code(1);
}

/// Documents embedded in TypeScript, TSX, JavaScript and Python sources, and in a persisted-query
/// map, each reported at its line in its own file.
#[test]
fn embedded_documents_and_persisted_queries_are_reported_at_their_lines() {
    let dir = TestDir::new();
    let old = dir.write("old.graphql", OLD);
    let new = dir.write("new.graphql", changed("name: String email: String", "name: String"));
    dir.write(
        "src/user.ts",
        r#"import { gql } from "@apollo/client";

// a `gql` in a comment: gql`query InComment { x }`
const label: string = "gql`query InString { x }`";
export const USER = gql`
  query TsEmail($id: ID!) {
    user(id: $id) {
      email
    }
  }
`;
"#,
    );
    dir.write(
        "src/Page.tsx",
        r#"import { graphql } from "./gql";
export const Page = () => <p>Don't {`panic ${1}`} now</p>;
const re = /`/g;
const QUERY = graphql(`
  query TsxEmail {
    user(id: "1") { name email }
  }
`);
"#,
    );
    dir.write(
        "src/legacy.js",
        "const ok = gql`query JsName { user(id: \"1\") { name } }`;\nconst q = /* GraphQL */ `\n  query JsEmail {\n    user(id: \"1\") {\n      ${FIELDS}\n      email\n    }\n  }\n`;\n",
    );
    dir.write(
        "client/queries.py",
        "from gql import gql\n\n\ndef fetch(client):\n    \"\"\"Query the user's email.\"\"\"\n    query = gql(\"\"\"\n        query PyEmail {\n            user(id: \"1\") {\n                email\n            }\n        }\n    \"\"\")\n    return client.execute(query)\n",
    );
    dir.write(
        "persisted/queries.json",
        "{\n  \"a1b2\": \"query PersistedName { user(id: \\\"1\\\") { name } }\",\n  \"c3d4\": \"query PersistedEmail {\\n  user(id: \\\"1\\\") {\\n    email\\n  }\\n}\"\n}\n",
    );
    let out = schemaver()
        .arg("compare")
        .arg(&old)
        .arg(&new)
        .arg("--operations")
        .arg(dir.join("src"))
        .arg(dir.join("client"))
        .arg(dir.join("persisted/queries.json"))
        .args(["--format", "json"])
        .run();
    out.assert_code(1);
    let json = out.json();
    let mut broken: Vec<(String, String, u64, u64)> = json["operations"]["broken"]
        .as_array()
        .unwrap()
        .iter()
        .map(|op| {
            (
                op["name"].as_str().unwrap().to_owned(),
                file_name(op["file"].as_str().unwrap()),
                op["line"].as_u64().unwrap(),
                op["errors"][0]["line"].as_u64().unwrap(),
            )
        })
        .collect();
    broken.sort();
    assert_eq!(
        broken,
        [
            ("JsEmail".to_owned(), "legacy.js".to_owned(), 3, 6),
            ("PersistedEmail".to_owned(), "queries.json".to_owned(), 3, 3),
            ("PyEmail".to_owned(), "queries.py".to_owned(), 7, 9),
            ("TsEmail".to_owned(), "user.ts".to_owned(), 6, 8),
            ("TsxEmail".to_owned(), "Page.tsx".to_owned(), 5, 6),
        ]
    );
    assert_eq!(
        json["operations"]["checked"], 7,
        "JsName and PersistedName are fine: {}",
        json["operations"]
    );
    assert_eq!(json["operations"]["files"], 5);
}

fn ops_run(dir: &TestDir, ops: &Path) -> Output {
    let old = dir.write("old.graphql", OLD);
    schemaver().arg("compare").arg(&old).arg(&old).arg("--operations").arg(ops).run()
}

#[test]
fn a_folder_of_a_hundred_thousand_files_is_refused_quickly() {
    let dir = TestDir::new();
    let ops = dir.join("ops");
    for d in 0..100 {
        let sub = ops.join(format!("d{d:03}"));
        fs_err::create_dir_all(&sub).unwrap();
        for f in 0..1000 {
            fs_err::File::create(sub.join(format!("q{f}.graphql"))).unwrap();
        }
    }
    let out = ops_run(&dir, &ops);
    out.assert_code(2);
    assert!(
        out.stderr.contains(&format!("{}: more than 50000 operation files", ops.display())),
        "{}",
        out.describe()
    );
}

#[test]
fn a_fifty_megabyte_document_is_refused_before_it_is_read() {
    let dir = TestDir::new();
    let big = dir.join("big.graphql");
    // Sparse: the size is what counts, and nothing needs writing.
    fs_err::File::create(&big).unwrap().set_len(50 * 1024 * 1024).unwrap();
    let out = ops_run(&dir, &big);
    out.assert_code(2);
    assert!(
        out.stderr.contains(&format!("{} is larger than 8 MiB", big.display())),
        "{}",
        out.describe()
    );
}

#[test]
fn ten_thousand_nested_selections_are_an_error_naming_the_file() {
    let dir = TestDir::new();
    let deep = dir.write(
        "deep.graphql",
        format!("query Deep {{ {}a{} }}", "user(id: 1) { ".repeat(10_000), " }".repeat(10_000)),
    );
    let out = ops_run(&dir, &deep);
    out.assert_code(2);
    assert!(
        out.stderr.contains(&format!("{}:1: invalid GraphQL", deep.display())),
        "{}",
        out.describe()
    );
    assert!(out.stderr.contains("recursion limit"), "{}", out.describe());
}

#[test]
fn a_fragment_cycle_is_an_error_naming_the_fragments_and_files() {
    let dir = TestDir::new();
    let ops = dir.join("ops");
    dir.write(
        "ops/a.graphql",
        "query Q { user(id: 1) { ...A } }\nfragment A on User {\n  name\n  ...B\n}\n",
    );
    dir.write("ops/b.graphql", "fragment B on User {\n  ...A\n}\n");
    let out = ops_run(&dir, &ops);
    out.assert_code(2);
    let a = ops.join("a.graphql").display().to_string();
    let b = ops.join("b.graphql").display().to_string();
    assert!(
        out.stderr.contains(&format!("fragment cycle: A ({a}:2) → B ({b}:1) → A")),
        "{}",
        out.describe()
    );
}

#[test]
fn bad_operation_files_are_clear_errors() {
    let dir = TestDir::new();
    for (name, contents, expected) in [
        ("notes.txt", "query Q { a }", "not a file of operations"),
        ("syntax.graphql", "query Q {\n  user(id: 1) {\n}\n", "syntax.graphql:"),
        ("map.json", "[\"query Q { a }\"]", "not a persisted-query map: line 1"),
        ("binary.graphql", "query Q { a }\n\u{0}\u{ff}", ""),
    ] {
        let path = dir.write(name, contents);
        let out = ops_run(&dir, &path);
        out.assert_code(2);
        assert!(
            out.stderr.contains(name) && out.stderr.contains(expected),
            "{name}: {}",
            out.describe()
        );
    }
    let bytes = dir.join("latin1.graphql");
    fs_err::write(&bytes, b"query Q { a }\n# caf\xe9\n").unwrap();
    let out = ops_run(&dir, &bytes);
    out.assert_code(2);
    assert!(out.stderr.contains("latin1.graphql is not valid UTF-8"), "{}", out.describe());
    let out = ops_run(&dir, &dir.join("missing"));
    out.assert_code(2);
    assert!(out.stderr.contains("missing"), "{}", out.describe());
}

/// A schema change with one broken operation (`UserEmail`, whose `email` at ops/a.graphql:4 is
/// removed) and one breaking change no operation uses (`Role.EDITOR`), run from the folder holding
/// them so paths are relative, as in CI.
fn ci_case(format: &str, extra: &[&str]) -> Output {
    let dir = TestDir::new();
    dir.write("old.graphql", OLD);
    dir.write(
        "new.graphql",
        changed("name: String email: String", "name: String").replacen(
            "ADMIN EDITOR VIEWER",
            "ADMIN VIEWER",
            1,
        ),
    );
    dir.write(
        "ops/a.graphql",
        "# users\nquery UserEmail {\n  user(id: \"1\") {\n    email\n  }\n}\n",
    );
    dir.write("ops/b.graphql", "query UserName {\n  user(id: \"1\") { name }\n}\n");
    let out = schemaver()
        .current_dir(dir.path())
        .args(["compare", "old.graphql", "new.graphql", "--operations", "ops", "--format", format])
        .args(extra)
        .run();
    out.assert_code(1);
    out
}

/// The official SARIF 2.1.0 schema, when installed: `RAIL_SARIF_SCHEMA`, or the copy npm's
/// `@microsoft/sarif-multitool-linux` ships, installed with
/// `npm install --prefix target/sarif @microsoft/sarif-multitool-linux`. It is never fetched here.
fn sarif_schema() -> Option<Value> {
    let path = std::env::var_os("RAIL_SARIF_SCHEMA").map_or_else(
        || {
            workspace_root()
                .join("target/sarif/node_modules/@microsoft/sarif-multitool-linux/sarif-2.1.0.json")
        },
        PathBuf::from,
    );
    let text = fs_err::read_to_string(&path).ok()?;
    Some(serde_json::from_str(&text).expect("the SARIF schema is JSON"))
}

#[test]
fn sarif_points_at_broken_operations_and_schema_lines() {
    let sarif = ci_case("sarif", &[]).json();
    if let Some(schema) = sarif_schema() {
        let validator = jsonschema::validator_for(&schema).expect("the SARIF schema compiles");
        let errors: Vec<String> = validator
            .iter_errors(&sarif)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "not valid SARIF 2.1.0: {errors:#?}");
    }
    // Checked whether or not the schema is installed: the parts SARIF viewers need.
    assert_eq!(sarif["version"], "2.1.0");
    let run = &sarif["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "schemaver");
    let rules: Vec<&str> = run["tool"]["driver"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    let results = run["results"].as_array().unwrap();
    let mut found = Vec::new();
    for r in results {
        let rule = r["ruleId"].as_str().unwrap();
        assert_eq!(rules[r["ruleIndex"].as_u64().unwrap() as usize], rule);
        assert!(["error", "warning", "note"].contains(&r["level"].as_str().unwrap()), "{r}");
        assert!(!r["message"]["text"].as_str().unwrap().is_empty());
        assert_eq!(r["partialFingerprints"]["schemaver/v1"].as_str().unwrap().len(), 64);
        let physical = &r["locations"][0]["physicalLocation"];
        found.push((
            rule.to_owned(),
            r["level"].as_str().unwrap().to_owned(),
            physical["artifactLocation"]["uri"].as_str().unwrap().to_owned(),
            physical["region"]["startLine"].as_u64().unwrap(),
        ));
    }
    found.sort();
    // `email` is gone from new.graphql, so its change points at `type User` there (line 9);
    // `EDITOR` at `enum Role` (line 12).
    assert_eq!(
        found,
        [
            ("ENUM_VALUE_REMOVED".to_owned(), "error".to_owned(), "new.graphql".to_owned(), 12),
            ("FIELD_REMOVED".to_owned(), "error".to_owned(), "new.graphql".to_owned(), 9),
            ("broken-operation".to_owned(), "error".to_owned(), "ops/a.graphql".to_owned(), 4),
        ]
    );
    let broken = results.iter().find(|r| r["ruleId"] == "broken-operation").unwrap();
    assert_eq!(
        broken["message"]["text"],
        "query UserEmail is broken by the new schema: type `User` does not have a field `email`"
    );

    // With --consider-usage the unused removal is a warning and no longer fails on its own.
    let sarif = ci_case("sarif", &["--consider-usage"]).json();
    let editor = sarif["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ruleId"] == "ENUM_VALUE_REMOVED")
        .unwrap();
    assert_eq!(editor["level"], "warning");
    assert!(editor["message"]["text"]
        .as_str()
        .unwrap()
        .ends_with("(breaking, unused by the 2 known operations)"));
}

#[test]
fn gitlab_code_quality_has_the_documented_fields() {
    let report = ci_case("gitlab", &[]).json();
    let issues = report.as_array().unwrap();
    assert_eq!(issues.len(), 3);
    let mut fingerprints = std::collections::HashSet::new();
    for issue in issues {
        for field in ["description", "check_name", "fingerprint", "severity"] {
            assert!(issue[field].as_str().is_some_and(|s| !s.is_empty()), "{field} in {issue}");
        }
        assert!(["info", "minor", "major", "critical", "blocker"]
            .contains(&issue["severity"].as_str().unwrap()));
        assert!(issue["location"]["path"].is_string(), "{issue}");
        assert!(issue["location"]["lines"]["begin"].as_u64().unwrap() >= 1, "{issue}");
        assert!(
            fingerprints.insert(issue["fingerprint"].as_str().unwrap().to_owned()),
            "unique fingerprints"
        );
    }
    let broken = issues.iter().find(|i| i["check_name"] == "broken-operation").unwrap();
    assert_eq!(broken["severity"], "blocker");
    assert_eq!(
        broken["location"],
        serde_json::json!({"path": "ops/a.graphql", "lines": {"begin": 4}})
    );
    let removed = issues.iter().find(|i| i["check_name"] == "FIELD_REMOVED").unwrap();
    assert_eq!(removed["severity"], "critical");
    assert_eq!(
        removed["location"],
        serde_json::json!({"path": "new.graphql", "lines": {"begin": 9}})
    );
    assert_eq!(
        removed["description"],
        "FIELD_REMOVED: Field 'email' was removed from object type 'User'"
    );
}

/// (suite name, tests attribute, failures attribute, [(case name, failure message)])
type Suite = (String, u64, u64, Vec<(String, Option<String>)>);

#[test]
fn junit_is_xml_with_a_suite_for_the_schema_and_one_for_the_operations() {
    use quick_xml::events::Event;

    let out = ci_case("junit", &[]);
    let mut reader = quick_xml::Reader::from_str(&out.stdout);
    let mut suites: Vec<Suite> = Vec::new();
    let mut root = None;
    let attr = |e: &quick_xml::events::BytesStart<'_>, name: &str| -> String {
        e.try_get_attribute(name)
            .unwrap()
            .unwrap_or_else(|| panic!("no {name} attribute"))
            .normalized_value(quick_xml::XmlVersion::Explicit1_0)
            .unwrap()
            .into_owned()
    };
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Eof => break,
            Event::Start(e) | Event::Empty(e) => match e.name().as_ref() {
                b"testsuites" => root = Some(attr(&e, "tests")),
                b"testsuite" => suites.push((
                    attr(&e, "name"),
                    attr(&e, "tests").parse().unwrap(),
                    attr(&e, "failures").parse().unwrap(),
                    Vec::new(),
                )),
                b"testcase" => suites
                    .last_mut()
                    .expect("a case inside a suite")
                    .3
                    .push((attr(&e, "name"), None)),
                b"failure" => {
                    let case =
                        suites.last_mut().unwrap().3.last_mut().expect("a failure inside a case");
                    case.1 = Some(attr(&e, "message"));
                }
                _ => {}
            },
            _ => {}
        }
    }
    assert_eq!(suites.len(), 2, "{}", out.stdout);
    let total: u64 = suites.iter().map(|s| s.1).sum();
    assert_eq!(root, Some(total.to_string()));
    for (name, tests, failures, cases) in &suites {
        assert_eq!(*tests as usize, cases.len(), "{name}");
        assert_eq!(*failures as usize, cases.iter().filter(|c| c.1.is_some()).count(), "{name}");
    }
    let ops = &suites[1];
    assert_eq!((ops.0.as_str(), ops.1, ops.2), ("client operations", 2, 1));
    let user_email = ops.3.iter().find(|c| c.0 == "UserEmail").unwrap();
    assert_eq!(
        user_email.1.as_deref(),
        Some("query UserEmail is broken by the new schema: type `User` does not have a field `email`")
    );
    assert!(ops.3.iter().any(|c| c.0 == "UserName" && c.1.is_none()));
    assert!(suites[0].0.starts_with("schema changes: old.graphql → new.graphql"));
    assert_eq!((suites[0].1, suites[0].2), (2, 2));
}

#[test]
fn github_workflow_commands_annotate_files_and_lines() {
    let out = ci_case("github", &[]);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines.contains(&"::error file=ops/a.graphql,line=4,title=broken-operation::query UserEmail is broken by the new schema: type `User` does not have a field `email`"),
        "{}",
        out.stdout
    );
    assert!(
        lines.contains(&"::error file=new.graphql,line=9,title=FIELD_REMOVED::FIELD_REMOVED: Field 'email' was removed from object type 'User'"),
        "{}",
        out.stdout
    );
    assert_eq!(
        *lines.last().unwrap(),
        "schemaver: 2 breaking, 0 dangerous, 0 safe change(s); 1 of 2 operation(s) broken"
    );
    let out = ci_case("github", &["--consider-usage"]);
    assert!(
        out.stdout.contains("::warning file=new.graphql,line=12,title=ENUM_VALUE_REMOVED::"),
        "{}",
        out.stdout
    );
}

/// Documents are cheap to hide in a source: 200,000 one-line templates in a 3 MB file stop at the
/// limit on operations, naming the file, rather than being validated one by one.
#[test]
fn a_source_with_two_hundred_thousand_documents_stops_at_the_limit() {
    let dir = TestDir::new();
    let many = dir.write("many.js", "const q = gql`{ user(id: 1) { id } }`;\n".repeat(200_000));
    let out = ops_run(&dir, &many);
    out.assert_code(2);
    assert!(
        out.stderr
            .contains(&format!("{}: more than 100000 operations and fragments", many.display())),
        "{}",
        out.describe()
    );
}

/// `check` against the active stored version, reported for people: the text and Markdown reports
/// name the broken operation, its place and the error.
#[test]
fn check_against_the_store_reports_broken_operations_in_text_and_markdown() {
    let dir = TestDir::new();
    let store = dir.join("store");
    let old = dir.write("old.graphql", OLD);
    let new = dir.write("new.graphql", changed("name: String email: String", "name: String"));
    let ops =
        dir.write("ops/a.graphql", "query UserEmail {\n  user(id: \"1\") {\n    email\n  }\n}\n");
    crate::run_in(
        &store,
        &["create", "--version", "1.0.0", "--schema", old.to_str().unwrap(), "--activate"],
    )
    .assert_success();
    let check = |format: &str| {
        schemaver()
            .env("RAIL_SCHEMA_DIR", &store)
            .args(["check", "--schema"])
            .arg(&new)
            .arg("--operations")
            .arg(&ops)
            .args(["--format", format])
            .run()
    };
    let out = check("text");
    out.assert_code(1);
    assert!(
        out.stdout
            .contains("Operations: 1 in 1 file(s): 1 broken, 0 ok, 0 invalid on the old schema"),
        "{}",
        out.describe()
    );
    assert!(
        out.stdout.contains(&format!("✖ query UserEmail ({}:1)", ops.display())),
        "{}",
        out.describe()
    );
    assert!(
        out.stdout
            .contains(&format!("{}:3: type `User` does not have a field `email`", ops.display())),
        "{}",
        out.describe()
    );
    let out = check("markdown");
    out.assert_code(1);
    assert!(
        out.stdout.contains("### ✖ Client operations: 1 broken of 1 in 1 file(s)"),
        "{}",
        out.describe()
    );
    // The stored version is no file: its changes have no line, the operation still has one.
    let out = check("sarif");
    let sarif = out.json();
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    let removed = results.iter().find(|r| r["ruleId"] == "FIELD_REMOVED").unwrap();
    assert_eq!(
        removed["locations"][0]["physicalLocation"]["region"]["startLine"], 9,
        "new.graphql is a file"
    );
    assert_eq!(removed["locations"][0]["logicalLocations"][0]["fullyQualifiedName"], "User.email");
}

/// Operations that are all invalid on the old schema (another API's, a wrong folder) make no
/// breaking change "unused": --consider-usage then downgrades nothing, and says so. A file named
/// twice is read once.
#[test]
fn consider_usage_with_no_known_operation_downgrades_nothing() {
    let dir = TestDir::new();
    let old = dir.write("old.graphql", OLD);
    let new = dir.write("new.graphql", changed("name: String email: String", "name: String"));
    let ops =
        dir.write("ops/other.graphql", "query Other {\n  repository(name: \"x\") { id }\n}\n");
    let out = schemaver()
        .arg("compare")
        .arg(&old)
        .arg(&new)
        .arg("--operations")
        .arg(&ops)
        .arg(&ops)
        .arg(dir.join("ops"))
        .args(["--consider-usage", "--format", "json"])
        .run();
    out.assert_code(1);
    assert!(
        out.stderr.contains(
            "no operation is valid on the old schema: --consider-usage downgrades nothing"
        ),
        "{}",
        out.describe()
    );
    let json = out.json();
    assert_eq!(change(&json, "FIELD_REMOVED", "User.email")["level"], "breaking");
    assert_eq!(json["operations"]["checked"], 1, "read once: {}", json["operations"]);
    assert_eq!(json["operations"]["files"], 1);
    assert_eq!(json["operations"]["invalid_on_old"][0]["name"], "Other");
}
