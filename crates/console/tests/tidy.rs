//! Every `console::*` diagnostic code is documented in `docs/diagnostics.md`, and every
//! documented one exists.

#![allow(clippy::unwrap_used, clippy::string_slice, reason = "tests fail by panicking, on fixtures they know")]

use std::collections::BTreeSet;
use std::path::Path;

fn codes(text: &str, marker: &str) -> BTreeSet<String> {
    text.match_indices(marker)
        .map(|(i, _)| {
            let start = i + marker.len() - "console::".len();
            text[start..].chars().take_while(|c| c.is_ascii_lowercase() || *c == '_' || *c == ':').collect::<String>()
        })
        .map(|code| code.trim_end_matches(':').to_owned())
        .filter(|code| code.matches("::").count() == 2)
        .collect()
}

#[test]
fn every_console_code_is_documented_and_every_documented_code_exists() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut in_source = BTreeSet::new();
    for entry in std::fs::read_dir(src).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        in_source.extend(codes(&text, "code(console::"));
        in_source.extend(codes(&text, "\"console::"));
    }
    let docs =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/diagnostics.md")).unwrap();
    let documented = codes(&docs, "`console::");
    assert!(in_source.len() >= 5, "found only {in_source:?}; is the scan broken?");
    assert_eq!(in_source, documented, "docs/diagnostics.md and the source disagree");
}
