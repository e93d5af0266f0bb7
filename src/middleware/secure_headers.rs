//! The security headers of `server.middlewares.secure_headers` (Loco's presets and
//! overrides), set on every response that does not carry its own.
//!
//! Loco's own middleware clones its list of headers for every request; here the list is
//! worked out once at start, by Loco's code, and shared.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
};

use axum::{
    body::Body,
    http::{HeaderName, HeaderValue, Request},
    response::Response,
};
use loco_rs::{
    controller::middleware::secure_headers::{SecureHeader, SecureHeaders as LocoSecureHeaders},
    Result,
};
use tower::{Layer, ServiceExt};

use super::wrap::{Answer, Inner, Wrap, Wrapped};

/// The headers to set, in Loco's order.
#[derive(Debug, Clone)]
pub struct SecureHeaders {
    headers: Arc<[(HeaderName, HeaderValue)]>,
}

impl SecureHeaders {
    /// The headers Loco's middleware would set for `config`. Loco keeps its preset table
    /// to itself, so they are read off one response of its middleware, once.
    ///
    /// # Errors
    /// An unknown preset or an override that is not a valid header (Loco's messages).
    pub async fn from_config(config: &SecureHeader) -> Result<Self> {
        let probe = tower::service_fn(|_: Request<Body>| async {
            Ok::<_, Infallible>(Response::new(Body::empty()))
        });
        let response = tower::Layer::layer(&LocoSecureHeaders::new(config)?, probe)
            .oneshot(Request::new(Body::empty()))
            .await
            .unwrap_or_else(|never| match never {});
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        Ok(Self { headers })
    }

    /// How many headers are set.
    #[must_use]
    pub fn len(&self) -> usize {
        self.headers.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty()
    }

    fn apply(&self, response: &mut Response) {
        let headers = response.headers_mut();
        // One growth of the map for all of them, one hash per header.
        headers.reserve(self.headers.len());
        for (name, value) in self.headers.iter() {
            headers.entry(name).or_insert_with(|| value.clone());
        }
    }
}

impl<S> Layer<S> for SecureHeaders {
    type Service = Wrapped<S, Self>;

    fn layer(&self, inner: S) -> Self::Service {
        Wrapped::new(inner, self.clone())
    }
}

impl Wrap for SecureHeaders {
    type Future<F: Answer> = SecureHeadersFuture<F>;

    fn call<S: Inner>(&self, inner: &mut S, request: Request<Body>) -> Self::Future<S::Future> {
        SecureHeadersFuture {
            inner: inner.call(request),
            headers: self.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The inner response with the security headers it does not set itself.
    pub struct SecureHeadersFuture<F> {
        #[pin]
        inner: F,
        headers: SecureHeaders,
    }
}

impl<F: Answer> Future for SecureHeadersFuture<F> {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        this.headers.apply(&mut response);
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    fn config(overrides: &str) -> SecureHeader {
        serde_json::from_str(&format!(
            r#"{{"enable": true, "preset": "github", "overrides": {overrides}}}"#
        ))
        .expect("a valid secure_headers setting")
    }

    async fn respond(
        headers: &SecureHeaders,
        already: Option<(&'static str, &'static str)>,
    ) -> Response {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::OK;
        if let Some((name, value)) = already {
            response
                .headers_mut()
                .insert(name, HeaderValue::from_static(value));
        }
        headers.apply(&mut response);
        response
    }

    #[tokio::test]
    async fn loco_presets_and_overrides_are_set_once() {
        let headers = SecureHeaders::from_config(&config(r#"{"X-Frame-Options": "deny"}"#))
            .await
            .expect("the github preset exists");
        let response = respond(&headers, None).await;
        let get = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok());
        assert_eq!(get("x-frame-options"), Some("deny"), "the override wins");
        assert_eq!(
            get("x-content-type-options"),
            Some("nosniff"),
            "from the preset"
        );
        assert!(get("strict-transport-security").is_some());
        assert_eq!(response.headers().len(), headers.len());
    }

    #[tokio::test]
    async fn a_header_the_response_set_itself_is_kept() {
        let headers = SecureHeaders::from_config(&config("{}"))
            .await
            .expect("preset");
        let response = respond(&headers, Some(("x-frame-options", "sameorigin"))).await;
        let values: Vec<_> = response
            .headers()
            .get_all("x-frame-options")
            .iter()
            .collect();
        assert_eq!(values, [HeaderValue::from_static("sameorigin")]);
    }

    #[tokio::test]
    async fn an_unknown_preset_is_an_error() {
        let config: SecureHeader =
            serde_json::from_str(r#"{"enable": true, "preset": "no-such-preset"}"#)
                .expect("a setting");
        assert!(SecureHeaders::from_config(&config).await.is_err());
    }
}
