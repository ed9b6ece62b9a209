//! The ingress corpus: one file per case under `tests/ingress/`, independent of the Rust API beyond
//! `manifest::read`, `translate_all` and `routes_yaml` (what the `translate` command runs).
//!
//! A case file is a description (comment lines) followed by sections:
//!
//! ```text
//! # What the case is about, and where the behaviour is specified.
//! --- manifest.yaml          (the manifests: multi-document YAML)
//! --- options                (optional: `annotation-prefix=...`, `controller-name=...` lines)
//! --- routes                 (the routes document `translate` prints; absent when there are errors)
//! --- errors                 (every error: `code message`, then `  at L:C-L:C in SOURCE: label`
//! --- warnings                and `  help: ...` lines; absent = none)
//! ```
//!
//! Every `routes` document must also load through `config::load` without errors: it is what a
//! user would paste into `config.yaml`. `UPDATE_EXPECT=1 cargo test -p ingress --test
//! ingress_corpus` rewrites the expectations in place; review the diff by hand against the
//! ingress documentation before keeping it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "tests fail by panicking, on fixtures they know"
)]

use miette::{Diagnostic, SourceSpan};
use std::fmt::Write as _;
use std::path::Path;
use test_support::expect::{Section, compare_or_update, updating};

const OUTPUT_SECTIONS: &[&str] = &["routes", "errors", "warnings"];

fn options(body: Option<&str>) -> Result<ingress::Options, String> {
    let mut options = ingress::Options::default();
    for line in body.unwrap_or_default().lines().filter(|l| !l.trim().is_empty()) {
        match line.split_once('=') {
            Some(("annotation-prefix", value)) => options.annotation_prefix = value.to_owned(),
            Some(("controller-name", value)) => options.controller_name = value.to_owned(),
            _ => return Err(format!("unknown option line `{line}`")),
        }
    }
    Ok(options)
}

/// `line:column` (1-based) of an offset in a diagnostic's source.
fn line_col(diagnostic: &dyn Diagnostic, offset: usize) -> Option<String> {
    let contents = diagnostic.source_code()?.read_span(&SourceSpan::new(offset.into(), 0), 0, 0).ok()?;
    Some(format!("{}:{}", contents.line() + 1, contents.column() + 1))
}

fn compact(diagnostic: &dyn Diagnostic) -> String {
    let code = diagnostic.code().map(|c| c.to_string()).unwrap_or_default();
    let mut out = format!("{code} {diagnostic}\n");
    for label in diagnostic.labels().into_iter().flatten() {
        let source = diagnostic.source_code().and_then(|s| s.read_span(label.inner(), 0, 0).ok());
        let name = source.as_ref().and_then(|s| s.name().map(str::to_owned)).unwrap_or_default();
        let (start, end) = (line_col(diagnostic, label.offset()), line_col(diagnostic, label.offset() + label.len()));
        if let (Some(start), Some(end)) = (start, end) {
            let _ = writeln!(out, "  at {start}-{end} in {name}: {}", label.label().unwrap_or_default());
        }
    }
    if let Some(help) = diagnostic.help() {
        let _ = writeln!(out, "  help: {help}");
    }
    out
}

fn run_case(path: &Path, content: String) -> datatest_stable::Result<()> {
    let case = case_file::parse(&content)?;
    let manifest = case.section("manifest.yaml").ok_or("a case needs a `--- manifest.yaml` section")?;
    for (name, _) in &case.sections {
        if !["manifest.yaml", "options"].contains(&name.as_str()) && !OUTPUT_SECTIONS.contains(&name.as_str()) {
            return Err(format!("unknown section `{name}`").into());
        }
    }
    let read = ingress::manifest::read("manifest.yaml", manifest);
    let outcome = ingress::translate_all(&read.objects, &options(case.section("options"))?);
    let mut errors: String = read.errors.iter().map(|e| compact(e)).collect();
    errors.extend(outcome.errors.iter().map(|e| compact(e)));
    let mut warnings: String = read.warnings.iter().map(|w| compact(w)).collect();
    warnings.extend(outcome.warnings.iter().map(|w| compact(w)));
    let routes = errors.is_empty().then(|| ingress::routes_yaml(&outcome.routes, &outcome.certificates));
    if let Some(routes) = &routes {
        let loaded = config::load(routes, config::Format::Yaml, &config::env::Empty);
        let problems: Vec<String> = loaded.errors.iter().map(|e| e.diagnostic.to_string()).collect();
        if !problems.is_empty() {
            return Err(format!("the routes do not load as config.yaml: {problems:?}").into());
        }
    }
    let actual = [("routes", routes.unwrap_or_default()), ("errors", errors), ("warnings", warnings)];
    compare(path, &case, &actual)
}

fn compare(path: &Path, case: &case_file::CaseFile, actual: &[(&str, String)]) -> datatest_stable::Result<()> {
    let mut kept = case.header.clone();
    for (name, body) in case.sections.iter().filter(|(n, _)| !OUTPUT_SECTIONS.contains(&n.as_str())) {
        let _ = write!(kept, "--- {name}\n{body}");
    }
    // An empty output is left out of the case, and an absent section expects nothing.
    let sections: Vec<Section> = actual
        .iter()
        .map(|(name, body)| Section::new(name, case.section(name).unwrap_or_default(), body))
        .filter(|section| !(updating() && section.actual.is_empty()))
        .collect();
    Ok(compare_or_update(path, &kept, &sections)?)
}

datatest_stable::harness! {
    { test = run_case, root = "../../tests/ingress", pattern = r"\.case$" },
}
