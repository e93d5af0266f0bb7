//! The HTTP stack: every request passes it once, around the whole router.
//!
//! Configured as usual under `server.middlewares` in `config/*.yaml`. Loco's own
//! `AppRoutes::to_router` would layer each middleware onto every route before
//! `with_state`; axum then clones a route's whole stack of boxed services for each
//! request, down to the handler's `AppContext`, whose `Config` is a deep copy. Here the
//! stack is one service of concrete layers, cloned cheaply:
//!
//! | outermost first | from |
//! |---|---|
//! | request ID (`x-request-id`) | [`request_id`]; Loco's own while `logger` (the per-request span) is on |
//! | security headers | [`secure_headers`], Loco's presets and overrides |
//! | `ETag` / `If-None-Match` | [`etag`] |
//! | session | [`crate::sessions::layer`] |
//! | static files' cache policy | [`static_cache`] |
//! | view engine, body limit, catch-panic | axum and tower-http layers |
//! | the rest of Loco's stack, as configured (static files, CORS, timeout, compression, remote IP, logger, ...) | Loco, applied to the router |
//!
//! `App::middlewares` therefore hands Loco an empty list, and `cargo loco middleware`
//! lists nothing; this module is the list.

pub mod etag;
pub mod http_metrics;
pub mod request_id;
pub mod secure_headers;
pub mod static_cache;

use axum::{extract::DefaultBodyLimit, response::IntoResponse, Extension, Router as AxumRouter};
use loco_rs::{
    app::AppContext,
    controller::{
        middleware::{self, limit_payload::DefaultBodyLimitKind, MiddlewareLayer},
        views::{engines::TeraView, ViewEngine},
    },
    Error, Result,
};
use tower::{layer::util::Stack, util::MapResponseLayer, ServiceBuilder};
use tower_http::catch_panic::CatchPanicLayer;

use crate::{errors::internal_error_page, sessions::layer::SessionLayer, sessions::Sessions};

/// Names of Loco's middlewares this module implements itself.
const NATIVE: [&str; 5] = [
    "limit_payload",
    "catch_panic",
    "etag",
    "secure_headers",
    "request_id",
];

/// `router` (every route and the fallback) inside the whole stack, as configured.
///
/// # Errors
/// When a middleware cannot be configured (a missing static folder, an unknown security
/// headers preset) or the view engine or the session store were not set up before.
pub async fn around(router: AxumRouter, ctx: &AppContext) -> Result<AxumRouter> {
    let settings = &ctx.config.server.middlewares;
    let spans = loco_layers(ctx).any(|layer| layer.name() == "logger");
    // Loco's span reads the request ID from Loco's own extension, so with spans on the
    // ID is Loco's too.
    let native = |name: &str| NATIVE.contains(&name) && !(spans && name == "request_id");

    // The routes already hold their state; this only lets Loco's layers take the router.
    let mut inner: AxumRouter<AppContext> = router.with_state(());
    for layer in loco_layers(ctx).filter(|layer| !native(layer.name())) {
        inner = layer.apply(inner)?;
        tracing::info!(name = layer.name(), "+middleware (Loco's)");
    }
    let inner = inner.with_state(ctx.clone());

    let enabled = |name: &str| native(name) && loco_layers(ctx).any(|l| l.name() == name);
    let request_id = enabled("request_id").then_some(request_id::RequestIdLayer);
    let secure_headers = match settings.secure_headers.as_ref().filter(|s| s.enable) {
        Some(config) => Some(secure_headers::SecureHeaders::from_config(config).await?),
        None => None,
    };
    let etag = enabled("etag").then_some(etag::EtagLayer);
    let static_cache =
        static_cache::StaticFolder::configured(ctx).map(static_cache::StaticCacheLayer::new);
    let body_limit = match settings
        .limit_payload
        .clone()
        .unwrap_or_default()
        .body_limit
    {
        DefaultBodyLimitKind::Disable => DefaultBodyLimit::disable(),
        DefaultBodyLimitKind::Limit(bytes) => DefaultBodyLimit::max(bytes),
    };
    // tower-http's catch-panic answers with its own body type; axum's is put back.
    let catch_panic = enabled("catch_panic").then(|| {
        Stack::new(
            CatchPanicLayer::custom(panic_page as fn(_) -> _),
            MapResponseLayer::new(IntoResponse::into_response),
        )
    });
    let sessions = Sessions::from_context(ctx).map_err(|e| Error::Message(e.to_string()))?;
    let views = ctx
        .shared_store
        .get::<ViewEngine<TeraView>>()
        .ok_or_else(|| Error::Message("the view engine initializer did not run".into()))?;

    for (name, on) in [
        ("request_id", request_id.is_some()),
        ("secure_headers", secure_headers.is_some()),
        ("etag", etag.is_some()),
        ("session", true),
        ("static_cache", static_cache.is_some()),
        ("view_engine", true),
        ("limit_payload", true),
        ("catch_panic", catch_panic.is_some()),
    ] {
        if on {
            tracing::info!(name, "+middleware (Tessera's)");
        }
    }
    let stack = ServiceBuilder::new()
        .layer(http_metrics::HttpMetricsLayer::new())
        .option_layer(request_id)
        .option_layer(secure_headers)
        .option_layer(etag)
        .layer(SessionLayer::new(sessions))
        .option_layer(static_cache)
        .layer(Extension(views))
        .layer(body_limit)
        .option_layer(catch_panic)
        .into_inner();
    // One concrete service around each route (a cheap clone per request), after routing:
    // a router of its own around the stack would route every request twice.
    Ok(inner.layer(stack))
}

/// Loco's middlewares as configured, enabled ones only, innermost first.
fn loco_layers(ctx: &AppContext) -> impl Iterator<Item = Box<dyn MiddlewareLayer>> {
    middleware::default_middleware_stack(ctx)
        .into_iter()
        .filter(|layer| layer.is_enabled())
}

/// A handler that panicked: logged, and the visitor gets the error page.
fn panic_page(panic: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("no message");
    tracing::error!(panic = message, "a request handler panicked");
    internal_error_page()
}

#[cfg(test)]
mod tests {
    use axum::{body::Body, http::Request, http::StatusCode};
    use tower::{Layer, ServiceExt};

    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_gets_the_error_page_without_its_message() {
        let panics = tower::service_fn(|_: Request<Body>| async {
            if true {
                panic!("secret detail");
            }
            Ok::<_, std::convert::Infallible>(axum::response::Response::new(Body::empty()))
        });
        let response = CatchPanicLayer::custom(panic_page as fn(_) -> _)
            .layer(panics)
            .oneshot(Request::new(Body::empty()))
            .await
            .expect("the panic is caught");
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(axum::body::Body::new(response.into_body()), 64 * 1024)
            .await
            .expect("a body");
        let page = String::from_utf8_lossy(&body);
        assert!(!page.contains("secret detail"), "{page}");
        assert!(
            page.contains("<html") || page.contains("<!DOCTYPE"),
            "{page}"
        );
    }
}
