//! Cache policy for the static files: `Cache-Control` on what Loco's static middleware
//! serves, and a missing file answered with a 404 instead of the fallback page with 200.
//! Applied after the middleware stack, so it wraps Loco's static middleware.

use std::{
    path::{Component, Path, PathBuf},
    sync::Arc,
};

use async_trait::async_trait;
use axum::{
    extract::{Request, State},
    http::{header, HeaderValue, StatusCode},
    middleware::{self, Next},
    response::Response,
    Router as AxumRouter,
};
use loco_rs::{
    app::{AppContext, Initializer},
    Result,
};

pub struct StaticCacheInitializer;

#[async_trait]
impl Initializer for StaticCacheInitializer {
    fn name(&self) -> String {
        "static-cache".to_string()
    }

    async fn after_routes(&self, router: AxumRouter, ctx: &AppContext) -> Result<AxumRouter> {
        Ok(match StaticFolder::configured(ctx) {
            Some(folder) => router.layer(middleware::from_fn_with_state(
                Arc::new(folder),
                cache_static_assets,
            )),
            None => router,
        })
    }
}

/// How long a browser may reuse a static file without asking. The URLs are not versioned
/// (templates and the error pages link `/static/app.css` as is), so a long `max-age` would
/// keep old CSS and JS in browsers for that long after a deploy. One hour covers a visit;
/// after it the browser revalidates with `If-Modified-Since` against the `Last-Modified`
/// that Loco's `ServeDir` sends, and an unchanged file costs a bodiless 304.
/// (Loco's own `static.cache_control` setting would also stamp the fallback page, so a
/// missing file would be cached as if it were one.)
const STATIC_CACHE_CONTROL: &str = "public, max-age=3600";

/// Where Loco's static middleware serves files from, as configured.
#[derive(Debug)]
struct StaticFolder {
    /// The URL prefix with its trailing slash, e.g. `/static/`.
    prefix: String,
    path: PathBuf,
}

impl StaticFolder {
    fn configured(ctx: &AppContext) -> Option<Self> {
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
/// the 404 it is, and never cached.
async fn cache_static_assets(
    State(folder): State<Arc<StaticFolder>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(relative) = request.uri().path().strip_prefix(folder.prefix.as_str()) else {
        return next.run(request).await;
    };
    let exists = folder.has_file(relative).await;
    let mut response = next.run(request).await;
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
    response
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
