//! The transports of the decision ([`crate::decision`]) other than the pipeline's HTTP:
//! - from a proxy running apart (`services: proxy` with `authorize_service_url`): [`remote`]
//!   sends the request to the authorize service as Envoy's ext_authz `Check` would, and returns
//!   the headers it answers with, or its answer;
//! - on the authorize service (`services: authorize`): [`Authorizer`] answers `Check` calls by
//!   running [`decide`] on the request they describe and rendering the [`Outcome`] as a
//!   `CheckResponse` ([`check`]), so that both sides give the same answer;
//! - in process, for callers outside the proxy (benchmarks): [`authorize`].

use crate::decision::{AuthorizeRequest, Outcome, decide};
use crate::error::{Answer, ErrorKind, ErrorPage, ProxyError, ResponseFormat};
use crate::runtime::{RouteRuntime, Runtime};
use crate::tls::ClientCertificate;
use crate::{render, upstream_headers};
use arc_swap::ArcSwap;
use ext_authz::wire;
use http::header::HeaderValue;
use http::{HeaderMap, HeaderName, Response, StatusCode};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

// ---- in process, for callers outside the proxy (benchmarks, embedding)

/// A request as a caller outside the proxy describes it.
#[derive(Debug, Clone, Copy)]
pub struct Probe<'a> {
    pub method: &'a str,
    /// `host[:port]`.
    pub authority: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub client_ip: IpAddr,
}

/// What authorization makes of a request.
#[derive(Debug)]
pub enum Authorized {
    /// Allowed: the headers to set on the request as it goes upstream (the identity headers of a
    /// route that passes them, and every `set_request_headers` value rendered).
    Allow(Vec<(HeaderName, HeaderValue)>),
    /// Not allowed: the answer to give (a sign-in redirect, 401, 403, ...).
    Deny(Response<crate::ProxyBody>),
}

/// The whole authorize step for one request, as the authorize service runs it: the route, the
/// session, the policy, the identity and the headers. (Benchmark B2 measures this.)
pub async fn authorize(runtime: &Runtime, probe: &Probe<'_>) -> Authorized {
    let request_id = crate::error::new_request_id();
    let format = ResponseFormat::negotiate(probe.path, probe.headers);
    let lookup = routing::Request { authority: probe.authority, path: probe.path, connect: false };
    let Some(route) = runtime.table.lookup(&lookup).map(|found| Arc::clone(found.value)) else {
        return Authorized::Deny(
            ErrorPage::new(StatusCode::NOT_FOUND, &request_id).with_message("route not found").render_as(format),
        );
    };
    let scheme = if runtime.global.tls { "https" } else { "http" };
    let url = match probe.query {
        Some(query) => format!("{scheme}://{}{}?{query}", probe.authority, probe.path),
        None => format!("{scheme}://{}{}", probe.authority, probe.path),
    };
    let request = AuthorizeRequest {
        method: probe.method,
        authority: probe.authority,
        path: probe.path,
        query: probe.query,
        url: &url,
        headers: probe.headers,
        client_ip: probe.client_ip,
        certificate: None,
        request_id: &request_id,
    };
    let outcome = decide(runtime, &route, &request).await;
    match render::outcome(outcome, &route, &request_id, format) {
        Ok(identity) => Authorized::Allow(upstream_headers::build(
            &runtime.global.authn,
            &route,
            probe.headers,
            None,
            identity.as_ref(),
        )),
        Err(answer) => Authorized::Deny(answer.into_response()),
    }
}

// ---- the proxy's side of a remote authorize service

/// What the authorize service answered a proxy.
#[derive(Debug)]
pub(crate) enum Remote {
    /// Allowed: the headers to set upstream, as [`upstream_headers::build`] made them there.
    Allow(Vec<(HeaderName, HeaderValue)>),
    /// Not allowed: the answer to give the client, as the authorize service rendered it.
    Deny(Answer),
}

/// Asks the authorize service about a request the proxy matched to `route`, as Envoy's ext_authz
/// filter would: every header, the client's address and certificate, the route's id.
pub(crate) async fn remote(
    client: &ext_authz::Client,
    route: &RouteRuntime,
    request: &AuthorizeRequest<'_>,
    tls: bool,
) -> Result<Remote, ProxyError> {
    let answer = client.check(check_request(route, request, tls)).await.map_err(|status| {
        ProxyError::proxy(ErrorKind::Unavailable)
            .with_context("asking the authorize service")
            .with_cause(RemoteError(status.code(), status.message().to_owned()))
    })?;
    match answer.http_response {
        Some(wire::check_response::HttpResponse::OkResponse(ok)) if answer.status.is_none_or(|s| s.code == 0) => {
            Ok(Remote::Allow(header_options(&ok.headers)))
        }
        Some(wire::check_response::HttpResponse::DeniedResponse(denied)) => {
            let status = denied
                .status
                .and_then(|s| u16::try_from(s.code).ok())
                .and_then(|code| StatusCode::from_u16(code).ok())
                .unwrap_or(StatusCode::FORBIDDEN);
            let mut headers = HeaderMap::new();
            for (name, value) in header_options(&denied.headers) {
                headers.append(name, value);
            }
            Ok(Remote::Deny(Answer { status, headers, body: denied.body.into() }))
        }
        _ => {
            let format = ResponseFormat::negotiate(request.path, request.headers);
            Ok(Remote::Deny(ErrorPage::new(StatusCode::FORBIDDEN, request.request_id).answer(format)))
        }
    }
}

/// A gRPC failure of the authorize service.
#[derive(Debug, thiserror::Error)]
#[error("{0:?}: {1}")]
struct RemoteError(tonic::Code, String);

fn check_request(route: &RouteRuntime, request: &AuthorizeRequest<'_>, tls: bool) -> ext_authz::CheckRequest {
    let mut joined: BTreeMap<String, String> = BTreeMap::new();
    let mut each = Vec::with_capacity(request.headers.len());
    for (name, value) in request.headers {
        let text = String::from_utf8_lossy(value.as_bytes());
        joined
            .entry(name.as_str().to_owned())
            .and_modify(|all| {
                all.push(',');
                all.push_str(&text);
            })
            .or_insert_with(|| text.clone().into_owned());
        each.push(wire::HeaderValue {
            key: name.as_str().to_owned(),
            value: String::new(),
            raw_value: value.as_bytes().to_vec(),
        });
    }
    let target = match request.query {
        Some(query) => format!("{}?{query}", request.path),
        None => request.path.to_owned(),
    };
    let mut metadata = BTreeMap::new();
    let mut fields = BTreeMap::new();
    fields.insert("presented".to_owned(), bool_value(request.certificate.is_some()));
    if let Some(certificate) = request.certificate {
        // As Envoy's Lua filter sends it (`urlEncodedPemEncodedPeerCertificateChain`); the
        // authorize service checks it against its own downstream_mtls.ca.
        let pem = crate::tls::certificates_to_pem(&certificate.chain);
        fields.insert("chain".to_owned(), string_value(url::form_urlencoded::byte_serialize(&pem).collect()));
    }
    metadata.insert(ext_authz::CLIENT_CERTIFICATE_METADATA.to_owned(), prost_types::Struct { fields });
    ext_authz::CheckRequest {
        attributes: Some(wire::AttributeContext {
            source: Some(wire::attribute_context::Peer {
                address: Some(wire::Address {
                    address: Some(wire::address::Address::SocketAddress(wire::SocketAddress {
                        protocol: 0,
                        address: request.client_ip.to_string(),
                        port_specifier: Some(wire::socket_address::PortSpecifier::PortValue(0)),
                    })),
                }),
                ..Default::default()
            }),
            destination: None,
            request: Some(wire::attribute_context::Request {
                time: None,
                http: Some(wire::attribute_context::HttpRequest {
                    id: request.request_id.to_owned(),
                    method: request.method.to_owned(),
                    headers: joined.into_iter().collect(),
                    path: target,
                    host: request.authority.to_owned(),
                    scheme: if tls { "https" } else { "http" }.to_owned(),
                    header_map: Some(wire::HeaderMap { headers: each }),
                    ..Default::default()
                }),
            }),
            context_extensions: [(ext_authz::ROUTE_ID.to_owned(), route.id.clone())].into_iter().collect(),
            metadata_context: Some(wire::Metadata { filter_metadata: metadata.into_iter().collect() }),
            tls_session: None,
        }),
    }
}

fn bool_value(value: bool) -> prost_types::Value {
    prost_types::Value { kind: Some(prost_types::value::Kind::BoolValue(value)) }
}

fn string_value(value: String) -> prost_types::Value {
    prost_types::Value { kind: Some(prost_types::value::Kind::StringValue(value)) }
}

/// Header options as name/value pairs; invalid ones are dropped.
fn header_options(options: &[wire::HeaderValueOption]) -> Vec<(HeaderName, HeaderValue)> {
    options
        .iter()
        .filter_map(|option| option.header.as_ref())
        .filter_map(|h| {
            let value = if h.raw_value.is_empty() { h.value.as_bytes() } else { &h.raw_value };
            Some((HeaderName::try_from(h.key.as_str()).ok()?, HeaderValue::from_bytes(value).ok()?))
        })
        .collect()
}

/// Envoy's `HeaderAppendAction`s that we send.
const APPEND_IF_EXISTS_OR_ADD: i32 = 0;
const OVERWRITE_IF_EXISTS_OR_ADD: i32 = 2;

fn header_option(name: &HeaderName, value: &HeaderValue, append_action: i32) -> wire::HeaderValueOption {
    let (text, raw) = match value.to_str() {
        Ok(text) => (text.to_owned(), Vec::new()),
        Err(_) => (String::new(), value.as_bytes().to_vec()),
    };
    wire::HeaderValueOption {
        header: Some(wire::HeaderValue { key: name.as_str().to_owned(), value: text, raw_value: raw }),
        append: None,
        append_action,
        keep_empty_value: true,
    }
}

// ---- the authorize service's side

/// Answers ext_authz `Check` calls with the runtime current when each call arrives.
#[derive(Debug)]
pub struct Authorizer {
    current: Arc<ArcSwap<Runtime>>,
}

impl Authorizer {
    pub fn new(current: Arc<ArcSwap<Runtime>>) -> Authorizer {
        Authorizer { current }
    }
}

impl ext_authz::Authorizer for Authorizer {
    fn check(&self, request: ext_authz::CheckRequest) -> ext_authz::CheckFuture<'_> {
        Box::pin(async move { check(&self.current.load_full(), request).await })
    }
}

/// A Check call's request, read back into what [`decide`] needs.
struct Described {
    method: String,
    authority: String,
    path: String,
    query: Option<String>,
    url: String,
    headers: HeaderMap,
    client_ip: IpAddr,
    certificate: Option<ClientCertificate>,
    request_id: String,
    route_id: Option<String>,
}

fn describe(
    request: ext_authz::CheckRequest,
    client_chains: Option<&crate::tls::ChainVerifier>,
) -> Result<Described, tonic::Status> {
    let invalid = |what: &str| tonic::Status::invalid_argument(format!("the check request has no {what}"));
    let attributes = request.attributes.ok_or_else(|| invalid("attributes"))?;
    let http = attributes.request.and_then(|r| r.http).ok_or_else(|| invalid("http request"))?;
    if http.host.is_empty() {
        return Err(invalid("host"));
    }
    let mut headers = HeaderMap::new();
    match http.header_map.filter(|map| !map.headers.is_empty()) {
        Some(map) => {
            for h in map.headers {
                let value = if h.raw_value.is_empty() { h.value.into_bytes() } else { h.raw_value };
                if let (Ok(name), Ok(value)) = (HeaderName::try_from(h.key.as_str()), HeaderValue::from_bytes(&value)) {
                    headers.append(name, value);
                }
            }
        }
        None => {
            for (name, value) in http.headers {
                if let (Ok(name), Ok(value)) = (HeaderName::try_from(name.as_str()), HeaderValue::from_str(&value)) {
                    headers.append(name, value);
                }
            }
        }
    }
    let (path, mut query) = match http.path.split_once('?') {
        Some((path, query)) => (path.to_owned(), Some(query.to_owned())),
        None => (http.path.clone(), None),
    };
    if query.is_none() && !http.query.is_empty() {
        query = Some(http.query.clone());
    }
    let path = if path.is_empty() { "/".to_owned() } else { path };
    let scheme = if http.scheme.is_empty() { "https" } else { http.scheme.as_str() };
    let target = match &query {
        Some(query) => format!("{path}?{query}"),
        None => path.clone(),
    };
    let url = format!("{scheme}://{}{target}", http.host);
    let client_ip = attributes
        .source
        .as_ref()
        .and_then(|peer| peer.address.as_ref())
        .and_then(|address| match &address.address {
            Some(wire::address::Address::SocketAddress(socket)) => socket.address.parse().ok(),
            None => None,
        })
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let certificate = attributes
        .metadata_context
        .as_ref()
        .and_then(|m| m.filter_metadata.get(ext_authz::CLIENT_CERTIFICATE_METADATA))
        .and_then(|info| {
            let text = |name: &str| match info.fields.get(name).and_then(|v| v.kind.as_ref()) {
                Some(prost_types::value::Kind::StringValue(s)) => Some(s.as_str()),
                _ => None,
            };
            let chain = crate::tls::certificates_from_pem(&chain_pem(text("chain")?)).ok()?;
            // Checked here, whoever the caller is (our proxy or an Envoy): without a CA, nothing
            // is valid.
            let verified = client_chains.is_some_and(|verifier| verifier.verifies(&chain));
            Some(ClientCertificate { chain, verified })
        });
    Ok(Described {
        method: http.method,
        authority: http.host,
        path,
        query,
        url,
        headers,
        client_ip,
        certificate,
        request_id: if http.id.is_empty() { crate::error::new_request_id() } else { http.id },
        route_id: attributes.context_extensions.get(ext_authz::ROUTE_ID).cloned(),
    })
}

/// The PEM of a forwarded chain: URL-encoded as Envoy sends it (Go's `QueryUnescape`: `+` is
/// a space), or plain.
fn chain_pem(text: &str) -> Vec<u8> {
    // URL-encoded text has no spaces or line breaks; PEM has both.
    if text.contains([' ', '\n']) {
        return text.as_bytes().to_vec();
    }
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        let escaped = bytes
            .get(index + 1..index + 3)
            .filter(|_| byte == b'%')
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(value) => {
                decoded.push(value);
                index += 3;
            }
            None => {
                decoded.push(if byte == b'+' { b' ' } else { byte });
                index += 1;
            }
        }
    }
    decoded
}

/// Decides one Check call.
pub(crate) async fn check(
    runtime: &Runtime,
    request: ext_authz::CheckRequest,
) -> Result<ext_authz::CheckResponse, tonic::Status> {
    let described = describe(request, runtime.global.client_chains.as_ref())?;
    let format = ResponseFormat::negotiate(&described.path, &described.headers);
    let route = match &described.route_id {
        Some(id) => runtime.route_by_id(id),
        None => runtime
            .table
            .lookup(&routing::Request { authority: &described.authority, path: &described.path, connect: false })
            .map(|found| Arc::clone(found.value)),
    };
    let Some(route) = route else {
        let page = ErrorPage::new(StatusCode::NOT_FOUND, &described.request_id).with_message("route not found");
        return Ok(denied(page.answer(format)));
    };
    let request = AuthorizeRequest {
        method: &described.method,
        authority: &described.authority,
        path: &described.path,
        query: described.query.as_deref(),
        url: &described.url,
        headers: &described.headers,
        client_ip: described.client_ip,
        certificate: described.certificate.as_ref(),
        request_id: &described.request_id,
    };
    let outcome = match decide(runtime, &route, &request).await {
        // Envoy's ext_authz filter fails the request when the service is unavailable.
        Outcome::Unavailable { why } => return Err(tonic::Status::unavailable(why.to_string())),
        outcome => outcome,
    };
    Ok(match crate::render::outcome(outcome, &route, &described.request_id, format) {
        Ok(identity) => allowed(&upstream_headers::build(
            &runtime.global.authn,
            &route,
            &described.headers,
            described.certificate.as_ref(),
            identity.as_ref(),
        )),
        Err(answer) => denied(*answer),
    })
}

/// An allowed request as ext_authz carries it: OK with the headers to set upstream, each
/// replacing what the request had (as Pomerium sets them).
fn allowed(set: &[(HeaderName, HeaderValue)]) -> ext_authz::CheckResponse {
    ext_authz::CheckResponse {
        status: Some(wire::Status { code: 0, message: String::new() }),
        http_response: Some(wire::check_response::HttpResponse::OkResponse(wire::OkHttpResponse {
            headers: set.iter().map(|(name, value)| header_option(name, value, OVERWRITE_IF_EXISTS_OR_ADD)).collect(),
            ..Default::default()
        })),
        dynamic_metadata: None,
    }
}

/// A denial as ext_authz carries it: PERMISSION_DENIED with the HTTP answer to give.
fn denied(answer: Answer) -> ext_authz::CheckResponse {
    ext_authz::CheckResponse {
        status: Some(wire::Status { code: tonic::Code::PermissionDenied as i32, message: String::new() }),
        http_response: Some(wire::check_response::HttpResponse::DeniedResponse(wire::DeniedHttpResponse {
            status: Some(wire::HttpStatus { code: i32::from(answer.status.as_u16()) }),
            // Every header, several `Set-Cookie`s included.
            headers: answer
                .headers
                .iter()
                .map(|(name, value)| header_option(name, value, APPEND_IF_EXISTS_OR_ADD))
                .collect(),
            body: String::from_utf8_lossy(&answer.body).into_owned(),
        })),
        dynamic_metadata: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_chains_are_read_url_encoded_or_plain() {
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB+/a=\n-----END CERTIFICATE-----\n";
        let encoded: String = url::form_urlencoded::byte_serialize(pem.as_bytes()).collect();
        assert!(!encoded.contains(' ') && !encoded.contains('\n'), "{encoded}");
        assert_eq!(chain_pem(&encoded), pem.as_bytes());
        assert_eq!(chain_pem(pem), pem.as_bytes());
        // Envoy's encoding spells a space %20.
        assert_eq!(chain_pem("-----BEGIN%20CERTIFICATE-----%0A"), b"-----BEGIN CERTIFICATE-----\n");
        assert_eq!(chain_pem("%zz%4"), b"%zz%4", "a broken escape is kept as it is");
    }

    proptest::proptest! {
        /// Whatever a caller puts in the forwarded chain, decoding it never panics, and encoding
        /// then decoding gives the bytes back.
        #[test]
        fn forwarded_chains_decode_without_panicking(text in ".{0,200}", bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = chain_pem(&text);
            let encoded: String = url::form_urlencoded::byte_serialize(&bytes).collect();
            proptest::prop_assert_eq!(chain_pem(&encoded), bytes);
        }
    }
}
