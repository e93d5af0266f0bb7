//! Cache policy for the static files: `Cache-Control` on what Loco's static middleware
//! serves, and a missing file answered with a 404 instead of the fallback page with 200.
//! Part of Tessera's stack around the router, so it wraps Loco's static route.

use std::{
    convert::Infallible,
    path::{Component, Path, PathBuf},
    sync::Arc,
    task::{Context, Poll},
};

use axum::{
    body::Body,
    http::{header, HeaderValue, Request, StatusCode},
    response::Response,
};
use futures::future::{BoxFuture, Either, FutureExt};
use loco_rs::app::AppContext;
use tower::{Layer, Service};

/// How long a browser may reuse a static file without asking. The URLs are not versioned
/// (templates and the error pages link `/static/app.css` as is), so a long `max-age` would
/// keep old CSS and JS in browsers for that long after a deploy. One hour covers a visit;
/// after it the browser revalidates with `If-Modified-Since` against the `Last-Modified`
/// that Loco's `ServeDir` sends, and an unchanged file costs a bodiless 304.
/// (Loco's own `static.cache_control` setting would also stamp the fallback page, so a
/// missing file would be cached as if it were one.)
const STATIC_CACHE_CONTROL: &str = "public, max-age=3600";

/// Where Loco's static middleware serves files from, as configured; the layer.
#[derive(Debug)]
pub struct StaticFolder {
    /// The URL prefix with its trailing slash, e.g. `/static/`.
    prefix: String,
    path: PathBuf,
}

impl StaticFolder {
    /// `None` when Loco's static middleware is off.
    #[must_use]
    pub fn configured(ctx: &AppContext) -> Option<Self> {
        let assets = ctx.config.server.middlewares.static_assets.as_ref()?;
        assets.enable.then(|| Self {
            prefix: format!("{}/", assets.folder.uri.trim_end_matches('/')),
            path: assets.folder.path.clone(),
        })
    }

    /// Whether `relative` (still percent-encoded, as in the URL) names a file `ServeDir`
    /// would serve; `None` when the path cannot be judged, so the response is left alone.
    async fn has_file(&self, relative: &str) -> Option<bool> {
        let decoded = percent_decode(relative)?;
        let relative = Path::new(&decoded);
        if !relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
        {
            // `..` and the like: ServeDir refuses them and answers with the fallback.
            return Some(false);
        }
        let full = self.path.join(relative);
        Some(match tokio::fs::metadata(&full).await {
            Ok(meta) if meta.is_dir() => tokio::fs::metadata(full.join("index.html"))
                .await
                .is_ok_and(|m| m.is_file()),
            Ok(meta) => meta.is_file(),
            Err(_) => false,
        })
    }
}

/// Static responses get [`STATIC_CACHE_CONTROL`]. A file that is not there gets the
/// configured fallback page from Loco's `ServeDir`, but with status 200; it is turned into
/// the 404 it is, and never cached. Requests outside the folder pass straight through.
#[derive(Debug, Clone)]
pub struct StaticCacheLayer(Arc<StaticFolder>);

impl StaticCacheLayer {
    #[must_use]
    pub fn new(folder: StaticFolder) -> Self {
        Self(Arc::new(folder))
    }
}

impl<S> Layer<S> for StaticCacheLayer {
    type Service = StaticCache<S>;

    fn layer(&self, inner: S) -> Self::Service {
        StaticCache {
            inner,
            folder: self.0.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct StaticCache<S> {
    inner: S,
    folder: Arc<StaticFolder>,
}

impl<S> Service<Request<Body>> for StaticCache<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<S::Future, BoxFuture<'static, Result<Response, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let Some(relative) = request
            .uri()
            .path()
            .strip_prefix(self.folder.prefix.as_str())
        else {
            return Either::Left(self.inner.call(request));
        };
        let relative = relative.to_string();
        let folder = self.folder.clone();
        // The file check is awaited before the inner service is called, so the service
        // that was made ready is taken along and a fresh clone stays behind.
        let fresh = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, fresh);
        Either::Right(
            async move {
                let exists = folder.has_file(&relative).await;
                let mut inner = ready;
                let mut response = inner.call(request).await?;
                mark(&mut response, exists);
                Ok(response)
            }
            .boxed(),
        )
    }
}

fn mark(response: &mut Response, exists: Option<bool>) {
    let status = response.status();
    if exists == Some(false) && status == StatusCode::OK {
        *response.status_mut() = StatusCode::NOT_FOUND;
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.remove(header::LAST_MODIFIED);
    } else if status.is_success() || status == StatusCode::NOT_MODIFIED {
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(STATIC_CACHE_CONTROL),
        );
    }
}

/// `%XX` escapes decoded as `ServeDir` does; `None` for a malformed escape or non-UTF-8.
fn percent_decode(encoded: &str) -> Option<String> {
    let bytes = encoded.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = encoded.get(i + 1..i + 3)?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(decoded).ok()
}
