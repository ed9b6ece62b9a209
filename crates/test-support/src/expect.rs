//! The corpus tests' last step: compare what the code produced with a case's expected sections,
//! or, with `UPDATE_EXPECT=1` in the environment, rewrite the case with what it produced.

use std::fmt::Write as _;
use std::path::Path;

/// Whether the run rewrites expectations (`UPDATE_EXPECT` is set).
pub fn updating() -> bool {
    std::env::var_os("UPDATE_EXPECT").is_some()
}

/// One output section of a case: its name, what the case expects, what the code produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub expected: String,
    pub actual: String,
}

impl Section {
    /// Both sides with trailing whitespace trimmed.
    pub fn new(name: &str, expected: &str, actual: &str) -> Section {
        Section {
            name: name.to_owned(),
            expected: expected.trim_end().to_owned(),
            actual: actual.trim_end().to_owned(),
        }
    }
}

/// With `UPDATE_EXPECT`, writes `kept` (the case's header and input sections, as they were)
/// followed by each section's actual text (as `--- name`, the text and a newline) to `path`.
/// Otherwise, compares: on a difference, prints each differing section's expected and actual text
/// (the harness would show them escaped) and fails.
pub fn compare_or_update(path: &Path, kept: &str, sections: &[Section]) -> Result<(), String> {
    if updating() {
        return rewrite(path, kept, sections.iter().map(|s| (s.name.as_str(), s.actual.as_str())));
    }
    let mut report = String::new();
    for section in sections.iter().filter(|s| s.expected != s.actual) {
        let Section { name, expected, actual } = section;
        let _ = write!(report, "--- {name}: expected\n{expected}\n--- {name}: actual\n{actual}\n");
    }
    if report.is_empty() {
        return Ok(());
    }
    eprintln!("the case's expectations differ (rerun with UPDATE_EXPECT=1 to accept):\n{report}");
    Err("the case's expectations differ".to_owned())
}

/// Writes `kept` followed by each output section (`--- name`, its text, a newline) to `path`.
pub fn rewrite<'a>(
    path: &Path,
    kept: &str,
    sections: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(), String> {
    let mut rewritten = kept.to_owned();
    for (name, text) in sections {
        let _ = write!(rewritten, "--- {name}\n{}\n", text.trim_end());
    }
    std::fs::write(path, rewritten).map_err(|e| format!("cannot rewrite {}: {e}", path.display()))
}
