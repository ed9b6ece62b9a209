//! Phase 5 of the pipeline, the decision (system.md §3.5, §4): the request's session, the route's
//! compiled policy, and the verdict as Pomerium maps it, returned as a plain [`Outcome`] value.
//!
//! The decision is a value; only transports render it: the pipeline as an HTTP answer
//! ([`crate::render`]), the authorize service as an ext_authz `CheckResponse` (the `ext-authz`
//! crate, through [`crate::authorize::check`]), the benchmark entry ([`crate::authorize::authorize`]) as it likes. This
//! module holds no `http::Response` and does not use the pipeline (a tidy test checks both).
//!
//! One decision, three ways in: in process (`services: all`, or `proxy` without
//! `authorize_service_url`), on the authorize service answering `Check` calls, and the benchmark
//! entry; all three call [`decide`].

use crate::authn::{self, identity::Identity};
use crate::error::{ErrorKind, ProxyError};
use crate::runtime::{RouteRuntime, Runtime};
use crate::tls::ClientCertificate;
use http::header;
use http::{HeaderMap, StatusCode};
use policy::decision::{Verdict, wants_html};
use policy::input::{self, Input};
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

/// What the decision makes of a request. No HTTP answer inside: each transport renders it.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Allowed. The identity, when the route sends one upstream (identity headers, Kubernetes
    /// impersonation) or its header templates read it.
    Allow { identity: Option<Identity> },
    /// Not signed in, from a client that wants HTML: sign in at `location` (the authenticate
    /// service's signed sign-in URL, or the stateless flow's sealed one).
    SignIn { location: url::Url },
    /// Not signed in, from a client that wants no HTML (401).
    Unauthenticated,
    /// The policy wants an enrolled device: enrol at `location` (the route host's signed
    /// `/.pomerium/webauthn` page).
    DeviceEnrollment { location: url::Url },
    /// Denied by the route's policy: the status (403; 450 for an unauthorized device; 495 for a
    /// missing or invalid client certificate) and the decision with its reasons, for the deny page
    /// to explain. `session_id` is whose request it was (none when signed out).
    Deny {
        status: StatusCode,
        /// With `show_error_details`: why, for the deny page.
        explanation: Option<Box<crate::deny::Explanation>>,
    },
    /// Refused before the policy was asked (a refused bearer token, a cookie beside a bearer token,
    /// a sign-in URL that could not be built): the status and what to tell the client.
    Refused { status: StatusCode, message: String },
    /// No decision could be made (the databroker or the identity provider is unavailable).
    Unavailable { why: ProxyError },
}

/// What authorization reads of a request, wherever the request arrived (the pipeline, a `Check`
/// call read by the `ext-authz` crate, the benchmark entry).
#[derive(Debug)]
pub struct AuthorizeRequest<'a> {
    pub method: &'a str,
    /// `host[:port]` as the client sent it.
    pub authority: &'a str,
    /// The path, without the query.
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// The URL the client asked for (`https://host/path?query`).
    pub url: RequestUrl<'a>,
    pub headers: &'a HeaderMap,
    /// The client's address, after `xff_num_trusted_hops`.
    pub client_ip: IpAddr,
    pub certificate: Option<&'a ClientCertificate>,
    pub request_id: &'a str,
}

/// The URL a request asked for (`https://host/path?query`), whole or in parts: written out only
/// where it is needed (a sign-in or enrollment redirect), not for every request.
#[derive(Debug, Clone, Copy)]
pub enum RequestUrl<'a> {
    /// As received whole (an Envoy `Check` call).
    Whole(&'a str),
    /// The scheme (`https` with `tls`), the authority, the path and the query.
    Parts { tls: bool, authority: &'a str, path: &'a str, query: Option<&'a str> },
}

impl<'a> RequestUrl<'a> {
    /// The URL as text.
    pub fn text(&self) -> std::borrow::Cow<'a, str> {
        match *self {
            Self::Whole(url) => url.into(),
            Self::Parts { tls, authority, path, query } => {
                let scheme = if tls { "https" } else { "http" };
                match query {
                    Some(query) => format!("{scheme}://{authority}{path}?{query}").into(),
                    None => format!("{scheme}://{authority}{path}").into(),
                }
            }
        }
    }

    /// The URL when it was received whole.
    fn whole(&self) -> Option<&'a str> {
        match *self {
            Self::Whole(url) => Some(url),
            Self::Parts { .. } => None,
        }
    }
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
                    crate::log_fields::redact_credentials(&format!("?{q}")).trim_start_matches('?').to_owned()
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

/// Finds the request's session and evaluates the route's policy. For an allowed request on a
/// route that sends identity upstream (or reads it in a header template) the identity is signed.
pub(crate) async fn decide(runtime: &Runtime, route: &RouteRuntime, request: &AuthorizeRequest<'_>) -> Outcome {
    let session = match request_session(runtime, route, request).await {
        Ok(session) => session,
        Err(outcome) => return outcome,
    };
    match evaluate(runtime, route, request, session.as_ref()) {
        Some(outcome) => outcome,
        // Outside `evaluate`: the records' read guard is not held across the stateless flow's
        // fetch of the authenticate service's key. Boxed: it may fetch that key (see
        // `pipeline::control_plane`).
        None => Box::pin(sign_in(runtime, route, &request.url.text())).await,
    }
}

/// The policy's answer; `None` for a sign-in redirect still to be built.
fn evaluate(
    runtime: &Runtime,
    route: &RouteRuntime,
    request: &AuthorizeRequest<'_>,
    session: Option<&authn::session::RequestSession>,
) -> Option<Outcome> {
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
            // No criterion reads the URL: it is not written out for the policy.
            url: request.url.whole(),
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
    let outcome = match verdict {
        Verdict::Allow
            if route.passes_identity || route.templates_need_identity || route.kubernetes_authorization.is_some() =>
        {
            // `identity` resolves the session (or service account) itself, and states an
            // anonymous identity for one that is gone.
            let identity = authn::identity::identity(
                &global.authn,
                &global.authn_state.assertions,
                records,
                session_id,
                hostname(request.authority),
                now.as_second(),
                route.templates_read_tokens,
            );
            Outcome::Allow { identity }
        }
        Verdict::Allow => Outcome::Allow { identity: None },
        Verdict::Login { redirect: true } => return None,
        Verdict::Login { redirect: false } => Outcome::Unauthenticated,
        Verdict::DeviceEnroll => device_enrollment(runtime, request.authority, &request.url.text()),
        denied => Outcome::Deny {
            status: StatusCode::from_u16(denied.status()).unwrap_or(StatusCode::FORBIDDEN),
            explanation: route
                .explainer
                .as_ref()
                .map(|explainer| Box::new(explainer.explain(&input, records, &decision, denied))),
        },
    };
    Some(outcome)
}

/// The request's session: from an identity provider's bearer token where the route reads one
/// (`bearer_token_format`), else from its session handle. A refused token ends the request here
/// (403; 400 for a cookie beside a bearer token on a `jwt` route), before the policy.
async fn request_session(
    runtime: &Runtime,
    route: &RouteRuntime,
    request: &AuthorizeRequest<'_>,
) -> Result<Option<authn::session::RequestSession>, Outcome> {
    use authn::bearer::{self, Bearer, BearerError};
    let global = &runtime.global;
    let refused = |status: StatusCode, message: String| Outcome::Refused { status, message };
    let unavailable = |context: &'static str, cause: String| Outcome::Unavailable {
        why: ProxyError::proxy(ErrorKind::Unavailable).with_context(context).with_cause(cause),
    };
    match bearer::read(request.headers, route.bearer_token_format, &global.authn.cookie_name) {
        Bearer::NotRead => {}
        Bearer::IdpToken(kind, token) => {
            let audiences = route.access_token_audiences.as_deref();
            // Boxed by `SignIn`: the identity provider's and the databroker's futures would make
            // every request's future as large (see `pipeline::control_plane`).
            let session = global.sign_in.bearer_session(&global.authn, &global.records, kind, token, audiences);
            return match session.await {
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
    authn::session::find(&global.authn, &*global.sign_in, request.headers, request.query)
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
/// Sign in (system.md §3.3 step 1) at the authenticate service's signed sign-in URL, or in the
/// stateless flow at one sealed for the authenticate service's HPKE key.
async fn sign_in(runtime: &Runtime, route: &RouteRuntime, original: &str) -> Outcome {
    let global = &runtime.global;
    let Ok(original) = url::Url::parse(original) else {
        return Outcome::Refused {
            status: StatusCode::BAD_REQUEST,
            message: "the request's url does not parse".into(),
        };
    };
    if global.authn.stateless {
        let idp_id = route.idp_id.as_deref();
        return match global.sign_in.sealed_sign_in_url(&global.authn, &original, idp_id).await {
            Ok(location) => Outcome::SignIn { location },
            Err(error) => {
                tracing::warn!(%error, "no sign-in redirect: the authenticate service's key is not available");
                Outcome::Refused {
                    status: StatusCode::BAD_GATEWAY,
                    message: "the authenticate service is not available; try again later".into(),
                }
            }
        };
    }
    let location = authenticate::sign_in_url(
        &global.authenticate_url,
        &original,
        route.idp_id.as_deref(),
        &route.depends_on,
        &global.shared_key,
        unix_now(),
    );
    Outcome::SignIn { location }
}

/// The device enrolment page of the route's host, signed.
fn device_enrollment(runtime: &Runtime, authority: &str, original: &str) -> Outcome {
    let scheme = if runtime.global.tls { "https" } else { "http" };
    let Ok(mut url) = url::Url::parse(&format!("{scheme}://{authority}/.pomerium/webauthn")) else {
        return Outcome::Refused {
            status: StatusCode::BAD_REQUEST,
            message: "the request's host does not parse".into(),
        };
    };
    url.query_pairs_mut().append_pair("pomerium_redirect_uri", original);
    Outcome::DeviceEnrollment { location: authenticate::sign(&url, &runtime.global.shared_key, unix_now()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_drop_the_port() {
        assert_eq!(hostname("app.example.com:8443"), "app.example.com");
        assert_eq!(hostname("app.example.com"), "app.example.com");
        assert_eq!(hostname("[::1]:443"), "::1");
    }

    /// The decision is a value; only transports render HTTP: this module neither uses the
    /// pipeline nor builds a response.
    #[test]
    fn the_decision_is_a_value_and_renders_nothing() {
        let source = include_str!("decision.rs");
        let code = source.split("#[cfg(test)]").next().unwrap_or_default();
        for forbidden in ["crate::pipeline", "use crate::{pipeline", "Response<", "Response::", "ProxyBody", "render"] {
            let used =
                code.lines().filter(|line| !line.trim_start().starts_with("//")).any(|line| line.contains(forbidden));
            assert!(!used, "decision.rs uses `{forbidden}`: the decision is a value; only transports render HTTP");
        }
    }
}
