//! The Connect stream (`pkg/zero/connect` upstream): `pomerium.zero.Connect/Subscribe` with the id
//! token as bearer metadata, h2c for `http://`, TLS (1.2 or later, the system's roots) for
//! `https://`, HTTP/2 keepalive every 60 s. Every (re)connect wakes a full bundle sync and a
//! bootstrap refresh; `ConfigUpdated` wakes the sync, `BootstrapConfigUpdated` the refresh. A
//! dropped stream is opened again with exponential backoff, for as long as the server runs.

use super::Managed;
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};
use zero::client::{ApiError, MIN_TOKEN_LIFE_CONNECT};
use zero::connect::Event;
use zero::connect::pb::SubscribeRequest;
use zero::connect::pb::connect_client::ConnectClient;
use zero::status::Backoff;

pub async fn run(managed: Arc<Managed>, mut shutdown: proxy::server::ShutdownSignal) {
    let channel = match channel(&managed.settings.connect) {
        Ok(channel) => channel,
        Err(error) => {
            tracing::error!(check = "zero.connect", "{error}");
            return;
        }
    };
    let mut backoff = Backoff::default();
    loop {
        let result = tokio::select! {
            () = shutdown.fired() => return,
            result = subscribe(&managed, channel.clone(), &mut backoff) => result,
        };
        managed.connected.send_replace(false);
        let message = match &result {
            Ok(()) => "the control plane closed the Connect stream".to_owned(),
            Err(Failure::Api(error)) => format!("no id token for the Connect stream: {error}"),
            Err(Failure::Stream(status)) => format!("the Connect stream is down: {}", status.message()),
        };
        managed.health.set(super::health::ZERO_CONNECT, Err(message));
        match result {
            Ok(()) => tracing::warn!(check = "zero.connect", "the control plane closed the Connect stream"),
            Err(Failure::Api(error)) => {
                managed.api_error("the Connect stream needs an id token", &error).await;
            }
            Err(Failure::Stream(status)) => {
                if status.code() == tonic::Code::Unauthenticated {
                    managed.client.drop_token().await;
                }
                tracing::warn!(check = "zero.connect", code = ?status.code(), error = %status.message(), "the Connect stream is down");
            }
        }
        let delay = backoff.next_delay(fastrand::f64());
        tokio::select! {
            () = shutdown.fired() => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

enum Failure {
    Api(ApiError),
    Stream(tonic::Status),
}

/// One subscription, until the stream ends.
async fn subscribe(managed: &Managed, channel: Channel, backoff: &mut Backoff) -> Result<(), Failure> {
    let token = managed.client.id_token(MIN_TOKEN_LIFE_CONNECT).await.map_err(Failure::Api)?;
    let mut request =
        tonic::Request::new(SubscribeRequest { hostname: hostname(), version: env!("CARGO_PKG_VERSION").to_owned() });
    let bearer = format!("Bearer {token}")
        .parse()
        .map_err(|_| Failure::Stream(tonic::Status::internal("the id token is not a valid header value")))?;
    request.metadata_mut().insert("authorization", bearer);
    let mut stream = ConnectClient::new(channel).subscribe(request).await.map_err(Failure::Stream)?.into_inner();
    tracing::info!("connected to the control plane");
    managed.connected.send_replace(true);
    managed.health.set(super::health::ZERO_CONNECT, Ok(()));
    backoff.reset();
    managed.sync.notify_one();
    managed.refresh.notify_one();
    while let Some(message) = stream.message().await.map_err(Failure::Stream)? {
        match Event::from(&message) {
            Event::ConfigUpdated(version) => {
                tracing::info!(changeset = version, "the control plane has a new configuration");
                managed.sync.notify_one();
            }
            Event::BootstrapConfigUpdated => managed.refresh.notify_one(),
            Event::RunHealthChecks => {
                tracing::info!("the control plane asks for the health checks");
                managed.health.run.notify_one();
            }
            Event::TelemetryRequest | Event::Unknown => {}
        }
    }
    Ok(())
}

/// A lazy channel to the Connect server: h2c for `http://`, TLS for `https://`.
pub(crate) fn channel(url: &str) -> Result<Channel, String> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| format!("CONNECT_SERVER_ENDPOINT `{url}`: {e}"))?
        .connect_timeout(Duration::from_secs(10))
        .http2_keep_alive_interval(zero::connect::KEEPALIVE)
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true);
    if url.starts_with("https://") {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(super::tls_client_config()?)
            .https_only()
            .enable_http2()
            .build();
        Ok(endpoint.connect_with_connector_lazy(connector))
    } else {
        Ok(endpoint.connect_lazy())
    }
}

pub(crate) fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_owned()))
        .unwrap_or_else(|| "unknown".to_owned())
}
