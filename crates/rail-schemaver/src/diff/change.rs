//! Change types and levels, named as GraphQL Inspector names them so reports can be compared line by
//! line with Inspector's.

use std::fmt;

use serde::Serialize;

/// How a change affects existing clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Existing operations can fail.
    Breaking,
    /// Existing operations keep working but may behave differently (a new enum value, a new default).
    Dangerous,
    /// Nothing existing changes (Inspector's NON_BREAKING).
    Safe,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Breaking => "breaking",
            Level::Dangerous => "dangerous",
            Level::Safe => "safe",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! change_types {
    ($($variant:ident => $name:literal,)*) => {
        /// Every change type GraphQL Inspector reports.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ChangeType {
            $($variant,)*
        }

        impl ChangeType {
            /// All change types, in Inspector's order.
            pub const ALL: &'static [ChangeType] = &[$(ChangeType::$variant,)*];

            /// Inspector's name, e.g. `FIELD_REMOVED`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ChangeType::$variant => $name,)*
                }
            }
        }
    };
}

change_types! {
    FieldArgumentDescriptionChanged => "FIELD_ARGUMENT_DESCRIPTION_CHANGED",
    FieldArgumentDefaultChanged => "FIELD_ARGUMENT_DEFAULT_CHANGED",
    FieldArgumentTypeChanged => "FIELD_ARGUMENT_TYPE_CHANGED",
    DirectiveRemoved => "DIRECTIVE_REMOVED",
    DirectiveAdded => "DIRECTIVE_ADDED",
    DirectiveDescriptionChanged => "DIRECTIVE_DESCRIPTION_CHANGED",
    DirectiveLocationAdded => "DIRECTIVE_LOCATION_ADDED",
    DirectiveLocationRemoved => "DIRECTIVE_LOCATION_REMOVED",
    DirectiveArgumentAdded => "DIRECTIVE_ARGUMENT_ADDED",
    DirectiveArgumentRemoved => "DIRECTIVE_ARGUMENT_REMOVED",
    DirectiveArgumentDescriptionChanged => "DIRECTIVE_ARGUMENT_DESCRIPTION_CHANGED",
    DirectiveArgumentDefaultValueChanged => "DIRECTIVE_ARGUMENT_DEFAULT_VALUE_CHANGED",
    DirectiveArgumentTypeChanged => "DIRECTIVE_ARGUMENT_TYPE_CHANGED",
    DirectiveRepeatableAdded => "DIRECTIVE_REPEATABLE_ADDED",
    DirectiveRepeatableRemoved => "DIRECTIVE_REPEATABLE_REMOVED",
    EnumValueRemoved => "ENUM_VALUE_REMOVED",
    EnumValueAdded => "ENUM_VALUE_ADDED",
    EnumValueDescriptionChanged => "ENUM_VALUE_DESCRIPTION_CHANGED",
    EnumValueDeprecationReasonChanged => "ENUM_VALUE_DEPRECATION_REASON_CHANGED",
    EnumValueDeprecationReasonAdded => "ENUM_VALUE_DEPRECATION_REASON_ADDED",
    EnumValueDeprecationReasonRemoved => "ENUM_VALUE_DEPRECATION_REASON_REMOVED",
    FieldRemoved => "FIELD_REMOVED",
    FieldAdded => "FIELD_ADDED",
    FieldDescriptionChanged => "FIELD_DESCRIPTION_CHANGED",
    FieldDescriptionAdded => "FIELD_DESCRIPTION_ADDED",
    FieldDescriptionRemoved => "FIELD_DESCRIPTION_REMOVED",
    FieldDeprecationAdded => "FIELD_DEPRECATION_ADDED",
    FieldDeprecationRemoved => "FIELD_DEPRECATION_REMOVED",
    FieldDeprecationReasonChanged => "FIELD_DEPRECATION_REASON_CHANGED",
    FieldDeprecationReasonAdded => "FIELD_DEPRECATION_REASON_ADDED",
    FieldDeprecationReasonRemoved => "FIELD_DEPRECATION_REASON_REMOVED",
    FieldTypeChanged => "FIELD_TYPE_CHANGED",
    FieldArgumentAdded => "FIELD_ARGUMENT_ADDED",
    FieldArgumentRemoved => "FIELD_ARGUMENT_REMOVED",
    InputFieldRemoved => "INPUT_FIELD_REMOVED",
    InputFieldAdded => "INPUT_FIELD_ADDED",
    InputFieldDescriptionAdded => "INPUT_FIELD_DESCRIPTION_ADDED",
    InputFieldDescriptionRemoved => "INPUT_FIELD_DESCRIPTION_REMOVED",
    InputFieldDescriptionChanged => "INPUT_FIELD_DESCRIPTION_CHANGED",
    InputFieldDefaultValueChanged => "INPUT_FIELD_DEFAULT_VALUE_CHANGED",
    InputFieldTypeChanged => "INPUT_FIELD_TYPE_CHANGED",
    ObjectTypeInterfaceAdded => "OBJECT_TYPE_INTERFACE_ADDED",
    ObjectTypeInterfaceRemoved => "OBJECT_TYPE_INTERFACE_REMOVED",
    SchemaQueryTypeChanged => "SCHEMA_QUERY_TYPE_CHANGED",
    SchemaMutationTypeChanged => "SCHEMA_MUTATION_TYPE_CHANGED",
    SchemaSubscriptionTypeChanged => "SCHEMA_SUBSCRIPTION_TYPE_CHANGED",
    TypeRemoved => "TYPE_REMOVED",
    TypeAdded => "TYPE_ADDED",
    TypeKindChanged => "TYPE_KIND_CHANGED",
    TypeDescriptionChanged => "TYPE_DESCRIPTION_CHANGED",
    TypeDescriptionRemoved => "TYPE_DESCRIPTION_REMOVED",
    TypeDescriptionAdded => "TYPE_DESCRIPTION_ADDED",
    UnionMemberRemoved => "UNION_MEMBER_REMOVED",
    UnionMemberAdded => "UNION_MEMBER_ADDED",
    DirectiveUsageUnionMemberAdded => "DIRECTIVE_USAGE_UNION_MEMBER_ADDED",
    DirectiveUsageUnionMemberRemoved => "DIRECTIVE_USAGE_UNION_MEMBER_REMOVED",
    DirectiveUsageEnumAdded => "DIRECTIVE_USAGE_ENUM_ADDED",
    DirectiveUsageEnumRemoved => "DIRECTIVE_USAGE_ENUM_REMOVED",
    DirectiveUsageEnumValueAdded => "DIRECTIVE_USAGE_ENUM_VALUE_ADDED",
    DirectiveUsageEnumValueRemoved => "DIRECTIVE_USAGE_ENUM_VALUE_REMOVED",
    DirectiveUsageInputObjectAdded => "DIRECTIVE_USAGE_INPUT_OBJECT_ADDED",
    DirectiveUsageInputObjectRemoved => "DIRECTIVE_USAGE_INPUT_OBJECT_REMOVED",
    DirectiveUsageScalarAdded => "DIRECTIVE_USAGE_SCALAR_ADDED",
    DirectiveUsageScalarRemoved => "DIRECTIVE_USAGE_SCALAR_REMOVED",
    DirectiveUsageObjectAdded => "DIRECTIVE_USAGE_OBJECT_ADDED",
    DirectiveUsageObjectRemoved => "DIRECTIVE_USAGE_OBJECT_REMOVED",
    DirectiveUsageInterfaceAdded => "DIRECTIVE_USAGE_INTERFACE_ADDED",
    DirectiveUsageInterfaceRemoved => "DIRECTIVE_USAGE_INTERFACE_REMOVED",
    DirectiveUsageArgumentDefinitionAdded => "DIRECTIVE_USAGE_ARGUMENT_DEFINITION_ADDED",
    DirectiveUsageArgumentDefinitionRemoved => "DIRECTIVE_USAGE_ARGUMENT_DEFINITION_REMOVED",
    DirectiveUsageSchemaAdded => "DIRECTIVE_USAGE_SCHEMA_ADDED",
    DirectiveUsageSchemaRemoved => "DIRECTIVE_USAGE_SCHEMA_REMOVED",
    DirectiveUsageFieldDefinitionAdded => "DIRECTIVE_USAGE_FIELD_DEFINITION_ADDED",
    DirectiveUsageFieldDefinitionRemoved => "DIRECTIVE_USAGE_FIELD_DEFINITION_REMOVED",
    DirectiveUsageInputFieldDefinitionAdded => "DIRECTIVE_USAGE_INPUT_FIELD_DEFINITION_ADDED",
    DirectiveUsageInputFieldDefinitionRemoved => "DIRECTIVE_USAGE_INPUT_FIELD_DEFINITION_REMOVED",
    DirectiveUsageArgumentAdded => "DIRECTIVE_USAGE_ARGUMENT_ADDED",
    DirectiveUsageArgumentRemoved => "DIRECTIVE_USAGE_ARGUMENT_REMOVED",
}

impl ChangeType {
    /// Look a type up by Inspector's name.
    pub fn from_name(name: &str) -> Option<ChangeType> {
        Self::ALL.iter().copied().find(|t| t.as_str() == name)
    }

    /// Whether this is the addition of a directive usage on a schema element (not of a usage's
    /// argument).
    pub fn is_directive_usage_added(self) -> bool {
        let name = self.as_str();
        name.starts_with("DIRECTIVE_USAGE_")
            && name.ends_with("_ADDED")
            && self != ChangeType::DirectiveUsageArgumentAdded
    }

    pub fn is_directive_usage(self) -> bool {
        self.as_str().starts_with("DIRECTIVE_USAGE_")
    }
}

impl fmt::Display for ChangeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ChangeType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// One classified change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    #[serde(rename = "type")]
    pub kind: ChangeType,
    pub level: Level,
    /// `Type`, `Type.field`, `Type.field.arg`, `@directive`, `@directive.arg`; none for root types.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub message: String,
    /// With `--consider-usage`: a breaking change no known operation uses, reported as dangerous.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unused: bool,
    /// Why the level is not the change type's own ("breaking, unused by the N known operations").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Inspector's `fmt`: single quotes inside quoted text are backslash-escaped.
pub fn quote_text(text: &str) -> String {
    text.replace('\'', "\\'")
}
