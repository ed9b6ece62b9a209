//! The authorize service's wire (system.md §4): Envoy's external authorization API,
//! `envoy.service.auth.v3.Authorization/Check`, which Pomerium's authorize service answers.
//!
//! - [`wire`]: the generated messages (Envoy's names and field numbers; `proto/ext_authz.proto`).
//! - [`service`]: the gRPC service over an [`Authorizer`], behind the shared-secret service token
//!   that every Pomerium service-to-service call carries (`databroker::auth`).
//! - [`Client`]: what a proxy running apart from its authorize service calls it with; it is the
//!   pipeline's [`proxy::RemoteAuthorize`] (`client.rs` builds the Check as Envoy's filter would
//!   and reads the answer back).
//! - [`RuntimeAuthorizer`] (`server.rs`): the [`Authorizer`] over the proxy's runtime: a Check
//!   call is read into a [`proxy::authorize::AuthorizeRequest`], decided by
//!   [`proxy::authorize::check`] (the same decision and upstream headers as in process), and
//!   rendered as a `CheckResponse` here, the one place a decision becomes ext_authz's answer.
//!
//! This crate depends on `proxy`, not the other way round: the data plane has no gRPC.

mod client;
mod server;

pub use server::RuntimeAuthorizer;

use databroker::auth::ServiceAuth;
use databroker::client::{RemoteOptions, TokenInterceptor};
use databroker::pool::{Family, GrpcPool, is_transport_failure, system_resolver};
use databroker::server::Authenticator;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

/// The generated messages of `proto/ext_authz.proto`.
#[allow(clippy::all, clippy::pedantic, clippy::restriction, reason = "generated code")]
pub mod wire {
    tonic::include_proto!("envoy.service.auth.v3");
}

pub use wire::{CheckRequest, CheckResponse};

/// The context extension naming the route a request was matched to (Pomerium's `route_id`).
pub const ROUTE_ID: &str = "route_id";
/// The metadata namespace of the client certificate the proxy saw (Pomerium's).
pub const CLIENT_CERTIFICATE_METADATA: &str = "com.pomerium.client-certificate-info";

/// A boxed future of a Check answer.
pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = Result<CheckResponse, Status>> + Send + 'a>>;

/// What decides a Check call.
pub trait Authorizer: Send + Sync + 'static {
    fn check(&self, request: CheckRequest) -> CheckFuture<'_>;
}

/// The gRPC service over an authorizer.
#[derive(Debug)]
pub struct AuthorizationService<A>(Arc<A>);

#[tonic::async_trait]
impl<A: Authorizer> wire::authorization_server::Authorization for AuthorizationService<A> {
    async fn check(&self, request: Request<CheckRequest>) -> Result<Response<CheckResponse>, Status> {
        self.0.check(request.into_inner()).await.map(Response::new)
    }
}

/// The service in its shared-secret check, ready to add to a tonic server.
pub type AuthenticatedService<A> =
    InterceptedService<wire::authorization_server::AuthorizationServer<AuthorizationService<A>>, Authenticator>;

/// The Authorization service for `authorizer`; every call must carry a token signed with the
/// shared secret, or it is `Unauthenticated` before the authorizer sees it.
pub fn service<A: Authorizer>(authorizer: Arc<A>, auth: ServiceAuth) -> AuthenticatedService<A> {
    wire::authorization_server::AuthorizationServer::with_interceptor(
        AuthorizationService(authorizer),
        Authenticator(auth),
    )
}

/// A client of a remote authorize service, over every address of every URL it is given
/// ([`GrpcPool`]); cheap to clone.
#[derive(Clone, Debug)]
pub struct Client {
    grpc: wire::authorization_client::AuthorizationClient<InterceptedService<GrpcPool, TokenInterceptor>>,
    pool: GrpcPool,
}

impl Client {
    /// A client of the service at `urls` (`http://` in plain text, `https://` verified as
    /// `options` say; names resolved to all their addresses); connects on first use.
    pub async fn connect(
        urls: &[String],
        auth: ServiceAuth,
        options: &RemoteOptions,
        family: Family,
    ) -> Result<Client, String> {
        let pool = GrpcPool::new("authorize service", urls, options, family, system_resolver()).await?;
        let grpc =
            wire::authorization_client::AuthorizationClient::with_interceptor(pool.clone(), TokenInterceptor(auth));
        Ok(Client { grpc, pool })
    }

    /// Asks for a decision. A Check decides and changes nothing, so a call that failed at the
    /// transport (its instance died or cannot be reached) is asked again of the next address.
    pub async fn check(&self, request: CheckRequest) -> Result<CheckResponse, Status> {
        let attempts = self.pool.addresses().len().clamp(2, 5);
        let mut attempt = 1;
        loop {
            match self.grpc.clone().check(request.clone()).await {
                Err(status) if attempt < attempts && is_transport_failure(&status) => {
                    tracing::debug!(%status, attempt, "authorize service call failed at the transport; asking another address");
                    attempt += 1;
                }
                outcome => return outcome.map(Response::into_inner),
            }
        }
    }
}
