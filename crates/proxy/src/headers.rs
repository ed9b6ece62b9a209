//! Header manipulation on the way up and down: pure functions over `http::HeaderMap`.
//!
//! - [`remove_hop_by_hop`]: the headers that belong to one connection, not to the message.
//! - [`set_forwarding_headers`]: X-Forwarded-For / -Proto and the trusted client address, as
//!   Envoy's HTTP connection manager does with `use_remote_address: true` (Pomerium's setting),
//!   `xff_num_trusted_hops` and `skip_xff_append`.
//! - [`append_forwarded_host`]: X-Forwarded-Host after a host rewrite.
//! - [`set_response_headers`], [`rewrite_response_headers`]: a route's `set_response_headers` and
//!   `rewrite_response_headers` (its `set_request_headers` / `remove_request_headers` are applied
//!   with the identity headers, in `upstream_headers`).

use std::net::IpAddr;

use http::header::{CONNECTION, HOST, TE, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue};

/// The trusted client address Envoy reports to the upstream.
pub const EXTERNAL_ADDRESS_HEADER: HeaderName = HeaderName::from_static("x-envoy-external-address");
/// X-Forwarded-For.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// X-Forwarded-Proto.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// X-Forwarded-Host.
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Forwarding claims dropped unless a hop is trusted (see [`set_forwarding_headers`]).
const UNTRUSTED_CLAIMS: [HeaderName; 4] = [
    X_FORWARDED_HOST,
    HeaderName::from_static("x-forwarded-port"),
    HeaderName::from_static("forwarded"),
    HeaderName::from_static("x-real-ip"),
];

/// Hop-by-hop headers that are always removed (RFC 9110 §7.6.1, plus the legacy ones).
const HOP_BY_HOP: [HeaderName; 6] = [
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::PROXY_AUTHENTICATE,
    http::header::PROXY_AUTHORIZATION,
    http::header::TRAILER,
    http::header::TRANSFER_ENCODING,
];

/// Removes the headers that belong to the connection rather than the message: `Connection` and
/// every header it names, `Keep-Alive`, `Proxy-*`, `Trailer`, `Transfer-Encoding`, `TE` (kept
/// when it is exactly `trailers`, which gRPC needs), and `Upgrade`.
///
/// With `allowed_upgrade` (the protocol the route allows, already checked), `Upgrade` is kept and
/// `Connection` becomes `upgrade`, so that the upgrade reaches the upstream.
///
/// `Host` is never removed, even when `Connection` names it: routing and `preserve_host_header`
/// need it. Headers the proxy sets itself (forwarding, identity) must be set after this call.
pub fn remove_hop_by_hop(headers: &mut HeaderMap, allowed_upgrade: Option<&str>) {
    // The usual tokens build no list: `keep-alive` is removed below anyway, `upgrade` is kept
    // here, `close` is removed by name.
    let mut close = false;
    let mut usual = |token: &str| {
        close |= token.eq_ignore_ascii_case("close");
        ["keep-alive", "close", "upgrade"].iter().any(|usual| token.eq_ignore_ascii_case(usual))
    };
    let nominated: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|token| !usual(token))
        .filter_map(|token| HeaderName::from_bytes(token.as_bytes()).ok())
        .collect();
    for name in nominated {
        if name != UPGRADE && name != TE && name != HOST {
            headers.remove(name);
        }
    }
    if close {
        headers.remove("close");
    }
    headers.remove(CONNECTION);
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    if !headers.get_all(TE).iter().all(|value| value.as_bytes().eq_ignore_ascii_case(b"trailers")) {
        headers.remove(TE);
    }
    match allowed_upgrade.and_then(|protocol| HeaderValue::from_str(protocol).ok()) {
        Some(protocol) if headers.contains_key(UPGRADE) => {
            headers.insert(UPGRADE, protocol);
            headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        }
        _ => {
            headers.remove(UPGRADE);
        }
    }
}

/// How the proxy trusts and extends forwarding headers (Pomerium's global options).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ForwardingOptions {
    /// `xff_num_trusted_hops`: how many proxies in front of this one are trusted to have
    /// appended to X-Forwarded-For (and to have set X-Forwarded-Proto).
    pub xff_num_trusted_hops: u32,
    /// `skip_xff_append`: leave X-Forwarded-For as received.
    pub skip_xff_append: bool,
}

/// The trusted client address: with N trusted hops, the Nth address from the right of the
/// received X-Forwarded-For; with none, or when that entry is missing or not an address, the
/// peer's address (Envoy's `use_remote_address` rules).
pub fn trusted_client_address(headers: &HeaderMap, peer: IpAddr, xff_num_trusted_hops: u32) -> IpAddr {
    if xff_num_trusted_hops == 0 {
        return peer;
    }
    let hops = usize::try_from(xff_num_trusted_hops).unwrap_or(usize::MAX);
    forwarded_for_entries(headers)
        .iter()
        .rev()
        .nth(hops.saturating_sub(1))
        .and_then(|entry| entry.parse::<IpAddr>().ok())
        .unwrap_or(peer)
}

/// Sets the forwarding headers for the upstream and returns the trusted client address:
///
/// - X-Forwarded-For: the peer's address is appended (unless `skip_xff_append`);
/// - X-Forwarded-Proto: the downstream scheme, unless a trusted hop set it;
/// - `x-envoy-external-address`: the trusted client address when it is external; a value sent by
///   the client is always dropped;
/// - X-Forwarded-Host, X-Forwarded-Port, Forwarded and X-Real-IP: claims only a trusted hop may
///   make; with no trusted hop (`xff_num_trusted_hops: 0`) they are dropped, so that an upstream
///   building URLs or logging clients from them never takes a client's word for them.
pub fn set_forwarding_headers(headers: &mut HeaderMap, peer: IpAddr, tls: bool, options: ForwardingOptions) -> IpAddr {
    let client = trusted_client_address(headers, peer, options.xff_num_trusted_hops);
    if options.xff_num_trusted_hops == 0 {
        for claim in UNTRUSTED_CLAIMS {
            headers.remove(claim);
        }
    }
    if !options.skip_xff_append
        && let Some(value) = forwarded_for_with(headers, peer)
    {
        headers.insert(X_FORWARDED_FOR, value);
    }
    if options.xff_num_trusted_hops == 0 || !headers.contains_key(X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(if tls { "https" } else { "http" }));
    }
    headers.remove(EXTERNAL_ADDRESS_HEADER);
    if !is_internal_address(client)
        && let Ok(value) = HeaderValue::from_str(&client.to_string())
    {
        headers.insert(EXTERNAL_ADDRESS_HEADER, value);
    }
    client
}

/// X-Forwarded-For's entries (across repeated header lines, trimmed, empty ones dropped) and then
/// `peer`, joined by `, `: written once into one buffer (an address fits on the stack).
fn forwarded_for_with(headers: &HeaderMap, peer: IpAddr) -> Option<HeaderValue> {
    use std::io::Write as _;
    let mut address = [0u8; 64];
    let written = {
        let mut cursor = std::io::Cursor::new(address.as_mut_slice());
        write!(cursor, "{peer}").ok()?;
        usize::try_from(cursor.position()).ok()?
    };
    let address = address.get(..written)?;
    let entries = || {
        headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
    };
    if entries().next().is_none() {
        return HeaderValue::from_bytes(address).ok();
    }
    let mut joined = Vec::with_capacity(entries().map(|entry| entry.len() + 2).sum::<usize>() + address.len());
    for entry in entries() {
        joined.extend_from_slice(entry.as_bytes());
        joined.extend_from_slice(b", ");
    }
    joined.extend_from_slice(address);
    HeaderValue::from_maybe_shared(bytes::Bytes::from(joined)).ok()
}

/// Every X-Forwarded-For entry, across repeated header lines, trimmed.
fn forwarded_for_entries(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Envoy's default internal addresses: RFC 1918, loopback, and IPv6 unique-local.
pub fn is_internal_address(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => v4.is_private() || v4.is_loopback(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.is_private() || v4.is_loopback(),
            None => v6.is_loopback() || v6.is_unique_local(),
        },
    }
}

/// Appends the original host to X-Forwarded-Host after a host rewrite, unless it is already the
/// last entry (Envoy's `append_x_forwarded_host`).
pub fn append_forwarded_host(headers: &mut HeaderMap, original_host: &str) {
    let existing: Vec<&str> = headers
        .get_all(X_FORWARDED_HOST)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .collect();
    if existing.last() == Some(&original_host) {
        return;
    }
    let joined = existing.iter().copied().chain([original_host]).collect::<Vec<_>>().join(", ");
    if let Ok(value) = HeaderValue::from_str(&joined) {
        headers.insert(X_FORWARDED_HOST, value);
    }
}

/// `set_response_headers`: each header replaces what the upstream sent.
pub fn set_response_headers(headers: &mut HeaderMap, set: &[(HeaderName, HeaderValue)]) {
    for (name, value) in set {
        headers.insert(name, value.clone());
    }
}

/// One `rewrite_response_headers` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHeaderRewrite {
    /// The response header to look at (e.g. `Location`).
    pub header: HeaderName,
    /// The prefix to replace; empty matches every value.
    pub prefix: String,
    /// What replaces the prefix.
    pub value: String,
}

/// `rewrite_response_headers`: for each rule, every value of its header that starts with the
/// prefix has that prefix replaced. Values that are not text are left alone.
pub fn rewrite_response_headers(headers: &mut HeaderMap, rules: &[ResponseHeaderRewrite]) {
    for rule in rules {
        let rewritten: Option<Vec<HeaderValue>> = headers
            .get_all(&rule.header)
            .iter()
            .map(|value| rewrite_value(value, rule))
            .collect::<Option<Vec<_>>>()
            .filter(|values| !values.is_empty());
        if let Some(values) = rewritten {
            headers.remove(&rule.header);
            for value in values {
                headers.append(&rule.header, value);
            }
        }
    }
}

/// The value after one rule; `None` only when the result is not a valid header value.
fn rewrite_value(value: &HeaderValue, rule: &ResponseHeaderRewrite) -> Option<HeaderValue> {
    let Some(rest) = value.to_str().ok().and_then(|text| text.strip_prefix(rule.prefix.as_str())) else {
        return Some(value.clone());
    };
    HeaderValue::from_str(&format!("{}{rest}", rule.value)).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn names(headers: &HeaderMap) -> Vec<&str> {
        let mut names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        names
    }

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut headers = map(&[
            ("connection", "keep-alive, X-Secret, upgrade, host"),
            ("host", "app.test"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authorization", "Basic abc"),
            ("te", "gzip"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("x-kept", "yes"),
            ("authorization", "Bearer t"),
        ]);
        remove_hop_by_hop(&mut headers, None);
        assert_eq!(names(&headers), ["authorization", "host", "x-kept"]);
    }

    #[test]
    fn te_trailers_survives_for_grpc() {
        let mut headers = map(&[("te", "trailers")]);
        remove_hop_by_hop(&mut headers, None);
        assert_eq!(headers["te"], "trailers");
        let mut headers = map(&[("te", "trailers"), ("te", "deflate")]);
        remove_hop_by_hop(&mut headers, None);
        assert!(!headers.contains_key("te"));
    }

    #[test]
    fn an_allowed_upgrade_is_kept() {
        let mut headers = map(&[("connection", "Upgrade, keep-alive"), ("upgrade", "WebSocket"), ("keep-alive", "1")]);
        remove_hop_by_hop(&mut headers, Some("websocket"));
        assert_eq!(headers["upgrade"], "websocket");
        assert_eq!(headers["connection"], "upgrade");
        assert!(!headers.contains_key("keep-alive"));
        // Allowing an upgrade does not invent one.
        let mut headers = map(&[("connection", "close")]);
        remove_hop_by_hop(&mut headers, Some("websocket"));
        assert!(headers.is_empty());
    }

    #[test]
    fn malformed_connection_tokens_are_ignored() {
        let mut headers = map(&[("connection", ", ,bad header,(x)"), ("x-a", "1")]);
        remove_hop_by_hop(&mut headers, None);
        assert_eq!(names(&headers), ["x-a"]);
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn trusted_client_address_follows_envoy() {
        let xff = map(&[("x-forwarded-for", "203.0.113.128, 203.0.113.10"), ("x-forwarded-for", "203.0.113.1")]);
        let peer = ip("192.0.2.5");
        let table = [(0, "192.0.2.5"), (1, "203.0.113.1"), (2, "203.0.113.10"), (3, "203.0.113.128"), (4, "192.0.2.5")];
        for (hops, expected) in table {
            assert_eq!(trusted_client_address(&xff, peer, hops), ip(expected), "{hops} hops");
        }
        let bad = map(&[("x-forwarded-for", "not-an-ip")]);
        assert_eq!(trusted_client_address(&bad, peer, 1), peer);
        assert_eq!(trusted_client_address(&HeaderMap::new(), peer, 1), peer);
        assert_eq!(trusted_client_address(&xff, peer, u32::MAX), peer);
    }

    #[test]
    fn forwarding_headers_append_and_overwrite() {
        let mut headers = map(&[
            ("x-forwarded-for", "203.0.113.128"),
            ("x-forwarded-proto", "http"),
            ("x-envoy-external-address", "1.1.1.1"),
        ]);
        let client = set_forwarding_headers(&mut headers, ip("198.51.100.7"), true, ForwardingOptions::default());
        assert_eq!(client, ip("198.51.100.7"));
        assert_eq!(headers["x-forwarded-for"], "203.0.113.128, 198.51.100.7");
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert_eq!(headers["x-envoy-external-address"], "198.51.100.7");
    }

    #[test]
    fn trusted_hops_keep_their_proto_and_name_the_client() {
        let mut headers = map(&[("x-forwarded-for", "203.0.113.9"), ("x-forwarded-proto", "https")]);
        let options = ForwardingOptions { xff_num_trusted_hops: 1, skip_xff_append: false };
        let client = set_forwarding_headers(&mut headers, ip("10.0.0.2"), false, options);
        assert_eq!(client, ip("203.0.113.9"));
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert_eq!(headers["x-forwarded-for"], "203.0.113.9, 10.0.0.2");
        assert_eq!(headers["x-envoy-external-address"], "203.0.113.9");
    }

    #[test]
    fn skip_xff_append_and_internal_clients() {
        let mut headers = map(&[("x-forwarded-for", "a, b"), ("x-envoy-external-address", "6.6.6.6")]);
        let options = ForwardingOptions { xff_num_trusted_hops: 0, skip_xff_append: true };
        set_forwarding_headers(&mut headers, ip("127.0.0.1"), false, options);
        assert_eq!(headers["x-forwarded-for"], "a, b");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert!(!headers.contains_key("x-envoy-external-address"), "internal clients are not external");
        for internal in ["10.1.2.3", "172.16.0.1", "192.168.1.1", "127.0.0.1", "::1", "fd00::1", "::ffff:10.0.0.1"] {
            assert!(is_internal_address(ip(internal)), "{internal}");
        }
        for external in ["8.8.8.8", "2001:db8::1", "172.32.0.1"] {
            assert!(!is_internal_address(ip(external)), "{external}");
        }
    }

    #[test]
    fn forwarded_host_is_appended_once() {
        let mut headers = HeaderMap::new();
        append_forwarded_host(&mut headers, "app.example.com");
        assert_eq!(headers["x-forwarded-host"], "app.example.com");
        append_forwarded_host(&mut headers, "app.example.com");
        assert_eq!(headers["x-forwarded-host"], "app.example.com");
        append_forwarded_host(&mut headers, "other.example.com");
        assert_eq!(headers["x-forwarded-host"], "app.example.com, other.example.com");
    }

    #[test]
    fn response_headers_are_set_over_the_upstreams() {
        let mut headers = map(&[("x-frame-options", "ALLOW"), ("x-frame-options", "DENY")]);
        set_response_headers(
            &mut headers,
            &[(HeaderName::from_static("x-frame-options"), HeaderValue::from_static("SAMEORIGIN"))],
        );
        assert_eq!(headers.get_all("x-frame-options").iter().collect::<Vec<_>>(), ["SAMEORIGIN"]);
    }

    #[test]
    fn response_header_prefixes_are_rewritten() {
        let rule = ResponseHeaderRewrite {
            header: HeaderName::from_static("location"),
            prefix: "http://internal:8080/".to_owned(),
            value: "https://app.example.com/".to_owned(),
        };
        let mut headers = map(&[("location", "http://internal:8080/login?x=1")]);
        rewrite_response_headers(&mut headers, std::slice::from_ref(&rule));
        assert_eq!(headers["location"], "https://app.example.com/login?x=1");

        let mut headers = map(&[("location", "https://elsewhere/")]);
        rewrite_response_headers(&mut headers, std::slice::from_ref(&rule));
        assert_eq!(headers["location"], "https://elsewhere/");

        let mut headers = map(&[("link", "</a>"), ("link", "</b>")]);
        let rule = ResponseHeaderRewrite {
            header: HeaderName::from_static("link"),
            prefix: "</".to_owned(),
            value: "</x/".to_owned(),
        };
        rewrite_response_headers(&mut headers, &[rule]);
        assert_eq!(headers.get_all("link").iter().collect::<Vec<_>>(), ["</x/a>", "</x/b>"]);

        let mut headers = HeaderMap::new();
        let rule = ResponseHeaderRewrite {
            header: HeaderName::from_static("location"),
            prefix: String::new(),
            value: "x".to_owned(),
        };
        rewrite_response_headers(&mut headers, &[rule]);
        assert!(headers.is_empty());
    }

    #[test]
    fn an_invalid_rewrite_result_leaves_the_header_alone() {
        let rule = ResponseHeaderRewrite {
            header: HeaderName::from_static("location"),
            prefix: "/".to_owned(),
            value: "\n".to_owned(),
        };
        let mut headers = map(&[("location", "/a")]);
        rewrite_response_headers(&mut headers, &[rule]);
        assert_eq!(headers["location"], "/a");
    }
}
