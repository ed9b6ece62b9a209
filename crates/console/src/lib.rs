//! `pomerium-console`: a self-hosted control plane for managed `pomerium` clusters. It speaks
//! Zero's public API v0 (for scripts and Terraform) and the cluster API and Connect stream (for
//! the clusters), and keeps its entities as records in the databroker's storage.

pub mod api;
pub mod auth;
pub mod check;
pub mod cluster_api;
pub mod clusters;
pub mod names;
pub mod patch;
pub mod server;
pub mod settings;
pub mod state;
pub mod store;

use std::sync::Arc;

/// Runs the console with `settings` until `shutdown` completes.
pub async fn run(settings: settings::Settings, shutdown: impl std::future::Future<Output = ()>) -> Result<(), String> {
    let listener = server::bind(&settings.address).await?;
    let state = Arc::new(state::State::open(settings).await?);
    let tls = if state.settings.insecure_server { None } else { Some(server::tls(&state)?) };
    let address = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%address, %scheme, organization = %state.org_id, "serving");
    server::serve(listener, state, tls, shutdown).await;
    Ok(())
}
