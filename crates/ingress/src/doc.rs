//! Route documents while they are built: JSON values in which every node remembers where it came
//! from (an annotation's value at a span, a Secret, or the rule itself), so that a problem
//! `config::load` finds in the emitted document can be reported against what the user wrote.

use ppl::Span;
use ppl::value::{Value, ValueKind};
use std::fmt;

/// Where a value in a route document came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// Made from the rule: `from`, `to`, the path matcher, `id`, `name`.
    Rule,
    /// The template cert-manager's HTTP-01 solver Ingresses get.
    Solver,
    /// An annotation's value (the name without the prefix), at `span` inside the value; `None`
    /// for the annotation as a whole.
    Annotation { name: String, span: Option<Span> },
    /// The data of a Secret that an annotation names.
    Secret { annotation: String, secret: String },
}

/// A JSON value with its source.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub kind: NodeKind,
    pub source: Source,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum NodeKind {
    Null,
    Bool(bool),
    /// JSON number text.
    Number(String),
    String(String),
    Array(Vec<Node>),
    /// Entries in order; each key has its own source.
    Object(Vec<(Key, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Key {
    pub text: String,
    pub source: Source,
}

impl Node {
    pub fn string(text: impl Into<String>, source: Source) -> Node {
        Node { kind: NodeKind::String(text.into()), source }
    }

    pub fn bool(value: bool, source: Source) -> Node {
        Node { kind: NodeKind::Bool(value), source }
    }

    pub fn strings(items: &[String], source: Source) -> Node {
        let items = items.iter().map(|item| Node::string(item.clone(), source.clone())).collect();
        Node { kind: NodeKind::Array(items), source }
    }

    /// An annotation's parsed value, every node pointing into the annotation's text.
    pub fn from_annotation(value: &Value, name: &str) -> Node {
        let source = Source::Annotation { name: name.to_owned(), span: Some(value.span) };
        let kind = match &value.kind {
            ValueKind::Null => NodeKind::Null,
            ValueKind::Bool(b) => NodeKind::Bool(*b),
            ValueKind::Number(n) => NodeKind::Number(n.as_str().to_owned()),
            ValueKind::String(s) => NodeKind::String(s.clone()),
            ValueKind::Array(items) => NodeKind::Array(items.iter().map(|i| Node::from_annotation(i, name)).collect()),
            ValueKind::Object(entries) => NodeKind::Object(
                entries
                    .iter()
                    .map(|entry| {
                        let key_source = Source::Annotation { name: name.to_owned(), span: Some(entry.key_span) };
                        (Key { text: entry.key.clone(), source: key_source }, Node::from_annotation(&entry.value, name))
                    })
                    .collect(),
            ),
        };
        Node { kind, source }
    }

    /// A plain JSON value, every node with the same source.
    pub fn from_json(value: &serde_json::Value, source: &Source) -> Node {
        let kind = match value {
            serde_json::Value::Null => NodeKind::Null,
            serde_json::Value::Bool(b) => NodeKind::Bool(*b),
            serde_json::Value::Number(n) => NodeKind::Number(n.to_string()),
            serde_json::Value::String(s) => NodeKind::String(s.clone()),
            serde_json::Value::Array(items) => {
                NodeKind::Array(items.iter().map(|item| Node::from_json(item, source)).collect())
            }
            // Keys sorted: serde_json's map order depends on its `preserve_order` feature, which
            // another crate of the workspace may turn on.
            serde_json::Value::Object(map) => {
                let mut entries: Vec<(&String, &serde_json::Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                NodeKind::Object(
                    entries
                        .into_iter()
                        .map(|(key, value)| {
                            (Key { text: key.clone(), source: source.clone() }, Node::from_json(value, source))
                        })
                        .collect(),
                )
            }
        };
        Node { kind, source: source.clone() }
    }

    /// The value without its sources.
    pub fn to_json(&self) -> serde_json::Value {
        match &self.kind {
            NodeKind::Null => serde_json::Value::Null,
            NodeKind::Bool(b) => serde_json::Value::Bool(*b),
            // The text was checked as a JSON number when it was read; a number serde_json cannot
            // hold is kept as its text rather than lost.
            NodeKind::Number(text) => serde_json::from_str::<serde_json::Number>(text)
                .map_or_else(|_| serde_json::Value::String(text.clone()), serde_json::Value::Number),
            NodeKind::String(s) => serde_json::Value::String(s.clone()),
            NodeKind::Array(items) => serde_json::Value::Array(items.iter().map(Node::to_json).collect()),
            NodeKind::Object(entries) => serde_json::Value::Object(
                entries.iter().map(|(key, value)| (key.text.clone(), value.to_json())).collect(),
            ),
        }
    }

    /// Whether this is written as an indented block (a non-empty list or object).
    pub fn is_block(&self) -> bool {
        match &self.kind {
            NodeKind::Array(items) => !items.is_empty(),
            NodeKind::Object(entries) => !entries.is_empty(),
            _ => false,
        }
    }
}

/// One route being built: its fields in the order they were set, and the rule it stands for.
#[derive(Debug, Clone)]
pub(crate) struct RouteDoc {
    pub fields: Vec<(String, Node)>,
    pub rule: Rule,
}

impl RouteDoc {
    /// Sets a field, replacing an earlier value of the same key.
    pub fn set(&mut self, key: &str, value: Node) {
        match self.fields.iter_mut().find(|(k, _)| k == key) {
            Some((_, slot)) => *slot = value,
            None => self.fields.push((key.to_owned(), value)),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, value)| value)
    }

    /// The route as a JSON object (keys sorted, as `serde_json` keeps them).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(self.fields.iter().map(|(key, value)| (key.clone(), value.to_json())).collect())
    }
}

/// The rule (or the default backend) a route was made from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub host: String,
    pub path: String,
    pub default_backend: bool,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.default_backend {
            return f.write_str("default backend");
        }
        write!(f, "rule `{}`", self.host)?;
        if !self.path.is_empty() {
            write!(f, " path `{}`", self.path)?;
        }
        Ok(())
    }
}
