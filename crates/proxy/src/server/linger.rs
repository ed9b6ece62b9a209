//! Lingering close for connections that end in an error.
//!
//! When hyper refuses a request before reading all of it (headers over the limit, a malformed
//! head), it writes the error response and drops the connection. Closing a socket with unread
//! bytes in its receive buffer makes the kernel send a RST, and a RST can reach the client
//! before it has read the response: the client sees "connection reset" or a broken pipe instead
//! of the 431 it should have been told about. Like nginx's `lingering_close`, we shut our write
//! side and read (and discard) what the client is still sending for a short, bounded while.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::oneshot;

/// The longest a lingering close reads.
const LINGER_FOR: Duration = Duration::from_secs(2);
/// The most bytes a lingering close reads before it gives up on the client.
const LINGER_BYTES: usize = 1024 * 1024;

/// A connection's stream that goes back to its owner when hyper drops it.
pub(super) struct Returning<T> {
    stream: Option<T>,
    back: Option<oneshot::Sender<T>>,
}

impl<T> Returning<T> {
    /// Wraps `stream`; the receiver gets it back when the wrapper is dropped.
    pub(super) fn new(stream: T) -> (Self, oneshot::Receiver<T>) {
        let (back, receiver) = oneshot::channel();
        (Self { stream: Some(stream), back: Some(back) }, receiver)
    }

    fn stream(&mut self) -> io::Result<Pin<&mut T>>
    where
        T: Unpin,
    {
        self.stream.as_mut().map(Pin::new).ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }
}

impl<T> Drop for Returning<T> {
    fn drop(&mut self) {
        if let (Some(stream), Some(back)) = (self.stream.take(), self.back.take()) {
            // The owner may be gone (an aborted task); then the stream just closes.
            let _ = back.send(stream);
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Returning<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.stream() {
            Ok(stream) => stream.poll_read(cx, buf),
            Err(error) => Poll::Ready(Err(error)),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Returning<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.stream() {
            Ok(stream) => stream.poll_write(cx, buf),
            Err(error) => Poll::Ready(Err(error)),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.stream() {
            Ok(stream) => stream.poll_write_vectored(cx, bufs),
            Err(error) => Poll::Ready(Err(error)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.as_ref().is_some_and(AsyncWrite::is_write_vectored)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.stream() {
            Ok(stream) => stream.poll_flush(cx),
            Err(error) => Poll::Ready(Err(error)),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.stream() {
            Ok(stream) => stream.poll_shutdown(cx),
            Err(error) => Poll::Ready(Err(error)),
        }
    }
}

/// Flushes and shuts our side of `stream`, then reads what the client still sends until it
/// closes, [`LINGER_FOR`] passes or [`LINGER_BYTES`] arrive; then the stream is dropped.
pub(super) async fn close_gently<T: AsyncRead + AsyncWrite + Unpin>(mut stream: T) {
    let drain = async {
        // A failed shutdown (the client already reset) leaves nothing to linger for.
        if stream.shutdown().await.is_err() {
            return;
        }
        let mut discarded = 0;
        let mut buffer = [0u8; 8 * 1024];
        while discarded < LINGER_BYTES {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => discarded += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_FOR, drain).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_stream_comes_back_when_the_wrapper_is_dropped() {
        let (client, server) = tokio::io::duplex(64);
        let (mut wrapped, back) = Returning::new(server);
        wrapped.write_all(b"hello").await.unwrap();
        drop(wrapped);
        let mut server = back.await.unwrap();
        let mut client = client;
        let mut got = [0u8; 5];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");
        client.write_all(b"more").await.unwrap();
        let mut more = [0u8; 4];
        server.read_exact(&mut more).await.unwrap();
        assert_eq!(&more, b"more");
    }

    #[tokio::test]
    async fn a_gentle_close_reads_what_the_client_still_sends_and_then_closes() {
        let (mut client, server) = tokio::io::duplex(1024);
        let closing = tokio::spawn(close_gently(server));
        // More than the duplex buffer: only a reading server lets this finish.
        client.write_all(&[b'x'; 16 * 1024]).await.unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "our side was shut");
        drop(client);
        closing.await.unwrap();
    }
}
