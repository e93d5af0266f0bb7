//! The service half of Tessera's own layers (`request_id`, `secure_headers`,
//! `timeout_request`). Each wraps the inner service's call in a future of its own; the
//! rest (readiness is the inner service's, the response and error types are axum's) is
//! the same for all of them, so it is written once here, with no box or allocation of
//! its own per request.

use std::{
    convert::Infallible,
    future::Future,
    task::{Context, Poll},
};

use axum::{body::Body, http::Request, response::Response};
use tower::Service;

/// A future of a response, as every layer of the stack answers.
pub trait Answer: Future<Output = Result<Response, Infallible>> {}

impl<F: Future<Output = Result<Response, Infallible>>> Answer for F {}

/// A service of the stack, seen from the layer around it.
pub trait Inner: Service<Request<Body>, Response = Response, Error = Infallible> {}

impl<S: Service<Request<Body>, Response = Response, Error = Infallible>> Inner for S {}

/// What a layer does around one call of the service inside it.
pub trait Wrap {
    /// The inner service's answer (its future `F`), changed or replaced.
    type Future<F: Answer>: Answer;

    /// Calls `inner` with `request` (the service is ready), wrapped.
    fn call<S: Inner>(&self, inner: &mut S, request: Request<Body>) -> Self::Future<S::Future>;
}

/// The layer `W` around the service `S`.
#[derive(Debug, Clone)]
pub struct Wrapped<S, W> {
    inner: S,
    wrap: W,
}

impl<S, W> Wrapped<S, W> {
    pub const fn new(inner: S, wrap: W) -> Self {
        Self { inner, wrap }
    }
}

impl<S: Inner, W: Wrap> Service<Request<Body>> for Wrapped<S, W> {
    type Response = Response;
    type Error = Infallible;
    type Future = W::Future<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        self.wrap.call(&mut self.inner, request)
    }
}
