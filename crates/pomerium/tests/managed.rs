//! Managed clusters end to end: the control plane (`pomerium-console`, run in this process on
//! its own PostgreSQL database) and a cluster of two `pomerium` replicas (the real binary) on
//! another database, started with only the cluster token and the endpoints. A route and a policy
//! made through Zero's API reach both replicas and are served; with the control plane stopped the
//! replicas keep serving (and one restarted starts from `bootstrap.dat`); the token rotated, the
//! replicas exit non-zero saying so.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "tests"
)]

mod support;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use pg_test_cluster::TestPostgres;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::{Pomerium, Setup, echo_upstream, eventually};

const API_TOKEN: &str = "managed-test-api-token-0123456789";
/// Reconnecting replicas back off (0.5 s doubling): a generous bound for what waits on them.
const RECONNECT: Duration = Duration::from_secs(60);

/// The control plane, in process: stopped by dropping `stop`.
struct ControlPlane {
    address: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl ControlPlane {
    async fn start(address: &str, postgres_url: &str) -> ControlPlane {
        let settings = console::settings::Settings {
            address: address.to_owned(),
            insecure_server: true,
            storage: console::settings::Storage::Postgres(postgres_url.to_owned()),
            base_domain: "test.localhost".to_owned(),
            api_tokens: vec![console::settings::ApiToken { name: "tests".to_owned(), token: API_TOKEN.to_owned() }],
            ..console::settings::Settings::default()
        };
        let console = console::Console::open(settings).await.unwrap();
        let address = console.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(console.serve(async move {
            let _ = stopped.await;
        }));
        ControlPlane { address, stop: Some(stop), task }
    }

    async fn stop(mut self) {
        drop(self.stop.take());
        tokio::time::timeout(Duration::from_secs(10), &mut self.task).await.expect("the console stops").unwrap();
    }
}

/// Zero's public API over plain HTTP, signed in with the API token.
struct Api {
    client: hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    base: String,
    token: String,
}

impl Api {
    async fn sign_in(address: SocketAddr) -> Api {
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        let mut api = Api { client, base: format!("http://{address}/api/v0"), token: String::new() };
        let (status, answer) = api.call(Method::POST, "/token", Some(json!({"refreshToken": API_TOKEN}))).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        api.token = answer["idToken"].as_str().unwrap().to_owned();
        api
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.map(|b| b.to_string()).unwrap_or_default())))
            .unwrap();
        let response =
            tokio::time::timeout(support::PROMPTLY, self.client.request(request)).await.expect("an answer").unwrap();
        let status = response.status();
        let bytes = tokio::time::timeout(support::PROMPTLY, response.into_body().collect()).await.unwrap().unwrap();
        (status, serde_json::from_slice(&bytes.to_bytes()).unwrap_or(Value::Null))
    }

    /// A GET without credentials, answered 200 with text.
    async fn text(&self, path: &str) -> String {
        let request = Request::get(format!("{}{path}", self.base)).body(Full::new(Bytes::new())).unwrap();
        let response =
            tokio::time::timeout(support::PROMPTLY, self.client.request(request)).await.expect("an answer").unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let bytes = tokio::time::timeout(support::PROMPTLY, response.into_body().collect()).await.unwrap().unwrap();
        String::from_utf8(bytes.to_bytes().to_vec()).unwrap()
    }
}

/// A replica: the binary with a file of only listener settings (address, certificate,
/// authenticate URL: no secrets, no storage), the token and the endpoints in its environment.
async fn replica(setup: &Setup, name: &str, token: &str, console: SocketAddr) -> Pomerium {
    let config = format!(
        "address: 127.0.0.1:0\nauthenticate_service_url: https://authenticate.test.localhost\ncertificates:\n  - cert: {}\n    key: {}\n",
        setup.cert_path.display(),
        setup.key_path.display()
    );
    let path = setup.write(&format!("{name}.yaml"), &config);
    let cache = setup.dir.path().join(format!("{name}-bootstrap.dat"));
    let env = [
        ("POMERIUM_ZERO_TOKEN", token.to_owned()),
        ("CLUSTER_API_ENDPOINT", format!("http://{console}/cluster/v1")),
        ("CONNECT_SERVER_ENDPOINT", format!("http://{console}")),
        ("BOOTSTRAP_CONFIG_FILE", cache.display().to_string()),
        ("HOSTNAME", name.to_owned()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Pomerium::spawn_with(&path, setup.pki.ca(), "serving", &env).await
}

/// Waits until `replica` serves the app route (200 from the upstream), within `bound`.
async fn served(replica: &Pomerium, bound: Duration) {
    let deadline = Instant::now() + bound;
    loop {
        let reply = replica.get(&replica.host("app"), "/hello").await;
        if reply.status == StatusCode::OK {
            assert_eq!(reply.seen().upstream(), "app");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the route is not served (last answer {}):\n{}",
            reply.status,
            replica.logs().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_of_two_replicas_follows_its_control_plane_and_ends_with_its_token() {
    let postgres = TestPostgres::shared().unwrap();
    let console_db = postgres.database().unwrap();
    let cluster_db = postgres.database().unwrap();
    let control = ControlPlane::start("127.0.0.1:0", &console_db).await;
    let console_address = control.address;
    let api = Api::sign_in(console_address).await;
    let (_, orgs) = api.call(Method::GET, "/organizations", None).await;
    let org = orgs[0]["id"].as_str().unwrap().to_owned();
    let (status, cluster) =
        api.call(Method::POST, &format!("/organizations/{org}/clusters"), Some(json!({"name": "prod"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{cluster}");
    let cluster_id = cluster["id"].as_str().unwrap().to_owned();
    let token = cluster["refreshToken"].as_str().unwrap().to_owned();
    let (status, settings) = api
        .call(
            Method::PUT,
            &format!("/organizations/{org}/clusters/{cluster_id}/settings"),
            Some(json!({"autoApplyChangesets": true, "databrokerStorageConnection": cluster_db})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{settings}");

    let setup = Setup::new();
    let upstream = echo_upstream("app", None).await;
    let mut a = replica(&setup, "replica-a", &token, console_address).await;
    let b = replica(&setup, "replica-b", &token, console_address).await;

    // A policy and a route through the API: applied at once, served by both replicas.
    let (status, policy) = api
        .call(
            Method::POST,
            &format!("/organizations/{org}/policies"),
            Some(json!({"name": "everyone", "namespaceId": cluster_id, "ppl": {"allow": {"and": [{"accept": true}]}}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{policy}");
    let route = json!({
        "name": "app", "namespaceId": cluster_id, "from": "https://app.test.localhost",
        "to": [upstream.http()], "policyIds": [policy["id"]],
    });
    let (status, route) = api.call(Method::POST, &format!("/organizations/{org}/routes"), Some(route)).await;
    assert_eq!(status, StatusCode::CREATED, "{route}");
    served(&a, support::PROMPTLY).await;
    served(&b, support::PROMPTLY).await;

    // Apply → served on both replicas, over 20 changes (each a new route, applied at once).
    let mut latencies = Vec::new();
    for index in 0..20 {
        let name = format!("app{index}");
        let route = json!({
            "name": name, "namespaceId": cluster_id, "from": format!("https://{name}.test.localhost"),
            "to": [upstream.http()], "policyIds": [policy["id"]],
        });
        let started = Instant::now();
        let (status, created) = api.call(Method::POST, &format!("/organizations/{org}/routes"), Some(route)).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        for replica in [&a, &b] {
            let deadline = Instant::now() + support::PROMPTLY;
            while replica.get(&replica.host(&name), "/").await.status != StatusCode::OK {
                assert!(Instant::now() < deadline, "{name} not served:\n{}", replica.logs().join("\n"));
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        latencies.push(started.elapsed());
    }
    latencies.sort();
    let (p50, p99) = (latencies[latencies.len() / 2], latencies[latencies.len() * 99 / 100]);
    // A figure for BENCHMARKS.md, not an assertion: each change was bounded above by PROMPTLY.
    println!("apply -> served on both replicas over 20 changes: p50 {p50:?}, p99 {p99:?}");

    // Both replicas are known from their Connect streams.
    let hostnames = eventually("both replicas listed", || async {
        let (_, replicas) =
            api.call(Method::GET, &format!("/organizations/{org}/clusters/{cluster_id}/replicas"), None).await;
        let mut names: Vec<String> =
            replicas.as_array()?.iter().filter_map(|r| r["hostname"].as_str().map(str::to_owned)).collect();
        names.sort();
        (names.len() == 2).then_some(names)
    })
    .await;
    assert_eq!(hostnames, ["replica-a", "replica-b"]);

    // The control plane stopped: both keep serving, and a replica restarted meanwhile starts
    // from its bootstrap.dat and the cluster's databroker.
    control.stop().await;
    served(&a, support::PROMPTLY).await;
    served(&b, support::PROMPTLY).await;
    drop(b);
    let mut b = replica(&setup, "replica-b", &token, console_address).await;
    served(&b, support::PROMPTLY).await;
    a.assert_running();

    // The control plane back (same database, same port): the replicas reconnect.
    let control = ControlPlane::start(&console_address.to_string(), &console_db).await;
    let api = Api::sign_in(control.address).await;
    // `a` was connected once before, the restarted `b` never.
    for (replica, connections) in [(&a, 2), (&b, 1)] {
        let deadline = Instant::now() + RECONNECT;
        while replica.count_logs("connected to the control plane") < connections {
            assert!(Instant::now() < deadline, "no reconnection:\n{}", replica.logs().join("\n"));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // The token rotated: both replicas exit non-zero with the message that says so.
    let (status, rotated) =
        api.call(Method::POST, &format!("/organizations/{org}/clusters/{cluster_id}/token"), Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    for replica in [&mut a, &mut b] {
        let exit = replica.wait_exit().await;
        assert!(!exit.success(), "{exit:?}");
        let logs = replica.logs().join("\n");
        assert!(logs.contains("rotated or revoked"), "{logs}");
    }
    control.stop().await;
}

/// The alert `id` for `hostname` in a cluster's `GET .../health`, once it is there.
fn alert_of<'a>(alerts: &'a Value, id: &str, hostname: &str) -> Option<&'a Value> {
    alerts.as_array()?.iter().find(|a| a["id"] == id && a["hostname"] == hostname)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_reports_its_health_checks_and_runs_them_again_when_asked() {
    let postgres = TestPostgres::shared().unwrap();
    let console_db = postgres.database().unwrap();
    let control = ControlPlane::start("127.0.0.1:0", &console_db).await;
    let api = Api::sign_in(control.address).await;
    let (_, orgs) = api.call(Method::GET, "/organizations", None).await;
    let org = orgs[0]["id"].as_str().unwrap().to_owned();
    let (_, cluster) =
        api.call(Method::POST, &format!("/organizations/{org}/clusters"), Some(json!({"name": "health"}))).await;
    let cluster_id = cluster["id"].as_str().unwrap().to_owned();
    let token = cluster["refreshToken"].as_str().unwrap().to_owned();
    // No storage connection: the replica keeps its records in memory.
    let (status, _) = api
        .call(
            Method::PUT,
            &format!("/organizations/{org}/clusters/{cluster_id}/settings"),
            Some(json!({"autoApplyChangesets": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let setup = Setup::new();
    let upstream = echo_upstream("app", None).await;
    let a = replica(&setup, "replica-a", &token, control.address).await;
    let (_, policy) = api
        .call(
            Method::POST,
            &format!("/organizations/{org}/policies"),
            Some(json!({"name": "everyone", "namespaceId": cluster_id, "ppl": {"allow": {"and": [{"accept": true}]}}})),
        )
        .await;
    // A route whose host (a loopback name, the replica's port) points at the cluster.
    let route = |name: &str, port: u16| {
        json!({
            "name": name, "namespaceId": cluster_id, "from": format!("https://{name}.test.localhost:{port}"),
            "to": [upstream.http()], "policyIds": [policy["id"]],
        })
    };
    let (status, created) =
        api.call(Method::POST, &format!("/organizations/{org}/routes"), Some(route("reach", a.address.port()))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let health = format!("/organizations/{org}/clusters/{cluster_id}/health");
    let alerts = eventually("the replica's health checks", || async {
        let (_, alerts) = api.call(Method::GET, &health, None).await;
        let current = alert_of(&alerts, "cluster_config_current", "replica-a")?["status"] == "success";
        (current && alert_of(&alerts, "routes.reachable", "replica-a")?["status"] == "success").then_some(alerts)
    })
    .await;
    for check in ["storage.backend", "zero.connect", "zero.bootstrap-config.save", "config.databroker.build"] {
        let alert = alert_of(&alerts, check, "replica-a").unwrap_or_else(|| panic!("no {check}: {alerts:#}"));
        assert_eq!(alert["status"], "success", "{alert}");
    }
    let current = alert_of(&alerts, "cluster_config_current", "replica-a").unwrap_or_else(|| panic!("{alerts:#}"));
    assert_eq!(current["status"], "success", "{current}");
    let memory = alerts.as_array().unwrap().iter().find(|a| a["id"] == "persistent_backend").unwrap();
    assert_eq!(memory["status"], "warning", "{memory}");
    assert!(memory["description"].as_str().unwrap().contains("in-memory storage"), "{memory}");

    // A route host that does not point at the cluster (nothing listens on its port).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (status, created) =
        api.call(Method::POST, &format!("/organizations/{org}/routes"), Some(route("elsewhere", closed))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let failing = eventually("routes.reachable failing", || async {
        let (_, alerts) = api.call(Method::GET, &health, None).await;
        let alert = alert_of(&alerts, "routes.reachable", "replica-a")?.clone();
        (alert["status"] == "error").then_some(alert)
    })
    .await;
    let description = failing["description"].as_str().unwrap();
    assert!(description.contains("elsewhere.test.localhost: connection error"), "{description}");
    assert!(!description.contains("reach.test.localhost"), "the reachable host passes: {description}");
    assert!(description.contains("DNS record"), "{description}");
    // That route gone, the check passes again (the reachable host checked in the same run).
    let (status, _) = api
        .call(Method::DELETE, &format!("/organizations/{org}/routes/{}", created["id"].as_str().unwrap()), None)
        .await;
    assert!(status.is_success(), "{status}");
    eventually("routes.reachable passing again", || async {
        let (_, alerts) = api.call(Method::GET, &health, None).await;
        (alert_of(&alerts, "routes.reachable", "replica-a")?["status"] == "success").then_some(())
    })
    .await;

    // The cluster's wildcard certificate, issued by the console's own CA: a route under the
    // cluster's domain is served over TLS with it (no key pair added), and a client that trusts
    // only the CA the console publishes (`ca.pem`, no credentials) verifies it.
    let fqdn = cluster["fqdn"].as_str().unwrap().to_owned();
    let ca_pem = api.text(&format!("/organizations/{org}/ca.pem")).await;
    let ca = proxy::tls::certificates_from_pem(ca_pem.as_bytes()).unwrap().remove(0);
    let (status, created) = api
        .call(
            Method::POST,
            &format!("/organizations/{org}/routes"),
            Some(route(&format!("app.{}", fqdn.split('.').next().unwrap()), a.address.port())),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let host = format!("app.{fqdn}");
    assert_eq!(created["from"], format!("https://{host}:{}", a.address.port()));
    let served_with_the_ca = eventually("the route served with the cluster's certificate", || async {
        let stream = tokio::net::TcpStream::connect(a.address).await.ok()?;
        let config = support::client_tls(&ca, &[b"http/1.1"], None);
        let name = rustls_pki_types::ServerName::try_from(host.clone()).unwrap();
        let tls = tokio::time::timeout(
            support::PROMPTLY,
            tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)).connect(name, stream),
        )
        .await
        .ok()?
        .ok()?;
        let mut connection = support::H1::handshake(tls).await;
        let reply = connection.fetch(support::get(&format!("{host}:{}", a.address.port()), "/")).await;
        (reply.status == StatusCode::OK).then_some(reply)
    })
    .await;
    assert_eq!(served_with_the_ca.seen().upstream(), "app");
    let (_, alerts) = api.call(Method::GET, &health, None).await;
    let names = alerts.as_array().unwrap().iter().find(|a| a["id"] == "certificates_match_hostnames").unwrap();
    // `reach.test.localhost` is not under the cluster's domain: no certificate of the cluster's.
    assert_eq!(names["status"], "warning", "{names}");
    assert!(names["description"].as_str().unwrap().contains("reach.test.localhost"), "{names}");
    assert!(!names["description"].as_str().unwrap().contains(&host), "{names}");
    let current = alerts.as_array().unwrap().iter().find(|a| a["id"] == "certificates_current").unwrap();
    assert_eq!(current["status"], "success", "{current}");

    // "Check again": the replica runs its checks and reports them again.
    let before = a.count_logs("health checks reported");
    let (status, _) = api.call(Method::POST, &health, Some(json!({}))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    eventually("the checks run again", || async { (a.count_logs("health checks reported") > before).then_some(()) })
        .await;
    assert!(a.count_logs("the control plane asks for the health checks") >= 1, "{}", a.logs().join("\n"));
    control.stop().await;
}
