//! `server.middlewares.timeout_request`: a request that has no response after `timeout`
//! milliseconds is answered `408 Request Timeout`, as Loco's middleware answers, and
//! whatever it was doing is dropped. The layer sits outside the session layer, so the
//! bound covers loading and saving the session too.
//!
//! tower-http's `TimeoutLayer`, which Loco uses, answers with an empty body and logs
//! nothing; here the visitor gets Tessera's error page and the log a line naming the
//! request (its ID, through `crate::logger`).

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    body::Body,
    http::Request,
    response::{IntoResponse, Response},
};
use tokio::time::Sleep;
use tower::Layer;

use super::wrap::{Answer, Inner, Wrap, Wrapped};
use crate::errors::AppError;

/// The timeout layer, for `timeout` per request.
#[derive(Debug, Clone, Copy)]
pub struct TimeoutLayer {
    timeout: Duration,
}

impl TimeoutLayer {
    /// Requests answer within `timeout` (`timeout_request.timeout`, in milliseconds).
    #[must_use]
    pub const fn new(timeout: Duration) -> Self {
        Self { timeout }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Wrapped<S, Self>;

    fn layer(&self, inner: S) -> Self::Service {
        Wrapped::new(inner, *self)
    }
}

impl Wrap for TimeoutLayer {
    type Future<F: Answer> = TimeoutFuture<F>;

    fn call<S: Inner>(&self, inner: &mut S, request: Request<Body>) -> Self::Future<S::Future> {
        TimeoutFuture {
            inner: inner.call(request),
            deadline: tokio::time::sleep(self.timeout),
            timeout: self.timeout,
        }
    }
}

pin_project_lite::pin_project! {
    /// The inner response, or the timeout page once the deadline has passed.
    pub struct TimeoutFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        deadline: Sleep,
        timeout: Duration,
    }
}

impl<F: Answer> Future for TimeoutFuture<F> {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(response) = this.inner.poll(cx) {
            return Poll::Ready(response);
        }
        if this.deadline.poll(cx).is_ready() {
            let after = *this.timeout;
            return Poll::Ready(Ok(AppError::TimedOut { after }.into_response()));
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use tower::ServiceExt;

    use super::*;

    async fn answer_of<F>(timeout: Duration, handler: F) -> Response
    where
        F: Future<Output = Result<Response, Infallible>> + Send + 'static,
    {
        let mut handler = Some(handler);
        let service = tower::service_fn(move |_: Request<Body>| {
            handler
                .take()
                .unwrap_or_else(|| unreachable!("one request"))
        });
        TimeoutLayer::new(timeout)
            .layer(service)
            .oneshot(Request::new(Body::empty()))
            .await
            .unwrap_or_else(|never| match never {})
    }

    #[tokio::test]
    async fn a_request_without_an_answer_gets_the_408_page_at_the_deadline() {
        let response = answer_of(Duration::from_millis(20), std::future::pending()).await;
        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
        let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
            .await
            .expect("a body");
        assert!(String::from_utf8_lossy(&body).contains("<html"));
    }

    #[tokio::test]
    async fn an_answer_before_the_deadline_passes_unchanged() {
        let answer = async { Ok(StatusCode::ACCEPTED.into_response()) };
        let response = answer_of(Duration::from_secs(3600), answer).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }
}
