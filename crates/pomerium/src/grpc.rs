//! The process's gRPC listener on `grpc_address` (system.md §5.1, seed 001 "Discrete
//! Services"): the databroker's API and the authorize service's ext_authz `Check`, whichever of
//! the two this process runs, served together on that one address. TLS with the server's
//! certificates unless `grpc_insecure: true`; every call carries the shared-secret service
//! token.

use config::Options;
use config::options::Service;
use databroker::storage::AnyStorage;
use proxy::server::ShutdownSignal;
use std::sync::Arc;
use tokio::task::JoinSet;

/// What the listener serves.
pub struct Services {
    /// The databroker's storage, when the databroker runs here.
    pub storage: Option<Arc<AnyStorage>>,
    /// The authorize service's decisions, when authorize runs here.
    pub authorizer: Option<Arc<ext_authz::RuntimeAuthorizer>>,
}

/// Whether this process opens the gRPC listener. Split services always do; all-in-one keeps its
/// databroker and authorize service to itself unless `grpc_address` is set (then other processes,
/// such as the ingress controller, can reach them there with the shared secret).
pub fn serves(options: &Options) -> bool {
    let runs_grpc_service = options.services.runs(Service::Databroker) || options.services.runs(Service::Authorize);
    runs_grpc_service && (!options.services.is_all() || options.grpc_address != config::options::DEFAULT_GRPC_ADDRESS)
}

/// Opens the listener and serves `services` on it until shutdown.
pub async fn serve(
    config: &config::Config,
    services: Services,
    tasks: &mut JoinSet<()>,
    mut shutdown: ShutdownSignal,
) -> Result<(), String> {
    let options = &config.options;
    let tls = if options.effective_grpc_insecure() { None } else { Some(crate::app::grpc_tls(config)?) };
    let auth = crate::databroker::service_auth(options)?;
    let mut routes = tonic::service::Routes::default();
    let mut names = Vec::new();
    if let Some(storage) = services.storage {
        routes = routes.add_service(databroker::server::DataBrokerService::new(storage).authenticated(auth.clone()));
        names.push("databroker");
    }
    if let Some(authorizer) = services.authorizer {
        routes = routes.add_service(ext_authz::service(authorizer, auth));
        names.push("authorize");
    }
    let address = options.effective_grpc_address();
    let listener = crate::app::bind(&address).await?;
    tracing::info!(
        address = %crate::app::local_address(&listener, &address),
        tls = tls.is_some(),
        services = %names.join(","),
        "serving gRPC"
    );
    tasks.spawn(async move {
        let stopped = async move { shutdown.fired().await };
        if let Err(error) = databroker::serve_routes(listener, routes, tls, stopped).await {
            tracing::error!(%error, "the gRPC server failed");
        }
    });
    Ok(())
}
