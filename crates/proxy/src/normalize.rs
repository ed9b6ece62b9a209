//! Request checks before routing, as Envoy's HTTP connection manager applies them with
//! Pomerium's defaults: `normalize_path: true`, `merge_slashes: true`,
//! `path_with_escaped_slashes_action: REJECT_REQUEST`, `headers_with_underscores_action:
//! REJECT_REQUEST`.
//!
//! The order is Envoy's (`ConnectionManagerUtility::maybeNormalizePath`): reject fragments and
//! control characters, then the escaped-slash action on the raw path, then RFC 3986
//! normalization, then slash merging. The route matcher and the policy see the result, and it is
//! what the upstream receives, so that `/a/../admin` cannot slip past a rule for `/admin`.

use http::header::{CONTENT_TYPE, LOCATION};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};

use crate::body::{self, ProxyBody};
use crate::error::{ErrorKind, ProxyError};
use crate::rewrite::split_query;

/// The longest path and query accepted, in bytes.
pub const DEFAULT_MAX_PATH_LENGTH: usize = 16 * 1024;

/// What to do with `%2F` and `%5C` in a path (Envoy's `path_with_escaped_slashes_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EscapedSlashesAction {
    /// Forward as received.
    KeepUnchanged,
    /// Answer 400 (Pomerium's default).
    #[default]
    Reject,
    /// Unescape, then redirect the client to the unescaped path (307).
    UnescapeAndRedirect,
    /// Unescape and carry on.
    UnescapeAndForward,
}

/// What to do with header names containing `_` (Envoy's `headers_with_underscores_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnderscoresAction {
    /// Accept them.
    Allow,
    /// Answer 400 (Pomerium's default).
    #[default]
    Reject,
    /// Drop those headers and carry on.
    Drop,
}

/// The path and header checks to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NormalizeOptions {
    /// `normalize_path`: RFC 3986 normalization (dot segments, unreserved percent-decoding).
    pub normalize_path: bool,
    /// `merge_slashes`: `//` becomes `/`.
    pub merge_slashes: bool,
    /// `path_with_escaped_slashes_action`.
    pub escaped_slashes: EscapedSlashesAction,
    /// `headers_with_underscores_action`.
    pub headers_with_underscores: UnderscoresAction,
    /// The longest path and query accepted, in bytes.
    pub max_path_length: usize,
}

impl Default for NormalizeOptions {
    fn default() -> Self {
        Self {
            normalize_path: true,
            merge_slashes: true,
            escaped_slashes: EscapedSlashesAction::Reject,
            headers_with_underscores: UnderscoresAction::Reject,
            max_path_length: DEFAULT_MAX_PATH_LENGTH,
        }
    }
}

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathRejection {
    /// Not an origin-form path (`/...`).
    #[error("the path does not start with `/`")]
    NotOriginForm,
    /// Longer than allowed.
    #[error("the path is too long")]
    TooLong,
    /// Contains NUL, a control character, or a fragment.
    #[error("the path contains a forbidden character")]
    ForbiddenCharacter,
    /// Contains `%2F` or `%5C` and the action is to reject.
    #[error("the path contains an escaped slash")]
    EscapedSlash,
    /// A segment is `..` or `.` with parameters (`/a/..;/b`): servlet containers drop the
    /// parameters and climb, so the upstream would serve another path than the policy saw.
    #[error("a path segment is `..` or `.` followed by `;` parameters")]
    DotSegmentWithParameters,
}

impl From<PathRejection> for ProxyError {
    fn from(rejection: PathRejection) -> Self {
        let kind = match rejection {
            PathRejection::TooLong => ErrorKind::UriTooLong,
            _ => ErrorKind::InvalidPath,
        };
        ProxyError::client(kind).with_cause(rejection)
    }
}

/// What to do with a path that passed the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathOutcome {
    /// Carry on with this path and query.
    Forward(String),
    /// Redirect the client to this path and query (escaped slashes, `UnescapeAndRedirect`).
    Redirect(String),
}

/// Checks and normalizes a path and query. The query is checked but never rewritten.
pub fn normalize_path(path_and_query: &str, options: &NormalizeOptions) -> Result<PathOutcome, PathRejection> {
    if path_and_query.len() > options.max_path_length {
        return Err(PathRejection::TooLong);
    }
    if path_and_query.bytes().any(|b| b.is_ascii_control() || b == b'#') {
        return Err(PathRejection::ForbiddenCharacter);
    }
    let (path, query) = split_query(path_and_query);
    if !path.starts_with('/') {
        return Err(PathRejection::NotOriginForm);
    }
    let (mut path, unescaped) = apply_escaped_slashes_action(path, options.escaped_slashes)?;
    if has_dot_segment_with_parameters(&path) {
        return Err(PathRejection::DotSegmentWithParameters);
    }
    if options.normalize_path {
        path = remove_dot_segments(&canonicalize_escapes(&path));
    }
    if options.merge_slashes {
        path = merge_slashes(&path);
    }
    let result = match query {
        Some(query) => format!("{path}?{query}"),
        None => path,
    };
    Ok(if unescaped && options.escaped_slashes == EscapedSlashesAction::UnescapeAndRedirect {
        PathOutcome::Redirect(result)
    } else {
        PathOutcome::Forward(result)
    })
}

/// Whether `path_and_query` passes every check of [`normalize_path`] and comes out unchanged,
/// decided in one pass without building anything (most requests): a path of plain path
/// characters (no escapes, backslashes or `;`), with no `//` and no `.` or `..` segment.
fn is_normal(path_and_query: &str, options: &NormalizeOptions) -> bool {
    if path_and_query.len() > options.max_path_length {
        return false;
    }
    let (path, query) = split_query(path_and_query);
    if !path.starts_with('/') || query.is_some_and(|query| query.bytes().any(|b| b.is_ascii_control() || b == b'#')) {
        return false;
    }
    let mut previous = 0;
    for byte in path.bytes() {
        if !is_path_char(byte) || byte == b';' || (byte == b'/' && previous == b'/') {
            return false;
        }
        previous = byte;
    }
    !path.split('/').any(|segment| segment == "." || segment == "..")
}

/// The path after the escaped-slash action, and whether anything was unescaped.
fn apply_escaped_slashes_action(path: &str, action: EscapedSlashesAction) -> Result<(String, bool), PathRejection> {
    if action == EscapedSlashesAction::KeepUnchanged || !has_escaped_slash(path) {
        return Ok((path.to_owned(), false));
    }
    if action == EscapedSlashesAction::Reject {
        return Err(PathRejection::EscapedSlash);
    }
    let unescaped = replace_ignore_case(&replace_ignore_case(path, "%2f", "/"), "%5c", "\\");
    Ok((unescaped, true))
}

/// Whether a segment reads `.` or `..` up to a `;` (escaped dots too: `%2e%2e;`). `\\` counts
/// as a separator, as the canonicalizer makes it one.
fn has_dot_segment_with_parameters(path: &str) -> bool {
    if !path.contains(';') {
        return false;
    }
    path.split(['/', '\\']).any(|segment| {
        let Some((name, _parameters)) = segment.split_once(';') else { return false };
        let dots = replace_ignore_case(name, "%2e", ".");
        dots == "." || dots == ".."
    })
}

fn has_escaped_slash(path: &str) -> bool {
    path.as_bytes().windows(3).any(|w| matches!(w, [b'%', b'2', b'f' | b'F'] | [b'%', b'5', b'c' | b'C']))
}

/// Replaces `needle` (ASCII, lowercase) wherever it occurs in any case.
fn replace_ignore_case(text: &str, needle: &str, replacement: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut result = String::with_capacity(text.len());
    let mut last = 0;
    for (start, _) in lower.match_indices(needle) {
        result.push_str(text.get(last..start).unwrap_or_default());
        result.push_str(replacement);
        last = start + needle.len();
    }
    result.push_str(text.get(last..).unwrap_or_default());
    result
}

/// Percent-escapes in canonical form, as Envoy's URL canonicalizer writes them: unreserved
/// characters decoded (`%2e` → `.`, `%41` → `A`), other escapes in uppercase hex, `\` as `/`,
/// and characters that may not appear in a path escaped. Malformed escapes pass unchanged.
fn canonicalize_escapes(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        let escaped =
            match (byte, bytes.get(i + 1).and_then(|b| hex_value(*b)), bytes.get(i + 2).and_then(|b| hex_value(*b))) {
                (b'%', Some(high), Some(low)) => Some(high * 16 + low),
                _ => None,
            };
        match escaped {
            Some(value) if is_unreserved(value) => out.push(char::from(value)),
            Some(value) => push_escape(&mut out, value),
            None if byte == b'\\' => out.push('/'),
            None if byte == b'%' || is_path_char(byte) => out.push(char::from(byte)),
            None => push_escape(&mut out, byte),
        }
        i += if escaped.is_some() { 3 } else { 1 };
    }
    out
}

fn hex_value(byte: u8) -> Option<u8> {
    char::from(byte).to_digit(16).and_then(|digit| u8::try_from(digit).ok())
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// Characters that may stand unescaped in a path: unreserved, sub-delims, `:`, `@`, `/`.
fn is_path_char(byte: u8) -> bool {
    is_unreserved(byte) || b"!$&'()*+,;=:@/".contains(&byte)
}

fn push_escape(out: &mut String, byte: u8) {
    out.push_str(&format!("%{byte:02X}"));
}

/// RFC 3986 §5.2.4 on an absolute path: `.` segments go, `..` removes the segment before it,
/// and nothing climbs above the root.
pub fn remove_dot_segments(path: &str) -> String {
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    let mut output: Vec<&str> = Vec::with_capacity(segments.len());
    for (index, segment) in segments.iter().enumerate() {
        match *segment {
            "." => {}
            ".." => {
                output.pop();
            }
            segment => output.push(segment),
        }
        // A path ending in `.` or `..` names a directory: keep the trailing slash.
        if index == last && matches!(*segment, "." | "..") {
            output.push("");
        }
    }
    format!("/{}", output.join("/"))
}

/// Collapses runs of `/` into one.
pub fn merge_slashes(path: &str) -> String {
    let mut merged = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && merged.ends_with('/')) {
            merged.push(c);
        }
    }
    merged
}

/// Applies the underscore action to the request headers.
pub fn check_header_names(headers: &mut HeaderMap, action: UnderscoresAction) -> Result<(), ProxyError> {
    if action == UnderscoresAction::Allow {
        return Ok(());
    }
    let offending: Vec<_> = headers.keys().filter(|name| name.as_str().contains('_')).cloned().collect();
    match (offending.is_empty(), action) {
        (true, _) => Ok(()),
        (false, UnderscoresAction::Reject) => {
            Err(ProxyError::client(ErrorKind::BadRequest).with_context("header names may not contain underscores"))
        }
        (false, _) => {
            for name in offending {
                headers.remove(name);
            }
            Ok(())
        }
    }
}

/// Applies every check to a request, rewriting its path in place.
///
/// `Ok(None)`: carry on. `Ok(Some(response))`: answer with this redirect (307 to the unescaped
/// path). `Err`: answer with the error (400, or 414 for a path too long). gRPC clients cannot
/// follow redirects, so for them a redirect is a 400, as in Envoy.
pub fn normalize_request<B>(
    request: &mut Request<B>,
    options: &NormalizeOptions,
) -> Result<Option<Response<ProxyBody>>, ProxyError> {
    check_header_names(request.headers_mut(), options.headers_with_underscores)?;
    if request.method() == Method::CONNECT {
        return Ok(None);
    }
    let original = request.uri().path_and_query().map_or("/", PathAndQuery::as_str);
    if is_normal(original, options) {
        return Ok(None);
    }
    match normalize_path(original, options)? {
        PathOutcome::Forward(path) if path == original => Ok(None),
        PathOutcome::Forward(path) => {
            *request.uri_mut() = with_path(request.uri(), &path)?;
            Ok(None)
        }
        PathOutcome::Redirect(_) if is_grpc(request.headers()) => Err(PathRejection::EscapedSlash.into()),
        PathOutcome::Redirect(path) => Ok(Some(redirect(&path)?)),
    }
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value == "application/grpc" || value.starts_with("application/grpc+"))
}

fn with_path(uri: &Uri, path_and_query: &str) -> Result<Uri, ProxyError> {
    let mut parts = uri.clone().into_parts();
    parts.path_and_query =
        Some(path_and_query.parse().map_err(|error| ProxyError::client(ErrorKind::InvalidPath).with_cause(error))?);
    Uri::from_parts(parts).map_err(|error| ProxyError::client(ErrorKind::InvalidPath).with_cause(error))
}

fn redirect(location: &str) -> Result<Response<ProxyBody>, ProxyError> {
    let location = HeaderValue::from_str(location)
        .map_err(|error| ProxyError::client(ErrorKind::InvalidPath).with_cause(error))?;
    let mut response = Response::new(body::empty());
    *response.status_mut() = StatusCode::TEMPORARY_REDIRECT;
    response.headers_mut().insert(LOCATION, location);
    Ok(response)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn paths_taken_as_normal_come_out_of_normalization_unchanged() {
        const ALPHABET: &[char] = &['/', '.', 'a', '%', '2', 'f', ';', '\\', '?', '#', ' '];
        let options = [
            NormalizeOptions::default(),
            NormalizeOptions { normalize_path: false, merge_slashes: false, ..NormalizeOptions::default() },
            NormalizeOptions { escaped_slashes: EscapedSlashesAction::KeepUnchanged, ..NormalizeOptions::default() },
        ];
        let mut normal = 0;
        let mut paths = vec![String::from("/")];
        for _ in 0..5 {
            paths = paths.iter().flat_map(|path| ALPHABET.iter().map(move |c| format!("{path}{c}"))).collect();
            for path in &paths {
                for options in &options {
                    if is_normal(path, options) {
                        normal += 1;
                        assert_eq!(normalize_path(path, options), Ok(PathOutcome::Forward(path.clone())), "{path:?}");
                    }
                }
            }
        }
        assert!(normal > 1000, "the fast path is taken: {normal}");
        assert!(is_normal("/api/v1/items?id=3&b=%20", &NormalizeOptions::default()));
        for changed in ["//a", "/a/./b", "/a/..", "/%41", "/a\\b", "/a;b", "/a b", "/é"] {
            assert!(!is_normal(changed, &NormalizeOptions::default()), "{changed:?}");
        }
    }

    fn forward(path: &str) -> PathOutcome {
        PathOutcome::Forward(path.to_owned())
    }

    #[test]
    fn pomerium_defaults_normalize_and_reject() {
        use PathRejection as R;
        let table: &[(&str, Result<PathOutcome, PathRejection>)] = &[
            ("/", Ok(forward("/"))),
            ("/a/b?x=1", Ok(forward("/a/b?x=1"))),
            ("/a/../admin", Ok(forward("/admin"))),
            ("/a/./b/.", Ok(forward("/a/b/"))),
            ("/a/b/..", Ok(forward("/a/"))),
            ("/../../etc/passwd", Ok(forward("/etc/passwd"))),
            ("/a/%2e%2e/admin", Ok(forward("/admin"))),
            ("/a/%2E./admin", Ok(forward("/admin"))),
            ("/a/.%2e/admin", Ok(forward("/admin"))),
            ("//admin", Ok(forward("/admin"))),
            ("/a//b///c", Ok(forward("/a/b/c"))),
            ("/a\\..\\admin", Ok(forward("/admin"))),
            ("/%41%62c", Ok(forward("/Abc"))),
            ("/%7e%5f%2d", Ok(forward("/~_-"))),
            ("/a%3fb", Ok(forward("/a%3Fb"))),
            ("/a%zz", Ok(forward("/a%zz"))),
            ("/a%", Ok(forward("/a%"))),
            ("/caf\u{e9}", Ok(forward("/caf%C3%A9"))),
            ("/a b", Ok(forward("/a%20b"))),
            ("/a?x=/../y//z", Ok(forward("/a?x=/../y//z"))),
            ("/...", Ok(forward("/..."))),
            ("/a%2Fb", Err(R::EscapedSlash)),
            ("/a%2fb", Err(R::EscapedSlash)),
            ("/a%5Cb", Err(R::EscapedSlash)),
            ("/a%5c..%5cadmin", Err(R::EscapedSlash)),
            ("/a?q=%2F", Ok(forward("/a?q=%2F"))),
            ("/a\0b", Err(R::ForbiddenCharacter)),
            ("/a\rb", Err(R::ForbiddenCharacter)),
            ("/a\u{7f}", Err(R::ForbiddenCharacter)),
            ("/a#frag", Err(R::ForbiddenCharacter)),
            ("a/b", Err(R::NotOriginForm)),
            ("*", Err(R::NotOriginForm)),
            ("", Err(R::NotOriginForm)),
        ];
        let options = NormalizeOptions::default();
        for (input, expected) in table {
            assert_eq!(&normalize_path(input, &options), expected, "{input:?}");
        }
    }

    #[test]
    fn dot_segments_with_parameters_are_refused() {
        let options = NormalizeOptions::default();
        for path in ["/admin/x/..;/billing", "/a/..;jsessionid=1/b", "/a/.;/b", "/a/%2e%2E;/b", "/a\\..;\\b", "/..;"] {
            assert_eq!(normalize_path(path, &options), Err(PathRejection::DotSegmentWithParameters), "{path}");
        }
        let off = NormalizeOptions { normalize_path: false, ..options };
        assert_eq!(normalize_path("/admin/..;/x", &off), Err(PathRejection::DotSegmentWithParameters));
        for path in ["/a/b;c/d", "/a/...;/b", "/a/..x;/b", "/a/x..;/b", "/a?q=..;", "/a;/..", "/a/%3B../b"] {
            assert!(normalize_path(path, &options).is_ok(), "{path}");
        }
    }

    #[test]
    fn escaped_slash_actions() {
        let with = |action| NormalizeOptions { escaped_slashes: action, ..NormalizeOptions::default() };
        let keep = with(EscapedSlashesAction::KeepUnchanged);
        assert_eq!(normalize_path("/a%2fb/../c", &keep), Ok(forward("/c")));
        assert_eq!(normalize_path("/a%2fb", &keep), Ok(forward("/a%2Fb")));
        let unescape = with(EscapedSlashesAction::UnescapeAndForward);
        assert_eq!(normalize_path("/a%2Fb%2f..%2fc", &unescape), Ok(forward("/a/c")));
        assert_eq!(normalize_path("/a%5Cb", &unescape), Ok(forward("/a/b")));
        let redirect = with(EscapedSlashesAction::UnescapeAndRedirect);
        assert_eq!(normalize_path("/a%2F%2Fb?x", &redirect), Ok(PathOutcome::Redirect("/a/b?x".to_owned())));
        assert_eq!(normalize_path("/a/b", &redirect), Ok(forward("/a/b")));
    }

    #[test]
    fn normalization_can_be_turned_off() {
        let off = NormalizeOptions { normalize_path: false, merge_slashes: false, ..NormalizeOptions::default() };
        assert_eq!(normalize_path("/a/../b//c", &off), Ok(forward("/a/../b//c")));
        let merge_only = NormalizeOptions { normalize_path: false, ..NormalizeOptions::default() };
        assert_eq!(normalize_path("//a/%2e%2e", &merge_only), Ok(forward("/a/%2e%2e")));
    }

    #[test]
    fn absurd_lengths_are_refused() {
        let options = NormalizeOptions { max_path_length: 10, ..NormalizeOptions::default() };
        assert_eq!(normalize_path("/0123456789", &options), Err(PathRejection::TooLong));
        assert_eq!(ProxyError::from(PathRejection::TooLong).status(), 414);
        assert_eq!(ProxyError::from(PathRejection::EscapedSlash).status(), 400);
    }

    #[test]
    fn dot_segments_per_rfc_3986() {
        let table = [
            ("/", "/"),
            ("/.", "/"),
            ("/..", "/"),
            ("/a/b/c/./../../g", "/a/g"),
            ("/mid/content=5/../6", "/mid/6"),
            ("/a//../b", "/a/b"),
            ("/a/b/", "/a/b/"),
        ];
        for (input, expected) in table {
            assert_eq!(remove_dot_segments(input), expected, "{input}");
        }
    }

    fn request(uri: &str, headers: &[(&'static str, &'static str)]) -> Request<()> {
        let mut request = Request::builder().uri(uri).body(()).unwrap();
        for (name, value) in headers {
            request.headers_mut().insert(*name, HeaderValue::from_static(value));
        }
        request
    }

    #[test]
    fn requests_are_rewritten_in_place() {
        let mut req = request("https://app.test/a/%2e%2e/admin?x=1", &[]);
        assert!(normalize_request(&mut req, &NormalizeOptions::default()).unwrap().is_none());
        assert_eq!(req.uri().to_string(), "https://app.test/admin?x=1");
        let mut req = request("/a%2Fb", &[]);
        assert_eq!(normalize_request(&mut req, &NormalizeOptions::default()).unwrap_err().status(), 400);
    }

    #[test]
    fn redirects_except_for_grpc() {
        let options = NormalizeOptions {
            escaped_slashes: EscapedSlashesAction::UnescapeAndRedirect,
            ..NormalizeOptions::default()
        };
        let mut req = request("/a%2Fb?q", &[]);
        let response = normalize_request(&mut req, &options).unwrap().unwrap();
        assert_eq!(response.status(), 307);
        assert_eq!(response.headers()[LOCATION], "/a/b?q");
        let mut grpc = request("/a%2Fb", &[("content-type", "application/grpc")]);
        assert_eq!(normalize_request(&mut grpc, &options).unwrap_err().status(), 400);
    }

    #[test]
    fn underscores_in_header_names() {
        let mut req = request("/", &[("x_forwarded_user", "admin"), ("x-ok", "1")]);
        assert_eq!(normalize_request(&mut req, &NormalizeOptions::default()).unwrap_err().status(), 400);
        let drop =
            NormalizeOptions { headers_with_underscores: UnderscoresAction::Drop, ..NormalizeOptions::default() };
        assert!(normalize_request(&mut req, &drop).unwrap().is_none());
        assert!(!req.headers().contains_key("x_forwarded_user"));
        assert!(req.headers().contains_key("x-ok"));
        let mut req = request("/", &[("x_a", "1")]);
        let allow =
            NormalizeOptions { headers_with_underscores: UnderscoresAction::Allow, ..NormalizeOptions::default() };
        assert!(normalize_request(&mut req, &allow).unwrap().is_none());
        assert!(req.headers().contains_key("x_a"));
    }

    #[test]
    fn connect_requests_have_no_path_to_check() {
        let mut req = Request::builder().method(Method::CONNECT).uri("db.test:5432").body(()).unwrap();
        assert!(normalize_request(&mut req, &NormalizeOptions::default()).unwrap().is_none());
    }
}
