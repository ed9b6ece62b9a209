//! The case files of the data-driven corpora (`tests/corpus/`, `tests/eval/`): comment lines that
//! say what the case checks, then sections, each opened by a `--- <name>` line and running to the
//! next one. Which sections a case has is up to its corpus; this crate only splits the text.
//!
//! ```
//! let case = case_file::parse("# a case\n--- policy.yaml\nallow: accept\n--- decision\n{}\n").unwrap();
//! assert_eq!(case.section("policy.yaml"), Some("allow: accept\n"));
//! assert_eq!(case.policy().unwrap().0, "policy.yaml");
//! ```

/// One case: its description and its sections, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseFile {
    /// The lines before the first section, kept verbatim so that a rewritten case keeps them.
    pub header: String,
    /// `(name, body)` pairs; a body keeps its line endings.
    pub sections: Vec<(String, String)>,
}

/// Splits a case file into its header and sections. A case must describe itself: the header
/// needs at least one non-empty `#` comment line.
pub fn parse(content: &str) -> Result<CaseFile, String> {
    let mut header = String::new();
    let mut sections: Vec<(String, String)> = Vec::new();
    for line in content.split_inclusive('\n') {
        if let Some(name) = line.strip_prefix("--- ") {
            sections.push((name.trim().to_owned(), String::new()));
        } else if let Some((_, body)) = sections.last_mut() {
            body.push_str(line);
        } else {
            header.push_str(line);
        }
    }
    if !header.lines().any(|l| l.starts_with('#') && l.trim_start_matches('#').trim() != "") {
        return Err("a case starts with a `# description` of what it checks".to_owned());
    }
    Ok(CaseFile { header, sections })
}

impl CaseFile {
    /// The body of the first section with this name.
    pub fn section(&self, name: &str) -> Option<&str> {
        self.sections.iter().find(|(n, _)| n == name).map(|(_, body)| body.as_str())
    }

    /// The policy section (`policy.yaml`, `policy.json` or `policy.ppl`): its name and body.
    pub fn policy(&self) -> Result<(&str, &str), String> {
        self.sections
            .iter()
            .find(|(n, _)| n.starts_with("policy."))
            .map(|(n, body)| (n.as_str(), body.as_str()))
            .ok_or_else(|| "a case needs a `--- policy.yaml` (or .json, .ppl) section".to_owned())
    }
}

/// A case whose first section is its input, named `{stem}.<ext>` (`config.yaml`, `policy.ppl`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputCase {
    /// The lines before the first section, verbatim.
    pub header: String,
    /// The input section's name, e.g. `config.yaml`.
    pub input_name: String,
    pub input: String,
    /// The sections after the input, in file order.
    pub sections: Vec<(String, String)>,
}

/// Splits a case whose first section must be `{stem}.<ext>`.
pub fn parse_with_input(content: &str, stem: &str) -> Result<InputCase, String> {
    let CaseFile { header, sections } = parse(content)?;
    let mut sections = sections.into_iter();
    let (input_name, input) = sections.next().ok_or_else(|| format!("a case needs a `--- {stem}.<ext>` section"))?;
    if !input_name.starts_with(&format!("{stem}.")) {
        return Err(format!("the first section must be `{stem}.<ext>`, found `{input_name}`"));
    }
    Ok(InputCase { header, input_name, input, sections: sections.collect() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_case_without_a_description_is_refused() {
        assert!(parse("--- policy.yaml\nallow: accept\n").is_err());
        assert!(parse("#\n--- policy.yaml\nallow: accept\n").is_err());
    }

    #[test]
    fn the_input_is_the_first_section() {
        let case = parse_with_input("# c\n--- config.yaml\na: 1\n--- routes\nr\n", "config").unwrap();
        assert_eq!((case.input_name.as_str(), case.input.as_str()), ("config.yaml", "a: 1\n"));
        assert_eq!(case.sections, [("routes".to_owned(), "r\n".to_owned())]);
        assert!(parse_with_input("# c\n--- routes\nr\n", "config").is_err());
    }
}
