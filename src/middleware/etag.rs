//! `server.middlewares.etag`: a `GET` whose `If-None-Match` names the `ETag` of the
//! response gets a bodiless `304 Not Modified` with the response's validator and
//! freshness headers (RFC 9110 §15.4.5), as Loco's middleware answers. A request without
//! `If-None-Match` passes straight through, at no cost.

use std::{
    convert::Infallible,
    task::{Context, Poll},
};

use axum::{
    body::Body,
    http::{
        header::{CACHE_CONTROL, CONTENT_LOCATION, DATE, ETAG, EXPIRES, IF_NONE_MATCH, VARY},
        Request, StatusCode,
    },
    response::Response,
};
use futures::future::{BoxFuture, Either, FutureExt};
use tower::{Layer, Service};

#[derive(Debug, Clone, Copy, Default)]
pub struct EtagLayer;

impl<S> Layer<S> for EtagLayer {
    type Service = EtagService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        EtagService { inner }
    }
}

#[derive(Debug, Clone)]
pub struct EtagService<S> {
    inner: S,
}

impl<S> Service<Request<Body>> for EtagService<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<S::Future, BoxFuture<'static, Result<Response, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let Some(if_none_match) = request.headers().get(IF_NONE_MATCH).cloned() else {
            return Either::Left(self.inner.call(request));
        };
        let future = self.inner.call(request);
        Either::Right(
            async move {
                let response = future.await?;
                if response.headers().get(ETAG) != Some(&if_none_match) {
                    return Ok(response);
                }
                let mut not_modified = Response::new(Body::empty());
                *not_modified.status_mut() = StatusCode::NOT_MODIFIED;
                for name in [ETAG, CACHE_CONTROL, VARY, EXPIRES, DATE, CONTENT_LOCATION] {
                    if let Some(value) = response.headers().get(&name) {
                        not_modified.headers_mut().insert(name, value.clone());
                    }
                }
                Ok(not_modified)
            }
            .boxed(),
        )
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{header::LAST_MODIFIED, HeaderValue};
    use tower::ServiceExt;

    use super::*;

    /// A service answering with `ETag: "v1"`, a cache policy and a body.
    fn tagged() -> impl Service<Request<Body>, Response = Response, Error = Infallible, Future: Send>
           + Clone
           + Send
           + 'static {
        tower::service_fn(|_: Request<Body>| async {
            let mut response = Response::new(Body::from("the page"));
            let headers = response.headers_mut();
            headers.insert(ETAG, HeaderValue::from_static("\"v1\""));
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=60"));
            headers.insert(
                LAST_MODIFIED,
                HeaderValue::from_static("Tue, 01 Dec 2026 10:00:00 GMT"),
            );
            Ok::<_, Infallible>(response)
        })
    }

    async fn get(if_none_match: Option<&'static str>) -> Response {
        let mut request = Request::new(Body::empty());
        if let Some(tag) = if_none_match {
            request
                .headers_mut()
                .insert(IF_NONE_MATCH, HeaderValue::from_static(tag));
        }
        EtagLayer
            .layer(tagged())
            .oneshot(request)
            .await
            .unwrap_or_else(|never| match never {})
    }

    async fn body_of(response: Response) -> Vec<u8> {
        axum::body::to_bytes(response.into_body(), 1024)
            .await
            .expect("a body")
            .to_vec()
    }

    #[tokio::test]
    async fn a_matching_tag_gets_a_bodiless_304_with_its_validators() {
        let response = get(Some("\"v1\"")).await;
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(
            response.headers().get(ETAG).map(|v| v.as_bytes()),
            Some(&b"\"v1\""[..])
        );
        assert!(response.headers().contains_key(CACHE_CONTROL));
        assert!(!response.headers().contains_key(LAST_MODIFIED));
        assert!(body_of(response).await.is_empty());
    }

    #[tokio::test]
    async fn another_tag_or_none_gets_the_full_response() {
        for offered in [None, Some("\"v0\"")] {
            let response = get(offered).await;
            assert_eq!(response.status(), StatusCode::OK, "{offered:?}");
            assert_eq!(body_of(response).await, b"the page", "{offered:?}");
        }
    }
}
