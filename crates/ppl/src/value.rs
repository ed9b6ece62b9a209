//! The data model shared by the three syntaxes: JSON's six kinds of value, each with its span.
//!
//! YAML and JSON documents are first read into a [`Value`] tree, which the shape rules of PPL then
//! lower into the AST. A criterion keeps its data as a [`Value`]: it is arbitrary JSON, interpreted
//! by the criterion.

use crate::span::Span;
use std::fmt;

/// A JSON value with the span it was read from.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    pub kind: ValueKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ValueKind {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<Value>),
    /// Entries in source order; keys are unique (duplicates are a parse error).
    Object(Vec<Entry>),
}

/// One `key: value` entry of an object.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_span: Span,
    pub value: Value,
}

impl Entry {
    /// The span of the whole entry, from the key to the end of the value.
    pub fn span(&self) -> Span {
        self.key_span.join(self.value.span)
    }
}

/// The kind of a value, for messages ("expected a list, found a string").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Null => "null",
            Kind::Bool => "a boolean",
            Kind::Number => "a number",
            Kind::String => "a string",
            Kind::Array => "a list",
            Kind::Object => "an object",
        })
    }
}

impl Value {
    pub fn new(kind: ValueKind, span: Span) -> Value {
        Value { kind, span }
    }

    pub fn kind(&self) -> Kind {
        match &self.kind {
            ValueKind::Null => Kind::Null,
            ValueKind::Bool(_) => Kind::Bool,
            ValueKind::Number(_) => Kind::Number,
            ValueKind::String(_) => Kind::String,
            ValueKind::Array(_) => Kind::Array,
            ValueKind::Object(_) => Kind::Object,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            ValueKind::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match &self.kind {
            ValueKind::Array(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&[Entry]> {
        match &self.kind {
            ValueKind::Object(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self.kind {
            ValueKind::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The entry for `key` when this is an object.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.as_object()?.iter().find(|entry| entry.key == key)
    }

    /// JavaScript truthiness, which PPL uses (the device criterion's `approved`): `false`, `0`,
    /// `NaN`, `""` and `null` are falsy, everything else (including `[]` and `{}`) is truthy.
    pub fn is_truthy(&self) -> bool {
        match &self.kind {
            ValueKind::Null => false,
            ValueKind::Bool(b) => *b,
            ValueKind::Number(n) => n.as_f64() != 0.0,
            ValueKind::String(s) => !s.is_empty(),
            ValueKind::Array(_) | ValueKind::Object(_) => true,
        }
    }

    /// A copy with every span set to the default, so that two trees compare equal when they hold
    /// the same data, wherever it was read from.
    pub fn without_spans(&self) -> Value {
        let kind = match &self.kind {
            ValueKind::Array(items) => ValueKind::Array(items.iter().map(Value::without_spans).collect()),
            ValueKind::Object(entries) => ValueKind::Object(
                entries
                    .iter()
                    .map(|entry| Entry {
                        key: entry.key.clone(),
                        key_span: Span::default(),
                        value: entry.value.without_spans(),
                    })
                    .collect(),
            ),
            other => other.clone(),
        };
        Value { kind, span: Span::default() }
    }

    /// Calls `visit` on this value and every value nested in it, depth first, in source order.
    pub fn walk<'a>(&'a self, visit: &mut dyn FnMut(&'a Value)) {
        visit(self);
        match &self.kind {
            ValueKind::Array(items) => items.iter().for_each(|item| item.walk(visit)),
            ValueKind::Object(entries) => entries.iter().for_each(|entry| entry.value.walk(visit)),
            _ => {}
        }
    }
}

/// A number, kept as its JSON text so that no precision is lost (`1.10` stays `1.10`).
///
/// Invariant: the text matches JSON's number grammar. YAML spellings that JSON lacks (`+1`, `.5`,
/// `0x1F`) are converted when read.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Number(String);

impl Number {
    /// The number spelled by `text` if it is a JSON number.
    pub fn from_json(text: &str) -> Option<Number> {
        is_json_number(text).then(|| Number(text.to_owned()))
    }

    /// A number from an integer.
    pub fn from_i64(value: i64) -> Number {
        Number(value.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The value as a double; every JSON number text parses as one (large ones become infinite).
    pub fn as_f64(&self) -> f64 {
        self.0.parse().unwrap_or(f64::NAN)
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `text` is exactly a number in JSON's grammar:
/// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
pub fn is_json_number(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize| {
        let start = *i;
        while bytes.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    if bytes.first() == Some(&b'-') {
        i += 1;
    }
    match bytes.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return false,
    }
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_number_grammar() {
        for good in ["0", "-0", "1", "10", "1.5", "1e5", "1E+5", "-2.50e-3"] {
            assert!(is_json_number(good), "{good}");
        }
        for bad in ["", "-", "01", "+1", ".5", "1.", "1e", "0x1", "1_000", "NaN", "1 "] {
            assert!(!is_json_number(bad), "{bad}");
        }
    }

    #[test]
    fn truthiness_follows_javascript() {
        let v = |kind| Value::new(kind, Span::default());
        assert!(!v(ValueKind::Null).is_truthy());
        assert!(!v(ValueKind::Number(Number::from_i64(0))).is_truthy());
        assert!(!v(ValueKind::Number(Number("0.0e3".into()))).is_truthy());
        assert!(!v(ValueKind::String(String::new())).is_truthy());
        assert!(v(ValueKind::String("no".into())).is_truthy());
        assert!(v(ValueKind::Array(vec![])).is_truthy());
    }
}
