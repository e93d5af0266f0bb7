//! `server.middlewares.request_id`: every response carries an `x-request-id`, the client's
//! own ID cleaned as Loco cleans it (letters, digits, `_`, `-` and `@`, at most 255) or a
//! new random UUID, and that ID is the request's [`current`] one while the rest of the
//! stack and the handler run, so every log line the request writes can name it
//! (`crate::logger`).
//!
//! Loco's own middleware keeps the ID in a request extension (`LocoRequestId`, which only
//! its `logger` span reads) and goes through `from_fn`, a regex and two `String`s per
//! request. tower-http's `SetRequestId` keeps whatever the client sent, quotes and spaces
//! included, which would let a client write fields of its own into text logs. Here the ID
//! is one header value, shared (not copied) by the response and the task-local.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{ready, Context, Poll},
};

use axum::{
    body::Body,
    http::{HeaderName, HeaderValue, Request},
    response::Response,
};
use bytes::Bytes;
use tokio::task::futures::TaskLocalFuture;
use tower::Layer;

use super::wrap::{Answer, Inner, Wrap, Wrapped};

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const MAX_LEN: usize = 255;

tokio::task_local! {
    /// The ID of the request whose code runs now.
    static CURRENT: HeaderValue;
}

/// The ID of the request being served on this task; `None` outside one (start-up,
/// background tasks) or with `request_id` off. A shared value: cloning it copies nothing.
#[must_use]
pub fn current() -> Option<HeaderValue> {
    CURRENT.try_with(HeaderValue::clone).ok()
}

/// The ID for a request that came with `offered` (its `x-request-id`, if any).
#[must_use]
pub fn for_request(offered: Option<&HeaderValue>) -> HeaderValue {
    let Some(offered) = offered.filter(|value| value.to_str().is_ok()) else {
        return random();
    };
    let allowed = |byte: &u8| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'@');
    let bytes = offered.as_bytes();
    if !bytes.is_empty() && bytes.len() <= MAX_LEN && bytes.iter().all(allowed) {
        // The usual case: a clean ID is shared with the request's header, not copied.
        return offered.clone();
    }
    let cleaned: Vec<u8> = bytes
        .iter()
        .copied()
        .filter(allowed)
        .take(MAX_LEN)
        .collect();
    if cleaned.is_empty() {
        return random();
    }
    HeaderValue::from_maybe_shared(Bytes::from(cleaned)).unwrap_or_else(|_| random())
}

/// A new random (version 4) UUID, hyphenated, in one shared allocation.
fn random() -> HeaderValue {
    let uuid = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    uuid.hyphenated().encode_lower(&mut text);
    HeaderValue::from_maybe_shared(Bytes::from_owner(text))
        .unwrap_or_else(|_| unreachable!("a UUID is ASCII"))
}

/// The request-ID layer.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestIdLayer;

impl<S> Layer<S> for RequestIdLayer {
    type Service = Wrapped<S, Self>;

    fn layer(&self, inner: S) -> Self::Service {
        Wrapped::new(inner, Self)
    }
}

impl Wrap for RequestIdLayer {
    type Future<F: Answer> = RequestIdFuture<F>;

    fn call<S: Inner>(&self, inner: &mut S, request: Request<Body>) -> Self::Future<S::Future> {
        let id = for_request(request.headers().get(X_REQUEST_ID));
        // The inner layers do part of their work in `call` (the `logger` span is made
        // there), so the ID is current then too, not only while the future is polled.
        let future = CURRENT.sync_scope(id.clone(), || inner.call(request));
        RequestIdFuture {
            scoped: CURRENT.scope(id, future),
        }
    }
}

pin_project_lite::pin_project! {
    /// The inner response with the request's ID set on it.
    pub struct RequestIdFuture<F> {
        #[pin]
        scoped: TaskLocalFuture<HeaderValue, F>,
    }
}

impl<F: Answer> Future for RequestIdFuture<F> {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut scoped = self.project().scoped;
        let mut response = ready!(scoped.as_mut().poll(cx))?;
        if let Some(id) = scoped.take_value() {
            response.headers_mut().insert(X_REQUEST_ID, id);
        }
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use tower::ServiceExt;

    use super::*;

    fn id_for(offered: &str) -> String {
        let value = HeaderValue::from_str(offered).expect("a valid header");
        for_request(Some(&value))
            .to_str()
            .expect("ASCII")
            .to_string()
    }

    #[test]
    fn keeps_a_clean_id_and_cleans_a_dirty_one() {
        assert_eq!(id_for("abc-123_x@y"), "abc-123_x@y");
        assert_eq!(id_for("foo-bar=baz; <script>"), "foo-barbazscript");
        assert_eq!(id_for(&"a".repeat(300)).len(), MAX_LEN);
        assert_eq!(id_for(&format!("{}=", "b".repeat(300))).len(), MAX_LEN);
    }

    #[test]
    fn replaces_a_missing_empty_or_non_ascii_id_with_a_uuid() {
        let non_ascii = HeaderValue::from_bytes("zoë".as_bytes()).expect("a header value");
        for offered in [
            None,
            Some(HeaderValue::from_static("=====")),
            Some(HeaderValue::from_static("")),
            Some(non_ascii),
        ] {
            let id = for_request(offered.as_ref());
            let text = id.to_str().expect("ASCII");
            let uuid = uuid::Uuid::parse_str(text).expect("a UUID");
            assert_eq!(uuid.get_version_num(), 4, "{text}");
            assert_eq!(
                text,
                uuid.hyphenated().to_string(),
                "lower case, hyphenated"
            );
        }
        assert_ne!(id_for("==="), id_for("==="), "a new ID each time");
    }

    #[tokio::test]
    async fn the_id_is_current_in_call_and_in_the_future_and_only_there() {
        let service = tower::service_fn(|_: Request<Body>| {
            let in_call = current();
            async move {
                let in_future = current();
                let mut response = Response::new(Body::empty());
                let seen = format!("{in_call:?} {in_future:?}");
                response
                    .headers_mut()
                    .insert("x-seen", HeaderValue::from_str(&seen).expect("a header"));
                Ok::<_, Infallible>(response)
            }
        });
        let mut request = Request::new(Body::empty());
        request
            .headers_mut()
            .insert(X_REQUEST_ID, HeaderValue::from_static("abc"));
        let response = RequestIdLayer
            .layer(service)
            .oneshot(request)
            .await
            .unwrap_or_else(|never| match never {});
        assert_eq!(response.headers()[X_REQUEST_ID], "abc");
        assert_eq!(response.headers()["x-seen"], r#"Some("abc") Some("abc")"#);
        assert_eq!(current(), None);
    }
}
