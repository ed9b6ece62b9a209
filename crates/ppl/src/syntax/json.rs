//! JSON → [`Value`]: a small recursive-descent reader that keeps spans.
//!
//! Exactly one JSON value (RFC 8259), as Pomerium's `ParseJSON` reads it, with two deliberate
//! differences: duplicate keys are an error (Pomerium keeps the last one), and a byte-order mark at
//! the start is skipped. Syntax errors stop the reader; duplicate keys are collected.

use super::MAX_DEPTH;
use crate::error::{DuplicateKey, EmptyPolicy, Error, JsonSyntax, TooDeep};
use crate::span::Span;
use crate::value::{Entry, Number, Value, ValueKind};
use std::collections::HashMap;

/// Reads one JSON value from `source`, with every error found.
pub fn parse(source: &str) -> (Option<Value>, Vec<Error>) {
    let mut reader = Reader { source, bytes: source.as_bytes(), pos: 0, depth: 0, errors: Vec::new() };
    if reader.bytes.starts_with("\u{feff}".as_bytes()) {
        reader.pos = 3;
    }
    if let Err(error) = reader.skip_whitespace() {
        return (None, vec![error]);
    }
    if reader.pos >= reader.bytes.len() {
        return (None, vec![EmptyPolicy { span: Span::empty_at(source.len()).into() }.into()]);
    }
    let value = match reader.value() {
        Ok(value) => value,
        Err(error) => {
            reader.errors.push(error);
            return (None, reader.errors);
        }
    };
    let trailing = reader.skip_whitespace().and_then(|()| {
        if reader.pos < reader.bytes.len() {
            Err(reader.error(
                "unexpected text after the policy",
                Some("a policy is one json value; wrap several rules in a list: `[{...}, {...}]`"),
            ))
        } else {
            Ok(())
        }
    });
    if let Err(error) = trailing {
        reader.errors.push(error);
    }
    (Some(value), reader.errors)
}

struct Reader<'s> {
    source: &'s str,
    bytes: &'s [u8],
    pos: usize,
    depth: usize,
    errors: Vec<Error>,
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// A syntax error at the current position, naming what was found there.
    fn error(&self, expected: &str, help: Option<&str>) -> Error {
        let found = describe_at(self.source, self.pos);
        let end = self.pos + self.source.get(self.pos..).and_then(|r| r.chars().next()).map_or(0, char::len_utf8);
        JsonSyntax {
            detail: format!("{expected}, found {found}"),
            span: Span::new(self.pos, end).into(),
            help: help.map(str::to_owned),
        }
        .into()
    }

    fn skip_whitespace(&mut self) -> Result<(), Error> {
        while let Some(byte) = self.peek() {
            match byte {
                b' ' | b'\t' | b'\n' | b'\r' => self.pos += 1,
                b'/' if matches!(self.bytes.get(self.pos + 1), Some(b'/' | b'*')) => {
                    return Err(self.error(
                        "expected a json value",
                        Some("json has no comments; write the policy in yaml or the text form to keep comments"),
                    ));
                }
                _ => break,
            }
        }
        Ok(())
    }

    fn value(&mut self) -> Result<Value, Error> {
        let start = self.pos;
        match self.peek() {
            Some(b'{') => self.nested(Reader::object),
            Some(b'[') => self.nested(Reader::array),
            Some(b'"') => {
                let text = self.string()?;
                Ok(Value::new(ValueKind::String(text), Span::new(start, self.pos)))
            }
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal("true", ValueKind::Bool(true)),
            Some(b'f') => self.literal("false", ValueKind::Bool(false)),
            Some(b'n') => self.literal("null", ValueKind::Null),
            Some(b'\'') => Err(self.error("expected a json value", Some("json strings use double quotes"))),
            _ => Err(self.error("expected a json value", None)),
        }
    }

    fn nested(&mut self, read: fn(&mut Self) -> Result<Value, Error>) -> Result<Value, Error> {
        if self.depth >= MAX_DEPTH {
            return Err(TooDeep { limit: MAX_DEPTH, span: Span::new(self.pos, self.pos + 1).into() }.into());
        }
        self.depth += 1;
        let value = read(self);
        self.depth -= 1;
        value
    }

    fn literal(&mut self, word: &str, kind: ValueKind) -> Result<Value, Error> {
        let start = self.pos;
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        let ends_word = !rest.get(word.len()).is_some_and(u8::is_ascii_alphanumeric);
        if rest.starts_with(word.as_bytes()) && ends_word {
            self.pos += word.len();
            Ok(Value::new(kind, Span::new(start, self.pos)))
        } else {
            Err(self.error("expected a json value", Some("strings must be quoted: `\"like this\"`")))
        }
    }

    fn number(&mut self) -> Result<Value, Error> {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'+' | b'.')) {
            self.pos += 1;
        }
        let text = self.source.get(start..self.pos).unwrap_or_default();
        match Number::from_json(text) {
            Some(number) => Ok(Value::new(ValueKind::Number(number), Span::new(start, self.pos))),
            None => Err(JsonSyntax {
                detail: format!("`{text}` is not a json number"),
                span: Span::new(start, self.pos).into(),
                help: Some("json numbers have no leading zeros, `+` sign, or bare `.`".to_owned()),
            }
            .into()),
        }
    }

    fn string(&mut self) -> Result<String, Error> {
        match read_string(self.source, self.pos) {
            Ok((text, end)) => {
                self.pos = end;
                Ok(text)
            }
            Err(StringError { detail, span, help }) => {
                Err(JsonSyntax { detail, span: span.into(), help: help.map(str::to_owned) }.into())
            }
        }
    }

    fn array(&mut self) -> Result<Value, Error> {
        let start = self.pos;
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_whitespace()?;
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::new(ValueKind::Array(items), Span::new(start, self.pos)));
        }
        loop {
            self.skip_whitespace()?;
            items.push(self.value()?);
            self.skip_whitespace()?;
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_whitespace()?;
                    if self.peek() == Some(b']') {
                        return Err(self.error("expected a value after `,`", Some("json allows no trailing comma")));
                    }
                }
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::new(ValueKind::Array(items), Span::new(start, self.pos)));
                }
                _ => return Err(self.error("expected `,` or `]` in a list", None)),
            }
        }
    }

    fn object(&mut self) -> Result<Value, Error> {
        let start = self.pos;
        self.pos += 1;
        let mut entries: Vec<Entry> = Vec::new();
        let mut first_seen: HashMap<String, Span> = HashMap::new();
        self.skip_whitespace()?;
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::new(ValueKind::Object(entries), Span::new(start, self.pos)));
        }
        loop {
            self.skip_whitespace()?;
            if self.peek() != Some(b'"') {
                let help = self
                    .peek()
                    .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                    .then_some("json keys must be quoted: `\"allow\"`");
                return Err(self.error("expected a quoted key", help));
            }
            let key_start = self.pos;
            let key = self.string()?;
            let key_span = Span::new(key_start, self.pos);
            self.skip_whitespace()?;
            if self.peek() != Some(b':') {
                return Err(self.error("expected `:` after the key", None));
            }
            self.pos += 1;
            self.skip_whitespace()?;
            let value = self.value()?;
            if let Some(first) = first_seen.get(&key) {
                self.errors.push(DuplicateKey { key, span: key_span.into(), first: (*first).into() }.into());
            } else {
                first_seen.insert(key.clone(), key_span);
                entries.push(Entry { key, key_span, value });
            }
            self.skip_whitespace()?;
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_whitespace()?;
                    if self.peek() == Some(b'}') {
                        return Err(self.error("expected a key after `,`", Some("json allows no trailing comma")));
                    }
                }
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::new(ValueKind::Object(entries), Span::new(start, self.pos)));
                }
                _ => return Err(self.error("expected `,` or `}` in an object", None)),
            }
        }
    }
}

/// Describes what is at `pos` for an error message.
fn describe_at(source: &str, pos: usize) -> String {
    match source.get(pos..).and_then(|rest| rest.chars().next()) {
        None => "the end of the text".to_owned(),
        Some('\n') => "the end of the line".to_owned(),
        Some(c) if c.is_control() => format!("the control character U+{:04X}", u32::from(c)),
        Some('`') => "a backtick".to_owned(),
        Some(c) => format!("`{c}`"),
    }
}

/// An error inside a string literal.
pub(crate) struct StringError {
    pub detail: String,
    pub span: Span,
    pub help: Option<&'static str>,
}

/// Reads the JSON string literal whose opening quote is at `start`; returns the text and the
/// offset just past the closing quote. The text form of PPL uses the same literal.
pub(crate) fn read_string(source: &str, start: usize) -> Result<(String, usize), StringError> {
    let bytes = source.as_bytes();
    let mut out = String::new();
    let mut pos = start + 1;
    let fail = |detail: String, span: Span, help| Err(StringError { detail, span, help });
    loop {
        // Copy the run of plain characters up to the next quote, backslash or control byte.
        let run_end = bytes
            .get(pos..)
            .and_then(|rest| rest.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20))
            .map(|i| pos + i);
        let Some(run_end) = run_end else {
            return fail("unterminated string".to_owned(), Span::new(start, source.len()), Some("close it with `\"`"));
        };
        out.push_str(source.get(pos..run_end).unwrap_or_default());
        pos = run_end;
        match bytes.get(pos) {
            Some(b'"') => return Ok((out, pos + 1)),
            Some(b'\\') => {
                let escape_start = pos;
                let Some(&kind) = bytes.get(pos + 1) else {
                    return fail("unterminated string".to_owned(), Span::new(start, source.len()), None);
                };
                pos += 2;
                match kind {
                    b'"' => out.push('"'),
                    b'\\' => out.push('\\'),
                    b'/' => out.push('/'),
                    b'b' => out.push('\u{8}'),
                    b'f' => out.push('\u{c}'),
                    b'n' => out.push('\n'),
                    b'r' => out.push('\r'),
                    b't' => out.push('\t'),
                    b'u' => {
                        let Some(unit) = hex4(source, pos) else {
                            return fail(
                                "`\\u` must be followed by four hex digits".to_owned(),
                                Span::new(escape_start, (pos + 4).min(source.len())),
                                None,
                            );
                        };
                        pos += 4;
                        let c = if (0xD800..0xDC00).contains(&unit) {
                            // A high surrogate pairs with a following `\uDC00`–`\uDFFF`.
                            let low = (bytes.get(pos) == Some(&b'\\') && bytes.get(pos + 1) == Some(&b'u'))
                                .then(|| hex4(source, pos + 2))
                                .flatten()
                                .filter(|low| (0xDC00..0xE000).contains(low));
                            match low {
                                Some(low) => {
                                    pos += 6;
                                    char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))
                                }
                                None => None,
                            }
                        } else {
                            char::from_u32(unit)
                        };
                        // Like Go, an unpaired surrogate becomes U+FFFD rather than an error.
                        out.push(c.unwrap_or('\u{fffd}'));
                    }
                    _ => {
                        let width =
                            source.get(escape_start + 1..).and_then(|r| r.chars().next()).map_or(1, char::len_utf8);
                        let escape = source.get(escape_start..escape_start + 1 + width).unwrap_or("\\");
                        return fail(
                            format!("invalid escape `{escape}` in a string"),
                            Span::new(escape_start, escape_start + 1 + width),
                            Some("the escapes are \\\" \\\\ \\/ \\b \\f \\n \\r \\t and \\uXXXX"),
                        );
                    }
                }
            }
            Some(b'\n') => {
                return fail(
                    "unterminated string: a string cannot span lines".to_owned(),
                    Span::new(start, pos),
                    Some("close it with `\"`, or write a line break as `\\n`"),
                );
            }
            Some(_) => {
                let detail = format!("{} inside a string", describe_at(source, pos));
                return fail(
                    detail,
                    Span::new(pos, pos + 1),
                    Some("write control characters as escapes such as `\\n`"),
                );
            }
            None => {
                return fail(
                    "unterminated string".to_owned(),
                    Span::new(start, source.len()),
                    Some("close it with `\"`"),
                );
            }
        }
    }
}

fn hex4(source: &str, pos: usize) -> Option<u32> {
    let digits = source.get(pos..pos + 4)?;
    if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(digits, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(source: &str) -> String {
        let (_, errors) = parse(source);
        errors.iter().map(|e| format!("{e} @{:?}", e.span())).collect::<Vec<_>>().join("; ")
    }

    #[test]
    fn reads_nested_values_with_spans() {
        let source = r#" {"allow": {"or": [{"email": {"is": "a\u00e9\ud83d\ude00"}}, 1.5e3, null]}} "#;
        let (value, errors) = parse(source);
        assert!(errors.is_empty());
        let value = value.unwrap();
        assert_eq!(&source[value.span.start()..value.span.end()], source.trim());
        let or = &value.get("allow").unwrap().value.get("or").unwrap().value;
        let items = or.as_array().unwrap();
        let email = &items[0].get("email").unwrap().value.get("is").unwrap().value;
        assert_eq!(email.as_str(), Some("aé😀"));
        assert_eq!(&source[items[1].span.start()..items[1].span.end()], "1.5e3");
    }

    #[test]
    fn reports_errors_at_their_position() {
        assert_eq!(
            error_of("{\"a\": 1,}"),
            "invalid json: expected a key after `,`, found `}` @Span { start: 8, end: 9 }"
        );
        assert_eq!(
            error_of("{} {}"),
            "invalid json: unexpected text after the policy, found `{` @Span { start: 3, end: 4 }"
        );
        assert_eq!(error_of("[01]"), "invalid json: `01` is not a json number @Span { start: 1, end: 3 }");
        assert_eq!(error_of("\"a\\qb\""), "invalid json: invalid escape `\\q` in a string @Span { start: 2, end: 4 }");
        assert_eq!(error_of("  "), "the policy is empty @Span { start: 2, end: 2 }");
        assert!(error_of("{\"a\": 1, \"a\": 2}").starts_with("duplicate key `a`"));
        assert!(error_of(&"[".repeat(500)).starts_with("the policy nests deeper than"));
        assert_eq!(error_of("\"\\ud800\""), "");
    }
}
