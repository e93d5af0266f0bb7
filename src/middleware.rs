//! Loco's middleware stack (request ID, logger, catch-panic, ETag, secure headers, static
//! files, ...), configured as usual under `server.middlewares` in `config/*.yaml`, but
//! applied once around the finished router instead of once per route.
//!
//! Why: Loco's `AppRoutes::to_router` layers each middleware onto every route before
//! `with_state`, so a request passes a dozen per-route boxed layers, and axum clones a
//! route's whole service stack for each request, including the `AppContext` in its
//! handler, whose `Config` is a deep copy (about 40 allocations). Around the router the
//! same layers wrap one service whose state is a cheap `Router` (an `Arc`), and the
//! request meets them in the same order as before. `App::middlewares` therefore hands
//! Loco an empty list (so `cargo loco middleware` lists nothing; this module is the list).

use axum::Router as AxumRouter;
use loco_rs::{
    app::AppContext,
    controller::middleware::{self, MiddlewareLayer},
    Result,
};

/// `router` (every route and the fallback) wrapped in Loco's default stack as configured,
/// outermost last, as Loco itself orders it.
///
/// # Errors
/// When a middleware cannot be applied (e.g. the static folder is missing).
pub fn around(router: AxumRouter, ctx: &AppContext) -> Result<AxumRouter> {
    let mut app: AxumRouter<AppContext> = AxumRouter::new().fallback_service(router);
    for layer in enabled(ctx) {
        app = layer.apply(app)?;
        tracing::info!(name = layer.name(), "+middleware (around the router)");
    }
    Ok(app.with_state(ctx.clone()))
}

fn enabled(ctx: &AppContext) -> impl Iterator<Item = Box<dyn MiddlewareLayer>> {
    middleware::default_middleware_stack(ctx)
        .into_iter()
        .filter(|layer| layer.is_enabled())
}
