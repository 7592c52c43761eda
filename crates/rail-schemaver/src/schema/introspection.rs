//! Introspection JSON to model, tolerantly.
//!
//! Servers differ: some omit `isRepeatable` or argument deprecation, newer ones add directive
//! locations and type kinds this code has never heard of. Unknown enum values are kept as strings or
//! skipped with a warning, missing optional members default, and only a document without
//! `__schema.types` is refused. Nesting is bounded by serde_json's recursion limit.

use serde::Deserialize;

use super::model::{
    Deprecation, DirectiveDef, EnumValue, Field, InputValue, NamedType, Schema, TypeKind, TypeRef,
    BUILT_IN_SCALARS, SPECIFIED_DIRECTIVES,
};
use super::value::parse_literal;

/// The query `--from-url` sends: every member the model uses, argument and input-field deprecation
/// included, and eight levels of `ofType` (deeper wrappers do not occur in practice).
pub const INTROSPECTION_QUERY: &str = r"query IntrospectionQuery {
  __schema {
    queryType { name }
    mutationType { name }
    subscriptionType { name }
    types { ...FullType }
    directives {
      name
      description
      isRepeatable
      locations
      args(includeDeprecated: true) { ...InputValue }
    }
  }
}
fragment FullType on __Type {
  kind
  name
  description
  fields(includeDeprecated: true) {
    name
    description
    args(includeDeprecated: true) { ...InputValue }
    type { ...TypeRef }
    isDeprecated
    deprecationReason
  }
  inputFields(includeDeprecated: true) { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) {
    name
    description
    isDeprecated
    deprecationReason
  }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue {
  name
  description
  type { ...TypeRef }
  defaultValue
  isDeprecated
  deprecationReason
}
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name
    ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } }
}";

/// The same query for servers that predate `isRepeatable` and deprecated arguments and input fields.
pub const INTROSPECTION_QUERY_BASIC: &str = r"query IntrospectionQuery {
  __schema {
    queryType { name }
    mutationType { name }
    subscriptionType { name }
    types { ...FullType }
    directives { name description locations args { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind
  name
  description
  fields(includeDeprecated: true) {
    name
    description
    args { ...InputValue }
    type { ...TypeRef }
    isDeprecated
    deprecationReason
  }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name
    ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } }
}";

/// Why an introspection document could not be used.
#[derive(Debug, thiserror::Error)]
pub enum IntrospectionError {
    #[error("not valid introspection JSON")]
    Json(#[source] serde_json::Error),
    #[error("the JSON holds no `__schema` (expected {{\"data\": {{\"__schema\": …}}}} or {{\"__schema\": …}})")]
    NoSchema,
    #[error("the server answered with errors: {0}")]
    GraphqlErrors(String),
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    data: Option<Data>,
    #[serde(rename = "__schema", default)]
    schema: Option<RawSchema>,
    #[serde(default)]
    errors: Option<Vec<RawError>>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "__schema", default)]
    schema: Option<RawSchema>,
}

#[derive(Deserialize)]
struct RawError {
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSchema {
    #[serde(default)]
    query_type: Option<RawName>,
    #[serde(default)]
    mutation_type: Option<RawName>,
    #[serde(default)]
    subscription_type: Option<RawName>,
    types: Vec<RawType>,
    #[serde(default)]
    directives: Option<Vec<RawDirective>>,
}

#[derive(Deserialize)]
struct RawName {
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawType {
    kind: String,
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    fields: Option<Vec<RawField>>,
    #[serde(default)]
    input_fields: Option<Vec<RawInputValue>>,
    #[serde(default)]
    interfaces: Option<Vec<RawTypeRef>>,
    #[serde(default)]
    enum_values: Option<Vec<RawEnumValue>>,
    #[serde(default)]
    possible_types: Option<Vec<RawTypeRef>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawField {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    args: Option<Vec<RawInputValue>>,
    #[serde(rename = "type")]
    ty: RawTypeRef,
    #[serde(default)]
    is_deprecated: Option<bool>,
    #[serde(default)]
    deprecation_reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawInputValue {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(rename = "type")]
    ty: RawTypeRef,
    #[serde(default)]
    default_value: Option<String>,
    #[serde(default)]
    is_deprecated: Option<bool>,
    #[serde(default)]
    deprecation_reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEnumValue {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    is_deprecated: Option<bool>,
    #[serde(default)]
    deprecation_reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDirective {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    is_repeatable: Option<bool>,
    #[serde(default)]
    locations: Vec<String>,
    #[serde(default)]
    args: Option<Vec<RawInputValue>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTypeRef {
    kind: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    of_type: Option<Box<RawTypeRef>>,
}

/// A converted schema and what had to be skipped or guessed on the way.
pub struct Converted {
    pub schema: Schema,
    pub warnings: Vec<String>,
}

/// Convert introspection JSON (`{"data": {"__schema": …}}`, or `{"__schema": …}`) into the model.
pub fn from_json(bytes: &[u8]) -> Result<Converted, IntrospectionError> {
    let envelope: Envelope = serde_json::from_slice(bytes).map_err(IntrospectionError::Json)?;
    let Some(raw) = envelope.data.and_then(|d| d.schema).or(envelope.schema) else {
        return Err(match envelope.errors {
            Some(errors) if !errors.is_empty() => IntrospectionError::GraphqlErrors(
                errors.into_iter().filter_map(|e| e.message).collect::<Vec<_>>().join("; "),
            ),
            _ => IntrospectionError::NoSchema,
        });
    };
    Ok(convert(raw))
}

fn convert(raw: RawSchema) -> Converted {
    let mut warnings = Vec::new();
    let mut types = Vec::with_capacity(raw.types.len());
    for t in raw.types {
        let Some(name) = t.name else {
            warnings.push("skipped a type without a name".to_owned());
            continue;
        };
        if name.starts_with("__") || BUILT_IN_SCALARS.contains(&name.as_str()) {
            continue;
        }
        let kind = match t.kind.as_str() {
            "SCALAR" => TypeKind::Scalar,
            "OBJECT" => TypeKind::Object,
            "INTERFACE" => TypeKind::Interface,
            "UNION" => TypeKind::Union,
            "ENUM" => TypeKind::Enum,
            "INPUT_OBJECT" => TypeKind::InputObject,
            other => {
                warnings.push(format!("skipped type `{name}` of unknown kind `{other}`"));
                continue;
            }
        };
        let mut out = NamedType::new(name, kind);
        out.description = t.description;
        match kind {
            TypeKind::Object | TypeKind::Interface => {
                out.interfaces = names(t.interfaces.unwrap_or_default());
                out.fields = dedup(
                    t.fields
                        .unwrap_or_default()
                        .into_iter()
                        .map(|f| field(f, &mut warnings))
                        .collect(),
                    |f: &Field| &f.name,
                );
            }
            TypeKind::Union => out.members = names(t.possible_types.unwrap_or_default()),
            TypeKind::Enum => {
                out.values = dedup(
                    t.enum_values
                        .unwrap_or_default()
                        .into_iter()
                        .map(|v| EnumValue {
                            name: v.name,
                            description: v.description,
                            deprecation: deprecation(v.is_deprecated, v.deprecation_reason),
                            directives: Vec::new(),
                        })
                        .collect(),
                    |v: &EnumValue| &v.name,
                );
            }
            TypeKind::InputObject => {
                out.input_fields = input_values(t.input_fields, &mut warnings);
            }
            TypeKind::Scalar => {}
        }
        types.push(out);
    }

    let directives = raw
        .directives
        .unwrap_or_default()
        .into_iter()
        .filter(|d| !SPECIFIED_DIRECTIVES.contains(&d.name.as_str()))
        .map(|d| DirectiveDef {
            args: input_values(d.args, &mut warnings),
            name: d.name,
            description: d.description,
            repeatable: d.is_repeatable.unwrap_or(false),
            locations: d.locations,
        })
        .collect();

    let root = |r: Option<RawName>| r.and_then(|r| r.name);
    let schema = Schema::new(
        [root(raw.query_type), root(raw.mutation_type), root(raw.subscription_type)],
        types,
        directives,
        Vec::new(),
        false,
    );
    Converted { schema, warnings }
}

fn field(f: RawField, warnings: &mut Vec<String>) -> Field {
    Field {
        ty: type_ref(f.ty, warnings),
        args: input_values(f.args, warnings),
        deprecation: deprecation(f.is_deprecated, f.deprecation_reason),
        name: f.name,
        description: f.description,
        directives: Vec::new(),
    }
}

fn input_values(list: Option<Vec<RawInputValue>>, warnings: &mut Vec<String>) -> Vec<InputValue> {
    let values = list
        .unwrap_or_default()
        .into_iter()
        .map(|v| {
            let default = v.default_value.as_deref().and_then(|text| match parse_literal(text) {
                Ok(value) => Some(value),
                Err(e) => {
                    warnings.push(format!("ignored the default value of `{}`: {e}", v.name));
                    None
                }
            });
            InputValue {
                ty: type_ref(v.ty, warnings),
                default,
                deprecation: deprecation(v.is_deprecated, v.deprecation_reason),
                name: v.name,
                description: v.description,
                directives: Vec::new(),
            }
        })
        .collect();
    dedup(values, |v: &InputValue| &v.name)
}

fn deprecation(is_deprecated: Option<bool>, reason: Option<String>) -> Deprecation {
    if is_deprecated.unwrap_or(false) || reason.is_some() {
        Deprecation::with_reason(reason)
    } else {
        Deprecation::default()
    }
}

fn names(refs: Vec<RawTypeRef>) -> Vec<String> {
    let mut out: Vec<String> = refs.into_iter().filter_map(|r| r.name).collect();
    let mut seen = std::collections::HashSet::new();
    out.retain(|n| seen.insert(n.clone()));
    out
}

/// Keep one element per name, the last one at the first one's place, as graphql-js's key maps do.
fn dedup<T>(items: Vec<T>, name: impl Fn(&T) -> &String) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(items.len());
    let mut index = std::collections::HashMap::<String, usize>::new();
    for item in items {
        if let Some(&at) = index.get(name(&item)) {
            out[at] = item;
        } else {
            index.insert(name(&item).clone(), out.len());
            out.push(item);
        }
    }
    out
}

fn type_ref(raw: RawTypeRef, warnings: &mut Vec<String>) -> TypeRef {
    match raw.kind.as_str() {
        "NON_NULL" | "LIST" => {
            let inner = if let Some(inner) = raw.of_type {
                type_ref(*inner, warnings)
            } else {
                warnings.push(format!("a {} type reference has no `ofType`", raw.kind));
                TypeRef::Named(raw.name.unwrap_or_else(|| "Unknown".to_owned()))
            };
            if raw.kind == "LIST" {
                TypeRef::List(Box::new(inner))
            } else {
                TypeRef::NonNull(Box::new(inner))
            }
        }
        _ => TypeRef::Named(raw.name.unwrap_or_else(|| {
            warnings.push("a type reference has no name".to_owned());
            "Unknown".to_owned()
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_enum_values_do_not_abort() {
        let json = br#"{"data":{"__schema":{
            "queryType":{"name":"Query"},
            "types":[
              {"kind":"OBJECT","name":"Query","fields":[{"name":"a","type":{"kind":"SCALAR","name":"String"}}]},
              {"kind":"FUTURE_KIND","name":"Odd"}
            ],
            "directives":[{"name":"d","locations":["FIELD","FRAGMENT_VARIABLE_DEFINITION"],"args":[]}]
        }}}"#;
        let converted = from_json(json).unwrap();
        assert_eq!(converted.schema.types.len(), 1);
        assert_eq!(converted.schema.directives[0].locations[1], "FRAGMENT_VARIABLE_DEFINITION");
        assert_eq!(converted.warnings.len(), 1);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let mut json = String::from(
            r#"{"__schema":{"types":[{"kind":"OBJECT","name":"Q","fields":[{"name":"f","type":"#,
        );
        for _ in 0..10_000 {
            json.push_str(r#"{"kind":"LIST","ofType":"#);
        }
        json.push_str(r#"{"kind":"SCALAR","name":"Int"}"#);
        json.push_str(&"}".repeat(10_000));
        json.push_str("}]}]}}");
        assert!(matches!(from_json(json.as_bytes()), Err(IntrospectionError::Json(_))));
    }

    #[test]
    fn errors_without_data_are_reported() {
        let err = from_json(br#"{"errors":[{"message":"boom"}]}"#).err().unwrap();
        assert_eq!(err.to_string(), "the server answered with errors: boom");
    }
}
