//! The three concrete syntaxes of PPL. YAML and JSON are read into a [`Value`](crate::value::Value)
//! tree and then lowered by [`crate::lower`]; the text form is parsed by its pest grammar and
//! lowered directly into the AST.

pub mod json;
pub mod text;
pub mod yaml;

/// Inputs larger than this are refused before parsing: no policy is this big, and a hostile one
/// should not make us allocate without bound.
pub const MAX_POLICY_BYTES: usize = 16 * 1024 * 1024;

/// Values may nest this deep and no deeper (a policy needs about six levels).
pub const MAX_DEPTH: usize = 100;

/// Which syntax a policy is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Syntax {
    Yaml,
    Json,
    /// The compact text form of `grammar/ppl.pest`.
    Text,
}

impl Syntax {
    /// The syntax a file extension stands for: `.yaml`/`.yml`, `.json` or `.ppl`.
    pub fn from_extension(extension: &str) -> Option<Syntax> {
        match extension.to_ascii_lowercase().as_str() {
            "yaml" | "yml" => Some(Syntax::Yaml),
            "json" => Some(Syntax::Json),
            "ppl" => Some(Syntax::Text),
            _ => None,
        }
    }

    /// A guess from the text itself, for standard input: the text form starts with an action
    /// followed by an operator and `(`; JSON starts with `{` or `[` and has a quoted first key;
    /// everything else is YAML (which also reads most JSON).
    pub fn sniff(source: &str) -> Syntax {
        let code = source
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .collect::<Vec<_>>()
            .join(" ");
        let mut words = code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
        let first = words.next().unwrap_or_default();
        let rest = code.get(first.len()..).unwrap_or_default().trim_start();
        if matches!(first, "allow" | "deny") && !rest.starts_with(':') {
            return Syntax::Text;
        }
        // A mistyped action (`alow and(...)`) is still the text form: a word, then `word(`.
        let second: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        let after_second = rest.get(second.len()..).unwrap_or_default().trim_start();
        if !first.is_empty() && !second.is_empty() && after_second.starts_with('(') {
            return Syntax::Text;
        }
        let compact: String = code.chars().filter(|c| !c.is_whitespace()).take(2).collect();
        if matches!(compact.as_str(), "{\"" | "[{" | "{}" | "[]") {
            return Syntax::Json;
        }
        Syntax::Yaml
    }

    pub fn name(self) -> &'static str {
        match self {
            Syntax::Yaml => "yaml",
            Syntax::Json => "json",
            Syntax::Text => "text",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Syntax;

    #[test]
    fn sniffs_each_syntax() {
        assert_eq!(Syntax::sniff("# c\nallow or(accept)"), Syntax::Text);
        assert_eq!(Syntax::sniff("deny\n  and(reject)"), Syntax::Text);
        assert_eq!(Syntax::sniff("allow:\n  or: []"), Syntax::Yaml);
        assert_eq!(Syntax::sniff("{\"allow\": {}}"), Syntax::Json);
        assert_eq!(Syntax::sniff(" [ {\"allow\": {}}]"), Syntax::Json);
        assert_eq!(Syntax::sniff("{allow: {}}"), Syntax::Yaml);
        assert_eq!(Syntax::sniff("alow and(accept)"), Syntax::Text);
    }
}
