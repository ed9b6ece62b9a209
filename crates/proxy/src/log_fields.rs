//! Which fields the access and authorize log lines carry (`access_log_fields`,
//! `authorize_log_fields`), decided once per configuration: a bit per known field (in the order
//! of [`config::log_fields::ACCESS_FIELDS`] / [`config::log_fields::AUTHORIZE_FIELDS`]) and the
//! headers to copy. A field not configured costs a bit test and nothing else.

use http::{HeaderMap, HeaderName, HeaderValue};
use std::fmt;

/// The fields of one log line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LogFields {
    bits: u64,
    /// `headers.<name>`, in the order configured.
    headers: Vec<HeaderName>,
    /// `headers`: every request header.
    all_headers: bool,
}

impl LogFields {
    /// The fields named in `configured` (validated by the config crate), or `defaults`.
    pub(crate) fn new(configured: Option<&[String]>, known: &[&str], defaults: &[&str]) -> Self {
        let mut fields = LogFields::default();
        let names: Vec<&str> = match configured {
            Some(list) => list.iter().map(String::as_str).collect(),
            None => defaults.to_vec(),
        };
        for name in names {
            if name == "headers" {
                fields.all_headers = true;
            } else if let Some(header) = config::log_fields::header_field(name) {
                if let Ok(header) = HeaderName::from_bytes(header.as_bytes()) {
                    fields.headers.push(header);
                }
            } else if let Some(index) = known.iter().position(|known| *known == name) {
                fields.bits |= 1 << index;
            }
        }
        fields
    }

    /// Whether the field with this index in the known list is configured.
    pub(crate) fn has(&self, index: usize) -> bool {
        self.bits & (1 << index) != 0
    }

    /// The configured headers of `headers`, for the `headers` field; `None` when none is asked.
    pub(crate) fn headers<'a>(&'a self, headers: &'a HeaderMap) -> Option<LoggedHeaders<'a>> {
        (self.all_headers || !self.headers.is_empty()).then_some(LoggedHeaders { fields: self, headers })
    }
}

/// The `headers` field: a JSON object of the configured request headers (Pomerium logs them under
/// `headers`), rendered only when the line is written.
pub(crate) struct LoggedHeaders<'a> {
    fields: &'a LogFields,
    headers: &'a HeaderMap,
}

impl fmt::Display for LoggedHeaders<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut object = serde_json::Map::new();
        let text = |name: &HeaderName| {
            let values: Vec<&str> = self.headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect();
            serde_json::Value::String(values.join(","))
        };
        if self.fields.all_headers {
            for name in self.headers.keys() {
                object.insert(name.as_str().to_owned(), text(name));
            }
        }
        for name in &self.fields.headers {
            if self.headers.contains_key(name) {
                object.insert(name.as_str().to_owned(), text(name));
            }
        }
        write!(f, "{}", serde_json::Value::Object(object))
    }
}

/// The request's authority for the log: the URI's (HTTP/2) or the Host header (HTTP/1), shared
/// rather than copied (both are reference-counted bytes).
#[derive(Debug)]
pub(crate) enum LoggedAuthority {
    Uri(http::uri::Authority),
    Host(Option<HeaderValue>),
}

impl LoggedAuthority {
    pub(crate) fn as_str(&self) -> &str {
        match self {
            LoggedAuthority::Uri(authority) => authority.as_str(),
            LoggedAuthority::Host(host) => host.as_ref().and_then(|h| h.to_str().ok()).unwrap_or_default(),
        }
    }
}

/// What the access log line needs of a request, taken before the request is handed on: only the
/// configured fields (header values are shared, not copied).
#[derive(Debug, Default)]
pub(crate) struct Captured {
    pub authority: Option<LoggedAuthority>,
    pub user_agent: Option<HeaderValue>,
    pub referer: Option<HeaderValue>,
    pub forwarded_for: Option<HeaderValue>,
    pub headers: Option<HeaderMap>,
    pub version: http::Version,
}

impl Captured {
    pub(crate) fn new<B>(fields: &LogFields, request: &http::Request<B>) -> Self {
        let headers = request.headers();
        let header = |index: usize, name: http::header::HeaderName| {
            if fields.has(index) { headers.get(name).cloned() } else { None }
        };
        Captured {
            authority: fields.has(access::AUTHORITY).then(|| match request.uri().authority() {
                Some(authority) => LoggedAuthority::Uri(authority.clone()),
                None => LoggedAuthority::Host(headers.get(http::header::HOST).cloned()),
            }),
            user_agent: header(access::USER_AGENT, http::header::USER_AGENT),
            referer: header(access::REFERER, http::header::REFERER),
            forwarded_for: header(access::FORWARDED_FOR, HeaderName::from_static("x-forwarded-for")),
            headers: (fields.all_headers || !fields.headers.is_empty()).then(|| headers.clone()),
            version: request.version(),
        }
    }
}

/// A header value as text for a log line (empty when absent, as Pomerium logs it).
pub(crate) fn text(value: Option<&HeaderValue>) -> &str {
    value.map_or("", |v| v.to_str().unwrap_or("<not text>"))
}

/// Envoy's name of a protocol version (`%PROTOCOL%`).
pub(crate) fn protocol(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

/// Indexes into [`config::log_fields::ACCESS_FIELDS`].
pub(crate) mod access {
    pub const AUTHORITY: usize = 0;
    pub const DURATION: usize = 1;
    pub const FORWARDED_FOR: usize = 2;
    pub const IP: usize = 3;
    pub const DEST_IP: usize = 4;
    pub const DEST_PORT: usize = 5;
    pub const PROTOCOL_VERSION: usize = 6;
    pub const METHOD: usize = 7;
    pub const PATH: usize = 8;
    pub const QUERY: usize = 9;
    pub const REFERER: usize = 10;
    pub const REQUEST_ID: usize = 11;
    pub const RESPONSE_CODE: usize = 12;
    pub const RESPONSE_CODE_DETAILS: usize = 13;
    pub const SIZE: usize = 14;
    pub const UPSTREAM_CLUSTER: usize = 15;
    pub const USER_AGENT: usize = 16;
    pub const TLS_SNI_HOSTNAME: usize = 20;
}

/// Indexes into [`config::log_fields::AUTHORIZE_FIELDS`].
pub(crate) mod authorize {
    pub const CHECK_REQUEST_ID: usize = 1;
    pub const EMAIL: usize = 3;
    pub const ENVOY_ROUTE_ID: usize = 5;
    pub const HOST: usize = 7;
    pub const ID_TOKEN: usize = 8;
    pub const ID_TOKEN_CLAIMS: usize = 9;
    pub const IP: usize = 13;
    pub const METHOD: usize = 17;
    pub const PATH: usize = 18;
    pub const QUERY: usize = 19;
    pub const REQUEST_ID: usize = 21;
    pub const ROUTE_ID: usize = 23;
    pub const SERVICE_ACCOUNT_ID: usize = 24;
    pub const SESSION_ID: usize = 25;
    pub const USER: usize = 26;
}

/// Query parameters that carry credentials (session handles, the IdP's code, tokens); the access
/// log shows them as `REDACTED`.
const CREDENTIAL_PARAMETERS: &[&str] = &[
    "pomerium_session",
    "pomerium_session_encrypted",
    "pomerium_jwt",
    "code",
    "access_token",
    "id_token",
    "refresh_token",
];

/// The request target with the values of credential parameters replaced, for logging. Borrows
/// when there is nothing to hide (the common case costs one scan for `?`).
pub(crate) fn redact_credentials(target: &str) -> std::borrow::Cow<'_, str> {
    let Some((path, query)) = target.split_once('?') else { return target.into() };
    let secret = |pair: &str| CREDENTIAL_PARAMETERS.contains(&pair.split('=').next().unwrap_or_default());
    if !query.split('&').any(secret) {
        return target.into();
    }
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if secret(pair) => format!("{name}=REDACTED"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{path}?{}", query.join("&")).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use config::log_fields::{ACCESS_FIELDS, AUTHORIZE_FIELDS};

    #[test]
    fn indexes_name_the_fields() {
        let a = [
            (access::AUTHORITY, "authority"),
            (access::DURATION, "duration"),
            (access::FORWARDED_FOR, "forwarded-for"),
            (access::IP, "ip"),
            (access::DEST_IP, "dest-ip"),
            (access::DEST_PORT, "dest-port"),
            (access::PROTOCOL_VERSION, "protocol-version"),
            (access::METHOD, "method"),
            (access::PATH, "path"),
            (access::QUERY, "query"),
            (access::REFERER, "referer"),
            (access::REQUEST_ID, "request-id"),
            (access::RESPONSE_CODE, "response-code"),
            (access::RESPONSE_CODE_DETAILS, "response-code-details"),
            (access::SIZE, "size"),
            (access::UPSTREAM_CLUSTER, "upstream-cluster"),
            (access::USER_AGENT, "user-agent"),
            (access::TLS_SNI_HOSTNAME, "tls-sni-hostname"),
        ];
        for (index, name) in a {
            assert_eq!(ACCESS_FIELDS[index], name);
        }
        let z = [
            (authorize::CHECK_REQUEST_ID, "check-request-id"),
            (authorize::EMAIL, "email"),
            (authorize::ENVOY_ROUTE_ID, "envoy-route-id"),
            (authorize::HOST, "host"),
            (authorize::ID_TOKEN, "id-token"),
            (authorize::ID_TOKEN_CLAIMS, "id-token-claims"),
            (authorize::IP, "ip"),
            (authorize::METHOD, "method"),
            (authorize::PATH, "path"),
            (authorize::QUERY, "query"),
            (authorize::REQUEST_ID, "request-id"),
            (authorize::ROUTE_ID, "route-id"),
            (authorize::SERVICE_ACCOUNT_ID, "service-account-id"),
            (authorize::SESSION_ID, "session-id"),
            (authorize::USER, "user"),
        ];
        for (index, name) in z {
            assert_eq!(AUTHORIZE_FIELDS[index], name);
        }
        assert!(ACCESS_FIELDS.len() <= 64 && AUTHORIZE_FIELDS.len() <= 64);
    }

    #[test]
    fn defaults_and_headers() {
        let d = LogFields::new(None, ACCESS_FIELDS, config::log_fields::DEFAULT_ACCESS_FIELDS);
        assert!(d.has(access::PATH) && !d.has(access::QUERY) && !d.has(access::IP));
        let list = vec!["ip".to_owned(), "headers.X-Foo".to_owned()];
        let c = LogFields::new(Some(&list), ACCESS_FIELDS, &[]);
        assert!(c.has(access::IP) && !c.has(access::PATH));
        let mut h = HeaderMap::new();
        h.insert("x-foo", http::HeaderValue::from_static("bar"));
        h.insert("cookie", http::HeaderValue::from_static("secret"));
        assert_eq!(c.headers(&h).map(|l| l.to_string()).as_deref(), Some(r#"{"x-foo":"bar"}"#));
    }
}
