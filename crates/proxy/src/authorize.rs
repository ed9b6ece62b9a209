//! The decision ([`crate::decision`]) for callers outside the pipeline, and the pipeline's
//! boundary to an authorize service running in another process. No wire format here: the
//! `ext-authz` crate speaks Envoy's ext_authz on both sides.
//!
//! - On the authorize service (`services: authorize`), the `ext-authz` crate reads a `Check`
//!   call into an [`AuthorizeRequest`] and asks [`check`], which runs [`decide`] on it and
//!   renders the [`Outcome`] as the pipeline would ([`crate::render`]); the `ext-authz` crate
//!   renders the [`Checked`] as a `CheckResponse`, so both sides give the same answer.
//! - From a proxy running apart (`services: proxy` with `authorize_service_url`), the pipeline asks
//!   the [`RemoteAuthorize`] in the runtime (the `ext-authz` crate's client, handed in by the
//!   binary), whose future is boxed: a proxied request's future stays small.
//! - In process, for callers outside the proxy (benchmarks): [`authorize`].
//!
//! Dependency rule: `proxy` depends on neither gRPC (`tonic`, `prost-types`) nor the `ext-authz`
//! crate (a test checks its manifest).

pub use crate::decision::{AuthorizeRequest, RequestUrl};
use crate::decision::{Outcome, decide};
use crate::error::{Answer, ErrorPage, ProxyError, ResponseFormat};
use crate::runtime::{RouteRuntime, Runtime};
use crate::{render, upstream_headers};
use http::header::HeaderValue;
use http::{HeaderMap, HeaderName, Response, StatusCode};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
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
    let request = AuthorizeRequest {
        method: probe.method,
        authority: probe.authority,
        path: probe.path,
        query: probe.query,
        url: RequestUrl::Parts {
            tls: runtime.global.tls,
            authority: probe.authority,
            path: probe.path,
            query: probe.query,
        },
        headers: probe.headers,
        client_ip: probe.client_ip,
        certificate: None,
        request_id: &request_id,
    };
    match check(runtime, None, &request).await {
        Checked::Allow(set) => Authorized::Allow(set),
        Checked::Deny(answer) => Authorized::Deny(answer.into_response()),
        Checked::Unavailable(why) => {
            tracing::debug!(request_id, error = %why, "request failed");
            let format = ResponseFormat::negotiate(probe.path, probe.headers);
            Authorized::Deny(why.page(&request_id).answer(format).into_response())
        }
    }
}

// ---- the authorize service's side (the `ext-authz` crate's server)

/// What the authorize service makes of a request a `Check` call describes.
#[derive(Debug)]
pub enum Checked {
    /// Allowed: the headers to set on the request as it goes upstream
    /// ([`upstream_headers::build`]'s, as in process).
    Allow(Vec<(HeaderName, HeaderValue)>),
    /// Not allowed: the answer to give the client (a sign-in redirect, 401, 403, 404 for no
    /// route, ...), as the pipeline renders it.
    Deny(Box<Answer>),
    /// No decision could be made (the databroker or the identity provider is unavailable):
    /// Envoy's ext_authz filter fails such a request.
    Unavailable(ProxyError),
}

/// Decides a request described by a `Check` call: on the route with id `route_id` (the route the
/// proxy matched) or, without one, the route its host and path match.
pub async fn check(runtime: &Runtime, route_id: Option<&str>, request: &AuthorizeRequest<'_>) -> Checked {
    let format = ResponseFormat::negotiate(request.path, request.headers);
    let route = match route_id {
        Some(id) => runtime.route_by_id(id),
        None => runtime
            .table
            .lookup(&routing::Request { authority: request.authority, path: request.path, connect: false })
            .map(|found| Arc::clone(found.value)),
    };
    let Some(route) = route else {
        let page = ErrorPage::new(StatusCode::NOT_FOUND, request.request_id).with_message("route not found");
        return Checked::Deny(Box::new(page.answer(format)));
    };
    match decide(runtime, &route, request).await {
        Outcome::Unavailable { why } => Checked::Unavailable(why),
        outcome => match render::outcome(outcome, request.request_id, format) {
            Ok(identity) => Checked::Allow(upstream_headers::build(
                &runtime.global.authn,
                &route,
                request.headers,
                request.certificate,
                identity.as_ref(),
            )),
            Err(answer) => Checked::Deny(answer),
        },
    }
}

// ---- the proxy's side of a remote authorize service

/// A boxed future, as [`RemoteAuthorize`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The authorize service, when it runs in another process (`authorize_service_url`): the
/// `ext-authz` crate's client. Its future is boxed (the gRPC client's future would make every
/// request's future as large).
pub trait RemoteAuthorize: Send + Sync + std::fmt::Debug {
    /// Asks the authorize service about a request the proxy matched to the route `route_id`, as
    /// Envoy's ext_authz filter would: every header, the client's address and certificate, the
    /// route's id; `tls` says whether the request came over TLS.
    fn authorize<'a>(
        &'a self,
        route_id: &'a str,
        request: &'a AuthorizeRequest<'a>,
        tls: bool,
    ) -> BoxFuture<'a, Result<Remote, RemoteFailure>>;
}

/// What the authorize service answered a proxy.
#[derive(Debug)]
pub enum Remote {
    /// Allowed: the headers to set upstream, as [`upstream_headers::build`] made them there.
    Allow(Vec<(HeaderName, HeaderValue)>),
    /// Not allowed: the answer to give the client, as the authorize service rendered it.
    Deny(Answer),
}

/// A call to the authorize service that failed (it is unreachable, refused the service token,
/// or could not decide): what its client says of it, for the logs. The request fails with 503.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RemoteFailure(pub String);

/// Asks `remote` about a request the pipeline matched to `route`.
pub(crate) async fn remote(
    remote: &dyn RemoteAuthorize,
    route: &RouteRuntime,
    request: &AuthorizeRequest<'_>,
    tls: bool,
) -> Result<Remote, ProxyError> {
    remote.authorize(&route.id, request, tls).await.map_err(|failure| {
        ProxyError::proxy(crate::error::ErrorKind::Unavailable)
            .with_context("asking the authorize service")
            .with_cause(failure)
    })
}
