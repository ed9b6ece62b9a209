//! `set_request_headers` values with `${pomerium.*}` templates (system.md §1.4, Pomerium's
//! `internal/headertemplate`), parsed once when the configuration loads and filled in per request.

/// A header value: literal text and references, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderTemplate {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    /// The path of names a reference reads: `${pomerium.request.headers["X"]}` is
    /// `[pomerium, request, headers, X]`.
    Reference(Vec<String>),
}

/// What a request offers to the templates.
pub trait Values {
    /// The value of the reference, or `None` when there is none (it renders as nothing).
    fn lookup(&self, path: &[String]) -> Option<String>;
}

impl HeaderTemplate {
    /// Parses a header value; `$$` is a literal `$`, and a `$` that starts no reference is literal.
    pub fn parse(text: &str) -> HeaderTemplate {
        let mut parts = Vec::new();
        let mut rest = text;
        for (path, written) in config::template_references(text) {
            let Some(at) = rest.find(written.as_str()) else { continue };
            let (before, after) = rest.split_at(at);
            push_literal(&mut parts, before);
            parts.push(Part::Reference(path));
            rest = after.get(written.len()..).unwrap_or_default();
        }
        push_literal(&mut parts, rest);
        HeaderTemplate { parts }
    }

    /// Whether the value has no references (it can be sent as it is).
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Literal(_)))
    }

    /// The paths the value reads, in order.
    pub fn references(&self) -> impl Iterator<Item = &[String]> {
        self.parts.iter().filter_map(|part| match part {
            Part::Reference(path) => Some(path.as_slice()),
            Part::Literal(_) => None,
        })
    }

    pub fn render(&self, values: &dyn Values) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Reference(path) => out.push_str(&values.lookup(path).unwrap_or_default()),
            }
        }
        out
    }
}

fn push_literal(parts: &mut Vec<Part>, text: &str) {
    if !text.is_empty() {
        parts.push(Part::Literal(text.replace("$$", "$")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;

    impl Values for Fixed {
        fn lookup(&self, path: &[String]) -> Option<String> {
            match path.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
                ["pomerium", "request", "headers", name] => Some(format!("<{name}>")),
                ["pomerium", "client_cert_fingerprint"] => Some("ab12".to_owned()),
                _ => None,
            }
        }
    }

    #[test]
    fn references_are_filled_in_and_the_rest_kept() {
        let template = HeaderTemplate::parse(
            r#"Bearer ${pomerium.request.headers["X-Token"]} fp=${pomerium.client_cert_fingerprint}"#,
        );
        assert_eq!(template.render(&Fixed), "Bearer <X-Token> fp=ab12");
        assert!(!template.is_literal());
    }

    #[test]
    fn dollars_escape_and_unknown_references_render_empty() {
        assert_eq!(HeaderTemplate::parse("cost: $$5").render(&Fixed), "cost: $5");
        assert_eq!(HeaderTemplate::parse("a${pomerium.nothing}b").render(&Fixed), "ab");
        let literal = HeaderTemplate::parse("plain");
        assert!(literal.is_literal());
        assert_eq!(literal.render(&Fixed), "plain");
    }
}
