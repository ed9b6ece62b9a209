//! The authorize service's side: a `Check` call read into the request [`proxy::authorize::check`]
//! decides, and its answer rendered as a `CheckResponse` (the one place a decision becomes
//! ext_authz's answer).

use crate::wire;
use arc_swap::ArcSwap;
use http::{HeaderMap, HeaderName, HeaderValue};
use proxy::authorize::{AuthorizeRequest, Checked};
use proxy::error::Answer;
use proxy::runtime::Runtime;
use proxy::tls::{ChainVerifier, ClientCertificate};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

/// Answers ext_authz `Check` calls with the runtime current when each call arrives.
#[derive(Debug)]
pub struct RuntimeAuthorizer {
    current: Arc<ArcSwap<Runtime>>,
}

impl RuntimeAuthorizer {
    pub fn new(current: Arc<ArcSwap<Runtime>>) -> RuntimeAuthorizer {
        RuntimeAuthorizer { current }
    }
}

impl crate::Authorizer for RuntimeAuthorizer {
    fn check(&self, request: crate::CheckRequest) -> crate::CheckFuture<'_> {
        Box::pin(async move { check(&self.current.load_full(), request).await })
    }
}

/// A Check call's request, read back into what the decision needs.
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

fn describe(request: crate::CheckRequest, client_chains: Option<&ChainVerifier>) -> Result<Described, tonic::Status> {
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
        .and_then(|m| m.filter_metadata.get(crate::CLIENT_CERTIFICATE_METADATA))
        .and_then(|info| {
            let text = |name: &str| match info.fields.get(name).and_then(|v| v.kind.as_ref()) {
                Some(prost_types::value::Kind::StringValue(s)) => Some(s.as_str()),
                _ => None,
            };
            let chain = proxy::tls::certificates_from_pem(&chain_pem(text("chain")?)).ok()?;
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
        request_id: if http.id.is_empty() { proxy::error::new_request_id() } else { http.id },
        route_id: attributes.context_extensions.get(crate::ROUTE_ID).cloned(),
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
    request: crate::CheckRequest,
) -> Result<crate::CheckResponse, tonic::Status> {
    let described = describe(request, runtime.client_chains())?;
    let request = AuthorizeRequest {
        method: &described.method,
        authority: &described.authority,
        path: &described.path,
        query: described.query.as_deref(),
        url: proxy::authorize::RequestUrl::Whole(&described.url),
        headers: &described.headers,
        client_ip: described.client_ip,
        certificate: described.certificate.as_ref(),
        request_id: &described.request_id,
    };
    match proxy::authorize::check(runtime, described.route_id.as_deref(), &request).await {
        Checked::Allow(set) => Ok(allowed(&set)),
        Checked::Deny(answer) => Ok(denied(*answer)),
        // Envoy's ext_authz filter fails the request when the service is unavailable.
        Checked::Unavailable(why) => Err(tonic::Status::unavailable(why.to_string())),
    }
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

/// An allowed request as ext_authz carries it: OK with the headers to set upstream, each
/// replacing what the request had (as Pomerium sets them).
fn allowed(set: &[(HeaderName, HeaderValue)]) -> crate::CheckResponse {
    crate::CheckResponse {
        status: Some(wire::Status { code: 0, message: String::new() }),
        http_response: Some(wire::check_response::HttpResponse::OkResponse(wire::OkHttpResponse {
            headers: set.iter().map(|(name, value)| header_option(name, value, OVERWRITE_IF_EXISTS_OR_ADD)).collect(),
            ..Default::default()
        })),
        dynamic_metadata: None,
    }
}

/// A denial as ext_authz carries it: PERMISSION_DENIED with the HTTP answer to give.
fn denied(answer: Answer) -> crate::CheckResponse {
    crate::CheckResponse {
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
