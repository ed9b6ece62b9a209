//! Route ids and names as Pomerium's controller forms them (`setRouteNameID`): the id is the JSON
//! of `{"n": name, "ns": namespace, "h": host, "p": path}` (Go's `encoding/json`, so that an id
//! written by either controller finds the other's routes), and the name is a slug of
//! "namespace name host", plus `-<slug of the path>` when that is not empty.

use std::fmt::Write as _;

/// The route id: Go's `json.Marshal` of the `routeID` struct, fields in declaration order.
pub(crate) fn route_id(name: &str, namespace: &str, host: &str, path: &str) -> String {
    let mut out = String::from("{");
    for (i, (key, value)) in [("n", name), ("ns", namespace), ("h", host), ("p", path)].into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "\"{key}\":");
        go_json_string(value, &mut out);
    }
    out.push('}');
    out
}

/// A string as Go's `encoding/json` writes it: HTML-sensitive characters and the two JavaScript
/// line separators escaped, so that ids compare equal byte for byte.
fn go_json_string(text: &str, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The route name: `slug("<namespace> <name> <host>")`, then `-<slug(path)>` if that is not empty.
pub(crate) fn route_name(name: &str, namespace: &str, host: &str, path: &str) -> String {
    let base = slug(&format!("{namespace} {name} {host}"));
    let path = slug(path);
    if path.is_empty() { base } else { format!("{base}-{path}") }
}

/// `gosimple/slug.Make` for ASCII text: `&` → `and`, `@` → `at`, quotes dropped, lower-cased, every
/// other character outside `[a-z0-9_-]` a dash, runs of dashes one dash, dashes and underscores
/// trimmed from the ends. Upstream transliterates other scripts (unidecode); here a non-ASCII
/// character becomes a dash, which host names (ASCII by the time they reach an Ingress) never hit.
pub(crate) fn slug(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.trim().chars() {
        match c {
            '&' => out.push_str("and"),
            '@' => out.push_str("at"),
            '"' | '\'' | '\u{2019}' => {}
            c if c.is_ascii_alphanumeric() || c == '_' || c == '-' => out.push(c.to_ascii_lowercase()),
            _ => out.push('-'),
        }
    }
    let mut collapsed = String::with_capacity(out.len());
    for c in out.chars() {
        if !(c == '-' && collapsed.ends_with('-')) {
            collapsed.push(c);
        }
    }
    collapsed.trim_matches(|c| c == '-' || c == '_').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_go_json() {
        assert_eq!(
            route_id("my-ingress", "test", "a.localhost.pomerium.io", "/"),
            r#"{"n":"my-ingress","ns":"test","h":"a.localhost.pomerium.io","p":"/"}"#
        );
        assert_eq!(
            route_id("a", "b", "c", "/x<y>&\"z\""),
            r#"{"n":"a","ns":"b","h":"c","p":"/x\u003cy\u003e\u0026\"z\""}"#
        );
    }

    #[test]
    fn names_are_slugs() {
        // pomerium/routes_test.go TestIngressToRoutes.
        assert_eq!(
            route_name("my-ingress", "test", "a.localhost.pomerium.io", "/"),
            "test-my-ingress-a-localhost-pomerium-io"
        );
        assert_eq!(route_name("app", "default", "*.example.com", "/api/v1/"), "default-app-example-com-api-v1");
        assert_eq!(slug("^/(admin|superuser)/.*$"), "admin-superuser");
        assert_eq!(slug(" Tom & Jerry's @home_ "), "tom-and-jerrys-athome");
        assert_eq!(slug("/"), "");
    }
}
