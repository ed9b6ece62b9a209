//! What routes do besides plain forwarding, through the `pomerium` binary: redirect and direct
//! response routes, websockets and other upgrades, `tcp+https` CONNECT tunnels, the route timeout
//! and idle timeout, and request and response bodies streamed both ways.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "tests"
)]

mod support;

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http::header::{CONNECTION, UPGRADE};
use http::{Method, Request, Response};
use http_body_util::BodyExt as _;
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use proxy::body::{self, ProxyBody};
use support::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;

#[tokio::test]
async fn redirect_routes() {
    let setup = Setup::new();
    let config = routes(&[
        public("moved", "redirect:\n  host_redirect: new.test.localhost"),
        public("path", "redirect:\n  path_redirect: /elsewhere"),
        public(
            "full",
            "redirect:\n  https_redirect: true\n  host_redirect: x.test.localhost\n  port_redirect: 8443\n  path_redirect: /p\n  response_code: 302\n  strip_query: true",
        ),
        public("prefix", "prefix: /old/\nredirect:\n  prefix_rewrite: /new/\n  response_code: 307"),
        public("secure", "redirect:\n  https_redirect: true"),
        public("scheme", "redirect:\n  scheme_redirect: http\n  response_code: 308"),
    ]);
    let mut server = setup.start(&config).await;
    let port = server.address.port();
    let cases = [
        ("moved", "/a?q=1", 301, "https://new.test.localhost/a?q=1".to_owned()),
        ("path", "/a?q=1", 301, format!("https://path.test.localhost:{port}/elsewhere?q=1")),
        ("full", "/a?q=1", 302, "https://x.test.localhost:8443/p".to_owned()),
        ("prefix", "/old/a/b?q=1", 307, format!("https://prefix.test.localhost:{port}/new/a/b?q=1")),
        ("secure", "/s", 301, "https://secure.test.localhost/s".to_owned()),
        ("scheme", "/s", 308, "http://scheme.test.localhost/s".to_owned()),
    ];
    for (name, path, status, location) in cases {
        let reply = server.get(&server.host(name), path).await;
        assert_eq!((reply.status.as_u16(), reply.header("location")), (status, location.as_str()), "{name} {path}");
        assert_eq!(reply.header("x-frame-options"), "SAMEORIGIN", "route response headers on redirects");
    }
    server.assert_running();
}

#[tokio::test]
async fn response_routes_answer_themselves() {
    let setup = Setup::new();
    let config = routes(&[
        public("teapot", "path: /brew\nresponse:\n  status: 418\n  body: I'm a teapot"),
        public("teapot", "response:\n  status: 200\n  body: '{\"status\":\"ok\"}'"),
    ]);
    let mut server = setup.start(&config).await;
    let reply = server.get(&server.host("teapot"), "/brew").await;
    assert_eq!(reply.status, 418);
    assert_eq!(reply.text(), "I'm a teapot");
    assert_eq!(reply.header("content-type"), "text/plain; charset=utf-8");
    assert_eq!(reply.header("x-request-id").len(), 36);
    assert!(reply.headers.contains_key("strict-transport-security"));
    let reply = server.get(&server.host("teapot"), "/other").await;
    assert_eq!((reply.status.as_u16(), reply.text().as_str()), (200, r#"{"status":"ok"}"#), "the first match wins");
    server.assert_running();
}

/// An upstream that accepts any upgrade: answers `101` with the same `Upgrade` (and, for
/// websockets, the `Sec-WebSocket-Accept` of the key), writes a greeting, then echoes. Without an
/// upgrade it says so.
async fn upgrade_upstream() -> Upstream {
    spawn_upstream(None, |mut request: Request<Incoming>| async move {
        let Some(protocol) = request.headers().get(UPGRADE).cloned() else {
            return Response::new(body::full("no upgrade"));
        };
        let accept = request.headers().get("sec-websocket-key").map(|key| {
            let mut input = key.as_bytes().to_vec();
            input.extend_from_slice(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
            base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
        });
        let upgrade = hyper::upgrade::on(&mut request);
        tokio::spawn(async move {
            let mut upgraded = TokioIo::new(upgrade.await.unwrap());
            upgraded.write_all(b"hello from upstream;").await.unwrap();
            let (mut reader, mut writer) = tokio::io::split(upgraded);
            let _ = tokio::io::copy(&mut reader, &mut writer).await;
        });
        let mut response = Response::builder().status(101).header(UPGRADE, protocol).header(CONNECTION, "Upgrade");
        if let Some(accept) = accept {
            response = response.header("sec-websocket-accept", accept);
        }
        response.body(body::empty()).unwrap()
    })
    .await
}

fn upgrade_request(host: &str, protocol: &str) -> Request<ProxyBody> {
    request(Method::GET, host, "/socket")
        .header(CONNECTION, "Upgrade")
        .header(UPGRADE, protocol)
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-version", "13")
        .body(body::empty())
        .unwrap()
}

/// Upgrades on a new connection and checks bytes flow both ways.
async fn assert_upgrades(server: &Pomerium, name: &str, protocol: &str) {
    let mut connection = server.h1(&format!("{name}.test.localhost")).await;
    let response = connection.send(upgrade_request(&server.host(name), protocol)).await;
    assert_eq!(response.status(), 101, "{name}: {protocol}");
    assert_eq!(response.headers()[UPGRADE], protocol);
    if protocol == "websocket" {
        assert_eq!(response.headers()["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "RFC 6455's example");
    }
    let mut upgraded = TokioIo::new(hyper::upgrade::on(response).await.unwrap());
    let mut greeting = [0u8; 20];
    tokio::time::timeout(PROMPTLY, upgraded.read_exact(&mut greeting)).await.unwrap().unwrap();
    assert_eq!(&greeting, b"hello from upstream;", "upstream to client");
    // A masked websocket text frame, "ping", then bytes of every value.
    let mut message = vec![0x81, 0x84, 1, 2, 3, 4, b'p' ^ 1, b'i' ^ 2, b'n' ^ 3, b'g' ^ 4];
    message.extend(0..=255u8);
    upgraded.write_all(&message).await.unwrap();
    let mut echoed = vec![0u8; message.len()];
    tokio::time::timeout(PROMPTLY, upgraded.read_exact(&mut echoed)).await.unwrap().unwrap();
    assert_eq!(echoed, message, "client to upstream and back");
}

/// Asks for an upgrade the route does not allow: the upstream sees an ordinary request.
async fn assert_refused(server: &Pomerium, name: &str, protocol: &str) {
    let reply = server.fetch(upgrade_request(&server.host(name), protocol)).await;
    assert_eq!((reply.status.as_u16(), reply.text().as_str()), (200, "no upgrade"), "{name}: {protocol}");
}

#[tokio::test]
async fn websockets_and_other_upgrades_pass_only_when_allowed() {
    let setup = Setup::new();
    let upstream = upgrade_upstream().await;
    let to = upstream.http();
    let config = routes(&[
        public("ws", &format!("to: {to}\nallow_websockets: true")),
        public("plain", &format!("to: {to}")),
        public("spdy", &format!("to: {to}\nallow_spdy: true")),
        public("custom", &format!("to: {to}\nallow_upgrades: [x-tunnel]")),
    ]);
    let mut server = setup.start(&config).await;
    assert_upgrades(&server, "ws", "websocket").await;
    assert_refused(&server, "plain", "websocket").await;
    assert_upgrades(&server, "spdy", "spdy/3.1").await;
    assert_refused(&server, "spdy", "websocket").await;
    assert_upgrades(&server, "custom", "x-tunnel").await;
    assert_refused(&server, "custom", "websocket").await;
    assert_refused(&server, "ws", "x-tunnel").await;
    server.assert_running();
}

#[tokio::test]
async fn tcp_routes_are_connect_tunnels() {
    let setup = Setup::new();
    let echo = tcp_echo().await;
    let config = format!(
        "routes:\n  - from: tcp+https://db.test.localhost:5432\n    to: tcp://{echo}\n    allow_public_unauthenticated_access: true\n"
    );
    let mut server = setup.start(&config).await;
    let connect = |target: &str| {
        Request::builder().method(Method::CONNECT).uri(target).header("host", target).body(body::empty()).unwrap()
    };
    let mut connection = server.h1("db.test.localhost").await;
    let response = connection.send(connect("db.test.localhost:5432")).await;
    assert_eq!(response.status(), 200);
    let mut tunnel = TokioIo::new(hyper::upgrade::on(response).await.unwrap());
    for message in [&b"SELECT 1;"[..], b"\x00\x01\x02 binary \xff", b"SELECT 2;"] {
        tunnel.write_all(message).await.unwrap();
        let mut echoed = vec![0u8; message.len()];
        tokio::time::timeout(PROMPTLY, tunnel.read_exact(&mut echoed)).await.unwrap().unwrap();
        assert_eq!(echoed, message);
    }
    drop(tunnel);

    let mut connection = server.h1("db.test.localhost").await;
    let response = connection.send(connect("db.test.localhost:5433")).await;
    assert_eq!(response.status(), 404, "no route for another port");
    server.assert_running();
}

#[tokio::test]
async fn slow_upstreams_time_out_with_504() {
    let setup = Setup::new();
    let slow = spawn_upstream(None, |_: Request<Incoming>| async {
        tokio::time::sleep(Duration::from_secs(20)).await;
        Response::new(body::full("too late"))
    })
    .await;
    let config = routes(&[public("slow", &format!("to: {}\ntimeout: 300ms", slow.http()))]);
    let mut server = setup.start(&config).await;
    let started = Instant::now();
    let asking_json = request(Method::GET, &server.host("slow"), "/")
        .header("accept", "application/json")
        .body(body::empty())
        .unwrap();
    let reply = server.fetch(asking_json).await;
    let elapsed = started.elapsed();
    assert_eq!(reply.status, 504);
    assert_eq!(reply.json()["error"], "Gateway Timeout");
    assert!(elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(5), "{elapsed:?}");
    server.assert_running();
}

/// An upstream whose body sends `first`, then one `b"."` every `gap` for `count` times, then ends.
async fn dripping_upstream(gap: Duration, count: usize) -> Upstream {
    spawn_upstream(None, move |_: Request<Incoming>| async move {
        let (mut sender, channel) = http_body_util::channel::Channel::<Bytes, proxy::BoxError>::new(1);
        tokio::spawn(async move {
            sender.send_data(Bytes::from_static(b"first")).await.unwrap();
            for _ in 0..count {
                tokio::time::sleep(gap).await;
                if sender.send_data(Bytes::from_static(b".")).await.is_err() {
                    return;
                }
            }
        });
        Response::new(channel.boxed_unsync())
    })
    .await
}

#[tokio::test]
async fn idle_upstream_bodies_are_cut_after_idle_timeout() {
    let setup = Setup::new();
    let stalling = dripping_upstream(Duration::from_secs(20), 1).await;
    let steady = dripping_upstream(Duration::from_millis(100), 10).await;
    let config = routes(&[
        public("stalling", &format!("to: {}\ntimeout: 30s\nidle_timeout: 400ms", stalling.http())),
        public("steady", &format!("to: {}\ntimeout: 30s\nidle_timeout: 700ms", steady.http())),
    ]);
    let mut server = setup.start(&config).await;

    let mut connection = server.h2("stalling.test.localhost").await;
    let started = Instant::now();
    let response = connection.send(get(&server.host("stalling"), "/")).await;
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, "first");
    let next = tokio::time::timeout(PROMPTLY, body.frame()).await.expect("the body is cut, not left hanging");
    assert!(matches!(next, Some(Err(_))), "the stream is reset: {next:?}");
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(400) && elapsed < Duration::from_secs(5), "{elapsed:?}");

    // Busy bodies outlive the idle timeout: it is the longest silence, not the whole exchange.
    let reply = server.get(&server.host("steady"), "/").await;
    assert_eq!(reply.text(), "first..........", "a second of body, at most 100 ms between frames");
    server.assert_running();
}

const CHUNK: usize = 64 * 1024;
const TOTAL: usize = 20 * 1024 * 1024;

fn chunk(index: usize) -> Bytes {
    Bytes::from(vec![u8::try_from(index % 251).unwrap(); CHUNK])
}

/// A request body echoed as it is read, telling the test when its first bytes are read.
struct Tapped {
    inner: Incoming,
    first: Option<mpsc::UnboundedSender<usize>>,
}

impl hyper::body::Body for Tapped {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
            && !data.is_empty()
            && let Some(first) = this.first.take()
        {
            let _ = first.send(data.len());
        }
        polled
    }
}

#[tokio::test]
async fn large_bodies_stream_both_ways() {
    let setup = Setup::new();
    let (first_seen, mut upstream_saw_first) = mpsc::unbounded_channel::<usize>();
    let echo = spawn_upstream(None, move |request: Request<Incoming>| {
        let first = Some(first_seen.clone());
        async move {
            let tapped = Tapped { inner: request.into_body(), first };
            Response::new(tapped.map_err(proxy::BoxError::from).boxed_unsync())
        }
    })
    .await;
    let config = routes(&[public("echo", &format!("to: {}", echo.http()))]);
    let mut server = setup.start(&config).await;

    let (mut sender, channel) = http_body_util::channel::Channel::<Bytes, proxy::BoxError>::new(4);
    let upload = request(Method::POST, &server.host("echo"), "/echo").body(channel.boxed_unsync()).unwrap();
    let mut connection = server.h2("echo.test.localhost").await;
    let exchange = tokio::spawn(async move { connection.send(upload).await });
    sender.send_data(chunk(0)).await.unwrap();
    let seen = tokio::time::timeout(PROMPTLY, upstream_saw_first.recv()).await.expect("the upstream reads the start");
    assert!(seen.unwrap() > 0);
    let response = tokio::time::timeout(PROMPTLY, exchange).await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    // The echo of the first chunk comes back while the upload has hardly begun.
    let mut received = 0usize;
    while received < CHUNK {
        let frame = tokio::time::timeout(PROMPTLY, body.frame()).await.expect("echoed while uploading");
        let data = frame.unwrap().unwrap().into_data().unwrap();
        assert!(data.iter().all(|&b| b == 0), "the first chunk's bytes");
        received += data.len();
    }
    assert_eq!(received, CHUNK, "nothing beyond what was sent");

    let uploader = tokio::spawn(async move {
        for index in 1..TOTAL / CHUNK {
            sender.send_data(chunk(index)).await.unwrap();
        }
    });
    let mut position = received;
    while let Some(frame) = tokio::time::timeout(PROMPTLY, body.frame()).await.unwrap() {
        let Ok(data) = frame.unwrap().into_data() else { continue };
        for (offset, byte) in data.iter().enumerate() {
            let expected = u8::try_from(((position + offset) / CHUNK) % 251).unwrap();
            assert_eq!(*byte, expected, "byte {}", position + offset);
        }
        position += data.len();
    }
    uploader.await.unwrap();
    assert_eq!(position, TOTAL, "20 MiB went up and came back");
    server.assert_running();
}

#[tokio::test]
async fn request_bodies_reach_the_upstream_before_the_upload_ends() {
    let setup = Setup::new();
    let (got, mut upstream_got) = mpsc::unbounded_channel::<Bytes>();
    let upstream = spawn_upstream(None, move |request: Request<Incoming>| {
        let got = got.clone();
        async move {
            let mut incoming = request.into_body();
            let mut total = 0;
            while let Some(Ok(frame)) = incoming.frame().await {
                if let Ok(data) = frame.into_data() {
                    total += data.len();
                    let _ = got.send(data);
                }
            }
            Response::new(body::full(format!("received {total} bytes")))
        }
    })
    .await;
    let config = routes(&[public("upload", &format!("to: {}", upstream.http()))]);
    let mut server = setup.start(&config).await;
    let (mut sender, channel) = http_body_util::channel::Channel::<Bytes, proxy::BoxError>::new(1);
    let upload = request(Method::PUT, &server.host("upload"), "/").body(channel.boxed_unsync()).unwrap();
    let mut connection = server.h1("upload.test.localhost").await;
    let exchange = tokio::spawn(async move { connection.fetch(upload).await });
    for part in ["part one;", "part two;", "part three"] {
        sender.send(Frame::data(Bytes::from(part))).await.unwrap();
        let mut seen = Vec::new();
        while seen.len() < part.len() {
            let data = tokio::time::timeout(PROMPTLY, upstream_got.recv()).await.expect("the part arrives").unwrap();
            seen.extend_from_slice(&data);
        }
        assert_eq!(seen, part.as_bytes(), "each part reaches the upstream before the next is sent");
    }
    drop(sender);
    let reply = tokio::time::timeout(PROMPTLY, exchange).await.unwrap().unwrap();
    assert_eq!(reply.text(), "received 28 bytes");
    server.assert_running();
}
