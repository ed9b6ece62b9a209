//! The canonical YAML layout, in the style of Pomerium's documentation:
//!
//! ```yaml
//! allow:
//!   and:
//!     - domain:
//!         is: example.com
//!     - email:
//!         in: [alice@example.com, bob@example.com]
//! ```
//!
//! A policy is one object when it has at most one `allow` rule followed by at most one `deny`
//! rule, and a list of rules otherwise. Lists of scalars are written inline when they fit.

use super::{Out, WIDTH, needs_escape, quote};
use crate::ast::{Action, Block, Criterion, Policy, Rule};
use crate::comments::Trivia;
use crate::value::{Entry, Value, ValueKind};

pub fn print(policy: &Policy, comments: &Trivia) -> String {
    let mut out = Out::new(comments);
    let actions: Vec<Action> = policy.rules.iter().map(|r| r.action).collect();
    let object_form = matches!(actions.as_slice(), [] | [_] | [Action::Allow, Action::Deny]);
    if policy.rules.is_empty() {
        out.line(0, "{}");
    }
    for rule in &policy.rules {
        if object_form {
            print_rule(&mut out, rule, 0, "");
        } else {
            print_rule(&mut out, rule, 2, "- ");
        }
    }
    out.finish()
}

/// A rule whose key starts at `key_col`; `dash` is `"- "` in the list form.
fn print_rule(out: &mut Out<'_>, rule: &Rule, key_col: usize, dash: &str) {
    let line_col = key_col - dash.len();
    out.blank_line(rule.span);
    out.leading(rule.span, line_col);
    if rule.blocks.is_empty() {
        out.header_as_leading(rule.span, line_col);
        out.line(line_col, &format!("{dash}{}: {{}}", rule.action));
    } else {
        let header = out.header(rule.span);
        out.line(line_col, &format!("{dash}{}:{header}", rule.action));
        for block in &rule.blocks {
            print_block(out, block, key_col + 2);
        }
    }
    out.trailing(rule.span);
    out.after(rule.span, line_col);
}

fn print_block(out: &mut Out<'_>, block: &Block, col: usize) {
    out.leading(block.span, col);
    if block.criteria.is_empty() {
        out.header_as_leading(block.span, col);
        out.line(col, &format!("{}: []", block.operator));
    } else {
        let header = out.header(block.span);
        out.line(col, &format!("{}:{header}", block.operator));
        for criterion in &block.criteria {
            print_criterion(out, criterion, col + 2);
        }
    }
    out.trailing(block.span);
    out.after(block.span, col);
}

fn print_criterion(out: &mut Out<'_>, criterion: &Criterion, dash_col: usize) {
    out.blank_line(criterion.span);
    out.leading(criterion.span, dash_col);
    let prefix = format!("{}- {}:", " ".repeat(dash_col), key(&criterion.key()));
    print_value_after(out, prefix, criterion.span, &criterion.data, dash_col + 2);
    out.trailing(criterion.span);
    out.after(criterion.span, dash_col);
}

/// Finishes the line `prefix` (which ends with `key:` or `-`) with `value`, inline or on the
/// following lines. `node` is the span whose header comments belong on this line.
fn print_value_after(out: &mut Out<'_>, prefix: String, node: crate::span::Span, value: &Value, key_col: usize) {
    if let Some(inline) = inline(value, prefix.len() + 1, out.comments) {
        out.header_as_leading(node, key_col.saturating_sub(2));
        out.text.push_str(&format!("{prefix} {inline}\n"));
        return;
    }
    let header = out.header(node);
    out.text.push_str(&format!("{prefix}{header}\n"));
    match &value.kind {
        ValueKind::Array(items) => items.iter().for_each(|item| print_item(out, item, key_col + 2)),
        ValueKind::Object(entries) => entries.iter().for_each(|entry| print_entry(out, entry, key_col + 2, None)),
        _ => {}
    }
}

/// `value` on one line, when it is a scalar, an empty collection, or a short list of scalars
/// without comments inside.
fn inline(value: &Value, used: usize, comments: &Trivia) -> Option<String> {
    match &value.kind {
        ValueKind::Array(items) if items.is_empty() => Some("[]".to_owned()),
        ValueKind::Object(entries) if entries.is_empty() => Some("{}".to_owned()),
        ValueKind::Array(items) => {
            if comments.has_comments(value.span) {
                return None;
            }
            let mut parts: Vec<String> = items.iter().map(|item| scalar(item, true)).collect::<Option<_>>()?;
            // Quote all the strings of a list or none, so that it reads evenly.
            let any_quoted =
                items.iter().zip(&parts).any(|(item, part)| item.as_str().is_some() && part.starts_with('"'));
            if any_quoted {
                for (item, part) in items.iter().zip(parts.iter_mut()) {
                    if let Some(text) = item.as_str() {
                        *part = quote(text);
                    }
                }
            }
            let text = format!("[{}]", parts.join(", "));
            (used + text.len() <= WIDTH).then_some(text)
        }
        ValueKind::Object(_) => None,
        _ => scalar(value, false),
    }
}

fn print_item(out: &mut Out<'_>, item: &Value, dash_col: usize) {
    out.leading(item.span, dash_col);
    match &item.kind {
        ValueKind::Object(entries) if !entries.is_empty() => {
            out.header_as_leading(item.span, dash_col);
            for (i, entry) in entries.iter().enumerate() {
                let lead = (i == 0).then(|| format!("{}- ", " ".repeat(dash_col)));
                print_entry(out, entry, dash_col + 2, lead);
            }
        }
        _ => print_value_after(out, format!("{}-", " ".repeat(dash_col)), item.span, item, dash_col),
    }
    out.trailing(item.span);
    out.after(item.span, dash_col);
}

fn print_entry(out: &mut Out<'_>, entry: &Entry, key_col: usize, lead: Option<String>) {
    let span = entry.span();
    let indent = if lead.is_some() { key_col - 2 } else { key_col };
    out.leading(span, indent);
    let lead = lead.unwrap_or_else(|| " ".repeat(key_col));
    print_value_after(out, format!("{lead}{}:", key(&entry.key)), span, &entry.value, key_col);
    out.trailing(span);
    out.after(span, key_col);
}

fn key(text: &str) -> String {
    if plain_ok(text, false) && !text.contains(':') { text.to_owned() } else { quote(text) }
}

/// A scalar as YAML text; `None` for collections.
fn scalar(value: &Value, flow: bool) -> Option<String> {
    Some(match &value.kind {
        ValueKind::Null => "null".to_owned(),
        ValueKind::Bool(b) => b.to_string(),
        ValueKind::Number(n) => n.to_string(),
        ValueKind::String(s) if plain_ok(s, flow) => s.clone(),
        ValueKind::String(s) => quote(s),
        ValueKind::Array(_) | ValueKind::Object(_) => return None,
    })
}

/// Whether `text` can be written as a plain scalar and read back as the same string, by us and
/// by other YAML 1.1 and 1.2 readers. Deliberately conservative: when in doubt, quote.
fn plain_ok(text: &str, flow: bool) -> bool {
    let Some(first) = text.chars().next() else {
        return false;
    };
    let safe_char = |c: char| {
        c.is_alphanumeric()
            || "_-./@+=~$%^()<>;'?!&*:, ".contains(c)
            || (!c.is_ascii() && !c.is_whitespace() && !needs_escape(c))
    };
    let risky_start = "-?:,[]{}#&*!|>'\"%@`~=<".contains(first) || first.is_whitespace();
    let flow_unsafe = flow && text.contains([',', '[', ']', '{', '}', ':']);
    !risky_start
        && !flow_unsafe
        && text.chars().all(safe_char)
        && !text.ends_with([' ', ':'])
        && !text.contains(": ")
        && !text.contains(" #")
        && !text.contains("  ")
        && !looks_like_non_string(text)
}

/// Words and shapes that some YAML reader would take for something other than a string.
fn looks_like_non_string(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    if matches!(lower.as_str(), "null" | "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n" | "~" | "<<" | "=")
    {
        return true;
    }
    // Numbers in any YAML spelling, times like `15:04`, dates like `2026-01-31`: all start with
    // a digit, sign or dot and use only these characters.
    let numeric_start = text.starts_with(|c: char| c.is_ascii_digit() || "+-.".contains(c));
    let numeric_chars = text.chars().all(|c| c.is_ascii_hexdigit() || "+-._:xXoObBtTzZ ".contains(c));
    numeric_start && numeric_chars
        || lower.starts_with(".inf")
        || lower.starts_with(".nan")
        || lower.starts_with("+.")
        || lower.starts_with("-.")
}

#[cfg(test)]
mod tests {
    use super::plain_ok;

    #[test]
    fn plain_only_when_it_reads_back_as_the_same_string() {
        for plain in [
            "alice@example.com",
            "example.com",
            "/admin",
            "10.0.0.0/8",
            "GET",
            "mon-fri",
            "claim/groups",
            "Europe/Berlin",
        ] {
            assert!(plain_ok(plain, false), "{plain}");
        }
        for quoted in [
            "",
            "true",
            "Yes",
            "null",
            "123",
            "1.5",
            "0x1f",
            "15:04",
            "2026-01-31",
            "@example.com",
            "*",
            "- a",
            "a: b",
            "a #b",
            "-",
            "a ",
            " a",
            "tab\t",
            "line\nbreak",
            ".inf",
            "~",
            "[x]",
            "{x}",
            "#x",
            "'x",
            "\"x",
        ] {
            assert!(!plain_ok(quoted, false), "{quoted:?}");
        }
        assert!(!plain_ok("2001:db8::1", false), "looks like a sexagesimal number to yaml 1.1");
        assert!(!plain_ok("fe80::1", true), "colons are quoted in flow lists");
        assert!(plain_ok("fe80::1", false));
        assert!(!plain_ok("a,b", true));
    }
}
