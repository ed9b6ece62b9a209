//! The gRPC service `databroker.DataBrokerService` over any [`Storage`].
//!
//! Every call passes [`ServiceAuth`] first (the interceptor), then maps storage errors to gRPC
//! codes in one place ([`status`]): a stale reader gets `Aborted` (start over with
//! `SyncLatest`), bad input `InvalidArgument`, a failing backend `Unavailable`.

use crate::auth::{METADATA_KEY, ServiceAuth};
use crate::query::{Filter, Query};
use crate::record::{CLEANUP_INTERVAL, Record, Versions};
use crate::storage::{CHANGE_BATCH, Storage, StorageError};
use crate::wire::{self, pb};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

/// How often an idle sync stream looks for changes even without a wake-up.
const SYNC_POLL: Duration = Duration::from_secs(30);
/// Records per `SyncLatest` message batch before yielding to the sender.
const STREAM_BUFFER: usize = 64;

/// The service, generic over the storage.
#[derive(Debug)]
pub struct DataBrokerService<S> {
    storage: Arc<S>,
}

impl<S> Clone for DataBrokerService<S> {
    fn clone(&self) -> Self {
        DataBrokerService { storage: Arc::clone(&self.storage) }
    }
}

/// Refuses calls without a valid service token.
#[derive(Clone, Debug)]
pub struct Authenticator(pub ServiceAuth);

impl tonic::service::Interceptor for Authenticator {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let token = request.metadata().get(METADATA_KEY).and_then(|v| v.to_str().ok());
        match self.0.verify(token) {
            Ok(()) => Ok(request),
            Err(error) => Err(Status::unauthenticated(error.to_string())),
        }
    }
}

/// The service wrapped in its authenticator, ready to add to a tonic server.
pub type AuthenticatedService<S> =
    InterceptedService<pb::data_broker_service_server::DataBrokerServiceServer<DataBrokerService<S>>, Authenticator>;

impl<S: Storage> DataBrokerService<S> {
    pub fn new(storage: Arc<S>) -> DataBrokerService<S> {
        DataBrokerService { storage }
    }

    /// The service behind the shared-secret check.
    pub fn authenticated(self, auth: ServiceAuth) -> AuthenticatedService<S> {
        pb::data_broker_service_server::DataBrokerServiceServer::with_interceptor(self, Authenticator(auth))
    }
}

/// Runs the periodic cleanup (change log retention, TTLs) until the storage is dropped.
pub fn spawn_cleanup<S: Storage>(storage: &Arc<S>) -> tokio::task::JoinHandle<()> {
    let storage = Arc::downgrade(storage);
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(CLEANUP_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let Some(storage) = storage.upgrade() else { return };
            if let Err(error) = storage.clean().await {
                tracing::warn!(%error, "databroker: cleanup failed");
            }
        }
    })
}

/// The one place storage errors become gRPC statuses.
pub fn status(error: StorageError) -> Status {
    let message = error.to_string();
    match error {
        StorageError::InvalidServerVersion { .. } | StorageError::InvalidRecordVersion { .. } => {
            Status::aborted(message)
        }
        StorageError::InvalidArgument(_) => Status::invalid_argument(message),
        StorageError::Unavailable(_) => Status::unavailable(message),
    }
}

fn records_from_wire(records: Vec<pb::Record>) -> Result<Vec<Record>, Status> {
    records
        .into_iter()
        .enumerate()
        .map(|(index, record)| wire::record_from_wire(index, record))
        .collect::<Result<_, _>>()
        .map_err(|e| Status::invalid_argument(e.to_string()))
}

fn positive_duration(duration: Option<prost_types::Duration>, field: &str) -> Result<Duration, Status> {
    duration
        .and_then(wire::duration_from_wire)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| Status::invalid_argument(format!("`{field}` must be a positive duration")))
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl<S: Storage> pb::data_broker_service_server::DataBrokerService for DataBrokerService<S> {
    async fn acquire_lease(
        &self,
        request: Request<pb::AcquireLeaseRequest>,
    ) -> Result<Response<pb::AcquireLeaseResponse>, Status> {
        let request = request.into_inner();
        let duration = positive_duration(request.duration, "duration")?;
        match self.storage.acquire_lease(&request.name, duration).await.map_err(status)? {
            Some(id) => Ok(Response::new(pb::AcquireLeaseResponse { id })),
            None => Err(Status::already_exists(format!("the lease `{}` is held by another holder", request.name))),
        }
    }

    async fn clear(&self, _: Request<()>) -> Result<Response<pb::ClearResponse>, Status> {
        let (old, new) = self.storage.clear().await.map_err(status)?;
        Ok(Response::new(pb::ClearResponse {
            old_versions: Some(wire::versions_to_wire(old)),
            new_versions: Some(wire::versions_to_wire(new)),
        }))
    }

    async fn get(&self, request: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        let request = request.into_inner();
        match self.storage.get(&request.r#type, &request.id).await.map_err(status)? {
            Some(record) => Ok(Response::new(pb::GetResponse { record: Some(wire::record_to_wire(&record)) })),
            None => Err(Status::not_found(format!("no record `{}` of type `{}`", request.id, request.r#type))),
        }
    }

    async fn get_options(
        &self,
        request: Request<pb::GetOptionsRequest>,
    ) -> Result<Response<pb::GetOptionsResponse>, Status> {
        let options = self.storage.get_options(&request.into_inner().r#type).await.map_err(status)?;
        Ok(Response::new(pb::GetOptionsResponse { options: Some(wire::options_to_wire(&options)) }))
    }

    async fn list_types(&self, _: Request<()>) -> Result<Response<pb::ListTypesResponse>, Status> {
        let types = self.storage.list_types().await.map_err(status)?;
        Ok(Response::new(pb::ListTypesResponse { types }))
    }

    async fn patch(&self, request: Request<pb::PatchRequest>) -> Result<Response<pb::PatchResponse>, Status> {
        let request = request.into_inner();
        let fields = request.field_mask.map(|mask| mask.paths).unwrap_or_default();
        if fields.is_empty() {
            return Err(Status::invalid_argument("`field_mask` must name at least one field"));
        }
        let records = records_from_wire(request.records)?;
        let written = self.storage.patch(records, &fields).await.map_err(status)?;
        Ok(Response::new(pb::PatchResponse {
            server_version: written.server_version,
            records: written.records.iter().map(wire::record_to_wire).collect(),
        }))
    }

    async fn put(&self, request: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let records = records_from_wire(request.into_inner().records)?;
        let written = self.storage.put(records).await.map_err(status)?;
        Ok(Response::new(pb::PutResponse {
            server_version: written.server_version,
            records: written.records.iter().map(wire::record_to_wire).collect(),
        }))
    }

    async fn query(&self, request: Request<pb::QueryRequest>) -> Result<Response<pb::QueryResponse>, Status> {
        let request = request.into_inner();
        let offset =
            usize::try_from(request.offset).map_err(|_| Status::invalid_argument("`offset` must not be negative"))?;
        let limit = usize::try_from(request.limit).ok().filter(|l| *l > 0);
        let filter = match request.filter {
            Some(filter) => {
                let json = wire::struct_to_json(filter)
                    .ok_or_else(|| Status::invalid_argument("the filter holds a number that is not finite"))?;
                Some(Filter::parse(&json).map_err(|e| Status::invalid_argument(e.to_string()))?)
            }
            None => None,
        };
        let query = Query { record_type: request.r#type, search: request.query, offset, limit, filter };
        let result = self.storage.query(&query).await.map_err(status)?;
        Ok(Response::new(pb::QueryResponse {
            records: result.page.records.iter().map(wire::record_to_wire).collect(),
            total_count: i64::try_from(result.page.total_count).unwrap_or(i64::MAX),
            server_version: result.versions.server_version,
            record_version: result.versions.latest_record_version,
        }))
    }

    async fn release_lease(&self, request: Request<pb::ReleaseLeaseRequest>) -> Result<Response<()>, Status> {
        let request = request.into_inner();
        self.storage.release_lease(&request.name, &request.id).await.map_err(status)?;
        Ok(Response::new(()))
    }

    async fn renew_lease(&self, request: Request<pb::RenewLeaseRequest>) -> Result<Response<()>, Status> {
        let request = request.into_inner();
        let duration = positive_duration(request.duration, "duration")?;
        if self.storage.renew_lease(&request.name, &request.id, duration).await.map_err(status)? {
            Ok(Response::new(()))
        } else {
            Err(Status::already_exists(format!("the lease `{}` is no longer held by this holder", request.name)))
        }
    }

    async fn server_info(&self, _: Request<()>) -> Result<Response<pb::ServerInfoResponse>, Status> {
        let info = self.storage.server_info().await.map_err(status)?;
        Ok(Response::new(pb::ServerInfoResponse {
            server_version: info.server_version,
            earliest_record_version: info.earliest_record_version,
            latest_record_version: info.latest_record_version,
        }))
    }

    async fn set_options(
        &self,
        request: Request<pb::SetOptionsRequest>,
    ) -> Result<Response<pb::SetOptionsResponse>, Status> {
        let request = request.into_inner();
        let options = wire::options_from_wire(request.options.unwrap_or_default());
        self.storage.set_options(&request.r#type, options).await.map_err(status)?;
        let stored = self.storage.get_options(&request.r#type).await.map_err(status)?;
        Ok(Response::new(pb::SetOptionsResponse { options: Some(wire::options_to_wire(&stored)) }))
    }

    type SyncStream = BoxStream<pb::SyncResponse>;

    async fn sync(&self, request: Request<pb::SyncRequest>) -> Result<Response<Self::SyncStream>, Status> {
        let request = request.into_inner();
        let from = Versions { server_version: request.server_version, latest_record_version: request.record_version };
        let record_type = Some(request.r#type).filter(|t| !t.is_empty());
        // The first batch is read before the stream opens, so a stale reader gets `Aborted` as
        // the call's status. The watch is taken first, so that a change during the read wakes it.
        let mut watch = self.storage.watch();
        watch.borrow_and_update();
        let first = self.storage.changes(from, record_type.as_deref()).await.map_err(status)?;
        let (sender, receiver) = mpsc::channel(STREAM_BUFFER);
        let feed = SyncFeed {
            storage: Arc::clone(&self.storage),
            cursor: from,
            record_type,
            wait: request.wait.unwrap_or(true),
        };
        tokio::spawn(feed.run(watch, first, sender));
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    type SyncLatestStream = BoxStream<pb::SyncLatestResponse>;

    async fn sync_latest(
        &self,
        request: Request<pb::SyncLatestRequest>,
    ) -> Result<Response<Self::SyncLatestStream>, Status> {
        let record_type = Some(request.into_inner().r#type).filter(|t| !t.is_empty());
        let snapshot = self.storage.latest(record_type.as_deref()).await.map_err(status)?;
        let (sender, receiver) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(async move {
            for record in &snapshot.records {
                let message = pb::SyncLatestResponse {
                    response: Some(pb::sync_latest_response::Response::Record(wire::record_to_wire(record))),
                };
                if sender.send(Ok(message)).await.is_err() {
                    return;
                }
            }
            // Always last, always sent: where the reader continues with `Sync`.
            let versions = pb::SyncLatestResponse {
                response: Some(pb::sync_latest_response::Response::Versions(wire::versions_to_wire(snapshot.versions))),
            };
            let _ = sender.send(Ok(versions)).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}

/// One `Sync` stream: changes after the cursor, then (with `wait`) every change as it happens.
struct SyncFeed<S> {
    storage: Arc<S>,
    cursor: Versions,
    record_type: Option<String>,
    wait: bool,
}

impl<S: Storage> SyncFeed<S> {
    async fn run(
        mut self,
        mut watch: tokio::sync::watch::Receiver<u64>,
        first: Vec<Record>,
        sender: mpsc::Sender<Result<pb::SyncResponse, Status>>,
    ) {
        let mut batch = first;
        loop {
            let full = batch.len() == CHANGE_BATCH;
            for record in batch {
                self.cursor.latest_record_version = record.version;
                let message = pb::SyncResponse { record: Some(wire::record_to_wire(&record)) };
                if sender.send(Ok(message)).await.is_err() {
                    return;
                }
            }
            if !full {
                if !self.wait {
                    return;
                }
                tokio::select! {
                    changed = watch.changed() => if changed.is_err() { return },
                    () = sender.closed() => return,
                    () = tokio::time::sleep(SYNC_POLL) => {}
                }
            }
            // Marked seen before reading, so a change during the read wakes the next wait.
            watch.borrow_and_update();
            batch = match self.storage.changes(self.cursor, self.record_type.as_deref()).await {
                Ok(batch) => batch,
                Err(error) => {
                    let _ = sender.send(Err(status(error))).await;
                    return;
                }
            };
        }
    }
}
