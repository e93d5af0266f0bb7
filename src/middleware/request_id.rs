//! `x-request-id` on every response: the client's own ID, cleaned as Loco cleans it
//! (letters, digits, `_`, `-` and `@`, at most 255), or a new random UUID.
//!
//! Loco's middleware does the same through `from_fn`, a regex and a `String` per request;
//! this one costs a random number and one header. It is used while the per-request
//! tracing span is off; with `REQUEST_SPANS=true` Loco's own runs, because Loco's span
//! reads the ID from Loco's own request extension.

use std::{
    convert::Infallible,
    task::{Context, Poll},
};

use axum::{
    body::Body,
    http::{HeaderName, HeaderValue, Request},
    response::Response,
};
use tower::{Layer, Service};

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const MAX_LEN: usize = 255;

/// A request's ID: the value of its `x-request-id` response header.
#[derive(Debug, Clone)]
pub struct RequestId(pub HeaderValue);

impl RequestId {
    /// The ID for a request that came with `offered` (its `x-request-id`, if any).
    #[must_use]
    pub fn for_request(offered: Option<&HeaderValue>) -> Self {
        offered
            .and_then(|value| value.to_str().ok())
            .map(|value| {
                value
                    .chars()
                    .filter(|c| c.is_alphanumeric() || *c == '_' || *c == '-' || *c == '@')
                    .take(MAX_LEN)
                    .collect::<String>()
            })
            .filter(|cleaned| !cleaned.is_empty())
            .and_then(|cleaned| HeaderValue::from_str(&cleaned).ok())
            .map_or_else(Self::random, Self)
    }

    fn random() -> Self {
        let uuid = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
        let mut buffer = uuid::Uuid::encode_buffer();
        let text = uuid.hyphenated().encode_lower(&mut buffer);
        Self(HeaderValue::from_str(text).unwrap_or_else(|_| unreachable!("a UUID is ASCII")))
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct RequestIdLayer;

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestIdService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestIdService { inner }
    }
}

#[derive(Debug, Clone)]
pub struct RequestIdService<S> {
    inner: S,
}

impl<S> Service<Request<Body>> for RequestIdService<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // Only the response carries it: nothing in the app reads it from the request.
        let RequestId(header) = RequestId::for_request(request.headers().get(X_REQUEST_ID));
        let future = self.inner.call(request);
        Box::pin(async move {
            let mut response = future.await?;
            response.headers_mut().insert(X_REQUEST_ID, header);
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id_for(offered: &str) -> String {
        let value = HeaderValue::from_str(offered).expect("a valid header");
        RequestId::for_request(Some(&value))
            .0
            .to_str()
            .expect("ASCII")
            .to_string()
    }

    #[test]
    fn keeps_a_clean_id_and_cleans_a_dirty_one() {
        assert_eq!(id_for("abc-123_x@y"), "abc-123_x@y");
        assert_eq!(id_for("foo-bar=baz; <script>"), "foo-barbazscript");
        assert_eq!(id_for(&"a".repeat(300)).len(), MAX_LEN);
    }

    #[test]
    fn replaces_a_missing_or_empty_id_with_a_uuid() {
        for offered in [None, Some("=====")] {
            let value = offered.map(|o| HeaderValue::from_str(o).expect("a valid header"));
            let id = RequestId::for_request(value.as_ref());
            let text = id.0.to_str().expect("ASCII");
            assert!(uuid::Uuid::parse_str(text).is_ok(), "{text}");
        }
        assert_ne!(id_for("==="), id_for("==="), "a new ID each time");
    }
}
