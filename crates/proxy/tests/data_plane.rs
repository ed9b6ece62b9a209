//! The data plane end to end, with real parts: hyper upstreams (plain and TLS with test
//! certificates), the proxy's pieces wired in a minimal handler, and real clients over TLS.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, reason = "tests")]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, HOST, LOCATION, UPGRADE};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::BodyExt as _;
use hyper::body::{Frame, Incoming};
use proxy::body::{self, ProxyBody};
use proxy::error::INTERCEPTED_RESPONSE_HEADER;
use proxy::server::{ConnectionInfo, ServerOptions};
use proxy::tls::{ClientCertMode, DownstreamClientAuth, ServerTls, SniResolver, certificate_names, certified_key};
use proxy::upstream::{ClientOptions, RequestTimeouts, UpstreamClient, UpstreamClients, UpstreamTls};
use support::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{mpsc, oneshot};

fn proxy_tls(pki: &Pki, names: &[&[&str]], client_auth: Option<&DownstreamClientAuth>) -> ServerTls {
    let keys: Vec<_> = names
        .iter()
        .map(|names| {
            let (chain, key) = pki.issue(names);
            certified_key(chain, key).unwrap()
        })
        .collect();
    ServerTls::new(Arc::new(SniResolver::new(&keys).unwrap()), client_auth).unwrap()
}

fn plain_client() -> UpstreamClient {
    UpstreamClient::new(&UpstreamTls::default(), &ClientOptions::default()).unwrap()
}

async fn hello_upstream() -> std::net::SocketAddr {
    spawn_upstream(None, |request: Request<Incoming>| async move {
        let host = request.headers().get(HOST).map(|h| h.to_str().unwrap().to_owned()).unwrap_or_default();
        let xff = request.headers().get("x-forwarded-for").map(|h| h.to_str().unwrap().to_owned()).unwrap_or_default();
        Response::new(body::full(format!("hello from upstream; host={host}; path={}; xff={xff}", request.uri())))
    })
    .await
}

#[tokio::test]
async fn sni_selects_exact_wildcard_and_default_certificates() {
    let pki = Pki::new("proxy ca");
    let tls = proxy_tls(&pki, &[&["default.test"], &["exact.test"], &["*.wild.test"]], None);
    let handler = |_: Request<Incoming>, _: Arc<ConnectionInfo>| async { Response::new(body::empty()) };
    let proxy = spawn_proxy(Some(tls), handler, ServerOptions::default()).await;
    for (sni, expected) in
        [("exact.test", "exact.test"), ("a.wild.test", "*.wild.test"), ("unknown.test", "default.test")]
    {
        let stream = tls_connect(proxy.address, accept_any_server(&[b"http/1.1"]), sni).await;
        let served = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
        assert_eq!(certificate_names(&served).unwrap(), [expected], "SNI {sni}");
    }
}

#[tokio::test]
async fn alpn_chooses_http2_or_http11() {
    let pki = Pki::new("proxy ca");
    let tls = proxy_tls(&pki, &[&["proxy.test"]], None);
    let handler = |request: Request<Incoming>, connection: Arc<ConnectionInfo>| async move {
        let tls = connection.tls.as_ref().unwrap();
        let alpn = String::from_utf8(tls.alpn.clone().unwrap()).unwrap();
        let sni = tls.server_name.clone().unwrap();
        Response::new(body::full(format!("{:?} {alpn} {sni}", request.version())))
    };
    let proxy = spawn_proxy(Some(tls), handler, ServerOptions::default()).await;
    let url = format!("https://127.0.0.1:{}/", proxy.address.port());
    for (alpn, version, expected) in [
        (&b"h2"[..], Version::HTTP_2, "HTTP/2.0 h2 proxy.test"),
        (&b"http/1.1"[..], Version::HTTP_11, "HTTP/1.1 http/1.1 proxy.test"),
    ] {
        let client = https_client(client_tls(&pki.ca(), &[alpn], None), "proxy.test");
        let response = client.request(get(&url, "proxy.test")).await.unwrap();
        assert_eq!(response.version(), version);
        assert_eq!(text(response).await, expected);
    }
}

#[tokio::test]
async fn requests_are_forwarded_with_forwarding_headers_and_normalized_paths() {
    let pki = Pki::new("proxy ca");
    let upstream = hello_upstream().await;
    let route = Route::new(&format!("http://{upstream}"), plain_client());
    let proxy =
        spawn_proxy(Some(proxy_tls(&pki, &[&["app.test"]], None)), forwarding_handler(route), ServerOptions::default())
            .await;
    let client = https_client(client_tls(&pki.ca(), &[b"h2"], None), "app.test");
    let url = format!("https://127.0.0.1:{}/a/%2e%2e/admin?x=1", proxy.address.port());
    let response = client.request(get(&url, "app.test")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(text(response).await, format!("hello from upstream; host={upstream}; path=/admin?x=1; xff=127.0.0.1"));

    let rejected = format!("https://127.0.0.1:{}/a%2Fb", proxy.address.port());
    let response = client.request(get(&rejected, "app.test")).await.unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()[INTERCEPTED_RESPONSE_HEADER], "true");
}

/// A TLS upstream with a certificate for `upstream.test` from its own CA.
async fn tls_upstream(pki: &Pki, client_ca: Option<rustls_pki_types::CertificateDer<'static>>) -> std::net::SocketAddr {
    let (chain, key) = pki.issue(&["upstream.test"]);
    spawn_upstream(Some(upstream_tls(chain, key, client_ca)), |request: Request<Incoming>| async move {
        Response::new(body::full(format!("tls upstream saw {:?}", request.version())))
    })
    .await
}

async fn through_proxy(upstream_url: String, upstream_client: UpstreamClient) -> (StatusCode, String, Option<String>) {
    let pki = Pki::new("proxy ca");
    let route = Route::new(&upstream_url, upstream_client);
    let proxy =
        spawn_proxy(Some(proxy_tls(&pki, &[&["app.test"]], None)), forwarding_handler(route), ServerOptions::default())
            .await;
    let client = https_client(client_tls(&pki.ca(), &[b"http/1.1"], None), "app.test");
    let response =
        client.request(get(&format!("https://127.0.0.1:{}/", proxy.address.port()), "app.test")).await.unwrap();
    let intercepted = response.headers().get(INTERCEPTED_RESPONSE_HEADER).map(|v| v.to_str().unwrap().to_owned());
    (response.status(), text(response).await, intercepted)
}

#[tokio::test]
async fn upstream_tls_is_verified_by_default() {
    let upstream_pki = Pki::new("upstream ca");
    let upstream = tls_upstream(&upstream_pki, None).await;
    let verifying = UpstreamClient::new(
        &UpstreamTls { server_name: Some("upstream.test".into()), ..Default::default() },
        &ClientOptions::default(),
    )
    .unwrap();
    let (status, body, intercepted) = through_proxy(format!("https://{upstream}"), verifying).await;
    assert_eq!(status, 502, "an unknown CA is an upstream failure");
    assert_eq!(intercepted.as_deref(), Some("true"));
    assert!(body.contains("502 Bad Gateway"), "{body}");
}

#[tokio::test]
async fn skip_verify_accepts_any_upstream_certificate() {
    let upstream = tls_upstream(&Pki::new("upstream ca"), None).await;
    let client =
        UpstreamClient::new(&UpstreamTls { skip_verify: true, ..Default::default() }, &ClientOptions::default())
            .unwrap();
    let (status, body, _) = through_proxy(format!("https://{upstream}"), client).await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "tls upstream saw HTTP/2.0"), "ALPN negotiates h2 upstream");
}

#[tokio::test]
async fn custom_ca_and_server_name_verify_the_upstream() {
    let upstream_pki = Pki::new("upstream ca");
    let upstream = tls_upstream(&upstream_pki, None).await;
    let with_name = UpstreamTls {
        custom_ca: Some(vec![upstream_pki.ca()]),
        server_name: Some("upstream.test".into()),
        ..Default::default()
    };
    let client = UpstreamClient::new(&with_name, &ClientOptions::default()).unwrap();
    let (status, _, _) = through_proxy(format!("https://{upstream}"), client).await;
    assert_eq!(status, 200);

    // The URL's host (127.0.0.1) is not a name in the certificate.
    let without_name = UpstreamTls { custom_ca: Some(vec![upstream_pki.ca()]), ..Default::default() };
    let client = UpstreamClient::new(&without_name, &ClientOptions::default()).unwrap();
    let (status, _, _) = through_proxy(format!("https://{upstream}"), client).await;
    assert_eq!(status, 502);
}

#[tokio::test]
async fn client_certificates_are_presented_to_the_upstream() {
    let upstream_pki = Pki::new("upstream ca");
    let client_pki = Pki::new("client ca");
    let upstream = tls_upstream(&upstream_pki, Some(client_pki.ca())).await;
    let base = || UpstreamTls {
        custom_ca: Some(vec![upstream_pki.ca()]),
        server_name: Some("upstream.test".into()),
        ..Default::default()
    };
    let clients = UpstreamClients::new(ClientOptions::default());

    let anonymous = clients.client(&base()).unwrap();
    let (status, _, _) = through_proxy(format!("https://{upstream}"), anonymous).await;
    assert_eq!(status, 502, "the upstream requires a client certificate");

    let with_cert = UpstreamTls { client_auth: Some(client_pki.issue(&["proxy-client"])), ..base() };
    let client = clients.client(&with_cert).unwrap();
    let (status, _, _) = through_proxy(format!("https://{upstream}"), client).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn downstream_client_certificates_are_reported_to_the_handler() {
    let pki = Pki::new("proxy ca");
    let client_pki = Pki::new("client ca");
    let auth = DownstreamClientAuth::new(vec![client_pki.ca()], ClientCertMode::Report);
    let tls = proxy_tls(&pki, &[&["app.test"]], Some(&auth));
    let handler = |_: Request<Incoming>, connection: Arc<ConnectionInfo>| async move {
        let report = match &connection.tls.as_ref().unwrap().client_certificate {
            Some(certificate) => format!(
                "verified={} cn={:?}",
                certificate.verified,
                certificate_names(certificate.leaf().unwrap()).unwrap()
            ),
            None => "none".to_owned(),
        };
        Response::new(body::full(report))
    };
    let proxy = spawn_proxy(Some(tls), handler, ServerOptions::default()).await;
    let url = format!("https://127.0.0.1:{}/", proxy.address.port());
    let untrusted = Pki::new("someone else");
    for (certificate, expected) in [
        (Some(client_pki.issue(&["alice.test"])), r#"verified=true cn=["alice.test"]"#),
        (Some(untrusted.issue(&["mallory.test"])), r#"verified=false cn=["mallory.test"]"#),
        (None, "none"),
    ] {
        let client = https_client(client_tls(&pki.ca(), &[b"h2"], certificate), "app.test");
        let response = client.request(get(&url, "app.test")).await.unwrap();
        assert_eq!(text(response).await, expected);
    }
}

/// An upstream that accepts websocket upgrades and echoes bytes; says so when there is none.
async fn websocket_upstream() -> std::net::SocketAddr {
    spawn_upstream(None, |mut request: Request<Incoming>| async move {
        if request.headers().get(UPGRADE).is_none() {
            return Response::new(body::full("no upgrade"));
        }
        let upgrade = hyper::upgrade::on(&mut request);
        tokio::spawn(async move {
            let upgraded = upgrade.await.unwrap();
            let (mut reader, mut writer) = tokio::io::split(hyper_util::rt::TokioIo::new(upgraded));
            let _ = tokio::io::copy(&mut reader, &mut writer).await;
        });
        Response::builder()
            .status(101)
            .header(UPGRADE, "websocket")
            .header(CONNECTION, "Upgrade")
            .body(body::empty())
            .unwrap()
    })
    .await
}

fn upgrade_request() -> Request<ProxyBody> {
    Request::builder()
        .uri("/ws")
        .header(HOST, "app.test")
        .header(CONNECTION, "Upgrade")
        .header(UPGRADE, "websocket")
        .body(body::empty())
        .unwrap()
}

#[tokio::test]
async fn websocket_upgrades_pass_only_when_allowed() {
    let pki = Pki::new("proxy ca");
    let upstream = websocket_upstream().await;
    let mut route = Route::new(&format!("http://{upstream}"), plain_client());
    route.allowed_upgrades = vec!["websocket".to_owned()];
    let proxy = spawn_proxy(
        Some(proxy_tls(&pki, &[&["app.test"]], None)),
        forwarding_handler(route.clone()),
        ServerOptions::default(),
    )
    .await;

    let stream = tls_connect(proxy.address, client_tls(&pki.ca(), &[b"http/1.1"], None), "app.test").await;
    let mut sender = http1(stream).await;
    let response = sender.send_request(upgrade_request()).await.unwrap();
    assert_eq!(response.status(), 101);
    let mut upgraded = hyper_util::rt::TokioIo::new(hyper::upgrade::on(response).await.unwrap());
    upgraded.write_all(b"ping over websocket").await.unwrap();
    let mut echoed = [0u8; 19];
    tokio::time::timeout(PROMPTLY, upgraded.read_exact(&mut echoed)).await.unwrap().unwrap();
    assert_eq!(&echoed, b"ping over websocket");

    route.allowed_upgrades.clear();
    let strict =
        spawn_proxy(Some(proxy_tls(&pki, &[&["app.test"]], None)), forwarding_handler(route), ServerOptions::default())
            .await;
    let stream = tls_connect(strict.address, client_tls(&pki.ca(), &[b"http/1.1"], None), "app.test").await;
    let mut sender = http1(stream).await;
    let response = sender.send_request(upgrade_request()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(text(response).await, "no upgrade", "the Upgrade header is stripped");
}

#[tokio::test]
async fn connect_tunnels_reach_a_tcp_upstream() {
    let pki = Pki::new("proxy ca");
    let echo = spawn_echo().await;
    let mut route = Route::new("http://unused.invalid", plain_client());
    route.tcp_target = Some(echo.to_string());
    let proxy =
        spawn_proxy(Some(proxy_tls(&pki, &[&["app.test"]], None)), forwarding_handler(route), ServerOptions::default())
            .await;

    let stream = tls_connect(proxy.address, client_tls(&pki.ca(), &[b"http/1.1"], None), "app.test").await;
    let mut sender = http1(stream).await;
    let connect = Request::builder()
        .method(Method::CONNECT)
        .uri("db.test:5432")
        .header(HOST, "db.test:5432")
        .body(body::empty())
        .unwrap();
    let response = sender.send_request(connect).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut tunnel = hyper_util::rt::TokioIo::new(hyper::upgrade::on(response).await.unwrap());
    for message in [&b"SELECT 1;"[..], b"SELECT 2;"] {
        tunnel.write_all(message).await.unwrap();
        let mut echoed = vec![0u8; message.len()];
        tokio::time::timeout(PROMPTLY, tunnel.read_exact(&mut echoed)).await.unwrap().unwrap();
        assert_eq!(echoed, message);
    }
}

#[tokio::test]
async fn response_bodies_stream_without_buffering() {
    let pki = Pki::new("proxy ca");
    let (release, released) = oneshot::channel::<()>();
    let released = Arc::new(Mutex::new(Some(released)));
    let upstream = spawn_upstream(None, move |_: Request<Incoming>| {
        let released = released.lock().unwrap().take();
        async move {
            let (mut sender, channel) = http_body_util::channel::Channel::<Bytes, proxy::BoxError>::new(1);
            tokio::spawn(async move {
                sender.send_data(Bytes::from_static(b"first chunk")).await.unwrap();
                if let Some(released) = released {
                    released.await.unwrap();
                }
                sender.send_data(Bytes::from_static(b"; the rest")).await.unwrap();
            });
            Response::new(channel.boxed_unsync())
        }
    })
    .await;
    let route = Route::new(&format!("http://{upstream}"), plain_client());
    let proxy =
        spawn_proxy(Some(proxy_tls(&pki, &[&["app.test"]], None)), forwarding_handler(route), ServerOptions::default())
            .await;
    let client = https_client(client_tls(&pki.ca(), &[b"h2"], None), "app.test");
    let response =
        client.request(get(&format!("https://127.0.0.1:{}/stream", proxy.address.port()), "app.test")).await.unwrap();
    let mut body = response.into_body();
    let first = tokio::time::timeout(PROMPTLY, body.frame())
        .await
        .expect("the first chunk arrives while the upstream is still sending");
    assert_eq!(first.unwrap().unwrap().into_data().unwrap(), "first chunk");
    release.send(()).unwrap();
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(rest, "; the rest");
}

#[tokio::test]
async fn request_bodies_stream_without_buffering() {
    let pki = Pki::new("proxy ca");
    let (got_first, mut first_seen) = mpsc::channel::<Bytes>(1);
    let upstream = spawn_upstream(None, move |request: Request<Incoming>| {
        let got_first = got_first.clone();
        async move {
            let mut body = request.into_body();
            let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
            got_first.send(first.clone()).await.unwrap();
            let rest = body.collect().await.unwrap().to_bytes();
            Response::new(body::full([first, rest].concat()))
        }
    })
    .await;
    let route = Route::new(&format!("http://{upstream}"), plain_client());
    let proxy =
        spawn_proxy(Some(proxy_tls(&pki, &[&["app.test"]], None)), forwarding_handler(route), ServerOptions::default())
            .await;
    let client = https_client(client_tls(&pki.ca(), &[b"h2"], None), "app.test");
    let (mut sender, channel) = http_body_util::channel::Channel::<Bytes, proxy::BoxError>::new(1);
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("https://127.0.0.1:{}/upload", proxy.address.port()))
        .header(HOST, "app.test")
        .body(channel.boxed_unsync())
        .unwrap();
    let response = tokio::spawn(client.request(request));
    sender.send(Frame::data(Bytes::from_static(b"part one,"))).await.unwrap();
    let seen = tokio::time::timeout(PROMPTLY, first_seen.recv())
        .await
        .expect("the upstream reads the first part before the client sends the second");
    assert_eq!(seen.unwrap(), "part one,");
    sender.send_data(Bytes::from_static(b" part two")).await.unwrap();
    drop(sender);
    let response = response.await.unwrap().unwrap();
    assert_eq!(text(response).await, "part one, part two");
}

#[tokio::test]
async fn slow_upstreams_time_out_with_504() {
    let pki = Pki::new("proxy ca");
    let upstream = spawn_upstream(None, |_: Request<Incoming>| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Response::new(body::empty())
    })
    .await;
    let mut route = Route::new(&format!("http://{upstream}"), plain_client());
    route.timeouts = RequestTimeouts { total: Some(Duration::from_millis(200)), idle: None };
    let proxy =
        spawn_proxy(Some(proxy_tls(&pki, &[&["app.test"]], None)), forwarding_handler(route), ServerOptions::default())
            .await;
    let client = https_client(client_tls(&pki.ca(), &[b"h2"], None), "app.test");
    let request = Request::builder()
        .uri(format!("https://127.0.0.1:{}/", proxy.address.port()))
        .header(HOST, "app.test")
        .header("accept", "application/json")
        .body(body::empty())
        .unwrap();
    let response = tokio::time::timeout(PROMPTLY, client.request(request)).await.unwrap().unwrap();
    assert_eq!(response.status(), 504);
    let json: serde_json::Value = serde_json::from_str(&text(response).await).unwrap();
    assert_eq!(json["error"], "Gateway Timeout");
    assert_eq!(json["request_id"].as_str().unwrap().len(), 36);
}

#[tokio::test]
async fn refused_connections_are_502() {
    let pki = Pki::new("proxy ca");
    let route = Route::new(&format!("http://{}", closed_port()), plain_client());
    let proxy =
        spawn_proxy(Some(proxy_tls(&pki, &[&["app.test"]], None)), forwarding_handler(route), ServerOptions::default())
            .await;
    let client = https_client(client_tls(&pki.ca(), &[b"http/1.1"], None), "app.test");
    let response =
        client.request(get(&format!("https://127.0.0.1:{}/", proxy.address.port()), "app.test")).await.unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(response.headers()[INTERCEPTED_RESPONSE_HEADER], "true");
}

#[tokio::test]
async fn upstream_failures_are_classified_by_cause() {
    let send = |client: UpstreamClient, url: String, total: Option<Duration>| async move {
        let request = Request::builder().uri(url).body(body::empty()).unwrap();
        client.send(request, RequestTimeouts { total, idle: None }).await.unwrap_err()
    };
    let upstream_pki = Pki::new("upstream ca");
    let tls = tls_upstream(&upstream_pki, None).await;
    let verifying = UpstreamClient::new(
        &UpstreamTls { server_name: Some("upstream.test".into()), ..Default::default() },
        &ClientOptions::default(),
    )
    .unwrap();
    let error = send(verifying, format!("https://{tls}/"), None).await;
    assert_eq!(
        (error.origin(), error.kind(), error.status().as_u16()),
        (proxy::Source::Upstream, proxy::ErrorKind::Tls, 502),
        "{error}"
    );

    let error = send(plain_client(), format!("http://{}/", closed_port()), None).await;
    assert_eq!((error.kind(), error.status().as_u16()), (proxy::ErrorKind::ConnectRefused, 502), "{error}");
    assert!(error.is_retryable());

    let silent = spawn_upstream(None, |_: Request<Incoming>| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Response::new(body::empty())
    })
    .await;
    let error = send(plain_client(), format!("http://{silent}/"), Some(Duration::from_millis(100))).await;
    assert_eq!((error.kind(), error.status().as_u16()), (proxy::ErrorKind::Timeout, 504), "{error}");
    assert!(!error.is_retryable());

    let garbage = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let garbage_address = garbage.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = garbage.accept().await {
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request).await;
            let _ = stream.write_all(b"NOT HTTP AT ALL\r\n\r\n").await;
        }
    });
    let error = send(plain_client(), format!("http://{garbage_address}/"), None).await;
    assert_eq!((error.kind(), error.status().as_u16()), (proxy::ErrorKind::Protocol, 502), "{error}");
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let pki = Pki::new("proxy ca");
    let (started, mut request_started) = mpsc::channel::<()>(1);
    let handler = move |_: Request<Incoming>, _: Arc<ConnectionInfo>| {
        let started = started.clone();
        async move {
            started.send(()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            Response::new(body::full("finished after shutdown began"))
        }
    };
    let proxy = spawn_proxy(Some(proxy_tls(&pki, &[&["app.test"]], None)), handler, ServerOptions::default()).await;
    let client = https_client(client_tls(&pki.ca(), &[b"http/1.1"], None), "app.test");
    let url = format!("https://127.0.0.1:{}/", proxy.address.port());
    let in_flight = tokio::spawn(client.request(get(&url, "app.test")));
    tokio::time::timeout(PROMPTLY, request_started.recv()).await.unwrap();
    proxy.shutdown.trigger();
    let response = tokio::time::timeout(PROMPTLY, in_flight).await.unwrap().unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(text(response).await, "finished after shutdown began");
    tokio::time::timeout(PROMPTLY, proxy.task).await.expect("serve returns once drained").unwrap();
    assert!(tokio::net::TcpStream::connect(proxy.address).await.is_err(), "no longer accepting");
}

#[tokio::test]
async fn shutdown_grace_bounds_stuck_requests() {
    let (started, mut request_started) = mpsc::channel::<()>(1);
    let handler = move |_: Request<Incoming>, _: Arc<ConnectionInfo>| {
        let started = started.clone();
        async move {
            started.send(()).await.unwrap();
            tokio::time::sleep(Duration::from_secs(60)).await;
            Response::new(body::empty())
        }
    };
    let options = ServerOptions { shutdown_grace: Duration::from_millis(100), ..ServerOptions::default() };
    let proxy = spawn_proxy(None, handler, options).await;
    let stuck = tokio::spawn(http_client().request(get(&format!("http://{}/", proxy.address), "app.test")));
    tokio::time::timeout(PROMPTLY, request_started.recv()).await.unwrap();
    proxy.shutdown.trigger();
    tokio::time::timeout(PROMPTLY, proxy.task).await.expect("serve gives up after the grace period").unwrap();
    assert!(tokio::time::timeout(PROMPTLY, stuck).await.unwrap().unwrap().is_err(), "the stuck request is cut");
}

#[tokio::test]
async fn http_is_redirected_to_https() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let shutdown = proxy::server::Shutdown::new();
    tokio::spawn(proxy::server::serve_https_redirect(listener, 8443, ServerOptions::default(), shutdown.signal()));
    let client = http_client();
    let response = client.request(get(&format!("http://{address}/path?q=1"), "app.test")).await.unwrap();
    assert_eq!(response.status(), 301);
    assert_eq!(response.headers()[LOCATION], "https://app.test:8443/path?q=1");
    let response = client.request(get(&format!("http://{address}/"), "evil.test@app.test")).await.unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn oversized_headers_are_refused_without_harm() {
    let handler = |_: Request<Incoming>, _: Arc<ConnectionInfo>| async { Response::new(body::full("ok")) };
    let proxy = spawn_proxy(None, handler, ServerOptions::default()).await;
    let mut stream = tokio::net::TcpStream::connect(proxy.address).await.unwrap();
    let big = "a".repeat(200 * 1024);
    stream.write_all(format!("GET / HTTP/1.1\r\nhost: a\r\nx-big: {big}\r\n\r\n").as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(PROMPTLY, stream.read_to_end(&mut response)).await;
    assert!(
        response.starts_with(b"HTTP/1.1 431"),
        "{:?}",
        String::from_utf8_lossy(&response[..response.len().min(80)])
    );

    let mut stream = tokio::net::TcpStream::connect(proxy.address).await.unwrap();
    stream.write_all(b"\x16\x03\x01garbage\r\n\r\n").await.unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(PROMPTLY, stream.read_to_end(&mut response)).await;
    let ok = http_client().request(get(&format!("http://{}/", proxy.address), "a")).await.unwrap();
    assert_eq!(text(ok).await, "ok", "the server still serves after hostile input");
}

/// `max_connections`: past the bound, a new connection is closed as soon as it is accepted (no
/// handshake, no request), and connections are served again once some have ended.
#[tokio::test]
async fn connections_past_the_bound_are_closed_until_some_end() {
    let handler = |_: Request<Incoming>, _: Arc<ConnectionInfo>| async { Response::new(body::full("ok")) };
    let options = ServerOptions { max_connections: 2, ..ServerOptions::default() };
    let proxy = spawn_proxy(None, handler, options).await;
    let mut first = tokio::net::TcpStream::connect(proxy.address).await.unwrap();
    let mut second = tokio::net::TcpStream::connect(proxy.address).await.unwrap();
    assert!(exchange(&mut first).await.starts_with("HTTP/1.1 200"));
    assert!(exchange(&mut second).await.starts_with("HTTP/1.1 200"));
    let mut third = tokio::net::TcpStream::connect(proxy.address).await.unwrap();
    assert_eq!(exchange(&mut third).await, "", "closed without an answer");
    drop(first);
    let mut fourth = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut connection = tokio::net::TcpStream::connect(proxy.address).await.unwrap();
        if exchange(&mut connection).await.starts_with("HTTP/1.1 200") {
            fourth = Some(connection);
            break;
        }
    }
    assert!(fourth.is_some(), "a connection is served once another has ended");
    assert!(exchange(&mut second).await.starts_with("HTTP/1.1 200"), "the held one still works");
}

/// A GET on a held connection: the start of the answer, or "" when the server closed it.
async fn exchange(connection: &mut tokio::net::TcpStream) -> String {
    // A closed connection may refuse the write: then the read says so.
    let _ = connection.write_all(b"GET / HTTP/1.1\r\nHost: proxy.test\r\n\r\n").await;
    let mut answer = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(5), connection.read(&mut answer)).await.unwrap();
    String::from_utf8_lossy(&answer[..read.unwrap_or(0)]).into_owned()
}
