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
    let service = server::DataBrokerService::new(storage).authenticated(auth);
    // The builder's `tcp_nodelay` applies only to sockets it accepts itself: set it here, or Nagle
    // holds each Sync message back until the previous one is acknowledged (40 ms, delayed ACK).
    let incoming = tokio_stream::StreamExt::map(tokio_stream::wrappers::TcpListenerStream::new(listener), |accepted| {
        accepted.inspect(|stream| {
            let _ = stream.set_nodelay(true);
        })
    });
    tonic::transport::Server::builder().add_service(service).serve_with_incoming_shutdown(incoming, shutdown).await
}
