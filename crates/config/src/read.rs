//! Reading typed values out of the `Value` tree, as leniently as Pomerium's decoder (viper and
//! mapstructure with weakly typed input): a string where a list is expected is split at commas, a
//! JSON string where an object is expected is parsed, `"true"` is a boolean, a number is a string.
//! Every problem is reported to a [`Sink`] with the field's [`Origin`]; a field that cannot be read
//! yields `None` and the option keeps its default.

use crate::diagnostic::{
    BadDuration, BadEnv, BadNumber, BareDuration, Error, InvalidValue, Located, Origin, UnknownValue, Warning,
    WrongType,
};
use crate::duration;
use ppl::Span;
use ppl::value::{Entry, Value, ValueKind};
use std::time::Duration;

/// Collects diagnostics, each with the text it points into.
#[derive(Debug, Default)]
pub(crate) struct Sink {
    pub errors: Vec<Located<Error>>,
    pub warnings: Vec<Located<Warning>>,
}

impl Sink {
    pub fn error(&mut self, origin: &Origin, error: impl Into<Error>) {
        self.errors.push(Located { origin: origin.clone(), diagnostic: error.into() });
    }

    pub fn warning(&mut self, origin: &Origin, warning: impl Into<Warning>) {
        self.warnings.push(Located { origin: origin.clone(), diagnostic: warning.into() });
    }
}

/// A value with the span it was read from.
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned<T> {
    pub value: T,
    pub span: Span,
}

/// One option as written: its name for messages, where its key is, its value and where the value
/// came from (the file, or an environment variable).
#[derive(Debug, Clone)]
pub(crate) struct Field {
    pub name: String,
    pub key_span: Span,
    pub value: Value,
    pub origin: Origin,
}

impl Field {
    pub fn new(name: impl Into<String>, entry: &Entry, origin: &Origin) -> Field {
        Field { name: name.into(), key_span: entry.key_span, value: entry.value.clone(), origin: origin.clone() }
    }

    /// A field for an environment variable: a string value spanning the whole variable.
    pub fn from_env(name: &str, var: &str, text: &str) -> Field {
        let span = Span::new(0, text.len());
        Field {
            name: name.to_owned(),
            key_span: span,
            value: Value::new(ValueKind::String(text.to_owned()), span),
            origin: Origin::Env(var.to_owned()),
        }
    }

    /// A field nested in this one (`redirect.response_code`).
    pub fn child(&self, entry: &Entry) -> Field {
        Field {
            name: format!("{}.{}", self.name, entry.key),
            key_span: entry.key_span,
            value: entry.value.clone(),
            origin: self.origin.clone(),
        }
    }

    /// An item of a list held by this field; it keeps the field's name.
    pub fn item(&self, value: &Value) -> Field {
        Field { name: self.name.clone(), key_span: value.span, value: value.clone(), origin: self.origin.clone() }
    }

    pub fn span(&self) -> Span {
        self.value.span
    }

    /// The span of the whole `key: value` entry.
    pub fn entry_span(&self) -> Span {
        self.key_span.join(self.value.span)
    }

    /// YAML's `key:` with nothing after it, which Pomerium reads as "not set".
    pub fn is_null(&self) -> bool {
        matches!(self.value.kind, ValueKind::Null)
    }

    pub fn wrong_type(&self, sink: &mut Sink, expected: &'static str, help: Option<String>) {
        let span = self.value.span.into();
        let error = WrongType { option: self.name.clone(), expected, found: self.value.kind(), span, help };
        sink.error(&self.origin, error);
    }

    pub fn invalid(&self, sink: &mut Sink, reason: impl Into<String>, help: Option<String>) {
        let error =
            InvalidValue { option: self.name.clone(), reason: reason.into(), span: self.value.span.into(), help };
        sink.error(&self.origin, error);
    }

    /// A scalar as text: strings as they are, numbers and booleans as written.
    fn scalar_text(value: &Value) -> Option<String> {
        match &value.kind {
            ValueKind::String(s) => Some(s.clone()),
            ValueKind::Number(n) => Some(n.as_str().to_owned()),
            ValueKind::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    pub fn string(&self, sink: &mut Sink) -> Option<String> {
        if self.is_null() {
            return None;
        }
        let text = Field::scalar_text(&self.value);
        if text.is_none() {
            self.wrong_type(sink, "a string", None);
        }
        text
    }

    pub fn bool(&self, sink: &mut Sink) -> Option<bool> {
        match &self.value.kind {
            ValueKind::Null => None,
            ValueKind::Bool(b) => Some(*b),
            // strconv.ParseBool's spellings, which the weak decoder accepts.
            ValueKind::String(s) => match s.as_str() {
                "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
                "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
                _ => {
                    let help = Some("write `true` or `false`".to_owned());
                    sink.error(
                        &self.origin,
                        UnknownValue { option: self.name.clone(), text: s.clone(), span: self.span().into(), help },
                    );
                    None
                }
            },
            ValueKind::Number(n) => Some(n.as_f64() != 0.0),
            _ => {
                self.wrong_type(sink, "a boolean", None);
                None
            }
        }
    }

    /// An integer within `min..=max`.
    pub fn integer(&self, sink: &mut Sink, min: i64, max: i64) -> Option<i64> {
        let text = match &self.value.kind {
            ValueKind::Null => return None,
            ValueKind::Number(n) => n.as_str().to_owned(),
            ValueKind::String(s) => s.trim().to_owned(),
            _ => {
                self.wrong_type(sink, "a number", None);
                return None;
            }
        };
        let bad = |reason: String| BadNumber {
            option: self.name.clone(),
            text: text.clone(),
            reason,
            span: self.span().into(),
        };
        match text.parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            Ok(_) => {
                sink.error(&self.origin, bad(format!("it must be from {min} to {max}")));
                None
            }
            Err(_) => {
                sink.error(&self.origin, bad("expected a whole number".to_owned()));
                None
            }
        }
    }

    pub fn u32(&self, sink: &mut Sink) -> Option<u32> {
        self.integer(sink, 0, i64::from(u32::MAX)).and_then(|n| u32::try_from(n).ok())
    }

    /// A Go duration (`30s`); a bare number counts nanoseconds, as a Go `time.Duration` does.
    pub fn duration(&self, sink: &mut Sink) -> Option<Duration> {
        match &self.value.kind {
            ValueKind::Null => None,
            ValueKind::String(s) => match duration::parse(s.trim()) {
                Ok(d) => Some(d),
                Err(e) => {
                    let span = self.span().into();
                    let error = BadDuration { text: s.clone(), reason: e.to_string(), span, option: self.name.clone() };
                    sink.error(&self.origin, error);
                    None
                }
            },
            ValueKind::Number(n) => {
                let nanos = self.integer(sink, 0, i64::MAX)?;
                if nanos != 0 {
                    let text = n.as_str().to_owned();
                    sink.warning(
                        &self.origin,
                        BareDuration { option: self.name.clone(), text, span: self.span().into() },
                    );
                }
                u64::try_from(nanos).ok().map(Duration::from_nanos)
            }
            _ => {
                self.wrong_type(sink, "a duration such as `30s`", None);
                None
            }
        }
    }

    /// A list of strings: a list of scalars, or a string split at commas (viper's decode hook).
    pub fn list(&self, sink: &mut Sink) -> Option<Vec<Spanned<String>>> {
        match &self.value.kind {
            ValueKind::Null => None,
            ValueKind::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match Field::scalar_text(item) {
                        Some(text) => out.push(Spanned { value: text, span: item.span }),
                        None => self.item(item).wrong_type(sink, "a string", None),
                    }
                }
                Some(out)
            }
            ValueKind::String(s) if s.trim_start().starts_with('[') => {
                self.parsed_json(sink).and_then(|value| self.item(&value).list(sink))
            }
            ValueKind::String(s) => Some(self.split_commas(s)),
            ValueKind::Number(_) | ValueKind::Bool(_) => {
                Field::scalar_text(&self.value).map(|text| vec![Spanned { value: text, span: self.span() }])
            }
            ValueKind::Object(_) => {
                self.wrong_type(sink, "a list", None);
                None
            }
        }
    }

    /// A string split at commas, each part trimmed. In an environment variable, whose value is the
    /// whole text, each part has its own span; in the file, quoting shifts offsets, so each part
    /// points at the whole string.
    fn split_commas(&self, text: &str) -> Vec<Spanned<String>> {
        let aligned = self.is_whole_env_value(text);
        let mut out = Vec::new();
        let mut offset = 0;
        for part in text.split(',') {
            let trimmed = part.trim();
            let start = offset + (part.len() - part.trim_start().len());
            offset += part.len() + 1;
            if trimmed.is_empty() {
                continue;
            }
            let span = if aligned { Span::new(start, start + trimmed.len()) } else { self.span() };
            out.push(Spanned { value: trimmed.to_owned(), span });
        }
        out
    }

    /// Whether this value is an environment variable's whole text, so that offsets into it are spans.
    fn is_whole_env_value(&self, text: &str) -> bool {
        matches!(self.origin, Origin::Env(_)) && self.value.span.start() == 0 && self.value.span.len() == text.len()
    }

    /// The entries of an object; a JSON string is parsed (viper's string-to-map hook).
    pub fn object(&self, sink: &mut Sink) -> Option<Vec<Entry>> {
        match &self.value.kind {
            ValueKind::Null => None,
            ValueKind::Object(entries) => Some(entries.clone()),
            ValueKind::String(s) if s.trim_start().starts_with('{') => {
                self.parsed_json(sink).and_then(|value| self.item(&value).object(sink))
            }
            _ => {
                self.wrong_type(sink, "an object", None);
                None
            }
        }
    }

    /// An object of strings (`set_request_headers`, `idp_request_params`).
    pub fn map(&self, sink: &mut Sink) -> Option<Vec<(Spanned<String>, Spanned<String>)>> {
        let entries = self.object(sink)?;
        let mut out = Vec::with_capacity(entries.len());
        for entry in &entries {
            let child = self.child(entry);
            let key = Spanned { value: entry.key.clone(), span: entry.key_span };
            match &entry.value.kind {
                ValueKind::Null => out.push((key, Spanned { value: String::new(), span: entry.value.span })),
                _ => {
                    if let Some(value) = child.string(sink) {
                        out.push((key, Spanned { value, span: entry.value.span }));
                    }
                }
            }
        }
        Some(out)
    }

    /// The JSON held by a string value. For an environment variable the spans point into its value;
    /// for a string in the file they all point at the string, since quoting shifts offsets.
    fn parsed_json(&self, sink: &mut Sink) -> Option<Value> {
        let text = self.value.as_str()?;
        let (value, errors) = ppl::syntax::json::parse(text);
        let aligned = self.is_whole_env_value(text);
        if let Some(first) = errors.first() {
            if aligned {
                errors.into_iter().for_each(|e| sink.error(&self.origin, e));
            } else {
                self.invalid(sink, format!("the string is not valid json: {first}"), None);
            }
            return None;
        }
        let value = value?;
        Some(if aligned { value } else { anchored(&value, self.value.span) })
    }

    /// One of `allowed` (compared case-insensitively when `fold_case`), or an error with a suggestion.
    pub fn choice<T: Copy>(&self, sink: &mut Sink, allowed: &[(&str, T)], fold_case: bool) -> Option<T> {
        let text = self.string(sink)?;
        let found =
            allowed.iter().find(|(name, _)| if fold_case { name.eq_ignore_ascii_case(&text) } else { *name == text });
        if let Some((_, value)) = found {
            return Some(*value);
        }
        let names: Vec<&str> = allowed.iter().map(|(name, _)| *name).filter(|name| !name.is_empty()).collect();
        let help = Some(ppl::suggest::help(&text, &names, "values"));
        sink.error(&self.origin, UnknownValue { option: self.name.clone(), text, span: self.span().into(), help });
        None
    }
}

/// A copy of `value` whose every span is `span`.
pub(crate) fn anchored(value: &Value, span: Span) -> Value {
    let kind = match &value.kind {
        ValueKind::Array(items) => ValueKind::Array(items.iter().map(|item| anchored(item, span)).collect()),
        ValueKind::Object(entries) => ValueKind::Object(
            entries
                .iter()
                .map(|entry| Entry { key: entry.key.clone(), key_span: span, value: anchored(&entry.value, span) })
                .collect(),
        ),
        other => other.clone(),
    };
    Value::new(kind, span)
}

/// A problem with an environment variable as a whole.
pub(crate) fn bad_env(sink: &mut Sink, var: &str, text: &str, reason: String, help: Option<String>) {
    let error = BadEnv { var: var.to_owned(), reason, span: Span::new(0, text.len()).into(), help };
    sink.error(&Origin::Env(var.to_owned()), error);
}
