//! SDL to model, through apollo-compiler.
//!
//! Parsing is split in three, because the three failures mean different things: a syntax error makes
//! the schema unreadable (nothing to diff), a build error (a duplicate definition) leaves a partial
//! schema the diff can still use, and validation errors only matter to `schemaver validate`.

use apollo_compiler::ast;
use apollo_compiler::schema::{Component, ComponentOrigin, ExtendedType};
use apollo_compiler::validation::{DiagnosticList, Valid};

use super::model::{
    Deprecation, DirectiveDef, DirectiveUsage, EnumValue, Field, InputValue, Literal, NamedType,
    Schema, TypeKind, TypeRef, BUILT_IN_SCALARS, DEFAULT_DEPRECATION_REASON, SPECIFIED_DIRECTIVES,
};

/// Nesting deeper than this (lists of lists, nested values) is refused rather than risking the stack.
const RECURSION_LIMIT: usize = 256;
/// Memory grows with tokens (about 150 bytes each while parsing); every public schema here, GitHub's
/// 1.2 MB one included, has fewer than 150 000.
const TOKEN_LIMIT: usize = 1_000_000;

/// An SDL document that parsed, with the problems found while building it.
pub struct ParsedSdl {
    pub schema: apollo_compiler::Schema,
    /// Build errors (duplicate definitions and the like); the schema holds what could be built.
    pub build_errors: Vec<String>,
}

/// Parse SDL. Syntax errors (and hitting the nesting or token limits) are returned as `Err` with one
/// message per error.
pub fn parse(sdl: &str, name: &str) -> Result<ParsedSdl, Vec<String>> {
    let mut parser = apollo_compiler::parser::Parser::new()
        .recursion_limit(RECURSION_LIMIT)
        .token_limit(TOKEN_LIMIT);
    let document = parser.parse_ast(sdl, name).map_err(|e| diagnostics(&e.errors))?;
    let built = apollo_compiler::Schema::builder().add_ast(&document).build();
    Ok(match built {
        Ok(schema) => ParsedSdl { schema, build_errors: Vec::new() },
        Err(with_errors) => ParsedSdl {
            build_errors: diagnostics(&with_errors.errors),
            schema: with_errors.partial,
        },
    })
}

/// Validate a parsed schema: the schema (assumed valid when it is not, so what could be built can
/// still be used) and every build and validation error, each with its line and column when
/// `positions`.
pub fn validate(
    parsed: ParsedSdl,
    positions: bool,
) -> (Valid<apollo_compiler::Schema>, Vec<String>) {
    let mut problems = parsed.build_errors;
    if !positions {
        for p in &mut problems {
            *p = super::strip_position(p).to_owned();
        }
    }
    match parsed.schema.validate() {
        Ok(valid) => (valid, problems),
        Err(with_errors) => {
            problems.extend(diagnostics_with(&with_errors.errors, positions));
            (Valid::assume_valid(with_errors.partial), problems)
        }
    }
}

fn diagnostics(list: &DiagnosticList) -> Vec<String> {
    diagnostics_with(list, true)
}

fn diagnostics_with(list: &DiagnosticList, positions: bool) -> Vec<String> {
    list.iter()
        .map(|d| {
            let at = d
                .line_column_range()
                .filter(|_| positions)
                .map(|r| format!("{}:{}: ", r.start.line, r.start.column))
                .unwrap_or_default();
            format!("{at}{}", d.error)
        })
        .collect()
}

/// Convert a built schema into the diff model.
pub fn to_model(schema: &apollo_compiler::Schema) -> Schema {
    let def = &schema.schema_definition;
    let roots = [
        def.query.as_ref().map(|n| n.name.to_string()),
        def.mutation.as_ref().map(|n| n.name.to_string()),
        def.subscription.as_ref().map(|n| n.name.to_string()),
    ];

    let mut types = Vec::with_capacity(schema.types.len());
    for (name, ty) in &schema.types {
        if ty.is_built_in() || BUILT_IN_SCALARS.contains(&name.as_str()) {
            continue;
        }
        types.push(named_type(ty));
    }

    let directives = schema
        .directive_definitions
        .values()
        .filter(|d| !SPECIFIED_DIRECTIVES.contains(&d.name.as_str()))
        .map(|d| DirectiveDef {
            name: d.name.to_string(),
            description: description(d.description.as_deref()),
            repeatable: d.repeatable,
            locations: d.locations.iter().map(|l| location_name(*l).to_owned()).collect(),
            args: d.arguments.iter().map(|a| input_value(a)).collect(),
        })
        .collect();

    // The schema definition's directives first, then each `extend schema` in order, as Inspector
    // compares them group by group.
    let mut groups: Vec<(Option<ComponentOrigin>, Vec<DirectiveUsage>)> = vec![(None, Vec::new())];
    for d in &def.directives {
        let usage = usage(&d.node);
        match &d.origin {
            ComponentOrigin::Definition => groups[0].1.push(usage),
            origin @ ComponentOrigin::Extension(_) => {
                if let Some(group) =
                    groups.iter_mut().skip(1).find(|(o, _)| o.as_ref() == Some(origin))
                {
                    group.1.push(usage);
                } else {
                    groups.push((Some(origin.clone()), vec![usage]));
                }
            }
        }
    }
    let schema_directives = groups.into_iter().map(|(_, g)| g).collect();

    Schema::new(roots, types, directives, schema_directives, true)
}

fn named_type(ty: &ExtendedType) -> NamedType {
    match ty {
        ExtendedType::Scalar(t) => {
            let mut out = NamedType::new(t.name.as_str(), TypeKind::Scalar);
            out.description = description(t.description.as_deref());
            out.directives = own_directives(&t.directives.0);
            out
        }
        ExtendedType::Object(t) => {
            let mut out = NamedType::new(t.name.as_str(), TypeKind::Object);
            out.description = description(t.description.as_deref());
            out.directives = own_directives(&t.directives.0);
            out.interfaces = t.implements_interfaces.iter().map(|i| i.name.to_string()).collect();
            out.fields = t.fields.values().map(|f| field(f)).collect();
            out
        }
        ExtendedType::Interface(t) => {
            let mut out = NamedType::new(t.name.as_str(), TypeKind::Interface);
            out.description = description(t.description.as_deref());
            out.directives = own_directives(&t.directives.0);
            out.interfaces = t.implements_interfaces.iter().map(|i| i.name.to_string()).collect();
            out.fields = t.fields.values().map(|f| field(f)).collect();
            out
        }
        ExtendedType::Union(t) => {
            let mut out = NamedType::new(t.name.as_str(), TypeKind::Union);
            out.description = description(t.description.as_deref());
            out.directives = own_directives(&t.directives.0);
            out.members = t.members.iter().map(|m| m.name.to_string()).collect();
            out
        }
        ExtendedType::Enum(t) => {
            let mut out = NamedType::new(t.name.as_str(), TypeKind::Enum);
            out.description = description(t.description.as_deref());
            out.directives = own_directives(&t.directives.0);
            out.values = t
                .values
                .values()
                .map(|v| EnumValue {
                    name: v.value.to_string(),
                    description: description(v.description.as_deref()),
                    deprecation: deprecation(&v.directives),
                    directives: usages(&v.directives),
                })
                .collect();
            out
        }
        ExtendedType::InputObject(t) => {
            let mut out = NamedType::new(t.name.as_str(), TypeKind::InputObject);
            out.description = description(t.description.as_deref());
            out.directives = own_directives(&t.directives.0);
            out.input_fields = t.fields.values().map(|f| input_value(f)).collect();
            out
        }
    }
}

/// Directives written on the definition itself: graphql-js keeps extensions' directives apart, and
/// Inspector only compares the definition's.
fn own_directives(list: &[Component<ast::Directive>]) -> Vec<DirectiveUsage> {
    list.iter()
        .filter(|d| d.origin == ComponentOrigin::Definition)
        .map(|d| usage(&d.node))
        .collect()
}

fn field(f: &ast::FieldDefinition) -> Field {
    Field {
        name: f.name.to_string(),
        description: description(f.description.as_deref()),
        ty: type_ref(&f.ty),
        args: f.arguments.iter().map(|a| input_value(a)).collect(),
        deprecation: deprecation(&f.directives),
        directives: usages(&f.directives),
    }
}

fn input_value(v: &ast::InputValueDefinition) -> InputValue {
    InputValue {
        name: v.name.to_string(),
        description: description(v.description.as_deref()),
        ty: type_ref(&v.ty),
        default: v.default_value.as_deref().map(literal),
        deprecation: deprecation(&v.directives),
        directives: usages(&v.directives),
    }
}

fn description(d: Option<&str>) -> Option<String> {
    d.map(str::to_owned)
}

fn deprecation(directives: &ast::DirectiveList) -> Deprecation {
    match directives.get("deprecated") {
        None => Deprecation::default(),
        Some(d) => {
            let reason = match d.specified_argument_by_name("reason").map(|v| &**v) {
                None => Some(DEFAULT_DEPRECATION_REASON.to_owned()),
                Some(ast::Value::String(s)) => Some(s.clone()),
                Some(_) => None,
            };
            Deprecation::with_reason(reason)
        }
    }
}

fn usages(directives: &ast::DirectiveList) -> Vec<DirectiveUsage> {
    directives.iter().map(|d| usage(d)).collect()
}

fn usage(d: &ast::Directive) -> DirectiveUsage {
    DirectiveUsage {
        name: d.name.to_string(),
        args: d.arguments.iter().map(|a| (a.name.to_string(), literal(&a.value))).collect(),
    }
}

fn type_ref(ty: &ast::Type) -> TypeRef {
    match ty {
        ast::Type::Named(n) => TypeRef::Named(n.to_string()),
        ast::Type::NonNullNamed(n) => TypeRef::NonNull(Box::new(TypeRef::Named(n.to_string()))),
        ast::Type::List(inner) => TypeRef::List(Box::new(type_ref(inner))),
        ast::Type::NonNullList(inner) => {
            TypeRef::NonNull(Box::new(TypeRef::List(Box::new(type_ref(inner)))))
        }
    }
}

fn literal(v: &ast::Value) -> Literal {
    match v {
        ast::Value::Null => Literal::Null,
        ast::Value::Enum(n) => Literal::Enum(n.to_string()),
        ast::Value::Variable(n) => Literal::Variable(n.to_string()),
        ast::Value::String(s) => Literal::String(s.clone()),
        ast::Value::Float(f) => Literal::Float(f.as_str().to_owned()),
        ast::Value::Int(i) => Literal::Int(i.as_str().to_owned()),
        ast::Value::Boolean(b) => Literal::Boolean(*b),
        ast::Value::List(items) => Literal::List(items.iter().map(|i| literal(i)).collect()),
        ast::Value::Object(fields) => {
            Literal::Object(fields.iter().map(|(n, v)| (n.to_string(), literal(v))).collect())
        }
    }
}

fn location_name(l: ast::DirectiveLocation) -> &'static str {
    use ast::DirectiveLocation as L;
    match l {
        L::Query => "QUERY",
        L::Mutation => "MUTATION",
        L::Subscription => "SUBSCRIPTION",
        L::Field => "FIELD",
        L::FragmentDefinition => "FRAGMENT_DEFINITION",
        L::FragmentSpread => "FRAGMENT_SPREAD",
        L::InlineFragment => "INLINE_FRAGMENT",
        L::VariableDefinition => "VARIABLE_DEFINITION",
        L::Schema => "SCHEMA",
        L::Scalar => "SCALAR",
        L::Object => "OBJECT",
        L::FieldDefinition => "FIELD_DEFINITION",
        L::ArgumentDefinition => "ARGUMENT_DEFINITION",
        L::Interface => "INTERFACE",
        L::Union => "UNION",
        L::Enum => "ENUM",
        L::EnumValue => "ENUM_VALUE",
        L::InputObject => "INPUT_OBJECT",
        L::InputFieldDefinition => "INPUT_FIELD_DEFINITION",
    }
}
