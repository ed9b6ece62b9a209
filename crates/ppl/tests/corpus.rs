//! The data-driven corpus: one file per case under `tests/corpus/`, independent of the Rust API.
//!
//! A case file is a description (comment lines) followed by sections:
//!
//! ```text
//! # What the case is about, and where the behaviour is specified.
//! --- policy.yaml            (or policy.json, policy.ppl: the policy, byte for byte)
//! allow: ...
//! --- diagnostics            (every error, then every warning; absent = none)
//! error ppl::criterion::unknown 3:7-3:12 unknown criterion `emial`
//!   help: did you mean `email`?
//! --- ast                    (the AST in the canonical text form, when there are no errors)
//! allow or(email "a@example.com")
//! --- fmt.yaml               (optional: what `fmt --to yaml` prints; also fmt.json, fmt.ppl)
//! ```
//!
//! Each case's rendered diagnostics are also an insta snapshot under `tests/corpus/snapshots/`.
//! `UPDATE_EXPECT=1 cargo test -p ppl --test corpus` rewrites the expectations in place; review
//! the diff before committing. Mismatches fail otherwise.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "tests fail by panicking, on fixtures they know"
)]

use miette::{Diagnostic, GraphicalReportHandler, GraphicalTheme, NamedSource};
use ppl::comments::Trivia;
use ppl::format::{FormatError, format_source};
use ppl::{LineIndex, Syntax};
use std::fmt::Write as _;
use std::path::Path;
use test_support::expect::{Section, compare_or_update};

type Case = case_file::InputCase;

fn parse_case(content: &str) -> Result<Case, String> {
    case_file::parse_with_input(content, "policy")
}

fn syntax_of(name: &str) -> Result<Syntax, String> {
    name.rsplit_once('.')
        .and_then(|(_, ext)| Syntax::from_extension(ext))
        .ok_or_else(|| format!("unknown section `{name}`"))
}

/// `error ppl::x 1:2-1:5 message` and an indented help line.
fn compact(index: &LineIndex<'_>, diagnostic: &dyn Diagnostic, severity: &str, span: ppl::Span) -> String {
    let code = diagnostic.code().map(|c| c.to_string()).unwrap_or_default();
    let (start, end) = (index.line_col(span.start()), index.line_col(span.end()));
    let mut line = format!("{severity} {code} {start}-{end} {diagnostic}\n");
    if let Some(help) = diagnostic.help() {
        let _ = writeln!(line, "  help: {help}");
    }
    line
}

struct Actual {
    diagnostics: String,
    rendered: String,
    ast: Option<String>,
}

fn evaluate(case: &Case, file_name: &str) -> Result<Actual, String> {
    let syntax = syntax_of(&case.input_name)?;
    let compiled = ppl::compile(&case.input, syntax);
    let index = LineIndex::new(&case.input);
    let mut diagnostics = String::new();
    let mut rendered = String::new();
    let source = NamedSource::new(format!("{file_name}/{}", case.input_name), case.input.clone());
    let handler = GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor()).with_width(100);
    for error in &compiled.errors {
        diagnostics.push_str(&compact(&index, error, "error", error.span()));
        render(&handler, &source, error.clone(), &mut rendered);
    }
    for warning in &compiled.warnings {
        diagnostics.push_str(&compact(&index, warning, "warning", warning.span()));
        render(&handler, &source, warning.clone(), &mut rendered);
    }
    let ast = match (&compiled.ast, compiled.errors.is_empty()) {
        (Some(ast), true) => Some(ppl::format::format(ast, &Trivia::default(), Syntax::Text)),
        _ => None,
    };
    Ok(Actual { diagnostics, rendered, ast })
}

fn render<D: Diagnostic + Send + Sync + 'static>(
    handler: &GraphicalReportHandler,
    source: &NamedSource<String>,
    diagnostic: D,
    out: &mut String,
) {
    let report = miette::Report::new(diagnostic).with_source_code(source.clone());
    let _ = handler.render_report(out, report.as_ref());
    out.push('\n');
}

fn formatted(case: &Case, to: Syntax) -> Result<String, String> {
    let from = syntax_of(&case.input_name)?;
    match format_source(&case.input, from, to) {
        Ok(formatted) => Ok(formatted.text),
        Err(FormatError::Parse(errors)) => Err(format!("the policy does not parse: {errors:?}")),
        Err(FormatError::Unsound { output }) => Err(format!("the formatter is unsound; it printed:\n{output}")),
        Err(FormatError::Unrepresentable { reason }) => Err(format!("cannot be written: {reason}")),
    }
}

fn run_case(path: &Path, content: String) -> datatest_stable::Result<()> {
    let case = parse_case(&content)?;
    let file_name = path.file_stem().and_then(|n| n.to_str()).unwrap_or("case");
    let actual = evaluate(&case, file_name)?;

    let mut compared = Vec::new();
    let mut push = |name: &str, expected: Option<&str>, actual: Option<String>| {
        if expected.is_some() || actual.as_deref().is_some_and(|a| !a.trim().is_empty()) {
            compared.push(Section::new(name, expected.unwrap_or_default(), &actual.unwrap_or_default()));
        }
    };
    let section = |name: &str| case.sections.iter().find(|(n, _)| n == name).map(|(_, body)| body.as_str());
    push("diagnostics", section("diagnostics"), Some(actual.diagnostics.clone()));
    push("ast", section("ast"), actual.ast.clone());
    for (name, body) in &case.sections {
        if let Some(target) = name.strip_prefix("fmt.") {
            let to = syntax_of(&format!("x.{target}"))?;
            push(name, Some(body), Some(formatted(&case, to).unwrap_or_else(|e| e)));
        }
    }
    for (name, _) in &case.sections {
        if name != "diagnostics" && name != "ast" && !name.starts_with("fmt.") {
            return Err(format!("unknown section `{name}`").into());
        }
    }

    let kept = format!("{}--- {}\n{}", case.header, case.input_name, case.input);
    compare_or_update(path, &kept, &compared)?;

    if !actual.rendered.is_empty() {
        // Absolute, because insta resolves relative snapshot paths from this source file.
        let snapshot_dir = std::fs::canonicalize(path)?.parent().unwrap_or(Path::new(".")).join("snapshots");
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("case").to_owned();
        insta::with_settings!({ snapshot_path => snapshot_dir, prepend_module_to_snapshot => false, omit_expression => true }, {
            insta::assert_snapshot!(name, actual.rendered);
        });
    }
    Ok(())
}

datatest_stable::harness! {
    { test = run_case, root = "../../tests/corpus", pattern = r"\.case$" },
}
