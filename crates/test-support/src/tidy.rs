//! Repository invariants that are not code, kept true by tests: every diagnostic code written in
//! the source is documented in `docs/diagnostics.md`, and every documented one exists.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The workspace's root directory.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Rust files under `dir`, at any depth, in a stable order.
pub fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// The code starting at `text` (`{prefix}::` and two lowercase words joined by `::`), if any.
fn code_at(text: &str, prefix: &str) -> Option<String> {
    let code: String =
        text.chars().take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == ':').collect();
    let code = code.trim_end_matches(':').to_owned();
    (code.starts_with(&format!("{prefix}::")) && code.matches("::").count() == 2).then_some(code)
}

/// Every `{prefix}::a::b` code that follows one of `markers` (e.g. `code(`) in `text`.
pub fn codes_after(text: &str, prefix: &str, markers: &[&str]) -> BTreeSet<String> {
    let mut codes = BTreeSet::new();
    for marker in markers {
        let needle = format!("{marker}{prefix}::");
        codes.extend(text.match_indices(&needle).filter_map(|(i, _)| code_at(&text[i + marker.len()..], prefix)));
    }
    codes
}

/// The `{prefix}::*` codes the Rust files under `sources` (directories relative to the workspace)
/// write after one of `markers`, and those `docs/diagnostics.md` names, are the same set; and the
/// source has at least `at_least` (a scan that finds nothing is broken, not clean).
pub fn assert_codes_documented(prefix: &str, sources: &[&str], markers: &[&str], at_least: usize) {
    let mut in_source = BTreeSet::new();
    for dir in sources {
        for file in rust_files(&workspace().join(dir)) {
            let text = std::fs::read_to_string(&file).unwrap();
            in_source.extend(codes_after(&text, prefix, markers));
        }
    }
    let docs = std::fs::read_to_string(workspace().join("docs/diagnostics.md")).unwrap();
    let documented = codes_after(&docs, prefix, &[""]);
    let undocumented: Vec<_> = in_source.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&in_source).collect();
    assert!(undocumented.is_empty(), "{prefix} codes missing from docs/diagnostics.md: {undocumented:?}");
    assert!(stale.is_empty(), "docs/diagnostics.md lists {prefix} codes that no longer exist: {stale:?}");
    assert!(in_source.len() >= at_least, "found only {} {prefix} codes; is the scan broken?", in_source.len());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_read_after_their_marker_and_need_two_levels() {
        // A prefix no crate uses: the workspace scans would read these lines too.
        let text = "x.code(demo::read::bad_type) \"demo::a::b\" code(demo::only) code(other::x::y)";
        let found = codes_after(text, "demo", &["code("]);
        assert_eq!(found.into_iter().collect::<Vec<_>>(), ["demo::read::bad_type"]);
        let quoted = codes_after(text, "demo", &["code(", "\""]);
        assert_eq!(quoted.len(), 2);
        let anywhere = codes_after("`demo::a::b`, demo::c_2::d: and demo::e::*", "demo", &[""]);
        assert_eq!(anywhere.into_iter().collect::<Vec<_>>(), ["demo::a::b", "demo::c_2::d"]);
    }
}
