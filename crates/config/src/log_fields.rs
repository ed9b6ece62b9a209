//! `access_log_fields` and `authorize_log_fields`: the fields of the access log line and of the
//! authorize log line, by Pomerium's names (`internal/log/access.go`, `authorize.go`), with its
//! defaults. Besides the names below, `headers.<name>` logs one request header; for the authorize
//! line, `headers` logs them all.

use crate::diagnostic::UnknownValue;
use crate::read::{Field, Sink};

/// The access log fields Pomerium knows, in its order.
pub const ACCESS_FIELDS: &[&str] = &[
    "authority",
    "duration",
    "forwarded-for",
    "ip",
    "dest-ip",
    "dest-port",
    "protocol-version",
    "method",
    "path",
    "query",
    "referer",
    "request-id",
    "response-code",
    "response-code-details",
    "size",
    "upstream-cluster",
    "user-agent",
    "upstream-transport-failure-reason",
    "downstream-transport-failure-reason",
    "tls-version",
    "tls-sni-hostname",
    "tls-cipher-suite",
    "tls-local-cert",
    "tls-peer-cert",
];

/// Pomerium's `defaultAccessLogFields`.
pub const DEFAULT_ACCESS_FIELDS: &[&str] = &[
    "upstream-cluster",
    "method",
    "authority",
    "path",
    "user-agent",
    "referer",
    "forwarded-for",
    "request-id",
    "duration",
    "size",
    "response-code",
    "response-code-details",
];

/// The authorize log fields Pomerium knows.
pub const AUTHORIZE_FIELDS: &[&str] = &[
    "body",
    "check-request-id",
    "cluster-stat-name",
    "email",
    "envoy-route-checksum",
    "envoy-route-id",
    "headers",
    "host",
    "id-token",
    "id-token-claims",
    "impersonate-email",
    "impersonate-session-id",
    "impersonate-user-id",
    "ip",
    "mcp-method",
    "mcp-tool",
    "mcp-tool-parameters",
    "method",
    "path",
    "query",
    "removed-groups-count",
    "request-id",
    "route-checksum",
    "route-id",
    "service-account-id",
    "session-id",
    "user",
];

/// Pomerium's `DefaultAuthorizeLogFields`.
pub const DEFAULT_AUTHORIZE_FIELDS: &[&str] = &[
    "request-id",
    "check-request-id",
    "cluster-stat-name",
    "method",
    "path",
    "host",
    "ip",
    "session-id",
    "impersonate-session-id",
    "impersonate-user-id",
    "impersonate-email",
    "removed-groups-count",
    "service-account-id",
    "user",
    "email",
    "envoy-route-checksum",
    "envoy-route-id",
    "route-checksum",
    "route-id",
];

/// The header a `headers.<name>` field names (Pomerium's `GetHeaderField`).
pub fn header_field(field: &str) -> Option<&str> {
    field.strip_prefix("headers.").filter(|name| !name.is_empty())
}

/// Reads a log field list, refusing names not in `known` (nor `headers.<name>`) at the item.
pub(crate) fn read(field: &Field, sink: &mut Sink, known: &[&str]) -> Option<Vec<String>> {
    let items = field.list(sink)?;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let name = item.value.trim();
        if known.contains(&name) || header_field(name).is_some() {
            out.push(name.to_owned());
            continue;
        }
        let help = Some(ppl::suggest::help(name, known, "fields"));
        sink.error(
            &field.origin,
            UnknownValue { option: field.name.clone(), text: name.to_owned(), span: item.span.into(), help },
        );
    }
    Some(out)
}
