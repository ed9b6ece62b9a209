//! Configuration problems as log lines: `file:line:column: error[code]: message (help: ...)`.
//! The server's log is read by people and by log collectors alike, so one line each; the
//! graphical rendering with source excerpts is `pomerium-policy check`'s.

use config::{Loaded, Origin};
use miette::Diagnostic;
use ppl::LineIndex;

/// One line per problem of a loaded configuration, errors first.
pub fn lines(loaded: &Loaded, file_name: &str, file_text: &str) -> (Vec<String>, Vec<String>) {
    let errors = loaded
        .errors
        .iter()
        .map(|e| {
            line(loaded, file_name, file_text, &e.origin, e.diagnostic.span(), &e.diagnostic, &e.diagnostic.code_str())
        })
        .collect();
    let warnings = loaded
        .warnings
        .iter()
        .map(|w| {
            line(loaded, file_name, file_text, &w.origin, w.diagnostic.span(), &w.diagnostic, &w.diagnostic.code_str())
        })
        .collect();
    (errors, warnings)
}

fn line(
    loaded: &Loaded,
    file_name: &str,
    file_text: &str,
    origin: &Origin,
    span: ppl::Span,
    diagnostic: &dyn Diagnostic,
    code: &str,
) -> String {
    let text = loaded.source_text(origin, file_text);
    let at = LineIndex::new(text).line_col(span.start());
    let place = match origin.variable() {
        Some(variable) => format!("${variable}:{}:{}", at.line, at.column),
        None => format!("{file_name}:{}:{}", at.line, at.column),
    };
    let mut line = format!("{place}: [{code}] {diagnostic}");
    if let Some(help) = diagnostic.help() {
        line.push_str(&format!(" (help: {help})"));
    }
    line
}
