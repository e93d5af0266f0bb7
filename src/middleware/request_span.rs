//! `server.middlewares.logger`: Loco's per-request tracing span, `http-request`, with
//! Loco's fields (method, URI, HTTP version, user agent, environment, request ID) around
//! everything the request logs, and tower-http's request, response and failure events,
//! as Loco's middleware makes them.
//!
//! Loco's span reads the ID from Loco's own request extension, which only Loco's
//! `request_id` middleware can set; this one reads Tessera's (`request_id::current`, or
//! `req-id-none` when `request_id` is off, as Loco writes it), and takes the environment
//! from the start-up configuration instead of a request extension.

use std::sync::Arc;

use axum::http::{header::USER_AGENT, Request};
use loco_rs::environment::Environment;
use tower_http::{
    classify::{ServerErrorsAsFailures, SharedClassifier},
    trace::{MakeSpan, TraceLayer},
};
use tracing::{field, Span};

use super::request_id;

/// Makes the `http-request` span of each request.
#[derive(Debug, Clone)]
pub struct RequestSpan {
    environment: Arc<str>,
}

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, request: &Request<B>) -> Span {
        let user_agent = request
            .headers()
            .get(USER_AGENT)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("");
        let id = request_id::current();
        let id = id
            .as_ref()
            .and_then(|id| id.to_str().ok())
            .unwrap_or("req-id-none");
        tracing::error_span!(
            "http-request",
            "http.method" = field::display(request.method()),
            "http.uri" = field::display(request.uri()),
            "http.version" = field::debug(request.version()),
            "http.user_agent" = field::display(user_agent),
            "environment" = field::display(&self.environment),
            request_id = field::display(id),
        )
    }
}

/// The span layer for an app running in `environment`.
#[must_use]
pub fn layer(
    environment: &Environment,
) -> TraceLayer<SharedClassifier<ServerErrorsAsFailures>, RequestSpan> {
    TraceLayer::new_for_http().make_span_with(RequestSpan {
        environment: environment.to_string().into(),
    })
}
