//! The console over TLS with its configured certificate, driven by the cluster side's own client
//! (`zero::client::ClusterClient`, what managed `pomerium` uses): exchange, bootstrap, bundles,
//! the signed download with its ETag, and a rotated token ending in the terminal error.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "tests fail by panicking"
)]

mod support;

use http::StatusCode;
use serde_json::json;
use support::{Console, Http};

#[tokio::test]
async fn a_replica_client_over_tls_bootstraps_downloads_and_is_refused_after_rotation() {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let certificate = params.self_signed(&key).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), certificate.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
    let yaml = format!(
        "address: 127.0.0.1:0\nbase_domain: clusters.test\ncertificate_file: {}\ncertificate_key_file: {}\napi_tokens:\n  - name: tests\n    token: {}\n",
        dir.path().join("cert.pem").display(),
        dir.path().join("key.pem").display(),
        support::API_TOKEN
    );
    let console = Console::start_in(dir, &yaml).await;
    let base = format!("https://localhost:{}", console.address.port());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certificate.der().clone()).unwrap();

    // Plain HTTP is not served on a TLS console.
    let plain = Http::new(&format!("http://127.0.0.1:{}", console.address.port()));
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let refused =
        tokio::time::timeout(support::PROMPTLY, client.get(format!("{}/api/v0/version", plain.base).parse().unwrap()))
            .await
            .unwrap();
    assert!(refused.is_err() || refused.unwrap().status() != StatusCode::OK);

    let mut http = Http::with_roots(&base, roots.clone());
    let token = http.post("/api/v0/token", json!({"refreshToken": support::API_TOKEN})).await;
    assert_eq!(token.status, StatusCode::OK, "{token:?}");
    http.token = Some(token.json["idToken"].as_str().unwrap().to_owned());
    let org = http.get("/api/v0/organizations").await.json[0]["id"].as_str().unwrap().to_owned();
    let cluster =
        http.post(&format!("/api/v0/organizations/{org}/clusters"), json!({"name": "edge", "domain": ""})).await;
    assert_eq!(cluster.status, StatusCode::CREATED, "{cluster:?}");
    let cluster_id = cluster.json["id"].as_str().unwrap();
    let refresh = cluster.json["refreshToken"].as_str().unwrap();
    let settings = format!("/api/v0/organizations/{org}/clusters/{cluster_id}/settings");
    let put = http
        .send(
            http::Method::PUT,
            &settings,
            Some(
                json!({"autoApplyChangesets": true, "databrokerStorageConnection": "postgres://db.internal/pomerium"}),
            ),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{put:?}");

    let replica =
        zero::client::ClusterClient::new(&format!("{base}/cluster/v1"), refresh, support::client_tls(roots)).unwrap();
    let bootstrap = replica.bootstrap().await.unwrap();
    assert_eq!(bootstrap.cluster_id, cluster_id);
    assert_eq!(bootstrap.databroker_storage_connection.as_deref(), Some("postgres://db.internal/pomerium"));
    assert_eq!(replica.bundles().await.unwrap().bundles[0].id, "config");
    let url = replica.download_url("config").await.unwrap();
    assert!(url.url.starts_with(&format!("{base}/")), "{url:?}");
    let zero::client::Download::Content { body, etag, .. } = replica.download(&url, None).await.unwrap() else {
        panic!("the first download has content");
    };
    let records = zero::bundle::decode(&body).unwrap();
    assert_eq!(records[0].data["routes"], json!([]), "{records:?}");
    assert!(matches!(replica.download(&url, Some(&etag)).await.unwrap(), zero::client::Download::NotModified));

    let rotated = http.post(&format!("/api/v0/organizations/{org}/clusters/{cluster_id}/token"), json!({})).await;
    assert_eq!(rotated.status, StatusCode::OK);
    let error = replica.bootstrap().await.unwrap_err();
    assert!(error.is_terminal(), "{error}");
}
