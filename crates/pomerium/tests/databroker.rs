//! The databroker as users deploy it, with real processes and a real PostgreSQL: `pomerium`
//! processes running `services: databroker` on one database, PostgreSQL restarted under a
//! syncing client, leases contended across processes, and calls with bad service tokens.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, reason = "tests")]

mod support;

use databroker::auth::ServiceAuth;
use databroker::client::Broker;
use databroker::record::{Record, Versions};
use pg_test_cluster::TestPostgres;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use support::*;

fn record(id: &str) -> Record {
    let data = serde_json::json!({"email": format!("{id}@example.com")});
    Record::new("type.googleapis.com/user.User", id, data.as_object().unwrap().clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_one_databroker_reaches_a_sync_stream_on_another() {
    let url = TestPostgres::shared().unwrap().database().unwrap();
    let setup = Setup::new();
    let (_a, broker_a) = databroker_process(&setup, "a.yaml", &url).await;
    let (_b, broker_b) = databroker_process(&setup, "b.yaml", &url).await;
    let snapshot = broker_b.latest(None).await.unwrap();
    let mut feed = broker_b.feed(snapshot.versions, None).await.unwrap();
    let written = broker_a.put(vec![record("alice")]).await.unwrap();
    let arrived = tokio::time::timeout(PROMPTLY, feed.next()).await.expect("the change arrives").unwrap();
    assert_eq!((arrived.id.as_str(), arrived.version), ("alice", written.records[0].version));
    assert_eq!(
        broker_b.get("type.googleapis.com/user.User", "alice").await.unwrap().unwrap().data,
        record("alice").data
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_with_a_missing_expired_or_foreign_token_are_refused_and_write_nothing() {
    let url = TestPostgres::shared().unwrap().database().unwrap();
    let setup = Setup::new();
    let (process, good) = databroker_process(&setup, "a.yaml", &url).await;
    let address = format!("http://{}", process.address);
    let foreign = Broker::remote(&address, ServiceAuth::new(b"not the shared secret at all....")).unwrap();
    let status = foreign.put(vec![record("mallory")]).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    let mut raw =
        databroker::wire::pb::data_broker_service_client::DataBrokerServiceClient::connect(address).await.unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    for token in [None, Some(ServiceAuth::new(&SHARED_KEY).sign_with_expiry(now - 1))] {
        let mut request = tonic::Request::new(databroker::wire::pb::PutRequest {
            records: vec![databroker::wire::record_to_wire(&record("mallory"))],
        });
        if let Some(token) = token {
            request.metadata_mut().insert("jwt", token.parse().unwrap());
        }
        assert_eq!(raw.put(request).await.unwrap_err().code(), tonic::Code::Unauthenticated);
    }
    assert!(good.latest(None).await.unwrap().records.is_empty(), "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_has_one_holder_at_a_time_across_processes() {
    let url = TestPostgres::shared().unwrap().database().unwrap();
    let setup = Setup::new();
    let (_a, broker_a) = databroker_process(&setup, "a.yaml", &url).await;
    let (_b, broker_b) = databroker_process(&setup, "b.yaml", &url).await;
    let holders = Arc::new(AtomicUsize::new(0));
    let acquisitions = Arc::new(AtomicUsize::new(0));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let contenders: Vec<_> = (0..6)
        .map(|i| {
            let broker = if i % 2 == 0 { broker_a.clone() } else { broker_b.clone() };
            let (holders, acquisitions) = (Arc::clone(&holders), Arc::clone(&acquisitions));
            tokio::spawn(async move {
                while tokio::time::Instant::now() < deadline {
                    let Some(id) = broker.acquire_lease("session-refresher", Duration::from_secs(10)).await.unwrap()
                    else {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    };
                    assert_eq!(holders.fetch_add(1, Ordering::SeqCst), 0, "two holders at once");
                    acquisitions.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    holders.fetch_sub(1, Ordering::SeqCst);
                    broker.release_lease("session-refresher", &id).await.unwrap();
                }
            })
        })
        .collect();
    for contender in contenders {
        contender.await.unwrap();
    }
    assert!(acquisitions.load(Ordering::SeqCst) >= 10, "the lease changed hands: {acquisitions:?}");
}

/// Follows the change log like the synced cache does, resuming after failures, and records
/// every change it sees.
async fn follow(broker: Broker, seen: Arc<std::sync::Mutex<Vec<Record>>>, stop: tokio::sync::watch::Receiver<bool>) {
    let mut cursor: Option<Versions> = None;
    while !*stop.borrow() {
        let from = match cursor {
            Some(cursor) => cursor,
            None => match broker.latest(None).await {
                Ok(snapshot) => {
                    seen.lock().unwrap().extend(snapshot.records);
                    cursor = Some(snapshot.versions);
                    snapshot.versions
                }
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let mut feed = match broker.feed(from, None).await {
            Ok(feed) => feed,
            Err(status) => {
                assert_ne!(status.code(), tonic::Code::Aborted, "no compaction or clear happened: {status:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        loop {
            let next = tokio::select! {
                next = feed.next() => next,
                _ = tokio::time::sleep(Duration::from_millis(200)) => break,
            };
            match next {
                Ok(record) => {
                    cursor = Some(Versions { latest_record_version: record.version, ..from });
                    seen.lock().unwrap().push(record);
                }
                Err(_) => break,
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_under_a_syncing_client_loses_and_duplicates_nothing() {
    let cluster = TestPostgres::start_cluster(&[]).unwrap();
    let url = cluster.database().unwrap();
    let setup = Setup::new();
    let (_process, broker) = databroker_process(&setup, "a.yaml", &url).await;
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let follower = tokio::spawn(follow(broker.clone(), Arc::clone(&seen), stopped));
    let writer = {
        let broker = broker.clone();
        tokio::spawn(async move {
            let mut failures = 0;
            for i in 0..150 {
                // Retry until the write lands: a failed call during the restart may or may not
                // have committed, and the follower must cope either way.
                while broker.put(vec![record(&format!("user-{i}"))]).await.is_err() {
                    failures += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            failures
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The cluster comes back from the blocking task: dropping it would stop it for good.
    let _cluster = tokio::task::spawn_blocking(move || {
        cluster.stop().unwrap();
        std::thread::sleep(Duration::from_millis(700));
        cluster.start_again().unwrap();
        cluster
    })
    .await
    .unwrap();
    // Bounded: a database that never came back would otherwise keep the writer retrying.
    let failures = tokio::time::timeout(4 * PROMPTLY, writer).await.expect("the writes land within 40 s").unwrap();
    let latest = broker.latest(None).await.unwrap();
    let deadline = tokio::time::Instant::now() + PROMPTLY;
    loop {
        let caught_up =
            seen.lock().unwrap().iter().map(|r| r.version).max() >= Some(latest.versions.latest_record_version);
        if caught_up {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the follower did not catch up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(true).unwrap();
    tokio::time::timeout(PROMPTLY, follower).await.expect("the follower stops").unwrap();
    let seen = seen.lock().unwrap().clone();
    // Every version seen once (the snapshot's records included), in increasing order after it.
    let mut versions: Vec<u64> = seen.iter().map(|r| r.version).collect();
    versions.sort_unstable();
    let count = versions.len();
    versions.dedup();
    assert_eq!(versions.len(), count, "a change was delivered twice");
    // The follower's view equals the database's.
    let mut view: BTreeMap<String, u64> = BTreeMap::new();
    for record in &seen {
        view.insert(record.id.clone(), record.version);
    }
    let truth: BTreeMap<String, u64> = latest.records.iter().map(|r| (r.id.clone(), r.version)).collect();
    assert_eq!(view, truth, "the follower lost a change");
    assert_eq!(truth.len(), 150);
    assert!(failures > 0, "the restart happened while writing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_all_in_one_server_uses_memory_by_default_and_postgres_when_configured() {
    let setup = Setup::new();
    let mut memory = setup.start("routes: []\n").await;
    let line = memory.wait_for_log("databroker storage ready").await;
    assert_eq!(line["fields"]["storage"], "Memory");
    drop(memory);
    let url = TestPostgres::shared().unwrap().database().unwrap();
    let mut postgres = setup
        .start(&format!("databroker_storage_type: postgres\ndatabroker_storage_connection_string: {url}\nroutes: []\n"))
        .await;
    let line = postgres.wait_for_log("databroker storage ready").await;
    assert_eq!(line["fields"]["storage"], "Postgres(..)", "and the connection string stays out of the log");
    // The schema is there: the server migrated the database.
    let tables = TestPostgres::shared().unwrap().psql_in(&url, "SELECT count(*) FROM pomerium.records").unwrap();
    assert_eq!(tables, "0");
}

// ---------------------------------------------------------------------------------------------
// Routes from the databroker's configuration records (what the ingress controller writes)

fn config_record(id: &str, routes: serde_json::Value) -> Record {
    let data = serde_json::json!({"name": id, "routes": routes});
    Record::new(databroker::record::CONFIG_TYPE, id, data.as_object().unwrap().clone())
}

fn public_route(name: &str, id: &str, to: &str) -> serde_json::Value {
    serde_json::json!({
        "from": format!("https://{name}.test.localhost"),
        "to": to,
        "id": id,
        "allow_public_unauthenticated_access": true,
    })
}

/// All-in-one with its databroker served on `grpc_address`: a configuration record written
/// there becomes routes served on open connections; a bad route is left out while the rest
/// apply; deleting the record removes its routes; file routes stay throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_records_become_routes_without_a_restart() {
    let setup = Setup::new();
    let (a, b) = (echo_upstream("a", None).await, echo_upstream("b", None).await);
    let file_route =
        route("file", "response:\n  status: 200\n  body: from the file\nallow_public_unauthenticated_access: true");
    let mut server =
        setup.start(&format!("grpc_address: 127.0.0.1:0\ngrpc_insecure: true\n{}", routes(&[file_route]))).await;
    let grpc = server.listener(GRPC_LOG).await;
    let broker = Broker::remote(&format!("http://{grpc}"), ServiceAuth::new(&SHARED_KEY)).unwrap();
    let (file, dynamic, other) = (server.host("file"), server.host("dyn"), server.host("other"));
    // Connections opened before any record exists, kept across every change.
    let mut to_file = server.h1("file.test.localhost").await;
    let mut to_dynamic = server.h1("dyn.test.localhost").await;
    assert_eq!(to_file.fetch(get(&file, "/")).await.text(), "from the file");
    assert_eq!(server.get(&dynamic, "/").await.status, 404);

    let reloads = server.count_logs("configuration reloaded");
    let record = config_record("ingress-controller", serde_json::json!([public_route("dyn", "dyn", &a.http())]));
    broker.put(vec![record]).await.unwrap();
    server.wait_for_log_after("configuration reloaded", reloads).await;
    assert_eq!(to_dynamic.fetch(get(&dynamic, "/")).await.seen().upstream(), "a", "on the connection opened before");
    assert_eq!(to_file.fetch(get(&file, "/")).await.text(), "from the file");

    // One good route moves to upstream b, one is bad: the good ones apply, the bad is reported.
    let reloads = server.count_logs("configuration reloaded");
    let bad = serde_json::json!({"from": "https://bad.test.localhost", "to": "not a url", "id": "bad"});
    let routes =
        serde_json::json!([public_route("dyn", "dyn", &b.http()), bad, public_route("other", "other", &a.http())]);
    broker.put(vec![config_record("ingress-controller", routes)]).await.unwrap();
    server.wait_for_log_after("configuration reloaded", reloads).await;
    assert_eq!(to_dynamic.fetch(get(&dynamic, "/")).await.seen().upstream(), "b");
    assert_eq!(server.get(&other, "/").await.seen().upstream(), "a");
    assert!(
        server.logs().iter().any(|line| line.contains("record `ingress-controller`, route 1 (`bad`) left out")),
        "the bad route is reported"
    );

    let reloads = server.count_logs("configuration reloaded");
    broker.put(vec![Record::tombstone(databroker::record::CONFIG_TYPE, "ingress-controller")]).await.unwrap();
    server.wait_for_log_after("configuration reloaded", reloads).await;
    assert_eq!(to_dynamic.fetch(get(&dynamic, "/")).await.status, 404);
    assert_eq!(to_file.fetch(get(&file, "/")).await.text(), "from the file");
    assert!(!to_file.is_closed(), "no connection was dropped");
    server.assert_running();
}

/// `services: databroker` without `grpc_insecure` serves its API over TLS with the configured
/// certificate: a client that trusts the CA is served; a plain-text client is not, and writes
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_databroker_serves_grpc_over_tls_unless_told_otherwise() {
    let setup = Setup::new();
    let leaf = setup.pki.issue(&["localhost"]);
    let cert = setup.write("grpc.pem", &leaf.cert_pem);
    let key = setup.write("grpc-key.pem", &leaf.key_pem);
    let path = setup.write(
        "db.yaml",
        &format!(
            "services: databroker\n\
             grpc_address: 127.0.0.1:0\n\
             health_check_addr: 127.0.0.1:0\n\
             shared_secret: {}\n\
             certificates:\n  - cert: {}\n    key: {}\n",
            shared_secret_base64(),
            cert.display(),
            key.display()
        ),
    );
    let process = Pomerium::spawn_until(&path, setup.pki.ca(), GRPC_LOG).await;
    let port = process.address.port();
    assert!(process.logs().iter().any(|l| l.contains(GRPC_LOG) && l.contains("\"tls\":true")), "{:?}", process.logs());

    let options =
        databroker::client::RemoteOptions { ca_pem: Some(setup.pki.ca_pem().into_bytes()), ..Default::default() };
    let trusted =
        Broker::remote_with(&format!("https://localhost:{port}"), ServiceAuth::new(&SHARED_KEY), &options).unwrap();
    trusted.put(vec![record("alice")]).await.unwrap();
    assert!(trusted.get("type.googleapis.com/user.User", "alice").await.unwrap().is_some());

    let plain = Broker::remote(&format!("http://127.0.0.1:{port}"), ServiceAuth::new(&SHARED_KEY)).unwrap();
    let refused =
        tokio::time::timeout(PROMPTLY, plain.put(vec![record("mallory")])).await.expect("an answer, not a hang");
    assert!(refused.is_err(), "a plain-text client is not served");
    assert!(trusted.get("type.googleapis.com/user.User", "mallory").await.unwrap().is_none());
}
