//! The compact text form (`grammar/ppl.pest`) → the AST.
//!
//! ```text
//! allow or(email in ["alice@example.com", "bob@example.com"], domain is "example.com")
//! deny and(http_path starts_with "/admin", claim/groups exclude "admins")
//! ```
//!
//! pest stops at the first syntax error; everything after parsing (unknown actions and operators,
//! duplicate blocks or keys, bad escapes) is collected like the YAML and JSON shape errors.

use super::MAX_DEPTH;
use super::json::{StringError, read_string};
use crate::ast::{self, Action, Block, Criterion, Operator, Policy};
use crate::error::{DuplicateKey, Error, TextSyntax, TooDeep};
use crate::lower::{unknown_action, unknown_operator};
use crate::span::Span;
use crate::value::{Entry, Number, Value, ValueKind};
use pest::Parser as _;
use pest::iterators::Pair;
use std::collections::HashMap;

#[derive(pest_derive::Parser)]
#[grammar = "../../../grammar/ppl.pest"]
struct TextParser;

/// Parses the text form, with every error found.
pub fn parse(source: &str) -> (Option<Policy>, Vec<Error>) {
    if let Some(span) = too_deep(source) {
        return (None, vec![TooDeep { limit: MAX_DEPTH, span: span.into() }.into()]);
    }
    let policy_pair = match TextParser::parse(Rule::policy, source) {
        Ok(mut pairs) => pairs.next(),
        Err(_) => {
            // Tracking every attempt makes pest several times slower, so it is switched on only to
            // read a policy again that already failed, for a precise message.
            pest::set_error_detail(true);
            let detailed = TextParser::parse(Rule::policy, source).err();
            pest::set_error_detail(false);
            let error = detailed.map(|error| syntax_error(source, &error));
            return (None, error.into_iter().collect());
        }
    };
    let Some(policy_pair) = policy_pair else {
        return (None, Vec::new());
    };
    let mut lowering = Lowering { source, errors: Vec::new() };
    let rules = policy_pair
        .into_inner()
        .filter(|pair| pair.as_rule() == Rule::rule)
        .filter_map(|pair| lowering.rule(pair))
        .collect();
    (Some(Policy { rules, span: Span::new(0, source.len()) }), lowering.errors)
}

/// The span of the first bracket nested deeper than [`MAX_DEPTH`], skipping strings and comments.
/// Checked before parsing because pest recurses once per level.
fn too_deep(source: &str) -> Option<Span> {
    let bytes = source.as_bytes();
    let (mut depth, mut i) = (0usize, 0usize);
    while let Some(&byte) = bytes.get(i) {
        match byte {
            b'"' => {
                i += 1;
                while let Some(&b) = bytes.get(i) {
                    match b {
                        b'\\' => i += 1,
                        b'"' => break,
                        _ => {}
                    }
                    i += 1;
                }
            }
            b'#' => {
                while bytes.get(i).is_some_and(|&b| b != b'\n') {
                    i += 1;
                }
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Some(Span::new(i, i + 1));
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

fn syntax_error(source: &str, error: &pest::error::Error<Rule>) -> Error {
    let mut offset = match error.location {
        pest::error::InputLocation::Pos(pos) => pos,
        pest::error::InputLocation::Span((start, _)) => start,
    };
    let mut expected: Vec<String> = Vec::new();
    if let Some(attempts) = error.parse_attempts() {
        // The furthest position any token was tried at is where the text went wrong; pest's own
        // location is the furthest *rule*, which can lie before it.
        offset = offset.max(attempts.max_position);
        for token in attempts.expected_tokens() {
            // Punctuation is named as itself; the starts of values are "a value"; whitespace,
            // comments and the insides of names and data are left out.
            let described = match token.to_string().as_str() {
                t @ ("(" | ")" | "," | ";" | "]" | "}" | ":") => format!("`{t}`"),
                "\"" | "[" | "{" | "true" | "false" | "null" | "-" | "0" => "a value".to_owned(),
                _ => continue,
            };
            push_unique(&mut expected, described);
        }
        // Rules are named only when no token says more (literal punctuation and the starts of
        // values are exact; rule names are guesses from the call stacks).
        if !expected.iter().any(|e| e.starts_with('`')) {
            for stack in attempts.call_stacks() {
                let rule = stack.deepest.get_rule().copied().or(stack.parent);
                if let Some(name) = rule.and_then(describe_rule) {
                    push_unique(&mut expected, name.to_owned());
                }
            }
        }
    }
    if expected.is_empty()
        && let pest::error::ErrorVariant::ParsingError { positives, .. } = &error.variant
    {
        for positive in positives {
            if let Some(name) = describe_rule(*positive) {
                push_unique(&mut expected, name.to_owned());
            }
        }
    }
    // Inside a number (`01` fails at the `1`): report the whole number.
    let number_start = source
        .get(..offset)
        .unwrap_or_default()
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || "+-.".contains(c)))
        .map_or(0, |i| i + 1);
    if number_start < offset && looks_numeric(token_at(source, number_start)) {
        offset = number_start;
    }
    let token = token_at(source, offset);
    let span = Span::new(
        offset,
        offset + token.len().max(source.get(offset..).and_then(|r| r.chars().next()).map_or(0, char::len_utf8)),
    );
    // A number JSON does not allow (`01`, `+1`, `.5`): say so rather than "expected a value".
    if looks_numeric(token) && crate::value::Number::from_json(token).is_none() {
        return TextSyntax {
            detail: format!("`{token}` is not a json number"),
            span: span.into(),
            help: Some("json numbers have no leading zeros, `+` sign, or bare `.`".to_owned()),
        }
        .into();
    }
    let found = describe_at(source, offset);
    let detail = if expected.is_empty() {
        format!("unexpected {found}")
    } else {
        format!("expected {}, found {found}", join_or(&expected))
    };
    let help = hint(source, offset, &expected);
    TextSyntax { detail, span: span.into(), help }.into()
}

/// The word or number at `offset` (empty at punctuation).
fn token_at(source: &str, offset: usize) -> &str {
    let rest = source.get(offset..).unwrap_or_default();
    let end = rest.find(|c: char| c.is_whitespace() || "(),[]{}\"#;:".contains(c)).unwrap_or(rest.len());
    rest.get(..end).unwrap_or_default()
}

fn looks_numeric(token: &str) -> bool {
    let digits = token.trim_start_matches(['-', '+', '.']);
    token != digits.trim_start_matches('.') || digits.starts_with(|c: char| c.is_ascii_digit())
}

fn push_unique(list: &mut Vec<String>, item: String) {
    if !list.contains(&item) {
        list.push(item);
    }
}

fn describe_rule(grammar_rule: Rule) -> Option<&'static str> {
    Some(match grammar_rule {
        Rule::rule | Rule::EOI => "a rule (`allow` or `deny`)",
        Rule::block => "an operator such as `or(`",
        Rule::criterion | Rule::criterion_name => "a criterion",
        Rule::data
        | Rule::pairs
        | Rule::pair
        | Rule::pair_key
        | Rule::string
        | Rule::number
        | Rule::array
        | Rule::object
        | Rule::true_
        | Rule::false_
        | Rule::null => "a value",
        Rule::entry => "an object entry",
        _ => return None,
    })
}

fn join_or(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

fn describe_at(source: &str, offset: usize) -> String {
    match source.get(offset..).and_then(|rest| rest.chars().next()) {
        None => "the end of the policy".to_owned(),
        Some('\n') => "the end of the line".to_owned(),
        Some(c) if c.is_control() => format!("the control character U+{:04X}", u32::from(c)),
        Some(c) => match token_at(source, offset) {
            "" => format!("`{c}`"),
            word => format!("`{word}`"),
        },
    }
}

/// A targeted hint for common mistakes, where one applies.
fn hint(source: &str, offset: usize, expected: &[String]) -> Option<String> {
    let rest = source.get(offset..).unwrap_or_default();
    // `or(accept authenticated_user)`: the second name was read as a key of the first's data.
    if (rest.starts_with(')') || rest.starts_with(',')) && expected.iter().any(|e| e == "a value") {
        let before = source.get(..offset).unwrap_or_default();
        let mut words = before.rsplit(|c: char| c.is_whitespace() || c == '(' || c == ',').filter(|w| !w.is_empty());
        if let (Some(key), Some(criterion)) = (words.next(), words.next()) {
            return Some(format!(
                "`{key}` is read as a key of `{criterion}`'s data; if it is a criterion, separate the two with `,`"
            ));
        }
    }
    let word: String = rest.chars().take_while(|c| c.is_alphanumeric() || "_@.-".contains(*c)).collect();
    if rest.starts_with('\'') {
        return Some("strings use double quotes: `\"like this\"`".to_owned());
    }
    if rest.starts_with(':') {
        return Some("the text form writes data without `:`; e.g. `email is \"a@example.com\"`".to_owned());
    }
    if !word.is_empty() && expected.iter().any(|e| e == "a value") {
        return Some(format!("quote strings: `\"{word}\"`"));
    }
    None
}

struct Lowering<'s> {
    source: &'s str,
    errors: Vec<Error>,
}

/// The span of a pair. Rules that end in an optional or repeated part (`rule`, `criterion`,
/// `data`, `pairs`) also hold the whitespace and comments pest skipped looking for more, so they
/// end where their last inner pair ends.
fn span_of(pair: &Pair<'_, Rule>) -> Span {
    Span::new(pair.as_span().start(), end_of(pair))
}

fn end_of(pair: &Pair<'_, Rule>) -> usize {
    match pair.as_rule() {
        Rule::rule | Rule::criterion | Rule::data | Rule::pairs | Rule::pair => {
            pair.clone().into_inner().last().map_or(pair.as_span().end(), |last| end_of(&last))
        }
        _ => pair.as_span().end(),
    }
}

impl Lowering<'_> {
    fn rule(&mut self, pair: Pair<'_, Rule>) -> Option<ast::Rule> {
        let span = span_of(&pair);
        let mut inner = pair.into_inner();
        let action_pair = inner.next()?;
        let action_span = span_of(&action_pair);
        let action = Action::from_name(action_pair.as_str());
        if action.is_none() {
            self.errors.push(unknown_action(action_pair.as_str(), action_span.into()));
        }
        let mut blocks: Vec<Block> = Vec::new();
        let mut seen: HashMap<Operator, Span> = HashMap::new();
        for block_pair in inner {
            let block_span = span_of(&block_pair);
            let mut parts = block_pair.into_inner();
            let Some(operator_pair) = parts.next() else {
                continue;
            };
            let operator_span = span_of(&operator_pair);
            let Some(operator) = Operator::from_name(operator_pair.as_str()) else {
                self.errors.push(unknown_operator(operator_pair.as_str(), operator_span.into()));
                continue;
            };
            if let Some(first) = seen.get(&operator) {
                self.errors.push(
                    DuplicateKey {
                        key: operator.as_str().to_owned(),
                        span: operator_span.into(),
                        first: (*first).into(),
                    }
                    .into(),
                );
                continue;
            }
            seen.insert(operator, operator_span);
            let criteria = parts.filter_map(|c| self.criterion(c)).collect();
            blocks.push(Block { operator, operator_span, criteria, span: block_span });
        }
        blocks.sort_by_key(|block| block.operator);
        Some(ast::Rule { action: action?, action_span, blocks, ignored_action_key: None, span })
    }

    fn criterion(&mut self, pair: Pair<'_, Rule>) -> Option<Criterion> {
        let span = span_of(&pair);
        let mut inner = pair.into_inner();
        let name_pair = inner.next()?;
        let key_span = span_of(&name_pair);
        let (name, subpath) = match name_pair.clone().into_inner().next() {
            Some(quoted) if quoted.as_rule() == Rule::string => Criterion::split_key(&self.string(&quoted)?),
            _ => {
                let mut parts = name_pair.into_inner();
                let name = parts.next().map(|p| p.as_str().to_owned()).unwrap_or_default();
                (name, parts.next().map(|p| p.as_str().to_owned()))
            }
        };
        let data = match inner.next() {
            Some(data) => self.data(data)?,
            // A criterion without data means `true`, as in `- accept: true`.
            None => Value::new(ValueKind::Bool(true), key_span),
        };
        Some(Criterion { name, subpath, key_span, data, span })
    }

    fn data(&mut self, pair: Pair<'_, Rule>) -> Option<Value> {
        let span = span_of(&pair);
        let inner = pair.into_inner().next()?;
        if inner.as_rule() != Rule::pairs {
            return self.value(inner);
        }
        let entries = inner.into_inner().filter_map(|p| {
            let mut parts = p.into_inner();
            let key = parts.next()?;
            let value = self.value(parts.next()?)?;
            Some(Entry { key: key.as_str().to_owned(), key_span: span_of(&key), value })
        });
        let entries = entries.collect::<Vec<_>>();
        Some(Value::new(ValueKind::Object(self.dedupe(entries)), span))
    }

    fn value(&mut self, pair: Pair<'_, Rule>) -> Option<Value> {
        let span = span_of(&pair);
        let kind = match pair.as_rule() {
            Rule::string => ValueKind::String(self.string(&pair)?),
            Rule::number => ValueKind::Number(Number::from_json(pair.as_str())?),
            Rule::true_ => ValueKind::Bool(true),
            Rule::false_ => ValueKind::Bool(false),
            Rule::null => ValueKind::Null,
            Rule::array => ValueKind::Array(pair.into_inner().filter_map(|item| self.value(item)).collect()),
            Rule::object => {
                let entries = pair
                    .into_inner()
                    .filter_map(|entry| {
                        let mut parts = entry.into_inner();
                        let key_pair = parts.next()?;
                        let key = match key_pair.as_rule() {
                            Rule::string => self.string(&key_pair)?,
                            _ => key_pair.as_str().to_owned(),
                        };
                        let value = self.value(parts.next()?)?;
                        Some(Entry { key, key_span: span_of(&key_pair), value })
                    })
                    .collect::<Vec<_>>();
                ValueKind::Object(self.dedupe(entries))
            }
            _ => return None,
        };
        Some(Value::new(kind, span))
    }

    /// Drops and reports duplicate keys, keeping the first of each.
    fn dedupe(&mut self, entries: Vec<Entry>) -> Vec<Entry> {
        let mut first_seen: HashMap<String, Span> = HashMap::new();
        let mut kept = Vec::with_capacity(entries.len());
        for entry in entries {
            if let Some(first) = first_seen.get(&entry.key) {
                self.errors
                    .push(DuplicateKey { key: entry.key, span: entry.key_span.into(), first: (*first).into() }.into());
            } else {
                first_seen.insert(entry.key.clone(), entry.key_span);
                kept.push(entry);
            }
        }
        kept
    }

    fn string(&mut self, pair: &Pair<'_, Rule>) -> Option<String> {
        match read_string(self.source, pair.as_span().start()) {
            Ok((text, _)) => Some(text),
            Err(StringError { detail, span, help }) => {
                self.errors.push(TextSyntax { detail, span: span.into(), help: help.map(str::to_owned) }.into());
                None
            }
        }
    }
}
