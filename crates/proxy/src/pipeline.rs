//! The request pipeline: what happens to every request, as named phases (in the manner of
//! Pingora), each either passing the request on or answering it.
//!
//! 1. **sanitize**: normalize the path, refuse bad header names ([`crate::normalize`]).
//! 2. **authority**: the host the request is for (`:authority` or `Host`).
//! 3. **control plane**: Pomerium's own paths (`/ping`, `/healthz`, `/.pomerium/…`,
//!    `/.well-known/pomerium…`) never reach an upstream.
//! 4. **route**: the route table picks the route, or 404.
//! 5. **authorize**: the route's compiled policy decides, in process; sign-in redirect (302) or
//!    401, 403, 450, 495, or on.
//! 6. **act**: a redirect route redirects, a response route answers, a `tcp+https` route opens
//!    a CONNECT tunnel, and any other route forwards:
//! 7. **forward**: pick an endpoint, rewrite path and host, set forwarding and route headers,
//!    send (or upgrade), and stream the answer back with the route's response headers.
//!
//! Every answer carries `x-request-id`; every request is logged once, at the end.

use crate::authn::{self, identity::Identity};
use crate::body::{self, ProxyBody};
use crate::error::{ErrorKind, ErrorPage, ProxyError, ResponseFormat, new_request_id};
use crate::headers::{self};
use crate::runtime::{Forward, RouteAction, RouteRuntime, Runtime};
use crate::server::ConnectionInfo;
use crate::templates::Values;
use crate::tunnel;
use crate::{balance, normalize, rewrite};
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use policy::decision::{Verdict, wants_html};
use policy::input::{self, Input};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

const REQUEST_ID: &str = "x-request-id";

/// Handles one request with the runtime current when it arrived.
pub async fn handle(
    runtime: Arc<Runtime>,
    request: Request<Incoming>,
    connection: Arc<ConnectionInfo>,
) -> Response<ProxyBody> {
    let started = Instant::now();
    let cx = Context {
        request_id: new_request_id(),
        format: ResponseFormat::negotiate(request.uri().path(), request.headers()),
        method: request.method().clone(),
        target: request.uri().path_and_query().map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
    };
    let mut served_by = None;
    let mut response = match phases(&runtime, request, &connection, &cx, &mut served_by).await {
        Ok(response) => response,
        Err(failure) => {
            let mut response = failure.into_response(&cx);
            // The proxy's own answers (Envoy's local replies) carry the global response headers
            // (Pomerium's `local_reply.go`).
            with_headers(&mut response, &runtime.global.response_headers);
            response
        }
    };
    if let Ok(value) = HeaderValue::from_str(&cx.request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    tracing::info!(
        target: "access",
        request_id = %cx.request_id,
        method = %cx.method,
        path = %cx.target,
        status = response.status().as_u16(),
        route = served_by.as_ref().map_or("-", |route: &Arc<RouteRuntime>| route.id.as_str()),
        peer = %connection.peer,
        duration_us = started.elapsed().as_micros() as u64,
        "request"
    );
    response
}

/// What every phase may need to answer early.
struct Context {
    request_id: String,
    format: ResponseFormat,
    method: Method,
    target: String,
}

/// An early answer: an error, a policy denial, or a response ready to send.
enum Failure {
    Error(ProxyError),
    Page(ErrorPage),
    Response(Box<Response<ProxyBody>>),
}

impl Failure {
    fn into_response(self, cx: &Context) -> Response<ProxyBody> {
        match self {
            Failure::Error(error) => {
                tracing::debug!(request_id = %cx.request_id, %error, "request failed");
                error.page(&cx.request_id).render_as(cx.format)
            }
            Failure::Page(page) => page.render_as(cx.format),
            Failure::Response(response) => *response,
        }
    }
}

impl From<ProxyError> for Failure {
    fn from(error: ProxyError) -> Self {
        Failure::Error(error)
    }
}

async fn phases(
    runtime: &Runtime,
    mut request: Request<Incoming>,
    connection: &ConnectionInfo,
    cx: &Context,
    served_by: &mut Option<Arc<RouteRuntime>>,
) -> Result<Response<ProxyBody>, Failure> {
    sanitize(runtime, &mut request)?;
    let authority = authority(&request)?;
    let request = match control_plane(runtime, request, &authority, cx).await? {
        ControlPlane::Answered(response) => return Ok(response),
        ControlPlane::NotOurs(request) => request,
    };
    let route = find_route(runtime, &request, &authority, cx)?;
    // Recorded before the later phases so that their failures are logged with the route.
    *served_by = Some(Arc::clone(&route));
    let identity = authorize(runtime, &route, &request, &authority, connection, cx).await?;
    act(runtime, &route, request, &authority, connection, cx, identity.as_ref()).await
}

// 1. sanitize

fn sanitize(runtime: &Runtime, request: &mut Request<Incoming>) -> Result<(), Failure> {
    match normalize::normalize_request(request, &runtime.global.normalize)? {
        None => Ok(()),
        Some(redirect) => Err(Failure::Response(Box::new(redirect))),
    }
}

// 2. authority

/// `host[:port]` of the request, lowercased: from the URI (HTTP/2, CONNECT, absolute-form) or the
/// `Host` header.
fn authority(request: &Request<Incoming>) -> Result<String, Failure> {
    let authority = match request.uri().authority() {
        // Already parsed by hyper as an authority.
        Some(authority) => authority.as_str(),
        None => {
            let host = request.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
            if !host.is_empty() && http::uri::Authority::try_from(host).is_err() {
                return Err(bad_host("reading the host: not host[:port]"));
            }
            host
        }
    };
    if authority.is_empty() {
        return Err(bad_host("reading the host: the request names none"));
    }
    if authority.contains('@') {
        return Err(bad_host("reading the host: not host[:port]"));
    }
    Ok(authority.to_ascii_lowercase())
}

fn bad_host(context: &'static str) -> Failure {
    ProxyError::client(ErrorKind::BadRequest).with_context(context).into()
}

// 3. control plane

/// What the control plane did with a request.
enum ControlPlane {
    Answered(Response<ProxyBody>),
    NotOurs(Request<Incoming>),
}

/// The largest body a control-plane endpoint reads (an IdP's form post, a sign-out form).
const CONTROL_BODY_LIMIT: usize = 64 * 1024;

/// Pomerium's own endpoints, on every host: health checks, the authenticate service's and the
/// route hosts' `/.pomerium/` paths ([`crate::authn::endpoints`]); any other reserved path is a
/// 404 that never reaches an upstream.
async fn control_plane(
    runtime: &Runtime,
    request: Request<Incoming>,
    authority: &str,
    cx: &Context,
) -> Result<ControlPlane, Failure> {
    if request.method() == Method::CONNECT {
        return Ok(ControlPlane::NotOurs(request));
    }
    let path = request.uri().path();
    if path == "/ping" || path == "/healthz" {
        let mut response = Response::new(body::full("OK"));
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        with_headers(&mut response, &runtime.global.response_headers);
        return Ok(ControlPlane::Answered(response));
    }
    let global = &runtime.global;
    let host = hostname(authority);
    if authn::endpoints::is_endpoint(&global.authn, host, path, &global.callback_path) {
        let (parts, incoming) = request.into_parts();
        let body = read_bounded(incoming).await?;
        let url = original_url(global.tls, authority, &cx.target);
        let Ok(url) = url::Url::parse(&url) else {
            return Err(bad_host("reading the url"));
        };
        let control = authn::endpoints::ControlRequest {
            method: &parts.method,
            url: &url,
            hostname: host,
            headers: &parts.headers,
            body,
            request_id: &cx.request_id,
            format: cx.format,
        };
        let context = authn::endpoints::Context {
            settings: &global.authn,
            authn: &global.authn_state,
            records: &global.records,
            now: unix_now_signed(),
        };
        let mut response = authn::endpoints::handle(&context, &control, &global.callback_path).await;
        with_headers(&mut response, &global.response_headers);
        return Ok(ControlPlane::Answered(response));
    }
    let reserved = |root: &str| path.strip_prefix(root).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    let authenticate_only =
        global.authn.serves_authenticate && !global.authn.serves_routes && global.authn.is_authenticate_host(host);
    if reserved("/.pomerium") || reserved("/.well-known/pomerium") || authenticate_only {
        let mut response = ErrorPage::new(StatusCode::NOT_FOUND, &cx.request_id).render_as(cx.format);
        with_headers(&mut response, &global.response_headers);
        return Ok(ControlPlane::Answered(response));
    }
    Ok(ControlPlane::NotOurs(request))
}

/// A control-plane request's body, refused past [`CONTROL_BODY_LIMIT`].
async fn read_bounded(incoming: Incoming) -> Result<bytes::Bytes, Failure> {
    use http_body_util::BodyExt as _;
    match http_body_util::Limited::new(incoming, CONTROL_BODY_LIMIT).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) => {
            let too_large = error.downcast_ref::<http_body_util::LengthLimitError>().is_some();
            let kind = if too_large { ErrorKind::BodyTooLarge } else { ErrorKind::Closed };
            Err(ProxyError::client(kind).with_context("reading the request body").into())
        }
    }
}

// 4. route

fn find_route(
    runtime: &Runtime,
    request: &Request<Incoming>,
    authority: &str,
    cx: &Context,
) -> Result<Arc<RouteRuntime>, Failure> {
    let lookup =
        routing::Request { authority, path: request.uri().path(), connect: request.method() == Method::CONNECT };
    match runtime.table.lookup(&lookup) {
        Some(found) => Ok(Arc::clone(found.value)),
        None => {
            let page = ErrorPage::new(StatusCode::NOT_FOUND, &cx.request_id).with_message("route not found");
            Err(Failure::Page(page))
        }
    }
}

// 5. authorize

/// Finds the request's session, evaluates the route's policy, and, for an allowed request on a
/// route that sends identity upstream, signs the identity.
async fn authorize(
    runtime: &Runtime,
    route: &RouteRuntime,
    request: &Request<Incoming>,
    authority: &str,
    connection: &ConnectionInfo,
    cx: &Context,
) -> Result<Option<Identity>, Failure> {
    let global = &runtime.global;
    let session = authn::session::find(&global.authn, &global.authn_state, request.headers(), request.uri().query())
        .await
        .map_err(|error| {
            ProxyError::proxy(ErrorKind::Unavailable)
                .with_context("reading the session from the databroker")
                .with_cause(error)
        })?;
    let session_id = session.as_ref().map(|s| s.handle.id.as_str());
    let headers = RequestHeaders(request.headers());
    let client_ip = headers::trusted_client_address(
        request.headers(),
        connection.peer.ip(),
        global.forwarding.xff_num_trusted_hops,
    );
    let certificate = connection.tls.as_ref().and_then(|tls| tls.client_certificate.as_ref());
    let facts =
        certificate.and_then(|c| c.leaf()).and_then(|der| policy::crypto::CertificateFacts::from_der(der.as_ref()));
    let url = original_url(global.tls, authority, &cx.target);
    let now = jiff::Timestamp::now();
    let input = Input {
        http: input::Http {
            method: Some(request.method().as_str()),
            host: Some(authority),
            hostname: Some(hostname(authority)),
            path: Some(request.uri().path()),
            url: Some(&url),
            headers: &headers,
            ip: Some(client_ip),
            client_certificate: input::ClientCertificate {
                presented: Some(certificate.is_some()),
                leaf: facts.as_ref(),
            },
        },
        is_valid_client_certificate: certificate.map(|c| c.verified),
        session_id,
        ssh: input::Ssh::default(),
        mcp: input::Mcp::default(),
        now,
    };
    let cache = global.records.read();
    let overlay;
    let records: &dyn policy::records::Records = match &session {
        Some(authn::session::RequestSession { fetched: Some(fetched), handle }) => {
            overlay = authn::session::Overlay { base: &cache, fetched, session_id: &handle.id };
            &overlay
        }
        _ => &*cache,
    };
    let decision = route.program.evaluate(&input, records);
    let accept = request.headers().get(header::ACCEPT).and_then(|a| a.to_str().ok());
    let verdict = decision.verdict(wants_html(accept) && !is_grpc(request.headers()));
    tracing::debug!(
        request_id = %cx.request_id,
        route = %route.id,
        allow = decision.allow.value,
        allow_reasons = ?decision.allow.reasons,
        deny = decision.deny.value,
        deny_reasons = ?decision.deny.reasons,
        outcome = verdict.action(),
        "authorize"
    );
    match verdict {
        Verdict::Allow if route.passes_identity || route.templates_need_identity => {
            let live = session_id.filter(|id| policy::records::resolve_session(records, Some(id), now).is_some());
            let identity = authn::identity::identity(
                &global.authn,
                &global.authn_state.assertions,
                records,
                live,
                hostname(authority),
                now.as_second(),
            );
            Ok(identity)
        }
        Verdict::Allow => Ok(None),
        Verdict::Login { redirect: true } => Err(Failure::Response(Box::new(sign_in_redirect(runtime, route, &url)))),
        Verdict::Login { redirect: false } => {
            Err(Failure::Page(ErrorPage::new(StatusCode::UNAUTHORIZED, &cx.request_id).with_message("Unauthenticated")))
        }
        Verdict::DeviceEnroll => Err(Failure::Response(Box::new(device_enrollment_redirect(runtime, authority, &url)))),
        denied => {
            let status = StatusCode::from_u16(denied.status()).unwrap_or(StatusCode::FORBIDDEN);
            let mut page = ErrorPage::new(status, &cx.request_id);
            if route.show_error_details {
                // Pomerium's `show_error_details`: why, in the policy's own terms.
                page = page.with_details(format!(
                    "allow: {} ({}); deny: {} ({})",
                    decision.allow.value,
                    decision.allow.reasons.names().join(", "),
                    decision.deny.value,
                    decision.deny.reasons.names().join(", "),
                ));
            }
            Err(Failure::Page(page))
        }
    }
}

/// The request's headers, as the policy reads them.
#[derive(Debug)]
struct RequestHeaders<'a>(&'a HeaderMap);

impl input::Headers for RequestHeaders<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(|value| value.to_str().ok())
    }
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"))
}

fn hostname(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.split_once(']').map_or(authority, |(host, _)| host.trim_start_matches('['));
    }
    authority.rsplit_once(':').map_or(authority, |(host, _)| host)
}

fn original_url(tls: bool, authority: &str, target: &str) -> String {
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{authority}{target}")
}

fn unix_now_signed() -> i64 {
    i64::try_from(unix_now()).unwrap_or(i64::MAX)
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn redirect_to(location: &str) -> Response<ProxyBody> {
    let mut response = Response::new(body::empty());
    *response.status_mut() = StatusCode::FOUND;
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// 302 to the authenticate service's signed sign-in URL (system.md §3.3 step 1).
fn sign_in_redirect(runtime: &Runtime, route: &RouteRuntime, original: &str) -> Response<ProxyBody> {
    let global = &runtime.global;
    let Ok(original) = url::Url::parse(original) else {
        return ErrorPage::new(StatusCode::BAD_REQUEST, "").render_as(ResponseFormat::Html);
    };
    let url = authenticate::sign_in_url(
        &global.authenticate_url,
        &original,
        route.idp_id.as_deref(),
        &route.depends_on,
        &global.shared_key,
        unix_now(),
    );
    redirect_to(url.as_str())
}

/// 302 to the device enrolment page of the route's host, signed.
fn device_enrollment_redirect(runtime: &Runtime, authority: &str, original: &str) -> Response<ProxyBody> {
    let scheme = if runtime.global.tls { "https" } else { "http" };
    let Ok(mut url) = url::Url::parse(&format!("{scheme}://{authority}/.pomerium/webauthn")) else {
        return ErrorPage::new(StatusCode::BAD_REQUEST, "").render_as(ResponseFormat::Html);
    };
    url.query_pairs_mut().append_pair("pomerium_redirect_uri", original);
    redirect_to(authenticate::sign(&url, &runtime.global.shared_key, unix_now()).as_str())
}

// 6. act

async fn act(
    runtime: &Runtime,
    route: &RouteRuntime,
    mut request: Request<Incoming>,
    authority: &str,
    connection: &ConnectionInfo,
    cx: &Context,
    identity: Option<&Identity>,
) -> Result<Response<ProxyBody>, Failure> {
    let mut response = match &route.action {
        RouteAction::Redirect { redirect, matched } => {
            redirect_response(redirect, matched, request.uri(), authority, runtime.global.tls)
        }
        RouteAction::Respond { status, body: content } => {
            let mut response = Response::new(body::full(content.clone()));
            *response.status_mut() = *status;
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
            response
        }
        RouteAction::Connect { target } => {
            let upgrade = hyper::upgrade::on(&mut request);
            return Ok(tunnel::connect_tunnel(upgrade, target, runtime.global.connect_timeout).await?);
        }
        RouteAction::Forward(forward) => {
            return forward_request(runtime, route, forward, request, authority, connection, cx, identity).await;
        }
    };
    with_headers(&mut response, &route.response_headers);
    Ok(response)
}

/// Envoy's redirect action (system.md §1.4 `redirect`). `prefix_rewrite` replaces `matched`, the
/// route's path or prefix, as it does in a forwarding route.
fn redirect_response(
    redirect: &config::route::Redirect,
    matched: &str,
    uri: &http::Uri,
    authority: &str,
    tls: bool,
) -> Response<ProxyBody> {
    let scheme = if redirect.https_redirect == Some(true) {
        "https".to_owned()
    } else {
        redirect.scheme_redirect.clone().unwrap_or_else(|| if tls { "https" } else { "http" }.to_owned())
    };
    let host = redirect.host_redirect.clone().unwrap_or_else(|| hostname(authority).to_owned());
    let port = match redirect.port_redirect {
        Some(port) => Some(port.to_string()),
        // Keep a port the client used unless the scheme or host changed.
        None if redirect.host_redirect.is_none()
            && redirect.https_redirect != Some(true)
            && redirect.scheme_redirect.is_none() =>
        {
            authority.rsplit_once(':').filter(|(_, p)| p.parse::<u16>().is_ok()).map(|(_, p)| p.to_owned())
        }
        None => None,
    };
    let path = match (&redirect.path_redirect, &redirect.prefix_rewrite) {
        (Some(path), _) => path.clone(),
        (None, Some(prefix)) => {
            rewrite::PathRewrite::Prefix { matched: matched.to_owned(), replacement: prefix.clone() }.apply(uri.path())
        }
        (None, None) => uri.path().to_owned(),
    };
    let query = match (redirect.strip_query == Some(true), uri.query()) {
        (false, Some(query)) => format!("?{query}"),
        _ => String::new(),
    };
    let location = match port {
        Some(port) => format!("{scheme}://{host}:{port}{path}{query}"),
        None => format!("{scheme}://{host}{path}{query}"),
    };
    let mut response = redirect_to(&location);
    *response.status_mut() =
        redirect.response_code.and_then(|c| StatusCode::from_u16(c).ok()).unwrap_or(StatusCode::MOVED_PERMANENTLY);
    response
}

// 7. forward

#[expect(clippy::too_many_arguments, reason = "the phases' shared state, passed as it is")]
async fn forward_request(
    runtime: &Runtime,
    route: &RouteRuntime,
    forward: &Forward,
    mut request: Request<Incoming>,
    authority: &str,
    connection: &ConnectionInfo,
    cx: &Context,
    identity: Option<&Identity>,
) -> Result<Response<ProxyBody>, Failure> {
    let global = &runtime.global;
    let pick = forward
        .balancer
        .pick()
        .ok_or_else(|| ProxyError::proxy(ErrorKind::NoHealthyUpstream).with_context("choosing an upstream"))?;
    let endpoint = forward
        .endpoints
        .get(pick.index())
        .ok_or_else(|| ProxyError::proxy(ErrorKind::Internal).with_context("choosing an upstream"))?;
    let upgrade =
        tunnel::requested_upgrade(request.headers()).filter(|p| tunnel::is_upgrade_allowed(p, &route.upgrades));
    let on_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut request));
    let (mut parts, incoming) = request.into_parts();

    let rendered = render_request_headers(route, &parts.headers, connection, identity);
    let headers = &mut parts.headers;
    headers::remove_hop_by_hop(headers, upgrade.as_deref());
    strip_pomerium_credentials(headers, &global.cookie_name);
    headers::set_forwarding_headers(headers, connection.peer.ip(), connection.tls.is_some(), global.forwarding);
    if route.append_forwarded_host {
        headers::append_forwarded_host(headers, authority);
    }
    headers::apply_request_header_settings(headers, &rendered, &route.remove_request_headers);
    if route.passes_identity
        && let Some(identity) = identity
    {
        set_identity_headers(headers, &global.authn, identity);
    }
    if let Ok(value) = HeaderValue::from_str(&cx.request_id) {
        headers.insert(REQUEST_ID, value);
    }
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let host = forward.host_rewrite.host(authority, &parts.headers, &target, &endpoint.authority);
    let host = HeaderValue::from_str(&host)
        .map_err(|_| ProxyError::proxy(ErrorKind::Internal).with_context("setting the upstream host"))?;
    parts.headers.insert(header::HOST, host);
    parts.uri = rewrite::upstream_uri(
        endpoint.scheme.clone(),
        endpoint.authority.clone(),
        &forward.path_rewrite.apply(&target),
    )
    .map_err(|e| ProxyError::proxy(ErrorKind::Internal).with_context("building the upstream uri").with_cause(e))?;
    let upstream_request = Request::from_parts(parts, body::incoming(incoming));

    let result = match on_upgrade {
        Some(on_upgrade) => {
            tunnel::forward_upgrade(&forward.client, on_upgrade, upstream_request, route.timeouts.total).await
        }
        None if forward.h2c => forward.client.send_h2c(upstream_request, route.timeouts).await,
        None => forward.client.send(upstream_request, route.timeouts).await,
    };
    let mut response = match result {
        Ok(response) => {
            pick.finish(balance::Outcome::Status(response.status().as_u16()));
            response
        }
        Err(error) => {
            pick.finish(balance::Outcome::NoResponse);
            return Err(error.into());
        }
    };
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        headers::remove_hop_by_hop(response.headers_mut(), None);
    }
    headers::rewrite_response_headers(response.headers_mut(), &route.rewrite_response_headers);
    with_headers(&mut response, &route.response_headers);
    Ok(response)
}

fn with_headers(response: &mut Response<ProxyBody>, set: &[(http::HeaderName, HeaderValue)]) {
    headers::set_response_headers(response.headers_mut(), set);
}

/// Pomerium's `clean-upstream` filter: the session cookie and Pomerium's own authorization
/// headers are for the proxy, never for the upstream.
fn strip_pomerium_credentials(headers: &mut HeaderMap, cookie_name: &str) {
    headers.remove("x-pomerium-authorization");
    let is_pomerium = |value: &HeaderValue| {
        value.to_str().is_ok_and(|v| {
            let v = v.trim_start();
            v.get(..9).is_some_and(|p| p.eq_ignore_ascii_case("pomerium ")) || v.starts_with("Bearer Pomerium-")
        })
    };
    if headers.get(header::AUTHORIZATION).is_some_and(is_pomerium) {
        headers.remove(header::AUTHORIZATION);
    }
    let cookies: Vec<HeaderValue> = headers.get_all(header::COOKIE).iter().cloned().collect();
    if cookies.is_empty() {
        return;
    }
    headers.remove(header::COOKIE);
    for cookie in cookies {
        let Ok(text) = cookie.to_str() else {
            headers.append(header::COOKIE, cookie);
            continue;
        };
        let kept: Vec<&str> = text
            .split(';')
            .map(str::trim)
            .filter(|pair| !pair.is_empty() && pair.split('=').next().map(str::trim) != Some(cookie_name))
            .collect();
        if let Ok(value) = HeaderValue::from_str(&kept.join("; "))
            && !kept.is_empty()
        {
            headers.append(header::COOKIE, value);
        }
    }
}

/// `X-Pomerium-Jwt-Assertion` and the `X-Pomerium-Claim-*` headers (system.md §3.6, §3.7).
fn set_identity_headers(headers: &mut HeaderMap, settings: &authn::AuthnSettings, identity: &Identity) {
    if let Ok(value) = HeaderValue::from_str(&identity.jwt) {
        headers.insert("x-pomerium-jwt-assertion", value);
    }
    for (name, value) in authn::identity::claim_headers(settings, identity) {
        if let (Ok(name), Ok(value)) = (http::HeaderName::try_from(name), HeaderValue::from_str(&value)) {
            headers.insert(name, value);
        }
    }
}

/// `set_request_headers` with their templates filled in from this request.
fn render_request_headers(
    route: &RouteRuntime,
    headers: &HeaderMap,
    connection: &ConnectionInfo,
    identity: Option<&Identity>,
) -> Vec<(http::HeaderName, HeaderValue)> {
    let values = TemplateValues { headers, connection, identity };
    route
        .set_request_headers
        .iter()
        .filter_map(|(name, template)| Some((name.clone(), HeaderValue::from_str(&template.render(&values)).ok()?)))
        .collect()
}

/// The values `set_request_headers` templates can read. The identity ones (`pomerium.jwt`,
/// `pomerium.access_token`, `pomerium.id_token`) are empty without a session.
struct TemplateValues<'a> {
    headers: &'a HeaderMap,
    connection: &'a ConnectionInfo,
    identity: Option<&'a Identity>,
}

impl Values for TemplateValues<'_> {
    fn lookup(&self, path: &[String]) -> Option<String> {
        let names: Vec<&str> = path.iter().map(String::as_str).collect();
        let leaf = || {
            self.connection
                .tls
                .as_ref()
                .and_then(|tls| tls.client_certificate.as_ref())
                .and_then(|c| c.leaf())
                .and_then(|der| policy::crypto::CertificateFacts::from_der(der.as_ref()))
        };
        match names.as_slice() {
            ["pomerium", "request", "headers", name] => {
                self.headers.get(*name).and_then(|v| v.to_str().ok()).map(str::to_owned)
            }
            ["pomerium", "client_cert_fingerprint"] => {
                leaf().map(|facts| facts.fingerprint.iter().map(|b| format!("{b:02x}")).collect())
            }
            ["pomerium", "client_cert_san_dns"] => leaf().map(|facts| facts.san_dns.join(",")),
            ["pomerium", "client_cert_san_email"] => leaf().map(|facts| facts.san_emails.join(",")),
            ["pomerium", "jwt"] => self.identity.map(|i| i.jwt.to_string()),
            ["pomerium", "id_token"] => self.identity.and_then(|i| i.id_token.clone()),
            ["pomerium", "access_token"] => self.identity.and_then(|i| i.access_token.clone()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pomerium_credentials_do_not_go_upstream() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; _pomerium=secret; b=2"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Pomerium abc"));
        headers.insert("x-pomerium-authorization", HeaderValue::from_static("abc"));
        strip_pomerium_credentials(&mut headers, "_pomerium");
        assert_eq!(headers.get(header::COOKIE).map(|v| v.to_str().ok()), Some(Some("a=1; b=2")));
        assert!(headers.get(header::AUTHORIZATION).is_none());
        assert!(headers.get("x-pomerium-authorization").is_none());

        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("_pomerium=only"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer upstream-token"));
        strip_pomerium_credentials(&mut headers, "_pomerium");
        assert!(headers.get(header::COOKIE).is_none());
        assert!(headers.get(header::AUTHORIZATION).is_some(), "other bearer tokens are the upstream's");
    }

    #[test]
    fn redirect_prefix_rewrite_replaces_the_matched_prefix() {
        let redirect = config::route::Redirect { prefix_rewrite: Some("/new/".to_owned()), ..Default::default() };
        let location = |matched: &str, uri: &str| {
            let uri: http::Uri = uri.parse().unwrap_or_default();
            let response = redirect_response(&redirect, matched, &uri, "app.example.com", true);
            response.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).map(str::to_owned)
        };
        assert_eq!(location("/old/", "/old/a/b?q=1").as_deref(), Some("https://app.example.com/new/a/b?q=1"));
        assert_eq!(location("/", "/a/b").as_deref(), Some("https://app.example.com/new/a/b"));
        assert_eq!(location("/exact", "/exact").as_deref(), Some("https://app.example.com/new/"));
    }

    #[test]
    fn hostnames_drop_the_port() {
        assert_eq!(hostname("app.example.com:8443"), "app.example.com");
        assert_eq!(hostname("app.example.com"), "app.example.com");
        assert_eq!(hostname("[::1]:443"), "::1");
    }
}
