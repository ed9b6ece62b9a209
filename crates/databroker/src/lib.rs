//! The databroker (system.md §5): versioned records — sessions, users, dynamic configuration —
//! in memory or in PostgreSQL, served over gRPC with sync streams and leases, and the client side
//! that keeps a synced local cache for the authorize path.
//!
//! - [`record`]: the record model and its versions;
//! - [`storage`]: the [`Storage`](storage::Storage) trait and the memory and PostgreSQL backends;
//! - [`query`]: `Query` filters, evaluated the same way by every backend;
//! - [`server`]: the gRPC service, behind the shared-secret JWT check of [`auth`];
//! - [`client`]: [`Broker`](client::Broker) (in process or remote) and
//!   [`SyncedCache`](client::SyncedCache);
//! - [`wire`]: the generated protobuf types and conversions.

pub mod auth;
pub mod client;
pub mod pool;
pub mod query;
pub mod record;
pub mod server;
pub mod storage;
pub mod wire;

use std::sync::Arc;
use storage::{AnyStorage, MemoryStorage, PostgresStorage, StorageError};

/// Which backend to open.
#[derive(Clone, PartialEq, Eq)]
pub enum Backend {
    Memory,
    /// A libpq connection string.
    Postgres(String),
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Memory => f.write_str("Memory"),
            // The connection string may carry a password.
            Backend::Postgres(_) => f.write_str("Postgres(..)"),
        }
    }
}

/// Opens the storage and starts its periodic cleanup (which stops when the storage is dropped).
pub async fn open(backend: &Backend) -> Result<Arc<AnyStorage>, StorageError> {
    let storage = Arc::new(match backend {
        Backend::Memory => AnyStorage::Memory(MemoryStorage::new()),
        Backend::Postgres(connection) => AnyStorage::Postgres(PostgresStorage::connect(connection).await?),
    });
    server::spawn_cleanup(&storage);
    Ok(storage)
}

/// Serves the gRPC API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    storage: Arc<AnyStorage>,
    auth: auth::ServiceAuth,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let routes = tonic::service::Routes::new(server::DataBrokerService::new(storage).authenticated(auth));
    serve_routes(listener, routes, None, shutdown).await
}

/// [`serve`] over TLS with `tls`.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    storage: Arc<AnyStorage>,
    auth: auth::ServiceAuth,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let routes = tonic::service::Routes::new(server::DataBrokerService::new(storage).authenticated(auth));
    serve_routes(listener, routes, Some(tls), shutdown).await
}

/// How long a client has to finish its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves gRPC `routes` (the databroker, the authorize service, or both on one address) on
/// `listener` until `shutdown` completes: in plain text, or over TLS with `tls` (whose ALPN gets
/// `h2` if it lacks it). Each TLS handshake runs in its own task, so a failed or slow one (cut
/// off after 10 s) holds up no other.
pub async fn serve_routes(
    listener: tokio::net::TcpListener,
    routes: tonic::service::Routes,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let Some(tls) = tls else {
        // The builder's `tcp_nodelay` applies only to sockets it accepts itself: set it here, or
        // Nagle holds each Sync message back until the previous one is acknowledged (40 ms,
        // delayed ACK).
        let incoming =
            tokio_stream::StreamExt::map(tokio_stream::wrappers::TcpListenerStream::new(listener), |accepted| {
                accepted.inspect(|stream| {
                    let _ = stream.set_nodelay(true);
                })
            });
        return tonic::transport::Server::builder()
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await;
    };
    let tls = if tls.alpn_protocols.iter().any(|p| p == b"h2") {
        tls
    } else {
        let mut config = (*tls).clone();
        config.alpn_protocols.push(b"h2".to_vec());
        Arc::new(config)
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let (accepted, incoming) = tokio::sync::mpsc::channel::<Result<TlsIo, std::io::Error>>(64);
    let accepting = tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(%error, "accepting a gRPC connection");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            if accepted.is_closed() {
                return;
            }
            // See above: without it each Sync message waits for the previous one's ACK.
            let _ = stream.set_nodelay(true);
            let acceptor = acceptor.clone();
            let accepted = accepted.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        let _ = accepted.send(Ok(TlsIo(stream))).await;
                    }
                    Ok(Err(error)) => tracing::debug!(%peer, %error, "gRPC TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "gRPC TLS handshake timed out"),
                }
            });
        }
    });
    let result = tonic::transport::Server::builder()
        .add_routes(routes)
        .serve_with_incoming_shutdown(tokio_stream::wrappers::ReceiverStream::new(incoming), shutdown)
        .await;
    // Stop accepting (and close the listener) once serving has stopped.
    accepting.abort();
    result
}

/// A server-side TLS connection, as tonic needs it: [`Connected`] with no connection info.
///
/// [`Connected`]: tonic::transport::server::Connected
struct TlsIo(tokio_rustls::server::TlsStream<tokio::net::TcpStream>);

impl tonic::transport::server::Connected for TlsIo {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl tokio::io::AsyncRead for TlsIo {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TlsIo {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
