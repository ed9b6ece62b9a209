//! Heap allocations per proxied request (B4(a)'s shape in process): a keep-alive HTTP/1.1 client
//! → `proxy::server::serve` with `proxy::pipeline::handle` on a public route → an upstream that
//! answers 12 bytes, all on one current-thread runtime, counted by `stats_alloc`. The same client
//! against the upstream directly is counted too: the difference is what the proxy allocates
//! (its server, its pipeline and its upstream client). The test fails when that share grows past
//! [`PROXY_SHARE_LIMIT`]; it prints the counts (`-- --nocapture` is not needed: no harness).
//!
//! `cargo test -p proxy --test request_allocations`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, reason = "tests")]

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::{BodyExt as _, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use proxy::runtime::Runtime;
use proxy::server::{ConnectionInfo, ServerOptions, Shutdown};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;
use tokio::net::{TcpListener, TcpStream};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const CALLS: usize = 2_000;

/// The most heap allocations the proxy may make per request on a public route: 27 (issue 20 took
/// it from 50, and the bytes allocated from 86 KB to 22 KB), with a margin.
const PROXY_SHARE_LIMIT: f64 = 32.0;

fn report(name: &str, calls: usize, stats: stats_alloc::Stats) {
    let per = |n: usize| n as f64 / calls as f64;
    println!(
        "{name:<36} allocations {:>7.2}  deallocations {:>7.2}  reallocations {:>5.2}  bytes allocated {:>8.1}",
        per(stats.allocations),
        per(stats.deallocations),
        per(stats.reallocations),
        per(stats.bytes_allocated),
    );
}

/// An upstream answering every request with 12 bytes.
async fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            stream.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_: Request<Incoming>| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hello world\n"))))
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    address
}

fn runtime(upstream: SocketAddr, proxy_port: u16) -> Runtime {
    let yaml = format!(
        "insecure_server: true\nauthenticate_service_url: http://authenticate.localhost\nroutes:\n  \
         - from: http://localhost:{proxy_port}\n    to: http://{upstream}\n    allow_public_unauthenticated_access: true\n"
    );
    support::runtime(&yaml)
}

/// A keep-alive HTTP/1.1 client connection to `address`, sending `GET /` for `host`.
async fn client(address: SocketAddr) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let stream = TcpStream::connect(address).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    sender
}

async fn get(sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>, host: &str) {
    sender.ready().await.unwrap();
    let request = Request::get("/").header(http::header::HOST, host).body(Empty::new()).unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), 12);
}

async fn count(name: &str, sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>, host: &str) -> f64 {
    for _ in 0..200 {
        get(sender, host).await;
    }
    let region = Region::new(GLOBAL);
    for _ in 0..CALLS {
        get(sender, host).await;
    }
    let stats = region.change();
    report(name, CALLS, stats);
    stats.allocations as f64 / CALLS as f64
}

/// One test, run by libtest-mimic (no libtest harness: the counting allocator must see only this
/// test's allocations, so nothing runs beside it), which lists it the way cargo-nextest asks.
fn main() {
    let arguments = libtest_mimic::Arguments::from_args();
    let test = libtest_mimic::Trial::test("proxy_share_of_a_public_route_request", || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let counted = rt.block_on(async { tokio::time::timeout(std::time::Duration::from_secs(120), measure()).await });
        let share = counted.map_err(|_| "the requests did not finish within two minutes")?;
        if share > PROXY_SHARE_LIMIT {
            return Err(format!("the proxy allocates {share:.2} times per request (limit {PROXY_SHARE_LIMIT})").into());
        }
        Ok(())
    });
    libtest_mimic::run(&arguments, vec![test]).exit();
}

/// Counts the allocations of requests sent directly and through the proxy; returns the proxy's share.
async fn measure() -> f64 {
    {
        let upstream = upstream().await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = listener.local_addr().unwrap();
        let runtime = Arc::new(runtime(upstream, proxy.port()));
        let handler = move |request: Request<Incoming>, connection: Arc<ConnectionInfo>| {
            proxy::pipeline::handle(Arc::clone(&runtime), request, connection)
        };
        let shutdown = Shutdown::new();
        tokio::spawn(proxy::server::serve(listener, None, handler, ServerOptions::default(), shutdown.signal()));

        let host = format!("localhost:{}", proxy.port());
        let direct = count("b4 direct (client and upstream)", &mut client(upstream).await, &host).await;
        let proxied = count("b4 public route (through the proxy)", &mut client(proxy).await, &host).await;
        println!("{:<36} allocations {:>7.2}", "b4 the proxy's share", proxied - direct);
        shutdown.trigger();
        proxied - direct
    }
}
