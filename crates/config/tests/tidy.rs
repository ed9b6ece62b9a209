//! Every `config::*` diagnostic code is documented in `docs/diagnostics.md`, and every documented
//! one exists (the `ppl::*` codes have the same test in `crates/ppl/tests/tidy.rs`).

#![allow(clippy::unwrap_used, clippy::string_slice, reason = "tests fail by panicking, on fixtures they know")]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code starting at `text` (`config::` and two lowercase words joined by `::`), if any.
fn code_at(text: &str) -> Option<String> {
    let code: String =
        text.chars().take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == ':').collect();
    let code = code.trim_end_matches(':').to_owned();
    (code.starts_with("config::") && code.matches("::").count() == 2).then_some(code)
}

/// Every code written in `text`.
fn codes_in(text: &str) -> BTreeSet<String> {
    text.match_indices("config::").filter_map(|(i, _)| code_at(&text[i..])).collect()
}

#[test]
fn every_config_code_is_documented_and_every_documented_code_exists() {
    let mut files = Vec::new();
    rust_files(&workspace().join("crates"), &mut files);
    let mut in_source = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        in_source.extend(text.match_indices("code(config::").filter_map(|(i, _)| code_at(&text[i + 5..])));
    }
    let docs = std::fs::read_to_string(workspace().join("docs/diagnostics.md")).unwrap();
    let documented = codes_in(&docs);
    let undocumented: Vec<_> = in_source.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&in_source).collect();
    assert!(undocumented.is_empty(), "codes missing from docs/diagnostics.md: {undocumented:?}");
    assert!(stale.is_empty(), "docs/diagnostics.md lists codes that no longer exist: {stale:?}");
    assert!(in_source.len() >= 30, "found only {} codes; is the scan broken?", in_source.len());
}
