//! The databroker's gRPC messages, decoded from arbitrary protobuf bytes (and, so that record
//! data gets past the `Any`/`Struct` decoding, records built from arbitrary JSON), applied in turn
//! to `DataBrokerService` over the memory storage: puts, patches with field masks, queries with
//! filters and search strings, gets, options (capacity, TTL, indexable fields), leases, clear.
//! Every call must answer (a status is fine) without panicking.
#![no_main]

use std::sync::{Arc, OnceLock};

use databroker::server::DataBrokerService;
use databroker::storage::memory::MemoryStorage;
use databroker::wire::pb::data_broker_service_server::DataBrokerService as _;
use databroker::wire::{STRUCT_TYPE_URL, json_to_struct, pb};
use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use tonic::Request;

fn tokio() -> &'static tokio::runtime::Runtime {
    static TOKIO: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    TOKIO.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap())
}

/// A record whose data is `json` (an object), as a client sends it.
fn record(kind: &str, id: &str, json: &str) -> Option<pb::Record> {
    let serde_json::Value::Object(object) = serde_json::from_str(json).ok()? else { return None };
    Some(pb::Record {
        r#type: kind.to_owned(),
        id: id.to_owned(),
        data: Some(prost_types::Any {
            type_url: STRUCT_TYPE_URL.to_owned(),
            value: json_to_struct(&object).encode_to_vec(),
        }),
        ..Default::default()
    })
}

fuzz_target!(|data: &[u8]| {
    let service = DataBrokerService::new(Arc::new(MemoryStorage::new()));
    tokio().block_on(async {
        // Operations: a kind byte, a length byte, then that many bytes of message.
        let mut rest = data;
        while let [kind, len, tail @ ..] = rest {
            let len = usize::from(*len).min(tail.len());
            let (message, next) = tail.split_at(len);
            rest = next;
            match kind % 12 {
                0 => {
                    if let Ok(m) = pb::PutRequest::decode(message) {
                        let _ = service.put(Request::new(m)).await;
                    }
                }
                1 => {
                    if let Ok(m) = pb::PatchRequest::decode(message) {
                        let _ = service.patch(Request::new(m)).await;
                    }
                }
                2 => {
                    if let Ok(m) = pb::QueryRequest::decode(message) {
                        let _ = service.query(Request::new(m)).await;
                    }
                }
                3 => {
                    if let Ok(m) = pb::GetRequest::decode(message) {
                        let _ = service.get(Request::new(m)).await;
                    }
                }
                4 => {
                    if let Ok(m) = pb::SetOptionsRequest::decode(message) {
                        let _ = service.set_options(Request::new(m)).await;
                    }
                }
                5 => {
                    if let Ok(m) = pb::AcquireLeaseRequest::decode(message) {
                        let _ = service.acquire_lease(Request::new(m)).await;
                    }
                }
                6 => {
                    if let Ok(m) = pb::RenewLeaseRequest::decode(message) {
                        let _ = service.renew_lease(Request::new(m)).await;
                    }
                }
                7 => {
                    if let Ok(m) = pb::ReleaseLeaseRequest::decode(message) {
                        let _ = service.release_lease(Request::new(m)).await;
                    }
                }
                8 => {
                    let _ = service.clear(Request::new(())).await;
                    let _ = service.list_types(Request::new(())).await;
                    let _ = service.server_info(Request::new(())).await;
                }
                9 => {
                    if let Ok(m) = pb::SyncLatestRequest::decode(message) {
                        let _ = service.sync_latest(Request::new(m)).await;
                    }
                }
                // Structured: the message is `type\nid\njson`; put, then read back.
                kind => {
                    let text = String::from_utf8_lossy(message);
                    let mut parts = text.splitn(3, '\n');
                    let (Some(record_type), Some(id), Some(json)) = (parts.next(), parts.next(), parts.next()) else {
                        continue;
                    };
                    let Some(record) = record(record_type, id, json) else { continue };
                    if kind == 10 {
                        let _ = service.put(Request::new(pb::PutRequest { records: vec![record] })).await;
                    } else {
                        let mask = prost_types::FieldMask { paths: json.split('"').map(str::to_owned).collect() };
                        let _ = service
                            .patch(Request::new(pb::PatchRequest { records: vec![record], field_mask: Some(mask) }))
                            .await;
                    }
                    let _ = service
                        .get(Request::new(pb::GetRequest { r#type: record_type.to_owned(), id: id.to_owned() }))
                        .await;
                    let _ = service
                        .query(Request::new(pb::QueryRequest {
                            r#type: record_type.to_owned(),
                            query: id.to_owned(),
                            limit: 10,
                            ..Default::default()
                        }))
                        .await;
                }
            }
        }
    });
});
