//! Writing routes as a `config.yaml` document (`routes:` followed by block-style YAML), recording
//! where each value landed so that `config::load`'s spans can be traced back to their source.
//!
//! One writer serves both the document that is validated and the one the `translate` command
//! prints, so what was checked is what is printed. Strings are written plain only when no YAML
//! reader could take them for anything else; otherwise double-quoted with JSON-style escapes.

use crate::doc::{Node, NodeKind, Source};
use ppl::Span;

/// Route keys written first, in this order; the rest follow alphabetically.
const LEADING_KEYS: &[&str] = &["from", "to", "prefix", "path", "regex", "id", "name"];

/// The emitted text and, for every node written, its span and source.
#[derive(Debug)]
pub(crate) struct Emitted {
    pub text: String,
    pub nodes: Vec<Recorded>,
}

#[derive(Debug)]
pub(crate) struct Recorded {
    pub span: Span,
    /// The index of the route the node belongs to.
    pub route: usize,
    pub source: Source,
}

/// `routes:` and the routes, each a list of fields.
pub(crate) fn routes(routes: &[Vec<(String, Node)>]) -> Emitted {
    let mut emitter = Emitter { out: String::from("routes:"), nodes: Vec::new(), route: 0 };
    if routes.is_empty() {
        emitter.out.push_str(" []\n");
    } else {
        emitter.out.push('\n');
    }
    for (index, fields) in routes.iter().enumerate() {
        emitter.route = index;
        emitter.route_object(fields);
    }
    Emitted { text: emitter.out, nodes: emitter.nodes }
}

/// The order route keys are written in.
fn ordered(fields: &[(String, Node)]) -> Vec<&(String, Node)> {
    let rank = |key: &str| LEADING_KEYS.iter().position(|k| *k == key).unwrap_or(LEADING_KEYS.len());
    let mut sorted: Vec<&(String, Node)> = fields.iter().collect();
    sorted.sort_by(|(a, _), (b, _)| (rank(a), a).cmp(&(rank(b), b)));
    sorted
}

struct Emitter {
    out: String,
    nodes: Vec<Recorded>,
    route: usize,
}

impl Emitter {
    fn record(&mut self, start: usize, end: usize, source: &Source) {
        self.nodes.push(Recorded { span: Span::new(start, end), route: self.route, source: source.clone() });
    }

    fn pad(&mut self, indent: usize) {
        self.out.extend(std::iter::repeat_n(' ', indent));
    }

    fn route_object(&mut self, fields: &[(String, Node)]) {
        self.out.push_str("  - ");
        let start = self.out.len();
        for (i, (key, value)) in ordered(fields).into_iter().enumerate() {
            if i > 0 {
                self.pad(4);
            }
            let key_start = self.out.len();
            self.out.push_str(key);
            self.record(key_start, self.out.len(), &value.source);
            self.out.push(':');
            self.after_key(value, 4);
        }
        if fields.is_empty() {
            self.out.push_str("{}\n");
        }
        self.record(start, self.out.len().saturating_sub(1), &Source::Rule);
    }

    /// A value after `key:`: a scalar on the same line, a block on the lines below.
    fn after_key(&mut self, node: &Node, indent: usize) {
        if node.is_block() {
            self.out.push('\n');
            self.block(node, indent + 2, false);
        } else {
            self.out.push(' ');
            self.scalar(node);
            self.out.push('\n');
        }
    }

    /// A non-empty list or object at `indent`; with `inline_first`, its first line continues the
    /// current one (after `- `).
    fn block(&mut self, node: &Node, indent: usize, inline_first: bool) {
        let start = self.out.len() + if inline_first { 0 } else { indent };
        match &node.kind {
            NodeKind::Object(entries) => {
                for (i, (key, value)) in entries.iter().enumerate() {
                    if i > 0 || !inline_first {
                        self.pad(indent);
                    }
                    let key_start = self.out.len();
                    write_key(&key.text, &mut self.out);
                    self.record(key_start, self.out.len(), &key.source);
                    self.out.push(':');
                    self.after_key(value, indent);
                }
            }
            NodeKind::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if i > 0 || !inline_first {
                        self.pad(indent);
                    }
                    self.out.push_str("- ");
                    if item.is_block() {
                        self.block(item, indent + 2, true);
                    } else {
                        self.scalar(item);
                        self.out.push('\n');
                    }
                }
            }
            _ => {
                self.scalar(node);
                self.out.push('\n');
            }
        }
        self.record(start, self.out.len().saturating_sub(1), &node.source);
    }

    fn scalar(&mut self, node: &Node) {
        let start = self.out.len();
        match &node.kind {
            NodeKind::Null => self.out.push_str("null"),
            NodeKind::Bool(b) => self.out.push_str(if *b { "true" } else { "false" }),
            NodeKind::Number(text) => self.out.push_str(text),
            NodeKind::String(text) if is_plain(text) => self.out.push_str(text),
            NodeKind::String(text) => quoted(text, &mut self.out),
            NodeKind::Array(_) => self.out.push_str("[]"),
            NodeKind::Object(_) => self.out.push_str("{}"),
        }
        self.record(start, self.out.len(), &node.source);
    }
}

fn write_key(key: &str, out: &mut String) {
    if is_plain(key) { out.push_str(key) } else { quoted(key, out) }
}

/// Whether a string can be written without quotes and still be read back as the same string by
/// any YAML reader (1.1 or 1.2): only URL-ish characters, no leading indicator or digit, and no
/// word a reader could take for a boolean or null.
fn is_plain(text: &str) -> bool {
    let Some(first) = text.chars().next() else { return false };
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_./:@+=-".contains(c);
    let reserved = ["true", "false", "null", "yes", "no", "on", "off", "y", "n"];
    (first.is_ascii_alphabetic() || first == '/' || first == '_')
        && text.chars().all(allowed)
        && !text.ends_with(':')
        && !reserved.contains(&text.to_ascii_lowercase().as_str())
}

/// A double-quoted YAML scalar: the policy formatter's quoting (JSON's escapes, `\u` for what
/// YAML may not take raw or what would hide text).
fn quoted(text: &str, out: &mut String) {
    out.push_str(&ppl::format::quote(text));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(text: &str) -> Node {
        Node::string(text, Source::Rule)
    }

    #[test]
    fn blocks_nest_and_scalars_quote_when_needed() {
        let list = Node { kind: NodeKind::Array(vec![plain("http://a:80"), plain("10s")]), source: Source::Rule };
        let nested = Node {
            kind: NodeKind::Array(vec![Node {
                kind: NodeKind::Array(vec![plain("x"), plain("y")]),
                source: Source::Rule,
            }]),
            source: Source::Rule,
        };
        let emitted = routes(&[vec![
            ("to".to_owned(), list),
            ("from".to_owned(), plain("https://a.example.com")),
            ("zz".to_owned(), nested),
            ("name".to_owned(), plain("true")),
        ]]);
        assert_eq!(
            emitted.text,
            "routes:\n  - from: https://a.example.com\n    to:\n      - http://a:80\n      - \"10s\"\n    name: \"true\"\n    zz:\n      - - x\n        - \"y\"\n"
        );
    }

    #[test]
    fn no_routes_is_an_empty_list() {
        assert_eq!(routes(&[]).text, "routes: []\n");
    }
}
