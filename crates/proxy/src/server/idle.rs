//! `timeout_idle`: a connection with no request in flight for that long is closed (Envoy's
//! `idle_timeout` in Pomerium's listener, five minutes by default), so an idle client does not
//! hold a socket and its buffers forever. A request is in flight from its head to the end of its
//! response body, so a long download is not idle; bytes alone (HTTP/2 pings, say) do not count,
//! so a client cannot keep a connection with keep-alive traffic.
//!
//! The same watchdog bounds the wait for an HTTP/1 request head (the header read timeout): on an
//! HTTP/1 connection nothing is in flight exactly while the server waits for the next head, so a
//! connection with nothing in flight for that long has not sent one in time. One timer per
//! connection, looked at only when it is due, instead of one armed (and allocated) per request.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Instant;

use crate::body::{BoxError, ProxyBody};

/// When a connection last had nothing in flight, and how many requests are in flight. Shared by
/// the request service, the response bodies and the watchdog.
#[derive(Debug)]
pub(super) struct Activity {
    start: Instant,
    /// Milliseconds from `start` to the moment the last request in flight finished.
    last: AtomicU64,
    in_flight: AtomicUsize,
    /// HTTP/2 (by ALPN, or a request said so): no request head to wait for.
    http2: AtomicBool,
}

/// Why the watchdog closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expired {
    /// Nothing in flight for `timeout_idle`.
    Idle,
    /// HTTP/1: no whole request head within the header read timeout.
    HeaderRead,
}

impl Activity {
    pub(super) fn new() -> Arc<Activity> {
        Arc::new(Activity {
            start: Instant::now(),
            last: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            http2: AtomicBool::new(false),
        })
    }

    fn touch(&self) {
        let elapsed = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(elapsed, Ordering::Relaxed);
    }

    /// A request began; it is in flight until the guard is dropped (with its response body).
    pub(super) fn request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// The connection speaks HTTP/2: the header read timeout does not apply.
    pub(super) fn set_http2(&self) {
        self.http2.store(true, Ordering::Relaxed);
    }

    /// Resolves once the connection has had nothing in flight for `idle`.
    #[cfg(test)]
    pub(super) async fn idle_for(&self, idle: Duration) {
        self.watch(Some(idle), None).await;
    }

    /// Resolves once the connection has had nothing in flight for `idle`, or, on HTTP/1, for
    /// `header_read` (it has not sent a request head in time); never when both are `None`.
    pub(super) async fn watch(&self, idle: Option<Duration>, header_read: Option<Duration>) -> Expired {
        loop {
            let header_read = header_read.filter(|_| !self.http2.load(Ordering::Relaxed));
            let (limit, expired) = match (idle, header_read) {
                (Some(idle), Some(header_read)) if header_read < idle => (header_read, Expired::HeaderRead),
                (Some(idle), _) => (idle, Expired::Idle),
                (None, Some(header_read)) => (header_read, Expired::HeaderRead),
                (None, None) => return std::future::pending().await,
            };
            let last = self.start + Duration::from_millis(self.last.load(Ordering::Relaxed));
            let due = last + limit;
            let now = Instant::now();
            if now >= due && self.in_flight.load(Ordering::Relaxed) == 0 {
                return expired;
            }
            // Busy past the due time: look again one period on.
            tokio::time::sleep_until(if now >= due { now + limit } else { due }).await;
        }
    }
}

/// A request in flight on its connection.
#[derive(Debug)]
pub(super) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request in flight until it is sent (or dropped).
pub(super) struct InFlightBody {
    inner: ProxyBody,
    _in_flight: InFlight,
}

impl InFlightBody {
    pub(super) fn new(inner: ProxyBody, in_flight: InFlight) -> Self {
        InFlightBody { inner, _in_flight: in_flight }
    }
}

impl Body for InFlightBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_means_no_bytes_and_no_request_in_flight() {
        let activity = Activity::new();
        let idle = Duration::from_millis(200);
        let request = activity.request();
        // A request in flight for longer than the idle timeout keeps the connection.
        let busy = tokio::time::timeout(Duration::from_millis(600), activity.idle_for(idle)).await;
        assert!(busy.is_err(), "not idle while a request is in flight");
        drop(request);
        let started = Instant::now();
        tokio::time::timeout(Duration::from_secs(5), activity.idle_for(idle)).await.ok();
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(190), "idle one period after the request ended: {waited:?}");
        assert!(waited < Duration::from_secs(5), "and then promptly");
    }

    #[tokio::test]
    async fn http1_waits_for_a_request_head_no_longer_than_the_header_read_timeout() {
        let (idle, header_read) = (Some(Duration::from_secs(60)), Some(Duration::from_millis(200)));
        let activity = Activity::new();
        let expired = tokio::time::timeout(Duration::from_secs(5), activity.watch(idle, header_read)).await;
        assert_eq!(expired.ok(), Some(Expired::HeaderRead));
        // A request in flight is not waiting for a head.
        let request = activity.request();
        let busy = tokio::time::timeout(Duration::from_millis(600), activity.watch(idle, header_read)).await;
        assert!(busy.is_err(), "no head timeout while a request is in flight");
        drop(request);
        // HTTP/2 has no head to wait for: only the idle timeout applies.
        activity.set_http2();
        let h2 = tokio::time::timeout(Duration::from_millis(600), activity.watch(idle, header_read)).await;
        assert!(h2.is_err(), "HTTP/2 is not cut off by the header read timeout");
        let h2 =
            tokio::time::timeout(Duration::from_secs(5), activity.watch(Some(Duration::from_millis(200)), header_read));
        assert_eq!(h2.await.ok(), Some(Expired::Idle));
    }
}
