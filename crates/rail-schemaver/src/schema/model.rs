//! The schema model the diff engine compares.
//!
//! SDL (through apollo-compiler) and introspection JSON are both converted into this one shape, so the
//! diff never cares where a schema came from. It keeps what GraphQL Inspector's rules look at: names in
//! definition order, descriptions, types, default values as literals, deprecations and, for SDL, the
//! directive usages written on each element (introspection does not carry those).

use std::collections::HashMap;
use std::fmt;

/// Names of the built-in scalars; they are never reported as added or removed.
pub const BUILT_IN_SCALARS: [&str; 5] = ["String", "Int", "Float", "Boolean", "ID"];

/// Directives every GraphQL server defines; their definitions are not compared.
pub const SPECIFIED_DIRECTIVES: [&str; 5] =
    ["include", "skip", "deprecated", "specifiedBy", "oneOf"];

/// The reason `@deprecated` carries when none is written.
pub const DEFAULT_DEPRECATION_REASON: &str = "No longer supported";

/// A whole schema.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Schema {
    pub query: Option<String>,
    pub mutation: Option<String>,
    pub subscription: Option<String>,
    /// Named types in definition order, without built-in scalars and introspection types.
    pub types: Vec<NamedType>,
    /// Directive definitions in definition order, without the specified ones.
    pub directives: Vec<DirectiveDef>,
    /// Directives applied to the schema definition, then to each `extend schema`, in order.
    pub schema_directives: Vec<Vec<DirectiveUsage>>,
    /// Whether directive usages are known (SDL) or not (introspection).
    pub has_directive_usages: bool,
    index: HashMap<String, usize>,
}

impl Schema {
    /// Build a schema, indexing its types by name. Later duplicates replace earlier ones in place.
    pub fn new(
        roots: [Option<String>; 3],
        types: Vec<NamedType>,
        directives: Vec<DirectiveDef>,
        schema_directives: Vec<Vec<DirectiveUsage>>,
        has_directive_usages: bool,
    ) -> Self {
        let [query, mutation, subscription] = roots;
        let mut deduped: Vec<NamedType> = Vec::with_capacity(types.len());
        let mut index = HashMap::with_capacity(types.len());
        for ty in types {
            if let Some(&at) = index.get(&ty.name) {
                deduped[at] = ty;
            } else {
                index.insert(ty.name.clone(), deduped.len());
                deduped.push(ty);
            }
        }
        Self {
            query,
            mutation,
            subscription,
            types: deduped,
            directives,
            schema_directives,
            has_directive_usages,
            index,
        }
    }

    pub fn get_type(&self, name: &str) -> Option<&NamedType> {
        self.index.get(name).map(|&i| &self.types[i])
    }
}

/// The kind of a named type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeKind {
    Scalar,
    Object,
    Interface,
    Union,
    Enum,
    InputObject,
}

impl TypeKind {
    /// The name graphql-js gives the kind's definition node, which Inspector prints.
    pub fn ast_kind(self) -> &'static str {
        match self {
            TypeKind::Scalar => "ScalarTypeDefinition",
            TypeKind::Object => "ObjectTypeDefinition",
            TypeKind::Interface => "InterfaceTypeDefinition",
            TypeKind::Union => "UnionTypeDefinition",
            TypeKind::Enum => "EnumTypeDefinition",
            TypeKind::InputObject => "InputObjectTypeDefinition",
        }
    }

    /// The SDL keyword introducing a definition of this kind.
    pub fn keyword(self) -> &'static str {
        match self {
            TypeKind::Scalar => "scalar",
            TypeKind::Object => "type",
            TypeKind::Interface => "interface",
            TypeKind::Union => "union",
            TypeKind::Enum => "enum",
            TypeKind::InputObject => "input",
        }
    }
}

/// A named type. Only the members that fit its kind are filled.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedType {
    pub name: String,
    pub kind: TypeKind,
    pub description: Option<String>,
    /// Directives on the type definition itself (not on its extensions), as Inspector reads them.
    pub directives: Vec<DirectiveUsage>,
    /// Object and interface types.
    pub interfaces: Vec<String>,
    pub fields: Vec<Field>,
    /// Union types.
    pub members: Vec<String>,
    /// Enum types.
    pub values: Vec<EnumValue>,
    /// Input object types.
    pub input_fields: Vec<InputValue>,
}

impl NamedType {
    pub fn new(name: impl Into<String>, kind: TypeKind) -> Self {
        Self {
            name: name.into(),
            kind,
            description: None,
            directives: Vec::new(),
            interfaces: Vec::new(),
            fields: Vec::new(),
            members: Vec::new(),
            values: Vec::new(),
            input_fields: Vec::new(),
        }
    }

    pub fn input_field(&self, name: &str) -> Option<&InputValue> {
        self.input_fields.iter().find(|f| f.name == name)
    }
}

/// A field of an object or interface type.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub description: Option<String>,
    pub ty: TypeRef,
    pub args: Vec<InputValue>,
    pub deprecation: Deprecation,
    pub directives: Vec<DirectiveUsage>,
}

/// An argument or an input field.
#[derive(Debug, Clone, PartialEq)]
pub struct InputValue {
    pub name: String,
    pub description: Option<String>,
    pub ty: TypeRef,
    pub default: Option<Literal>,
    pub deprecation: Deprecation,
    pub directives: Vec<DirectiveUsage>,
}

/// A value of an enum type.
#[derive(Debug, Clone, PartialEq)]
pub struct EnumValue {
    pub name: String,
    pub description: Option<String>,
    pub deprecation: Deprecation,
    pub directives: Vec<DirectiveUsage>,
}

/// Whether an element is deprecated, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deprecation {
    pub deprecated: bool,
    /// The reason; `@deprecated` without one means [`DEFAULT_DEPRECATION_REASON`], and an explicit
    /// `reason: null` means none.
    pub reason: Option<String>,
}

impl Deprecation {
    pub fn with_reason(reason: Option<String>) -> Self {
        Self { deprecated: true, reason }
    }
}

/// A directive definition.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectiveDef {
    pub name: String,
    pub description: Option<String>,
    pub repeatable: bool,
    /// Location names as written (`FIELD_DEFINITION`); unknown ones are kept, not rejected.
    pub locations: Vec<String>,
    pub args: Vec<InputValue>,
}

/// One application of a directive, with its arguments as written.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectiveUsage {
    pub name: String,
    pub args: Vec<(String, Literal)>,
}

/// A reference to a type: `Name`, `[T]` or `T!`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeRef {
    Named(String),
    List(Box<TypeRef>),
    NonNull(Box<TypeRef>),
}

impl TypeRef {
    pub fn is_wrapping(&self) -> bool {
        !matches!(self, TypeRef::Named(_))
    }

    pub fn is_non_null(&self) -> bool {
        matches!(self, TypeRef::NonNull(_))
    }

    /// The named type at the bottom of the wrappers.
    pub fn named(&self) -> &str {
        match self {
            TypeRef::Named(name) => name,
            TypeRef::List(inner) | TypeRef::NonNull(inner) => inner.named(),
        }
    }
}

impl fmt::Display for TypeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TypeRef::Named(name) => f.write_str(name),
            TypeRef::List(inner) => write!(f, "[{inner}]"),
            TypeRef::NonNull(inner) => write!(f, "{inner}!"),
        }
    }
}

/// A GraphQL value literal as written in a default value or a directive argument.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Null,
    /// The digits as written, so huge or oddly written numbers survive unchanged.
    Int(String),
    Float(String),
    String(String),
    Boolean(bool),
    Enum(String),
    Variable(String),
    List(Vec<Literal>),
    Object(Vec<(String, Literal)>),
}
