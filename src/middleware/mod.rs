//! The HTTP stack: every request passes it once, around the whole router, in every
//! environment.
//!
//! Configured as in any Loco app, under `server.middlewares` (and `server.ident`) in
//! `config/*.yaml`, with Loco's defaults for absent keys. Loco's `AppRoutes::to_router`
//! would layer each middleware onto every route; axum then clones a route's whole stack
//! of boxed services for each request. Here the stack is one service of concrete layers,
//! composed once in [`around`] (called by `Hooks::after_routes`), outermost first:
//!
//! | layer | key | from |
//! |---|---|---|
//! | answers counted by status class (`/metrics`) | — | [`http_metrics`] |
//! | `x-request-id`, the ID every log line of the request carries | `request_id` | [`request_id`] |
//! | the `http-request` span and tower-http's request events | `logger` | [`request_span`] |
//! | `x-powered-by` | `server.ident` | tower-http |
//! | security headers | `secure_headers` | [`secure_headers`], Loco's presets |
//! | a panic answers the error page | `catch_panic` | tower-http |
//! | `408` once the request has run `timeout` ms | `timeout_request` | [`timeout`] |
//! | CORS | `cors` | tower-http, built by Loco |
//! | response compression | `compression` | tower-http |
//! | the session | `settings.sessions` | [`crate::sessions::layer`] |
//! | the view engine, the body limit | —, `limit_payload` | axum |
//!
//! Inside it, beside the routes: the static files (`static`, [`static_assets`]) and
//! Tessera's 404 page for unknown addresses (`App::before_routes`).
//!
//! `etag` is never applied: no response of Tessera's carries an `ETag` (pages are
//! `no-store`, static files revalidate with `Last-Modified`), so Loco's layer would have
//! nothing to compare. `remote_ip` is not applied either: Tessera works out client
//! addresses itself. Loco's `fallback` is refused (Tessera's 404 page answers).
//!
//! `App::middlewares` hands Loco [`listing`]: entries that leave the router as it is
//! (the work is done here, once) and make `cargo loco middleware` list this stack.

pub mod http_metrics;
pub mod request_id;
pub mod request_span;
pub mod secure_headers;
pub mod static_assets;
pub mod timeout;
pub mod wrap;

use std::time::Duration;

use axum::{
    extract::DefaultBodyLimit,
    http::{HeaderName, HeaderValue},
    response::{IntoResponse, Response},
    Extension, Router as AxumRouter,
};
use loco_rs::{
    app::AppContext,
    controller::{
        middleware::{self, limit_payload::DefaultBodyLimitKind, MiddlewareLayer},
        views::{engines::TeraView, ViewEngine},
    },
    Error, Result,
};
use serde_json::{json, Value};
use tower::{layer::util::Stack, util::MapResponseLayer, ServiceBuilder};
use tower_http::{
    catch_panic::CatchPanicLayer, compression::CompressionLayer, set_header::SetResponseHeaderLayer,
};

use crate::{errors::internal_error_page, sessions::layer::SessionLayer, sessions::Sessions};

const X_POWERED_BY: HeaderName = HeaderName::from_static("x-powered-by");

/// `router` (every route, the static files and the fallback) inside the whole stack, as
/// configured.
///
/// # Errors
/// One line naming the key that cannot be honoured (Loco's `fallback`, a static
/// `fallback` file, a missing static folder, an unknown security headers preset, a
/// header value that is not one, ...), or the view engine or the session store were
/// not set up before.
pub async fn around(router: AxumRouter, ctx: &AppContext) -> Result<AxumRouter> {
    let settings = &ctx.config.server.middlewares;
    let loco = Loco::configured(ctx);
    // Written on, Loco's page would answer unknown addresses. Absent (Loco's default: on
    // outside production), Tessera's 404 page answers all the same.
    if settings
        .fallback
        .as_ref()
        .is_some_and(|fallback| fallback.enable)
    {
        return Err(refused(
            "fallback",
            "Tessera answers unknown addresses with its own 404 page; set `enable: false`",
        ));
    }
    let router = if loco.on("static") {
        let assets = settings.static_assets.clone().unwrap_or_default();
        static_assets::StaticFiles::from_config(&assets)?.route(router)
    } else {
        router
    };

    let request_id = loco.on("request_id").then_some(request_id::RequestIdLayer);
    let request_span = loco
        .on("logger")
        .then(|| Stack::new(request_span::layer(&ctx.environment), to_axum_body()));
    let powered_by = powered_by(ctx.config.server.ident.as_deref())?
        .map(|ident| SetResponseHeaderLayer::overriding(X_POWERED_BY, ident));
    let secure_headers = if loco.on("secure_headers") {
        let configured = settings.secure_headers.clone().unwrap_or_default();
        let headers = secure_headers::SecureHeaders::from_config(&configured).await;
        Some(headers.map_err(|e| refused("secure_headers", e))?)
    } else {
        None
    };
    let catch_panic = loco.on("catch_panic").then(|| {
        Stack::new(
            CatchPanicLayer::custom(panic_page as fn(_) -> _),
            to_axum_body(),
        )
    });
    let timeout = loco.on("timeout_request").then(|| {
        let configured = settings.timeout_request.clone().unwrap_or_default();
        timeout::TimeoutLayer::new(Duration::from_millis(configured.timeout))
    });
    let cors = if loco.on("cors") {
        let configured = settings.cors.clone().unwrap_or_default();
        Some(configured.cors().map_err(|e| refused("cors", e))?)
    } else {
        None
    };
    let compression = loco
        .on("compression")
        .then(|| Stack::new(CompressionLayer::new(), to_axum_body()));
    let sessions = Sessions::from_context(ctx).map_err(|e| Error::Message(e.to_string()))?;
    let views = ctx
        .shared_store
        .get::<ViewEngine<TeraView>>()
        .ok_or_else(|| Error::Message("the view engine initializer did not run".into()))?;
    let body_limit = match settings
        .limit_payload
        .clone()
        .unwrap_or_default()
        .body_limit
    {
        DefaultBodyLimitKind::Disable => DefaultBodyLimit::disable(),
        DefaultBodyLimitKind::Limit(bytes) => DefaultBodyLimit::max(bytes),
    };

    // Outermost first; `listing` names the same layers, innermost first, as Loco does.
    let stack = ServiceBuilder::new()
        .layer(http_metrics::HttpMetricsLayer::new())
        .option_layer(request_id)
        .option_layer(request_span)
        .option_layer(powered_by)
        .option_layer(secure_headers)
        .option_layer(catch_panic)
        .option_layer(timeout)
        .option_layer(cors)
        .option_layer(compression)
        .layer(SessionLayer::new(sessions))
        .layer(Extension(views))
        .layer(body_limit)
        .into_inner();
    // One concrete service around each route (a cheap clone per request), after routing:
    // a router of its own around the stack would route every request twice.
    Ok(router.layer(stack))
}

/// The stack [`around`] builds, as `cargo loco middleware` lists it: Loco's order,
/// innermost (next to the routes) first, then what never runs here, disabled. Loco
/// applies each entry to the router; these leave it as it is.
#[must_use]
pub fn listing(ctx: &AppContext) -> Vec<Box<dyn MiddlewareLayer>> {
    let loco = Loco::configured(ctx);
    let tessera = |name, config| Listed {
        name,
        enabled: true,
        config,
    };
    // Loco fills in a `fallback` file even when none is written; Tessera serves none.
    let mut static_files = loco.listed("static");
    if let Some(config) = static_files.config.as_object_mut() {
        config.remove("fallback");
    }
    let entries = [
        static_files,
        loco.listed("limit_payload"),
        tessera("view_engine", json!({})),
        tessera("session", json!({"settings": "settings.sessions"})),
        loco.listed("compression"),
        loco.listed("cors"),
        loco.listed("timeout_request"),
        loco.listed("catch_panic"),
        loco.listed("secure_headers"),
        loco.listed("powered_by"),
        loco.listed("logger"),
        loco.listed("request_id"),
        tessera("http_metrics", json!({})),
        loco.never("etag"),
        loco.never("remote_ip"),
        loco.never("fallback"),
    ];
    entries
        .into_iter()
        .map(|entry| Box::new(entry) as Box<dyn MiddlewareLayer>)
        .collect()
}

/// Loco's middlewares as configured: which are on, with Loco's defaults for absent keys
/// (`request_id`, `logger`, `catch_panic` and `etag` on; `fallback` on outside
/// production), read by Loco's own code.
struct Loco(Vec<Listed>);

impl Loco {
    fn configured(ctx: &AppContext) -> Self {
        let layers = middleware::default_middleware_stack(ctx).into_iter();
        Self(
            layers
                .map(|layer| Listed {
                    name: layer.name(),
                    enabled: layer.is_enabled(),
                    config: layer.config().unwrap_or(Value::Null),
                })
                .collect(),
        )
    }

    fn on(&self, name: &str) -> bool {
        self.0
            .iter()
            .any(|layer| layer.name == name && layer.enabled)
    }

    fn listed(&self, name: &'static str) -> Listed {
        let config = self.0.iter().find(|layer| layer.name == name);
        Listed {
            name,
            enabled: self.on(name),
            config: config.map_or(Value::Null, |layer| layer.config.clone()),
        }
    }

    /// A key Tessera reads but never applies.
    fn never(&self, name: &'static str) -> Listed {
        Listed {
            enabled: false,
            ..self.listed(name)
        }
    }
}

/// One entry of `cargo loco middleware`.
struct Listed {
    name: &'static str,
    enabled: bool,
    config: Value,
}

impl MiddlewareLayer for Listed {
    fn name(&self) -> &'static str {
        self.name
    }

    fn is_enabled(&self) -> bool {
        self.enabled
    }

    fn config(&self) -> serde_json::Result<Value> {
        Ok(self.config.clone())
    }

    /// The layer is part of [`around`]'s one stack, not added route by route.
    fn apply(&self, app: AxumRouter<AppContext>) -> Result<AxumRouter<AppContext>> {
        Ok(app)
    }
}

/// `x-powered-by` as Loco sets it: `loco.rs` without `server.ident`, none for an empty
/// one.
///
/// # Errors
/// An ident that is not a header value (Loco would send `loco.rs` instead).
fn powered_by(ident: Option<&str>) -> Result<Option<HeaderValue>> {
    match ident {
        None => Ok(Some(HeaderValue::from_static("loco.rs"))),
        Some("") => Ok(None),
        Some(ident) => HeaderValue::from_str(ident).map(Some).map_err(|_| {
            Error::Message(format!(
                "server.ident: `{ident}` is not a valid header value"
            ))
        }),
    }
}

/// The start-up error for a `server.middlewares` key that cannot be honoured.
fn refused(key: &str, why: impl std::fmt::Display) -> Error {
    let why = why.to_string();
    // Loco's own messages may already start with the key.
    let why = why.strip_prefix(&format!("{key}: ")).unwrap_or(&why);
    Error::Message(format!("server.middlewares.{key}: {why}"))
}

/// Puts axum's body back on a layer's response (tower-http layers wrap theirs).
fn to_axum_body<B>() -> MapResponseLayer<fn(axum::http::Response<B>) -> Response>
where
    axum::http::Response<B>: IntoResponse,
{
    MapResponseLayer::new(IntoResponse::into_response)
}

/// A handler that panicked: logged, and the visitor gets the error page.
fn panic_page(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
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
            Ok::<_, std::convert::Infallible>(Response::new(Body::empty()))
        });
        let response = CatchPanicLayer::custom(panic_page as fn(_) -> _)
            .layer(panics)
            .oneshot(Request::new(Body::empty()))
            .await
            .expect("the panic is caught");
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(Body::new(response.into_body()), 64 * 1024)
            .await
            .expect("a body");
        let page = String::from_utf8_lossy(&body);
        assert!(!page.contains("secret detail"), "{page}");
        assert!(
            page.contains("<html") || page.contains("<!DOCTYPE"),
            "{page}"
        );
    }

    #[test]
    fn powered_by_follows_server_ident_as_loco_does() {
        assert_eq!(
            powered_by(None).expect("valid"),
            Some(HeaderValue::from_static("loco.rs"))
        );
        assert_eq!(powered_by(Some("")).expect("valid"), None);
        assert_eq!(
            powered_by(Some("tessera")).expect("valid"),
            Some(HeaderValue::from_static("tessera"))
        );
        let error = powered_by(Some("bad\nvalue")).expect_err("refused");
        assert!(error.to_string().starts_with("server.ident: "), "{error}");
    }
}
