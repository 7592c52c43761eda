//! Which schema coordinates an operation uses, in the diff's path syntax, so a breaking change can be
//! matched against the operations that touch it.
//!
//! Walking a validated operation (its fragments included) collects `Type` for every type it selects
//! on, returns, names in a fragment condition or a variable; `Type.field`; `Type.field.argument` for
//! every argument passed; `Input.field` and `Enum.VALUE` written in arguments; and `@directive`.
//! A variable's input type is used *whole*: the client sends any of its fields and enum values at
//! run time, so every change inside it (and inside the input types and enums it reaches) counts.

use std::collections::HashSet;

use apollo_compiler::executable::{ExecutableDocument, Selection, SelectionSet};
use apollo_compiler::schema::ExtendedType;
use apollo_compiler::validation::Valid;
use apollo_compiler::{ast, Schema};

use crate::diff::{parent_path, Change, ChangeType};
use crate::schema::model::{Schema as Model, TypeRef};

/// The coordinates one operation uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Uses {
    /// Types, fields, arguments, input fields, enum values and directives (`@name`).
    pub coordinates: HashSet<String>,
    /// Input types and enums every part of which counts as used (reached from a variable).
    pub whole: HashSet<String>,
}

impl Uses {
    /// Collect the coordinates of a document holding one operation and its fragments.
    pub fn of(document: &Valid<ExecutableDocument>, schema: &Valid<Schema>) -> Uses {
        let mut walker = Walker { schema, uses: Uses::default(), fragments: HashSet::new() };
        for op in document.operations.iter() {
            for var in &op.variables {
                walker.whole_type(var.ty.inner_named_type().as_str());
                walker.use_type(var.ty.inner_named_type().as_str());
                if let Some(default) = &var.default_value {
                    walker.value(default, &var.ty);
                }
                walker.directives(&var.directives);
            }
            walker.directives(&op.directives);
            walker.selection_set(&op.selection_set, document);
        }
        walker.uses
    }

    fn has(&self, coordinate: &str) -> bool {
        self.coordinates.contains(coordinate)
    }

    /// Whether a (breaking) change can affect an operation with these uses. `new` is the schema after
    /// the change, to tell whether a changed argument became required.
    pub fn touches(&self, change: &Change, new: &Model) -> bool {
        use ChangeType as T;
        let Some(path) = change.path.as_deref() else {
            // Root types changed: every operation of that kind is affected; stay on the safe side.
            return true;
        };
        let first = path.split('.').next().unwrap_or(path);
        if let Some(directive) = path.strip_prefix('@') {
            let name = directive.split('.').next().unwrap_or(directive);
            return self.has(&format!("@{name}"));
        }
        match change.kind {
            // A new required argument or input field breaks every use of its field or input type.
            T::FieldArgumentAdded | T::InputFieldAdded => {
                self.has(parent_path(path)) || self.whole.contains(first)
            }
            // An argument that became required breaks every use of its field; otherwise only the
            // operations that pass it.
            T::FieldArgumentTypeChanged => {
                self.has(path) || (self.has(parent_path(path)) && argument_required(new, path))
            }
            // A directive usage (`@oneOf` on an input type) sits at `Type.@oneOf` or deeper.
            kind if kind.is_directive_usage() => self.has(first) || self.whole.contains(first),
            _ => self.has(path) || self.whole.contains(first),
        }
    }
}

/// Whether the argument at `Type.field.argument` is required (non-null without default) in `schema`.
fn argument_required(schema: &Model, path: &str) -> bool {
    let mut parts = path.splitn(3, '.');
    let (Some(t), Some(f), Some(a)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    schema
        .get_type(t)
        .and_then(|t| t.fields.iter().find(|x| x.name == f))
        .and_then(|f| f.args.iter().find(|x| x.name == a))
        .is_some_and(|a| matches!(a.ty, TypeRef::NonNull(_)) && a.default.is_none())
}

struct Walker<'a> {
    schema: &'a Valid<Schema>,
    uses: Uses,
    fragments: HashSet<String>,
}

impl Walker<'_> {
    fn insert(&mut self, coordinate: String) {
        self.uses.coordinates.insert(coordinate);
    }

    fn use_type(&mut self, name: &str) {
        if !self.uses.coordinates.contains(name) {
            self.insert(name.to_owned());
        }
    }

    /// An input type or enum the client fills in at run time, with everything it reaches.
    fn whole_type(&mut self, name: &str) {
        let mut queue = vec![name.to_owned()];
        while let Some(name) = queue.pop() {
            if !self.uses.whole.insert(name.clone()) {
                continue;
            }
            self.use_type(&name);
            if let Some(ExtendedType::InputObject(input)) = self.schema.types.get(name.as_str()) {
                for field in input.fields.values() {
                    queue.push(field.ty.inner_named_type().to_string());
                }
            }
        }
    }

    fn directives(&mut self, directives: &ast::DirectiveList) {
        for d in directives {
            self.insert(format!("@{}", d.name));
            if let Some(def) = self.schema.directive_definitions.get(&d.name) {
                for arg in &d.arguments {
                    if let Some(arg_def) = def.argument_by_name(&arg.name) {
                        let ty = arg_def.ty.clone();
                        self.value(&arg.value, &ty);
                    }
                }
            }
        }
    }

    fn selection_set(&mut self, set: &SelectionSet, document: &ExecutableDocument) {
        self.use_type(set.ty.as_str());
        for selection in &set.selections {
            match selection {
                Selection::Field(field) => {
                    if field.name.starts_with("__") {
                        continue;
                    }
                    let coordinate = format!("{}.{}", set.ty, field.name);
                    for arg in &field.arguments {
                        self.insert(format!("{coordinate}.{}", arg.name));
                        if let Some(def) = field.definition.argument_by_name(&arg.name) {
                            let ty = def.ty.clone();
                            self.value(&arg.value, &ty);
                        }
                    }
                    self.insert(coordinate);
                    self.use_type(field.definition.ty.inner_named_type().as_str());
                    self.directives(&field.directives);
                    self.selection_set(&field.selection_set, document);
                }
                Selection::InlineFragment(inline) => {
                    if let Some(t) = &inline.type_condition {
                        self.use_type(t.as_str());
                    }
                    self.directives(&inline.directives);
                    self.selection_set(&inline.selection_set, document);
                }
                Selection::FragmentSpread(spread) => {
                    self.directives(&spread.directives);
                    if self.fragments.insert(spread.fragment_name.to_string()) {
                        if let Some(fragment) = document.fragments.get(&spread.fragment_name) {
                            self.directives(&fragment.directives);
                            self.selection_set(&fragment.selection_set, document);
                        }
                    }
                }
            }
        }
    }

    /// A literal value of type `ty`: enum values and input fields written in the operation.
    fn value(&mut self, value: &ast::Value, ty: &ast::Type) {
        let named = ty.inner_named_type();
        match value {
            ast::Value::Enum(v) => {
                self.use_type(named.as_str());
                self.insert(format!("{named}.{v}"));
            }
            ast::Value::List(items) => {
                let item = ty.item_type().clone();
                for i in items {
                    self.value(i, &item);
                }
            }
            ast::Value::Object(fields) => {
                self.use_type(named.as_str());
                let def = match self.schema.types.get(named.as_str()) {
                    Some(ExtendedType::InputObject(input)) => Some(input.clone()),
                    _ => None,
                };
                for (name, v) in fields {
                    self.insert(format!("{named}.{name}"));
                    if let Some(field) = def.as_ref().and_then(|d| d.fields.get(name)) {
                        let ty = field.ty.clone();
                        self.value(v, &ty);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use apollo_compiler::{ExecutableDocument, Schema};

    use super::*;
    use crate::diff::Level;

    const SDL: &str =
        "type Query { users(first: Int, after: String, role: Role): [User] node(id: ID!): User }
type User { id: ID! name: String posts(filter: PostFilter): [String] }
enum Role { ADMIN EDITOR }
enum Status { OPEN CLOSED }
input PostFilter { status: Status, tag: String }
directive @cached(ttl: Int) on FIELD";

    fn uses(operation: &str) -> Uses {
        let schema = Schema::parse_and_validate(SDL, "s.graphql").unwrap();
        let doc = ExecutableDocument::parse_and_validate(&schema, operation, "q.graphql").unwrap();
        Uses::of(&doc, &schema)
    }

    fn change(kind: ChangeType, path: &str) -> Change {
        Change {
            kind,
            level: Level::Breaking,
            path: Some(path.to_owned()),
            message: String::new(),
            unused: false,
            note: None,
        }
    }

    #[test]
    fn coordinates_of_fields_arguments_literals_and_directives() {
        let u = uses("query { users(first: 2, role: ADMIN) @cached(ttl: 1) { name } }");
        for c in [
            "Query",
            "Query.users",
            "Query.users.first",
            "Query.users.role",
            "Role.ADMIN",
            "User.name",
            "User",
            "@cached",
        ] {
            assert!(u.coordinates.contains(c), "{c}: {u:?}");
        }
        assert!(!u.coordinates.contains("Query.users.after"));
        assert!(u.whole.is_empty());
    }

    #[test]
    fn which_changes_an_operation_touches() {
        use ChangeType as T;
        let schema = crate::schema::load(SDL.as_bytes(), "s.graphql").unwrap().model;
        let u = uses(
            "query($f: PostFilter) { users(first: 2, role: ADMIN) { name posts(filter: $f) } }",
        );
        let t = |kind, path| u.touches(&change(kind, path), &schema);
        // A new required argument breaks every use of the field; removing one breaks only its users.
        assert!(t(T::FieldArgumentAdded, "Query.users.limit"));
        assert!(!t(T::FieldArgumentAdded, "Query.node.extra"));
        assert!(t(T::FieldArgumentRemoved, "Query.users.first"));
        assert!(!t(T::FieldArgumentRemoved, "Query.users.after"));
        // `after` is not passed and not required in this schema: a type change to it does not matter.
        assert!(!t(T::FieldArgumentTypeChanged, "Query.users.after"));
        assert!(t(T::EnumValueRemoved, "Role.ADMIN"));
        assert!(!t(T::EnumValueRemoved, "Role.EDITOR"));
        // The variable's input type is used whole, with the enum it reaches.
        assert!(t(T::InputFieldTypeChanged, "PostFilter.tag"));
        assert!(t(T::EnumValueRemoved, "Status.CLOSED"));
        assert!(t(T::FieldRemoved, "User.name"));
        assert!(!t(T::FieldRemoved, "User.id"));
        assert!(!t(T::DirectiveRemoved, "@cached"));
        assert!(u.touches(&Change { path: None, ..change(T::SchemaQueryTypeChanged, "") }, &schema));
    }
}
