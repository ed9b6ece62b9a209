//! The databroker's PostgreSQL storage over TLS with real processes: two `pomerium` databrokers on
//! a PostgreSQL with `ssl = on` (its certificate for `localhost` from the test CA), connecting with
//! `sslmode=verify-full`; a write on one reaches a sync stream on the other (the LISTEN connection),
//! and every connection the server sees on their database is TLS.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, reason = "tests")]

mod support;

use databroker::record::Record;
use pg_test_cluster::{ServerTls, TestPostgres};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn databrokers_share_a_postgres_over_verified_tls() {
    let setup = Setup::new();
    let server = setup.pki.issue(&["localhost"]);
    let cluster = TestPostgres::start_cluster_tls(
        &ServerTls { cert_pem: server.cert_pem.clone(), key_pem: server.key_pem.clone(), ..ServerTls::default() },
        &[],
    )
    .unwrap();
    let ca = setup.write("postgres-ca.pem", &setup.pki.ca_pem());
    let database = cluster.database().unwrap();
    let name = database.rsplit('/').next().unwrap().to_owned();
    let url = format!(
        "{}?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={}",
        database.replace("@127.0.0.1:", "@localhost:"),
        ca.display()
    );

    let (a, broker_a) = databroker_process(&setup, "a.yaml", &url).await;
    let (_b, broker_b) = databroker_process(&setup, "b.yaml", &url).await;
    let snapshot = broker_b.latest(None).await.unwrap();
    let mut feed = broker_b.feed(snapshot.versions, None).await.unwrap();
    let data = serde_json::json!({"email": "alice@example.com"});
    let written = broker_a
        .put(vec![Record::new("type.googleapis.com/user.User", "alice", data.as_object().unwrap().clone())])
        .await;
    let version = written.unwrap().records[0].version;
    let arrived = tokio::time::timeout(PROMPTLY, feed.next()).await.expect("the change arrives").unwrap();
    assert_eq!((arrived.id.as_str(), arrived.version), ("alice", version));

    // Both processes' pools and LISTEN connections: all over TLS.
    let seen = cluster
        .psql(&format!(
            "SELECT count(*), bool_and(s.ssl), count(*) FILTER (WHERE a.query LIKE 'LISTEN%') \
             FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.datname = '{name}'"
        ))
        .unwrap();
    let fields: Vec<&str> = seen.split('|').collect();
    assert!(fields[0].parse::<u32>().unwrap() >= 4, "{seen}");
    assert_eq!(fields[1..], ["t", "2"], "{seen}");
    assert!(a.logs().iter().all(|line| !line.contains("sslrootcert")), "the connection string stays out of the log");
}
