//! Model to SDL, for schemas captured by introspection: the store keeps SDL, whatever the source.
//!
//! The output follows graphql-js's `printSchema` closely enough to read naturally and parses back to
//! the same model (a round trip the tests check on real schemas).

use std::fmt::Write as _;

use super::model::{
    Deprecation, DirectiveDef, DirectiveUsage, InputValue, NamedType, Schema, TypeKind,
    DEFAULT_DEPRECATION_REASON,
};
use super::value::{block_string_value, print_literal, print_string};

/// Directive locations SDL parsers accept; others are left out of printed SDL.
const KNOWN_LOCATIONS: [&str; 19] = [
    "QUERY",
    "MUTATION",
    "SUBSCRIPTION",
    "FIELD",
    "FRAGMENT_DEFINITION",
    "FRAGMENT_SPREAD",
    "INLINE_FRAGMENT",
    "VARIABLE_DEFINITION",
    "SCHEMA",
    "SCALAR",
    "OBJECT",
    "FIELD_DEFINITION",
    "ARGUMENT_DEFINITION",
    "INTERFACE",
    "UNION",
    "ENUM",
    "ENUM_VALUE",
    "INPUT_OBJECT",
    "INPUT_FIELD_DEFINITION",
];

/// Printed SDL and what could not be expressed in it.
pub struct Printed {
    pub sdl: String,
    pub warnings: Vec<String>,
}

/// Print a schema as SDL.
pub fn print_schema(schema: &Schema) -> Printed {
    let mut out = String::new();
    let mut warnings = Vec::new();

    if needs_schema_definition(schema) {
        out.push_str("schema {\n");
        for (op, root) in [
            ("query", &schema.query),
            ("mutation", &schema.mutation),
            ("subscription", &schema.subscription),
        ] {
            if let Some(root) = root {
                let _ = writeln!(out, "  {op}: {root}");
            }
        }
        out.push_str("}\n\n");
    }

    for d in &schema.directives {
        directive(d, &mut out, &mut warnings);
        out.push('\n');
    }
    for t in &schema.types {
        named_type(t, &mut out);
        out.push('\n');
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    Printed { sdl: out, warnings }
}

/// Whether the root types can only be given by a `schema { … }` block: non-default names, or a type
/// with a default root name that is not that root (which a reader would otherwise take for it).
fn needs_schema_definition(schema: &Schema) -> bool {
    [
        ("Query", &schema.query),
        ("Mutation", &schema.mutation),
        ("Subscription", &schema.subscription),
    ]
    .into_iter()
    .any(|(default, root)| match root {
        Some(name) => name != default,
        None => schema.get_type(default).is_some(),
    })
}

fn description(text: Option<&str>, indent: &str, out: &mut String) {
    let Some(text) = text else { return };
    // A block string reads best, but only when it parses back to exactly the same text.
    let lines: Vec<String> = text.split('\n').map(|l| format!("{indent}{l}")).collect();
    let raw = format!("\n{}\n{indent}", lines.join("\n"));
    if !text.contains('\r') && block_string_value(&raw) == text {
        let _ = writeln!(out, "{indent}\"\"\"{}\"\"\"", raw.replace("\"\"\"", "\\\"\"\""));
    } else {
        out.push_str(indent);
        print_string(text, out);
        out.push('\n');
    }
}

fn directive(d: &DirectiveDef, out: &mut String, warnings: &mut Vec<String>) {
    description(d.description.as_deref(), "", out);
    let _ = write!(out, "directive @{}", d.name);
    arguments(&d.args, "", out);
    if d.repeatable {
        out.push_str(" repeatable");
    }
    let mut locations = Vec::new();
    for l in &d.locations {
        if KNOWN_LOCATIONS.contains(&l.as_str()) {
            locations.push(l.as_str());
        } else {
            warnings.push(format!("left unknown location `{l}` out of directive `@{}`", d.name));
        }
    }
    if locations.is_empty() {
        // A directive needs a location to be valid SDL; FIELD_DEFINITION is the least surprising.
        locations.push("FIELD_DEFINITION");
    }
    let _ = writeln!(out, " on {}", locations.join(" | "));
}

fn named_type(t: &NamedType, out: &mut String) {
    description(t.description.as_deref(), "", out);
    let _ = write!(out, "{} {}", t.kind.keyword(), t.name);
    match t.kind {
        TypeKind::Object | TypeKind::Interface => {
            if !t.interfaces.is_empty() {
                let _ = write!(out, " implements {}", t.interfaces.join(" & "));
            }
            usages(&t.directives, out);
            if !t.fields.is_empty() {
                out.push_str(" {\n");
                for f in &t.fields {
                    description(f.description.as_deref(), "  ", out);
                    let _ = write!(out, "  {}", f.name);
                    arguments(&f.args, "  ", out);
                    let _ = write!(out, ": {}", f.ty);
                    deprecation_and_usages(&f.deprecation, &f.directives, out);
                    out.push('\n');
                }
                out.push('}');
            }
        }
        TypeKind::Union => {
            usages(&t.directives, out);
            if !t.members.is_empty() {
                let _ = write!(out, " = {}", t.members.join(" | "));
            }
        }
        TypeKind::Enum => {
            usages(&t.directives, out);
            if !t.values.is_empty() {
                out.push_str(" {\n");
                for v in &t.values {
                    description(v.description.as_deref(), "  ", out);
                    let _ = write!(out, "  {}", v.name);
                    deprecation_and_usages(&v.deprecation, &v.directives, out);
                    out.push('\n');
                }
                out.push('}');
            }
        }
        TypeKind::InputObject => {
            usages(&t.directives, out);
            if !t.input_fields.is_empty() {
                out.push_str(" {\n");
                for f in &t.input_fields {
                    input_value(f, "  ", out);
                    out.push('\n');
                }
                out.push('}');
            }
        }
        TypeKind::Scalar => usages(&t.directives, out),
    }
    out.push('\n');
}

fn arguments(args: &[InputValue], indent: &str, out: &mut String) {
    if args.is_empty() {
        return;
    }
    if args.iter().all(|a| a.description.is_none()) {
        out.push('(');
        for (i, a) in args.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            input_value(a, "", out);
        }
        out.push(')');
    } else {
        out.push_str("(\n");
        let inner = format!("{indent}  ");
        for a in args {
            input_value(a, &inner, out);
            out.push('\n');
        }
        out.push_str(indent);
        out.push(')');
    }
}

fn input_value(v: &InputValue, indent: &str, out: &mut String) {
    description(v.description.as_deref(), indent, out);
    let _ = write!(out, "{indent}{}: {}", v.name, v.ty);
    if let Some(default) = &v.default {
        out.push_str(" = ");
        print_literal(default, out);
    }
    deprecation_and_usages(&v.deprecation, &v.directives, out);
}

/// Usages as written when known (SDL); otherwise `@deprecated` from the deprecation (introspection).
fn deprecation_and_usages(dep: &Deprecation, directives: &[DirectiveUsage], out: &mut String) {
    if directives.is_empty() && dep.deprecated {
        match dep.reason.as_deref() {
            Some(DEFAULT_DEPRECATION_REASON) => out.push_str(" @deprecated"),
            Some(reason) => {
                out.push_str(" @deprecated(reason: ");
                print_string(reason, out);
                out.push(')');
            }
            None => out.push_str(" @deprecated(reason: null)"),
        }
    }
    usages(directives, out);
}

fn usages(directives: &[DirectiveUsage], out: &mut String) {
    for d in directives {
        let _ = write!(out, " @{}", d.name);
        if !d.args.is_empty() {
            out.push('(');
            for (i, (name, value)) in d.args.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                let _ = write!(out, "{name}: ");
                print_literal(value, out);
            }
            out.push(')');
        }
    }
}
