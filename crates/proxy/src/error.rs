//! The one proxy error type, and the pages the user sees.
//!
//! A [`ProxyError`] records *who* failed ([`Source`]: the client, the upstream, or the proxy
//! itself) and *what* failed ([`ErrorKind`]). [`ProxyError::status`] is the one place where that
//! pair becomes an HTTP status, in the manner of Pingora's `esource` + `etype`: a timeout is the
//! client's 408 or the upstream's 504, a malformed message the client's 400 or the upstream's 502.
//!
//! [`ErrorPage`] renders an error as Pomerium's authorize service does for denials
//! (`authorize/check_response.go` `deniedResponse`): a Kubernetes `Status` for `kubernetes/`
//! user agents, a disallow-all `/robots.txt`, JSON when the client prefers it, a gRPC status for
//! gRPC clients, and otherwise an HTML page marked with `x-pomerium-intercepted-response`. The
//! pipeline uses it for policy denials (403, 404, 450, 495, ...) and for proxy errors alike.

use std::borrow::Cow;
use std::fmt;

use http::header::{ACCEPT, CONTENT_TYPE, USER_AGENT};
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use crate::body::{self, BoxError, ProxyBody};

/// Who failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// The downstream client: a bad request, oversized headers, a bad path, or it went away.
    Client,
    /// The upstream: refused, TLS failure, timeout, reset, or a bad response.
    Upstream,
    /// The proxy itself: no healthy upstream, an internal error, shutting down.
    Proxy,
}

/// What failed. The same kind means different statuses depending on the [`Source`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A request the proxy will not handle (bad method, bad host, underscores in header names).
    BadRequest,
    /// A malformed HTTP message.
    Protocol,
    /// A path rejected by normalization (escaped slashes, dot segments escaping the root, ...).
    InvalidPath,
    /// A request target longer than allowed.
    UriTooLong,
    /// Headers over the size or count limit.
    HeadersTooLarge,
    /// A body over the size limit.
    BodyTooLarge,
    /// No progress within the time allowed.
    Timeout,
    /// The TCP connection could not be made in time.
    ConnectTimeout,
    /// The TCP connection was refused.
    ConnectRefused,
    /// The connection could not be made (DNS, unreachable, ...).
    Connect,
    /// The TLS handshake failed (certificate not trusted, wrong name, protocol mismatch).
    Tls,
    /// A valid client certificate is required.
    ClientCertificate,
    /// The request's host is not served on this connection (its client certificate settings
    /// differ from those of the connection's SNI).
    Misdirected,
    /// The connection was closed or reset mid-exchange.
    Closed,
    /// No route matches the request.
    NoRoute,
    /// Every upstream endpoint is ejected, or there is none.
    NoHealthyUpstream,
    /// The proxy is shutting down or overloaded.
    Unavailable,
    /// A bug or an unexpected state in the proxy.
    Internal,
}

/// A proxy error: who failed, what failed, what we were doing, and the underlying cause.
#[derive(Debug)]
pub struct ProxyError {
    source: Source,
    kind: ErrorKind,
    context: Option<Cow<'static, str>>,
    cause: Option<BoxError>,
}

impl ProxyError {
    /// An error of `kind` caused by `source`.
    pub fn new(source: Source, kind: ErrorKind) -> Self {
        Self { source, kind, context: None, cause: None }
    }

    /// An error caused by the downstream client.
    pub fn client(kind: ErrorKind) -> Self {
        Self::new(Source::Client, kind)
    }

    /// An error caused by the upstream.
    pub fn upstream(kind: ErrorKind) -> Self {
        Self::new(Source::Upstream, kind)
    }

    /// An error of the proxy itself.
    pub fn proxy(kind: ErrorKind) -> Self {
        Self::new(Source::Proxy, kind)
    }

    /// Says what the proxy was doing (for logs; never shown to the user).
    #[must_use]
    pub fn with_context(mut self, context: impl Into<Cow<'static, str>>) -> Self {
        self.context = Some(context.into());
        self
    }

    /// Attaches the underlying error (for logs; never shown to the user).
    #[must_use]
    pub fn with_cause(mut self, cause: impl Into<BoxError>) -> Self {
        self.cause = Some(cause.into());
        self
    }

    /// Who failed.
    pub fn origin(&self) -> Source {
        self.source
    }

    /// What failed.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether the request certainly never reached the upstream, so another endpoint may be tried.
    pub fn is_retryable(&self) -> bool {
        self.source == Source::Upstream
            && matches!(self.kind, ErrorKind::ConnectRefused | ErrorKind::ConnectTimeout | ErrorKind::Connect)
    }

    /// The status the client sees: the one mapping from (source, kind) to HTTP.
    pub fn status(&self) -> StatusCode {
        use ErrorKind as K;
        use Source as S;
        let code = match (self.source, self.kind) {
            (_, K::ClientCertificate) => STATUS_INVALID_CLIENT_CERTIFICATE,
            (_, K::NoRoute) => 404,
            (_, K::Misdirected) => 421,
            (_, K::NoHealthyUpstream | K::Unavailable) => 503,
            (_, K::Internal) => 500,
            (S::Client, K::UriTooLong) => 414,
            (S::Client, K::HeadersTooLarge) => 431,
            (S::Client, K::BodyTooLarge) => 413,
            (S::Client, K::Timeout | K::ConnectTimeout) => 408,
            // nginx's "client closed request": nobody reads it, but logs and metrics do.
            (S::Client, K::Closed) => 499,
            (S::Client, _) => 400,
            (S::Upstream | S::Proxy, K::Timeout | K::ConnectTimeout) => 504,
            (S::Upstream | S::Proxy, _) => 502,
        };
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The error page for this error, with the public message of its status only: the context
    /// and the cause stay in the logs.
    pub fn page(&self, request_id: impl Into<String>) -> ErrorPage {
        ErrorPage::new(self.status(), request_id)
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match self.source {
            Source::Client => "client",
            Source::Upstream => "upstream",
            Source::Proxy => "proxy",
        };
        write!(f, "{source} error: {:?}", self.kind)?;
        if let Some(context) = &self.context {
            write!(f, " while {context}")?;
        }
        if let Some(cause) = &self.cause {
            write!(f, ": {cause}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ProxyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.as_deref().map(|cause| cause as &(dyn std::error::Error + 'static))
    }
}

/// Pomerium's status for a device that fails the policy's device requirements.
pub const STATUS_DEVICE_UNAUTHORIZED: u16 = 450;
/// Pomerium's (and nginx's) status for a missing or invalid client certificate.
pub const STATUS_INVALID_CLIENT_CERTIFICATE: u16 = 495;

/// The header that marks a response as made by the proxy rather than by the upstream.
pub const INTERCEPTED_RESPONSE_HEADER: &str = "x-pomerium-intercepted-response";

/// The user-facing text for a status: Pomerium's details for its own codes, else the reason
/// phrase (`internal/httputil` `DetailsText`).
pub fn status_text(status: StatusCode) -> &'static str {
    match status.as_u16() {
        STATUS_DEVICE_UNAUTHORIZED => {
            "your device fails to meet the requirements necessary to access this page, please contact your administrator for assistance"
        }
        STATUS_INVALID_CLIENT_CERTIFICATE => "a valid client certificate is required to access this page",
        499 => "Client Closed Request",
        _ => status.canonical_reason().unwrap_or("Error"),
    }
}

/// A response the proxy makes itself: a denial or an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorPage {
    /// The HTTP status.
    pub status: StatusCode,
    /// The reason shown to the user (Pomerium's "error" field).
    pub message: String,
    /// The request id, shown so that a user can quote it.
    pub request_id: String,
    /// Why the request was denied, shown only where the route allows (`show_error_details`).
    pub explanation: Option<Box<crate::deny::Explanation>>,
}

/// How a proxy-made response is rendered, chosen from the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFormat {
    /// A Kubernetes `Status` object, for `kubernetes/` user agents (kubectl).
    KubernetesStatus,
    /// `/robots.txt`: 200 and disallow everything, whatever the denial.
    RobotsTxt,
    /// `{"error": ..., "request_id": ...}`.
    Json,
    /// A trailers-only gRPC status.
    Grpc,
    /// A trailers-only gRPC-Web status.
    GrpcWeb,
    /// The HTML error page.
    Html,
}

impl ResponseFormat {
    /// Chooses the format as Pomerium does, in its order of precedence.
    pub fn negotiate(path: &str, headers: &HeaderMap) -> Self {
        let header = |name| headers.get(name).and_then(|value: &HeaderValue| value.to_str().ok()).unwrap_or("");
        let content_type = header(CONTENT_TYPE);
        if header(USER_AGENT).contains("kubernetes/") {
            Self::KubernetesStatus
        } else if path == "/robots.txt" {
            Self::RobotsTxt
        } else if most_acceptable(header(ACCEPT), &["text/html", "application/json"]) == Some("application/json") {
            Self::Json
        } else if content_type == "application/grpc" || content_type.starts_with("application/grpc+") {
            Self::Grpc
        } else if content_type == "application/grpc-web-text" || content_type.starts_with("application/grpc-web+") {
            Self::GrpcWeb
        } else {
            Self::Html
        }
    }
}

impl ErrorPage {
    /// A page for `status` with its standard message.
    pub fn new(status: StatusCode, request_id: impl Into<String>) -> Self {
        Self { status, message: status_text(status).to_owned(), request_id: request_id.into(), explanation: None }
    }

    /// Replaces the message (Pomerium's deny reason text).
    #[must_use]
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    /// Adds why the request was denied (the HTML page and the JSON answer show it).
    #[must_use]
    pub fn with_explanation(mut self, explanation: crate::deny::Explanation) -> Self {
        self.explanation = Some(Box::new(explanation));
        self
    }

    /// Renders the page in the format the request asks for.
    pub fn render(&self, path: &str, request_headers: &HeaderMap) -> Response<ProxyBody> {
        self.render_as(ResponseFormat::negotiate(path, request_headers))
    }

    /// Renders the page in a given format.
    pub fn render_as(&self, format: ResponseFormat) -> Response<ProxyBody> {
        self.answer(format).into_response()
    }

    /// The page in a given format, as plain parts (for transports that are not HTTP, e.g. an
    /// ext_authz denial).
    pub fn answer(&self, format: ResponseFormat) -> Answer {
        match format {
            ResponseFormat::KubernetesStatus => self.kubernetes_status(),
            ResponseFormat::RobotsTxt => robots_txt(),
            ResponseFormat::Json => self.json(),
            ResponseFormat::Grpc => self.grpc("application/grpc+json"),
            ResponseFormat::GrpcWeb => self.grpc("application/grpc-web+json"),
            ResponseFormat::Html => self.html(),
        }
    }

    fn kubernetes_status(&self) -> Answer {
        let (reason, message) = match self.status.as_u16() {
            401 => ("Unauthorized", self.message.as_str()),
            403 => ("Forbidden", self.message.as_str()),
            404 => ("NotFound", self.message.as_str()),
            STATUS_DEVICE_UNAUTHORIZED | STATUS_INVALID_CLIENT_CERTIFICATE => {
                ("Unauthorized", status_text(self.status))
            }
            _ => ("", self.message.as_str()),
        };
        let document = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Status",
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": self.status.as_u16(),
        });
        Answer::new(self.status, "application/json", document.to_string())
    }

    fn json(&self) -> Answer {
        let mut document = serde_json::json!({ "error": self.message, "request_id": self.request_id });
        if let (Some(explanation), Some(fields)) = (&self.explanation, document.as_object_mut()) {
            let user = &explanation.for_user;
            fields.insert(
                "explanation".to_owned(),
                serde_json::json!({
                    "summary": user.summary, "findings": user.findings, "remediation": user.remediation,
                    "reasons": explanation.reasons,
                }),
            );
            // Pomerium's `PolicyEvaluationTraces`, one per sub-policy.
            let traces: Vec<serde_json::Value> = explanation
                .traces
                .iter()
                .map(|t| {
                    serde_json::json!({"id": t.id, "explanation": t.explanation, "remediation": t.remediation,
                        "allow": t.allow, "deny": t.deny})
                })
                .collect();
            fields.insert("policy_evaluation_traces".to_owned(), serde_json::Value::Array(traces));
        }
        Answer::new(self.status, "application/json", document.to_string())
    }

    fn grpc(&self, content_type: &'static str) -> Answer {
        let mut answer = Answer::new(self.status, content_type, "");
        answer.headers.insert("grpc-status", HeaderValue::from(grpc_code(self.status)));
        // A header value cannot carry every character of a message; gRPC percent-encodes it.
        if let Ok(message) = HeaderValue::from_str(&grpc_percent_encode(&self.message)) {
            answer.headers.insert("grpc-message", message);
        }
        answer
    }

    fn html(&self) -> Answer {
        let mut answer = Answer::new(self.status, "text/html; charset=utf-8", self.html_document());
        answer.headers.insert(INTERCEPTED_RESPONSE_HEADER, HeaderValue::from_static("true"));
        answer
    }

    fn html_document(&self) -> String {
        let code = self.status.as_u16();
        let title = self.status.canonical_reason().unwrap_or_else(|| status_text(self.status));
        let message = pages::escape(&self.message);
        let request_id = pages::escape(&self.request_id);
        let details = self.explanation.as_deref().map(explanation_html).unwrap_or_default();
        pages::document(
            &format!("{code} {title}"),
            &format!(
                "<p class=\"message\">{message}</p>\n{details}\
                 <p class=\"request-id\">Request ID: <code>{request_id}</code></p>\n"
            ),
        )
    }
}

/// The deny page's explanation: the denial in the user's terms, each sub-policy's explanation
/// and remediation (Pomerium's policy evaluation traces), and the decision's reasons.
fn explanation_html(explanation: &crate::deny::Explanation) -> String {
    let user = &explanation.for_user;
    let mut out =
        format!("<section class=\"explanation\">\n<p class=\"summary\">{}</p>\n", pages::escape(&user.summary));
    if !user.findings.is_empty() {
        out.push_str("<ul class=\"findings\">\n");
        for finding in &user.findings {
            out.push_str(&format!("<li>{}</li>\n", pages::escape(finding)));
        }
        out.push_str("</ul>\n");
    }
    out.push_str(&format!(
        "<p class=\"remediation\"><strong>What you can do:</strong> {}</p>\n",
        pages::escape(&user.remediation)
    ));
    if !explanation.traces.is_empty() {
        out.push_str("<h2>Policies</h2>\n<ul class=\"traces\">\n");
        for trace in &explanation.traces {
            let title = if trace.name.is_empty() { &trace.id } else { &trace.name };
            let result = match (trace.allow, trace.deny) {
                (_, true) => "denies this request",
                (true, false) => "allows this request",
                (false, false) => "does not allow this request",
            };
            out.push_str(&format!("<li class=\"trace\"><strong>{}</strong> {result}", pages::escape(title)));
            if !trace.explanation.is_empty() {
                out.push_str(&format!("<p class=\"policy-explanation\">{}</p>", pages::escape(&trace.explanation)));
            }
            if !trace.remediation.is_empty() {
                out.push_str(&format!("<p class=\"policy-remediation\">{}</p>", pages::escape(&trace.remediation)));
            }
            out.push_str("</li>\n");
        }
        out.push_str("</ul>\n");
    }
    out.push_str(&format!(
        "<details><summary>Decision details</summary><pre class=\"details\">{}</pre></details>\n</section>\n",
        pages::escape(&explanation.reasons)
    ));
    out
}

fn robots_txt() -> Answer {
    Answer::new(StatusCode::OK, "text/plain", "User-agent: *\nDisallow: /")
}

/// One of the proxy's own answers as plain parts: its status, headers and body. The pipeline
/// sends it as an HTTP response; the authorize service as an ext_authz denial.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

impl Answer {
    pub fn new(status: StatusCode, content_type: &'static str, body: impl Into<bytes::Bytes>) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        Answer { status, headers, body: body.into() }
    }

    /// A redirect (`status` 302 unless the caller says otherwise) to `location`, with no body.
    pub fn redirect(status: StatusCode, location: &str) -> Self {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(location) {
            headers.insert(http::header::LOCATION, value);
        }
        Answer { status, headers, body: bytes::Bytes::new() }
    }

    pub fn into_response(self) -> Response<ProxyBody> {
        let mut response = Response::new(if self.body.is_empty() { body::empty() } else { body::full(self.body) });
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers;
        response
    }
}

/// The gRPC code for an HTTP status (grpc's `http-grpc-status-mapping.md`).
pub fn grpc_code(status: StatusCode) -> u16 {
    match status.as_u16() {
        400 => 13,                   // INTERNAL
        401 => 16,                   // UNAUTHENTICATED
        403 => 7,                    // PERMISSION_DENIED
        404 => 12,                   // UNIMPLEMENTED
        429 | 502 | 503 | 504 => 14, // UNAVAILABLE
        _ => 2,                      // UNKNOWN
    }
}

fn grpc_percent_encode(message: &str) -> String {
    let mut encoded = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..0x7f).contains(&byte) && byte != b'%' {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// The offer the `Accept` header ranks first, as Pomerium's `rfc7231` negotiation does: media
/// ranges ordered by quality, then by specificity, then as the client listed them; the first
/// offer the best range covers wins. An empty header accepts nothing in particular.
pub fn most_acceptable<'a>(accept: &str, offers: &[&'a str]) -> Option<&'a str> {
    let mut ranges: Vec<(u32, &str, &str)> = accept.split(',').filter_map(parse_media_range).collect();
    ranges.sort_by_key(|range| std::cmp::Reverse(range.0));
    ranges.iter().find_map(|&(_, kind, subtype)| offers.iter().copied().find(|offer| covers(kind, subtype, offer)))
}

/// A media range as (weight, type, subtype), with the weight in thousandths of q times ten plus
/// a specificity bonus; `None` for unparsable ranges and `q=0`.
fn parse_media_range(range: &str) -> Option<(u32, &str, &str)> {
    let mut parts = range.split(';');
    let (kind, subtype) = parts.next()?.trim().split_once('/')?;
    let (kind, subtype) = (kind.trim(), subtype.trim());
    if kind.is_empty() || subtype.is_empty() {
        return None;
    }
    let mut quality = 1000;
    for parameter in parts {
        if let Some((name, value)) = parameter.split_once('=')
            && name.trim().eq_ignore_ascii_case("q")
        {
            quality = parse_quality(value.trim())?;
        }
    }
    if quality == 0 {
        return None;
    }
    let specificity = match (kind, subtype) {
        ("*", _) => 0,
        (_, "*") => 1,
        _ => 2,
    };
    Some((quality * 10 + specificity, kind, subtype))
}

/// A quality value in thousandths (RFC 9110 §12.4.2: at most three decimals).
fn parse_quality(value: &str) -> Option<u32> {
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole = match whole {
        "0" => 0,
        "1" => 1000,
        _ => return None,
    };
    let fraction = format!("{fraction:0<3}").parse::<u32>().ok()?;
    Some((whole + fraction).min(1000))
}

fn covers(kind: &str, subtype: &str, offer: &str) -> bool {
    let Some((offer_kind, offer_subtype)) = offer.split_once('/') else { return false };
    kind == "*"
        || (kind.eq_ignore_ascii_case(offer_kind) && (subtype == "*" || subtype.eq_ignore_ascii_case(offer_subtype)))
}

/// A new request id: 16 random bytes in the UUID v4 layout, as Envoy's `x-request-id`.
pub fn new_request_id() -> String {
    RequestId::new().as_str().to_owned()
}

/// A request id (a UUID v4 as text, Envoy's `x-request-id`), made without allocating; its
/// [`header`](RequestId::header) is one shared value for the upstream request and the response.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RequestId([u8; 36]);

impl RequestId {
    /// 16 random bytes in the UUID v4 layout.
    pub fn new() -> Self {
        // Request ids need uniqueness, not secrecy (they are shown to users): a per-thread
        // generator seeded from the OS is enough, and costs a fraction of a CSPRNG call per request.
        let mut bytes = fastrand::u128(..).to_le_bytes();
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = [b'-'; 36];
        let mut at = 0;
        for (index, byte) in bytes.iter().enumerate() {
            if matches!(index, 4 | 6 | 8 | 10) {
                at += 1;
            }
            for nibble in [byte >> 4, byte & 0x0f] {
                if let (Some(slot), Some(digit)) = (text.get_mut(at), HEX.get(usize::from(nibble))) {
                    *slot = *digit;
                }
                at += 1;
            }
        }
        Self(text)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The id as a header value (one allocation; clones share it).
    pub fn header(&self) -> HeaderValue {
        HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(self.0))
            .unwrap_or_else(|_| HeaderValue::from_static("-"))
    }
}

impl Default for RequestId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::ops::Deref for RequestId {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use super::*;
    use http_body_util::BodyExt as _;

    fn status(source: Source, kind: ErrorKind) -> u16 {
        ProxyError::new(source, kind).status().as_u16()
    }

    #[test]
    fn the_source_decides_the_status() {
        use ErrorKind as K;
        let table = [
            (Source::Client, K::BadRequest, 400),
            (Source::Client, K::Protocol, 400),
            (Source::Client, K::InvalidPath, 400),
            (Source::Client, K::UriTooLong, 414),
            (Source::Client, K::HeadersTooLarge, 431),
            (Source::Client, K::BodyTooLarge, 413),
            (Source::Client, K::Timeout, 408),
            (Source::Client, K::Closed, 499),
            (Source::Client, K::ClientCertificate, 495),
            (Source::Client, K::Misdirected, 421),
            (Source::Client, K::NoRoute, 404),
            (Source::Upstream, K::ConnectRefused, 502),
            (Source::Upstream, K::Connect, 502),
            (Source::Upstream, K::Tls, 502),
            (Source::Upstream, K::Closed, 502),
            (Source::Upstream, K::Protocol, 502),
            (Source::Upstream, K::HeadersTooLarge, 502),
            (Source::Upstream, K::Timeout, 504),
            (Source::Upstream, K::ConnectTimeout, 504),
            (Source::Proxy, K::NoHealthyUpstream, 503),
            (Source::Proxy, K::Unavailable, 503),
            (Source::Proxy, K::Internal, 500),
        ];
        for (source, kind, expected) in table {
            assert_eq!(status(source, kind), expected, "{source:?} {kind:?}");
        }
    }

    #[test]
    fn only_connect_failures_are_retryable() {
        assert!(ProxyError::upstream(ErrorKind::ConnectRefused).is_retryable());
        assert!(!ProxyError::upstream(ErrorKind::Timeout).is_retryable());
        assert!(!ProxyError::client(ErrorKind::ConnectRefused).is_retryable());
    }

    #[test]
    fn display_names_source_context_and_cause() {
        let error = ProxyError::upstream(ErrorKind::Tls)
            .with_context("connecting to app.internal")
            .with_cause(std::io::Error::other("unknown issuer"));
        assert_eq!(error.to_string(), "upstream error: Tls while connecting to app.internal: unknown issuer");
        assert!(std::error::Error::source(&error).is_some());
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|&(name, value)| (http::HeaderName::from_static(name), HeaderValue::from_static(value)))
            .collect()
    }

    #[test]
    fn format_follows_pomeriums_precedence() {
        use ResponseFormat as F;
        type Case = (&'static str, &'static [(&'static str, &'static str)], ResponseFormat);
        let table: &[Case] = &[
            ("/", &[], F::Html),
            ("/", &[("accept", "text/html,application/xhtml+xml,*/*;q=0.8")], F::Html),
            ("/", &[("accept", "application/json")], F::Json),
            ("/", &[("accept", "application/json, text/html")], F::Json),
            ("/", &[("accept", "text/html;q=0.5, application/json")], F::Json),
            ("/", &[("accept", "*/*")], F::Html),
            ("/", &[("accept", "application/*")], F::Json),
            ("/", &[("accept", "application/json;q=0")], F::Html),
            ("/robots.txt", &[("accept", "application/json")], F::RobotsTxt),
            ("/robots.txt", &[("user-agent", "kubectl/v1.30 kubernetes/abc")], F::KubernetesStatus),
            ("/", &[("content-type", "application/grpc")], F::Grpc),
            ("/", &[("content-type", "application/grpc+proto")], F::Grpc),
            ("/", &[("content-type", "application/grpc-web+proto")], F::GrpcWeb),
            ("/", &[("content-type", "application/grpc"), ("accept", "application/json")], F::Json),
        ];
        for (path, pairs, expected) in table {
            assert_eq!(ResponseFormat::negotiate(path, &headers(pairs)), *expected, "{path} {pairs:?}");
        }
    }

    #[test]
    fn quality_values_parse_strictly() {
        assert_eq!(parse_quality("0.5"), Some(500));
        assert_eq!(parse_quality("1"), Some(1000));
        assert_eq!(parse_quality("1.000"), Some(1000));
        assert_eq!(parse_quality("0.0001"), None);
        assert_eq!(parse_quality("2"), None);
        assert_eq!(parse_quality("-1"), None);
        assert_eq!(most_acceptable("garbage, ;;; ,/", &["text/html"]), None);
    }

    async fn body_text(response: Response<ProxyBody>) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn html_page_escapes_everything_and_is_marked() {
        let page = ErrorPage::new(StatusCode::FORBIDDEN, "<id>")
            .with_message("<script>alert('x')</script>")
            .with_explanation(crate::deny::Explanation {
                for_user: policy::explain::ForUser {
                    summary: "a & b \"c\"".to_owned(),
                    findings: vec!["<b>".to_owned()],
                    remediation: "r".to_owned(),
                },
                traces: Vec::new(),
                reasons: String::new(),
            });
        let response = page.render("/", &HeaderMap::new());
        assert_eq!(response.status(), 403);
        assert_eq!(response.headers()[INTERCEPTED_RESPONSE_HEADER], "true");
        assert_eq!(response.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
        let html = body_text(response).await;
        assert!(html.contains("403 Forbidden"));
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
        assert!(html.contains("a &amp; b &quot;c&quot;"));
        assert!(html.contains("&lt;id&gt;"));
        assert!(!html.contains("<script>"));
    }

    #[tokio::test]
    async fn json_page_carries_error_and_request_id() {
        let page = ErrorPage::new(StatusCode::FORBIDDEN, "req-1");
        let response = page.render_as(ResponseFormat::Json);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        let json: serde_json::Value = serde_json::from_str(&body_text(response).await).unwrap();
        assert_eq!(json, serde_json::json!({"error": "Forbidden", "request_id": "req-1"}));
    }

    #[tokio::test]
    async fn kubernetes_status_names_the_reason() {
        let cases =
            [(403, "Forbidden", "Forbidden"), (404, "NotFound", "Not Found"), (500, "", "Internal Server Error")];
        for (code, reason, message) in cases {
            let page = ErrorPage::new(StatusCode::from_u16(code).unwrap(), "id");
            let json: serde_json::Value =
                serde_json::from_str(&body_text(page.render_as(ResponseFormat::KubernetesStatus)).await).unwrap();
            assert_eq!(
                json,
                serde_json::json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                    "message": message, "reason": reason, "code": code})
            );
        }
        let page = ErrorPage::new(StatusCode::from_u16(495).unwrap(), "id").with_message("custom");
        let json: serde_json::Value =
            serde_json::from_str(&body_text(page.render_as(ResponseFormat::KubernetesStatus)).await).unwrap();
        assert_eq!(json["reason"], "Unauthorized");
        assert_eq!(json["message"], "a valid client certificate is required to access this page");
    }

    #[tokio::test]
    async fn robots_txt_is_allowed_through_any_denial() {
        let page = ErrorPage::new(StatusCode::FORBIDDEN, "id");
        let response = page.render("/robots.txt", &HeaderMap::new());
        assert_eq!(response.status(), 200);
        assert_eq!(body_text(response).await, "User-agent: *\nDisallow: /");
    }

    #[test]
    fn grpc_status_rides_in_headers() {
        let page = ErrorPage::new(StatusCode::FORBIDDEN, "id").with_message("denied: 100%\n");
        let response = page.render_as(ResponseFormat::Grpc);
        assert_eq!(response.headers()["grpc-status"], "7");
        assert_eq!(response.headers()["grpc-message"], "denied: 100%25%0A");
        assert_eq!(response.headers()[CONTENT_TYPE], "application/grpc+json");
    }

    #[test]
    fn pomerium_statuses_have_pomerium_texts() {
        assert_eq!(
            status_text(StatusCode::from_u16(495).unwrap()),
            "a valid client certificate is required to access this page"
        );
        assert!(status_text(StatusCode::from_u16(450).unwrap()).starts_with("your device fails"));
        assert_eq!(status_text(StatusCode::NOT_FOUND), "Not Found");
        assert_eq!(ProxyError::upstream(ErrorKind::Timeout).page("id").message, "Gateway Timeout");
    }

    #[test]
    fn request_ids_are_uuid_v4_shaped_and_distinct() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        let groups: Vec<&str> = a.split('-').collect();
        assert_eq!(groups.iter().map(|g| g.len()).collect::<Vec<_>>(), [8, 4, 4, 4, 12]);
        assert!(groups[2].starts_with('4'));
        assert!(matches!(groups[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'));
        assert!(a.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        let id = RequestId::new();
        assert_eq!(id.header().to_str().unwrap(), id.as_str());
        assert_eq!(id.to_string(), id.as_str());
    }
}
