//! Path and host rewrites, as Pomerium configures Envoy's route action (`getRewriteOptions`,
//! `setHostRewriteOptions` in `config/envoyconfig/routes.go`).
//!
//! - Path: `prefix_rewrite` replaces the matched route prefix (or exact path);
//!   `regex_rewrite_pattern` + `regex_rewrite_substitution` replace every match in the path with
//!   RE2-style `\1` groups; without either, a path on the first `to` URL acts as `prefix_rewrite`.
//!   The query string is never touched.
//! - Host: a literal (`host_rewrite`), a request header's value (`host_rewrite_header`), a regex
//!   over the path (`host_path_regex_rewrite_*`), the original host (`preserve_host_header`), or by
//!   default the upstream's authority.

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderName, Uri};
use regex::{Regex, RegexBuilder};

/// The largest compiled program a rewrite pattern may produce (the regex crate's size limit).
pub const REGEX_SIZE_LIMIT: usize = 256 * 1024;

/// A problem with a rewrite setting. Raised when the route is built, never per request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RewriteError {
    /// The pattern is not a valid regular expression, or is too large.
    #[error("invalid rewrite pattern: {0}")]
    Pattern(#[from] regex::Error),
    /// The substitution uses an escape other than `\0`–`\9` and `\\`.
    #[error("invalid escape `\\{0}` in rewrite substitution (use \\0-\\9 or \\\\)")]
    Escape(char),
    /// The substitution ends with a lone backslash.
    #[error("rewrite substitution ends with a lone backslash")]
    TrailingBackslash,
    /// The substitution names a group the pattern does not have.
    #[error("rewrite substitution uses group \\{group} but the pattern has {groups} groups")]
    MissingGroup {
        /// The group referenced.
        group: usize,
        /// The number of capturing groups in the pattern.
        groups: usize,
    },
    /// The upstream URL cannot carry the rewritten path.
    #[error("invalid upstream URI: {0}")]
    Uri(String),
}

/// A regex with an RE2-style substitution (`\1` for group 1), as Envoy's `RegexMatchAndSubstitute`.
#[derive(Debug, Clone)]
pub struct RegexRewrite {
    regex: Regex,
    /// The substitution in the regex crate's syntax (`${1}`, `$$`).
    replacement: String,
}

impl RegexRewrite {
    /// Compiles `pattern` (size-limited) and translates `substitution`.
    pub fn new(pattern: &str, substitution: &str) -> Result<Self, RewriteError> {
        let regex = RegexBuilder::new(pattern).size_limit(REGEX_SIZE_LIMIT).build()?;
        let replacement = translate_substitution(substitution, regex.captures_len().saturating_sub(1))?;
        Ok(Self { regex, replacement })
    }

    /// Replaces every match in `text`.
    pub fn apply(&self, text: &str) -> String {
        self.regex.replace_all(text, self.replacement.as_str()).into_owned()
    }
}

/// RE2's rewrite syntax → the regex crate's: `\N` → `${N}`, `\\` → `\`, `$` → `$$`.
fn translate_substitution(substitution: &str, groups: usize) -> Result<String, RewriteError> {
    let mut translated = String::with_capacity(substitution.len() + 8);
    let mut chars = substitution.chars();
    while let Some(c) = chars.next() {
        match c {
            '$' => translated.push_str("$$"),
            '\\' => match chars.next() {
                Some('\\') => translated.push('\\'),
                Some(digit @ '0'..='9') => {
                    let group = digit.to_digit(10).and_then(|d| usize::try_from(d).ok()).unwrap_or(0);
                    if group > groups {
                        return Err(RewriteError::MissingGroup { group, groups });
                    }
                    translated.push_str(&format!("${{{group}}}"));
                }
                Some(other) => return Err(RewriteError::Escape(other)),
                None => return Err(RewriteError::TrailingBackslash),
            },
            c => translated.push(c),
        }
    }
    Ok(translated)
}

/// How a route rewrites the path.
#[derive(Debug, Clone, Default)]
pub enum PathRewrite {
    /// Forward the path as it is.
    #[default]
    None,
    /// Replace the matched prefix (the route's `prefix`, or its exact `path`, or `/`).
    Prefix {
        /// What the route matched on.
        matched: String,
        /// What replaces it.
        replacement: String,
    },
    /// Replace every match in the path.
    Regex(RegexRewrite),
}

impl PathRewrite {
    /// Pomerium's choice: `prefix_rewrite`, else the regex rewrite, else the path of the first
    /// `to` URL (when it has one) as a prefix rewrite. `matched` is the route's prefix or path.
    pub fn for_route(
        matched: &str,
        prefix_rewrite: Option<&str>,
        regex_rewrite: Option<RegexRewrite>,
        upstream_path: &str,
    ) -> Self {
        let prefix =
            |replacement: &str| Self::Prefix { matched: matched.to_owned(), replacement: replacement.to_owned() };
        match (prefix_rewrite.filter(|p| !p.is_empty()), regex_rewrite) {
            (Some(replacement), _) => prefix(replacement),
            (None, Some(regex)) => Self::Regex(regex),
            (None, None) if !upstream_path.is_empty() => prefix(upstream_path),
            (None, None) => Self::None,
        }
    }

    /// The path and query after the rewrite. The query is preserved as it was.
    pub fn apply(&self, path_and_query: &str) -> String {
        let (path, query) = split_query(path_and_query);
        let path = match self {
            Self::None => path.to_owned(),
            Self::Prefix { matched, replacement } => match path.strip_prefix(matched.as_str()) {
                Some(rest) => format!("{replacement}{rest}"),
                None => path.to_owned(),
            },
            Self::Regex(regex) => regex.apply(path),
        };
        match query {
            Some(query) => format!("{path}?{query}"),
            None => path,
        }
    }
}

/// Splits `path?query` at the first `?`.
pub fn split_query(path_and_query: &str) -> (&str, Option<&str>) {
    match path_and_query.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path_and_query, None),
    }
}

/// How a route sets the Host header for the upstream.
#[derive(Debug, Clone, Default)]
pub enum HostRewrite {
    /// The upstream's authority (Envoy's `auto_host_rewrite`, Pomerium's default).
    #[default]
    Upstream,
    /// `preserve_host_header`: the host the client sent.
    Preserve,
    /// `host_rewrite`: a literal.
    Literal(String),
    /// `host_rewrite_header`: the value of a request header; the original host when it is absent.
    FromHeader(HeaderName),
    /// `host_path_regex_rewrite_*`: the path, rewritten by a regex, is the host.
    PathRegex(RegexRewrite),
}

impl HostRewrite {
    /// The Host for the upstream request.
    pub fn host(&self, original_host: &str, headers: &HeaderMap, path_and_query: &str, upstream: &Authority) -> String {
        match self {
            Self::Upstream => upstream.as_str().to_owned(),
            Self::Preserve => original_host.to_owned(),
            Self::Literal(host) => host.clone(),
            Self::FromHeader(name) => headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .filter(|value| !value.is_empty())
                .unwrap_or(original_host)
                .to_owned(),
            Self::PathRegex(regex) => regex.apply(split_query(path_and_query).0),
        }
    }
}

/// The URI of the upstream request: the upstream's scheme and authority with the (rewritten)
/// path and query of the request.
pub fn upstream_uri(scheme: Scheme, authority: Authority, path_and_query: &str) -> Result<Uri, RewriteError> {
    let path_and_query = if path_and_query.starts_with('/') {
        path_and_query.parse::<PathAndQuery>()
    } else {
        format!("/{path_and_query}").parse::<PathAndQuery>()
    }
    .map_err(|error| RewriteError::Uri(error.to_string()))?;
    upstream_uri_with(scheme, authority, path_and_query)
}

/// [`upstream_uri`] with the path and query as they are (shared, not copied).
pub fn upstream_uri_with(
    scheme: Scheme,
    authority: Authority,
    path_and_query: PathAndQuery,
) -> Result<Uri, RewriteError> {
    Uri::builder()
        .scheme(scheme)
        .authority(authority)
        .path_and_query(path_and_query)
        .build()
        .map_err(|error| RewriteError::Uri(error.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use http::HeaderValue;

    #[test]
    fn prefix_rewrite_replaces_the_matched_prefix() {
        let table = [
            ("/app/", "/", "/app/users?id=1", "/users?id=1"),
            ("/app", "/", "/app/users", "//users"),
            ("/app", "/v2", "/app/users", "/v2/users"),
            ("/", "/base/", "/x/y", "/base/x/y"),
            ("/app/", "/", "/other/x", "/other/x"),
            ("/exact", "/new", "/exact?q=/exact", "/new?q=/exact"),
        ];
        for (matched, replacement, input, expected) in table {
            let rewrite = PathRewrite::Prefix { matched: matched.to_owned(), replacement: replacement.to_owned() };
            assert_eq!(rewrite.apply(input), expected, "{matched} → {replacement} on {input}");
        }
    }

    #[test]
    fn regex_rewrite_uses_re2_groups_on_the_path_only() {
        let rewrite = RegexRewrite::new(r"^/service/([^/]+)(/.*)$", r"\2/instance/\1").unwrap();
        let path = PathRewrite::Regex(rewrite);
        assert_eq!(path.apply("/service/foo/v1/api?x=/service/a/b"), "/v1/api/instance/foo?x=/service/a/b");
        // Every match is replaced, as RE2's GlobalReplace does.
        let all = PathRewrite::Regex(RegexRewrite::new("o", "0").unwrap());
        assert_eq!(all.apply("/foo/boo"), "/f00/b00");
        let literal = RegexRewrite::new("^/a", r"/\\$1\0").unwrap();
        assert_eq!(literal.apply("/a/b"), r"/\$1/a/b");
    }

    #[test]
    fn bad_substitutions_and_patterns_are_errors() {
        assert!(matches!(RegexRewrite::new("(a)", r"\2"), Err(RewriteError::MissingGroup { group: 2, groups: 1 })));
        assert!(matches!(RegexRewrite::new("a", r"\x"), Err(RewriteError::Escape('x'))));
        assert!(matches!(RegexRewrite::new("a", "b\\"), Err(RewriteError::TrailingBackslash)));
        assert!(matches!(RegexRewrite::new("(", "x"), Err(RewriteError::Pattern(_))));
        // A pattern that compiles to a huge program is refused, not built.
        assert!(matches!(RegexRewrite::new(r"\w{1000}\w{1000}\w{1000}", "x"), Err(RewriteError::Pattern(_))));
    }

    #[test]
    fn route_rewrite_precedence_follows_pomerium() {
        let regex = || Some(RegexRewrite::new("^/a", "/b").unwrap());
        assert!(
            matches!(PathRewrite::for_route("/", Some("/p"), regex(), "/to"), PathRewrite::Prefix { ref replacement, .. } if replacement == "/p")
        );
        assert!(matches!(PathRewrite::for_route("/", None, regex(), "/to"), PathRewrite::Regex(_)));
        assert!(
            matches!(PathRewrite::for_route("/", Some(""), None, "/to/"), PathRewrite::Prefix { ref replacement, .. } if replacement == "/to/")
        );
        assert!(matches!(PathRewrite::for_route("/", None, None, ""), PathRewrite::None));
        let implicit = PathRewrite::for_route("/", None, None, "/api/");
        assert_eq!(implicit.apply("/users"), "/api/users");
    }

    #[test]
    fn host_rewrites() {
        let upstream: Authority = "backend.internal:8443".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-target-host", HeaderValue::from_static("from-header.test"));
        let host = |rewrite: HostRewrite, path: &str| rewrite.host("app.example.com", &headers, path, &upstream);
        assert_eq!(host(HostRewrite::Upstream, "/"), "backend.internal:8443");
        assert_eq!(host(HostRewrite::Preserve, "/"), "app.example.com");
        assert_eq!(host(HostRewrite::Literal("lit.test".to_owned()), "/"), "lit.test");
        assert_eq!(host(HostRewrite::FromHeader(HeaderName::from_static("x-target-host")), "/"), "from-header.test");
        assert_eq!(host(HostRewrite::FromHeader(HeaderName::from_static("x-absent")), "/"), "app.example.com");
        let regex = RegexRewrite::new(r"^/([^/]+)/.*$", r"\1.svc").unwrap();
        assert_eq!(host(HostRewrite::PathRegex(regex), "/tenant-a/docs?x=1"), "tenant-a.svc");
    }

    #[test]
    fn upstream_uri_joins_scheme_authority_and_path() {
        let uri = upstream_uri(Scheme::HTTPS, "b:8443".parse().unwrap(), "/x?y=1").unwrap();
        assert_eq!(uri.to_string(), "https://b:8443/x?y=1");
        let uri = upstream_uri(Scheme::HTTP, "b".parse().unwrap(), "x").unwrap();
        assert_eq!(uri.to_string(), "http://b/x");
        assert!(upstream_uri(Scheme::HTTP, "b".parse().unwrap(), "/a b").is_err());
    }
}
