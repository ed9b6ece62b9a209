//! The data plane end to end, with real parts: the proxy's pipeline (`proxy::pipeline::handle`)
//! on a runtime built from a configuration text, served by `proxy::server` over TLS, hyper
//! upstreams (plain and TLS with test certificates), and real clients. What the server does
//! whatever the handler (SNI, ALPN, client certificates, limits, shutdown) is checked with small
//! handlers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, reason = "tests")]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, HOST, LOCATION, UPGRADE};
use http::{Method, Request, Response, Version};
use http_body_util::BodyExt as _;
use hyper::body::{Frame, Incoming};
use proxy::body;
use proxy::error::INTERCEPTED_RESPONSE_HEADER;
use proxy::server::{ConnectionInfo, ServerOptions};
use proxy::tls::{ClientCertMode, DownstreamClientAuth, certificate_names};
use proxy::upstream::{ClientOptions, RequestTimeouts, UpstreamClient, UpstreamTls};
use support::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{mpsc, oneshot};

fn plain_client() -> UpstreamClient {
    UpstreamClient::new(&UpstreamTls::default(), &ClientOptions::default()).unwrap()
}

/// The pipeline serving `routes` over TLS for `app.test` (and `db.test`), and its CA.
async fn pipeline(routes: &[String]) -> (RunningProxy, Pki) {
    pipeline_with(routes, ServerOptions::default()).await
}

async fn pipeline_with(routes: &[String], options: ServerOptions) -> (RunningProxy, Pki) {
    let pki = Pki::new("proxy ca");
    let tls = proxy_tls(&pki, &[&["app.test", "db.test"]], None);
    (serve(&config(routes), Some(tls), options).await, pki)
}

#[tokio::test]
async fn sni_selects_exact_wildcard_and_default_certificates() {
    let pki = Pki::new("proxy ca");
    let tls = proxy_tls(&pki, &[&["default.test"], &["exact.test"], &["*.wild.test"]], None);
    let proxy = serve(&config(&[]), Some(tls), ServerOptions::default()).await;
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
    let proxy = spawn_server(Some(tls), handler, ServerOptions::default()).await;
    let reply = h2(&proxy, &pki, "proxy.test").await.fetch(get("proxy.test", "/")).await;
    assert_eq!((reply.version, reply.text().as_str()), (Version::HTTP_2, "HTTP/2.0 h2 proxy.test"));
    let reply = h1(&proxy, &pki, "proxy.test").await.fetch(get("proxy.test", "/")).await;
    assert_eq!((reply.version, reply.text().as_str()), (Version::HTTP_11, "HTTP/1.1 http/1.1 proxy.test"));
}

#[tokio::test]
async fn requests_are_forwarded_with_forwarding_headers_and_normalized_paths() {
    let upstream = echo_upstream("app", None).await;
    let (proxy, pki) = pipeline(&[public_route("app.test", &upstream.http(), "")]).await;
    let mut client = h2(&proxy, &pki, "app.test").await;
    let seen = client.fetch(get("app.test", "/a/%2e%2e/admin?x=1")).await.seen();
    assert_eq!(seen.target(), "/admin?x=1", "dot segments are removed before routing and forwarding");
    assert_eq!(seen.header("host").as_deref(), Some(upstream.address.to_string().as_str()), "the upstream's host");
    assert_eq!(seen.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("https"));
    assert_eq!(seen.header("x-forwarded-host").as_deref(), Some("app.test"), "the client's host, rewritten away");

    let reply = client.fetch(get("app.test", "/a%2Fb")).await;
    assert_eq!(reply.status, 400, "an encoded slash is refused: {reply:?}");
    assert_eq!(reply.header(INTERCEPTED_RESPONSE_HEADER), "true");
    assert_eq!(upstream.requests(), 1, "the refused request never reached the upstream");
}

/// A TLS upstream with a certificate for `upstream.test` from `pki`.
async fn tls_upstream(pki: &Pki, client_ca: Option<rustls_pki_types::CertificateDer<'static>>) -> Upstream {
    let leaf = pki.issue(&["upstream.test"]);
    spawn_upstream(Some(upstream_tls(&leaf, client_ca)), |request: Request<Incoming>| async move {
        Response::new(body::full(format!("tls upstream saw {:?}", request.version())))
    })
    .await
}

/// GET `/` through the pipeline on a route to `to` with `fields`.
async fn through_proxy(to: &str, fields: &str) -> Reply {
    let (proxy, pki) = pipeline(&[public_route("app.test", to, fields)]).await;
    h1(&proxy, &pki, "app.test").await.fetch(get("app.test", "/")).await
}

#[tokio::test]
async fn upstream_tls_is_verified_by_default() {
    let upstream = tls_upstream(&Pki::new("upstream ca"), None).await;
    let reply = through_proxy(&upstream.https(), "tls_server_name: upstream.test").await;
    assert_eq!(reply.status, 502, "an unknown CA is an upstream failure");
    assert_eq!(reply.header(INTERCEPTED_RESPONSE_HEADER), "true");
    assert!(reply.text().contains("502 Bad Gateway"), "{}", reply.text());
}

#[tokio::test]
async fn skip_verify_accepts_any_upstream_certificate() {
    let upstream = tls_upstream(&Pki::new("upstream ca"), None).await;
    let reply = through_proxy(&upstream.https(), "tls_skip_verify: true").await;
    assert_eq!((reply.status.as_u16(), reply.text().as_str()), (200, "tls upstream saw HTTP/2.0"), "ALPN: h2 upstream");
}

#[tokio::test]
async fn custom_ca_and_server_name_verify_the_upstream() {
    let upstream_pki = Pki::new("upstream ca");
    let upstream = tls_upstream(&upstream_pki, None).await;
    let ca = base64(upstream_pki.ca_pem().as_bytes());
    let reply = through_proxy(&upstream.https(), &format!("tls_custom_ca: {ca}\ntls_server_name: upstream.test")).await;
    assert_eq!(reply.status, 200, "{reply:?}");

    // The URL's host (127.0.0.1) is not a name in the certificate.
    let reply = through_proxy(&upstream.https(), &format!("tls_custom_ca: {ca}")).await;
    assert_eq!(reply.status, 502);
}

#[tokio::test]
async fn client_certificates_are_presented_to_the_upstream() {
    let upstream_pki = Pki::new("upstream ca");
    let client_pki = Pki::new("client ca");
    let upstream = tls_upstream(&upstream_pki, Some(client_pki.ca())).await;
    let base = format!("tls_custom_ca: {}\ntls_server_name: upstream.test", base64(upstream_pki.ca_pem().as_bytes()));

    let reply = through_proxy(&upstream.https(), &base).await;
    assert_eq!(reply.status, 502, "the upstream requires a client certificate");

    let client = client_pki.issue(&["proxy-client"]);
    let (cert, key) = (base64(client.cert_pem.as_bytes()), base64(client.key_pem.as_bytes()));
    let reply =
        through_proxy(&upstream.https(), &format!("{base}\ntls_client_cert: {cert}\ntls_client_key: {key}")).await;
    assert_eq!(reply.status, 200, "{reply:?}");
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
    let proxy = spawn_server(Some(tls), handler, ServerOptions::default()).await;
    let untrusted = Pki::new("someone else");
    for (certificate, expected) in [
        (Some(client_pki.issue(&["alice.test"])), r#"verified=true cn=["alice.test"]"#),
        (Some(untrusted.issue(&["mallory.test"])), r#"verified=false cn=["mallory.test"]"#),
        (None, "none"),
    ] {
        let config = client_tls(&pki.ca(), &[b"h2"], certificate.as_ref());
        let mut client = H2::handshake(tls_connect(proxy.address, config, "app.test").await).await;
        assert_eq!(client.fetch(get("app.test", "/")).await.text(), expected);
    }
}

fn upgrade_request() -> Request<Body> {
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
    let upstream = websocket_upstream().await;
    let (proxy, pki) = pipeline(&[public_route("app.test", &upstream.http(), "allow_websockets: true")]).await;
    let response = h1(&proxy, &pki, "app.test").await.send(upgrade_request()).await;
    assert_eq!(response.status(), 101);
    let mut upgraded = hyper_util::rt::TokioIo::new(hyper::upgrade::on(response).await.unwrap());
    upgraded.write_all(b"ping over websocket").await.unwrap();
    let mut echoed = [0u8; 19];
    tokio::time::timeout(PROMPTLY, upgraded.read_exact(&mut echoed)).await.unwrap().unwrap();
    assert_eq!(&echoed, b"ping over websocket");

    let (strict, pki) = pipeline(&[public_route("app.test", &upstream.http(), "")]).await;
    let reply = h1(&strict, &pki, "app.test").await.fetch(upgrade_request()).await;
    assert_eq!((reply.status.as_u16(), reply.text().as_str()), (200, "no upgrade"), "the Upgrade header is stripped");
}

#[tokio::test]
async fn connect_tunnels_reach_a_tcp_upstream() {
    let echo = tcp_echo().await;
    let route = format!(
        "  - from: tcp+https://db.test:5432\n    to: tcp://{echo}\n    allow_public_unauthenticated_access: true\n"
    );
    let (proxy, pki) = pipeline(&[route]).await;
    let connect = Request::builder()
        .method(Method::CONNECT)
        .uri("db.test:5432")
        .header(HOST, "db.test:5432")
        .body(body::empty())
        .unwrap();
    let response = h1(&proxy, &pki, "db.test").await.send(connect).await;
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
    let (proxy, pki) = pipeline(&[public_route("app.test", &upstream.http(), "")]).await;
    let response = h2(&proxy, &pki, "app.test").await.send(get("app.test", "/stream")).await;
    let mut body = response.into_body();
    let first = tokio::time::timeout(PROMPTLY, body.frame())
        .await
        .expect("the first chunk arrives while the upstream is still sending");
    assert_eq!(first.unwrap().unwrap().into_data().unwrap(), "first chunk");
    release.send(()).unwrap();
    let rest = tokio::time::timeout(PROMPTLY, body.collect()).await.unwrap().unwrap().to_bytes();
    assert_eq!(rest, "; the rest");
}

#[tokio::test]
async fn request_bodies_stream_without_buffering() {
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
    let (proxy, pki) = pipeline(&[public_route("app.test", &upstream.http(), "")]).await;
    let mut client = h2(&proxy, &pki, "app.test").await;
    let (mut sender, channel) = http_body_util::channel::Channel::<Bytes, proxy::BoxError>::new(1);
    let request = request(Method::POST, "app.test", "/upload").body(channel.boxed_unsync()).unwrap();
    let response = tokio::spawn(async move { client.fetch(request).await });
    sender.send(Frame::data(Bytes::from_static(b"part one,"))).await.unwrap();
    let seen = tokio::time::timeout(PROMPTLY, first_seen.recv())
        .await
        .expect("the upstream reads the first part before the client sends the second");
    assert_eq!(seen.unwrap(), "part one,");
    sender.send_data(Bytes::from_static(b" part two")).await.unwrap();
    drop(sender);
    let reply = tokio::time::timeout(PROMPTLY, response).await.unwrap().unwrap();
    assert_eq!(reply.text(), "part one, part two");
}

/// An upstream that answers after `delay`, and says when a request has arrived.
async fn slow_upstream(delay: Duration) -> (Upstream, mpsc::Receiver<()>) {
    let (started, request_started) = mpsc::channel::<()>(4);
    let upstream = spawn_upstream(None, move |_: Request<Incoming>| {
        let started = started.clone();
        async move {
            let _ = started.send(()).await;
            tokio::time::sleep(delay).await;
            Response::new(body::full("finished after shutdown began"))
        }
    })
    .await;
    (upstream, request_started)
}

#[tokio::test]
async fn slow_upstreams_time_out_with_504() {
    let (upstream, _) = slow_upstream(Duration::from_secs(30)).await;
    let (proxy, pki) = pipeline(&[public_route("app.test", &upstream.http(), "timeout: 200ms")]).await;
    let request = request(Method::GET, "app.test", "/").header("accept", "application/json").body(body::empty());
    let reply = h2(&proxy, &pki, "app.test").await.fetch(request.unwrap()).await;
    assert_eq!(reply.status, 504);
    let json = reply.json();
    assert_eq!(json["error"], "Gateway Timeout", "{json}");
    assert_eq!(json["request_id"].as_str().unwrap().len(), 36, "{json}");
    assert_eq!(json["request_id"], reply.header("x-request-id"), "the id the response carries");
}

#[tokio::test]
async fn refused_connections_are_502() {
    let to = format!("http://{}", closed_port());
    let reply = through_proxy(&to, "").await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.header(INTERCEPTED_RESPONSE_HEADER), "true");
}

#[tokio::test]
async fn upstream_failures_are_classified_by_cause() {
    let send = |client: UpstreamClient, url: String, total: Option<Duration>| async move {
        let request = Request::builder().uri(url).body(body::empty()).unwrap();
        client.send(request, RequestTimeouts { total, idle: None }).await.unwrap_err()
    };
    let tls = tls_upstream(&Pki::new("upstream ca"), None).await;
    let verifying = UpstreamClient::new(
        &UpstreamTls { server_name: Some("upstream.test".into()), ..Default::default() },
        &ClientOptions::default(),
    )
    .unwrap();
    let error = send(verifying, format!("{}/", tls.https()), None).await;
    assert_eq!(
        (error.origin(), error.kind(), error.status().as_u16()),
        (proxy::Source::Upstream, proxy::ErrorKind::Tls, 502),
        "{error}"
    );

    let error = send(plain_client(), format!("http://{}/", closed_port()), None).await;
    assert_eq!((error.kind(), error.status().as_u16()), (proxy::ErrorKind::ConnectRefused, 502), "{error}");
    assert!(error.is_retryable());

    let (silent, _) = slow_upstream(Duration::from_secs(30)).await;
    let error = send(plain_client(), format!("{}/", silent.http()), Some(Duration::from_millis(100))).await;
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
    let (upstream, mut request_started) = slow_upstream(Duration::from_millis(300)).await;
    let (proxy, pki) = pipeline(&[public_route("app.test", &upstream.http(), "")]).await;
    let mut client = h1(&proxy, &pki, "app.test").await;
    let in_flight = tokio::spawn(async move { client.fetch(get("app.test", "/")).await });
    tokio::time::timeout(PROMPTLY, request_started.recv()).await.unwrap();
    proxy.shutdown.trigger();
    let reply = tokio::time::timeout(PROMPTLY, in_flight).await.unwrap().unwrap();
    assert_eq!((reply.status.as_u16(), reply.text().as_str()), (200, "finished after shutdown began"));
    tokio::time::timeout(PROMPTLY, proxy.task).await.expect("serve returns once drained").unwrap();
    assert!(tokio::net::TcpStream::connect(proxy.address).await.is_err(), "no longer accepting");
}

#[tokio::test]
async fn shutdown_grace_bounds_stuck_requests() {
    let (upstream, mut request_started) = slow_upstream(Duration::from_secs(60)).await;
    let options = ServerOptions { shutdown_grace: Duration::from_millis(100), ..ServerOptions::default() };
    let (proxy, pki) = pipeline_with(&[public_route("app.test", &upstream.http(), "timeout: 0s")], options).await;
    let stream = tls_connect(proxy.address, client_tls(&pki.ca(), &[b"http/1.1"], None), "app.test").await;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Body>(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let stuck = tokio::spawn(async move { sender.send_request(get("app.test", "/")).await });
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
    let reply = plain_get(address, "app.test", "/path?q=1").await;
    assert_eq!(reply.status, 301);
    assert_eq!(reply.headers[LOCATION], "https://app.test:8443/path?q=1");
    let reply = plain_get(address, "evil.test@app.test", "/").await;
    assert_eq!(reply.status, 400);
}

#[tokio::test]
async fn oversized_headers_are_refused_without_harm() {
    let handler = |_: Request<Incoming>, _: Arc<ConnectionInfo>| async { Response::new(body::full("ok")) };
    let proxy = spawn_server(None, handler, ServerOptions::default()).await;
    let stream = tokio::net::TcpStream::connect(proxy.address).await.unwrap();
    let big = "a".repeat(200 * 1024);
    let request = format!("GET / HTTP/1.1\r\nhost: a\r\nx-big: {big}\r\n\r\n");
    let response = raw_exchange_until_close(stream, request.as_bytes()).await;
    assert_eq!(raw_status(&response), "431", "{:?}", response.chars().take(80).collect::<String>());

    let stream = tokio::net::TcpStream::connect(proxy.address).await.unwrap();
    let _ = raw_exchange(stream, b"\x16\x03\x01garbage\r\n\r\n").await;
    let reply = plain_get(proxy.address, "a", "/").await;
    assert_eq!(reply.text(), "ok", "the server still serves after hostile input");
}

/// `max_connections`: past the bound, a new connection is closed as soon as it is accepted (no
/// handshake, no request), and connections are served again once some have ended.
#[tokio::test]
async fn connections_past_the_bound_are_closed_until_some_end() {
    let handler = |_: Request<Incoming>, _: Arc<ConnectionInfo>| async { Response::new(body::full("ok")) };
    let options = ServerOptions { max_connections: 2, ..ServerOptions::default() };
    let proxy = spawn_server(None, handler, options).await;
    let mut first = tokio::net::TcpStream::connect(proxy.address).await.unwrap();
    let mut second = tokio::net::TcpStream::connect(proxy.address).await.unwrap();
    assert!(exchange(&mut first).await.starts_with("HTTP/1.1 200"));
    assert!(exchange(&mut second).await.starts_with("HTTP/1.1 200"));
    let mut third = tokio::net::TcpStream::connect(proxy.address).await.unwrap();
    assert_eq!(exchange(&mut third).await, "", "closed without an answer");
    drop(first);
    let fourth = eventually("a connection served once another has ended", || async {
        let mut connection = tokio::net::TcpStream::connect(proxy.address).await.unwrap();
        exchange(&mut connection).await.starts_with("HTTP/1.1 200").then_some(connection)
    })
    .await;
    drop(fourth);
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
