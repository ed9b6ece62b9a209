//! Property tests of the parsers and the formatter:
//! - a random AST printed as YAML, JSON or text parses back to the same AST (soundness);
//! - formatting is idempotent, also with comments, and keeps every comment;
//! - no input, however hostile, makes a parser, the checker or the formatter panic.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "tests fail by panicking, on fixtures they know"
)]

use ppl::ast::{Action, Block, Criterion, Operator, Policy, Rule};
use ppl::comments::Trivia;
use ppl::format::{FormatError, format, format_source};
use ppl::value::{Entry, Number, Value, ValueKind};
use ppl::{Span, Syntax};
use proptest::prelude::*;

const SYNTAXES: [Syntax; 3] = [Syntax::Yaml, Syntax::Json, Syntax::Text];

fn value(kind: ValueKind) -> Value {
    Value::new(kind, Span::default())
}

/// Strings that stress quoting: YAML indicators, look-alike numbers and booleans, escapes,
/// unicode, and arbitrary text.
fn tricky_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        prop::sample::select(vec![
            "true",
            "no",
            "null",
            "~",
            "1",
            "-0",
            "1e3",
            "0x1f",
            "15:04",
            "2026-01-31",
            "@example.com",
            "*",
            "- a",
            "a: b",
            "a #b",
            "#",
            "|",
            ">",
            "!",
            "&a",
            "?",
            "[x]",
            "{x}",
            "'",
            "\"",
            "\\",
            "%",
            "<<",
            "=",
            " lead",
            "trail ",
            "two\nlines",
            "tab\there",
            "é😀",
            "\u{2028}",
            "\u{feff}",
            "\u{85}",
            "\u{fffe}",
            "alice@example.com",
            "10.0.0.0/8",
            "fe80::1",
            "mon-fri",
            "claim/groups",
            "a,b",
            "https://example.com/groups",
        ])
        .prop_map(str::to_owned),
        "[a-z_]{1,8}",
        any::<String>().prop_map(|s| s.chars().take(12).collect()),
    ]
}

fn number() -> impl Strategy<Value = Number> {
    prop_oneof![
        any::<i64>().prop_map(Number::from_i64),
        prop::sample::select(vec!["0", "-0", "1.5", "1e3", "-2.50e-3", "1E+5", "123456789012345678901234567890"])
            .prop_map(|text| Number::from_json(text).unwrap()),
    ]
}

fn data() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(value(ValueKind::Null)),
        any::<bool>().prop_map(|b| value(ValueKind::Bool(b))),
        number().prop_map(|n| value(ValueKind::Number(n))),
        tricky_string().prop_map(|s| value(ValueKind::String(s))),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|items| value(ValueKind::Array(items))),
            prop::collection::vec((tricky_string(), inner), 0..4).prop_map(|entries| {
                let mut seen = std::collections::HashSet::new();
                let entries = entries
                    .into_iter()
                    .filter(|(key, _)| seen.insert(key.clone()))
                    .map(|(key, value)| Entry { key, key_span: Span::default(), value })
                    .collect();
                value(ValueKind::Object(entries))
            }),
        ]
    })
}

fn criterion() -> impl Strategy<Value = Criterion> {
    let name = prop_oneof![
        prop::sample::select(ppl::criteria::names()).prop_map(str::to_owned),
        tricky_string().prop_map(|s| s.replace('/', "")),
    ];
    let subpath = prop::option::of(tricky_string());
    (name, subpath, data()).prop_map(|(name, subpath, data)| Criterion {
        name,
        subpath,
        key_span: Span::default(),
        data,
        span: Span::default(),
    })
}

fn rule() -> impl Strategy<Value = Rule> {
    let block = (prop::sample::select(Operator::ALL.to_vec()), prop::collection::vec(criterion(), 0..4)).prop_map(
        |(operator, criteria)| Block { operator, operator_span: Span::default(), criteria, span: Span::default() },
    );
    (prop::sample::select(Action::ALL.to_vec()), prop::collection::vec(block, 0..4)).prop_map(|(action, mut blocks)| {
        blocks.sort_by_key(|b| b.operator);
        blocks.dedup_by_key(|b| b.operator);
        Rule { action, action_span: Span::default(), blocks, ignored_action_key: None, span: Span::default() }
    })
}

fn policy() -> impl Strategy<Value = Policy> {
    prop::collection::vec(rule(), 0..4).prop_map(|rules| Policy { rules, span: Span::default() })
}

fn print(policy: &Policy, syntax: Syntax) -> String {
    format(policy, &Trivia::default(), syntax)
}

/// Adds blank lines, comments after some lines and comments before others.
fn with_comments(text: &str, seed: &[bool]) -> String {
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        let flip = seed.get(i % seed.len().max(1)).copied().unwrap_or(false);
        if flip && i % 5 == 2 {
            out.push('\n');
        }
        if flip && i % 3 == 0 {
            let indent = line.len() - line.trim_start().len();
            out.push_str(&format!("{}# note {i}\n", " ".repeat(indent)));
        }
        out.push_str(line);
        if flip && i % 3 == 1 && !line.trim_end().ends_with(['|', '>']) {
            out.push_str(&format!(" # tail {i}"));
        }
        out.push('\n');
    }
    out
}

/// 400 cases by default; `PROPTEST_CASES=20000` for a longer search.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(400)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn printed_policies_parse_back_to_the_same_ast(policy in policy()) {
        for syntax in SYNTAXES {
            let text = print(&policy, syntax);
            let parsed = ppl::parse(&text, syntax);
            prop_assert!(parsed.errors.is_empty(), "{:?} output does not parse: {:?}\n{}", syntax, parsed.errors, text);
            let back = parsed.policy.expect("parsed").without_spans();
            prop_assert_eq!(&back, &policy, "{:?} output:\n{}", syntax, text);
        }
    }

    #[test]
    fn formatting_is_idempotent_and_converts_losslessly(policy in policy()) {
        for from in SYNTAXES {
            let text = print(&policy, from);
            for to in SYNTAXES {
                let once = format_source(&text, from, to);
                let once = match once {
                    Ok(formatted) => formatted.text,
                    Err(FormatError::Unsound { output }) => panic!("unsound {from:?} → {to:?}:\n{text}\n→\n{output}"),
                    Err(FormatError::Parse(errors)) => panic!("{from:?} does not parse: {errors:?}\n{text}"),
                    Err(FormatError::Unrepresentable { reason }) => panic!("{to:?} cannot hold it: {reason}"),
                };
                let twice = format_source(&once, to, to).map(|f| f.text);
                prop_assert_eq!(twice.as_ref().ok(), Some(&once), "{:?} → {:?} is not idempotent", from, to);
            }
        }
    }

    #[test]
    fn formatting_keeps_comments_and_is_idempotent_with_them(policy in policy(), seed in prop::collection::vec(any::<bool>(), 1..8)) {
        for syntax in [Syntax::Yaml, Syntax::Text] {
            let text = with_comments(&print(&policy, syntax), &seed);
            let once = match format_source(&text, syntax, syntax) {
                Ok(formatted) => formatted.text,
                Err(error) => panic!("{syntax:?} with comments fails to format: {error:?}\n{text}"),
            };
            // Every comment is kept, and they keep their order: none is moved past another.
            let output_comments: Vec<String> = ppl::comments::collect(&once, syntax).into_iter().map(|c| c.text).collect();
            let joined = output_comments.join("\u{0}");
            let mut from = 0;
            for comment in ppl::comments::collect(&text, syntax) {
                let found = joined.get(from..).and_then(|rest| rest.find(&comment.text));
                prop_assert!(found.is_some(), "comment `{}` lost or moved:\n{}\n→\n{}", comment.text, text, once);
                from += found.unwrap_or_default() + comment.text.len();
            }
            let twice = format_source(&once, syntax, syntax).map(|f| f.text);
            prop_assert_eq!(twice.as_ref().ok(), Some(&once), "{:?} with comments is not idempotent:\n{}", syntax, text);
        }
    }

    #[test]
    fn nothing_panics_on_arbitrary_text(text in any::<String>()) {
        for syntax in SYNTAXES {
            let _ = ppl::compile(&text, syntax);
            let _ = format_source(&text, syntax, Syntax::Text);
        }
    }

    #[test]
    fn nothing_panics_on_mutated_policies(policy in policy(), edits in prop::collection::vec((any::<prop::sample::Index>(), any::<char>(), 0..3u8), 1..6)) {
        for syntax in SYNTAXES {
            let mut chars: Vec<char> = print(&policy, syntax).chars().collect();
            for (index, c, op) in &edits {
                if chars.is_empty() { chars.push(*c); continue; }
                let i = index.index(chars.len());
                match op { 0 => chars.insert(i, *c), 1 => { chars.remove(i); } _ => chars[i] = *c }
            }
            let text: String = chars.into_iter().collect();
            for target in SYNTAXES {
                let _ = ppl::compile(&text, target);
                let _ = format_source(&text, target, syntax);
            }
        }
    }
}

#[test]
fn formatting_an_unformatted_policy_is_stable() {
    let source = "allow: {or: [{email: {in: [a@example.com, b@example.com]}}, {accept: 1}]}\n";
    let once = format_source(source, Syntax::Yaml, Syntax::Yaml).map(|f| f.text).unwrap();
    assert_eq!(once, "allow:\n  or:\n    - email:\n        in: [a@example.com, b@example.com]\n    - accept: 1\n");
    assert_eq!(format_source(&once, Syntax::Yaml, Syntax::Yaml).map(|f| f.text).unwrap(), once);
}
