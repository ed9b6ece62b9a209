//! `pomerium-console`: a self-hosted control plane for managed `pomerium` clusters. It speaks
//! Zero's public API v0 (for scripts and Terraform) and the cluster API and Connect stream (for
//! the clusters), and keeps its entities as records in the databroker's storage.

pub mod api;
pub mod auth;
pub mod ca;
pub mod certinfo;
pub mod check;
pub mod cluster_api;
pub mod clusters;
pub mod config_proto;
pub mod config_service;
pub mod import;
pub mod names;
pub mod patch;
pub mod server;
pub mod settings;
pub mod state;
pub mod store;
pub mod web;

use std::sync::Arc;

/// A console with its listener bound and its storage open, ready to serve.
#[derive(Debug)]
pub struct Console {
    listener: tokio::net::TcpListener,
    state: Arc<state::State>,
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl Console {
    /// Binds `address`, opens the storage (making the organization at first start), loads or
    /// makes the certificate.
    pub async fn open(settings: settings::Settings) -> Result<Console, String> {
        let listener = server::bind(&settings.address).await?;
        let state = Arc::new(state::State::open(settings).await?);
        let tls = if state.settings.insecure_server { None } else { Some(server::tls(&state)?) };
        Ok(Console { listener, state, tls })
    }

    /// The address the listener is bound to (the real port for `:0`).
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `shutdown` completes.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()>) {
        let address = self.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        tracing::info!(%address, %scheme, organization = %self.state.org_id, "serving");
        let follower = tokio::spawn(std::sync::Arc::clone(&self.state).follow());
        let renewer = tokio::spawn(std::sync::Arc::clone(&self.state).renew_certificates());
        server::serve(self.listener, self.state, self.tls, shutdown).await;
        follower.abort();
        renewer.abort();
    }
}

/// Runs the console with `settings` until `shutdown` completes.
pub async fn run(settings: settings::Settings, shutdown: impl std::future::Future<Output = ()>) -> Result<(), String> {
    Console::open(settings).await?.serve(shutdown).await;
    Ok(())
}
