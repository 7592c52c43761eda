//! The classifying diff: every difference between two schemas as a [`Change`] with GraphQL
//! Inspector's type, path, level and message.
//!
//! [`diff`] walks both schemas in the order Inspector does (directives, root types, types, schema
//! directives; inside a type: interfaces or members, fields, directive usages, then the description),
//! because the order decides which changes Inspector's simplification hides. [`simplify`] then drops
//! only changes that are implied by an earlier one (everything inside a newly added type, field,
//! argument, enum value or directive, and the `@deprecated` usage mirrored by a deprecation change).
//! Inspector drops every change whose path sits under any earlier "added" path, which hides, for
//! example, a field removed from a type that also gained an interface; schemaver reports those.

pub mod change;
mod render;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

pub use change::{Change, ChangeType, Level};
pub use render::{render_json, render_markdown, render_text, Counts};

use crate::schema::model::{
    DirectiveDef, DirectiveUsage, EnumValue, Field, InputValue, NamedType, Schema, TypeKind,
    TypeRef, DEFAULT_DEPRECATION_REASON,
};
use crate::schema::value::{coerce, js_equal, safe_string, JsValue};
use change::quote_text as q;

/// Every change between two schemas, unsimplified, in Inspector's emission order.
pub fn diff(old: &Schema, new: &Schema) -> Vec<Change> {
    let mut d = Differ { old, new, changes: Vec::new() };
    d.schema();
    d.changes
}

/// The changes worth reporting: [`diff`] without the ones implied by an earlier change, sorted by
/// path (root-type changes first), keeping emission order among equal paths.
pub fn diff_and_simplify(old: &Schema, new: &Schema) -> Vec<Change> {
    let mut changes = simplify(diff(old, new));
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    changes
}

/// Drop changes implied by an earlier change. See the module documentation for the rule.
pub fn simplify(changes: Vec<Change>) -> Vec<Change> {
    // The paths of earlier changes that can imply others, with their types.
    let mut implying: HashMap<String, Vec<ChangeType>> = HashMap::new();
    let mut kept = Vec::with_capacity(changes.len());
    for change in changes {
        let Some(path) = change.path.as_deref() else {
            kept.push(change);
            continue;
        };
        let parent = parent_path(path);
        let mut implied = false;
        for (candidate, same) in [(path, true), (parent, false)] {
            if !same && candidate == path {
                continue;
            }
            if let Some(kinds) = implying.get(candidate) {
                implied |= kinds.iter().any(|&by| implies(by, &change, same));
            }
        }
        if may_imply(change.kind) {
            implying.entry(path.to_owned()).or_default().push(change.kind);
        }
        if !implied {
            kept.push(change);
        }
    }
    kept
}

/// Inspector's notion of a parent: the path up to its last dot.
pub fn parent_path(path: &str) -> &str {
    path.rfind('.').map_or(path, |i| &path[..i])
}

fn may_imply(kind: ChangeType) -> bool {
    use ChangeType as T;
    matches!(
        kind,
        T::TypeAdded
            | T::FieldAdded
            | T::InputFieldAdded
            | T::EnumValueAdded
            | T::FieldArgumentAdded
            | T::DirectiveAdded
            | T::FieldDeprecationAdded
            | T::FieldDeprecationRemoved
            | T::FieldDeprecationReasonAdded
            | T::FieldDeprecationReasonChanged
            | T::EnumValueDeprecationReasonAdded
            | T::EnumValueDeprecationReasonChanged
    ) || kind.is_directive_usage_added()
}

/// Whether a change of kind `by`, at the same path as `change` (`same`) or at its parent, makes
/// `change` redundant.
fn implies(by: ChangeType, change: &Change, same: bool) -> bool {
    use ChangeType as T;
    match by {
        // Everything about a new element comes from comparing it with nothing.
        T::TypeAdded
        | T::FieldAdded
        | T::InputFieldAdded
        | T::EnumValueAdded
        | T::FieldArgumentAdded
        | T::DirectiveAdded => true,
        // `@deprecated` is also a directive usage; the deprecation change already says it.
        T::FieldDeprecationAdded
        | T::FieldDeprecationRemoved
        | T::FieldDeprecationReasonAdded
        | T::FieldDeprecationReasonChanged
        | T::EnumValueDeprecationReasonAdded
        | T::EnumValueDeprecationReasonChanged => change.kind.is_directive_usage(),
        // The arguments of a new directive usage.
        _ if by.is_directive_usage_added() => {
            !same && change.kind == T::DirectiveUsageArgumentAdded
        }
        _ => false,
    }
}

struct Differ<'a> {
    old: &'a Schema,
    new: &'a Schema,
    changes: Vec<Change>,
}

/// Where a directive usage sits, for the paths of its argument changes.
#[derive(Clone, Copy, Default)]
struct UsageParent<'a> {
    ty: Option<&'a str>,
    field: Option<&'a str>,
    arg: Option<&'a str>,
    enum_value: Option<&'a str>,
}

/// What a directive usage is attached to, for the usage change's type, path and message.
#[derive(Clone, Copy)]
enum UsageSite<'a> {
    Schema,
    Type(TypeKind, &'a str),
    Field(&'a str, &'a str),
    Argument(&'a str, &'a str, &'a str),
    InputField(&'a str, &'a str),
    EnumValue(&'a str, &'a str),
}

/// graphql-inspector's `isEqual` on optional strings: equal, or both empty/absent.
fn same_text(a: Option<&str>, b: Option<&str>) -> bool {
    a == b || (a.is_none_or(str::is_empty) && b.is_none_or(str::is_empty))
}

fn truthy(s: Option<&str>) -> bool {
    s.is_some_and(|s| !s.is_empty())
}

fn reason(dep: &crate::schema::model::Deprecation) -> Option<&str> {
    if dep.deprecated {
        dep.reason.as_deref()
    } else {
        None
    }
}

fn is_default_reason(r: Option<&str>) -> bool {
    r.is_none() || r == Some(DEFAULT_DEPRECATION_REASON)
}

/// The three outcomes of matching two lists by name.
struct Matched<'a, T> {
    removed: Vec<&'a T>,
    added: Vec<&'a T>,
    mutual: Vec<(&'a T, &'a T)>,
}

/// graphql-inspector's `compareLists`: match by name, the last of duplicate names winning.
fn match_by_name<'a, T>(old: &'a [T], new: &'a [T], name: impl Fn(&T) -> &str) -> Matched<'a, T> {
    let mut out = Matched { removed: Vec::new(), added: Vec::new(), mutual: Vec::new() };
    if old.len() + new.len() <= 24 {
        let find = |list: &'a [T], n: &str| list.iter().rev().find(|x| name(x) == n);
        for o in old {
            match find(new, name(o)) {
                Some(n) => out.mutual.push((o, n)),
                None => out.removed.push(o),
            }
        }
        for n in new {
            if find(old, name(n)).is_none() {
                out.added.push(n);
            }
        }
    } else {
        let new_map: HashMap<&str, &T> = new.iter().map(|n| (name(n), n)).collect();
        let old_names: std::collections::HashSet<&str> = old.iter().map(&name).collect();
        for o in old {
            match new_map.get(name(o)) {
                Some(n) => out.mutual.push((o, n)),
                None => out.removed.push(o),
            }
        }
        for n in new {
            if !old_names.contains(name(n)) {
                out.added.push(n);
            }
        }
    }
    out
}

/// graphql-inspector's `compareDirectiveLists`: the k-th usage of a name in the old list matches the
/// k-th in the new one, so repeated directives pair up in order.
fn match_usages<'a>(
    old: &'a [DirectiveUsage],
    new: &'a [DirectiveUsage],
) -> Matched<'a, DirectiveUsage> {
    let mut out = Matched { removed: Vec::new(), added: Vec::new(), mutual: Vec::new() };
    let nth = |list: &'a [DirectiveUsage], name: &str, k: usize| {
        list.iter().filter(|u| u.name == name).nth(k)
    };
    for (i, o) in old.iter().enumerate() {
        let k = old[..i].iter().filter(|u| u.name == o.name).count();
        match nth(new, &o.name, k) {
            Some(n) => out.mutual.push((o, n)),
            None => out.removed.push(o),
        }
    }
    for (i, n) in new.iter().enumerate() {
        let k = new[..i].iter().filter(|u| u.name == n.name).count();
        if nth(old, &n.name, k).is_none() {
            out.added.push(n);
        }
    }
    out
}

/// graphql-inspector's `safeChangeForField`: output types may become stricter.
fn safe_output_change(old: &TypeRef, new: &TypeRef) -> bool {
    if !old.is_wrapping() && !new.is_wrapping() {
        return old == new;
    }
    if let TypeRef::NonNull(new_inner) = new {
        let old_inner = match old {
            TypeRef::NonNull(inner) => inner,
            other => other,
        };
        return safe_output_change(old_inner, new_inner);
    }
    if let TypeRef::List(old_inner) = old {
        return matches!(new, TypeRef::List(new_inner) if safe_output_change(old_inner, new_inner))
            || matches!(new, TypeRef::NonNull(new_inner) if safe_output_change(old, new_inner));
    }
    false
}

/// graphql-inspector's `safeChangeForInputValue`: input types may become looser.
fn safe_input_change(old: &TypeRef, new: &TypeRef) -> bool {
    if !old.is_wrapping() && !new.is_wrapping() {
        return old == new;
    }
    if let (TypeRef::List(o), TypeRef::List(n)) = (old, new) {
        return safe_input_change(o, n);
    }
    if let TypeRef::NonNull(old_inner) = old {
        let new_inner = match new {
            TypeRef::NonNull(inner) => inner,
            other => other,
        };
        return safe_input_change(old_inner, new_inner);
    }
    false
}

fn level_if(safe: bool) -> Level {
    if safe {
        Level::Safe
    } else {
        Level::Breaking
    }
}

/// The level of adding a directive usage: `@deprecated` is safe, `@oneOf` breaking, others dangerous.
fn usage_added_level(name: &str, to_new: bool) -> Level {
    match name {
        _ if to_new => Level::Safe,
        "deprecated" => Level::Safe,
        "oneOf" => Level::Breaking,
        _ => Level::Dangerous,
    }
}

fn usage_removed_level(name: &str) -> Level {
    match name {
        "deprecated" | "oneOf" => Level::Safe,
        _ => Level::Dangerous,
    }
}

fn or_undefined(v: Option<&String>) -> &str {
    v.map_or("undefined", String::as_str)
}

impl<'a> Differ<'a> {
    fn add(&mut self, kind: ChangeType, level: Level, path: Option<String>, message: String) {
        self.changes.push(Change { kind, level, path, message, unused: false, note: None });
    }

    fn schema(&mut self) {
        let (old, new) = (self.old, self.new);

        let m = match_by_name(&old.directives, &new.directives, |d| &d.name);
        for d in m.removed {
            self.add(
                ChangeType::DirectiveRemoved,
                Level::Breaking,
                Some(format!("@{}", d.name)),
                format!("Directive '{}' was removed", d.name),
            );
        }
        for d in m.added {
            self.add(
                ChangeType::DirectiveAdded,
                Level::Safe,
                Some(format!("@{}", d.name)),
                format!("Directive '{}' was added", d.name),
            );
            self.directive(None, d);
        }
        for (o, n) in m.mutual {
            self.directive(Some(o), n);
        }

        self.root_types();

        let m = match_by_name(&old.types, &new.types, |t| &t.name);
        for t in m.removed {
            self.add(
                ChangeType::TypeRemoved,
                Level::Breaking,
                Some(t.name.clone()),
                format!("Type '{}' was removed", t.name),
            );
        }
        for t in m.added {
            self.add(
                ChangeType::TypeAdded,
                Level::Safe,
                Some(t.name.clone()),
                format!("Type '{}' was added", t.name),
            );
            self.named_type(None, t);
        }
        for (o, n) in m.mutual {
            self.named_type(Some(o), n);
        }

        let groups = old.schema_directives.len().max(new.schema_directives.len());
        for g in 0..groups {
            let o = old.schema_directives.get(g).map_or(&[][..], |v| &v[..]);
            let n = new.schema_directives.get(g).map_or(&[][..], |v| &v[..]);
            self.usages(o, n, UsageSite::Schema, UsageParent::default(), false);
        }
    }

    fn root_types(&mut self) {
        let roots = [
            (
                ChangeType::SchemaQueryTypeChanged,
                "query root type",
                &self.old.query,
                &self.new.query,
            ),
            (
                ChangeType::SchemaMutationTypeChanged,
                "mutation type",
                &self.old.mutation,
                &self.new.mutation,
            ),
            (
                ChangeType::SchemaSubscriptionTypeChanged,
                "subscription type",
                &self.old.subscription,
                &self.new.subscription,
            ),
        ];
        for (kind, what, old, new) in roots {
            let (level, message) = match (old, new) {
                (None, Some(n)) => (Level::Safe, format!("Schema {what} was set to '{n}'.")),
                (Some(o), None) => (Level::Breaking, format!("Schema {what} '{o}' was removed.")),
                (Some(o), Some(n)) if o != n => {
                    (Level::Breaking, format!("Schema {what} was changed from '{o}' to '{n}'"))
                }
                _ => continue,
            };
            self.add(kind, level, None, message);
        }
    }

    fn named_type(&mut self, old: Option<&'a NamedType>, new: &'a NamedType) {
        match old {
            Some(o) if o.kind != new.kind => {
                self.add(
                    ChangeType::TypeKindChanged,
                    Level::Breaking,
                    Some(new.name.clone()),
                    format!(
                        "'{}' kind changed from '{}' to '{}'",
                        new.name,
                        o.kind.ast_kind(),
                        new.kind.ast_kind()
                    ),
                );
            }
            _ => match new.kind {
                TypeKind::Enum => self.enum_type(old, new),
                TypeKind::Union => self.union_type(old, new),
                TypeKind::InputObject => self.input_object(old, new),
                TypeKind::Object | TypeKind::Interface => self.object_like(old, new),
                TypeKind::Scalar => {
                    let o = old.map_or(&[][..], |o| &o.directives[..]);
                    let site = UsageSite::Type(TypeKind::Scalar, &new.name);
                    let parent = UsageParent { ty: Some(&new.name), ..UsageParent::default() };
                    self.usages(o, &new.directives, site, parent, old.is_none());
                }
            },
        }

        let old_desc = old.and_then(|o| o.description.as_deref());
        let new_desc = new.description.as_deref();
        if !same_text(old_desc, new_desc) {
            let path = Some(new.name.clone());
            if old_desc.is_none() {
                self.add(
                    ChangeType::TypeDescriptionAdded,
                    Level::Safe,
                    path,
                    format!(
                        "Object type '{}' has description '{}'",
                        new.name,
                        q(new_desc.unwrap_or(""))
                    ),
                );
            } else if truthy(old_desc) && new_desc.is_none() {
                self.add(
                    ChangeType::TypeDescriptionRemoved,
                    Level::Safe,
                    path,
                    format!(
                        "Description '{}' was removed from object type '{}'",
                        q(old_desc.unwrap_or("")),
                        new.name
                    ),
                );
            } else {
                self.add(
                    ChangeType::TypeDescriptionChanged,
                    Level::Safe,
                    path,
                    format!(
                        "Description '{}' on type '{}' has changed to '{}'",
                        q(old_desc.unwrap_or("")),
                        new.name,
                        q(new_desc.unwrap_or(""))
                    ),
                );
            }
        }
    }

    fn object_like(&mut self, old: Option<&'a NamedType>, new: &'a NamedType) {
        let type_word = if new.kind == TypeKind::Interface { "interface" } else { "object type" };
        let empty_names: &[String] = &[];
        let old_ifaces = old.map_or(empty_names, |o| &o.interfaces[..]);
        let m = match_by_name(old_ifaces, &new.interfaces, |s| s);
        for i in m.removed {
            self.add(
                ChangeType::ObjectTypeInterfaceRemoved,
                Level::Breaking,
                Some(new.name.clone()),
                format!("'{}' object type no longer implements '{i}' interface", new.name),
            );
        }
        for i in m.added {
            self.add(
                ChangeType::ObjectTypeInterfaceAdded,
                if old.is_none() { Level::Safe } else { Level::Dangerous },
                Some(new.name.clone()),
                format!("'{}' object implements '{i}' interface", new.name),
            );
        }

        let old_fields = old.map_or(&[][..], |o| &o.fields[..]);
        let m = match_by_name(old_fields, &new.fields, |f| &f.name);
        for f in m.removed {
            let deprecated = if reason(&f.deprecation).is_some() { "(deprecated) " } else { "" };
            self.add(
                ChangeType::FieldRemoved,
                Level::Breaking,
                Some(format!("{}.{}", new.name, f.name)),
                format!(
                    "Field '{}' {deprecated}was removed from {type_word} '{}'",
                    f.name, new.name
                ),
            );
        }
        for f in m.added {
            self.add(
                ChangeType::FieldAdded,
                Level::Safe,
                Some(format!("{}.{}", new.name, f.name)),
                format!("Field '{}' was added to {type_word} '{}'", f.name, new.name),
            );
            self.field(new, None, f);
        }
        for (o, n) in m.mutual {
            self.field(new, Some(o), n);
        }

        let o = old.map_or(&[][..], |o| &o.directives[..]);
        let site = UsageSite::Type(new.kind, &new.name);
        let parent = UsageParent { ty: Some(&new.name), ..UsageParent::default() };
        self.usages(o, &new.directives, site, parent, old.is_none());
    }

    fn field(&mut self, ty: &'a NamedType, old: Option<&'a Field>, new: &'a Field) {
        let t = &ty.name;
        let f = &new.name;
        let path = || Some(format!("{t}.{f}"));
        let dep_path = || Some(format!("{t}.{f}.@deprecated"));

        let old_desc = old.and_then(|o| o.description.as_deref());
        let new_desc = new.description.as_deref();
        if !same_text(old_desc, new_desc) {
            if old_desc.is_none() {
                self.add(
                    ChangeType::FieldDescriptionAdded,
                    Level::Safe,
                    path(),
                    format!("Field '{t}.{f}' has description '{}'", q(new_desc.unwrap_or(""))),
                );
            } else if new_desc.is_none() {
                self.add(
                    ChangeType::FieldDescriptionRemoved,
                    Level::Safe,
                    path(),
                    format!("Description was removed from field '{t}.{f}'"),
                );
            } else {
                let (o, n) = (old_desc.unwrap_or(""), new_desc.unwrap_or(""));
                let message = if o.is_empty() && !n.is_empty() {
                    format!("Field '{t}.{f}' description '{}' was added", q(n))
                } else if n.is_empty() && !o.is_empty() {
                    format!("Field '{t}.{f}' description '{}' was removed", q(o))
                } else {
                    format!("Field '{t}.{f}' description changed from '{}' to '{}'", q(o), q(n))
                };
                self.add(ChangeType::FieldDescriptionChanged, Level::Safe, path(), message);
            }
        }

        let old_deprecated = old.is_some_and(|o| o.deprecation.deprecated);
        if !old_deprecated {
            if new.deprecation.deprecated {
                self.add(
                    ChangeType::FieldDeprecationAdded,
                    Level::Safe,
                    dep_path(),
                    format!("Field '{t}.{f}' is deprecated"),
                );
            }
        } else if !new.deprecation.deprecated {
            self.add(
                ChangeType::FieldDeprecationRemoved,
                Level::Safe,
                dep_path(),
                format!("Field '{t}.{f}' is no longer deprecated"),
            );
        } else if let Some(old) = old {
            let (o, n) = (reason(&old.deprecation), reason(&new.deprecation));
            if !same_text(o, n) {
                if is_default_reason(o) {
                    self.add(
                        ChangeType::FieldDeprecationReasonAdded,
                        Level::Safe,
                        dep_path(),
                        format!("Field '{t}.{f}' has deprecation reason '{}'", q(n.unwrap_or(""))),
                    );
                } else if is_default_reason(n) {
                    self.add(
                        ChangeType::FieldDeprecationReasonRemoved,
                        Level::Safe,
                        path(),
                        format!("Deprecation reason was removed from field '{t}.{f}'"),
                    );
                } else {
                    self.add(
                        ChangeType::FieldDeprecationReasonChanged,
                        Level::Safe,
                        dep_path(),
                        format!(
                            "Deprecation reason on field '{t}.{f}' has changed from '{}' to '{}'",
                            q(o.unwrap_or("")),
                            q(n.unwrap_or(""))
                        ),
                    );
                }
            }
        }

        if let Some(o) = old {
            if o.ty != new.ty {
                self.add(
                    ChangeType::FieldTypeChanged,
                    level_if(safe_output_change(&o.ty, &new.ty)),
                    path(),
                    format!("Field '{t}.{f}' changed type from '{}' to '{}'", o.ty, new.ty),
                );
            }
        }

        let old_args = old.map_or(&[][..], |o| &o.args[..]);
        let m = match_by_name(old_args, &new.args, |a| &a.name);
        for a in m.added {
            let has_default = self.default_of(a, false).is_some();
            let level = if old.is_none() {
                Level::Safe
            } else if a.ty.is_non_null() && !has_default {
                Level::Breaking
            } else {
                Level::Dangerous
            };
            let with = if has_default { " (with default value) " } else { " " };
            self.add(
                ChangeType::FieldArgumentAdded,
                level,
                Some(format!("{t}.{f}.{}", a.name)),
                format!("Argument '{}: {}'{with}added to field '{t}.{f}'", a.name, a.ty),
            );
        }
        for a in m.removed {
            self.add(
                ChangeType::FieldArgumentRemoved,
                Level::Breaking,
                Some(format!("{t}.{f}.{}", a.name)),
                format!("Argument '{}: {}' was removed from field '{t}.{f}'", a.name, a.ty),
            );
        }
        for (o, n) in m.mutual {
            self.argument(ty, new, o, n);
        }

        let o = old.map_or(&[][..], |o| &o.directives[..]);
        let parent = UsageParent { ty: Some(t), field: Some(f), ..UsageParent::default() };
        self.usages(o, &new.directives, UsageSite::Field(t, f), parent, old.is_none());
    }

    /// A default value coerced against its schema (`old` picks which), rendered as Inspector does.
    fn default_of(&self, v: &InputValue, old: bool) -> Option<JsValue> {
        let schema = if old { self.old } else { self.new };
        v.default.as_ref().and_then(|lit| coerce(lit, &v.ty, schema))
    }

    fn argument(
        &mut self,
        ty: &'a NamedType,
        field: &'a Field,
        old: &'a InputValue,
        new: &'a InputValue,
    ) {
        let (t, f, a) = (&ty.name, &field.name, &new.name);
        let path = || Some(format!("{t}.{f}.{a}"));

        let (od, nd) = (old.description.as_deref(), new.description.as_deref());
        if !same_text(od, nd) {
            let message = match (od, nd) {
                (None, Some(n)) => {
                    format!("Description '{}' was added to argument '{a}' on field '{t}.{f}'", q(n))
                }
                (Some(o), None) => format!(
                    "Description '{}' was removed from argument '{a}' on field '{t}.{f}'",
                    q(o)
                ),
                _ => format!(
                    "Description for argument '{a}' on field '{t}.{f}' changed from '{}' to '{}'",
                    q(od.unwrap_or("")),
                    q(nd.unwrap_or(""))
                ),
            };
            self.add(ChangeType::FieldArgumentDescriptionChanged, Level::Safe, path(), message);
        }

        let (ov, nv) = (self.default_of(old, true), self.default_of(new, false));
        if !js_equal(ov.as_ref(), nv.as_ref()) {
            let (ov, nv) = (ov.as_ref().map(safe_string), nv.as_ref().map(safe_string));
            let message = match &ov {
                None => format!(
                    "Default value '{}' was added to argument '{a}' on field '{t}.{f}'",
                    or_undefined(nv.as_ref())
                ),
                Some(o) => format!(
                    "Default value for argument '{a}' on field '{t}.{f}' changed from '{o}' to '{}'",
                    or_undefined(nv.as_ref())
                ),
            };
            self.add(ChangeType::FieldArgumentDefaultChanged, Level::Dangerous, path(), message);
        }

        if old.ty != new.ty {
            self.add(
                ChangeType::FieldArgumentTypeChanged,
                level_if(safe_input_change(&old.ty, &new.ty)),
                path(),
                format!(
                    "Type for argument '{a}' on field '{t}.{f}' changed from '{}' to '{}'",
                    old.ty, new.ty
                ),
            );
        }

        let parent =
            UsageParent { ty: Some(t), field: Some(f), arg: Some(a), ..UsageParent::default() };
        self.usages(&old.directives, &new.directives, UsageSite::Argument(t, f, a), parent, false);
    }

    fn input_object(&mut self, old: Option<&'a NamedType>, new: &'a NamedType) {
        let i = &new.name;
        let old_fields = old.map_or(&[][..], |o| &o.input_fields[..]);
        let m = match_by_name(old_fields, &new.input_fields, |f| &f.name);
        for f in m.added {
            let default = self.default_of(f, false).map(|v| safe_string(&v));
            let nullable = !f.ty.is_non_null();
            let level = if old.is_none() || (nullable && default.is_none()) {
                Level::Safe
            } else if default.is_none() {
                Level::Breaking
            } else {
                Level::Dangerous
            };
            let with = default.map(|d| format!(" with default value '{d}'")).unwrap_or_default();
            self.add(
                ChangeType::InputFieldAdded,
                level,
                Some(format!("{i}.{}", f.name)),
                format!(
                    "Input field '{}' of type '{}'{with} was added to input object type '{i}'",
                    f.name, f.ty
                ),
            );
            self.input_field(new, None, f);
        }
        for f in m.removed {
            let deprecated = if f.deprecation.deprecated { "(deprecated) " } else { "" };
            self.add(
                ChangeType::InputFieldRemoved,
                Level::Breaking,
                Some(format!("{i}.{}", f.name)),
                format!(
                    "Input field '{}' {deprecated}was removed from input object type '{i}'",
                    f.name
                ),
            );
        }
        for (o, n) in m.mutual {
            self.input_field(new, Some(o), n);
        }

        let o = old.map_or(&[][..], |o| &o.directives[..]);
        let site = UsageSite::Type(TypeKind::InputObject, i);
        let parent = UsageParent { ty: Some(i), ..UsageParent::default() };
        self.usages(o, &new.directives, site, parent, old.is_none());
    }

    fn input_field(
        &mut self,
        input: &'a NamedType,
        old: Option<&'a InputValue>,
        new: &'a InputValue,
    ) {
        let (i, f) = (&input.name, &new.name);
        let path = || Some(format!("{i}.{f}"));

        let old_desc = old.and_then(|o| o.description.as_deref());
        let new_desc = new.description.as_deref();
        if !same_text(old_desc, new_desc) {
            if old_desc.is_none() {
                self.add(
                    ChangeType::InputFieldDescriptionAdded,
                    Level::Safe,
                    path(),
                    format!(
                        "Input field '{i}.{f}' has description '{}'",
                        q(new_desc.unwrap_or(""))
                    ),
                );
            } else if new_desc.is_none() {
                self.add(
                    ChangeType::InputFieldDescriptionRemoved,
                    Level::Safe,
                    path(),
                    format!(
                        "Description '{}' was removed from input field '{i}.{f}'",
                        q(old_desc.unwrap_or(""))
                    ),
                );
            } else {
                self.add(
                    ChangeType::InputFieldDescriptionChanged,
                    Level::Safe,
                    path(),
                    format!(
                        "Input field '{i}.{f}' description changed from '{}' to '{}'",
                        q(old_desc.unwrap_or("")),
                        q(new_desc.unwrap_or(""))
                    ),
                );
            }
        }

        if let Some(old) = old {
            let (ov, nv) = (self.default_of(old, true), self.default_of(new, false));
            if !js_equal(ov.as_ref(), nv.as_ref()) {
                let (ov, nv) = (ov.as_ref().map(safe_string), nv.as_ref().map(safe_string));
                self.add(
                    ChangeType::InputFieldDefaultValueChanged,
                    Level::Dangerous,
                    path(),
                    format!(
                        "Input field '{i}.{f}' default value changed from '{}' to '{}'",
                        or_undefined(ov.as_ref()),
                        or_undefined(nv.as_ref())
                    ),
                );
            }
            if old.ty != new.ty {
                self.add(
                    ChangeType::InputFieldTypeChanged,
                    level_if(safe_input_change(&old.ty, &new.ty)),
                    path(),
                    format!("Input field '{i}.{f}' changed type from '{}' to '{}'", old.ty, new.ty),
                );
            }
        }

        let o = old.map_or(&[][..], |o| &o.directives[..]);
        let parent = UsageParent { ty: Some(i), field: Some(f), ..UsageParent::default() };
        self.usages(o, &new.directives, UsageSite::InputField(i, f), parent, old.is_none());
    }

    fn enum_type(&mut self, old: Option<&'a NamedType>, new: &'a NamedType) {
        let e = &new.name;
        let old_values = old.map_or(&[][..], |o| &o.values[..]);
        let m = match_by_name(old_values, &new.values, |v| &v.name);
        for v in m.added {
            self.add(
                ChangeType::EnumValueAdded,
                if old.is_none() { Level::Safe } else { Level::Dangerous },
                Some(format!("{e}.{}", v.name)),
                format!("Enum value '{}' was added to enum '{e}'", v.name),
            );
            self.enum_value(new, None, v);
        }
        for v in m.removed {
            let deprecated = if v.deprecation.deprecated { "(deprecated) " } else { "" };
            self.add(
                ChangeType::EnumValueRemoved,
                Level::Breaking,
                Some(format!("{e}.{}", v.name)),
                format!("Enum value '{}' {deprecated}was removed from enum '{e}'", v.name),
            );
        }
        for (o, n) in m.mutual {
            self.enum_value(new, Some(o), n);
        }

        let o = old.map_or(&[][..], |o| &o.directives[..]);
        let site = UsageSite::Type(TypeKind::Enum, e);
        let parent = UsageParent { ty: Some(e), ..UsageParent::default() };
        self.usages(o, &new.directives, site, parent, old.is_none());
    }

    fn enum_value(&mut self, en: &'a NamedType, old: Option<&'a EnumValue>, new: &'a EnumValue) {
        let (e, v) = (&en.name, &new.name);
        let path = || Some(format!("{e}.{v}"));
        let dep_path = || Some(format!("{e}.{v}.@deprecated"));

        let (od, nd) = (old.and_then(|o| o.description.as_deref()), new.description.as_deref());
        if !same_text(od, nd) {
            let message = match (od, nd) {
                (None, Some(n)) => {
                    format!("Description '{}' was added to enum value '{e}.{v}'", q(n))
                }
                (Some(o), None) => {
                    format!("Description '{}' was removed from enum value '{e}.{v}'", q(o))
                }
                _ => format!(
                    "Description for enum value '{e}.{v}' changed from '{}' to '{}'",
                    q(od.unwrap_or("")),
                    q(nd.unwrap_or(""))
                ),
            };
            self.add(ChangeType::EnumValueDescriptionChanged, Level::Safe, path(), message);
        }

        let (or, nr) = (old.and_then(|o| reason(&o.deprecation)), reason(&new.deprecation));
        if !same_text(or, nr) {
            if is_default_reason(or) {
                self.add(
                    ChangeType::EnumValueDeprecationReasonAdded,
                    Level::Safe,
                    dep_path(),
                    format!(
                        "Enum value '{e}.{v}' was deprecated with reason '{}'",
                        q(nr.unwrap_or(""))
                    ),
                );
            } else if is_default_reason(nr) {
                self.add(
                    ChangeType::EnumValueDeprecationReasonRemoved,
                    Level::Safe,
                    path(),
                    format!("Deprecation reason was removed from enum value '{e}.{v}'"),
                );
            } else {
                self.add(
                    ChangeType::EnumValueDeprecationReasonChanged,
                    Level::Safe,
                    dep_path(),
                    format!(
                        "Enum value '{e}.{v}' deprecation reason changed from '{}' to '{}'",
                        q(or.unwrap_or("")),
                        q(nr.unwrap_or(""))
                    ),
                );
            }
        }

        let o = old.map_or(&[][..], |o| &o.directives[..]);
        let parent = UsageParent { ty: Some(e), enum_value: Some(v), ..UsageParent::default() };
        self.usages(o, &new.directives, UsageSite::EnumValue(e, v), parent, old.is_none());
    }

    fn union_type(&mut self, old: Option<&'a NamedType>, new: &'a NamedType) {
        let u = &new.name;
        let empty: &[String] = &[];
        let m = match_by_name(old.map_or(empty, |o| &o.members[..]), &new.members, |s| s);
        for member in m.added {
            self.add(
                ChangeType::UnionMemberAdded,
                if old.is_none() { Level::Safe } else { Level::Dangerous },
                Some(u.clone()),
                format!("Member '{member}' was added to Union type '{u}'"),
            );
        }
        for member in m.removed {
            self.add(
                ChangeType::UnionMemberRemoved,
                Level::Breaking,
                Some(u.clone()),
                format!("Member '{member}' was removed from Union type '{u}'"),
            );
        }
        let o = old.map_or(&[][..], |o| &o.directives[..]);
        let site = UsageSite::Type(TypeKind::Union, u);
        let parent = UsageParent { ty: Some(u), ..UsageParent::default() };
        self.usages(o, &new.directives, site, parent, old.is_none());
    }

    fn directive(&mut self, old: Option<&'a DirectiveDef>, new: &'a DirectiveDef) {
        let d = &new.name;
        let path = || Some(format!("@{d}"));

        let (od, nd) = (old.and_then(|o| o.description.as_deref()), new.description.as_deref());
        if !same_text(od, nd) {
            let message = match (od, nd) {
                (None, Some(n)) => format!("Directive '{d}' description '{}' was added", q(n)),
                (Some(o), None) => format!("Directive '{d}' description '{}' was removed", q(o)),
                _ => format!(
                    "Directive '{d}' description changed from '{}' to '{}'",
                    q(od.unwrap_or("")),
                    q(nd.unwrap_or(""))
                ),
            };
            self.add(ChangeType::DirectiveDescriptionChanged, Level::Safe, path(), message);
        }

        let old_repeatable = old.is_some_and(|o| o.repeatable);
        if !new.repeatable && old_repeatable {
            self.add(
                ChangeType::DirectiveRepeatableRemoved,
                Level::Dangerous,
                path(),
                format!("Directive '{d}' removed repeatable."),
            );
        }
        if new.repeatable && !old_repeatable {
            self.add(
                ChangeType::DirectiveRepeatableAdded,
                Level::Safe,
                path(),
                format!("Directive '{d}' added repeatable."),
            );
        }

        let empty: &[String] = &[];
        let old_locations = old.map_or(empty, |o| &o.locations[..]);
        for l in new.locations.iter().filter(|l| !old_locations.contains(l)) {
            self.add(
                ChangeType::DirectiveLocationAdded,
                Level::Safe,
                path(),
                format!("Location '{l}' was added to directive '{d}'"),
            );
        }
        for l in old_locations.iter().filter(|l| !new.locations.contains(l)) {
            self.add(
                ChangeType::DirectiveLocationRemoved,
                Level::Breaking,
                path(),
                format!("Location '{l}' was removed from directive '{d}'"),
            );
        }

        let old_args = old.map_or(&[][..], |o| &o.args[..]);
        let m = match_by_name(old_args, &new.args, |a| &a.name);
        for a in m.added {
            let level =
                if old.is_some() && a.ty.is_non_null() { Level::Breaking } else { Level::Safe };
            self.add(
                ChangeType::DirectiveArgumentAdded,
                level,
                path(),
                format!("Argument '{}' was added to directive '{d}'", a.name),
            );
        }
        for a in m.removed {
            self.add(
                ChangeType::DirectiveArgumentRemoved,
                Level::Breaking,
                Some(format!("@{d}.{}", a.name)),
                format!("Argument '{}' was removed from directive '{d}'", a.name),
            );
        }
        for (o, n) in m.mutual {
            self.directive_argument(d, o, n);
        }
    }

    fn directive_argument(&mut self, d: &str, old: &'a InputValue, new: &'a InputValue) {
        let a = &new.name;
        let path = || Some(format!("@{d}.{a}"));
        let (od, nd) = (old.description.as_deref(), new.description.as_deref());
        if !same_text(od, nd) {
            let message = match (od, nd) {
                (None, Some(n)) => {
                    format!("Description '{}' was added to argument '{a}' on directive '{d}'", q(n))
                }
                (Some(o), None) => {
                    format!(
                        "Description '{}' was removed from argument '{a}' on directive '{d}'",
                        q(o)
                    )
                }
                _ => format!(
                    "Description for argument '{a}' on directive '{d}' changed from '{}' to '{}'",
                    q(od.unwrap_or("")),
                    q(nd.unwrap_or(""))
                ),
            };
            self.add(ChangeType::DirectiveArgumentDescriptionChanged, Level::Safe, path(), message);
        }
        let (ov, nv) = (self.default_of(old, true), self.default_of(new, false));
        if !js_equal(ov.as_ref(), nv.as_ref()) {
            let (ov, nv) = (ov.as_ref().map(safe_string), nv.as_ref().map(safe_string));
            let message = match &ov {
                None => format!(
                    "Default value '{}' was added to argument '{a}' on directive '{d}'",
                    or_undefined(nv.as_ref())
                ),
                Some(o) => format!(
                    "Default value for argument '{a}' on directive '{d}' changed from '{o}' to '{}'",
                    or_undefined(nv.as_ref())
                ),
            };
            self.add(
                ChangeType::DirectiveArgumentDefaultValueChanged,
                Level::Dangerous,
                path(),
                message,
            );
        }
        if old.ty != new.ty {
            self.add(
                ChangeType::DirectiveArgumentTypeChanged,
                level_if(safe_input_change(&old.ty, &new.ty)),
                path(),
                format!(
                    "Type for argument '{a}' on directive '{d}' changed from '{}' to '{}'",
                    old.ty, new.ty
                ),
            );
        }
    }

    /// Directive usages on one element: removed, added (with their arguments), then changed ones.
    ///
    /// Introspection cannot carry usages, so when either side came from it they are not compared:
    /// every usage would otherwise look added or removed. (Inspector reports those; they are artefacts
    /// of the format, not changes.)
    fn usages(
        &mut self,
        old: &'a [DirectiveUsage],
        new: &'a [DirectiveUsage],
        site: UsageSite<'a>,
        parent: UsageParent<'a>,
        to_new: bool,
    ) {
        if (old.is_empty() && new.is_empty())
            || !(self.old.has_directive_usages && self.new.has_directive_usages)
        {
            return;
        }
        let m = match_usages(old, new);
        for u in m.removed {
            let (kind, path, message) = usage_change(site, &u.name, false);
            self.add(kind, usage_removed_level(&u.name), Some(path), message);
        }
        for u in m.added {
            let (kind, path, message) = usage_change(site, &u.name, true);
            // Inspector's usages on schema definitions are never "added to a new type".
            let to_new = to_new && !matches!(site, UsageSite::Schema | UsageSite::Argument(..));
            self.add(kind, usage_added_level(&u.name, to_new), Some(path), message);
            self.usage_arguments(None, u, parent);
        }
        for (o, n) in m.mutual {
            self.usage_arguments(Some(o), n, parent);
        }
    }

    fn usage_arguments(
        &mut self,
        old: Option<&'a DirectiveUsage>,
        new: &'a DirectiveUsage,
        parent: UsageParent<'a>,
    ) {
        let empty: &[(String, crate::schema::model::Literal)] = &[];
        let old_args = old.map_or(empty, |o| &o.args[..]);
        let m = match_by_name(old_args, &new.args, |(n, _)| n);
        let path = |arg: &str| {
            let mut parts: Vec<&str> = vec![parent.ty.unwrap_or("")];
            parts.extend(parent.field.or(parent.enum_value));
            parts.extend(parent.arg);
            let at = format!("@{}", new.name);
            let mut p = parts.join(".");
            p.push('.');
            p.push_str(&at);
            p.push('.');
            p.push_str(arg);
            p
        };
        for (name, _) in m.removed {
            self.add(
                ChangeType::DirectiveUsageArgumentRemoved,
                Level::Dangerous,
                Some(path(name)),
                format!("Argument '{name}' was removed from '@{}'", new.name),
            );
        }
        for (name, _) in m.added {
            self.add(
                ChangeType::DirectiveUsageArgumentAdded,
                Level::Safe,
                Some(path(name)),
                format!("Argument '{name}' was added to '@{}'", new.name),
            );
        }
        for ((name, o), (_, n)) in m.mutual {
            if o == n {
                continue;
            }
            self.add(
                ChangeType::DirectiveUsageArgumentRemoved,
                Level::Dangerous,
                Some(path(name)),
                format!("Argument '{name}' was removed from '@{}'", new.name),
            );
            self.add(
                ChangeType::DirectiveUsageArgumentAdded,
                Level::Safe,
                Some(path(name)),
                format!("Argument '{name}' was added to '@{}'", new.name),
            );
        }
    }
}

/// The type, path and message of adding or removing a directive usage at a site.
fn usage_change(site: UsageSite<'_>, d: &str, added: bool) -> (ChangeType, String, String) {
    use ChangeType as T;
    let verb = if added { "was added to" } else { "was removed from" };
    let pick = |a: T, r: T| if added { a } else { r };
    match site {
        UsageSite::Schema => (
            pick(T::DirectiveUsageSchemaAdded, T::DirectiveUsageSchemaRemoved),
            format!(".@{d}"),
            format!("Directive '{d}' {verb} schema"),
        ),
        UsageSite::Type(kind, t) => {
            let (kind, word) = match kind {
                TypeKind::Scalar => {
                    (pick(T::DirectiveUsageScalarAdded, T::DirectiveUsageScalarRemoved), "scalar")
                }
                TypeKind::Object => {
                    (pick(T::DirectiveUsageObjectAdded, T::DirectiveUsageObjectRemoved), "object")
                }
                TypeKind::Interface => (
                    pick(T::DirectiveUsageInterfaceAdded, T::DirectiveUsageInterfaceRemoved),
                    "interface",
                ),
                TypeKind::Union => (
                    pick(T::DirectiveUsageUnionMemberAdded, T::DirectiveUsageUnionMemberRemoved),
                    "union member",
                ),
                TypeKind::Enum => {
                    (pick(T::DirectiveUsageEnumAdded, T::DirectiveUsageEnumRemoved), "enum")
                }
                TypeKind::InputObject => (
                    pick(T::DirectiveUsageInputObjectAdded, T::DirectiveUsageInputObjectRemoved),
                    "input object",
                ),
            };
            (kind, format!("{t}.@{d}"), format!("Directive '{d}' {verb} {word} '{t}'"))
        }
        UsageSite::Field(t, f) => (
            pick(T::DirectiveUsageFieldDefinitionAdded, T::DirectiveUsageFieldDefinitionRemoved),
            format!("{t}.{f}.@{d}"),
            format!("Directive '{d}' {verb} field '{t}.{f}'"),
        ),
        UsageSite::Argument(t, f, a) => (
            pick(
                T::DirectiveUsageArgumentDefinitionAdded,
                T::DirectiveUsageArgumentDefinitionRemoved,
            ),
            format!("{t}.{f}.{a}.@{d}"),
            format!("Directive '{d}' {verb} argument '{a}' of field '{f}' in type '{t}'"),
        ),
        UsageSite::InputField(i, f) => (
            pick(
                T::DirectiveUsageInputFieldDefinitionAdded,
                T::DirectiveUsageInputFieldDefinitionRemoved,
            ),
            format!("{i}.{f}.@{d}"),
            format!("Directive '{d}' {verb} input field '{f}' in input object '{i}'"),
        ),
        UsageSite::EnumValue(e, v) => (
            pick(T::DirectiveUsageEnumValueAdded, T::DirectiveUsageEnumValueRemoved),
            format!("{e}.{v}.@{d}"),
            format!("Directive '{d}' {verb} enum value '{e}.{v}'"),
        ),
    }
}
