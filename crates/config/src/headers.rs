//! Header options: `set_request_headers` templates (`internal/headertemplate`), the three shapes of
//! `jwt_claims_headers` (`config/custom.go`), and header names.

use crate::diagnostic::HeaderTemplate;
use crate::read::{Field, Sink};
use ppl::value::ValueKind;
use std::collections::BTreeMap;

/// The templates Pomerium fills in (`authorize/evaluator/headers_evaluator_evaluation.go`).
const KNOWN_TEMPLATES: &[&str] = &[
    "pomerium.access_token",
    "pomerium.id_token",
    "pomerium.jwt",
    "pomerium.client_cert_fingerprint",
    "pomerium.client_cert_san_dns",
    "pomerium.client_cert_san_email",
];

/// Every `$name`, `$a.b` and `${...}` reference in a header value, as the path of names it reads
/// (`${pomerium.request.headers["X-Y"]}` is `[pomerium, request, headers, X-Y]`) and its text.
/// `$$` is a literal `$`; a `$` that starts no reference is literal too.
pub fn template_references(text: &str) -> Vec<(Vec<String>, String)> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes.get(i) != Some(&b'$') {
            i += 1;
            continue;
        }
        if bytes.get(i + 1) == Some(&b'$') {
            i += 2;
            continue;
        }
        let parsed = if bytes.get(i + 1) == Some(&b'{') { complex(bytes, i + 2) } else { simple(bytes, i + 1) };
        match parsed {
            Some((path, end)) => {
                out.push((path, String::from_utf8_lossy(bytes.get(i..end).unwrap_or_default()).into_owned()));
                i = end;
            }
            None => i += 1,
        }
    }
    out
}

fn is_identifier_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

fn identifier(bytes: &[u8], start: usize) -> Option<(String, usize)> {
    let end =
        (start..bytes.len()).find(|&i| !bytes.get(i).copied().is_some_and(is_identifier_byte)).unwrap_or(bytes.len());
    (end > start).then(|| (String::from_utf8_lossy(bytes.get(start..end).unwrap_or_default()).into_owned(), end))
}

fn skip_blanks(bytes: &[u8], mut i: usize) -> usize {
    while matches!(bytes.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    i
}

/// `$a.b.c`: identifiers joined by dots; a trailing dot makes the whole thing literal.
fn simple(bytes: &[u8], start: usize) -> Option<(Vec<String>, usize)> {
    let mut path = Vec::new();
    let mut i = start;
    loop {
        let (name, end) = identifier(bytes, i)?;
        path.push(name);
        i = end;
        if bytes.get(i) != Some(&b'.') {
            return Some((path, i));
        }
        i += 1;
    }
}

/// `${ a.b["c"] }`, from just after the brace to just after the closing brace.
fn complex(bytes: &[u8], start: usize) -> Option<(Vec<String>, usize)> {
    let i = skip_blanks(bytes, start);
    let (first, mut i) = identifier(bytes, i)?;
    let mut path = vec![first];
    loop {
        i = skip_blanks(bytes, i);
        match bytes.get(i) {
            Some(b'.') => {
                let (name, end) = identifier(bytes, skip_blanks(bytes, i + 1))?;
                path.push(name);
                i = end;
            }
            Some(b'[') => {
                let (key, end) = string_literal(bytes, skip_blanks(bytes, i + 1))?;
                path.push(key);
                i = skip_blanks(bytes, end);
                if bytes.get(i) != Some(&b']') {
                    return None;
                }
                i += 1;
            }
            Some(b'}') => return Some((path, i + 1)),
            _ => return None,
        }
    }
}

/// `"..."` with backslash escapes.
fn string_literal(bytes: &[u8], start: usize) -> Option<(String, usize)> {
    if bytes.get(start) != Some(&b'"') {
        return None;
    }
    let mut out = Vec::new();
    let mut i = start + 1;
    loop {
        match bytes.get(i)? {
            b'"' => return Some((String::from_utf8_lossy(&out).into_owned(), i + 1)),
            b'\\' => {
                out.push(*bytes.get(i + 1)?);
                i += 2;
            }
            b => {
                out.push(*b);
                i += 1;
            }
        }
    }
}

/// Whether Pomerium fills in this reference.
fn is_known(path: &[String]) -> bool {
    let joined = path.join(".");
    KNOWN_TEMPLATES.contains(&joined.as_str())
        || matches!(path, [a, b, c, _] if a == "pomerium" && b == "request" && c == "headers")
}

/// Warns about each reference in a header value that Pomerium would replace with nothing.
pub(crate) fn check_templates(field: &Field, text: &str, sink: &mut Sink) {
    for (path, reference) in template_references(text) {
        if is_known(&path) {
            continue;
        }
        let help = if path.first().is_some_and(|first| first == "pomerium") {
            let candidates: Vec<&str> = KNOWN_TEMPLATES.iter().map(|t| t.trim_start_matches("pomerium.")).collect();
            let name = path.get(1..).map(|rest| rest.join(".")).unwrap_or_default();
            ppl::suggest::closest(&name, &candidates)
                .map(|close| format!("did you mean `${{pomerium.{close}}}`?"))
                .or_else(|| Some(templates_help()))
        } else {
            Some(format!("write `$$` for a literal `$`; {}", templates_help()))
        };
        sink.warning(&field.origin, HeaderTemplate { reference, span: field.span().into(), help });
    }
}

fn templates_help() -> String {
    let mut names: Vec<String> = KNOWN_TEMPLATES.iter().map(|t| format!("`${{{t}}}`")).collect();
    names.push("`${pomerium.request.headers[\"Name\"]}`".to_owned());
    format!("the templates are {}", ppl::suggest::join_and(&names))
}

/// Whether `name` is an HTTP header name (an RFC 9110 token).
pub fn is_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The header Pomerium sets for a claim given without a header name.
pub fn claim_header(claim: &str) -> String {
    format!("x-pomerium-claim-{claim}")
}

/// `jwt_claims_headers` in its three shapes: an object header → claim, a list of claims, or a
/// string of claims separated by commas or white space.
pub(crate) fn jwt_claims_headers(field: &Field, sink: &mut Sink) -> Option<BTreeMap<String, String>> {
    match &field.value.kind {
        ValueKind::Null => None,
        ValueKind::Object(_) => {
            let entries = field.map(sink)?;
            Some(entries.into_iter().map(|(header, claim)| (header.value, claim.value)).collect())
        }
        ValueKind::Array(_) => {
            let claims = field.list(sink)?;
            Some(claims.into_iter().map(|claim| (claim_header(&claim.value), claim.value)).collect())
        }
        ValueKind::String(text) if text.trim_start().starts_with('{') => {
            let entries = field.map(sink)?;
            Some(entries.into_iter().map(|(header, claim)| (header.value, claim.value)).collect())
        }
        ValueKind::String(text) => Some(
            text.split(|c: char| c == ',' || c.is_whitespace())
                .filter(|claim| !claim.is_empty())
                .map(|claim| (claim_header(claim), claim.to_owned()))
                .collect(),
        ),
        _ => {
            field.wrong_type(sink, "an object, a list or a string of claims", None);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(text: &str) -> Vec<String> {
        template_references(text).into_iter().map(|(path, _)| path.join("|")).collect()
    }

    #[test]
    fn finds_references_as_pomerium_parses_them() {
        assert_eq!(paths("Bearer ${pomerium.id_token}"), vec!["pomerium|id_token"]);
        assert_eq!(paths("${ pomerium . jwt }"), vec!["pomerium|jwt"]);
        assert_eq!(paths(r#"${pomerium.request.headers["X-A\"b"]}"#), vec![r#"pomerium|request|headers|X-A"b"#]);
        assert_eq!(paths("$pomerium.jwt rest"), vec!["pomerium|jwt"]);
        assert_eq!(paths("cost: $$5"), Vec::<String>::new());
        assert_eq!(paths("${unclosed"), Vec::<String>::new());
        assert_eq!(paths("$a."), Vec::<String>::new());
        assert_eq!(paths("$ x"), Vec::<String>::new());
    }

    #[test]
    fn known_references() {
        assert!(is_known(&["pomerium".into(), "access_token".into()]));
        assert!(is_known(&["pomerium".into(), "request".into(), "headers".into(), "X".into()]));
        assert!(!is_known(&["pomerium".into(), "acess_token".into()]));
        assert!(!is_known(&["HOME".into()]));
    }

    #[test]
    fn header_names_are_tokens() {
        assert!(is_header_name("X-Forwarded-For"));
        assert!(!is_header_name("X Forwarded"));
        assert!(!is_header_name(""));
        assert!(!is_header_name("a:b"));
    }
}
