//! Comments and blank lines ("trivia"), so that the formatter can keep them.
//!
//! Trivia is not in the AST. Comments are found in the source ([`collect`]) and attached to the
//! nearest AST node by position ([`Trivia::new`]): an own-line comment leads the node that
//! follows it; a comment after code on the same line trails the innermost node there. The
//! printers ask for each node's comments; whatever no printer placed is printed at the end, so a
//! comment may move but is never lost.

use crate::ast::Policy;
use crate::span::Span;
use crate::syntax::Syntax;
use crate::value::{Value, ValueKind};
use saphyr_parser::{Event, Parser, ScalarStyle};
use std::cell::RefCell;
use std::collections::HashMap;

/// One `#` comment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Comment {
    /// From the `#` to the end of the line.
    pub span: Span,
    /// The comment's text after `#`, without trailing whitespace.
    pub text: String,
    /// Whether only whitespace precedes it on its line.
    pub own_line: bool,
}

/// Every comment in `source` (JSON has none).
pub fn collect(source: &str, syntax: Syntax) -> Vec<Comment> {
    match syntax {
        Syntax::Json => Vec::new(),
        // In the text form every `#` outside a string starts a comment (names cannot hold one).
        Syntax::Text => scan(source, false, |_| false, text_string_end),
        // In YAML a comment starts at a `#` after whitespace, outside scalars.
        Syntax::Yaml => {
            let regions = yaml_scalar_regions(source);
            scan(source, true, |pos| regions.iter().any(|r| r.hides(source, pos)), |_, _| None)
        }
    }
}

/// Scans for `#` (after whitespace when `needs_boundary`). `hidden` says whether a position is
/// inside a YAML scalar; `string_end` skips a text-form string literal starting at a position.
fn scan(
    source: &str,
    needs_boundary: bool,
    hidden: impl Fn(usize) -> bool,
    string_end: fn(&str, usize) -> Option<usize>,
) -> Vec<Comment> {
    let bytes = source.as_bytes();
    let mut comments = Vec::new();
    let mut pos = 0;
    while let Some(&byte) = bytes.get(pos) {
        if let Some(end) = string_end(source, pos) {
            pos = end;
            continue;
        }
        let at_boundary = !needs_boundary || pos == 0 || bytes.get(pos - 1).is_some_and(u8::is_ascii_whitespace);
        if byte == b'#' && at_boundary && !hidden(pos) {
            let end = source.get(pos..).and_then(|rest| rest.find('\n')).map_or(source.len(), |i| pos + i);
            let line_start = source.get(..pos).and_then(|before| before.rfind('\n')).map_or(0, |i| i + 1);
            let own_line = source.get(line_start..pos).is_some_and(|prefix| prefix.trim().is_empty());
            let text = source.get(pos + 1..end).unwrap_or_default().trim_end().to_owned();
            comments.push(Comment { span: Span::new(pos, end), text, own_line });
            pos = end;
            continue;
        }
        pos += 1;
    }
    comments
}

/// The end of the text-form string literal starting at `pos`, if one starts there.
fn text_string_end(source: &str, pos: usize) -> Option<usize> {
    let bytes = source.as_bytes();
    if bytes.get(pos) != Some(&b'"') {
        return None;
    }
    let mut i = pos + 1;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            b'\n' => return Some(i),
            _ => i += 1,
        }
    }
    Some(source.len())
}

/// Where a YAML scalar lies, so that a `#` inside it is not taken for a comment.
struct ScalarRegion {
    span: Span,
    /// For block scalars (`|`, `>`): the column of their content; a `#` further left is a comment.
    block_indent: Option<usize>,
}

impl ScalarRegion {
    fn hides(&self, source: &str, pos: usize) -> bool {
        if !self.span.contains(pos) {
            return false;
        }
        match self.block_indent {
            None => true,
            Some(indent) => column(source, pos) >= indent,
        }
    }
}

/// The column a node is laid out at: that of its YAML `- ` marker when it starts a list item.
fn anchor_column(source: &str, pos: usize) -> usize {
    let line_start = source.get(..pos).and_then(|before| before.rfind('\n')).map_or(0, |i| i + 1);
    let prefix = source.get(line_start..pos).unwrap_or_default();
    if prefix.contains('-') && prefix.chars().all(|c| c.is_whitespace() || c == '-') {
        prefix.len() - prefix.trim_start().len()
    } else {
        column(source, pos)
    }
}

fn column(source: &str, pos: usize) -> usize {
    let line_start = source.get(..pos).and_then(|before| before.rfind('\n')).map_or(0, |i| i + 1);
    source.get(line_start..pos).map_or(0, |prefix| prefix.chars().count())
}

fn yaml_scalar_regions(source: &str) -> Vec<ScalarRegion> {
    let offsets: Vec<usize> = source.char_indices().map(|(i, _)| i).chain([source.len()]).collect();
    let byte = |index: usize| offsets.get(index).copied().unwrap_or(source.len());
    let mut regions = Vec::new();
    let mut parser = Parser::new_from_str(source);
    while let Some(Ok((event, span))) = parser.next_event() {
        if let Event::Scalar(_, style, _, _) = event {
            let raw = Span::new(byte(span.start.index()), byte(span.end.index()));
            let span = crate::syntax::yaml::scalar_extent(source, raw, style);
            let block = matches!(style, ScalarStyle::Literal | ScalarStyle::Folded);
            regions.push(ScalarRegion { span, block_indent: block.then(|| column(source, span.start())) });
        }
    }
    regions
}

/// Where a comment goes relative to its node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Place {
    /// On its own lines before the node.
    Leading,
    /// At the end of the node's first line (`allow: # note`).
    Header,
    /// At the end of the node's last line.
    Trailing,
    /// On its own lines after the node.
    After,
}

/// Comments attached to AST nodes, identified by their spans, and the nodes that had a blank
/// line before them.
#[derive(Debug, Default)]
pub struct Trivia {
    /// Starts of the rules and criteria preceded by a blank line (above their comments).
    blank_before: std::collections::HashSet<usize>,
    by_node: RefCell<HashMap<(Span, Place), Vec<Comment>>>,
    /// Node spans that have comments anywhere inside them, for "print this in block form".
    spans_with_comments: Vec<Span>,
}

#[derive(Clone, Copy, Debug)]
struct Anchor {
    span: Span,
    depth: usize,
}

impl Trivia {
    /// Attaches `comments` (from [`collect`] on the same source) to the nodes of `policy`.
    pub fn new(source: &str, policy: &Policy, comments: Vec<Comment>) -> Trivia {
        let anchors = anchors(policy);
        let mut by_node: HashMap<(Span, Place), Vec<Comment>> = HashMap::new();
        let mut spans_with_comments = Vec::new();
        for comment in comments {
            let (span, place) = place(source, &anchors, &comment);
            // A node with a comment inside it, or attached to something inside it, cannot be
            // printed on one line.
            spans_with_comments.push(Span::empty_at(comment.span.start()));
            if let Some(node) = span {
                spans_with_comments.push(node);
            }
            // Unplaceable comments go after everything (keyed by the empty span).
            by_node.entry((span.unwrap_or_default(), place)).or_default().push(comment);
        }
        let blank_before = anchors
            .iter()
            .filter(|a| a.depth == 0 || a.depth == 2)
            .map(|a| a.span.start())
            .filter(|&start| blank_line_above(source, start))
            .collect();
        Trivia { blank_before, by_node: RefCell::new(by_node), spans_with_comments }
    }

    /// Whether the node starting at `span` had a blank line before it (and its comments).
    pub fn blank_before(&self, span: Span) -> bool {
        self.blank_before.contains(&span.start())
    }

    /// Takes the comments of `span` at `place`; each comment is handed out once.
    pub fn take(&self, span: Span, place: Place) -> Vec<Comment> {
        // Borrows never overlap (each call takes and releases its own), so this cannot fail.
        self.by_node.try_borrow_mut().ok().and_then(|mut by_node| by_node.remove(&(span, place))).unwrap_or_default()
    }

    /// Whether a comment lies inside `span` (so that it cannot be printed on one line).
    pub fn has_comments(&self, span: Span) -> bool {
        self.spans_with_comments.iter().any(|&s| {
            let within = span.start() <= s.start() && s.end() <= span.end();
            within && s != span && !(s.is_empty() && (s.start() == span.start() || s.start() == span.end()))
        })
    }

    /// Every comment not yet taken, in source order.
    pub fn remaining(&self) -> Vec<Comment> {
        let mut rest: Vec<Comment> = self
            .by_node
            .try_borrow_mut()
            .map(|mut by_node| by_node.drain().flat_map(|(_, c)| c).collect())
            .unwrap_or_default();
        rest.sort_by_key(|c| c.span.start());
        rest
    }

    pub fn is_empty(&self) -> bool {
        self.by_node.try_borrow().is_ok_and(|by_node| by_node.is_empty())
    }
}

/// Every node a comment can attach to, in source order: rules, blocks, criteria, and the
/// elements and entries inside criteria data.
fn anchors(policy: &Policy) -> Vec<Anchor> {
    let mut anchors = Vec::new();
    for rule in &policy.rules {
        anchors.push(Anchor { span: rule.span, depth: 0 });
        for block in &rule.blocks {
            anchors.push(Anchor { span: block.span, depth: 1 });
            for criterion in &block.criteria {
                anchors.push(Anchor { span: criterion.span, depth: 2 });
                value_anchors(&criterion.data, 3, &mut anchors);
            }
        }
    }
    anchors.sort_by_key(|a| (a.span.start(), a.depth));
    anchors
}

fn value_anchors(value: &Value, depth: usize, anchors: &mut Vec<Anchor>) {
    match &value.kind {
        ValueKind::Array(items) => {
            for item in items {
                anchors.push(Anchor { span: item.span, depth });
                value_anchors(item, depth + 1, anchors);
            }
        }
        ValueKind::Object(entries) => {
            for entry in entries {
                anchors.push(Anchor { span: entry.span(), depth });
                value_anchors(&entry.value, depth + 1, anchors);
            }
        }
        _ => {}
    }
}

/// Decides which node a comment belongs to, and where.
fn place(source: &str, anchors: &[Anchor], comment: &Comment) -> (Option<Span>, Place) {
    let start = comment.span.start();
    if !comment.own_line {
        // The node that ends last before the comment on its line, with nothing but separators
        // between them: `"a@example.com", # note` trails the string, not the list.
        let line_start = source.get(..start).and_then(|before| before.rfind('\n')).map_or(0, |i| i + 1);
        let ends_just_before = anchors
            .iter()
            .filter(|a| {
                a.span.end() >= line_start
                    && a.span.end() <= start
                    && source
                        .get(a.span.end()..start)
                        .is_some_and(|gap| gap.chars().all(|c| c.is_whitespace() || ",;])}".contains(c)))
            })
            .max_by_key(|a| (a.span.end(), a.depth));
        if let Some(anchor) = ends_just_before {
            return (Some(anchor.span), Place::Trailing);
        }
        // Otherwise the innermost node around the last code character before the comment.
        let code_end = source.get(..start).map_or(0, |before| before.trim_end().len());
        let last = code_end.saturating_sub(1);
        let line_end = start;
        let innermost = anchors
            .iter()
            .filter(|a| a.span.start() <= last && last < a.span.end().max(a.span.start() + 1))
            .max_by_key(|a| a.depth);
        let starts_on_this_line = |a: &Anchor| a.span.start() >= line_start;
        if let Some(anchor) = innermost.filter(|a| starts_on_this_line(a)) {
            let ends_here = anchor.span.end() <= line_end
                && !source.get(anchor.span.end()..line_end).unwrap_or_default().contains('\n');
            return (Some(anchor.span), if ends_here { Place::Trailing } else { Place::Header });
        }
        // After an indicator that opens a node on the next line (`- # note`): lead that node.
        if innermost.is_some() {
            let next = anchors
                .iter()
                .filter(|a| a.span.start() >= comment.span.end())
                .min_by_key(|a| (a.span.start(), a.depth));
            if let Some(next) = next {
                return (Some(next.span), Place::Leading);
            }
        }
        let previous = anchors.iter().filter(|a| a.span.end() <= start).max_by_key(|a| (a.span.end(), a.depth));
        if let Some(anchor) = previous {
            return (Some(anchor.span), Place::Trailing);
        }
    }
    let next =
        anchors.iter().filter(|a| a.span.start() >= comment.span.end()).min_by_key(|a| (a.span.start(), a.depth));
    let col = column(source, start);
    // A comment after the last item of a node, still inside it (before its `)` or `]`), stays
    // inside: after that last item, or in the node's first line when it is empty.
    let container = anchors.iter().filter(|a| a.span.start() < start && start < a.span.end()).max_by_key(|a| a.depth);
    if let Some(container) = container {
        let next_inside = next.is_some_and(|n| n.span.end() <= container.span.end());
        if !next_inside {
            return match previous_at_or_left_of(source, anchors, start, col) {
                Some(previous) => (Some(previous), Place::After),
                None => (Some(container.span), Place::Header),
            };
        }
    }
    // A comment right below a node and followed by a blank line closes that node.
    let previous_end = anchors.iter().map(|a| a.span.end()).filter(|&end| end <= start).max();
    if let (Some(next), Some(previous_end)) = (next, previous_end) {
        let blank_after = has_blank_line(source.get(comment.span.end()..next.span.start()).unwrap_or_default());
        let blank_before = has_blank_line(source.get(previous_end..start).unwrap_or_default());
        if blank_after
            && !blank_before
            && let Some(previous) = previous_at_or_left_of(source, anchors, start, col)
        {
            return (Some(previous), Place::After);
        }
    }
    match next {
        // A comment indented deeper than what follows belongs to what came before it
        // (typically a commented-out last item of a list).
        Some(next) if col > anchor_column(source, next.span.start()) => {
            match previous_at_or_left_of(source, anchors, start, col) {
                Some(previous) => (Some(previous), Place::After),
                None => (Some(next.span), Place::Leading),
            }
        }
        Some(next) => (Some(next.span), Place::Leading),
        None => match previous_at_or_left_of(source, anchors, start, col) {
            Some(previous) if col > 0 => (Some(previous), Place::After),
            _ => (None, Place::After),
        },
    }
}

/// Whether the line above the one holding `pos` (skipping comment lines) is blank.
fn blank_line_above(source: &str, pos: usize) -> bool {
    let line_start = source.get(..pos).and_then(|before| before.rfind('\n')).map_or(0, |i| i + 1);
    // Only a node that starts its line (after a YAML `- ` marker, perhaps) has a line above it.
    let prefix = source.get(line_start..pos).unwrap_or_default();
    if !prefix.chars().all(|c| c.is_whitespace() || c == '-') {
        return false;
    }
    let before = source.get(..line_start).unwrap_or_default();
    let mut lines = before.lines().rev();
    for line in &mut lines {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            return true;
        }
        if !trimmed.starts_with('#') {
            return false;
        }
    }
    false
}

fn has_blank_line(text: &str) -> bool {
    text.split('\n')
        .skip(1)
        .collect::<Vec<_>>()
        .split_last()
        .is_some_and(|(_, middle)| middle.iter().any(|l| l.trim().is_empty()))
}

/// The node ending before `pos` whose column is the greatest one not right of `col`; failing
/// that, the node that ends last before `pos`.
fn previous_at_or_left_of(source: &str, anchors: &[Anchor], pos: usize, col: usize) -> Option<Span> {
    // Only nodes in the innermost node around the comment: a comment inside a block belongs to
    // that block's criteria, not to the block before it.
    let container = anchors.iter().filter(|a| a.span.start() < pos && pos < a.span.end()).max_by_key(|a| a.depth);
    let inside = |a: &&Anchor| {
        container.is_none_or(|c| c.span.start() <= a.span.start() && a.span.end() <= c.span.end() && c.span != a.span)
    };
    let before = || anchors.iter().filter(|a| a.span.end() <= pos).filter(inside);
    before()
        .filter(|a| anchor_column(source, a.span.start()) <= col)
        .max_by_key(|a| (anchor_column(source, a.span.start()), a.span.end()))
        .or_else(|| before().max_by_key(|a| (a.span.end(), a.depth)))
        .map(|a| a.span)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(source: &str, syntax: Syntax) -> Vec<(String, bool)> {
        collect(source, syntax).into_iter().map(|c| (c.text, c.own_line)).collect()
    }

    #[test]
    fn finds_yaml_comments_but_not_hashes_in_scalars() {
        let source = "# top\nallow: # header\n  or:\n    - email: \"a # b\" # after\n    - http_path: /a#b\n    - claim/x: |\n        # not a comment\n# last\n";
        assert_eq!(
            texts(source, Syntax::Yaml),
            vec![
                (" top".to_owned(), true),
                (" header".to_owned(), false),
                (" after".to_owned(), false),
                (" last".to_owned(), true)
            ]
        );
    }

    #[test]
    fn finds_text_comments_outside_strings() {
        let source = "# one\nallow or(email is \"a#b\", # two\n  accept)\n";
        assert_eq!(texts(source, Syntax::Text), vec![(" one".to_owned(), true), (" two".to_owned(), false)]);
    }
}
