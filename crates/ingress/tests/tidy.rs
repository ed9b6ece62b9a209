//! Every `ingress::*` diagnostic code is documented in `docs/diagnostics.md`, and every documented
//! one exists.

#![allow(clippy::unwrap_used, clippy::string_slice, reason = "tests fail by panicking, on fixtures they know")]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The code starting at `text`: `ingress::` and two lowercase words joined by `::`.
fn code_at(text: &str) -> Option<String> {
    let code: String =
        text.chars().take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == ':').collect();
    let code = code.trim_end_matches(':').to_owned();
    (code.starts_with("ingress::") && code.matches("::").count() == 2).then_some(code)
}

/// The Rust files under `dir`, at any depth.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

#[test]
fn every_ingress_code_is_documented_and_every_documented_code_exists() {
    let mut in_source = BTreeSet::new();
    for path in rust_files(&workspace().join("crates/ingress/src")) {
        let text = std::fs::read_to_string(path).unwrap();
        in_source.extend(text.match_indices("code(ingress::").filter_map(|(i, _)| code_at(&text[i + 5..])));
    }
    let docs = std::fs::read_to_string(workspace().join("docs/diagnostics.md")).unwrap();
    let documented: BTreeSet<String> =
        docs.match_indices("`ingress::").filter_map(|(i, _)| code_at(&docs[i + 1..])).collect();
    let undocumented: Vec<_> = in_source.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&in_source).collect();
    assert!(undocumented.is_empty(), "codes missing from docs/diagnostics.md: {undocumented:?}");
    assert!(stale.is_empty(), "docs/diagnostics.md lists codes that no longer exist: {stale:?}");
    assert!(in_source.len() >= 20, "found only {} codes; is the scan broken?", in_source.len());
}
