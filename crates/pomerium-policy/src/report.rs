//! Rendering diagnostics: miette's graphical handler (`human`), its narratable handler
//! (`plain`, for screen readers and logs), and one JSON object per line (`json`) in the shape of
//! miette's JSON handler plus line and column.

use clap::ValueEnum;
use miette::{Diagnostic, GraphicalReportHandler, GraphicalTheme, NamedSource, NarratableReportHandler, Severity};
use ppl::LineIndex;
use std::fmt;
use std::io::{IsTerminal as _, Write as _};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Human,
    Plain,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Color {
    Auto,
    Always,
    Never,
}

pub struct Reporter {
    pub format: Format,
    color: bool,
}

/// Counts of what was reported.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub errors: usize,
    pub warnings: usize,
}

impl Tally {
    pub fn add(&mut self, other: Tally) {
        self.errors += other.errors;
        self.warnings += other.warnings;
    }
}

impl Reporter {
    pub fn new(format: Format, color: Color) -> Reporter {
        let color = match color {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        };
        Reporter { format, color }
    }

    /// Reports the errors and warnings of one policy, errors first.
    pub fn policy(&self, name: &str, source: &str, errors: &[ppl::Error], warnings: &[ppl::Warning]) -> Tally {
        let named = NamedSource::new(name, source.to_owned());
        let index = LineIndex::new(source);
        for error in errors {
            self.diagnostic(&named, &index, error);
        }
        for warning in warnings {
            self.diagnostic(&named, &index, warning);
        }
        Tally { errors: errors.len(), warnings: warnings.len() }
    }

    /// Reports the errors (and, when asked, the warnings) of a loaded configuration. Each is shown
    /// against the text it points into: the file, or the environment variable it came from
    /// (`$NAME`; for `POLICY` and `ROUTES`, the decoded text).
    pub fn config(&self, name: &str, source: &str, loaded: &config::Loaded, warnings: bool) -> Tally {
        let mut sources: Vec<(config::Origin, NamedSource<String>, String)> = Vec::new();
        let mut show = |origin: &config::Origin, diagnostic: &dyn Diagnostic| {
            if !sources.iter().any(|(o, _, _)| o == origin) {
                let text = loaded.source_text(origin, source).to_owned();
                let display = match origin.variable() {
                    None => name.to_owned(),
                    Some(var @ ("POLICY" | "ROUTES")) => format!("${var} (base64-decoded)"),
                    Some(var) => format!("${var}"),
                };
                sources.push((origin.clone(), NamedSource::new(display, text.clone()), text));
            }
            if let Some((_, named, text)) = sources.iter().find(|(o, _, _)| o == origin) {
                self.diagnostic(named, &LineIndex::new(text), diagnostic);
            }
        };
        for error in &loaded.errors {
            show(&error.origin, &error.diagnostic);
        }
        if warnings {
            for warning in &loaded.warnings {
                show(&warning.origin, &warning.diagnostic);
            }
        }
        Tally { errors: loaded.errors.len(), warnings: if warnings { loaded.warnings.len() } else { 0 } }
    }

    /// Reports one diagnostic against its source.
    pub fn diagnostic(&self, source: &NamedSource<String>, index: &LineIndex<'_>, diagnostic: &dyn Diagnostic) {
        let wrapped = WithSource { inner: diagnostic, source };
        let mut text = String::new();
        let rendered = match self.format {
            Format::Human => {
                let theme = if self.color { GraphicalTheme::unicode() } else { GraphicalTheme::unicode_nocolor() };
                GraphicalReportHandler::new_themed(theme).with_width(100).render_report(&mut text, &wrapped)
            }
            Format::Plain => NarratableReportHandler::new().render_report(&mut text, &wrapped),
            Format::Json => {
                text = json(source.name(), index, diagnostic).to_string();
                text.push('\n');
                Ok(())
            }
        };
        if rendered.is_err() {
            text = format!("{diagnostic}\n");
        }
        if self.format != Format::Json {
            // A blank line between reports, so that each stands apart.
            text.push('\n');
        }
        eprint_str(&text);
    }

    /// A message that is not about a place in a policy (a file that cannot be read).
    pub fn message(&self, severity: Severity, name: &str, message: &str) {
        let level = if severity == Severity::Error { "error" } else { "warning" };
        match self.format {
            Format::Json => {
                let value = serde_json::json!({ "file": name, "severity": level, "message": message, "labels": [] });
                eprint_str(&format!("{value}\n"));
            }
            _ => eprint_str(&format!("{level}: {name}: {message}\n")),
        }
    }

    /// A closing line for people (nothing in JSON).
    pub fn summary(&self, text: &str) {
        if self.format != Format::Json {
            eprint_str(&format!("{text}\n"));
        }
    }
}

fn eprint_str(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// miette's JSON shape, with 1-based `line` and `column` for the diagnostic and each label.
fn json(file: &str, index: &LineIndex<'_>, diagnostic: &dyn Diagnostic) -> serde_json::Value {
    let labels: Vec<serde_json::Value> = diagnostic
        .labels()
        .into_iter()
        .flatten()
        .map(|label| {
            let at = index.line_col(label.offset());
            serde_json::json!({
                "label": label.label(),
                "span": { "offset": label.offset(), "length": label.len() },
                "line": at.line,
                "column": at.column,
            })
        })
        .collect();
    let first = labels.first();
    let severity = match diagnostic.severity().unwrap_or(Severity::Error) {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Advice => "advice",
    };
    serde_json::json!({
        "file": file,
        "severity": severity,
        "code": diagnostic.code().map(|c| c.to_string()),
        "message": diagnostic.to_string(),
        "help": diagnostic.help().map(|h| h.to_string()),
        "line": first.and_then(|l| l.get("line").cloned()),
        "column": first.and_then(|l| l.get("column").cloned()),
        "labels": labels,
    })
}

/// A diagnostic together with the text it points into.
struct WithSource<'a> {
    inner: &'a dyn Diagnostic,
    source: &'a NamedSource<String>,
}

impl fmt::Debug for WithSource<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.inner, f)
    }
}

impl fmt::Display for WithSource<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.inner, f)
    }
}

impl std::error::Error for WithSource<'_> {}

impl Diagnostic for WithSource<'_> {
    fn code<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.inner.code()
    }
    fn severity(&self) -> Option<Severity> {
        self.inner.severity()
    }
    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.inner.help()
    }
    fn url<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.inner.url()
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(self.source)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        self.inner.labels()
    }
}

/// A file that is not UTF-8, reported at the first bad byte.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("the file is not valid utf-8")]
#[diagnostic(code(ppl::syntax::not_utf8), help("policies are utf-8 text; re-save the file as utf-8"))]
pub struct NotUtf8 {
    #[label("invalid byte here")]
    pub span: miette::SourceSpan,
}
