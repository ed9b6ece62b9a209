//! The request pipeline: what happens to every request, as named phases (in the manner of
//! Pingora), each either passing the request on or answering it.
//!
//! 1. **sanitize**: normalize the path, refuse bad header names ([`crate::normalize`]).
//! 2. **authority**: the host the request is for (`:authority` or `Host`).
//! 3. **control plane**: Pomerium's own paths (`/ping`, `/healthz`, `/.pomerium/…`,
//!    `/.well-known/pomerium…`) never reach an upstream.
//! 4. **route**: the route table picks the route, or 404.
//! 5. **authorize** ([`crate::decision`]): the route's compiled policy decides, in process or
//!    in the authorize service (`authorize_service_url`, [`crate::RemoteAuthorize`]); the
//!    outcome is rendered ([`crate::render`]): sign-in redirect (302) or 401, 403, 450, 495, or on.
//! 6. **act**: a redirect route redirects, a response route answers, a `tcp+https` route opens
//!    a CONNECT tunnel, and any other route forwards:
//! 7. **forward**: pick an endpoint, rewrite path and host, set forwarding and route headers,
//!    send (or upgrade), and stream the answer back with the route's response headers.
//!
//! Every phase takes the request's [`Ctx`] (Pingora's `CTX`: the runtime, the connection, the
//! request id, the authority, the route, the decision, ...). Every answer carries `x-request-id`;
//! every request is logged once, at the end.

use crate::authn;
use crate::authn::identity::Identity;
use crate::authorize::{self, Remote};
use crate::body::{self, ProxyBody};
use crate::decision::{self, AuthorizeRequest, RequestUrl, hostname, unix_now};
use crate::error::{ErrorKind, ErrorPage, ProxyError, RequestId, ResponseFormat};
use crate::headers::{self};
use crate::log_fields::redact_credentials;
use crate::runtime::{Forward, RouteAction, RouteRuntime, Runtime};
use crate::server::ConnectionInfo;
use crate::tunnel;
use crate::{balance, normalize, rewrite, upstream};
use crate::{render, upstream_headers};
use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use std::sync::Arc;
use std::time::Instant;

const REQUEST_ID: &str = "x-request-id";

/// Handles one request with the runtime current when it arrived.
pub async fn handle(
    runtime: Arc<Runtime>,
    request: Request<Incoming>,
    connection: Arc<ConnectionInfo>,
) -> Response<ProxyBody> {
    let started = Instant::now();
    let request_id = RequestId::new();
    let mut ctx = Ctx {
        runtime: &runtime,
        connection: &connection,
        request_id,
        request_id_header: request_id.header(),
        format: ResponseFormat::negotiate(request.uri().path(), request.headers()),
        method: request.method().clone(),
        // A clone of the client's (it shares the connection's read buffer).
        target: request.uri().path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/")),
        started,
        read_deadline: runtime.global.request_timeout.map(|limit| started + limit),
        authority: RequestAuthority::default(),
        route: None,
        granted: None,
    };
    // Filtered out (e.g. RUST_LOG=warn), the access line costs nothing: nothing is captured.
    let logging = tracing::enabled!(target: "access", tracing::Level::INFO);
    let logged = if logging {
        crate::log_fields::Captured::new(&runtime.global.access_log, &request)
    } else {
        crate::log_fields::Captured::default()
    };
    let write_deadline = runtime.global.response_timeout.map(|limit| started + limit);
    // Tracing off (the default): no context and no span.
    let traced = runtime.global.tracing.as_ref().map(|tracing| {
        let authority = authority(&request).ok();
        let url = original_url(runtime.global.tls, authority.as_deref().unwrap_or_default(), ctx.target.as_str());
        let url = redact_credentials(&url);
        crate::trace::start(
            tracing,
            &ctx.method,
            request.headers(),
            authority.as_deref(),
            &url,
            ctx.request_id.as_str(),
        )
    });
    let late = || {
        Err(ProxyError::upstream(ErrorKind::Timeout)
            .with_context("the response did not begin within timeout_write")
            .into())
    };
    // The phases' future is made where it is awaited: every move of it is a copy of its whole
    // state (kilobytes), which B4 sees. Traced, it runs in the request span's context, boxed (a
    // path this function's state then holds only a pointer for).
    let answered = match (&traced, write_deadline) {
        (None, Some(deadline)) => {
            tokio::time::timeout_at(deadline.into(), phases(&mut ctx, request)).await.unwrap_or_else(|_| late())
        }
        (None, None) => phases(&mut ctx, request).await,
        (Some(otel), deadline) => {
            use opentelemetry::trace::FutureExt as _;
            let traced_phases = Box::pin(phases(&mut ctx, request).with_context(otel.clone()));
            match deadline {
                Some(deadline) => {
                    tokio::time::timeout_at(deadline.into(), traced_phases).await.unwrap_or_else(|_| late())
                }
                None => traced_phases.await,
            }
        }
    };
    let upstream_answered = answered.is_ok() && ctx.route.is_some();
    let mut response = match answered {
        Ok(response) => response.map(|body| match write_deadline {
            Some(deadline) => upstream::TimedBody::response(body, deadline.into()).boxed_unsync(),
            None => body,
        }),
        Err(failure) => {
            let mut response = failure.into_response(&ctx);
            // The proxy's own answers (Envoy's local replies) carry the global response headers
            // (Pomerium's `local_reply.go`).
            with_headers(&mut response, &runtime.global.response_headers);
            response
        }
    };
    response.headers_mut().insert(REQUEST_ID, ctx.request_id_header.clone());
    if logging {
        access_log(&ctx, &logged, &response, upstream_answered);
    }
    if let (Some(tracing), Some(otel)) = (&runtime.global.tracing, &traced) {
        crate::trace::finish(tracing, otel, &ctx.method, response.status(), ctx.route.as_deref());
    }
    response
}

/// The access log line, with the fields of `access_log_fields` (Pomerium's names).
fn access_log(
    ctx: &Ctx<'_>,
    logged: &crate::log_fields::Captured,
    response: &Response<ProxyBody>,
    upstream_answered: bool,
) {
    use crate::log_fields::{access::*, protocol, text};
    let (runtime, connection, cx, started) = (ctx.runtime, ctx.connection, ctx, ctx.started);
    let served_by = ctx.route.as_deref();
    let fields = &runtime.global.access_log;
    let on = |index| fields.has(index);
    let path = cx.target.path();
    tracing::info!(
        target: "access",
        {
            "upstream-cluster" = on(UPSTREAM_CLUSTER).then(|| served_by.map_or("-", |route| route.id.as_str())),
            method = on(METHOD).then(|| cx.method.as_str()),
            authority = logged.authority.as_ref().map(crate::log_fields::LoggedAuthority::as_str),
            path = on(PATH).then_some(path),
            query = on(QUERY)
                .then(|| redact_credentials(cx.target.as_str()).split_once('?').map(|(_, query)| query.to_owned()))
                .flatten(),
            "user-agent" = on(USER_AGENT).then(|| text(logged.user_agent.as_ref())),
            referer = on(REFERER).then(|| text(logged.referer.as_ref())),
            "forwarded-for" = on(FORWARDED_FOR).then(|| text(logged.forwarded_for.as_ref())),
            "request-id" = on(REQUEST_ID).then_some(cx.request_id.as_str()),
            duration = on(DURATION).then(|| started.elapsed().as_secs_f64() * 1000.0),
            size = on(SIZE).then(|| http_body::Body::size_hint(response.body()).exact()).flatten(),
            "response-code" = on(RESPONSE_CODE).then(|| response.status().as_u16()),
            "response-code-details" =
                on(RESPONSE_CODE_DETAILS).then_some(if upstream_answered { "via_upstream" } else { "local_reply" }),
            ip = on(IP).then(|| display(connection.peer.ip())),
            "dest-ip" = on(DEST_IP).then(|| display(connection.local.ip())),
            "dest-port" = on(DEST_PORT).then(|| connection.local.port()),
            "protocol-version" = on(PROTOCOL_VERSION).then(|| protocol(logged.version)),
            "tls-sni-hostname" =
                on(TLS_SNI_HOSTNAME).then(|| connection.tls.as_ref().and_then(|t| t.server_name.as_deref())).flatten(),
            headers = logged.headers.as_ref().and_then(|h| fields.headers(h)).map(display),
        },
        "request"
    );
}

/// One request's state, given to every phase (Pingora's `CTX`): what the request arrived with,
/// and what each phase found for the later ones (the authority, the route, the decision). It
/// lives in `handle`'s frame; the phases borrow it, so their futures hold one pointer for it.
struct Ctx<'a> {
    runtime: &'a Runtime,
    connection: &'a ConnectionInfo,
    request_id: RequestId,
    /// `request_id` as the one header value the upstream request and the response share.
    request_id_header: HeaderValue,
    /// The format of the proxy's own answers (`Accept`, gRPC, Kubernetes clients).
    format: ResponseFormat,
    method: Method,
    /// The request target as the client sent it (path and query).
    target: PathAndQuery,
    started: Instant,
    /// When the whole request must have arrived (`timeout_read` from its start).
    read_deadline: Option<Instant>,
    /// `host[:port]`, lowercased (phase 2).
    authority: RequestAuthority,
    /// The route (phase 4); the access log and the trace name it, failures included.
    route: Option<Arc<RouteRuntime>>,
    /// What the decision granted (phase 5).
    granted: Option<Granted>,
}

impl Ctx<'_> {
    /// The URL the client asked for (`https://host/path?query`).
    fn original_url(&self) -> String {
        original_url(self.runtime.global.tls, &self.authority, self.target.as_str())
    }
}

/// What an allowed request carries upstream.
#[derive(Debug)]
enum Granted {
    /// Decided in this process: the identity, when the route sends one or its templates read it.
    Local(Option<Identity>),
    /// Decided by the authorize service: the headers it built ([`upstream_headers::build`]).
    Remote(Vec<(http::HeaderName, HeaderValue)>),
}

/// An early answer: an error, a policy denial, or a response ready to send.
#[derive(Debug)]
pub(crate) enum Failure {
    Error(ProxyError),
    Page(ErrorPage),
    Response(Box<Response<ProxyBody>>),
}

impl Failure {
    fn into_response(self, cx: &Ctx<'_>) -> Response<ProxyBody> {
        match self {
            Failure::Error(error) => {
                tracing::debug!(request_id = %cx.request_id, %error, "request failed");
                error.page(cx.request_id.as_str()).render_as(cx.format)
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

/// The phases, in order, on the request's [`Ctx`].
async fn phases(ctx: &mut Ctx<'_>, mut request: Request<Incoming>) -> Result<Response<ProxyBody>, Failure> {
    sanitize(ctx, &mut request)?;
    ctx.authority = authority(&request)?;
    let request = match control_plane(ctx, request).await? {
        ControlPlane::Answered(response) => return Ok(response),
        ControlPlane::NotOurs(request) => request,
    };
    let route = find_route(ctx, &request)?;
    // Recorded before the later phases so that their failures are logged with the route.
    ctx.route = Some(Arc::clone(&route));
    check_connection_fits(ctx, &route)?;
    ctx.granted = Some(authorize(ctx, &route, &request).await?);
    act(ctx, &route, request).await
}

// 1. sanitize

fn sanitize(ctx: &Ctx<'_>, request: &mut Request<Incoming>) -> Result<(), Failure> {
    match normalize::normalize_request(request, &ctx.runtime.global.normalize)? {
        None => Ok(()),
        Some(redirect) => Err(Failure::Response(Box::new(redirect))),
    }
}

// 2. authority

/// `host[:port]` of the request, lowercased: from the URI (HTTP/2, CONNECT, absolute-form) or the
/// `Host` header.
fn authority(request: &Request<Incoming>) -> Result<RequestAuthority, Failure> {
    let (authority, found) = match request.uri().authority() {
        // Already parsed by hyper as an authority.
        Some(authority) => (authority.as_str(), RequestAuthority::Uri(authority.clone())),
        None => {
            let value = request.headers().get(header::HOST);
            let host = value.and_then(|h| h.to_str().ok()).unwrap_or("");
            if !host.is_empty() && http::uri::Authority::try_from(host).is_err() {
                return Err(bad_host("reading the host: not host[:port]"));
            }
            (host, value.map_or(RequestAuthority::None, |value| RequestAuthority::Header(value.clone())))
        }
    };
    if authority.is_empty() {
        return Err(bad_host("reading the host: the request names none"));
    }
    if authority.contains('@') {
        return Err(bad_host("reading the host: not host[:port]"));
    }
    if authority.bytes().any(|b| b.is_ascii_uppercase()) {
        return Ok(RequestAuthority::Lowered(authority.to_ascii_lowercase()));
    }
    Ok(found)
}

/// `host[:port]` of a request, lowercase: the request's own (a clone that shares its bytes) when
/// it was lowercase already.
#[derive(Debug, Default)]
enum RequestAuthority {
    /// Not read yet.
    #[default]
    None,
    Header(HeaderValue),
    Uri(http::uri::Authority),
    Lowered(String),
}

impl std::ops::Deref for RequestAuthority {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            Self::None => "",
            Self::Header(value) => value.to_str().unwrap_or_default(),
            Self::Uri(authority) => authority.as_str(),
            Self::Lowered(text) => text,
        }
    }
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
async fn control_plane(cx: &Ctx<'_>, request: Request<Incoming>) -> Result<ControlPlane, Failure> {
    let (runtime, authority) = (cx.runtime, &*cx.authority);
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
        // Boxed: the sign-in endpoints' future (the body read, IdP and databroker calls) is far
        // larger than a proxied request's, and every request's future would otherwise be as
        // large: each move of it copies its whole state.
        return Box::pin(endpoint(cx, request)).await.map(ControlPlane::Answered);
    }
    let reserved = |root: &str| path.strip_prefix(root).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    // A process that runs the authenticate service but not the proxy (`services: authenticate`)
    // serves its own host's endpoints and nothing else.
    let not_served = !global.authn.serves_routes;
    if reserved("/.pomerium") || reserved("/.well-known/pomerium") || not_served {
        let mut page = ErrorPage::new(StatusCode::NOT_FOUND, cx.request_id.as_str());
        if not_served && !global.authn.is_authenticate_host(host) {
            page = page.with_message("route not found");
        }
        let mut response = page.render_as(cx.format);
        with_headers(&mut response, &global.response_headers);
        return Ok(ControlPlane::Answered(response));
    }
    Ok(ControlPlane::NotOurs(request))
}

/// Answers a request for one of the sign-in endpoints ([`crate::authn::endpoints`]).
async fn endpoint(cx: &Ctx<'_>, request: Request<Incoming>) -> Result<Response<ProxyBody>, Failure> {
    let global = &cx.runtime.global;
    let host = hostname(&cx.authority);
    let (parts, incoming) = request.into_parts();
    let body = read_bounded(incoming, cx.read_deadline).await?;
    let url = cx.original_url();
    let Ok(url) = url::Url::parse(&url) else {
        return Err(bad_host("reading the url"));
    };
    let control = authn::endpoints::ControlRequest {
        method: &parts.method,
        url: &url,
        hostname: host,
        headers: &parts.headers,
        body,
        request_id: cx.request_id.as_str(),
        format: cx.format,
    };
    let context = authn::endpoints::Context {
        settings: &global.authn,
        assertions: &global.authn_state.assertions,
        records: &global.records,
        callback_path: &global.callback_path,
        now: unix_now_signed(),
    };
    let mut response = global.sign_in.endpoint(&context, &control).await;
    with_headers(&mut response, &global.response_headers);
    Ok(response)
}

/// A control-plane request's body, refused past [`CONTROL_BODY_LIMIT`] or past `deadline`.
async fn read_bounded(incoming: Incoming, deadline: Option<Instant>) -> Result<bytes::Bytes, Failure> {
    use http_body_util::BodyExt as _;
    let collect = http_body_util::Limited::new(incoming, CONTROL_BODY_LIMIT).collect();
    let collected = match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline.into(), collect).await.map_err(|_| {
            Failure::from(
                ProxyError::client(ErrorKind::Timeout).with_context("the request did not arrive within timeout_read"),
            )
        })?,
        None => collect.await,
    };
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) => {
            let too_large = error.downcast_ref::<http_body_util::LengthLimitError>().is_some();
            let kind = if too_large { ErrorKind::BodyTooLarge } else { ErrorKind::Closed };
            Err(ProxyError::client(kind).with_context("reading the request body").into())
        }
    }
}

// 4. route

fn find_route(cx: &Ctx<'_>, request: &Request<Incoming>) -> Result<Arc<RouteRuntime>, Failure> {
    let lookup = routing::Request {
        authority: &cx.authority,
        path: request.uri().path(),
        connect: request.method() == Method::CONNECT,
    };
    match cx.runtime.table.lookup(&lookup) {
        Some(found) => Ok(Arc::clone(found.value)),
        None => {
            let page = ErrorPage::new(StatusCode::NOT_FOUND, cx.request_id.as_str()).with_message("route not found");
            Err(Failure::Page(page))
        }
    }
}

/// A connection whose SNI names a host with its own client CA verified its certificate against
/// that CA only: a request on it for a route with other client-certificate settings (another
/// CA, or the listener's) must not borrow that verification. 421 Misdirected Request makes
/// browsers open a new connection for the request's host.
fn check_connection_fits(ctx: &Ctx<'_>, route: &RouteRuntime) -> Result<(), Failure> {
    let Some(tls) = &ctx.connection.tls else { return Ok(()) };
    if tls.client_ca == route.client_ca {
        return Ok(());
    }
    Err(ProxyError::client(ErrorKind::Misdirected)
        .with_context("serving a request on a connection made for a host with other client certificate settings")
        .into())
}

// 5. authorize

/// Decides the request in process, or asks the authorize service when one is configured.
async fn authorize(cx: &Ctx<'_>, route: &RouteRuntime, request: &Request<Incoming>) -> Result<Granted, Failure> {
    let (runtime, connection, authority) = (cx.runtime, cx.connection, &*cx.authority);
    let global = &runtime.global;
    let request = AuthorizeRequest {
        method: request.method().as_str(),
        authority,
        path: request.uri().path(),
        query: request.uri().query(),
        url: RequestUrl::Parts { tls: global.tls, authority, path: cx.target.path(), query: cx.target.query() },
        headers: request.headers(),
        client_ip: headers::trusted_client_address(
            request.headers(),
            connection.peer.ip(),
            global.forwarding.xff_num_trusted_hops,
        ),
        certificate: connection.tls.as_ref().and_then(|tls| tls.client_certificate.as_ref()),
        request_id: cx.request_id.as_str(),
    };
    let refused = |answer: Box<crate::error::Answer>| Failure::Response(Box::new(answer.into_response()));
    match &global.remote_authorize {
        // Boxed, like every rare path that awaits a network client: see `control_plane`.
        Some(client) => {
            let answer = Box::pin(authorize::remote(client.as_ref(), route, &request, global.tls)).await;
            crate::trace::record_remote_decision(global, matches!(answer, Ok(Remote::Allow(_))));
            match answer? {
                Remote::Allow(set) => Ok(Granted::Remote(set)),
                Remote::Deny(answer) => Err(refused(Box::new(answer))),
            }
        }
        None => {
            let outcome = decision::decide(runtime, route, &request).await;
            render::outcome(outcome, cx.request_id.as_str(), cx.format).map(Granted::Local).map_err(refused)
        }
    }
}

fn original_url(tls: bool, authority: &str, target: &str) -> String {
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{authority}{target}")
}

fn unix_now_signed() -> i64 {
    i64::try_from(unix_now()).unwrap_or(i64::MAX)
}

// 6. act

async fn act(
    cx: &Ctx<'_>,
    route: &RouteRuntime,
    mut request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Failure> {
    let (runtime, authority) = (cx.runtime, &*cx.authority);
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
            return Ok(Box::pin(tunnel::connect_tunnel(upgrade, target, runtime.global.connect_timeout)).await?);
        }
        RouteAction::Forward(forward) => {
            return forward_request(cx, route, forward, request).await;
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
    let mut response = crate::error::Answer::redirect(StatusCode::FOUND, &location).into_response();
    *response.status_mut() =
        redirect.response_code.and_then(|c| StatusCode::from_u16(c).ok()).unwrap_or(StatusCode::MOVED_PERMANENTLY);
    response
}

// 7. forward

async fn forward_request(
    cx: &Ctx<'_>,
    route: &RouteRuntime,
    forward: &Forward,
    mut request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Failure> {
    let (global, connection, authority) = (&cx.runtime.global, cx.connection, &*cx.authority);
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

    // What goes upstream because of who asked: built here, or by the authorize service with the
    // same function; templates read the request's headers as the client sent them.
    let built;
    let set = match &cx.granted {
        None => &[][..],
        Some(Granted::Local(identity)) => {
            let certificate = connection.tls.as_ref().and_then(|tls| tls.client_certificate.as_ref());
            built = upstream_headers::build(&global.authn, route, &parts.headers, certificate, identity.as_ref());
            built.as_slice()
        }
        Some(Granted::Remote(set)) => set.as_slice(),
    };
    let headers = &mut parts.headers;
    headers::remove_hop_by_hop(headers, upgrade.as_deref());
    headers::set_forwarding_headers(headers, connection.peer.ip(), connection.tls.is_some(), global.forwarding);
    if route.append_forwarded_host {
        headers::append_forwarded_host(headers, authority);
    }
    upstream_headers::apply(headers, route, &global.cookie_name, set);
    headers.insert(REQUEST_ID, cx.request_id_header.clone());
    crate::trace::inject(global, headers);
    let target = strip_session_parameter(parts.uri.path_and_query().map_or("/", PathAndQuery::as_str));
    let host = match &forward.host_rewrite {
        // The upstream's authority, made once with the route.
        rewrite::HostRewrite::Upstream => endpoint.host.clone(),
        rewrite => HeaderValue::from_str(&rewrite.host(authority, &parts.headers, &target, &endpoint.authority))
            .map_err(|_| ProxyError::proxy(ErrorKind::Internal).with_context("setting the upstream host"))?,
    };
    let uri = match (&forward.path_rewrite, &target, parts.uri.path_and_query()) {
        // Nothing to rewrite: the client's path and query, shared, not copied.
        (rewrite::PathRewrite::None, std::borrow::Cow::Borrowed(_), Some(path_and_query)) => {
            rewrite::upstream_uri_with(endpoint.scheme.clone(), endpoint.authority.clone(), path_and_query.clone())
        }
        _ => rewrite::upstream_uri(
            endpoint.scheme.clone(),
            endpoint.authority.clone(),
            &forward.path_rewrite.apply(&target),
        ),
    }
    .map_err(|e| ProxyError::proxy(ErrorKind::Internal).with_context("building the upstream uri").with_cause(e))?;
    drop(target);
    parts.headers.insert(header::HOST, host);
    parts.uri = uri;
    let body = match cx.read_deadline {
        Some(deadline) if !hyper::body::Body::is_end_stream(&incoming) => {
            upstream::TimedBody::request(incoming, deadline.into()).boxed_unsync()
        }
        _ => body::incoming(incoming),
    };
    let upstream_request = Request::from_parts(parts, body);

    let result = match on_upgrade {
        Some(on_upgrade) => {
            Box::pin(tunnel::forward_upgrade(&forward.client, on_upgrade, upstream_request, route.timeouts.total)).await
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

/// The request target without `pomerium_session` query parameters: like the cookie, a handle
/// in the query is the proxy's credential and never the upstream's. Names are compared decoded,
/// as the handle reader (`authenticate::cookie::session_token`) decodes them, so that no
/// re-encoding of the name slips one through. Borrows when there is nothing to remove.
fn strip_session_parameter(target: &str) -> std::borrow::Cow<'_, str> {
    const NAME: &str = "pomerium_session";
    let Some((path, query)) = target.split_once('?') else { return target.into() };
    // A name that decodes to NAME holds it literally or holds an escape.
    if !query.contains(NAME) && !query.contains('%') {
        return target.into();
    }
    let is_session = |pair: &&str| {
        let name = pair.split('=').next().unwrap_or_default();
        url::form_urlencoded::parse(name.as_bytes()).next().is_some_and(|(decoded, _)| decoded == NAME)
    };
    if !query.split('&').any(|pair| is_session(&pair)) {
        return target.into();
    }
    let kept: Vec<&str> = query.split('&').filter(|pair| !is_session(pair)).collect();
    if kept.is_empty() { path.to_owned().into() } else { format!("{path}?{}", kept.join("&")).into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_the_query_are_not_logged() {
        assert_eq!(redact_credentials("/a?b=1"), "/a?b=1");
        assert_eq!(redact_credentials("/a"), "/a");
        assert_eq!(
            redact_credentials("/oauth2/callback?code=secret&state=s&iss=x"),
            "/oauth2/callback?code=REDACTED&state=s&iss=x"
        );
        assert_eq!(
            redact_credentials("/.pomerium/callback/?pomerium_redirect_uri=u&pomerium_session_encrypted=abc"),
            "/.pomerium/callback/?pomerium_redirect_uri=u&pomerium_session_encrypted=REDACTED"
        );
        assert_eq!(redact_credentials("/x?pomerium_session=jwt"), "/x?pomerium_session=REDACTED");
    }

    #[test]
    fn the_session_parameter_is_never_forwarded() {
        assert_eq!(strip_session_parameter("/x?pomerium_session=h"), "/x");
        assert_eq!(strip_session_parameter("/x?a=1&pomerium_session=h&b=2"), "/x?a=1&b=2");
        assert_eq!(strip_session_parameter("/x?pomerium%5Fsession=h&pomerium_session=j&c"), "/x?c");
        assert_eq!(strip_session_parameter("/x?%70omerium_session"), "/x");
        for kept in ["/x", "/x?pomerium_session_encrypted=1", "/x?a=%20", "/pomerium_session?x_pomerium_session=1"] {
            assert!(matches!(strip_session_parameter(kept), std::borrow::Cow::Borrowed(_)), "{kept}");
        }
        assert_eq!(redact_credentials("/x?pomerium_jwt=t&codes=1"), "/x?pomerium_jwt=REDACTED&codes=1");
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
}
