//! Limits that keep slow or greedy clients from holding the IdP: how long a
//! client may take to send a request's headers and body, how large a body may
//! be (answered, like every other refusal, as an OAuth JSON error), and how
//! many connections each listener serves at once.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::future::RouteFuture;
use axum::{BoxError, Router};
use http_body_util::{BodyExt, LengthLimitError};
use serde::{Deserialize, Serialize};
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};
use tower::Service;

use crate::Idp;
use crate::oauth_error::{ErrorCode, OAuthError};

/// The limits, in the `[limits]` table of the IdP's config. The defaults are
/// far beyond what a well-behaved client needs, so a load test never meets them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Seconds a client has to send a request's headers, counted from the
    /// connection's start and then from the end of each response (so it is
    /// also how long an idle keep-alive connection stays open, as in hyper).
    /// 0: no limit.
    pub header_read_timeout_secs: u64,
    /// Seconds a client has to send a request's body once its headers are in;
    /// then it gets 408 `invalid_request` and the connection is closed. 0: no limit.
    pub body_read_timeout_secs: u64,
    /// The largest request body, in bytes; a larger one gets 413 `invalid_request`.
    pub max_body_bytes: usize,
    /// Connections each listener serves at once; further ones wait in the
    /// listen queue until one closes.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout_secs: 30,
            body_read_timeout_secs: 30,
            max_body_bytes: 2 * 1024 * 1024,
            max_connections: 10_000,
        }
    }
}

impl Limits {
    pub fn header_read_timeout(&self) -> Option<Duration> {
        secs(self.header_read_timeout_secs)
    }

    pub fn body_read_timeout(&self) -> Option<Duration> {
        secs(self.body_read_timeout_secs)
    }

    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_connections == 0 || self.max_connections > Semaphore::MAX_PERMITS {
            return Err(format!(
                "limits.max_connections must be between 1 and {}",
                Semaphore::MAX_PERMITS
            ));
        }
        if self.max_body_bytes == 0 {
            return Err("limits.max_body_bytes must be at least 1".into());
        }
        Ok(())
    }
}

fn secs(secs: u64) -> Option<Duration> {
    (secs > 0).then(|| Duration::from_secs(secs))
}

/// Middleware: reads a request's whole body within the body timeout and size
/// limit before any endpoint (or fault) sees it, so a body that never comes
/// cannot hold a handler, and a refusal is an OAuth JSON error rather than
/// axum's plain-text one. Requests without a body pass straight through.
pub async fn read_body(State(idp): State<Idp>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    if body.is_end_stream() {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let limits = &idp.config().limits;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return too_large(&idp);
    }
    let read = http_body_util::Limited::new(body, limits.max_body_bytes).collect();
    let collected = match limits.body_read_timeout() {
        Some(timeout) => match tokio::time::timeout(timeout, read).await {
            Ok(collected) => collected,
            Err(_) => {
                idp.stats().refused_requests.inc(&["body_timeout"]);
                return closing(OAuthError::with_status(
                    StatusCode::REQUEST_TIMEOUT,
                    ErrorCode::InvalidRequest,
                    format!(
                        "the request body did not arrive within {} s",
                        limits.body_read_timeout_secs
                    ),
                ));
            }
        },
        None => read.await,
    };
    match collected {
        Ok(body) => {
            next.run(Request::from_parts(parts, Body::from(body.to_bytes())))
                .await
        }
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => too_large(&idp),
        Err(_) => closing(OAuthError::with_status(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest,
            "the request body could not be read",
        )),
    }
}

fn too_large(idp: &Idp) -> Response {
    idp.stats().refused_requests.inc(&["body_too_large"]);
    closing(OAuthError::with_status(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::InvalidRequest,
        format!(
            "the request body is larger than {} bytes",
            idp.config().limits.max_body_bytes
        ),
    ))
}

/// The error, with the connection closed after it: the rest of the body is
/// unread, so the connection cannot carry another request.
fn closing(error: OAuthError) -> Response {
    let mut response = error.into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

type Acquiring = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

/// Makes the service of each accepted connection, but only while fewer than
/// `max_connections` are open: the server asks it to be ready before it
/// accepts the next connection, so at the cap the listener stops accepting
/// (clients wait in the listen queue) instead of refusing anyone.
pub struct ConnectionCap {
    router: Router,
    semaphore: Arc<Semaphore>,
    acquiring: Option<Acquiring>,
    permit: Option<OwnedSemaphorePermit>,
}

impl ConnectionCap {
    pub fn new(router: Router, max_connections: usize) -> Self {
        Self {
            router,
            semaphore: Arc::new(Semaphore::new(max_connections)),
            acquiring: None,
            permit: None,
        }
    }
}

impl<T> Service<T> for ConnectionCap {
    type Response = CappedRouter;
    type Error = Infallible;
    type Future = std::future::Ready<Result<CappedRouter, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.permit.is_some() {
            return Poll::Ready(Ok(()));
        }
        let semaphore = &self.semaphore;
        let acquiring = self
            .acquiring
            .get_or_insert_with(|| Box::pin(semaphore.clone().acquire_owned()));
        match acquiring.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(permit) => {
                self.acquiring = None;
                // The semaphore is never closed, so acquiring cannot fail.
                self.permit = permit.ok();
                Poll::Ready(Ok(()))
            }
        }
    }

    fn call(&mut self, _: T) -> Self::Future {
        std::future::ready(Ok(CappedRouter {
            router: self.router.clone(),
            _permit: self.permit.take().map(Arc::new),
        }))
    }
}

/// The router for one connection; its permit goes back when the connection
/// and its last request are done.
#[derive(Clone)]
pub struct CappedRouter {
    router: Router,
    _permit: Option<Arc<OwnedSemaphorePermit>>,
}

impl<B> Service<axum::http::Request<B>> for CappedRouter
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = RouteFuture<Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        self.router.call(request)
    }
}
