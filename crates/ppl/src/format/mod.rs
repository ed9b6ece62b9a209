//! The formatter: one canonical layout for each syntax, and conversion between them.
//!
//! Invariants, checked by `format_source` on every call and by property tests:
//! - sound: the output parses to the same AST as the input (spans aside);
//! - idempotent: formatting formatted text changes nothing;
//! - comments are kept (YAML and text; JSON has none): a comment may move to the nearest node,
//!   but is never dropped.

mod json;
mod text;
mod yaml;

use crate::ast::Policy;
use crate::comments::{self, Comment, Place, Trivia};
use crate::error::Error;
use crate::span::Span;
use crate::syntax::Syntax;

pub use text::criterion_text;

/// Lines longer than this are broken where the layout allows.
pub const WIDTH: usize = 80;

/// Prints `policy` in `syntax`, placing the comments attached to it.
pub fn format(policy: &Policy, comments: &Trivia, syntax: Syntax) -> String {
    match syntax {
        Syntax::Yaml => yaml::print(policy, comments),
        Syntax::Json => json::print(policy),
        Syntax::Text => text::print(policy, comments),
    }
}

/// A formatted policy.
#[derive(Debug, Clone)]
pub struct Formatted {
    pub text: String,
    /// Comments that the target syntax cannot hold (JSON).
    pub dropped_comments: usize,
    /// YAML aliases (`*name`) that were replaced by copies of what they refer to.
    pub expanded_aliases: usize,
}

/// Why a source could not be formatted.
#[derive(Debug, Clone)]
pub enum FormatError {
    /// The source does not parse.
    Parse(Vec<Error>),
    /// The policy cannot be written in the target syntax (YAML keys are limited to 1,024
    /// characters).
    Unrepresentable { reason: String },
    /// The formatter produced text that does not mean the same as its input. This is a bug in the
    /// formatter; the output is withheld so that nothing is overwritten with it.
    Unsound { output: String },
}

/// YAML allows at most 1,024 characters in a key written on one line with its value.
const MAX_YAML_KEY: usize = 1024;

/// Why `policy` cannot be written as YAML, if it cannot.
fn yaml_unrepresentable(policy: &Policy) -> Option<String> {
    let too_long = |key: &str| quote(key).chars().count() > MAX_YAML_KEY;
    for (_, _, criterion) in policy.criteria() {
        if too_long(&criterion.key()) {
            return Some(format!("a criterion key is longer than the {MAX_YAML_KEY} characters a yaml key may have"));
        }
        let mut long_entry = false;
        criterion.data.walk(&mut |value| {
            long_entry |= value.as_object().is_some_and(|entries| entries.iter().any(|e| too_long(&e.key)));
        });
        if long_entry {
            return Some(format!("an object key is longer than the {MAX_YAML_KEY} characters a yaml key may have"));
        }
    }
    None
}

/// Parses `source` and prints it in `to`, checking that the result means the same.
pub fn format_source(source: &str, from: Syntax, to: Syntax) -> Result<Formatted, FormatError> {
    let parsed = crate::parse(source, from);
    let policy = match parsed.policy {
        Some(policy) if parsed.errors.is_empty() => policy,
        _ => return Err(FormatError::Parse(parsed.errors)),
    };
    if to == Syntax::Yaml
        && let Some(reason) = yaml_unrepresentable(&policy)
    {
        return Err(FormatError::Unrepresentable { reason });
    }
    let found = comments::collect(source, from);
    let (attached, dropped_comments) =
        if to == Syntax::Json { (Trivia::default(), found.len()) } else { (Trivia::new(source, &policy, found), 0) };
    let text = format(&policy, &attached, to);
    let reparsed = crate::parse(&text, to);
    let same = reparsed.errors.is_empty()
        && reparsed.policy.is_some_and(|output| output.without_spans() == policy.without_spans());
    if !same {
        return Err(FormatError::Unsound { output: text });
    }
    let expanded_aliases = if from == Syntax::Yaml { crate::syntax::yaml::alias_count(source) } else { 0 };
    Ok(Formatted { text, dropped_comments, expanded_aliases })
}

/// Escapes `text` as a double-quoted JSON string, which is also a valid YAML double-quoted
/// scalar and a text-form string.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if needs_escape(c) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Characters written as `\u` escapes rather than raw: controls; what YAML 1.1 reads as line
/// breaks or YAML forbids (noncharacters, the byte-order mark); and invisible or bidirectional
/// formatting characters, which would hide what a policy really says.
pub fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}' | '\u{00ad}' | '\u{061c}')
        || ('\u{200b}'..='\u{200f}').contains(&c)
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2060}'..='\u{2069}').contains(&c)
}

/// Writes comment lines and trailing comments; shared by the YAML and text printers.
pub(crate) struct Out<'a> {
    pub text: String,
    pub comments: &'a Trivia,
}

impl<'a> Out<'a> {
    pub fn new(comments: &'a Trivia) -> Out<'a> {
        Out { text: String::new(), comments }
    }

    pub fn line(&mut self, indent: usize, content: &str) {
        self.text.push_str(&" ".repeat(indent));
        self.text.push_str(content);
        self.text.push('\n');
    }

    fn comment_lines(&mut self, indent: usize, comments: Vec<Comment>) {
        for comment in comments {
            self.line(indent, &format!("#{}", printable(&comment.text)));
        }
    }

    /// A blank line, if the node had one before it and the output is not at its start or
    /// already after a blank line.
    pub fn blank_line(&mut self, span: Span) {
        if self.comments.blank_before(span) && !self.text.is_empty() && !self.text.ends_with("\n\n") {
            self.text.push('\n');
        }
    }

    /// Own-line comments before the node with `span`.
    pub fn leading(&mut self, span: Span, indent: usize) {
        let comments = self.comments.take(span, Place::Leading);
        self.comment_lines(indent, comments);
    }

    /// Own-line comments after the node with `span`.
    pub fn after(&mut self, span: Span, indent: usize) {
        let comments = self.comments.take(span, Place::After);
        self.comment_lines(indent, comments);
    }

    /// Header comments of a node printed on one line become leading lines.
    pub fn header_as_leading(&mut self, span: Span, indent: usize) {
        let comments = self.comments.take(span, Place::Header);
        self.comment_lines(indent, comments);
    }

    /// ` # text` for the header comments of `span`, to end its first line with.
    pub fn header(&mut self, span: Span) -> String {
        inline_comments(self.comments.take(span, Place::Header))
    }

    /// Appends the trailing comments of `span` to the last line written.
    pub fn trailing(&mut self, span: Span) {
        let comments = inline_comments(self.comments.take(span, Place::Trailing));
        if comments.is_empty() {
            return;
        }
        if self.text.ends_with('\n') {
            self.text.pop();
        }
        self.text.push_str(&comments);
        self.text.push('\n');
    }

    /// Everything left over, at the end; then the text.
    pub fn finish(mut self) -> String {
        let rest = self.comments.remaining();
        self.comment_lines(0, rest);
        self.text
    }
}

/// A comment's text with characters YAML forbids (controls other than tab, noncharacters) shown
/// as U+FFFD: a comment may hold anything in the text form, but must survive in YAML too.
fn printable(text: &str) -> String {
    let forbidden = |c: char| (c.is_control() && c != '\t') || matches!(c, '\u{feff}' | '\u{fffe}' | '\u{ffff}');
    text.chars().map(|c| if forbidden(c) { '\u{fffd}' } else { c }).collect()
}

/// Comments to end a line with; several are joined (and read back as one).
fn inline_comments(comments: Vec<Comment>) -> String {
    comments.iter().map(|c| format!(" #{}", printable(&c.text))).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn keys_too_long_for_yaml_are_refused_with_a_reason() {
        let key = "x".repeat(1100);
        let source = format!("allow or(\"claim/{key}\" \"v\")");
        match super::format_source(&source, crate::Syntax::Text, crate::Syntax::Yaml) {
            Err(super::FormatError::Unrepresentable { reason }) => assert!(reason.contains("1024")),
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(super::format_source(&source, crate::Syntax::Text, crate::Syntax::Json).is_ok());
    }

    #[test]
    fn quotes_like_json() {
        assert_eq!(quote("a\"b\\c\nd\u{1}"), r#""a\"b\\c\nd\u0001""#);
        assert_eq!(quote("é😀"), "\"é😀\"");
        assert_eq!(quote("\u{2028}"), "\"\\u2028\"");
    }
}
