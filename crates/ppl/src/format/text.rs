//! The canonical text-form layout:
//!
//! ```text
//! allow or(email in ["alice@example.com", "bob@example.com"], domain is "example.com")
//!
//! deny
//!   and(
//!     http_path starts_with "/admin",
//!     claim/groups exclude "admins",
//!   )
//!   or(source_ip "203.0.113.0/24")
//! ```
//!
//! A rule with one block is written `action op(...)`; with several, the action is on its own
//! line and each block below it. Anything that does not fit in [`WIDTH`] columns, or holds a
//! comment, is broken over lines with a trailing comma after every item.

use super::{Out, WIDTH, quote};
use crate::ast::{Block, Criterion, Policy, Rule};
use crate::comments::Trivia;
use crate::span::Span;
use crate::value::{Entry, Value, ValueKind};

pub fn print(policy: &Policy, comments: &Trivia) -> String {
    let mut out = Out::new(comments);
    let mut previous_multiline = false;
    for (i, rule) in policy.rules.iter().enumerate() {
        let mut rule_out = Out::new(comments);
        print_rule(&mut rule_out, rule);
        let multiline = rule_out.text.lines().filter(|line| !line.trim_start().starts_with('#')).count() > 1;
        // Rules that span several lines are set apart; others keep the blank line they had.
        let blank = multiline || previous_multiline || comments.blank_before(rule.span);
        if i > 0 && blank {
            out.text.push('\n');
        }
        out.text.push_str(&rule_out.text);
        previous_multiline = multiline;
    }
    out.finish()
}

fn print_rule(out: &mut Out<'_>, rule: &Rule) {
    out.leading(rule.span, 0);
    match rule.blocks.as_slice() {
        [] => {
            out.header_as_leading(rule.span, 0);
            out.line(0, rule.action.as_str());
        }
        [block] => {
            out.header_as_leading(rule.span, 0);
            print_block(out, block, 0, &format!("{} ", rule.action));
        }
        blocks => {
            let header = out.header(rule.span);
            out.line(0, &format!("{}{header}", rule.action));
            for block in blocks {
                print_block(out, block, 2, "");
            }
        }
    }
    out.trailing(rule.span);
    out.after(rule.span, 0);
}

fn print_block(out: &mut Out<'_>, block: &Block, indent: usize, prefix: &str) {
    out.leading(block.span, indent);
    let inline: Option<Vec<String>> = block.criteria.iter().map(criterion_inline).collect();
    let inline = inline.map(|parts| format!("{prefix}{}({})", block.operator, parts.join(", ")));
    match inline {
        Some(text) if indent + text.len() <= WIDTH && !out.comments.has_comments(block.span) => {
            out.header_as_leading(block.span, indent);
            out.line(indent, &text);
        }
        _ => {
            let header = out.header(block.span);
            out.line(indent, &format!("{prefix}{}({header}", block.operator));
            for criterion in &block.criteria {
                print_criterion(out, criterion, indent + 2);
            }
            out.line(indent, ")");
        }
    }
    out.trailing(block.span);
    out.after(block.span, indent);
}

/// One criterion in the text form, on one line: `email is "a@example.com"`.
pub fn criterion_text(criterion: &Criterion) -> String {
    criterion_inline(criterion).unwrap_or_default()
}

/// The criterion on one line, if it has no comments and its data is inline.
fn criterion_inline(criterion: &Criterion) -> Option<String> {
    let name = criterion_name(criterion);
    Some(match data_form(&criterion.data) {
        DataForm::Bare => name,
        DataForm::Pairs(entries) => {
            let pairs: Vec<String> = entries.iter().map(|e| format!("{} {}", e.key, value_inline(&e.value))).collect();
            format!("{name} {}", pairs.join(" "))
        }
        DataForm::Value(value) => format!("{name} {}", value_inline(value)),
    })
}

fn print_criterion(out: &mut Out<'_>, criterion: &Criterion, indent: usize) {
    out.blank_line(criterion.span);
    out.leading(criterion.span, indent);
    let inline = criterion_inline(criterion)
        .filter(|text| indent + text.len() < WIDTH && !out.comments.has_comments(criterion.span));
    let name = criterion_name(criterion);
    if let Some(text) = inline {
        out.header_as_leading(criterion.span, indent);
        out.line(indent, &format!("{text},"));
    } else {
        match data_form(&criterion.data) {
            DataForm::Bare => {
                out.header_as_leading(criterion.span, indent);
                out.line(indent, &format!("{name},"));
            }
            DataForm::Value(value) => print_value(out, &format!("{name} "), value, indent, ",", criterion.span),
            DataForm::Pairs([entry]) => {
                out.header_as_leading(criterion.span, indent);
                out.leading(entry.span(), indent);
                print_value(out, &format!("{name} {} ", entry.key), &entry.value, indent, ",", entry.span());
                out.trailing(entry.span());
                out.after(entry.span(), indent);
            }
            DataForm::Pairs(entries) => {
                let header = out.header(criterion.span);
                out.line(indent, &format!("{name}{header}"));
                for (i, entry) in entries.iter().enumerate() {
                    let suffix = if i + 1 == entries.len() { "," } else { "" };
                    out.leading(entry.span(), indent + 2);
                    print_value(out, &format!("{} ", entry.key), &entry.value, indent + 2, suffix, entry.span());
                    out.trailing(entry.span());
                    out.after(entry.span(), indent + 2);
                }
            }
        }
    }
    out.trailing(criterion.span);
    out.after(criterion.span, indent);
}

/// Writes `prefix` + `value` + `suffix` at `indent`, breaking the value over lines if needed.
/// The header comments of `node` end the value's first line.
fn print_value(out: &mut Out<'_>, prefix: &str, value: &Value, indent: usize, suffix: &str, node: Span) {
    let inline = value_inline(value);
    let fits = indent + prefix.len() + inline.len() + suffix.len() <= WIDTH;
    let breakable = matches!(&value.kind, ValueKind::Array(items) if !items.is_empty())
        || matches!(&value.kind, ValueKind::Object(entries) if !entries.is_empty());
    if !breakable || (fits && !out.comments.has_comments(value.span)) {
        out.header_as_leading(node, indent);
        out.line(indent, &format!("{prefix}{inline}{suffix}"));
        return;
    }
    let header = out.header(node);
    match &value.kind {
        ValueKind::Array(items) => {
            out.line(indent, &format!("{prefix}[{header}"));
            for item in items {
                out.leading(item.span, indent + 2);
                print_value(out, "", item, indent + 2, ",", item.span);
                out.trailing(item.span);
                out.after(item.span, indent + 2);
            }
            out.line(indent, &format!("]{suffix}"));
        }
        ValueKind::Object(entries) => {
            out.line(indent, &format!("{prefix}{{{header}"));
            for entry in entries {
                out.leading(entry.span(), indent + 2);
                print_value(out, &format!("{}: ", entry_key(&entry.key)), &entry.value, indent + 2, ",", entry.span());
                out.trailing(entry.span());
                out.after(entry.span(), indent + 2);
            }
            out.line(indent, &format!("}}{suffix}"));
        }
        _ => out.line(indent, &format!("{prefix}{inline}{suffix}")),
    }
}

enum DataForm<'v> {
    /// `true`, written as nothing.
    Bare,
    /// An object whose keys can all be written as `key value` pairs.
    Pairs(&'v [Entry]),
    Value(&'v Value),
}

fn data_form(data: &Value) -> DataForm<'_> {
    match &data.kind {
        ValueKind::Bool(true) => DataForm::Bare,
        ValueKind::Object(entries) if !entries.is_empty() && entries.iter().all(|e| is_pair_key(&e.key)) => {
            DataForm::Pairs(entries)
        }
        _ => DataForm::Value(data),
    }
}

fn is_ident(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Keys that the grammar's `pair_key` accepts.
fn is_pair_key(key: &str) -> bool {
    (is_ident(key) && !matches!(key, "true" | "false" | "null")) || matches!(key, "<=" | ">=" | "<" | ">" | "=")
}

fn entry_key(key: &str) -> String {
    if is_ident(key) { key.to_owned() } else { quote(key) }
}

/// `name`, `name/subpath`, or the quoted key when it cannot be written bare.
fn criterion_name(criterion: &Criterion) -> String {
    let subpath_ok = |s: &str| !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || ",()[]{}\"#".contains(c));
    let bare = is_ident(&criterion.name) && criterion.subpath.as_deref().is_none_or(subpath_ok);
    if bare { criterion.key() } else { quote(&criterion.key()) }
}

fn value_inline(value: &Value) -> String {
    match &value.kind {
        ValueKind::Null => "null".to_owned(),
        ValueKind::Bool(b) => b.to_string(),
        ValueKind::Number(n) => n.to_string(),
        ValueKind::String(s) => quote(s),
        ValueKind::Array(items) => format!("[{}]", items.iter().map(value_inline).collect::<Vec<_>>().join(", ")),
        ValueKind::Object(entries) => format!(
            "{{{}}}",
            entries
                .iter()
                .map(|e| format!("{}: {}", entry_key(&e.key), value_inline(&e.value)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
