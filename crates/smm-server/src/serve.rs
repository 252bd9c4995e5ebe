//! Serving a router on a listener, with the client timeouts `axum::serve` does not have.
//!
//! `axum::serve` waits forever for a client: a connection that sends its request head one byte a
//! minute ("slowloris"), or announces a body and never sends it, holds a task, a socket and —
//! for the v2 API — nothing else from anyone until the process runs out of file descriptors.
//! [`serve`] runs the same router on hyper's HTTP/1 connection directly, with:
//!
//! * a **header read timeout** ([`Timeouts::header_read`]): the whole request head must arrive
//!   within it, counted from the connection's start or from the end of the previous response on a
//!   kept-alive connection (so it is also the idle keep-alive bound); otherwise hyper closes the
//!   connection without a reply;
//! * a **body read deadline** ([`Timeouts::body_read`]): once the head is in, the whole body must
//!   arrive within it; otherwise reading the body fails, which the v2 handler answers like any
//!   unreadable body (a v2 error), and the connection is closed;
//! * limits on the head: at most [`MAX_HEADERS`] header fields and [`MAX_HEADER_BYTES`] bytes in
//!   all, beyond which hyper answers `431 Request Header Fields Too Large` and closes;
//! * graceful shutdown: when `shutdown` resolves, no new connection is accepted, idle ones are
//!   closed, and requests in flight finish before [`serve`] returns (the caller bounds the wait).
//!
//! The server speaks HTTP/1 only, like the axum build it replaces (axum's `http1` feature), so it
//! uses hyper's HTTP/1 connection rather than `hyper_util`'s auto (HTTP/1 + HTTP/2) builder,
//! which would compile the `h2` crate for nothing.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::{Bytes, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::time::Sleep;
use tower::Service;

use crate::config::ServerSettings;

/// Most header fields a request may carry (hyper's default, stated here so it is a decision).
pub const MAX_HEADERS: usize = 100;

/// Largest request head (request line and every header) accepted: far above any real client's,
/// far below what would let a few connections hold much memory.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// How long clients may take to send a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// The whole request head, from the connection's start or the previous response's end.
    pub header_read: Duration,
    /// The whole body, from the end of the head.
    pub body_read: Duration,
}

impl Timeouts {
    /// `server.header_read_timeout_secs` and `server.body_read_timeout_secs`; a zero is taken as
    /// one second (a zero timeout would refuse every request, and "no timeout" is what this
    /// module exists to prevent).
    pub fn from_settings(server: &ServerSettings) -> Timeouts {
        Timeouts {
            header_read: Duration::from_secs(server.header_read_timeout_secs.max(1)),
            body_read: Duration::from_secs(server.body_read_timeout_secs.max(1)),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then waits for the requests in flight.
pub async fn serve<F>(listener: TcpListener, router: Router, shutdown: F, timeouts: Timeouts)
where
    F: Future<Output = ()> + Send + 'static,
{
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header_read)
        .max_headers(MAX_HEADERS)
        .max_header_size(MAX_HEADER_BYTES);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Replies are small and answered at once: do not wait to coalesce them.
                    let _ = stream.set_nodelay(true);
                    let router = router.clone();
                    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                        let request = request.map(|body| Body::new(ReadDeadline::new(body, timeouts.body_read)));
                        let mut router = router.clone();
                        async move { router.call(request).await }
                    });
                    let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
                    tokio::spawn(async move {
                        // Timeouts, resets and garbage from clients end up here: theirs, not ours.
                        if let Err(error) = connection.await {
                            tracing::debug!(%peer, %error, "connection closed with an error");
                        }
                    });
                }
                Err(error) => {
                    // Out of file descriptors, typically: back off instead of spinning.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The client did not send the whole body within [`Timeouts::body_read`].
#[derive(Debug, thiserror::Error)]
#[error("request body not received within {0:?}")]
pub struct BodyTimeout(Duration);

/// A request body that fails with [`BodyTimeout`] once its deadline passes: a total bound, not an
/// idle one, so a client trickling a byte at a time is cut off as surely as a silent one.
struct ReadDeadline {
    inner: Incoming,
    limit: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl ReadDeadline {
    fn new(inner: Incoming, limit: Duration) -> ReadDeadline {
        ReadDeadline {
            inner,
            limit,
            deadline: Box::pin(tokio::time::sleep(limit)),
        }
    }
}

impl hyper::body::Body for ReadDeadline {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(BodyTimeout(this.limit).into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
