//! Seed 001's topology, as real processes: a proxy in front of two authorize service instances
//! (on `127.0.0.1:P` and `[::1]:P`, both named in `authorize_service_urls`), and a databroker.
//! Requests are spread over both; when one instance is killed under load, no request fails (a
//! Check that failed at the transport is asked again of the other); and the killed instance is
//! used again once it is back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, reason = "tests")]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine as _;
use support::{Pomerium, Setup, echo_upstream, shared_secret_base64};

/// The line the authorize service logs for each decision (`authorize_log_fields`).
const DECIDED: &str = "authorize check";

fn common(setup: &Setup, upstream: std::net::SocketAddr) -> String {
    format!(
        "shared_secret: {secret}\ncookie_secret: {secret}\n\
         authenticate_service_url: https://authenticate.test.localhost\n\
         certificate_authority: {ca}\nhealth_check_addr: 127.0.0.1:0\n\
         routes:\n  - from: https://app.test.localhost\n    to: http://{upstream}\n    allow_public_unauthenticated_access: true\n",
        secret = shared_secret_base64(),
        ca = base64::engine::general_purpose::STANDARD.encode(setup.pki.ca_pem()),
    )
}

async fn authorize_at(
    setup: &Setup,
    name: &str,
    grpc_address: &str,
    databroker_url: &str,
    common: &str,
    grpc: &str,
) -> Pomerium {
    let config = setup.write(
        &format!("{name}.yaml"),
        &format!(
            "services: authorize\ngrpc_address: \"{grpc_address}\"\ndatabroker_service_url: {databroker_url}\n{grpc}{common}"
        ),
    );
    Pomerium::spawn_until(&config, setup.pki.ca(), "serving gRPC").await
}

#[tokio::test]
async fn the_proxy_spreads_over_authorize_instances_and_fails_over() {
    let setup = Setup::new();
    let upstream = echo_upstream("app", None).await;
    let common = common(&setup, upstream.address);
    let leaf = setup.pki.issue(&["127.0.0.1", "::1"]);
    let grpc = format!(
        "certificates:\n  - cert: {}\n    key: {}\n",
        setup.write("grpc.pem", &leaf.cert_pem).display(),
        setup.write("grpc-key.pem", &leaf.key_pem).display()
    );
    let databroker = Pomerium::spawn_until(
        &setup.write("databroker.yaml", &format!("services: databroker\ngrpc_address: 127.0.0.1:0\n{grpc}{common}")),
        setup.pki.ca(),
        "serving gRPC",
    )
    .await;
    let databroker_url = format!("https://127.0.0.1:{}", databroker.address.port());
    let a = authorize_at(&setup, "authorize-a", "127.0.0.1:0", &databroker_url, &common, &grpc).await;
    let port = a.address.port();
    let v4 = format!("127.0.0.1:{port}");
    let mut b = authorize_at(&setup, "authorize-b", &format!("[::1]:{port}"), &databroker_url, &common, &grpc).await;
    let proxy = Pomerium::spawn(
        &setup.write(
            "proxy.yaml",
            &format!(
                "services: proxy\naddress: 127.0.0.1:0\n\
                 authorize_service_urls: [\"https://127.0.0.1:{port}\", \"https://[::1]:{port}\"]\n\
                 databroker_service_url: {databroker_url}\n\
                 certificates:\n  - cert: {}\n    key: {}\n{common}",
                setup.cert_path.display(),
                setup.key_path.display()
            ),
        ),
        setup.pki.ca(),
    )
    .await;
    let proxy = Arc::new(proxy);
    let host = proxy.host("app");

    // Both instances decide (their log lines are read as they come).
    for _ in 0..10 {
        assert_eq!(proxy.get(&host, "/").await.status, 200);
    }
    support::eventually("both instances to have decided", || async {
        (a.count_logs(DECIDED) >= 3 && b.count_logs(DECIDED) >= 3).then_some(())
    })
    .await;

    // Steady load from four clients; one instance is killed midway. No request fails.
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (proxy, host, stop) = (Arc::clone(&proxy), host.clone(), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    statuses.push(proxy.get(&host, "/").await.status.as_u16());
                }
                statuses
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before_kill = b.count_logs(DECIDED);
    drop(a);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for client in clients {
        let statuses = client.await.unwrap();
        total += statuses.len();
        assert!(statuses.iter().all(|s| *s == 200), "every request succeeded: {statuses:?}");
    }
    assert!(total >= 20, "the load was steady: {total} requests");
    support::eventually("the other instance to take over", || async {
        (b.count_logs(DECIDED) > before_kill).then_some(())
    })
    .await;

    // The killed instance comes back on its address, and is used again.
    let a = authorize_at(&setup, "authorize-a", &v4, &databroker_url, &common, &grpc).await;
    support::eventually("the restarted instance to decide again", || async {
        assert_eq!(proxy.get(&host, "/").await.status, 200);
        (a.count_logs(DECIDED) > 0).then_some(())
    })
    .await;
    b.assert_running();
}
