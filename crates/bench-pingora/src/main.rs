//! Benchmark B4's Pingora floor: the least a Pingora reverse proxy does per request, run by
//! `benches/b4.sh` beside nginx and ours on the same upstream.
//!
//! `bench-pingora LISTEN UPSTREAM [no-steal]`, e.g. `bench-pingora 127.0.0.1:18085 127.0.0.1:18080`:
//! one service thread (`threads: 1`), plain HTTP/1.1 from the client, every request forwarded to
//! UPSTREAM over Pingora's keep-alive connection pool, with the client's address appended to
//! `X-Forwarded-For` (as the nginx target does). No TLS feature is built: neither OpenSSL nor ring.

use std::net::SocketAddr;
use std::process::ExitCode;

use async_trait::async_trait;
use pingora::http::RequestHeader;
use pingora::proxy::{ProxyHttp, Session, http_proxy_service};
use pingora::server::Server;
use pingora::server::configuration::ServerConf;
use pingora::upstreams::peer::HttpPeer;

/// Forwards every request to one upstream.
struct Floor {
    /// Cloned per request: Pingora wants a fresh boxed peer from `upstream_peer`.
    peer: HttpPeer,
}

#[async_trait]
impl ProxyHttp for Floor {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> pingora::Result<Box<HttpPeer>> {
        Ok(Box::new(self.peer.clone()))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        _ctx: &mut (),
    ) -> pingora::Result<()> {
        if let Some(client) = session.client_addr().and_then(|address| address.as_inet()) {
            let forwarded = match upstream_request.headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
                Some(earlier) => format!("{earlier}, {}", client.ip()),
                None => client.ip().to_string(),
            };
            upstream_request.insert_header("x-forwarded-for", forwarded)?;
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let (listen, upstream, work_stealing) = match arguments.as_slice() {
        [listen, upstream] => (listen, upstream, true),
        [listen, upstream, option] if option == "no-steal" => (listen, upstream, false),
        _ => {
            eprintln!(
                "usage: bench-pingora LISTEN UPSTREAM [no-steal] (e.g. bench-pingora 127.0.0.1:18085 127.0.0.1:18080)"
            );
            return ExitCode::from(2);
        }
    };
    let (Ok(_), Ok(upstream)) = (listen.parse::<SocketAddr>(), upstream.parse::<SocketAddr>()) else {
        eprintln!("bench-pingora: LISTEN and UPSTREAM must be IP:port addresses, not `{listen}` and `{upstream}`");
        return ExitCode::from(2);
    };
    let conf = ServerConf {
        threads: 1,
        // Pingora's default, a multi-thread runtime (here with one worker, as ours); `no-steal`
        // takes its per-thread current-thread runtimes instead.
        work_stealing,
        // SIGTERM ends the process at once (b4.sh's cleanup), not after Pingora's grace period.
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        pid_file: std::env::temp_dir().join(format!("bench-pingora-{}.pid", std::process::id())).display().to_string(),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut service =
        http_proxy_service(&server.configuration, Floor { peer: HttpPeer::new(upstream, false, String::new()) });
    service.add_tcp(listen);
    server.add_service(service);
    server.run_forever()
}
