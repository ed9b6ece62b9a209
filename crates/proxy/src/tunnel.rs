//! Upgrades and CONNECT tunnels: once both sides agree, bytes are spliced both ways.
//!
//! - Upgrades (`websocket`, `spdy/3.1`, and the route's `allow_upgrades`): the request goes up
//!   with its `Upgrade` header only when the route allows that protocol (otherwise
//!   [`crate::headers::remove_hop_by_hop`] strips it and the request is an ordinary one). When the
//!   upstream answers `101`, the client gets the `101`, and both upgraded connections are joined.
//! - CONNECT (`tcp+https` routes): the client sends `CONNECT host:port`; the pipeline has decided
//!   the `tcp://` target; we dial it, answer `200`, and join the client's tunnel to the socket.
//!
//! Tunnels have no timeouts, as Pomerium turns them off for websocket and TCP routes. A tunnel
//! ends when either side closes.

use std::time::Duration;

use http::header::{CONNECTION, UPGRADE};
use http::{HeaderMap, Request, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::body::{self, ProxyBody};
use crate::error::{ErrorKind, ProxyError};
use crate::upstream::UpstreamClient;

/// The upgrade protocol a request asks for, lowercased: its `Upgrade` value when `Connection`
/// lists `upgrade`.
pub fn requested_upgrade(headers: &HeaderMap) -> Option<String> {
    let connection_upgrade = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    let protocol = headers.get(UPGRADE)?.to_str().ok()?.trim();
    (connection_upgrade && !protocol.is_empty()).then(|| protocol.to_ascii_lowercase())
}

/// Whether a route allows an upgrade: `allow_websockets` (`websocket`), `allow_spdy`
/// (`spdy/3.1`), and the names in `allow_upgrades`, compared without case.
pub fn is_upgrade_allowed(protocol: &str, allowed: &[String]) -> bool {
    allowed.iter().any(|name| name.eq_ignore_ascii_case(protocol))
}

/// Forwards an upgrade request and, on `101`, joins the two connections. `head_timeout` bounds
/// the wait for the upstream's answer; the tunnel itself has no time limit.
///
/// `downstream` is the client's pending upgrade (`hyper::upgrade::on(&mut request)`, taken before
/// the request is turned into `upstream_request`). Any other answer from the upstream is
/// returned as an ordinary response and the client's upgrade is dropped.
pub async fn forward_upgrade(
    client: &UpstreamClient,
    downstream: OnUpgrade,
    upstream_request: Request<ProxyBody>,
    head_timeout: Option<Duration>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let mut upstream_response = client.send_upgrade(upstream_request, head_timeout).await?;
    if upstream_response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(upstream_response.map(body::incoming));
    }
    let upstream = hyper::upgrade::on(&mut upstream_response);
    tokio::spawn(async move {
        match tokio::try_join!(downstream, upstream) {
            Ok((downstream, upstream)) => splice(TokioIo::new(downstream), TokioIo::new(upstream)).await,
            Err(error) => tracing::debug!(%error, "upgrade abandoned"),
        }
    });
    let (parts, _) = upstream_response.into_parts();
    Ok(Response::from_parts(parts, body::empty()))
}

/// Dials `target` (`host:port`, the route's `tcp://` upstream) and, once the client's CONNECT
/// tunnel is established, splices the two. Answers `200` when the socket is open.
pub async fn connect_tunnel(
    downstream: OnUpgrade,
    target: &str,
    connect_timeout: Duration,
) -> Result<Response<ProxyBody>, ProxyError> {
    let socket = dial(target, connect_timeout).await?;
    tokio::spawn(async move {
        match downstream.await {
            Ok(downstream) => splice(TokioIo::new(downstream), socket).await,
            Err(error) => tracing::debug!(%error, "CONNECT tunnel abandoned"),
        }
    });
    Ok(Response::new(body::empty()))
}

async fn dial(target: &str, connect_timeout: Duration) -> Result<TcpStream, ProxyError> {
    let context = || format!("connecting to {target}");
    let socket = tokio::time::timeout(connect_timeout, TcpStream::connect(target))
        .await
        .map_err(|_| ProxyError::upstream(ErrorKind::ConnectTimeout).with_context(context()))?
        .map_err(|error| {
            let kind = match error.kind() {
                std::io::ErrorKind::ConnectionRefused => ErrorKind::ConnectRefused,
                std::io::ErrorKind::TimedOut => ErrorKind::ConnectTimeout,
                _ => ErrorKind::Connect,
            };
            ProxyError::upstream(kind).with_context(context()).with_cause(error)
        })?;
    // Interactive protocols (SSH, databases) suffer from Nagle's delays.
    socket.set_nodelay(true).ok();
    Ok(socket)
}

/// Copies bytes both ways until both directions are closed.
async fn splice<A, B>(mut a: A, mut b: B)
where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match tokio::io::copy_bidirectional(&mut a, &mut b).await {
        Ok((up, down)) => tracing::debug!(up, down, "tunnel closed"),
        Err(error) => tracing::debug!(%error, "tunnel ended with an error"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|&(name, value)| (http::HeaderName::from_static(name), HeaderValue::from_static(value)))
            .collect()
    }

    #[test]
    fn upgrades_need_connection_upgrade() {
        assert_eq!(
            requested_upgrade(&headers(&[("connection", "Upgrade"), ("upgrade", "WebSocket")])).as_deref(),
            Some("websocket")
        );
        assert_eq!(
            requested_upgrade(&headers(&[("connection", "keep-alive, upgrade"), ("upgrade", "spdy/3.1")])).as_deref(),
            Some("spdy/3.1")
        );
        assert_eq!(requested_upgrade(&headers(&[("upgrade", "websocket")])), None);
        assert_eq!(requested_upgrade(&headers(&[("connection", "upgrade")])), None);
        assert_eq!(requested_upgrade(&headers(&[("connection", "upgrade"), ("upgrade", " ")])), None);
    }

    #[test]
    fn allowed_upgrades_compare_without_case() {
        let allowed = vec!["websocket".to_owned(), "SPDY/3.1".to_owned()];
        assert!(is_upgrade_allowed("websocket", &allowed));
        assert!(is_upgrade_allowed("spdy/3.1", &allowed));
        assert!(!is_upgrade_allowed("h2c", &allowed));
        assert!(!is_upgrade_allowed("websocket", &[]));
    }

    #[tokio::test]
    async fn refused_and_unresolvable_targets_are_upstream_errors() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let refused = dial(&address.to_string(), Duration::from_secs(5)).await.unwrap_err();
        assert_eq!((refused.kind(), refused.status().as_u16()), (ErrorKind::ConnectRefused, 502));
        let invalid = dial("no port here", Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(invalid.status().as_u16(), 502);
    }
}
