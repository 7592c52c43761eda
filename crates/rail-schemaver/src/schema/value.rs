//! Default values: coercing literals the way graphql-js does, comparing and rendering them.
//!
//! GraphQL Inspector compares default values after coercion (`[1]` and `1` are the same default of a
//! `[Int]` argument) and prints them with JavaScript's formatting, so both are reproduced here: a small
//! JavaScript-like value, graphql-js's `valueFromAST` rules, and the renderer behind Inspector's
//! messages. Also here: printing a literal back as GraphQL and parsing one from introspection's
//! `defaultValue` strings.

use std::fmt::Write as _;

use super::model::{Literal, Schema, TypeKind, TypeRef};

/// Deeper literals or default chains than this are treated as having no usable value.
const MAX_DEPTH: u32 = 64;

/// A coerced value, shaped like the JavaScript value graphql-js produces.
#[derive(Debug, Clone, PartialEq)]
pub enum JsValue {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    List(Vec<JsValue>),
    /// Keys in insertion order, as JavaScript objects keep them.
    Object(Vec<(String, JsValue)>),
}

/// Coerce a default-value literal against its type; `None` is graphql-js's `undefined` (no usable
/// default, e.g. a string given for an `Int`).
pub fn coerce(literal: &Literal, ty: &TypeRef, schema: &Schema) -> Option<JsValue> {
    coerce_at(literal, ty, schema, 0)
}

fn coerce_at(literal: &Literal, ty: &TypeRef, schema: &Schema, depth: u32) -> Option<JsValue> {
    if depth > MAX_DEPTH {
        return None;
    }
    if let Literal::Variable(_) = literal {
        // Schema defaults never have variables to read.
        return None;
    }
    match ty {
        TypeRef::NonNull(inner) => {
            if matches!(literal, Literal::Null) {
                return None;
            }
            coerce_at(literal, inner, schema, depth + 1)
        }
        _ if matches!(literal, Literal::Null) => Some(JsValue::Null),
        TypeRef::List(item) => {
            if let Literal::List(items) = literal {
                let mut out = Vec::with_capacity(items.len());
                for node in items {
                    if let Literal::Variable(_) = node {
                        if item.is_non_null() {
                            return None;
                        }
                        out.push(JsValue::Null);
                        continue;
                    }
                    out.push(coerce_at(node, item, schema, depth + 1)?);
                }
                Some(JsValue::List(out))
            } else {
                Some(JsValue::List(vec![coerce_at(literal, item, schema, depth + 1)?]))
            }
        }
        TypeRef::Named(name) => coerce_named(literal, name, schema, depth),
    }
}

fn coerce_named(literal: &Literal, name: &str, schema: &Schema, depth: u32) -> Option<JsValue> {
    match name {
        "Int" => match literal {
            Literal::Int(digits) => {
                let n = parse_number(digits)?;
                (-2_147_483_648.0..=2_147_483_647.0).contains(&n).then_some(JsValue::Number(n))
            }
            _ => None,
        },
        "Float" => match literal {
            Literal::Int(digits) | Literal::Float(digits) => {
                parse_number(digits).map(JsValue::Number)
            }
            _ => None,
        },
        "String" => match literal {
            Literal::String(s) => Some(JsValue::String(s.clone())),
            _ => None,
        },
        "Boolean" => match literal {
            Literal::Boolean(b) => Some(JsValue::Bool(*b)),
            _ => None,
        },
        "ID" => match literal {
            Literal::String(s) | Literal::Int(s) => Some(JsValue::String(s.clone())),
            _ => None,
        },
        _ => match schema.get_type(name) {
            Some(ty) if ty.kind == TypeKind::InputObject => {
                let Literal::Object(given) = literal else { return None };
                let mut out = Vec::new();
                for field in &ty.input_fields {
                    // graphql-js keys the written fields by name, the last one winning.
                    let node = given.iter().rev().find(|(n, _)| *n == field.name).map(|(_, v)| v);
                    match node {
                        Some(node) if !matches!(node, Literal::Variable(_)) => {
                            let value = coerce_at(node, &field.ty, schema, depth + 1)?;
                            out.push((field.name.clone(), value));
                        }
                        _ => {
                            let default = field
                                .default
                                .as_ref()
                                .and_then(|d| coerce_at(d, &field.ty, schema, depth + 1));
                            if let Some(default) = default {
                                out.push((field.name.clone(), default));
                            } else if field.ty.is_non_null() {
                                return None;
                            }
                        }
                    }
                }
                if ty.directives.iter().any(|d| d.name == "oneOf")
                    && (out.len() != 1 || matches!(out[0].1, JsValue::Null))
                {
                    return None;
                }
                Some(JsValue::Object(out))
            }
            Some(ty) if ty.kind == TypeKind::Enum => match literal {
                Literal::Enum(value) if ty.values.iter().any(|v| v.name == *value) => {
                    Some(JsValue::String(value.clone()))
                }
                _ => None,
            },
            Some(ty) if ty.kind != TypeKind::Scalar => None,
            // Custom scalars (and, tolerantly, unknown names) take the literal as it is.
            _ => untyped(literal, depth),
        },
    }
}

/// graphql-js's `valueFromASTUntyped`, used by custom scalars.
fn untyped(literal: &Literal, depth: u32) -> Option<JsValue> {
    if depth > MAX_DEPTH {
        return None;
    }
    Some(match literal {
        Literal::Null => JsValue::Null,
        Literal::Int(s) | Literal::Float(s) => JsValue::Number(parse_number(s)?),
        Literal::String(s) | Literal::Enum(s) => JsValue::String(s.clone()),
        Literal::Boolean(b) => JsValue::Bool(*b),
        Literal::Variable(_) => return None,
        Literal::List(items) => {
            JsValue::List(items.iter().map(|i| untyped(i, depth + 1)).collect::<Option<_>>()?)
        }
        Literal::Object(fields) => {
            let mut out: Vec<(String, JsValue)> = Vec::with_capacity(fields.len());
            for (name, value) in fields {
                let value = untyped(value, depth + 1)?;
                // Re-assigning a key keeps its first position, as in JavaScript.
                if let Some(slot) = out.iter_mut().find(|(n, _)| n == name) {
                    slot.1 = value;
                } else {
                    out.push((name.clone(), value));
                }
            }
            JsValue::Object(out)
        }
    })
}

fn parse_number(text: &str) -> Option<f64> {
    text.parse::<f64>().ok()
}

/// graphql-inspector's `defaultValuesAreEqual`: `Object.is` on scalars, element-wise on lists,
/// key-wise (in any order) on objects.
pub fn js_equal(a: Option<&JsValue>, b: Option<&JsValue>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => value_equal(a, b),
        _ => false,
    }
}

fn value_equal(a: &JsValue, b: &JsValue) -> bool {
    match (a, b) {
        (JsValue::Null, JsValue::Null) => true,
        (JsValue::Bool(x), JsValue::Bool(y)) => x == y,
        (JsValue::Number(x), JsValue::Number(y)) => {
            // Object.is: NaN equals itself and 0 differs from -0, which is equality of the bits.
            (x.is_nan() && y.is_nan()) || x.to_bits() == y.to_bits()
        }
        (JsValue::String(x), JsValue::String(y)) => x == y,
        (JsValue::List(x), JsValue::List(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| value_equal(a, b))
        }
        (JsValue::Object(_) | JsValue::List(_), JsValue::Object(_) | JsValue::List(_)) => {
            // An array against an object compares own keys, as the JavaScript does.
            let (xs, ys) = (entries(a), entries(b));
            xs.len() == ys.len()
                && xs.iter().all(|(k, v)| ys.iter().any(|(k2, v2)| k == k2 && value_equal(v, v2)))
        }
        _ => false,
    }
}

fn entries(v: &JsValue) -> Vec<(String, &JsValue)> {
    match v {
        JsValue::List(items) => items.iter().enumerate().map(|(i, v)| (i.to_string(), v)).collect(),
        JsValue::Object(fields) => fields.iter().map(|(k, v)| (k.clone(), v)).collect(),
        _ => Vec::new(),
    }
}

/// graphql-inspector's `safeString`: strings as JSON, everything else as Node's `object-inspect`.
pub fn safe_string(value: &JsValue) -> String {
    match value {
        JsValue::String(s) => json_string(s),
        other => {
            let mut out = String::new();
            inspect(other, 0, &mut out);
            out
        }
    }
}

fn inspect(value: &JsValue, depth: u32, out: &mut String) {
    const MAX_INSPECT_DEPTH: u32 = 5;
    match value {
        JsValue::Null => out.push_str("null"),
        JsValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        JsValue::Number(n) => {
            if *n == 0.0 && n.is_sign_negative() {
                out.push_str("-0");
            } else {
                out.push_str(&js_number(*n));
            }
        }
        JsValue::String(s) => {
            out.push('\'');
            for c in s.chars() {
                match c {
                    '\'' | '\\' => {
                        out.push('\\');
                        out.push(c);
                    }
                    '\u{8}' => out.push_str("\\b"),
                    '\t' => out.push_str("\\t"),
                    '\n' => out.push_str("\\n"),
                    '\u{c}' => out.push_str("\\f"),
                    '\r' => out.push_str("\\r"),
                    c if (c as u32) < 0x20 => {
                        let _ = write!(out, "\\x{:02X}", c as u32);
                    }
                    c => out.push(c),
                }
            }
            out.push('\'');
        }
        JsValue::List(items) => {
            if depth >= MAX_INSPECT_DEPTH {
                out.push_str("[Array]");
            } else if items.is_empty() {
                out.push_str("[]");
            } else {
                out.push_str("[ ");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    inspect(item, depth + 1, out);
                }
                out.push_str(" ]");
            }
        }
        JsValue::Object(fields) => {
            if depth >= MAX_INSPECT_DEPTH {
                out.push_str("[Object]");
            } else if fields.is_empty() {
                out.push_str("{}");
            } else {
                out.push_str("{ ");
                for (i, (key, item)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(key);
                    out.push_str(": ");
                    inspect(item, depth + 1, out);
                }
                out.push_str(" }");
            }
        }
    }
}

/// `JSON.stringify` of a string.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// JavaScript's `Number.prototype.toString()` for a finite or infinite number.
pub fn js_number(n: f64) -> String {
    if n.is_nan() {
        return "NaN".to_owned();
    }
    if n.is_infinite() {
        return if n > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    if n == 0.0 {
        return "0".to_owned();
    }
    // Rust's `{:e}` gives the shortest digits that round-trip, which is what JavaScript prints.
    let sci = format!("{:e}", n.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let exp: i32 = exp.parse().unwrap_or(0);
    let k = digits.len() as i32;
    let point = exp + 1;
    let mut out = String::new();
    if n < 0.0 {
        out.push('-');
    }
    if k <= point && point <= 21 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (point - k) as usize));
    } else if 0 < point && point <= 21 {
        out.push_str(&digits[..point as usize]);
        out.push('.');
        out.push_str(&digits[point as usize..]);
    } else if -6 < point && point <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-point) as usize));
        out.push_str(&digits);
    } else {
        out.push_str(&digits[..1]);
        if k > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let e = point - 1;
        let _ = write!(out, "e{}{}", if e < 0 { '-' } else { '+' }, e.abs());
    }
    out
}

/// Print a literal as GraphQL, the way graphql-js's `print` does.
pub fn print_literal(literal: &Literal, out: &mut String) {
    match literal {
        Literal::Null => out.push_str("null"),
        Literal::Int(s) | Literal::Float(s) => out.push_str(s),
        Literal::String(s) => print_string(s, out),
        Literal::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        Literal::Enum(name) => out.push_str(name),
        Literal::Variable(name) => {
            out.push('$');
            out.push_str(name);
        }
        Literal::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                print_literal(item, out);
            }
            out.push(']');
        }
        Literal::Object(fields) => {
            out.push('{');
            for (i, (name, value)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(name);
                out.push_str(": ");
                print_literal(value, out);
            }
            out.push('}');
        }
    }
}

/// A GraphQL string literal with graphql-js's escapes.
pub fn print_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || (0x7f..=0x9f).contains(&(c as u32)) => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Why a value literal could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at character {offset}")]
pub struct LiteralError {
    pub message: &'static str,
    pub offset: usize,
}

/// Parse one GraphQL value literal, e.g. introspection's `defaultValue` (`{a: [1, 2]}`, `"x"`, `ASC`).
pub fn parse_literal(text: &str) -> Result<Literal, LiteralError> {
    let mut p = LiteralParser { src: text.as_bytes(), text, pos: 0 };
    let value = p.value(0)?;
    p.skip_ignored();
    if p.pos != p.src.len() {
        return Err(p.err("unexpected text after the value"));
    }
    Ok(value)
}

struct LiteralParser<'a> {
    src: &'a [u8],
    text: &'a str,
    pos: usize,
}

impl LiteralParser<'_> {
    fn err(&self, message: &'static str) -> LiteralError {
        LiteralError { message, offset: self.pos }
    }

    fn skip_ignored(&mut self) {
        while let Some(&b) = self.src.get(self.pos) {
            match b {
                b' ' | b'\t' | b'\n' | b'\r' | b',' => self.pos += 1,
                b'#' => {
                    while self.src.get(self.pos).is_some_and(|&b| b != b'\n' && b != b'\r') {
                        self.pos += 1;
                    }
                }
                0xEF if self.src[self.pos..].starts_with(&[0xEF, 0xBB, 0xBF]) => self.pos += 3,
                _ => break,
            }
        }
    }

    fn name(&mut self) -> Result<String, LiteralError> {
        let start = self.pos;
        match self.src.get(self.pos) {
            Some(b) if b.is_ascii_alphabetic() || *b == b'_' => self.pos += 1,
            _ => return Err(self.err("expected a name")),
        }
        while self.src.get(self.pos).is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_') {
            self.pos += 1;
        }
        Ok(self.text[start..self.pos].to_owned())
    }

    fn value(&mut self, depth: u32) -> Result<Literal, LiteralError> {
        if depth > MAX_DEPTH {
            return Err(self.err("value nested too deeply"));
        }
        self.skip_ignored();
        let Some(&b) = self.src.get(self.pos) else {
            return Err(self.err("expected a value"));
        };
        match b {
            b'$' => {
                self.pos += 1;
                Ok(Literal::Variable(self.name()?))
            }
            b'[' => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_ignored();
                    match self.src.get(self.pos) {
                        Some(b']') => {
                            self.pos += 1;
                            return Ok(Literal::List(items));
                        }
                        Some(_) => items.push(self.value(depth + 1)?),
                        None => return Err(self.err("unterminated list")),
                    }
                }
            }
            b'{' => {
                self.pos += 1;
                let mut fields = Vec::new();
                loop {
                    self.skip_ignored();
                    match self.src.get(self.pos) {
                        Some(b'}') => {
                            self.pos += 1;
                            return Ok(Literal::Object(fields));
                        }
                        Some(_) => {
                            let name = self.name()?;
                            self.skip_ignored();
                            if self.src.get(self.pos) != Some(&b':') {
                                return Err(self.err("expected `:`"));
                            }
                            self.pos += 1;
                            fields.push((name, self.value(depth + 1)?));
                        }
                        None => return Err(self.err("unterminated object")),
                    }
                }
            }
            b'"' => {
                if self.src[self.pos..].starts_with(b"\"\"\"") {
                    self.block_string().map(Literal::String)
                } else {
                    self.string().map(Literal::String)
                }
            }
            b'-' | b'0'..=b'9' => self.number(),
            _ => {
                let name = self.name()?;
                Ok(match name.as_str() {
                    "true" => Literal::Boolean(true),
                    "false" => Literal::Boolean(false),
                    "null" => Literal::Null,
                    _ => Literal::Enum(name),
                })
            }
        }
    }

    fn number(&mut self) -> Result<Literal, LiteralError> {
        let start = self.pos;
        let digits = |p: &mut Self| {
            let s = p.pos;
            while p.src.get(p.pos).is_some_and(u8::is_ascii_digit) {
                p.pos += 1;
            }
            p.pos > s
        };
        if self.src.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        if !digits(self) {
            return Err(self.err("expected digits"));
        }
        let int_part = &self.src[start..self.pos];
        let leading = usize::from(int_part.first() == Some(&b'-'));
        if int_part.len() > leading + 1 && int_part[leading] == b'0' {
            return Err(self.err("numbers cannot have leading zeros"));
        }
        let mut float = false;
        if self.src.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            float = true;
            if !digits(self) {
                return Err(self.err("expected digits after `.`"));
            }
        }
        if matches!(self.src.get(self.pos), Some(b'e' | b'E')) {
            self.pos += 1;
            float = true;
            if matches!(self.src.get(self.pos), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !digits(self) {
                return Err(self.err("expected an exponent"));
            }
        }
        if self
            .src
            .get(self.pos)
            .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_' || *b == b'.')
        {
            return Err(self.err("invalid number"));
        }
        let text = self.text[start..self.pos].to_owned();
        Ok(if float { Literal::Float(text) } else { Literal::Int(text) })
    }

    fn string(&mut self) -> Result<String, LiteralError> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let rest = &self.text[self.pos..];
            let Some(c) = rest.chars().next() else {
                return Err(self.err("unterminated string"));
            };
            match c {
                '"' => {
                    self.pos += 1;
                    return Ok(out);
                }
                '\n' | '\r' => return Err(self.err("unterminated string")),
                '\\' => {
                    self.pos += 1;
                    let Some(e) = self.src.get(self.pos).copied() else {
                        return Err(self.err("unterminated string"));
                    };
                    self.pos += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => out.push(self.unicode_escape()?),
                        _ => return Err(self.err("invalid escape sequence")),
                    }
                }
                c => {
                    out.push(c);
                    self.pos += c.len_utf8();
                }
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, LiteralError> {
        let hex =
            self.text.get(self.pos..self.pos + 4).ok_or_else(|| self.err("short \\u escape"))?;
        let v = u32::from_str_radix(hex, 16).map_err(|_| self.err("invalid \\u escape"))?;
        self.pos += 4;
        Ok(v)
    }

    fn unicode_escape(&mut self) -> Result<char, LiteralError> {
        if self.src.get(self.pos) == Some(&b'{') {
            let end =
                self.text[self.pos..].find('}').ok_or_else(|| self.err("unterminated \\u{…}"))?;
            let hex = &self.text[self.pos + 1..self.pos + end];
            let v = u32::from_str_radix(hex, 16).map_err(|_| self.err("invalid \\u{…} escape"))?;
            self.pos += end + 1;
            return char::from_u32(v).ok_or_else(|| self.err("invalid code point"));
        }
        let first = self.hex4()?;
        if (0xD800..0xDC00).contains(&first) && self.src[self.pos..].starts_with(b"\\u") {
            let save = self.pos;
            self.pos += 2;
            let second = self.hex4()?;
            if (0xDC00..0xE000).contains(&second) {
                let v = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
                return char::from_u32(v).ok_or_else(|| self.err("invalid surrogate pair"));
            }
            self.pos = save;
        }
        char::from_u32(first).ok_or_else(|| self.err("invalid code point"))
    }

    fn block_string(&mut self) -> Result<String, LiteralError> {
        self.pos += 3;
        let mut raw = String::new();
        loop {
            let rest = &self.text[self.pos..];
            if rest.starts_with("\"\"\"") {
                self.pos += 3;
                return Ok(block_string_value(&raw));
            }
            if rest.starts_with("\\\"\"\"") {
                raw.push_str("\"\"\"");
                self.pos += 4;
                continue;
            }
            let Some(c) = rest.chars().next() else {
                return Err(self.err("unterminated block string"));
            };
            raw.push(c);
            self.pos += c.len_utf8();
        }
    }
}

/// The value of a block string: common indentation and blank first/last lines removed.
pub fn block_string_value(raw: &str) -> String {
    let lines: Vec<&str> = raw.split("\r\n").flat_map(|l| l.split(['\n', '\r'])).collect();
    let indent_of = |l: &str| l.len() - l.trim_start_matches([' ', '\t']).len();
    let common = lines
        .iter()
        .skip(1)
        .filter(|l| !l.trim_start_matches([' ', '\t']).is_empty())
        .map(|l| indent_of(l))
        .min();
    let mut out: Vec<&str> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| match common {
            Some(c) if i > 0 => l.get(c.min(l.len())..).unwrap_or(""),
            _ => l,
        })
        .collect();
    while out.first().is_some_and(|l| l.trim_matches([' ', '\t']).is_empty()) {
        out.remove(0);
    }
    while out.last().is_some_and(|l| l.trim_matches([' ', '\t']).is_empty()) {
        out.pop();
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_like_javascript() {
        for (n, s) in [
            (1.0, "1"),
            (1.5, "1.5"),
            (-2.25, "-2.25"),
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (0.000_001, "0.000001"),
            (1e-7, "1e-7"),
            (123_456_789_012_345_680_000.0, "123456789012345680000"),
            (0.1, "0.1"),
        ] {
            assert_eq!(js_number(n), s, "{n}");
        }
    }

    #[test]
    fn safe_string_matches_inspector() {
        assert_eq!(safe_string(&JsValue::String("a\"b".into())), r#""a\"b""#);
        let v = JsValue::List(vec![JsValue::Number(1.0), JsValue::String("it's".into())]);
        assert_eq!(safe_string(&v), r"[ 1, 'it\'s' ]");
        let o =
            JsValue::Object(vec![("a".into(), JsValue::Bool(true)), ("b".into(), JsValue::Null)]);
        assert_eq!(safe_string(&o), "{ a: true, b: null }");
        assert_eq!(safe_string(&JsValue::Object(vec![])), "{}");
        let mut deep = JsValue::Number(1.0);
        for _ in 0..7 {
            deep = JsValue::List(vec![deep]);
        }
        assert_eq!(safe_string(&deep), "[ [ [ [ [ [Array] ] ] ] ] ]");
    }

    #[test]
    fn literals_parse_and_print_back() {
        for text in [
            r#"{a: [1, 2.5e3], b: "x\ny", c: ENUM, d: null, e: true}"#,
            "[]",
            "-0",
            r#""\u00e9\u{1F600}""#,
        ] {
            let lit = parse_literal(text).unwrap();
            let mut printed = String::new();
            print_literal(&lit, &mut printed);
            assert_eq!(parse_literal(&printed).unwrap(), lit, "{text} -> {printed}");
        }
        assert!(parse_literal("{a: }").is_err());
        assert!(parse_literal("01").is_err());
        assert!(parse_literal(&"[".repeat(10_000)).is_err());
        assert_eq!(
            parse_literal("\"\"\"\n  a\n    b\n\"\"\"").unwrap(),
            Literal::String("a\n  b".into())
        );
    }

    #[test]
    fn coercion_follows_graphql_js() {
        let schema = Schema::default();
        let list_int = TypeRef::List(Box::new(TypeRef::Named("Int".into())));
        assert_eq!(
            coerce(&Literal::Int("1".into()), &list_int, &schema),
            Some(JsValue::List(vec![JsValue::Number(1.0)]))
        );
        assert_eq!(
            coerce(&Literal::String("1".into()), &TypeRef::Named("Int".into()), &schema),
            None
        );
        assert_eq!(
            coerce(&Literal::Int("3000000000".into()), &TypeRef::Named("Int".into()), &schema),
            None
        );
        let non_null = TypeRef::NonNull(Box::new(TypeRef::Named("String".into())));
        assert_eq!(coerce(&Literal::Null, &non_null, &schema), None);
        assert!(js_equal(
            Some(&JsValue::Object(vec![
                ("a".into(), JsValue::Null),
                ("b".into(), JsValue::Bool(true))
            ])),
            Some(&JsValue::Object(vec![
                ("b".into(), JsValue::Bool(true)),
                ("a".into(), JsValue::Null)
            ])),
        ));
    }
}
