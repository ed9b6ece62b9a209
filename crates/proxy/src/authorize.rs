//! Phase 5 of the pipeline, authorize (system.md §3.5, §4): the request's session, the route's
//! compiled policy, the verdict as Pomerium maps it to a response, and the identity an allowed
//! request carries upstream.
//!
//! One decision, three ways in:
//! - in process ([`decide`]), for a proxy that runs the authorize service too (`services: all`,
//!   or `proxy` without `authorize_service_url`);
//! - from a proxy running apart (`services: proxy` with `authorize_service_url`): [`remote`]
//!   sends the request to the authorize service as Envoy's ext_authz `Check` would, and applies
//!   the headers it answers with;
//! - on the authorize service (`services: authorize`): [`Authorizer`] answers `Check` calls by
//!   running [`decide`] on the request they describe, so that both sides give the same answer.

use crate::authn::{self, identity::Identity};
use crate::body::{self, ProxyBody};
use crate::error::{ErrorKind, ErrorPage, ProxyError, ResponseFormat};
use crate::pipeline::Failure;
use crate::runtime::{RouteRuntime, Runtime};
use crate::templates::Values;
use crate::tls::ClientCertificate;
use arc_swap::ArcSwap;
use ext_authz::wire;
use http::header::{self, HeaderValue};
use http::{HeaderMap, HeaderName, Response, StatusCode};
use policy::decision::{Verdict, wants_html};
use policy::input::{self, Input};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// What authorization reads of a request, wherever the request arrived.
#[derive(Debug)]
pub(crate) struct AuthorizeRequest<'a> {
    pub method: &'a str,
    /// `host[:port]` as the client sent it.
    pub authority: &'a str,
    /// The path, without the query.
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// The URL the client asked for (`https://host/path?query`).
    pub url: &'a str,
    pub headers: &'a HeaderMap,
    /// The client's address, after `xff_num_trusted_hops`.
    pub client_ip: IpAddr,
    pub certificate: Option<&'a ClientCertificate>,
    pub request_id: &'a str,
}

/// The authorize log line ("authorize check"), with the fields of `authorize_log_fields`
/// (Pomerium's names) and, always, the decision and its reasons.
fn authorize_log(
    fields: &crate::log_fields::LogFields,
    route: &RouteRuntime,
    request: &AuthorizeRequest<'_>,
    session_id: Option<&str>,
    records: &dyn policy::records::Records,
    now: jiff::Timestamp,
    decision: &policy::decision::Decision<'_>,
) {
    use crate::log_fields::authorize::*;
    use policy::records::Principal;
    // Filtered out (e.g. RUST_LOG=warn): resolve and render nothing.
    if !tracing::enabled!(tracing::Level::INFO) {
        return;
    }
    let on = |index| fields.has(index);
    let who = (on(USER) || on(EMAIL) || on(SERVICE_ACCOUNT_ID) || on(ID_TOKEN) || on(ID_TOKEN_CLAIMS))
        .then(|| policy::records::resolve_session(records, session_id, now))
        .flatten();
    let user_id = who.as_ref().and_then(Principal::user_id);
    let session = match who {
        Some(Principal::Session(session)) => Some(session),
        _ => None,
    };
    let why = |result: &policy::decision::RuleResult<'_>, when: bool| {
        if result.value == when { result.reasons.names() } else { Vec::new() }
    };
    tracing::info!(
        {
            "request-id" = on(REQUEST_ID).then_some(request.request_id),
            "check-request-id" = on(CHECK_REQUEST_ID).then(|| {
                request.headers.get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or(request.request_id)
            }),
            method = on(METHOD).then_some(request.method),
            path = on(PATH).then_some(request.path),
            host = on(HOST).then_some(request.authority),
            query = on(QUERY)
                .then(|| request.query.map(|q| {
                    crate::pipeline::redact_credentials(&format!("?{q}")).trim_start_matches('?').to_owned()
                }))
                .flatten(),
            ip = on(IP).then(|| display(request.client_ip)),
            "session-id" = on(SESSION_ID).then_some(session_id).flatten(),
            "service-account-id" = match who {
                Some(Principal::ServiceAccount(account)) if on(SERVICE_ACCOUNT_ID) => Some(account.id.as_str()),
                _ => None,
            },
            user = on(USER).then_some(user_id).flatten(),
            email = on(EMAIL)
                .then(|| user_id.map(|id| policy::records::user_email(records.user(id), records.directory_user(id))))
                .flatten(),
            // The ID token only when `id-token` asks for it (as Pomerium).
            "id-token" = on(ID_TOKEN)
                .then(|| session.and_then(|s| s.id_token.as_ref()).map(|t| t.0.as_str()))
                .flatten(),
            "id-token-claims" = on(ID_TOKEN_CLAIMS)
                .then(|| session.map(|s| display(serde_json::Value::Object(s.claims.clone()))))
                .flatten(),
            "envoy-route-id" = on(ENVOY_ROUTE_ID).then_some(route.id.as_str()),
            "route-id" = on(ROUTE_ID).then_some(route.id.as_str()),
            headers = fields.headers(request.headers).map(display),
            allow = decision.allow.value,
            "allow-why-true" = ?why(&decision.allow, true),
            "allow-why-false" = ?why(&decision.allow, false),
            deny = decision.deny.value,
            "deny-why-true" = ?why(&decision.deny, true),
            "deny-why-false" = ?why(&decision.deny, false),
        },
        "authorize check"
    );
}

/// What an allowed request carries upstream.
#[derive(Debug)]
pub(crate) enum Granted {
    /// Decided in this process: the identity, when the route sends one or its templates read it.
    Local(Option<Identity>),
    /// Decided by the authorize service: the headers it set, which replace the proxy's.
    Remote(Vec<(HeaderName, HeaderValue)>),
}

/// Finds the request's session, evaluates the route's policy, and for an allowed request on a
/// route that sends identity upstream (or reads it in a header template) signs the identity.
pub(crate) async fn decide(
    runtime: &Runtime,
    route: &RouteRuntime,
    request: &AuthorizeRequest<'_>,
) -> Result<Option<Identity>, Failure> {
    let session = request_session(runtime, route, request).await?;
    match evaluate(runtime, route, request, session.as_ref()) {
        Evaluated::Done(result) => result,
        // Outside `evaluate`: the records' read guard is not held across the stateless flow's
        // fetch of the authenticate service's key.
        Evaluated::SignIn => {
            // Boxed: it may fetch the authenticate service's key (see `pipeline::control_plane`).
            Err(Failure::Response(Box::new(Box::pin(sign_in_redirect(runtime, route, request.url)).await)))
        }
    }
}

/// The policy's answer, or a sign-in redirect still to be built.
enum Evaluated {
    Done(Result<Option<Identity>, Failure>),
    SignIn,
}

fn evaluate(
    runtime: &Runtime,
    route: &RouteRuntime,
    request: &AuthorizeRequest<'_>,
    session: Option<&authn::session::RequestSession>,
) -> Evaluated {
    let global = &runtime.global;
    let session_id = session.map(authn::session::RequestSession::id);
    let headers = RequestHeaders(request.headers);
    let facts = request
        .certificate
        .and_then(ClientCertificate::leaf)
        .and_then(|der| policy::crypto::CertificateFacts::from_der(der.as_ref()));
    let now = jiff::Timestamp::now();
    let input = Input {
        http: input::Http {
            method: Some(request.method),
            host: Some(request.authority),
            hostname: Some(hostname(request.authority)),
            path: Some(request.path),
            url: Some(request.url),
            headers: &headers,
            ip: Some(request.client_ip),
            client_certificate: input::ClientCertificate {
                presented: Some(request.certificate.is_some()),
                leaf: facts.as_ref(),
            },
        },
        // With no CA for the route (its own or the global one), any certificate, or none, is
        // valid (Pomerium's `isValidClientCertificate`).
        is_valid_client_certificate: if global.client_chains.is_none() && route.client_ca.is_none() {
            Some(true)
        } else {
            request.certificate.map(|c| c.verified)
        },
        session_id,
        ssh: input::Ssh::default(),
        mcp: input::Mcp::default(),
        now,
    };
    let cache = global.records.read();
    let overlay;
    let records: &dyn policy::records::Records = match session {
        Some(found @ authn::session::RequestSession { fetched: Some(fetched), .. }) => {
            overlay = authn::session::Overlay { base: &cache, fetched, session_id: found.id() };
            &overlay
        }
        _ => &*cache,
    };
    let decision = route.program.evaluate(&input, records);
    let accept = request.headers.get(header::ACCEPT).and_then(|a| a.to_str().ok());
    let verdict = decision.verdict(wants_html(accept) && !is_grpc(request.headers));
    authorize_log(&global.authorize_log, route, request, session_id, records, now, &decision);
    crate::trace::record_decision(global, verdict == Verdict::Allow, &decision);
    let result = match verdict {
        Verdict::Allow
            if route.passes_identity || route.templates_need_identity || route.kubernetes_authorization.is_some() =>
        {
            // `identity` resolves the session (or service account) itself, and states an
            // anonymous identity for one that is gone.
            Ok(authn::identity::identity(
                &global.authn,
                &global.authn_state.assertions,
                records,
                session_id,
                hostname(request.authority),
                now.as_second(),
                route.templates_read_tokens,
            ))
        }
        Verdict::Allow => Ok(None),
        Verdict::Login { redirect: true } => return Evaluated::SignIn,
        Verdict::Login { redirect: false } => Err(Failure::Page(
            ErrorPage::new(StatusCode::UNAUTHORIZED, request.request_id).with_message("Unauthenticated"),
        )),
        Verdict::DeviceEnroll => {
            Err(Failure::Response(Box::new(device_enrollment_redirect(runtime, request.authority, request.url))))
        }
        denied => {
            let status = StatusCode::from_u16(denied.status()).unwrap_or(StatusCode::FORBIDDEN);
            let mut page = ErrorPage::new(status, request.request_id);
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
    };
    Evaluated::Done(result)
}

/// The request's session: from an identity provider's bearer token where the route reads one
/// (`bearer_token_format`), else from its session handle. A refused token ends the request here
/// (403; 400 for a cookie beside a bearer token on a `jwt` route), before the policy.
async fn request_session(
    runtime: &Runtime,
    route: &RouteRuntime,
    request: &AuthorizeRequest<'_>,
) -> Result<Option<authn::session::RequestSession>, Failure> {
    use authn::bearer::{self, Bearer, BearerError};
    let global = &runtime.global;
    let refused = |status: StatusCode, message: String| {
        Failure::Page(ErrorPage::new(status, request.request_id).with_message(message))
    };
    let unavailable = |context: &'static str, cause: String| {
        Failure::Error(ProxyError::proxy(ErrorKind::Unavailable).with_context(context).with_cause(cause))
    };
    match bearer::read(request.headers, route.bearer_token_format, &global.authn.cookie_name) {
        Bearer::NotRead => {}
        Bearer::IdpToken(kind, token) => {
            let audiences = route.access_token_audiences.as_deref();
            // Boxed: the identity provider's and the databroker's futures would make every
            // request's future as large (see `pipeline::control_plane`).
            let session = bearer::session(&global.authn, &global.authn_state, &global.records, kind, token, audiences);
            return match Box::pin(session).await {
                Ok(session) => Ok(Some(session)),
                Err(BearerError::Refused(reason)) => Err(refused(StatusCode::FORBIDDEN, reason)),
                Err(BearerError::Unavailable(reason)) => Err(unavailable("checking the bearer token", reason)),
            };
        }
        Bearer::UnsupportedJwt => {
            return Err(refused(
                StatusCode::FORBIDDEN,
                "bearer_token_format `jwt` needs jwt_allowed_issuers, which this server does not support yet".into(),
            ));
        }
        Bearer::CookieBesideToken => {
            return Err(refused(
                StatusCode::BAD_REQUEST,
                "a session cookie and a bearer token together: send one credential, not both".into(),
            ));
        }
    }
    authn::session::find(&global.authn, &global.authn_state, request.headers, request.query)
        .await
        .map_err(|error| unavailable("reading the session from the databroker", error.to_string()))
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

/// `host` of `host[:port]` (and of `[v6]:port`).
pub(crate) fn hostname(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.split_once(']').map_or(authority, |(host, _)| host.trim_start_matches('['));
    }
    authority.rsplit_once(':').map_or(authority, |(host, _)| host)
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

pub(crate) fn redirect_to(location: &str) -> Response<ProxyBody> {
    let mut response = Response::new(body::empty());
    *response.status_mut() = StatusCode::FOUND;
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// 302 to the authenticate service's sign-in URL (system.md §3.3 step 1): signed, or in the
/// stateless flow sealed for the authenticate service's HPKE key.
async fn sign_in_redirect(runtime: &Runtime, route: &RouteRuntime, original: &str) -> Response<ProxyBody> {
    let global = &runtime.global;
    let Ok(original) = url::Url::parse(original) else {
        return ErrorPage::new(StatusCode::BAD_REQUEST, "").render_as(ResponseFormat::Html);
    };
    if global.authn.stateless {
        let idp_id = route.idp_id.as_deref();
        return match authn::stateless::sign_in_url(&global.authn, &global.authn_state, &original, idp_id, Vec::new())
            .await
        {
            Ok(url) => redirect_to(url.as_str()),
            Err(error) => {
                tracing::warn!(%error, "no sign-in redirect: the authenticate service's key is not available");
                ErrorPage::new(StatusCode::BAD_GATEWAY, "")
                    .with_message("the authenticate service is not available; try again later")
                    .render_as(ResponseFormat::Html)
            }
        };
    }
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
    Deny(Response<ProxyBody>),
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
    match decide(runtime, &route, &request).await {
        Ok(identity) => {
            let mut set = match &identity {
                Some(identity) => identity_headers(&runtime.global.authn, &route, identity),
                None => Vec::new(),
            };
            set.extend(render_request_headers(&route, probe.headers, None, identity.as_ref(), false));
            Authorized::Allow(set)
        }
        Err(Failure::Error(error)) => Authorized::Deny(error.page(&request_id).render_as(format)),
        Err(Failure::Page(page)) => Authorized::Deny(page.render_as(format)),
        Err(Failure::Response(response)) => Authorized::Deny(*response),
    }
}

// ---- header templates

/// `set_request_headers` with their templates filled in. The identity values
/// (`${pomerium.jwt}`, `${pomerium.id_token}`, `${pomerium.access_token}`) are empty without an
/// identity; `only_identity` keeps just the headers whose templates read one (what an authorize
/// service sends back to the proxy).
pub(crate) fn render_request_headers(
    route: &RouteRuntime,
    headers: &HeaderMap,
    certificate: Option<&ClientCertificate>,
    identity: Option<&Identity>,
    only_identity: bool,
) -> Vec<(HeaderName, HeaderValue)> {
    let values = TemplateValues { headers, certificate, identity };
    route
        .set_request_headers
        .iter()
        .filter(|(_, template)| !only_identity || reads_identity(template))
        .filter_map(|(name, template)| Some((name.clone(), HeaderValue::from_str(&template.render(&values)).ok()?)))
        .collect()
}

/// Whether a header template reads the request's identity.
pub(crate) fn reads_identity(template: &crate::templates::HeaderTemplate) -> bool {
    template.references().any(
        |path| matches!(path, [a, b] if a == "pomerium" && matches!(b.as_str(), "jwt" | "id_token" | "access_token")),
    )
}

/// Whether a header template reads the session's tokens (not just the assertion).
pub(crate) fn reads_tokens(template: &crate::templates::HeaderTemplate) -> bool {
    template
        .references()
        .any(|path| matches!(path, [a, b] if a == "pomerium" && matches!(b.as_str(), "id_token" | "access_token")))
}

/// The values `set_request_headers` templates can read.
struct TemplateValues<'a> {
    headers: &'a HeaderMap,
    certificate: Option<&'a ClientCertificate>,
    identity: Option<&'a Identity>,
}

impl Values for TemplateValues<'_> {
    fn lookup(&self, path: &[String]) -> Option<String> {
        let names: Vec<&str> = path.iter().map(String::as_str).collect();
        let leaf = || {
            self.certificate
                .and_then(ClientCertificate::leaf)
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

/// The headers an allowed request carries upstream because of who sent it: on a route that
/// passes identity, `X-Pomerium-Jwt-Assertion` and the `X-Pomerium-Claim-*` headers (system.md
/// §3.6, §3.7); on a route to a Kubernetes API server, its service account token and the user and
/// groups to impersonate (`fillKubernetesHeaders`).
pub(crate) fn identity_headers(
    settings: &authn::AuthnSettings,
    route: &RouteRuntime,
    identity: &Identity,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    if route.passes_identity {
        out.push((HeaderName::from_static("x-pomerium-jwt-assertion"), identity.header.clone()));
        for (name, value) in authn::identity::claim_headers(settings, identity) {
            if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::from_str(&value)) {
                out.push((name, value));
            }
        }
    }
    if let Some(token) = &route.kubernetes_authorization {
        out.push((header::AUTHORIZATION, token.authorization()));
        let email = identity.claims.get("email").and_then(serde_json::Value::as_str).unwrap_or_default();
        let groups: Vec<&str> = identity
            .claims
            .get("groups")
            .and_then(serde_json::Value::as_array)
            .map(|groups| groups.iter().filter_map(serde_json::Value::as_str).collect())
            .unwrap_or_default();
        for (name, value) in [("impersonate-user", email.to_owned()), ("impersonate-group", groups.join(","))] {
            if value.is_empty() {
                continue;
            }
            if let Ok(value) = HeaderValue::from_str(&value) {
                out.push((HeaderName::from_static(name), value));
            }
        }
    }
    out
}

/// Removes the impersonation headers a client sent (Pomerium's `remove-impersonate-headers.lua`):
/// on a route to a Kubernetes API server only Pomerium says whom to impersonate.
pub(crate) fn remove_impersonation_headers(headers: &mut HeaderMap) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let name = name.as_str();
            name == "impersonate-user" || name == "impersonate-group" || name.starts_with("impersonate-extra-")
        })
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

// ---- the proxy's side of a remote authorize service

/// Asks the authorize service about a request the proxy matched to `route`, as Envoy's ext_authz
/// filter would: every header, the client's address and certificate, the route's id.
pub(crate) async fn remote(
    client: &ext_authz::Client,
    route: &RouteRuntime,
    request: &AuthorizeRequest<'_>,
    tls: bool,
) -> Result<Granted, Failure> {
    let answer = client.check(check_request(route, request, tls)).await.map_err(|status| {
        ProxyError::proxy(ErrorKind::Unavailable)
            .with_context("asking the authorize service")
            .with_cause(RemoteError(status.code(), status.message().to_owned()))
    })?;
    match answer.http_response {
        Some(wire::check_response::HttpResponse::OkResponse(ok)) if answer.status.is_none_or(|s| s.code == 0) => {
            Ok(Granted::Remote(header_options(&ok.headers)))
        }
        Some(wire::check_response::HttpResponse::DeniedResponse(denied)) => {
            let status = denied
                .status
                .and_then(|s| u16::try_from(s.code).ok())
                .and_then(|code| StatusCode::from_u16(code).ok())
                .unwrap_or(StatusCode::FORBIDDEN);
            let mut response = Response::new(body::full(denied.body));
            *response.status_mut() = status;
            for (name, value) in header_options(&denied.headers) {
                response.headers_mut().append(name, value);
            }
            Err(Failure::Response(Box::new(response)))
        }
        _ => Err(Failure::Page(ErrorPage::new(StatusCode::FORBIDDEN, request.request_id))),
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
        return Ok(denied(page.render_as(format)).await);
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
    match decide(runtime, &route, &request).await {
        Ok(identity) => {
            let mut set = Vec::new();
            if let Some(identity) = &identity {
                set.extend(identity_headers(&runtime.global.authn, &route, identity));
                set.extend(render_request_headers(
                    &route,
                    &described.headers,
                    described.certificate.as_ref(),
                    Some(identity),
                    true,
                ));
            }
            Ok(ext_authz::CheckResponse {
                status: Some(wire::Status { code: 0, message: String::new() }),
                http_response: Some(wire::check_response::HttpResponse::OkResponse(wire::OkHttpResponse {
                    // Set as Pomerium sets them: replacing what the request had.
                    headers: set
                        .iter()
                        .map(|(name, value)| header_option(name, value, OVERWRITE_IF_EXISTS_OR_ADD))
                        .collect(),
                    ..Default::default()
                })),
                dynamic_metadata: None,
            })
        }
        Err(Failure::Error(error)) if error.status() == StatusCode::SERVICE_UNAVAILABLE => {
            Err(tonic::Status::unavailable(error.to_string()))
        }
        Err(Failure::Error(error)) => Ok(denied(error.page(&described.request_id).render_as(format)).await),
        Err(Failure::Page(page)) => Ok(denied(page.render_as(format)).await),
        Err(Failure::Response(response)) => Ok(denied(*response).await),
    }
}

/// A denial as ext_authz carries it: PERMISSION_DENIED with the HTTP answer to give.
async fn denied(response: Response<ProxyBody>) -> ext_authz::CheckResponse {
    use http_body_util::BodyExt as _;
    let (parts, content) = response.into_parts();
    // The proxy's own pages: small, and already in memory.
    let bytes = content.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    ext_authz::CheckResponse {
        status: Some(wire::Status { code: tonic::Code::PermissionDenied as i32, message: String::new() }),
        http_response: Some(wire::check_response::HttpResponse::DeniedResponse(wire::DeniedHttpResponse {
            status: Some(wire::HttpStatus { code: i32::from(parts.status.as_u16()) }),
            // Every response header, several `Set-Cookie`s included.
            headers: parts
                .headers
                .iter()
                .map(|(name, value)| header_option(name, value, APPEND_IF_EXISTS_OR_ADD))
                .collect(),
            body: String::from_utf8_lossy(&bytes).into_owned(),
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

    #[test]
    fn hostnames_drop_the_port() {
        assert_eq!(hostname("app.example.com:8443"), "app.example.com");
        assert_eq!(hostname("app.example.com"), "app.example.com");
        assert_eq!(hostname("[::1]:443"), "::1");
    }
}
