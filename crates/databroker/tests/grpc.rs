//! The gRPC service and the client over a real loopback connection: authentication, sync
//! streams, Aborted on stale versions, and the synced cache the authorize path reads.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, reason = "tests")]

use databroker::auth::ServiceAuth;
use databroker::client::{Broker, RemoteOptions, SyncedCache};
use databroker::record::{Record, Versions};
use databroker::storage::{AnyStorage, MemoryStorage, PostgresStorage, Storage};
use databroker::wire::pb;
use pg_test_cluster::TestPostgres;
use policy::records::{MemoryRecords, Records};
use serde_json::{Value, json};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tonic::Code;

const SECRET: &[u8] = b"a shared secret of thirty-two b!";

fn record(record_type: &str, id: &str, value: Value) -> Record {
    Record::new(record_type, id, value.as_object().cloned().unwrap_or_default())
}

struct Served {
    url: String,
    storage: Arc<AnyStorage>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

async fn serve(storage: AnyStorage) -> Served {
    serve_shared(Arc::new(storage)).await
}

/// A server of `storage`, which other servers may serve too (instances on one storage).
async fn serve_shared(storage: Arc<AnyStorage>) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = Arc::clone(&storage);
    tokio::spawn(async move {
        databroker::serve(listener, served, ServiceAuth::new(SECRET), async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Served { url, storage, _shutdown: stop }
}

async fn memory_server() -> Served {
    serve(AnyStorage::Memory(MemoryStorage::new())).await
}

fn client(served: &Served) -> Broker {
    Broker::remote(&served.url, ServiceAuth::new(SECRET)).unwrap()
}

/// A raw client whose calls carry the given `jwt` metadata (or none).
async fn raw_client(
    served: &Served,
) -> pb::data_broker_service_client::DataBrokerServiceClient<tonic::transport::Channel> {
    pb::data_broker_service_client::DataBrokerServiceClient::connect(served.url.clone()).await.unwrap()
}

fn put_request(token: Option<&str>) -> tonic::Request<pb::PutRequest> {
    let mut request = tonic::Request::new(pb::PutRequest {
        records: vec![databroker::wire::record_to_wire(&record("t", "intruder", json!({"x": 1})))],
    });
    if let Some(token) = token {
        request.metadata_mut().insert("jwt", token.parse().unwrap());
    }
    request
}

#[tokio::test]
async fn calls_without_a_valid_token_are_unauthenticated_and_write_nothing() {
    let served = memory_server().await;
    let mut raw = raw_client(&served).await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let cases = [
        ("missing", None),
        ("expired", Some(ServiceAuth::new(SECRET).sign_with_expiry(now - 5))),
        ("wrong secret", Some(ServiceAuth::new(b"another secret entirely, 32 byte").sign())),
        ("garbage", Some("not.a.jwt".to_owned())),
    ];
    for (name, token) in cases {
        let status = raw.put(put_request(token.as_deref())).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{name}: {status:?}");
    }
    assert!(served.storage.latest(None).await.unwrap().records.is_empty(), "nothing was written");
    let good = ServiceAuth::new(SECRET).sign();
    raw.put(put_request(Some(&good))).await.unwrap();
    assert_eq!(served.storage.latest(None).await.unwrap().records.len(), 1);
}

#[tokio::test]
async fn put_get_and_not_found_over_grpc() {
    let served = memory_server().await;
    let broker = client(&served);
    let written = broker.put(vec![record("t", "1", json!({"email": "a@example.com", "n": 3}))]).await.unwrap();
    assert_eq!(written.records[0].version, 1);
    let got = broker.get("t", "1").await.unwrap().unwrap();
    assert_eq!(Value::Object(got.data), json!({"email": "a@example.com", "n": 3}));
    assert!(broker.get("t", "2").await.unwrap().is_none());
}

#[tokio::test]
async fn bad_records_are_invalid_arguments() {
    let served = memory_server().await;
    let mut raw = raw_client(&served).await;
    let mut request = tonic::Request::new(pb::PutRequest {
        records: vec![pb::Record {
            r#type: "t".into(),
            id: "1".into(),
            data: Some(prost_types::Any { type_url: "type.googleapis.com/session.Session".into(), value: vec![] }),
            ..pb::Record::default()
        }],
    });
    request.metadata_mut().insert("jwt", ServiceAuth::new(SECRET).sign().parse().unwrap());
    let status = raw.put(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("session.Session"), "{}", status.message());
}

#[tokio::test]
async fn sync_latest_ends_with_versions_and_sync_streams_later_writes() {
    let served = memory_server().await;
    let broker = client(&served);
    broker.put(vec![record("t", "1", json!({}))]).await.unwrap();
    let snapshot = broker.latest(None).await.unwrap();
    assert_eq!(snapshot.records.len(), 1);
    assert_eq!(snapshot.versions.latest_record_version, 1);
    let mut feed = broker.feed(snapshot.versions, None).await.unwrap();
    broker.put(vec![record("t", "2", json!({}))]).await.unwrap();
    broker.put(vec![Record::tombstone("t", "1")]).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), feed.next()).await.unwrap().unwrap();
    let second = tokio::time::timeout(Duration::from_secs(5), feed.next()).await.unwrap().unwrap();
    assert_eq!((first.id.as_str(), first.version, first.is_deleted()), ("2", 2, false));
    assert_eq!((second.id.as_str(), second.version, second.is_deleted()), ("1", 3, true));
}

#[tokio::test]
async fn a_stale_server_version_is_aborted() {
    let served = memory_server().await;
    let broker = client(&served);
    let stale = Versions { server_version: 12345, latest_record_version: 0 };
    let status = broker.feed(stale, None).await.unwrap_err();
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
}

#[tokio::test]
async fn leases_over_grpc() {
    let served = memory_server().await;
    let broker = client(&served);
    let id = broker.acquire_lease("l", Duration::from_secs(30)).await.unwrap().unwrap();
    assert!(broker.acquire_lease("l", Duration::from_secs(30)).await.unwrap().is_none());
    assert!(broker.renew_lease("l", &id, Duration::from_secs(30)).await.unwrap());
    broker.release_lease("l", &id).await.unwrap();
    assert!(broker.acquire_lease("l", Duration::from_secs(30)).await.unwrap().is_some());
}

async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The cache the authorize path reads: it follows writes, deletes and a `Clear` (a new server
/// version, so a full re-sync), over gRPC and in process.
async fn cache_follows(broker: Broker, writer: Broker) {
    let records = Arc::new(RwLock::new(MemoryRecords::default()));
    let cache = SyncedCache::new(Arc::clone(&records), &[]);
    let task = cache.spawn(broker);
    let session = json!({"user_id": "u1", "claims": {"groups": ["eng"]}});
    let written = writer.put(vec![record("type.googleapis.com/session.Session", "s1", session)]).await.unwrap();
    let at = Versions { server_version: written.server_version, latest_record_version: written.records[0].version };
    assert!(cache.wait_for(at, Duration::from_secs(10)).await, "read-your-writes");
    {
        let guard = records.read().unwrap();
        let session = guard.session("s1").unwrap();
        assert_eq!(session.user_id.as_deref(), Some("u1"));
    }
    writer.put(vec![Record::tombstone("type.googleapis.com/session.Session", "s1")]).await.unwrap();
    wait_until("the delete", || records.read().unwrap().session("s1").is_none()).await;
    task.abort();
}

#[tokio::test]
async fn the_synced_cache_follows_a_remote_databroker() {
    let served = memory_server().await;
    cache_follows(client(&served), client(&served)).await;
}

#[tokio::test]
async fn the_synced_cache_follows_an_in_process_databroker() {
    let storage = Arc::new(AnyStorage::Memory(MemoryStorage::new()));
    cache_follows(Broker::Local(Arc::clone(&storage)), Broker::Local(storage)).await;
}

#[tokio::test]
async fn the_synced_cache_resyncs_after_a_clear() {
    let served = memory_server().await;
    let records = Arc::new(RwLock::new(MemoryRecords::default()));
    let cache = SyncedCache::new(Arc::clone(&records), &["kept"]);
    let task = cache.spawn(client(&served));
    let writer = client(&served);
    writer.put(vec![record("kept", "before", json!({}))]).await.unwrap();
    wait_until("the first record", || cache.retained("kept").len() == 1).await;
    served.storage.clear().await.unwrap();
    writer.put(vec![record("kept", "after", json!({}))]).await.unwrap();
    wait_until("the re-sync", || {
        let kept = cache.retained("kept");
        kept.len() == 1 && kept[0].id == "after"
    })
    .await;
    task.abort();
}

#[tokio::test]
async fn read_your_writes_gives_up_after_its_timeout() {
    let storage = Arc::new(AnyStorage::Memory(MemoryStorage::new()));
    let cache = SyncedCache::new(Arc::new(RwLock::new(MemoryRecords::default())), &[]);
    let task = cache.spawn(Broker::Local(Arc::clone(&storage)));
    let future =
        Versions { server_version: storage.server_info().await.unwrap().server_version, latest_record_version: 99 };
    assert!(!cache.wait_for(future, Duration::from_millis(100)).await);
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_synced_cache_over_postgres() {
    let url = TestPostgres::shared().unwrap().database().unwrap();
    let served = serve(AnyStorage::Postgres(PostgresStorage::connect(&url).await.unwrap())).await;
    cache_follows(client(&served), client(&served)).await;
}

// ---------------------------------------------------------------------------------------------
// TLS

struct TlsServed {
    port: u16,
    ca_pem: String,
    storage: Arc<AnyStorage>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl TlsServed {
    fn url(&self, scheme: &str) -> String {
        format!("{scheme}://localhost:{}", self.port)
    }
}

/// A memory databroker served with `serve_tls`, its certificate for `localhost` issued by a fresh CA.
async fn tls_server() -> TlsServed {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "databroker test CA");
    let issuer = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()]).unwrap().signed_by(&key, &issuer).unwrap();
    let mut config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];

    let storage = Arc::new(AnyStorage::Memory(MemoryStorage::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = Arc::clone(&storage);
    tokio::spawn(async move {
        databroker::serve_tls(listener, served, ServiceAuth::new(SECRET), Arc::new(config), async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    TlsServed { port, ca_pem: issuer.pem(), storage, _shutdown: stop }
}

fn tls_client(url: &str, options: &RemoteOptions) -> Broker {
    Broker::remote_with(url, ServiceAuth::new(SECRET), options).unwrap()
}

#[tokio::test]
async fn put_and_get_over_tls_with_the_ca() {
    let served = tls_server().await;
    // A client that connects and never starts its handshake must hold up no one else.
    let _stalled = tokio::net::TcpStream::connect(("127.0.0.1", served.port)).await.unwrap();
    let options = RemoteOptions { ca_pem: Some(served.ca_pem.clone().into_bytes()), insecure_skip_verify: false };
    let broker = tls_client(&served.url("https"), &options);
    let put = tokio::time::timeout(Duration::from_secs(5), broker.put(vec![record("t", "1", json!({"a": 1}))]))
        .await
        .expect("the put finishes although another client stalls its handshake")
        .unwrap();
    assert_eq!(put.records.len(), 1);
    let got = broker.get("t", "1").await.unwrap().unwrap();
    assert_eq!(got.data.get("a"), Some(&json!(1)));
    assert!(served.storage.get("t", "1").await.unwrap().is_some(), "written to the server's storage");
}

#[tokio::test]
async fn tls_without_the_ca_is_unavailable_and_writes_nothing() {
    let served = tls_server().await;
    let broker = tls_client(&served.url("https"), &RemoteOptions::default());
    let error = broker.put(vec![record("t", "1", json!({"a": 1}))]).await.unwrap_err();
    assert_eq!(error.code(), Code::Unavailable, "{error:?}");
    assert!(served.storage.latest(None).await.unwrap().records.is_empty(), "nothing was written");
}

#[tokio::test]
async fn tls_with_insecure_skip_verify_connects() {
    let served = tls_server().await;
    let options = RemoteOptions { ca_pem: None, insecure_skip_verify: true };
    let broker = tls_client(&served.url("https"), &options);
    broker.put(vec![record("t", "1", json!({"a": 1}))]).await.unwrap();
    assert!(broker.get("t", "1").await.unwrap().is_some());
    assert!(served.storage.get("t", "1").await.unwrap().is_some());
}

#[tokio::test]
async fn plaintext_against_the_tls_port_fails_and_writes_nothing() {
    let served = tls_server().await;
    let broker = client_for(&served.url("http"));
    let result =
        tokio::time::timeout(Duration::from_secs(15), broker.put(vec![record("t", "1", json!({"a": 1}))])).await;
    assert!(matches!(result, Ok(Err(_))), "{result:?}");
    assert!(served.storage.latest(None).await.unwrap().records.is_empty(), "nothing was written");
}

#[test]
fn a_ca_without_certificates_is_refused() {
    for pem in [b"not a certificate".as_slice(), b"".as_slice()] {
        let options = RemoteOptions { ca_pem: Some(pem.to_vec()), insecure_skip_verify: false };
        let error = Broker::remote_with("https://localhost:1", ServiceAuth::new(SECRET), &options).unwrap_err();
        assert_eq!(error, "databroker TLS CA: no certificate in the PEM text");
    }
}

fn client_for(url: &str) -> Broker {
    Broker::remote(url, ServiceAuth::new(SECRET)).unwrap()
}

/// `databroker_service_urls`: a client of two databrokers on one storage keeps working when one
/// goes away (at most the call that finds it gone fails; that address is then left alone), and
/// what it writes through one is read through the other.
#[tokio::test]
async fn a_client_of_several_databrokers_survives_one_going_away() {
    let storage = Arc::new(AnyStorage::Memory(MemoryStorage::new()));
    let a = serve_shared(Arc::clone(&storage)).await;
    let b = serve_shared(Arc::clone(&storage)).await;
    let urls = [a.url.clone(), b.url.clone()];
    let broker =
        Broker::remote_all(&urls, ServiceAuth::new(SECRET), &RemoteOptions::default(), Default::default()).unwrap();
    broker.put(vec![record("t", "1", json!({"n": 1}))]).await.unwrap();
    for _ in 0..4 {
        assert!(broker.get("t", "1").await.unwrap().is_some());
    }
    drop(a);
    let mut failures = 0;
    for n in 0..10 {
        match broker.put(vec![record("t", &format!("after-{n}"), json!({"n": n}))]).await {
            Ok(_) => {}
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "{status}");
                failures += 1;
            }
        }
    }
    assert!(failures <= 1, "{failures} calls failed after one databroker went away");
    let written = storage.get("t", "after-9").await.unwrap();
    assert!(written.is_some(), "the other databroker took the writes");
    drop(b);
}
