//! YAML → [`Value`], from saphyr-parser's event stream.
//!
//! Scalars resolve as Pomerium's `yaml.v3` resolves them into a generic value: `true`/`false`,
//! `null`/`~`/empty, integers (decimal, `0x`, `0o`, `0b`) and floats become JSON values; every
//! other plain scalar, and every quoted or block scalar, is a string (so `yes`, `on` and
//! timestamps stay strings). On top of what Pomerium does:
//! - duplicate keys are an error (yaml.v3 keeps the last one);
//! - a second document is an error (Pomerium drops it silently);
//! - nesting depth and alias expansion are bounded, so hostile input cannot exhaust memory.

use super::MAX_DEPTH;
use crate::error::{
    AliasLimit, DuplicateKey, EmptyPolicy, Error, InvalidNumber, MultipleDocuments, NonStringKey, TooDeep,
    UnsupportedTag, YamlSyntax,
};
use crate::span::Span;
use crate::value::{Entry, Kind, Number, Value, ValueKind, is_json_number};
use saphyr_parser::{Event, Parser, ScalarStyle, Span as YamlSpan, Tag};
use std::collections::HashMap;

/// Aliases may copy at most this many values in total (the "billion laughs" guard).
const MAX_ALIAS_VALUES: usize = 100_000;

/// How many aliases (`*name`) the first document uses; the formatter writes their values out.
pub fn alias_count(source: &str) -> usize {
    let mut parser = Parser::new_from_str(source);
    let mut count = 0;
    while let Some(Ok((event, _))) = parser.next_event() {
        match event {
            Event::Alias(_) => count += 1,
            Event::DocumentEnd => break,
            _ => {}
        }
    }
    count
}

/// Reads the first YAML document of `source` into a value tree, with every error found.
pub fn parse(source: &str) -> (Option<Value>, Vec<Error>) {
    let mut builder = Builder::new(source);
    let mut parser = Parser::new_from_str(source);
    while let Some(next) = parser.next_event() {
        match next {
            Ok((event, span)) => match builder.event(event, span) {
                Flow::Continue => {}
                Flow::Stop => break,
            },
            Err(error) => {
                let offset = builder.offsets.byte(error.marker().index());
                builder.errors.push(syntax_error(source, error.info(), offset));
                return (None, builder.errors);
            }
        }
    }
    if builder.root.is_none() && builder.errors.is_empty() {
        let end = source.len();
        builder.errors.push(EmptyPolicy { span: Span::empty_at(end).into() }.into());
    }
    (builder.root, builder.errors)
}

fn syntax_error(source: &str, info: &str, offset: usize) -> Error {
    if info.contains("recursion limit") {
        return TooDeep { limit: MAX_DEPTH, span: point(source, offset).into() }.into();
    }
    // A tab in the indentation: point at the tab, not at what follows it.
    let line_start = source.get(..offset).and_then(|before| before.rfind('\n')).map_or(0, |i| i + 1);
    let indentation = source.get(line_start..offset).unwrap_or_default();
    let tab = (indentation.trim().is_empty()).then(|| indentation.find('\t')).flatten();
    let offset = tab.map_or(offset, |i| line_start + i);
    let at_tab = tab.is_some() || source.get(offset..).is_some_and(|rest| rest.starts_with('\t'));
    let help = if at_tab {
        Some("yaml does not allow tabs for indentation; indent with spaces".to_owned())
    } else if info.contains("mapping values are not allowed") {
        Some("a `:` followed by a space starts a key; quote values that contain `: `".to_owned())
    } else {
        None
    };
    YamlSyntax { detail: info.to_owned(), span: point(source, offset).into(), help }.into()
}

/// A one-character span at `offset` (or an empty one at the end of the text).
fn point(source: &str, offset: usize) -> Span {
    let width = source.get(offset..).and_then(|rest| rest.chars().next()).map_or(0, char::len_utf8);
    Span::new(offset, offset + width)
}

enum Flow {
    Continue,
    Stop,
}

/// saphyr counts characters; spans count bytes.
struct Offsets {
    /// Byte offset of each character, plus the length at the end; empty when the text is ASCII.
    char_to_byte: Vec<usize>,
    len: usize,
}

impl Offsets {
    fn new(source: &str) -> Offsets {
        let char_to_byte = if source.is_ascii() {
            Vec::new()
        } else {
            source.char_indices().map(|(i, _)| i).chain([source.len()]).collect()
        };
        Offsets { char_to_byte, len: source.len() }
    }

    fn byte(&self, char_index: usize) -> usize {
        if self.char_to_byte.is_empty() {
            char_index.min(self.len)
        } else {
            self.char_to_byte.get(char_index).copied().unwrap_or(self.len)
        }
    }

    fn span(&self, span: &YamlSpan) -> Span {
        Span::new(self.byte(span.start.index()), self.byte(span.end.index()))
    }
}

enum Frame {
    Seq { start: usize, anchor: usize, items: Vec<Value> },
    Map(MapFrame),
}

struct MapFrame {
    start: usize,
    anchor: usize,
    entries: Vec<Entry>,
    /// Each key's span, by key: built only once the object is large (small ones are scanned).
    index: Option<HashMap<String, Span>>,
    key: Option<PendingKey>,
    merges: Vec<Value>,
}

enum PendingKey {
    Key(String, Span),
    /// The YAML merge key `<<`.
    Merge,
    /// A key that was reported as an error; its value is read and dropped.
    Skip,
}

struct Builder<'s> {
    source: &'s str,
    offsets: Offsets,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Value>,
    alias_values: usize,
    documents: usize,
    root: Option<Value>,
    errors: Vec<Error>,
}

impl<'s> Builder<'s> {
    fn new(source: &'s str) -> Builder<'s> {
        Builder {
            source,
            offsets: Offsets::new(source),
            stack: Vec::new(),
            anchors: HashMap::new(),
            alias_values: 0,
            documents: 0,
            root: None,
            errors: Vec::new(),
        }
    }

    fn event(&mut self, event: Event<'_>, yaml_span: YamlSpan) -> Flow {
        let span = self.offsets.span(&yaml_span);
        match event {
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    self.errors.push(MultipleDocuments { span: span.into() }.into());
                    return Flow::Stop;
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                let span = scalar_extent(self.source, span, style);
                let is_merge_key = style == ScalarStyle::Plain && text == "<<" && self.expects_key();
                let value = match self.scalar(&text, style, tag.as_deref(), span) {
                    Some(value) => value,
                    None => Value::new(ValueKind::Null, span),
                };
                if is_merge_key {
                    if let Some(Frame::Map(map)) = self.stack.last_mut() {
                        map.key = Some(PendingKey::Merge);
                    }
                    return Flow::Continue;
                }
                return self.complete(value, anchor);
            }
            Event::SequenceStart(anchor, tag) => {
                return self.start_collection(false, anchor, tag.as_deref(), span);
            }
            Event::MappingStart(anchor, tag) => {
                return self.start_collection(true, anchor, tag.as_deref(), span);
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(frame) = self.stack.pop() else {
                    return Flow::Continue;
                };
                // A flow collection ends at its bracket (saphyr's span runs on to the end of the
                // line); a block collection ends at its last child.
                let flow_end = (!span.is_empty()).then_some(span.start() + 1);
                let (value, anchor) = match frame {
                    Frame::Seq { start, anchor, items } => {
                        let end = flow_end.or(items.last().map(|v| v.span.end())).unwrap_or(start);
                        (Value::new(ValueKind::Array(items), Span::new(start, end)), anchor)
                    }
                    Frame::Map(map) => {
                        let anchor = map.anchor;
                        (self.finish_map(map, flow_end), anchor)
                    }
                };
                return self.complete(value, anchor);
            }
            Event::Alias(id) => {
                let Some(value) = self.anchors.get(&id).cloned() else {
                    self.errors
                        .push(YamlSyntax { detail: "unknown anchor".to_owned(), span: span.into(), help: None }.into());
                    return Flow::Stop;
                };
                let mut count = 0;
                value.walk(&mut |_| count += 1);
                self.alias_values += count;
                if self.alias_values > MAX_ALIAS_VALUES {
                    self.errors.push(AliasLimit { limit: MAX_ALIAS_VALUES, span: span.into() }.into());
                    return Flow::Stop;
                }
                let value = Value { span, ..value };
                return self.complete(value, 0);
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
        }
        Flow::Continue
    }

    fn start_collection(&mut self, is_map: bool, anchor: usize, tag: Option<&Tag>, span: Span) -> Flow {
        if let Some(tag) = tag {
            let expected = if is_map { "map" } else { "seq" };
            if !(tag.is_yaml_core_schema() && tag.suffix == expected) {
                let span = tag_span(self.source, span);
                self.errors.push(UnsupportedTag { tag: tag_text(tag), span: span.into() }.into());
            }
        }
        if self.stack.len() >= MAX_DEPTH {
            self.errors.push(TooDeep { limit: MAX_DEPTH, span: span.into() }.into());
            return Flow::Stop;
        }
        let start = span.start();
        self.stack.push(if is_map {
            Frame::Map(MapFrame { start, anchor, entries: Vec::new(), index: None, key: None, merges: Vec::new() })
        } else {
            Frame::Seq { start, anchor, items: Vec::new() }
        });
        Flow::Continue
    }

    fn expects_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map(MapFrame { key: None, .. })))
    }

    /// Resolves a scalar to a value, reporting tags and numbers a policy cannot hold.
    fn scalar(&mut self, text: &str, style: ScalarStyle, tag: Option<&Tag>, span: Span) -> Option<Value> {
        let string = || Value::new(ValueKind::String(text.to_owned()), span);
        if let Some(tag) = tag {
            if tag.handle == "!" && tag.suffix.is_empty() {
                return Some(string());
            }
            let core = tag.is_yaml_core_schema();
            let resolved = if style == ScalarStyle::Plain { resolve_plain(text) } else { Resolved::String };
            let matches = match tag.suffix.as_str() {
                "str" if core => return Some(string()),
                "null" if core => Some(matches!(resolved, Resolved::Null)),
                "bool" if core => Some(matches!(resolved, Resolved::Bool(_))),
                "int" | "float" if core => Some(matches!(resolved, Resolved::Number(_))),
                _ => None,
            };
            // An unknown tag is the problem itself; a known one that does not fit its value is a
            // problem of both.
            let error_span = match matches {
                Some(true) => None,
                Some(false) => Some(span),
                None => Some(tag_span(self.source, span)),
            };
            if let Some(error_span) = error_span {
                self.errors.push(UnsupportedTag { tag: tag_text(tag), span: error_span.into() }.into());
                return None;
            }
        }
        if style != ScalarStyle::Plain {
            return Some(string());
        }
        Some(match resolve_plain(text) {
            Resolved::Null => Value::new(ValueKind::Null, span),
            Resolved::Bool(b) => Value::new(ValueKind::Bool(b), span),
            Resolved::Number(n) => Value::new(ValueKind::Number(n), span),
            Resolved::NotJson => {
                self.errors.push(InvalidNumber { text: text.to_owned(), span: span.into() }.into());
                return None;
            }
            Resolved::String => string(),
        })
    }

    /// Places a finished value: into the parent collection, or as the document's root.
    fn complete(&mut self, value: Value, anchor: usize) -> Flow {
        if anchor != 0 {
            self.anchors.insert(anchor, value.clone());
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(value);
                }
            }
            Some(Frame::Seq { items, .. }) => items.push(value),
            Some(Frame::Map(map)) => match map.key.take() {
                None => match value.kind {
                    ValueKind::String(key) => map.key = Some(PendingKey::Key(key, value.span)),
                    _ => {
                        let found = value.kind();
                        self.errors.push(NonStringKey { found, span: value.span.into() }.into());
                        map.key = Some(PendingKey::Skip);
                    }
                },
                Some(PendingKey::Key(key, key_span)) => {
                    if let Some(first) = map.first_seen(&key) {
                        self.errors.push(DuplicateKey { key, span: key_span.into(), first: first.into() }.into());
                    } else {
                        map.push(Entry { key, key_span, value });
                    }
                }
                Some(PendingKey::Merge) => map.merges.push(value),
                Some(PendingKey::Skip) => {}
            },
        }
        Flow::Continue
    }

    /// Builds an object, applying merge keys: merged entries never override explicit ones.
    fn finish_map(&mut self, mut map: MapFrame, flow_end: Option<usize>) -> Value {
        let mut last_end = map.entries.last().map_or(map.start, |e| e.value.span.end());
        let merges = std::mem::take(&mut map.merges);
        for merge in merges {
            last_end = last_end.max(merge.span.end());
            let sources: Vec<Value> = match merge.kind {
                ValueKind::Object(_) => vec![merge],
                ValueKind::Array(items) => items,
                _ => {
                    self.errors.push(
                        YamlSyntax {
                            detail: format!(
                                "the merge key `<<` needs an object or a list of objects, found {}",
                                merge.kind()
                            ),
                            span: merge.span.into(),
                            help: None,
                        }
                        .into(),
                    );
                    continue;
                }
            };
            for source in sources {
                let ValueKind::Object(merged) = source.kind else {
                    let found: Kind = source.kind();
                    self.errors.push(
                        YamlSyntax {
                            detail: format!("the merge key `<<` needs objects, found {found}"),
                            span: source.span.into(),
                            help: None,
                        }
                        .into(),
                    );
                    continue;
                };
                for entry in merged {
                    if map.first_seen(&entry.key).is_none() {
                        map.push(entry);
                    }
                }
            }
        }
        let end = flow_end.unwrap_or(last_end);
        Value::new(ValueKind::Object(map.entries), Span::new(map.start, end))
    }
}

/// Objects up to this many keys find duplicates by scanning their entries: no map to allocate
/// for each of the many small objects a configuration holds.
const SCANNED_KEYS: usize = 16;

impl MapFrame {
    /// Where `key` was first written in this object, if it was.
    fn first_seen(&self, key: &str) -> Option<Span> {
        match &self.index {
            Some(index) => index.get(key).copied(),
            None => self.entries.iter().find(|entry| entry.key == key).map(|entry| entry.key_span),
        }
    }

    /// Adds an entry whose key is not there yet.
    fn push(&mut self, entry: Entry) {
        if let Some(index) = &mut self.index {
            index.insert(entry.key.clone(), entry.key_span);
        } else if self.entries.len() >= SCANNED_KEYS {
            let mut index: HashMap<String, Span> =
                self.entries.iter().map(|entry| (entry.key.clone(), entry.key_span)).collect();
            index.insert(entry.key.clone(), entry.key_span);
            self.index = Some(index);
        }
        self.entries.push(entry);
    }
}

/// A tag as written: `!!int`, `!secret`.
fn tag_text(tag: &Tag) -> String {
    if tag.is_yaml_core_schema() {
        format!("!!{}", tag.suffix)
    } else if tag.handle == "!" {
        format!("!{}", tag.suffix)
    } else {
        format!("{}{}", tag.handle, tag.suffix)
    }
}

/// The span of the tag at the start of a node's span, if the node starts with one.
fn tag_span(source: &str, span: Span) -> Span {
    let text = source.get(span.start()..).unwrap_or_default();
    if !text.starts_with('!') {
        return span;
    }
    let len = text.find(char::is_whitespace).unwrap_or(text.len());
    Span::new(span.start(), span.start() + len)
}

/// The exact extent of a scalar. saphyr's spans for quoted scalars run to the end of the line
/// (over a trailing comment), and block scalars' spans run to the next token.
pub(crate) fn scalar_extent(source: &str, span: Span, style: ScalarStyle) -> Span {
    let quote = match style {
        ScalarStyle::DoubleQuoted => b'"',
        ScalarStyle::SingleQuoted => b'\'',
        _ => return trim_end(source, span),
    };
    let bytes = source.as_bytes();
    let Some(open) = bytes.get(span.start()..span.end()).and_then(|raw| raw.iter().position(|&b| b == quote)) else {
        return trim_end(source, span);
    };
    let mut i = span.start() + open + 1;
    while let Some(&b) = bytes.get(i) {
        // `\x` in a double-quoted scalar and `''` in a single-quoted one are escapes.
        let escape =
            (quote == b'"' && b == b'\\') || (b == quote && quote == b'\'' && bytes.get(i + 1) == Some(&b'\''));
        if escape {
            i += 2;
        } else if b == quote {
            return Span::new(span.start(), i + 1);
        } else {
            i += 1;
        }
    }
    trim_end(source, span)
}

fn trim_end(source: &str, span: Span) -> Span {
    let text = source.get(span.start()..span.end()).unwrap_or_default();
    Span::new(span.start(), span.start() + text.trim_end().len())
}

enum Resolved {
    Null,
    Bool(bool),
    Number(Number),
    /// `.nan`, `.inf` and their spellings: YAML numbers that JSON cannot hold.
    NotJson,
    String,
}

/// Resolves a plain scalar the way yaml.v3 does when decoding into a generic value.
fn resolve_plain(text: &str) -> Resolved {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Resolved::Null,
        "true" | "True" | "TRUE" => return Resolved::Bool(true),
        "false" | "False" | "FALSE" => return Resolved::Bool(false),
        ".nan" | ".NaN" | ".NAN" | ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf"
        | "-.INF" => return Resolved::NotJson,
        _ => {}
    }
    match yaml_number(text) {
        Some(number) => Resolved::Number(number),
        None => Resolved::String,
    }
}

/// The JSON spelling of a YAML integer or float, or `None` when `text` is not a number.
fn yaml_number(text: &str) -> Option<Number> {
    if let Some(number) = Number::from_json(text) {
        return Some(number);
    }
    // Every number starts with a digit, a sign or a dot: most scalars (names, emails) stop here.
    if !text.starts_with(|c: char| c.is_ascii_digit() || "+-.".contains(c)) {
        return None;
    }
    let (negative, unsigned) = match text.as_bytes().first()? {
        b'-' => (true, text.get(1..)?),
        b'+' => (false, text.get(1..)?),
        _ => (false, text),
    };
    let sign = if negative { "-" } else { "" };
    let digits: String = unsigned.chars().filter(|&c| c != '_').collect();
    if digits.is_empty() || digits.starts_with('_') {
        return None;
    }
    for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(body) = digits.strip_prefix(prefix) {
            let magnitude = u128::from_str_radix(body, radix).ok()?;
            return Number::from_json(&format!("{sign}{magnitude}"));
        }
    }
    // Decimal integers and floats: normalise to JSON (no `+`, no leading zeros, digits around `.`).
    let (mantissa, exponent) = match digits.find(['e', 'E']) {
        Some(i) => (digits.get(..i)?, digits.get(i..)?),
        None => (digits.as_str(), ""),
    };
    let (int_part, frac_part) = match mantissa.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (mantissa, None),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(int_part)
        || !frac_part.is_none_or(all_digits)
        || (int_part.is_empty() && frac_part.is_none_or(str::is_empty))
    {
        return None;
    }
    let int_part = int_part.trim_start_matches('0');
    let int_part = if int_part.is_empty() { "0" } else { int_part };
    let frac = match frac_part {
        Some("") => ".0".to_owned(),
        Some(frac) => format!(".{frac}"),
        None => String::new(),
    };
    let candidate = format!("{sign}{int_part}{frac}{exponent}");
    is_json_number(&candidate).then(|| Number::from_json(&candidate)).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(text: &str) -> Option<String> {
        yaml_number(text).map(|n| n.as_str().to_owned())
    }

    #[test]
    fn yaml_numbers_become_json_numbers() {
        assert_eq!(number("42").as_deref(), Some("42"));
        assert_eq!(number("+42").as_deref(), Some("42"));
        assert_eq!(number("007").as_deref(), Some("7"));
        assert_eq!(number("0x1F").as_deref(), Some("31"));
        assert_eq!(number("-0o17").as_deref(), Some("-15"));
        assert_eq!(number("1_000").as_deref(), Some("1000"));
        assert_eq!(number(".5").as_deref(), Some("0.5"));
        assert_eq!(number("1.").as_deref(), Some("1.0"));
        assert_eq!(number("1.e3").as_deref(), Some("1.0e3"));
        assert_eq!(number("1.10").as_deref(), Some("1.10"));
        for not_a_number in ["", "+", ".", "1.2.3", "10.0.0.0/8", "2:20:00", "1e", "0x", "e5", "-"] {
            assert_eq!(number(not_a_number), None, "{not_a_number}");
        }
    }

    #[test]
    fn plain_scalars_resolve_like_yaml_v3() {
        let kind = |text: &str| match parse(text).0.map(|v| v.kind) {
            Some(ValueKind::String(_)) => "string",
            Some(ValueKind::Bool(_)) => "bool",
            Some(ValueKind::Null) => "null",
            Some(ValueKind::Number(_)) => "number",
            _ => "other",
        };
        assert_eq!(kind("yes"), "string");
        assert_eq!(kind("on"), "string");
        assert_eq!(kind("True"), "bool");
        assert_eq!(kind("~"), "null");
        assert_eq!(kind("2020-01-02T16:20:00"), "string");
        assert_eq!(kind("'1'"), "string");
        assert_eq!(kind("!!str 1"), "string");
        assert_eq!(kind("1"), "number");
    }

    #[test]
    fn spans_are_bytes_and_trimmed() {
        let source = "é: |\n  text\n\nb: [1, 2]\n";
        let (value, errors) = parse(source);
        assert!(errors.is_empty(), "{errors:?}");
        let value = value.unwrap();
        let entries = value.as_object().unwrap();
        assert_eq!(entries[0].key_span, Span::new(0, 2));
        let text = &entries[0].value;
        assert_eq!(&source[text.span.start()..text.span.end()], "text");
        let list = &entries[1].value;
        assert_eq!(&source[list.span.start()..list.span.end()], "[1, 2]");
        assert_eq!(&source[value.span.start()..value.span.end()], source.trim_end());
    }

    #[test]
    fn merge_keys_do_not_override_explicit_keys() {
        let (value, errors) = parse("base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  y: 3\n");
        assert!(errors.is_empty(), "{errors:?}");
        let value = value.unwrap();
        let m = &value.get("m").unwrap().value;
        let y = &m.get("y").unwrap().value;
        assert_eq!(y.kind, ValueKind::Number(Number::from_i64(3)));
        assert!(m.get("x").is_some());
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut source = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            let p = i - 1;
            source.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let (_, errors) = parse(&source);
        assert!(matches!(errors.as_slice(), [Error::AliasLimit(_)]), "{errors:?}");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let source = "[".repeat(10_000);
        let (_, errors) = parse(&source);
        assert!(matches!(errors.as_slice(), [Error::TooDeep(_)]), "{errors:?}");
    }
}
