//! The proxy's side: [`Client`] as the pipeline's [`proxy::RemoteAuthorize`], asking as Envoy's
//! ext_authz filter would and reading the answer back into headers to set or an answer to give.

use crate::{Client, wire};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use proxy::authorize::{AuthorizeRequest, BoxFuture, Remote, RemoteFailure};
use proxy::error::{Answer, ErrorPage, ResponseFormat};
use std::collections::BTreeMap;

impl proxy::RemoteAuthorize for Client {
    fn authorize<'a>(
        &'a self,
        route_id: &'a str,
        request: &'a AuthorizeRequest<'a>,
        tls: bool,
    ) -> BoxFuture<'a, Result<Remote, RemoteFailure>> {
        Box::pin(async move {
            let answer = self
                .check(check_request(route_id, request, tls))
                .await
                .map_err(|status| RemoteFailure(format!("{:?}: {}", status.code(), status.message())))?;
            Ok(remote_answer(answer, request))
        })
    }
}

/// The authorize service's answer: allowed with the headers to set, or the answer to give.
fn remote_answer(answer: crate::CheckResponse, request: &AuthorizeRequest<'_>) -> Remote {
    match answer.http_response {
        Some(wire::check_response::HttpResponse::OkResponse(ok)) if answer.status.is_none_or(|s| s.code == 0) => {
            Remote::Allow(header_options(&ok.headers))
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
            Remote::Deny(Answer { status, headers, body: denied.body.into() })
        }
        _ => {
            let format = ResponseFormat::negotiate(request.path, request.headers);
            Remote::Deny(ErrorPage::new(StatusCode::FORBIDDEN, request.request_id).answer(format))
        }
    }
}

/// The Check call for a request the proxy matched to the route `route_id`, as Envoy builds it.
fn check_request(route_id: &str, request: &AuthorizeRequest<'_>, tls: bool) -> crate::CheckRequest {
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
        let pem = proxy::tls::certificates_to_pem(&certificate.chain);
        fields.insert("chain".to_owned(), string_value(url::form_urlencoded::byte_serialize(&pem).collect()));
    }
    metadata.insert(crate::CLIENT_CERTIFICATE_METADATA.to_owned(), prost_types::Struct { fields });
    crate::CheckRequest {
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
            context_extensions: [(crate::ROUTE_ID.to_owned(), route_id.to_owned())].into_iter().collect(),
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
