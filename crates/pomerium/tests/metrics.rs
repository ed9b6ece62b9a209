//! The metrics listener of the `pomerium` binary as configured: `metrics_basic_auth` (401
//! without the credentials), HTTPS with `metrics_certificate*`, and client certificates required
//! with `metrics_client_ca*`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "tests"
)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use http::Method;
use http_body_util::BodyExt as _;
use proxy::body;
use support::*;

fn metrics_request(authorization: Option<&str>) -> http::Request<proxy::body::ProxyBody> {
    let mut builder = request(Method::GET, "metrics.test.localhost", "/metrics");
    if let Some(value) = authorization {
        builder = builder.header("authorization", value);
    }
    builder.body(body::empty()).unwrap()
}

/// Status and body of a GET `/metrics` over TLS, presenting `leaf`; `None` when the handshake
/// or the exchange fails.
async fn tls_metrics(
    address: SocketAddr,
    ca: &rustls_pki_types::CertificateDer<'static>,
    leaf: Option<&Leaf>,
    authorization: Option<&str>,
) -> Option<(u16, String)> {
    let attempt = async {
        let stream = tokio::net::TcpStream::connect(address).await.ok()?;
        let name = rustls_pki_types::ServerName::try_from("metrics.test.localhost").ok()?;
        let config = client_tls(ca, &[b"http/1.1"], leaf);
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, stream).await.ok()?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await.ok()?;
        tokio::spawn(connection);
        let response = sender.send_request(metrics_request(authorization)).await.ok()?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.ok()?.to_bytes();
        Some((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(PROMPTLY, attempt).await.expect("the exchange finishes")
}

#[tokio::test]
async fn basic_auth_guards_metrics() {
    let setup = Setup::new();
    let credentials = base64("prometheus:s3cret");
    let config = format!("metrics_address: 127.0.0.1:0\nmetrics_basic_auth: {credentials}\n");
    let mut server = setup.start(&config).await;
    let address = server.listener("serving metrics").await;

    let reply = plain_fetch(address, metrics_request(None)).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.header("www-authenticate"), "Basic realm=\"metrics\"");
    assert!(!reply.text().contains("pomerium_"), "{}", reply.text());
    for wrong in [
        format!("Basic {}", base64("prometheus:wrong")),
        format!("Bearer {credentials}"),
        "Basic".to_owned(),
        format!("Basic {}", &credentials[..credentials.len() - 2]),
    ] {
        let reply = plain_fetch(address, metrics_request(Some(&wrong))).await;
        assert_eq!(reply.status, 401, "{wrong}");
    }
    for right in [format!("Basic {credentials}"), format!("basic {credentials}")] {
        let reply = plain_fetch(address, metrics_request(Some(&right))).await;
        assert_eq!(reply.status, 200, "{right}");
        assert!(reply.text().contains("pomerium_config_reloads_total"), "{}", reply.text());
    }
    server.assert_running();
}

#[tokio::test]
async fn metrics_over_https_with_client_certificates() {
    let setup = Setup::new();
    let leaf = setup.pki.issue(&["metrics.test.localhost"]);
    let cert = setup.write("metrics.pem", &leaf.cert_pem);
    let key = setup.write("metrics-key.pem", &leaf.key_pem);
    let client_pki = Pki::new("metrics client ca");
    let client_ca = setup.write("metrics-client-ca.pem", &client_pki.ca_pem());
    let scraper = client_pki.issue(&["prometheus"]);
    let stranger = Pki::new("someone else").issue(&["mallory"]);

    // HTTPS only: the certificate inline (base64), no client certificate asked.
    let config = format!(
        "metrics_address: 127.0.0.1:0\nmetrics_certificate: {}\nmetrics_certificate_key: {}\n",
        base64(&leaf.cert_pem),
        base64(&leaf.key_pem)
    );
    let mut server = setup.start(&config).await;
    let address = server.listener("serving metrics").await;
    let (status, text) = tls_metrics(address, &setup.pki.ca(), None, None).await.expect("served over TLS");
    assert_eq!(status, 200);
    assert!(text.contains("pomerium_config_reloads_total"), "{text}");
    let plain = tokio::time::timeout(PROMPTLY, async {
        let stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.ok()?;
        tokio::spawn(connection);
        sender.send_request(metrics_request(None)).await.ok().map(|r| r.status().as_u16())
    })
    .await
    .unwrap();
    assert_ne!(plain, Some(200), "no metrics over plain HTTP");
    drop(server);

    // Files, a client CA and basic auth together.
    let credentials = base64("prometheus:s3cret");
    let config = format!(
        "metrics_address: 127.0.0.1:0\nmetrics_certificate_file: {}\nmetrics_certificate_key_file: {}\n\
         metrics_client_ca_file: {}\nmetrics_basic_auth: {credentials}\n",
        cert.display(),
        key.display(),
        client_ca.display()
    );
    let mut server = setup.start(&config).await;
    let address = server.listener("serving metrics").await;
    let authorization = format!("Basic {credentials}");
    let ca = setup.pki.ca();
    assert_eq!(tls_metrics(address, &ca, None, Some(&authorization)).await, None, "a certificate is required");
    assert_eq!(tls_metrics(address, &ca, Some(&stranger), Some(&authorization)).await, None, "from the client CA");
    let (status, _) = tls_metrics(address, &ca, Some(&scraper), None).await.unwrap();
    assert_eq!(status, 401, "the certificate does not replace the credentials");
    let (status, text) = tls_metrics(address, &ca, Some(&scraper), Some(&authorization)).await.unwrap();
    assert_eq!(status, 200);
    assert!(text.contains("pomerium_config_reloads_total"), "{text}");
    server.assert_running();
}
