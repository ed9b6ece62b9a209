//! The canonical JSON layout: two-space indentation; rules and blocks always broken over lines;
//! any smaller value on one line when it fits.

use super::{WIDTH, quote};
use crate::ast::{Action, Block, Policy, Rule};
use crate::value::{Value, ValueKind};

pub fn print(policy: &Policy) -> String {
    let actions: Vec<Action> = policy.rules.iter().map(|r| r.action).collect();
    let mut out = String::new();
    match actions.as_slice() {
        [] => out.push_str("{}"),
        [_] | [Action::Allow, Action::Deny] => rules_object(&mut out, &policy.rules, 0),
        _ => {
            out.push_str("[\n");
            for (i, rule) in policy.rules.iter().enumerate() {
                out.push_str("  ");
                rules_object(&mut out, std::slice::from_ref(rule), 2);
                out.push_str(if i + 1 < policy.rules.len() { ",\n" } else { "\n" });
            }
            out.push(']');
        }
    }
    out.push('\n');
    out
}

fn rules_object(out: &mut String, rules: &[Rule], indent: usize) {
    out.push_str("{\n");
    for (i, rule) in rules.iter().enumerate() {
        push_indent(out, indent + 2);
        out.push_str(&format!("\"{}\": ", rule.action));
        body(out, &rule.blocks, indent + 2);
        out.push_str(if i + 1 < rules.len() { ",\n" } else { "\n" });
    }
    push_indent(out, indent);
    out.push('}');
}

fn body(out: &mut String, blocks: &[Block], indent: usize) {
    if blocks.is_empty() {
        out.push_str("{}");
        return;
    }
    out.push_str("{\n");
    for (i, block) in blocks.iter().enumerate() {
        push_indent(out, indent + 2);
        out.push_str(&format!("\"{}\": ", block.operator));
        if block.criteria.is_empty() {
            out.push_str("[]");
        } else {
            out.push_str("[\n");
            for (j, criterion) in block.criteria.iter().enumerate() {
                push_indent(out, indent + 4);
                let key = quote(&criterion.key());
                out.push_str(&format!("{{{key}: "));
                value(out, &criterion.data, indent + 4, indent + 4 + key.len() + 5);
                out.push('}');
                out.push_str(if j + 1 < block.criteria.len() { ",\n" } else { "\n" });
            }
            push_indent(out, indent + 2);
            out.push(']');
        }
        out.push_str(if i + 1 < blocks.len() { ",\n" } else { "\n" });
    }
    push_indent(out, indent);
    out.push('}');
}

/// Writes `v` at a line indented `indent` where `used` columns are already taken.
fn value(out: &mut String, v: &Value, indent: usize, used: usize) {
    let compact = compact(v);
    if used + compact.len() <= WIDTH {
        out.push_str(&compact);
        return;
    }
    match &v.kind {
        ValueKind::Array(items) => {
            out.push_str("[\n");
            for (i, item) in items.iter().enumerate() {
                push_indent(out, indent + 2);
                value(out, item, indent + 2, indent + 2);
                out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
            }
            push_indent(out, indent);
            out.push(']');
        }
        ValueKind::Object(entries) => {
            out.push_str("{\n");
            for (i, entry) in entries.iter().enumerate() {
                push_indent(out, indent + 2);
                let key = quote(&entry.key);
                out.push_str(&format!("{key}: "));
                value(out, &entry.value, indent + 2, indent + 2 + key.len() + 2);
                out.push_str(if i + 1 < entries.len() { ",\n" } else { "\n" });
            }
            push_indent(out, indent);
            out.push('}');
        }
        _ => out.push_str(&compact),
    }
}

/// `v` on one line: `{"a": [1, 2]}`.
pub(super) fn compact(v: &Value) -> String {
    match &v.kind {
        ValueKind::Null => "null".to_owned(),
        ValueKind::Bool(b) => b.to_string(),
        ValueKind::Number(n) => n.to_string(),
        ValueKind::String(s) => quote(s),
        ValueKind::Array(items) => format!("[{}]", items.iter().map(compact).collect::<Vec<_>>().join(", ")),
        ValueKind::Object(entries) => format!(
            "{{{}}}",
            entries.iter().map(|e| format!("{}: {}", quote(&e.key), compact(&e.value))).collect::<Vec<_>>().join(", ")
        ),
    }
}

fn push_indent(out: &mut String, indent: usize) {
    out.push_str(&" ".repeat(indent));
}
