//! Every change type, on small hand-written schemas, with the type, level, path and message
//! GraphQL Inspector gives (the cases were checked against `graphql-inspector diff`; where schemaver
//! reports more, it is a change Inspector's simplification hides, as in `hidden`).

use super::{diff, diff_and_simplify, simplify, ChangeType};
use crate::schema;

fn model(sdl: &str) -> schema::Schema {
    schema::load(sdl.as_bytes(), "test.graphql").expect("test schema parses").model
}

/// Compare two schemas and expect exactly `expected` (type, level, path or "", message), in order.
fn check(old: &str, new: &str, expected: &[(&str, &str, &str, &str)]) {
    let changes = diff_and_simplify(&model(old), &model(new));
    let got: Vec<(String, String, String, String)> = changes
        .iter()
        .map(|c| {
            (
                c.kind.as_str().to_owned(),
                c.level.as_str().to_owned(),
                c.path.clone().unwrap_or_default(),
                c.message.clone(),
            )
        })
        .collect();
    let want: Vec<(String, String, String, String)> = expected
        .iter()
        .map(|(t, l, p, m)| ((*t).to_owned(), (*l).to_owned(), (*p).to_owned(), (*m).to_owned()))
        .collect();
    if got != want {
        let missing: Vec<_> = want.iter().filter(|w| !got.contains(w)).collect();
        let extra: Vec<_> = got.iter().filter(|g| !want.contains(g)).collect();
        panic!("changes differ\nmissing: {missing:#?}\nunexpected: {extra:#?}\nall: {got:#?}");
    }
}

#[test]
fn every_change_type_is_covered_by_a_case() {
    let source = include_str!("tests.rs");
    for kind in ChangeType::ALL {
        assert!(source.contains(&format!("\"{}\"", kind.as_str())), "no case covers {kind}");
    }
}

#[test]
fn identical_schemas_have_no_changes() {
    let sdl = "type Query { a(x: Int = 1): [String!]! @deprecated } enum E { A B }";
    assert!(diff(&model(sdl), &model(sdl)).is_empty());
}

#[test]
fn simplify_keeps_what_it_cannot_derive() {
    // A removal under a type that gained an interface: Inspector drops it, schemaver must not.
    let old = model("type Query { u: U } interface N { id: ID } type U { id: ID email: String }");
    let new = model("type Query { u: U } interface N { id: ID } type U implements N { id: ID }");
    let kinds: Vec<ChangeType> = simplify(diff(&old, &new)).iter().map(|c| c.kind).collect();
    assert_eq!(kinds, [ChangeType::ObjectTypeInterfaceAdded, ChangeType::FieldRemoved]);
}

#[test]
fn introspection_and_sdl_of_the_same_schema_do_not_differ() {
    let sdl = r#"
        type Query { a(x: Int = 1, y: [E!] = [A]): String @deprecated(reason: "no") b: I }
        interface I { id: ID! }
        type T implements I { id: ID! }
        enum E { A B @deprecated }
        input In { f: Float = 1.5 o: In2 = {s: "x"} }
        input In2 { s: String }
        union U = T
        scalar Date
        directive @d(a: Int = 2) repeatable on FIELD_DEFINITION
    "#;
    let json = r#"{"data":{"__schema":{
        "queryType":{"name":"Query"},"mutationType":null,"subscriptionType":null,
        "types":[
          {"kind":"OBJECT","name":"Query","fields":[
            {"name":"a","args":[
               {"name":"x","type":{"kind":"SCALAR","name":"Int"},"defaultValue":"1"},
               {"name":"y","type":{"kind":"LIST","ofType":{"kind":"NON_NULL","ofType":{"kind":"ENUM","name":"E"}}},"defaultValue":"[A]"}],
             "type":{"kind":"SCALAR","name":"String"},"isDeprecated":true,"deprecationReason":"no"},
            {"name":"b","args":[],"type":{"kind":"INTERFACE","name":"I"},"isDeprecated":false}],"interfaces":[]},
          {"kind":"INTERFACE","name":"I","fields":[{"name":"id","args":[],"type":{"kind":"NON_NULL","ofType":{"kind":"SCALAR","name":"ID"}}}],"interfaces":[],"possibleTypes":[{"kind":"OBJECT","name":"T"}]},
          {"kind":"OBJECT","name":"T","fields":[{"name":"id","args":[],"type":{"kind":"NON_NULL","ofType":{"kind":"SCALAR","name":"ID"}}}],"interfaces":[{"kind":"INTERFACE","name":"I"}]},
          {"kind":"ENUM","name":"E","enumValues":[{"name":"A","isDeprecated":false},{"name":"B","isDeprecated":true,"deprecationReason":"No longer supported"}]},
          {"kind":"INPUT_OBJECT","name":"In","inputFields":[
            {"name":"f","type":{"kind":"SCALAR","name":"Float"},"defaultValue":"1.5"},
            {"name":"o","type":{"kind":"INPUT_OBJECT","name":"In2"},"defaultValue":"{s: \"x\"}"}]},
          {"kind":"INPUT_OBJECT","name":"In2","inputFields":[{"name":"s","type":{"kind":"SCALAR","name":"String"}}]},
          {"kind":"UNION","name":"U","possibleTypes":[{"kind":"OBJECT","name":"T"}]},
          {"kind":"SCALAR","name":"Date"},
          {"kind":"SCALAR","name":"String"},{"kind":"SCALAR","name":"Int"},{"kind":"SCALAR","name":"Float"},
          {"kind":"OBJECT","name":"__Schema","fields":[]}],
        "directives":[
          {"name":"d","isRepeatable":true,"locations":["FIELD_DEFINITION"],"args":[{"name":"a","type":{"kind":"SCALAR","name":"Int"},"defaultValue":"2"}]},
          {"name":"deprecated","locations":["FIELD_DEFINITION"],"args":[]}]}}}"#;
    let from_sdl = model(sdl);
    let loaded = schema::load(json.as_bytes(), "test.json").unwrap();
    assert!(loaded.from_introspection);
    let changes: Vec<String> = diff(&from_sdl, &loaded.model)
        .into_iter()
        .filter(|c| !c.kind.is_directive_usage())
        .map(|c| c.message)
        .collect();
    assert!(changes.is_empty(), "{changes:#?}");
    // The SDL printed from introspection reads back as the same schema.
    let reread = model(&loaded.sdl);
    let changes: Vec<String> = diff(&loaded.model, &reread)
        .into_iter()
        .filter(|c| !c.kind.is_directive_usage())
        .map(|c| c.message)
        .collect();
    assert!(changes.is_empty(), "{changes:#?}\n{}", loaded.sdl);
}

#[test]
fn types() {
    check(
        r#"schema { query: Query mutation: Mutation }
type Query { a: String obj: Obj u: U e: E i: I k: KindChange }
type Mutation { m: Int }
type Obj { x: Int }
type Gone { x: Int }
scalar KindChange
union U = Obj | Other
type Other { o: Int }
enum E { A B }
interface I { id: ID }
"old description"
type Described { d: Int }
"removed description"
type Undescribed { d: Int }
type LaterDescribed { d: Int }
type Impl implements I { id: ID }
"#,
        r#"schema { query: Query subscription: Subscription }
type Query { a: String obj: Obj u: U e: E i: I k: KindChange }
type Subscription { s: Int }
type Mutation { m: Int }
type Obj implements I { x: Int id: ID }
"a new type"
type New { y: Int }
type KindChange { z: Int }
union U = Obj | New
type Other { o: Int }
enum E { A B }
interface I { id: ID }
"new description"
type Described { d: Int }
type Undescribed { d: Int }
"it's described"
type LaterDescribed { d: Int }
type Impl { id: ID }
"#,
        &[
            ("SCHEMA_MUTATION_TYPE_CHANGED", "breaking", "", "Schema mutation type 'Mutation' was removed."),
            ("SCHEMA_SUBSCRIPTION_TYPE_CHANGED", "safe", "", "Schema subscription type was set to 'Subscription'."),
            ("TYPE_DESCRIPTION_CHANGED", "safe", "Described", "Description 'old description' on type 'Described' has changed to 'new description'"),
            ("TYPE_REMOVED", "breaking", "Gone", "Type 'Gone' was removed"),
            ("OBJECT_TYPE_INTERFACE_REMOVED", "breaking", "Impl", "'Impl' object type no longer implements 'I' interface"),
            ("TYPE_KIND_CHANGED", "breaking", "KindChange", "'KindChange' kind changed from 'ScalarTypeDefinition' to 'ObjectTypeDefinition'"),
            ("TYPE_DESCRIPTION_ADDED", "safe", "LaterDescribed", "Object type 'LaterDescribed' has description 'it\\'s described'"),
            ("TYPE_ADDED", "safe", "New", "Type 'New' was added"),
            ("OBJECT_TYPE_INTERFACE_ADDED", "dangerous", "Obj", "'Obj' object implements 'I' interface"),
            ("FIELD_ADDED", "safe", "Obj.id", "Field 'id' was added to object type 'Obj'"),
            ("TYPE_ADDED", "safe", "Subscription", "Type 'Subscription' was added"),
            ("UNION_MEMBER_ADDED", "dangerous", "U", "Member 'New' was added to Union type 'U'"),
            ("UNION_MEMBER_REMOVED", "breaking", "U", "Member 'Other' was removed from Union type 'U'"),
            ("TYPE_DESCRIPTION_REMOVED", "safe", "Undescribed", "Description 'removed description' was removed from object type 'Undescribed'"),
        ],
    );
}

#[test]
fn fields() {
    check(
        r#"type Query {
  removed: Int
  old: Int @deprecated(reason: "use new")
  nullable: String
  strict: String!
  list: [String]
  listStrict: [String!]!
  changedType: Int
  "desc"
  descChanged: Int
  "gone"
  descRemoved: Int
  descAdded: Int
  "x"
  descEmptied: Int
  depAdded: Int
  depRemoved: Int @deprecated
  depReasonAdded: Int @deprecated
  depReasonChanged: Int @deprecated(reason: "a")
  depReasonRemoved: Int @deprecated(reason: "b")
  args(a: Int, b: String = "x", c: Int!, d: [Int] = [1, 2], e: Int, f: In = {x: 1}): Int
}
interface Iface { gone: Int kept: Int }
input In { x: Int y: Int = 2 }
"#,
        r#"type Query {
  added: Int
  nullable: String!
  strict: String
  list: [String!]
  listStrict: [String]!
  changedType: String
  "desc changed"
  descChanged: Int
  descRemoved: Int
  "it's new"
  descAdded: Int
  ""
  descEmptied: Int
  depAdded: Int @deprecated(reason: "no")
  depRemoved: Int
  depReasonAdded: Int @deprecated(reason: "why")
  depReasonChanged: Int @deprecated(reason: "c")
  depReasonRemoved: Int @deprecated
  args("described" a: Int, b: String = "y", c: Int, d: [Int] = 1, e: Int = 5, f: In = {x: 2}, g: Int!, h: Int! = 1, i: String): Int
  newWithArgs(x: Int!, y: String): Int
}
interface Iface { kept: Int added: String }
input In { x: Int y: Int = 2 }
"#,
        &[
            ("FIELD_ADDED", "safe", "Iface.added", "Field 'added' was added to interface 'Iface'"),
            ("FIELD_REMOVED", "breaking", "Iface.gone", "Field 'gone' was removed from interface 'Iface'"),
            ("FIELD_ADDED", "safe", "Query.added", "Field 'added' was added to object type 'Query'"),
            ("FIELD_ARGUMENT_DESCRIPTION_CHANGED", "safe", "Query.args.a", "Description 'described' was added to argument 'a' on field 'Query.args'"),
            ("FIELD_ARGUMENT_DEFAULT_CHANGED", "dangerous", "Query.args.b", "Default value for argument 'b' on field 'Query.args' changed from '\"x\"' to '\"y\"'"),
            ("FIELD_ARGUMENT_TYPE_CHANGED", "safe", "Query.args.c", "Type for argument 'c' on field 'Query.args' changed from 'Int!' to 'Int'"),
            ("FIELD_ARGUMENT_DEFAULT_CHANGED", "dangerous", "Query.args.d", "Default value for argument 'd' on field 'Query.args' changed from '[ 1, 2 ]' to '[ 1 ]'"),
            ("FIELD_ARGUMENT_DEFAULT_CHANGED", "dangerous", "Query.args.e", "Default value '5' was added to argument 'e' on field 'Query.args'"),
            ("FIELD_ARGUMENT_DEFAULT_CHANGED", "dangerous", "Query.args.f", "Default value for argument 'f' on field 'Query.args' changed from '{ x: 1, y: 2 }' to '{ x: 2, y: 2 }'"),
            ("FIELD_ARGUMENT_ADDED", "breaking", "Query.args.g", "Argument 'g: Int!' added to field 'Query.args'"),
            ("FIELD_ARGUMENT_ADDED", "dangerous", "Query.args.h", "Argument 'h: Int!' (with default value) added to field 'Query.args'"),
            ("FIELD_ARGUMENT_ADDED", "dangerous", "Query.args.i", "Argument 'i: String' added to field 'Query.args'"),
            ("FIELD_TYPE_CHANGED", "breaking", "Query.changedType", "Field 'Query.changedType' changed type from 'Int' to 'String'"),
            ("FIELD_DEPRECATION_ADDED", "safe", "Query.depAdded.@deprecated", "Field 'Query.depAdded' is deprecated"),
            ("FIELD_DEPRECATION_REASON_ADDED", "safe", "Query.depReasonAdded.@deprecated", "Field 'Query.depReasonAdded' has deprecation reason 'why'"),
            ("FIELD_DEPRECATION_REASON_CHANGED", "safe", "Query.depReasonChanged.@deprecated", "Deprecation reason on field 'Query.depReasonChanged' has changed from 'a' to 'c'"),
            ("FIELD_DEPRECATION_REASON_REMOVED", "safe", "Query.depReasonRemoved", "Deprecation reason was removed from field 'Query.depReasonRemoved'"),
            ("DIRECTIVE_USAGE_ARGUMENT_REMOVED", "dangerous", "Query.depReasonRemoved.@deprecated.reason", "Argument 'reason' was removed from '@deprecated'"),
            ("FIELD_DEPRECATION_REMOVED", "safe", "Query.depRemoved.@deprecated", "Field 'Query.depRemoved' is no longer deprecated"),
            ("FIELD_DESCRIPTION_ADDED", "safe", "Query.descAdded", "Field 'Query.descAdded' has description 'it\\'s new'"),
            ("FIELD_DESCRIPTION_CHANGED", "safe", "Query.descChanged", "Field 'Query.descChanged' description changed from 'desc' to 'desc changed'"),
            ("FIELD_DESCRIPTION_CHANGED", "safe", "Query.descEmptied", "Field 'Query.descEmptied' description 'x' was removed"),
            ("FIELD_DESCRIPTION_REMOVED", "safe", "Query.descRemoved", "Description was removed from field 'Query.descRemoved'"),
            ("FIELD_TYPE_CHANGED", "safe", "Query.list", "Field 'Query.list' changed type from '[String]' to '[String!]'"),
            ("FIELD_TYPE_CHANGED", "breaking", "Query.listStrict", "Field 'Query.listStrict' changed type from '[String!]!' to '[String]!'"),
            ("FIELD_ADDED", "safe", "Query.newWithArgs", "Field 'newWithArgs' was added to object type 'Query'"),
            ("FIELD_TYPE_CHANGED", "safe", "Query.nullable", "Field 'Query.nullable' changed type from 'String' to 'String!'"),
            ("FIELD_REMOVED", "breaking", "Query.old", "Field 'old' (deprecated) was removed from object type 'Query'"),
            ("FIELD_REMOVED", "breaking", "Query.removed", "Field 'removed' was removed from object type 'Query'"),
            ("FIELD_TYPE_CHANGED", "breaking", "Query.strict", "Field 'Query.strict' changed type from 'String!' to 'String'"),
        ],
    );
}

#[test]
fn inputs() {
    check(
        r#"type Query { f(i: In, e: E): Int }
input In {
  removed: Int
  dep: Int @deprecated
  typeLoose: Int!
  typeStrict: Int
  typeChange: Int
  defaultChanged: Int = 1
  defaultRemoved: String = "a"
  defaultAdded: Int
  "d" descChanged: Int
  "d" descRemoved: Int
  descAdded: Int
  listDefault: [E!] = [A]
  obj: Nested = {a: 1}
}
input Nested { a: Int b: Int = 3 }
enum E {
  A
  B
  Gone
  GoneDep @deprecated(reason: "x")
  "d" DescChanged
  DescAdded
  "d" DescRemoved
  DepAdded
  DepDefault @deprecated
  DepReasonChanged @deprecated(reason: "a")
  DepReasonRemoved @deprecated(reason: "b")
}
"#,
        r#"type Query { f(i: In, e: E): Int }
input In {
  dep2: Int
  typeLoose: Int
  typeStrict: Int!
  typeChange: String
  defaultChanged: Int = 2
  defaultRemoved: String
  defaultAdded: Int = 3
  "d2" descChanged: Int
  descRemoved: Int
  "it's" descAdded: Int
  listDefault: [E!] = [A, B]
  obj: Nested = {a: 1, b: 3}
  addedNullable: Int
  addedRequired: Int!
  addedDefault: Int = 1
  addedRequiredDefault: Int! = 1
}
input Nested { a: Int b: Int = 3 }
enum E {
  A
  B
  C
  "d2" DescChanged
  "new" DescAdded
  DescRemoved
  DepAdded @deprecated(reason: "old")
  DepDefault @deprecated(reason: "now")
  DepReasonChanged @deprecated(reason: "c")
  DepReasonRemoved @deprecated
}
"#,
        &[
            ("ENUM_VALUE_ADDED", "dangerous", "E.C", "Enum value 'C' was added to enum 'E'"),
            ("ENUM_VALUE_DEPRECATION_REASON_ADDED", "safe", "E.DepAdded.@deprecated", "Enum value 'E.DepAdded' was deprecated with reason 'old'"),
            ("ENUM_VALUE_DEPRECATION_REASON_ADDED", "safe", "E.DepDefault.@deprecated", "Enum value 'E.DepDefault' was deprecated with reason 'now'"),
            ("ENUM_VALUE_DEPRECATION_REASON_CHANGED", "safe", "E.DepReasonChanged.@deprecated", "Enum value 'E.DepReasonChanged' deprecation reason changed from 'a' to 'c'"),
            ("ENUM_VALUE_DEPRECATION_REASON_REMOVED", "safe", "E.DepReasonRemoved", "Deprecation reason was removed from enum value 'E.DepReasonRemoved'"),
            ("DIRECTIVE_USAGE_ARGUMENT_REMOVED", "dangerous", "E.DepReasonRemoved.@deprecated.reason", "Argument 'reason' was removed from '@deprecated'"),
            ("ENUM_VALUE_DESCRIPTION_CHANGED", "safe", "E.DescAdded", "Description 'new' was added to enum value 'E.DescAdded'"),
            ("ENUM_VALUE_DESCRIPTION_CHANGED", "safe", "E.DescChanged", "Description for enum value 'E.DescChanged' changed from 'd' to 'd2'"),
            ("ENUM_VALUE_DESCRIPTION_CHANGED", "safe", "E.DescRemoved", "Description 'd' was removed from enum value 'E.DescRemoved'"),
            ("ENUM_VALUE_REMOVED", "breaking", "E.Gone", "Enum value 'Gone' was removed from enum 'E'"),
            ("ENUM_VALUE_REMOVED", "breaking", "E.GoneDep", "Enum value 'GoneDep' (deprecated) was removed from enum 'E'"),
            ("INPUT_FIELD_ADDED", "dangerous", "In.addedDefault", "Input field 'addedDefault' of type 'Int' with default value '1' was added to input object type 'In'"),
            ("INPUT_FIELD_ADDED", "safe", "In.addedNullable", "Input field 'addedNullable' of type 'Int' was added to input object type 'In'"),
            ("INPUT_FIELD_ADDED", "breaking", "In.addedRequired", "Input field 'addedRequired' of type 'Int!' was added to input object type 'In'"),
            ("INPUT_FIELD_ADDED", "dangerous", "In.addedRequiredDefault", "Input field 'addedRequiredDefault' of type 'Int!' with default value '1' was added to input object type 'In'"),
            ("INPUT_FIELD_DEFAULT_VALUE_CHANGED", "dangerous", "In.defaultAdded", "Input field 'In.defaultAdded' default value changed from 'undefined' to '3'"),
            ("INPUT_FIELD_DEFAULT_VALUE_CHANGED", "dangerous", "In.defaultChanged", "Input field 'In.defaultChanged' default value changed from '1' to '2'"),
            ("INPUT_FIELD_DEFAULT_VALUE_CHANGED", "dangerous", "In.defaultRemoved", "Input field 'In.defaultRemoved' default value changed from '\"a\"' to 'undefined'"),
            ("INPUT_FIELD_REMOVED", "breaking", "In.dep", "Input field 'dep' (deprecated) was removed from input object type 'In'"),
            ("INPUT_FIELD_ADDED", "safe", "In.dep2", "Input field 'dep2' of type 'Int' was added to input object type 'In'"),
            ("INPUT_FIELD_DESCRIPTION_ADDED", "safe", "In.descAdded", "Input field 'In.descAdded' has description 'it\\'s'"),
            ("INPUT_FIELD_DESCRIPTION_CHANGED", "safe", "In.descChanged", "Input field 'In.descChanged' description changed from 'd' to 'd2'"),
            ("INPUT_FIELD_DESCRIPTION_REMOVED", "safe", "In.descRemoved", "Description 'd' was removed from input field 'In.descRemoved'"),
            ("INPUT_FIELD_DEFAULT_VALUE_CHANGED", "dangerous", "In.listDefault", "Input field 'In.listDefault' default value changed from '[ 'A' ]' to '[ 'A', 'B' ]'"),
            ("INPUT_FIELD_REMOVED", "breaking", "In.removed", "Input field 'removed' was removed from input object type 'In'"),
            ("INPUT_FIELD_TYPE_CHANGED", "breaking", "In.typeChange", "Input field 'In.typeChange' changed type from 'Int' to 'String'"),
            ("INPUT_FIELD_TYPE_CHANGED", "safe", "In.typeLoose", "Input field 'In.typeLoose' changed type from 'Int!' to 'Int'"),
            ("INPUT_FIELD_TYPE_CHANGED", "breaking", "In.typeStrict", "Input field 'In.typeStrict' changed type from 'Int' to 'Int!'"),
        ],
    );
}

#[test]
fn directives() {
    check(
        r#"directive @gone on FIELD_DEFINITION
"d" directive @desc on FIELD_DEFINITION
directive @rep repeatable on OBJECT
directive @norep on OBJECT
directive @loc on FIELD_DEFINITION | OBJECT
directive @args(a: Int, b: String = "x", c: Int, d: Int, "x" e: Int) on FIELD_DEFINITION
directive @tag(name: String) repeatable on FIELD_DEFINITION | OBJECT | INTERFACE | UNION | ENUM | ENUM_VALUE | INPUT_OBJECT | INPUT_FIELD_DEFINITION | ARGUMENT_DEFINITION | SCALAR | SCHEMA
schema @tag(name: "s") { query: Query }
type Query @tag(name: "q") @tag(name: "q2") {
  f(arg: Int @tag(name: "a")): Int @tag(name: "f")
  g: Int
  h(x: In): Int @tag
}
interface I @tag { id: ID }
union U @tag = Query
enum E @tag { A @tag(name: "v") B }
input In @tag { x: Int @tag(name: "x") y: Int @deprecated }
scalar S @tag
"#,
        r#""d2" directive @desc on FIELD_DEFINITION
directive @rep on OBJECT
directive @norep repeatable on OBJECT
directive @loc on FIELD_DEFINITION | ENUM
directive @args(a: Int!, b: String = "y", "desc" c: Int, e: Int, f: Int!, g: Int) on FIELD_DEFINITION
directive @tag(name: String) repeatable on FIELD_DEFINITION | OBJECT | INTERFACE | UNION | ENUM | ENUM_VALUE | INPUT_OBJECT | INPUT_FIELD_DEFINITION | ARGUMENT_DEFINITION | SCALAR | SCHEMA
directive @added(x: Int!) on FIELD_DEFINITION
schema @tag(name: "s2") @oneMore { query: Query }
directive @oneMore on SCHEMA
type Query @tag(name: "q") {
  f(arg: Int @tag(name: "b")): Int @tag(name: "f") @added(x: 1)
  g: Int @tag(name: "g")
  h(x: In): Int @tag(name: "h")
}
interface I { id: ID }
union U = Query
enum E { A @tag B @tag(name: "b") }
input In @tag(name: "in") { x: Int y: Int @deprecated(reason: "r") }
scalar S
"#,
        &[
            ("DIRECTIVE_USAGE_SCHEMA_ADDED", "dangerous", ".@oneMore", "Directive 'oneMore' was added to schema"),
            ("DIRECTIVE_USAGE_ARGUMENT_REMOVED", "dangerous", ".@tag.name", "Argument 'name' was removed from '@tag'"),
            ("DIRECTIVE_USAGE_ARGUMENT_ADDED", "safe", ".@tag.name", "Argument 'name' was added to '@tag'"),
            ("DIRECTIVE_ADDED", "safe", "@added", "Directive 'added' was added"),
            ("DIRECTIVE_ARGUMENT_ADDED", "breaking", "@args", "Argument 'f' was added to directive 'args'"),
            ("DIRECTIVE_ARGUMENT_ADDED", "safe", "@args", "Argument 'g' was added to directive 'args'"),
            ("DIRECTIVE_ARGUMENT_TYPE_CHANGED", "breaking", "@args.a", "Type for argument 'a' on directive 'args' changed from 'Int' to 'Int!'"),
            ("DIRECTIVE_ARGUMENT_DEFAULT_VALUE_CHANGED", "dangerous", "@args.b", "Default value for argument 'b' on directive 'args' changed from '\"x\"' to '\"y\"'"),
            ("DIRECTIVE_ARGUMENT_DESCRIPTION_CHANGED", "safe", "@args.c", "Description 'desc' was added to argument 'c' on directive 'args'"),
            ("DIRECTIVE_ARGUMENT_REMOVED", "breaking", "@args.d", "Argument 'd' was removed from directive 'args'"),
            ("DIRECTIVE_ARGUMENT_DESCRIPTION_CHANGED", "safe", "@args.e", "Description 'x' was removed from argument 'e' on directive 'args'"),
            ("DIRECTIVE_DESCRIPTION_CHANGED", "safe", "@desc", "Directive 'desc' description changed from 'd' to 'd2'"),
            ("DIRECTIVE_REMOVED", "breaking", "@gone", "Directive 'gone' was removed"),
            ("DIRECTIVE_LOCATION_ADDED", "safe", "@loc", "Location 'ENUM' was added to directive 'loc'"),
            ("DIRECTIVE_LOCATION_REMOVED", "breaking", "@loc", "Location 'OBJECT' was removed from directive 'loc'"),
            ("DIRECTIVE_REPEATABLE_ADDED", "safe", "@norep", "Directive 'norep' added repeatable."),
            ("DIRECTIVE_ADDED", "safe", "@oneMore", "Directive 'oneMore' was added"),
            ("DIRECTIVE_REPEATABLE_REMOVED", "dangerous", "@rep", "Directive 'rep' removed repeatable."),
            ("DIRECTIVE_USAGE_ENUM_REMOVED", "dangerous", "E.@tag", "Directive 'tag' was removed from enum 'E'"),
            ("DIRECTIVE_USAGE_ARGUMENT_REMOVED", "dangerous", "E.A.@tag.name", "Argument 'name' was removed from '@tag'"),
            ("DIRECTIVE_USAGE_ENUM_VALUE_ADDED", "dangerous", "E.B.@tag", "Directive 'tag' was added to enum value 'E.B'"),
            ("DIRECTIVE_USAGE_INTERFACE_REMOVED", "dangerous", "I.@tag", "Directive 'tag' was removed from interface 'I'"),
            ("DIRECTIVE_USAGE_ARGUMENT_ADDED", "safe", "In.@tag.name", "Argument 'name' was added to '@tag'"),
            ("DIRECTIVE_USAGE_INPUT_FIELD_DEFINITION_REMOVED", "dangerous", "In.x.@tag", "Directive 'tag' was removed from input field 'x' in input object 'In'"),
            ("DIRECTIVE_USAGE_ARGUMENT_ADDED", "safe", "In.y.@deprecated.reason", "Argument 'reason' was added to '@deprecated'"),
            ("DIRECTIVE_USAGE_OBJECT_REMOVED", "dangerous", "Query.@tag", "Directive 'tag' was removed from object 'Query'"),
            ("DIRECTIVE_USAGE_FIELD_DEFINITION_ADDED", "dangerous", "Query.f.@added", "Directive 'added' was added to field 'Query.f'"),
            ("DIRECTIVE_USAGE_ARGUMENT_REMOVED", "dangerous", "Query.f.arg.@tag.name", "Argument 'name' was removed from '@tag'"),
            ("DIRECTIVE_USAGE_ARGUMENT_ADDED", "safe", "Query.f.arg.@tag.name", "Argument 'name' was added to '@tag'"),
            ("DIRECTIVE_USAGE_FIELD_DEFINITION_ADDED", "dangerous", "Query.g.@tag", "Directive 'tag' was added to field 'Query.g'"),
            ("DIRECTIVE_USAGE_ARGUMENT_ADDED", "safe", "Query.h.@tag.name", "Argument 'name' was added to '@tag'"),
            ("DIRECTIVE_USAGE_SCALAR_REMOVED", "dangerous", "S.@tag", "Directive 'tag' was removed from scalar 'S'"),
            ("DIRECTIVE_USAGE_UNION_MEMBER_REMOVED", "dangerous", "U.@tag", "Directive 'tag' was removed from union member 'U'"),
        ],
    );
}

#[test]
fn nested() {
    check(
        r#"type Query { a: A }
type A { x: Int @deprecated(reason: "gone soon") }
input OneOf { a: Int b: Int }
"#,
        r#"type Query { a: A b: B }
type A implements Node { id: ID! }
interface Node { id: ID! }
"new type"
type B implements Node { id: ID! "field" f(x: Int!, y: String = "d"): E @deprecated }
enum E { ONE TWO }
input NewIn { r: Int! d: Int = 1 }
input OneOf @oneOf { a: Int b: Int }
"#,
        &[
            (
                "OBJECT_TYPE_INTERFACE_ADDED",
                "dangerous",
                "A",
                "'A' object implements 'Node' interface",
            ),
            ("FIELD_ADDED", "safe", "A.id", "Field 'id' was added to object type 'A'"),
            (
                "FIELD_REMOVED",
                "breaking",
                "A.x",
                "Field 'x' (deprecated) was removed from object type 'A'",
            ),
            ("TYPE_ADDED", "safe", "B", "Type 'B' was added"),
            ("TYPE_ADDED", "safe", "E", "Type 'E' was added"),
            ("TYPE_ADDED", "safe", "NewIn", "Type 'NewIn' was added"),
            ("TYPE_ADDED", "safe", "Node", "Type 'Node' was added"),
            (
                "DIRECTIVE_USAGE_INPUT_OBJECT_ADDED",
                "breaking",
                "OneOf.@oneOf",
                "Directive 'oneOf' was added to input object 'OneOf'",
            ),
            ("FIELD_ADDED", "safe", "Query.b", "Field 'b' was added to object type 'Query'"),
        ],
    );
}

#[test]
fn roots() {
    check(
        r"schema { query: Query mutation: M }
type Query { a: Int }
type M { b: Int }
type Root { a: Int }
",
        r"schema { query: Root }
type Query { a: Int }
type M { b: Int }
type Root { a: Int }
",
        &[
            (
                "SCHEMA_QUERY_TYPE_CHANGED",
                "breaking",
                "",
                "Schema query root type was changed from 'Query' to 'Root'",
            ),
            (
                "SCHEMA_MUTATION_TYPE_CHANGED",
                "breaking",
                "",
                "Schema mutation type 'M' was removed.",
            ),
        ],
    );
}

#[test]
fn argdirs() {
    check(
        r#"directive @tag(name: String) repeatable on ARGUMENT_DEFINITION | FIELD_DEFINITION
type Query { g(a: Int, b: Int @tag(name: "x") @tag): Int }
"#,
        r#"directive @tag(name: String) repeatable on ARGUMENT_DEFINITION | FIELD_DEFINITION
type Query { g(a: Int @tag @deprecated, b: Int @tag(name: "x")): Int }
"#,
        &[
            (
                "DIRECTIVE_USAGE_ARGUMENT_DEFINITION_ADDED",
                "safe",
                "Query.g.a.@deprecated",
                "Directive 'deprecated' was added to argument 'a' of field 'g' in type 'Query'",
            ),
            (
                "DIRECTIVE_USAGE_ARGUMENT_DEFINITION_ADDED",
                "dangerous",
                "Query.g.a.@tag",
                "Directive 'tag' was added to argument 'a' of field 'g' in type 'Query'",
            ),
            (
                "DIRECTIVE_USAGE_ARGUMENT_DEFINITION_REMOVED",
                "dangerous",
                "Query.g.b.@tag",
                "Directive 'tag' was removed from argument 'b' of field 'g' in type 'Query'",
            ),
        ],
    );
}

#[test]
fn hidden() {
    check(
        r"type Query { u: User }
interface Node { id: ID! }
type User { id: ID! email: String }
input Filter { name: String }
",
        r#"type Query { u: User }
interface Node { id: ID! }
type User implements Node { id: ID! }
input Filter { "the name" name: Int! }
"#,
        &[
            (
                "INPUT_FIELD_DESCRIPTION_ADDED",
                "safe",
                "Filter.name",
                "Input field 'Filter.name' has description 'the name'",
            ),
            (
                "INPUT_FIELD_TYPE_CHANGED",
                "breaking",
                "Filter.name",
                "Input field 'Filter.name' changed type from 'String' to 'Int!'",
            ),
            (
                "OBJECT_TYPE_INTERFACE_ADDED",
                "dangerous",
                "User",
                "'User' object implements 'Node' interface",
            ),
            (
                "FIELD_REMOVED",
                "breaking",
                "User.email",
                "Field 'email' was removed from object type 'User'",
            ),
        ],
    );
}

#[test]
fn fields_rev() {
    check(
        r#"type Query {
  added: Int
  nullable: String!
  strict: String
  list: [String!]
  listStrict: [String]!
  changedType: String
  "desc changed"
  descChanged: Int
  descRemoved: Int
  "it's new"
  descAdded: Int
  ""
  descEmptied: Int
  depAdded: Int @deprecated(reason: "no")
  depRemoved: Int
  depReasonAdded: Int @deprecated(reason: "why")
  depReasonChanged: Int @deprecated(reason: "c")
  depReasonRemoved: Int @deprecated
  args("described" a: Int, b: String = "y", c: Int, d: [Int] = 1, e: Int = 5, f: In = {x: 2}, g: Int!, h: Int! = 1, i: String): Int
  newWithArgs(x: Int!, y: String): Int
}
interface Iface { kept: Int added: String }
input In { x: Int y: Int = 2 }
"#,
        r#"type Query {
  removed: Int
  old: Int @deprecated(reason: "use new")
  nullable: String
  strict: String!
  list: [String]
  listStrict: [String!]!
  changedType: Int
  "desc"
  descChanged: Int
  "gone"
  descRemoved: Int
  descAdded: Int
  "x"
  descEmptied: Int
  depAdded: Int
  depRemoved: Int @deprecated
  depReasonAdded: Int @deprecated
  depReasonChanged: Int @deprecated(reason: "a")
  depReasonRemoved: Int @deprecated(reason: "b")
  args(a: Int, b: String = "x", c: Int!, d: [Int] = [1, 2], e: Int, f: In = {x: 1}): Int
}
interface Iface { gone: Int kept: Int }
input In { x: Int y: Int = 2 }
"#,
        &[
            ("FIELD_REMOVED", "breaking", "Iface.added", "Field 'added' was removed from interface 'Iface'"),
            ("FIELD_ADDED", "safe", "Iface.gone", "Field 'gone' was added to interface 'Iface'"),
            ("FIELD_REMOVED", "breaking", "Query.added", "Field 'added' was removed from object type 'Query'"),
            ("FIELD_ARGUMENT_DESCRIPTION_CHANGED", "safe", "Query.args.a", "Description 'described' was removed from argument 'a' on field 'Query.args'"),
            ("FIELD_ARGUMENT_DEFAULT_CHANGED", "dangerous", "Query.args.b", "Default value for argument 'b' on field 'Query.args' changed from '\"y\"' to '\"x\"'"),
            ("FIELD_ARGUMENT_TYPE_CHANGED", "breaking", "Query.args.c", "Type for argument 'c' on field 'Query.args' changed from 'Int' to 'Int!'"),
            ("FIELD_ARGUMENT_DEFAULT_CHANGED", "dangerous", "Query.args.d", "Default value for argument 'd' on field 'Query.args' changed from '[ 1 ]' to '[ 1, 2 ]'"),
            ("FIELD_ARGUMENT_DEFAULT_CHANGED", "dangerous", "Query.args.e", "Default value for argument 'e' on field 'Query.args' changed from '5' to 'undefined'"),
            ("FIELD_ARGUMENT_DEFAULT_CHANGED", "dangerous", "Query.args.f", "Default value for argument 'f' on field 'Query.args' changed from '{ x: 2, y: 2 }' to '{ x: 1, y: 2 }'"),
            ("FIELD_ARGUMENT_REMOVED", "breaking", "Query.args.g", "Argument 'g: Int!' was removed from field 'Query.args'"),
            ("FIELD_ARGUMENT_REMOVED", "breaking", "Query.args.h", "Argument 'h: Int!' was removed from field 'Query.args'"),
            ("FIELD_ARGUMENT_REMOVED", "breaking", "Query.args.i", "Argument 'i: String' was removed from field 'Query.args'"),
            ("FIELD_TYPE_CHANGED", "breaking", "Query.changedType", "Field 'Query.changedType' changed type from 'String' to 'Int'"),
            ("FIELD_DEPRECATION_REMOVED", "safe", "Query.depAdded.@deprecated", "Field 'Query.depAdded' is no longer deprecated"),
            ("FIELD_DEPRECATION_REASON_REMOVED", "safe", "Query.depReasonAdded", "Deprecation reason was removed from field 'Query.depReasonAdded'"),
            ("DIRECTIVE_USAGE_ARGUMENT_REMOVED", "dangerous", "Query.depReasonAdded.@deprecated.reason", "Argument 'reason' was removed from '@deprecated'"),
            ("FIELD_DEPRECATION_REASON_CHANGED", "safe", "Query.depReasonChanged.@deprecated", "Deprecation reason on field 'Query.depReasonChanged' has changed from 'c' to 'a'"),
            ("FIELD_DEPRECATION_REASON_ADDED", "safe", "Query.depReasonRemoved.@deprecated", "Field 'Query.depReasonRemoved' has deprecation reason 'b'"),
            ("FIELD_DEPRECATION_ADDED", "safe", "Query.depRemoved.@deprecated", "Field 'Query.depRemoved' is deprecated"),
            ("FIELD_DESCRIPTION_REMOVED", "safe", "Query.descAdded", "Description was removed from field 'Query.descAdded'"),
            ("FIELD_DESCRIPTION_CHANGED", "safe", "Query.descChanged", "Field 'Query.descChanged' description changed from 'desc changed' to 'desc'"),
            ("FIELD_DESCRIPTION_CHANGED", "safe", "Query.descEmptied", "Field 'Query.descEmptied' description 'x' was added"),
            ("FIELD_DESCRIPTION_ADDED", "safe", "Query.descRemoved", "Field 'Query.descRemoved' has description 'gone'"),
            ("FIELD_TYPE_CHANGED", "breaking", "Query.list", "Field 'Query.list' changed type from '[String!]' to '[String]'"),
            ("FIELD_TYPE_CHANGED", "safe", "Query.listStrict", "Field 'Query.listStrict' changed type from '[String]!' to '[String!]!'"),
            ("FIELD_REMOVED", "breaking", "Query.newWithArgs", "Field 'newWithArgs' was removed from object type 'Query'"),
            ("FIELD_TYPE_CHANGED", "breaking", "Query.nullable", "Field 'Query.nullable' changed type from 'String!' to 'String'"),
            ("FIELD_ADDED", "safe", "Query.old", "Field 'old' was added to object type 'Query'"),
            ("FIELD_ADDED", "safe", "Query.removed", "Field 'removed' was added to object type 'Query'"),
            ("FIELD_TYPE_CHANGED", "safe", "Query.strict", "Field 'Query.strict' changed type from 'String' to 'String!'"),
        ],
    );
}

#[test]
fn directives_rev() {
    check(
        r#""d2" directive @desc on FIELD_DEFINITION
directive @rep on OBJECT
directive @norep repeatable on OBJECT
directive @loc on FIELD_DEFINITION | ENUM
directive @args(a: Int!, b: String = "y", "desc" c: Int, e: Int, f: Int!, g: Int) on FIELD_DEFINITION
directive @tag(name: String) repeatable on FIELD_DEFINITION | OBJECT | INTERFACE | UNION | ENUM | ENUM_VALUE | INPUT_OBJECT | INPUT_FIELD_DEFINITION | ARGUMENT_DEFINITION | SCALAR | SCHEMA
directive @added(x: Int!) on FIELD_DEFINITION
schema @tag(name: "s2") @oneMore { query: Query }
directive @oneMore on SCHEMA
type Query @tag(name: "q") {
  f(arg: Int @tag(name: "b")): Int @tag(name: "f") @added(x: 1)
  g: Int @tag(name: "g")
  h(x: In): Int @tag(name: "h")
}
interface I { id: ID }
union U = Query
enum E { A @tag B @tag(name: "b") }
input In @tag(name: "in") { x: Int y: Int @deprecated(reason: "r") }
scalar S
"#,
        r#"directive @gone on FIELD_DEFINITION
"d" directive @desc on FIELD_DEFINITION
directive @rep repeatable on OBJECT
directive @norep on OBJECT
directive @loc on FIELD_DEFINITION | OBJECT
directive @args(a: Int, b: String = "x", c: Int, d: Int, "x" e: Int) on FIELD_DEFINITION
directive @tag(name: String) repeatable on FIELD_DEFINITION | OBJECT | INTERFACE | UNION | ENUM | ENUM_VALUE | INPUT_OBJECT | INPUT_FIELD_DEFINITION | ARGUMENT_DEFINITION | SCALAR | SCHEMA
schema @tag(name: "s") { query: Query }
type Query @tag(name: "q") @tag(name: "q2") {
  f(arg: Int @tag(name: "a")): Int @tag(name: "f")
  g: Int
  h(x: In): Int @tag
}
interface I @tag { id: ID }
union U @tag = Query
enum E @tag { A @tag(name: "v") B }
input In @tag { x: Int @tag(name: "x") y: Int @deprecated }
scalar S @tag
"#,
        &[
            ("DIRECTIVE_USAGE_SCHEMA_REMOVED", "dangerous", ".@oneMore", "Directive 'oneMore' was removed from schema"),
            ("DIRECTIVE_USAGE_ARGUMENT_REMOVED", "dangerous", ".@tag.name", "Argument 'name' was removed from '@tag'"),
            ("DIRECTIVE_USAGE_ARGUMENT_ADDED", "safe", ".@tag.name", "Argument 'name' was added to '@tag'"),
            ("DIRECTIVE_REMOVED", "breaking", "@added", "Directive 'added' was removed"),
            ("DIRECTIVE_ARGUMENT_ADDED", "safe", "@args", "Argument 'd' was added to directive 'args'"),
            ("DIRECTIVE_ARGUMENT_TYPE_CHANGED", "safe", "@args.a", "Type for argument 'a' on directive 'args' changed from 'Int!' to 'Int'"),
            ("DIRECTIVE_ARGUMENT_DEFAULT_VALUE_CHANGED", "dangerous", "@args.b", "Default value for argument 'b' on directive 'args' changed from '\"y\"' to '\"x\"'"),
            ("DIRECTIVE_ARGUMENT_DESCRIPTION_CHANGED", "safe", "@args.c", "Description 'desc' was removed from argument 'c' on directive 'args'"),
            ("DIRECTIVE_ARGUMENT_DESCRIPTION_CHANGED", "safe", "@args.e", "Description 'x' was added to argument 'e' on directive 'args'"),
            ("DIRECTIVE_ARGUMENT_REMOVED", "breaking", "@args.f", "Argument 'f' was removed from directive 'args'"),
            ("DIRECTIVE_ARGUMENT_REMOVED", "breaking", "@args.g", "Argument 'g' was removed from directive 'args'"),
            ("DIRECTIVE_DESCRIPTION_CHANGED", "safe", "@desc", "Directive 'desc' description changed from 'd2' to 'd'"),
            ("DIRECTIVE_ADDED", "safe", "@gone", "Directive 'gone' was added"),
            ("DIRECTIVE_LOCATION_ADDED", "safe", "@loc", "Location 'OBJECT' was added to directive 'loc'"),
            ("DIRECTIVE_LOCATION_REMOVED", "breaking", "@loc", "Location 'ENUM' was removed from directive 'loc'"),
            ("DIRECTIVE_REPEATABLE_REMOVED", "dangerous", "@norep", "Directive 'norep' removed repeatable."),
            ("DIRECTIVE_REMOVED", "breaking", "@oneMore", "Directive 'oneMore' was removed"),
            ("DIRECTIVE_REPEATABLE_ADDED", "safe", "@rep", "Directive 'rep' added repeatable."),
            ("DIRECTIVE_USAGE_ENUM_ADDED", "dangerous", "E.@tag", "Directive 'tag' was added to enum 'E'"),
            ("DIRECTIVE_USAGE_ARGUMENT_ADDED", "safe", "E.A.@tag.name", "Argument 'name' was added to '@tag'"),
            ("DIRECTIVE_USAGE_ENUM_VALUE_REMOVED", "dangerous", "E.B.@tag", "Directive 'tag' was removed from enum value 'E.B'"),
            ("DIRECTIVE_USAGE_INTERFACE_ADDED", "dangerous", "I.@tag", "Directive 'tag' was added to interface 'I'"),
            ("DIRECTIVE_USAGE_ARGUMENT_REMOVED", "dangerous", "In.@tag.name", "Argument 'name' was removed from '@tag'"),
            ("DIRECTIVE_USAGE_INPUT_FIELD_DEFINITION_ADDED", "dangerous", "In.x.@tag", "Directive 'tag' was added to input field 'x' in input object 'In'"),
            ("DIRECTIVE_USAGE_ARGUMENT_REMOVED", "dangerous", "In.y.@deprecated.reason", "Argument 'reason' was removed from '@deprecated'"),
            ("DIRECTIVE_USAGE_OBJECT_ADDED", "dangerous", "Query.@tag", "Directive 'tag' was added to object 'Query'"),
            ("DIRECTIVE_USAGE_FIELD_DEFINITION_REMOVED", "dangerous", "Query.f.@added", "Directive 'added' was removed from field 'Query.f'"),
            ("DIRECTIVE_USAGE_ARGUMENT_REMOVED", "dangerous", "Query.f.arg.@tag.name", "Argument 'name' was removed from '@tag'"),
            ("DIRECTIVE_USAGE_ARGUMENT_ADDED", "safe", "Query.f.arg.@tag.name", "Argument 'name' was added to '@tag'"),
            ("DIRECTIVE_USAGE_FIELD_DEFINITION_REMOVED", "dangerous", "Query.g.@tag", "Directive 'tag' was removed from field 'Query.g'"),
            ("DIRECTIVE_USAGE_ARGUMENT_REMOVED", "dangerous", "Query.h.@tag.name", "Argument 'name' was removed from '@tag'"),
            ("DIRECTIVE_USAGE_SCALAR_ADDED", "dangerous", "S.@tag", "Directive 'tag' was added to scalar 'S'"),
            ("DIRECTIVE_USAGE_UNION_MEMBER_ADDED", "dangerous", "U.@tag", "Directive 'tag' was added to union member 'U'"),
        ],
    );
}

#[test]
fn nested_rev() {
    check(
        r#"type Query { a: A b: B }
type A implements Node { id: ID! }
interface Node { id: ID! }
"new type"
type B implements Node { id: ID! "field" f(x: Int!, y: String = "d"): E @deprecated }
enum E { ONE TWO }
input NewIn { r: Int! d: Int = 1 }
input OneOf @oneOf { a: Int b: Int }
"#,
        r#"type Query { a: A }
type A { x: Int @deprecated(reason: "gone soon") }
input OneOf { a: Int b: Int }
"#,
        &[
            (
                "OBJECT_TYPE_INTERFACE_REMOVED",
                "breaking",
                "A",
                "'A' object type no longer implements 'Node' interface",
            ),
            ("FIELD_REMOVED", "breaking", "A.id", "Field 'id' was removed from object type 'A'"),
            ("FIELD_ADDED", "safe", "A.x", "Field 'x' was added to object type 'A'"),
            ("TYPE_REMOVED", "breaking", "B", "Type 'B' was removed"),
            ("TYPE_REMOVED", "breaking", "E", "Type 'E' was removed"),
            ("TYPE_REMOVED", "breaking", "NewIn", "Type 'NewIn' was removed"),
            ("TYPE_REMOVED", "breaking", "Node", "Type 'Node' was removed"),
            (
                "DIRECTIVE_USAGE_INPUT_OBJECT_REMOVED",
                "safe",
                "OneOf.@oneOf",
                "Directive 'oneOf' was removed from input object 'OneOf'",
            ),
            (
                "FIELD_REMOVED",
                "breaking",
                "Query.b",
                "Field 'b' was removed from object type 'Query'",
            ),
        ],
    );
}
