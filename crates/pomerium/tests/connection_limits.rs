//! Timeouts as Pomerium names them (`timeout_read`, `timeout_write`, `timeout_idle`) and the
//! PROXY protocol (`use_proxy_protocol`), against the real binary over real TLS: a client that
//! holds a connection or a request open is cut off on time, and an L4 balancer's PROXY header
//! names the client the upstream and the policy see.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "tests"
)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use proxy::body;
use rustls_pki_types::ServerName;
use support::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Reads until the server closes the connection (or `limit` passes: a failure). What was read,
/// and how long it took.
async fn read_until_closed<S: tokio::io::AsyncRead + Unpin>(stream: &mut S, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut received = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server closes the connection within {limit:?}");
    (String::from_utf8_lossy(&received).into_owned(), started.elapsed())
}

/// An upstream that answers after `delay`, then streams `chunks` pieces a `gap` apart.
async fn slow_upstream(delay: Duration, chunks: usize, gap: Duration) -> Upstream {
    spawn_upstream(None, move |request: Request<Incoming>| async move {
        drop(request);
        tokio::time::sleep(delay).await;
        let (mut sender, body) = http_body_util::channel::Channel::<bytes::Bytes, proxy::BoxError>::new(1);
        tokio::spawn(async move {
            for _ in 0..chunks {
                tokio::time::sleep(gap).await;
                if sender.send_data(bytes::Bytes::from_static(b"piece\n")).await.is_err() {
                    return;
                }
            }
        });
        Response::new(http_body_util::BodyExt::boxed_unsync(body))
    })
    .await
}

#[tokio::test]
async fn a_request_that_does_not_arrive_within_timeout_read_is_cut_off() {
    let setup = Setup::new();
    let upstream = echo_upstream("u", None).await;
    let routes =
        routes(&[route("app", &format!("to: {}\nallow_public_unauthenticated_access: true", upstream.http()))]);
    let mut server = setup.start(&format!("timeout_read: 2s\n{routes}")).await;
    let host = server.host("app");

    // A body that never arrives in full: 408, and the connection is released.
    let mut stream = server.tls("app.test.localhost", server.client_tls(&[b"http/1.1"])).await;
    let head = format!("POST /upload HTTP/1.1\r\nHost: {host}\r\nContent-Length: 100\r\n\r\n0123456789");
    stream.write_all(head.as_bytes()).await.unwrap();
    let (response, took) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert_eq!(raw_status(&response), "408", "{response}");
    assert!(took >= Duration::from_millis(1500), "not before timeout_read: {took:?}");

    // Headers that never end: the connection is closed on time.
    let mut stream = server.tls("app.test.localhost", server.client_tls(&[b"http/1.1"])).await;
    stream.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\nX-Slow: 1\r\n").as_bytes()).await.unwrap();
    let (_, took) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(took >= Duration::from_millis(1500), "{took:?}");

    // A body that arrives in time goes through.
    let reply = server.fetch(request(http::Method::POST, &host, "/ok").body(body::full("hello")).unwrap()).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.seen().0["body_length"], 5);
    server.assert_running();
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_timeout_idle_but_not_a_busy_one() {
    let setup = Setup::new();
    let slow = slow_upstream(Duration::from_millis(2500), 1, Duration::ZERO).await;
    let trickle = slow_upstream(Duration::ZERO, 5, Duration::from_millis(500)).await;
    let routes = routes(&[
        route("app", &format!("to: {}\nallow_public_unauthenticated_access: true", slow.http())),
        route("trickle", &format!("to: {}\nallow_public_unauthenticated_access: true", trickle.http())),
    ]);
    let mut server = setup.start(&format!("timeout_idle: 1s\n{routes}")).await;
    let host = server.host("app");

    // A request in flight for longer than timeout_idle keeps its connection.
    let mut stream = server.tls("app.test.localhost", server.client_tls(&[b"http/1.1"])).await;
    stream.write_all(format!("GET /slow HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes()).await.unwrap();
    let started = Instant::now();
    // Then, with nothing in flight, the connection is closed about a second later.
    let (response, took) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert_eq!(raw_status(&response), "200", "{response}");
    assert!(response.ends_with("piece\n") || response.contains("piece\n"), "{response}");
    assert!(took >= Duration::from_millis(3000), "closed only after the answer and an idle second: {took:?}");
    assert!(started.elapsed() < Duration::from_secs(8));

    // A response body streaming for longer than timeout_idle is in flight too: it arrives whole.
    let mut stream = server.tls("trickle.test.localhost", server.client_tls(&[b"http/1.1"])).await;
    let head = format!("GET / HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", server.host("trickle"));
    stream.write_all(head.as_bytes()).await.unwrap();
    let (response, _) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert_eq!(response.matches("piece\n").count(), 5, "{response}");
    server.assert_running();
}

#[tokio::test]
async fn a_response_not_complete_within_timeout_write_is_cut_off() {
    let setup = Setup::new();
    let late = slow_upstream(Duration::from_secs(3), 1, Duration::ZERO).await;
    let trickle = slow_upstream(Duration::ZERO, 10, Duration::from_millis(400)).await;
    let routes = routes(&[
        route("late", &format!("to: {}\nallow_public_unauthenticated_access: true\ntimeout: 30s", late.http())),
        route("trickle", &format!("to: {}\nallow_public_unauthenticated_access: true\ntimeout: 30s", trickle.http())),
    ]);
    let server = setup.start(&format!("timeout_write: 1500ms\n{routes}")).await;

    // No answer within timeout_write: 504.
    let started = Instant::now();
    let reply = server.get(&server.host("late"), "/").await;
    assert_eq!(reply.status, 504, "{}", reply.text());
    assert!(started.elapsed() < Duration::from_millis(2900), "{:?}", started.elapsed());

    // An answer that began in time but trickles past it: the body is cut off, not completed.
    let mut stream = server.tls("trickle.test.localhost", server.client_tls(&[b"http/1.1"])).await;
    let head = format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", server.host("trickle"));
    stream.write_all(head.as_bytes()).await.unwrap();
    let (response, took) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert_eq!(raw_status(&response), "200", "{response}");
    let pieces = response.matches("piece\n").count();
    assert!((1..10).contains(&pieces), "{pieces} of 10 pieces: {response}");
    assert!(took < Duration::from_millis(3500), "{took:?}");
}

/// A TLS connection to the server that begins with `header` (a PROXY protocol header).
async fn tls_after(server: &Pomerium, header: &[u8]) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut tcp = TcpStream::connect(server.address).await.unwrap();
    tcp.write_all(header).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(server.client_tls(&[b"http/1.1"])));
    let name = ServerName::try_from("app.test.localhost".to_owned()).unwrap();
    tokio::time::timeout(PROMPTLY, connector.connect(name, tcp)).await.unwrap().unwrap()
}

async fn get_on<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(stream: &mut S, host: &str) -> String {
    let head = format!("GET /who HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    read_until_closed(stream, PROMPTLY).await.0
}

fn v2_header(source: std::net::SocketAddr, destination: std::net::SocketAddr) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.push(0x21);
    match (source, destination) {
        (std::net::SocketAddr::V6(s), std::net::SocketAddr::V6(d)) => {
            header.push(0x21);
            header.extend_from_slice(&(36u16 + 7).to_be_bytes());
            header.extend_from_slice(&s.ip().octets());
            header.extend_from_slice(&d.ip().octets());
            header.extend_from_slice(&s.port().to_be_bytes());
            header.extend_from_slice(&d.port().to_be_bytes());
        }
        _ => panic!("the test sends IPv6"),
    }
    // A TLV (PP2_TYPE_AUTHORITY), skipped.
    header.extend_from_slice(&[0x02, 0x00, 0x04]);
    header.extend_from_slice(b"app!");
    header
}

#[tokio::test]
async fn the_proxy_protocol_names_the_client() {
    let setup = Setup::new();
    let upstream = echo_upstream("u", None).await;
    // Only clients from 203.0.113.0/24 and 2001:db8::/32 are let in.
    let fields = format!(
        "to: {}\npolicy:\n  allow:\n    or:\n      - source_ip: 203.0.113.0/24\n      - source_ip: 2001:db8::/32",
        upstream.http()
    );
    let mut server = setup.start(&format!("use_proxy_protocol: true\n{}", routes(&[route("app", &fields)]))).await;
    let host = server.host("app");

    let mut v1 = tls_after(&server, b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 443\r\n").await;
    let response = get_on(&mut v1, &host).await;
    assert_eq!(raw_status(&response), "200", "{response}");
    assert!(response.contains("\"x-forwarded-for\":[\"203.0.113.7\"]"), "{response}");

    let v2 = v2_header("[2001:db8::5]:4000".parse().unwrap(), "[2001:db8::1]:443".parse().unwrap());
    let mut stream = tls_after(&server, &v2).await;
    let response = get_on(&mut stream, &host).await;
    assert_eq!(raw_status(&response), "200", "{response}");
    assert!(response.contains("\"x-forwarded-for\":[\"2001:db8::5\"]"), "{response}");

    // Another client address: the policy sees it and denies.
    let mut other = tls_after(&server, b"PROXY TCP4 198.51.100.9 127.0.0.1 5555 443\r\n").await;
    assert_eq!(raw_status(&get_on(&mut other, &host).await), "403");

    // A balancer's health check (LOCAL / UNKNOWN) keeps the connection's own address: denied here.
    let mut local = tls_after(&server, b"PROXY UNKNOWN\r\n").await;
    assert_eq!(raw_status(&get_on(&mut local, &host).await), "403");

    // No header, or a bad one: the connection is closed, before any TLS.
    for bad in [
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..],
        b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n",
        b"PROXY TCP4 x",
    ] {
        let mut tcp = TcpStream::connect(server.address).await.unwrap();
        tcp.write_all(bad).await.unwrap();
        let (received, _) = read_until_closed(&mut tcp, Duration::from_secs(15)).await;
        assert!(received.is_empty(), "nothing is answered: {received:?}");
    }
    server.assert_running();
}
