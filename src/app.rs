//! The table of contents: routes, initializers, tasks and workers of Tessera.

use async_trait::async_trait;
use loco_rs::{
    app::{AppContext, Hooks, Initializer},
    bgworker::Queue,
    boot::{create_app, BootResult, StartMode},
    config::Config,
    controller::AppRoutes,
    db::truncate_table,
    environment::Environment,
    task::Tasks,
    Result,
};
use migration::Migrator;
use std::{
    path::{Component, Path, PathBuf},
    sync::Arc,
};

#[allow(unused_imports)]
use axum::{
    extract::{Request, State},
    http::{header, HeaderValue, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    Router as AxumRouter,
};

use crate::{
    controllers,
    errors::AppError,
    initializers,
    models::_entities::{platforms, session_events, session_records, user_sessions, users},
    tasks,
};

pub struct App;
#[async_trait]
impl Hooks for App {
    fn app_name() -> &'static str {
        env!("CARGO_CRATE_NAME")
    }

    fn app_version() -> String {
        format!(
            "{} ({})",
            env!("CARGO_PKG_VERSION"),
            option_env!("BUILD_SHA").unwrap_or("dev")
        )
    }

    async fn boot(
        mode: StartMode,
        environment: &Environment,
        config: Config,
    ) -> Result<BootResult> {
        create_app::<Self, Migrator>(mode, environment, config).await
    }

    async fn initializers(_ctx: &AppContext) -> Result<Vec<Box<dyn Initializer>>> {
        Ok(vec![
            Box::new(initializers::view_engine::ViewEngineInitializer),
            Box::new(initializers::sessions::SessionsInitializer),
        ])
    }

    /// Unknown addresses get Tessera's own 404 page (Loco's fallback page is switched off
    /// in the config); set first so every middleware applies to it too.
    async fn before_routes(_ctx: &AppContext) -> Result<AxumRouter<AppContext>> {
        Ok(AxumRouter::new().fallback(|| async { AppError::NotFound.into_response() }))
    }

    /// Files under `/static` get a cache policy, and a missing one answers 404 (see
    /// [`cache_static_assets`]); set last so it wraps Loco's static middleware.
    async fn after_routes(router: AxumRouter, ctx: &AppContext) -> Result<AxumRouter> {
        Ok(match StaticFolder::configured(ctx) {
            Some(folder) => router.layer(middleware::from_fn_with_state(
                Arc::new(folder),
                cache_static_assets,
            )),
            None => router,
        })
    }

    fn routes(_ctx: &AppContext) -> AppRoutes {
        AppRoutes::empty() // controller routes below
            .add_route(controllers::dashboard::routes())
            .add_route(controllers::auth::routes())
            .add_route(controllers::platforms::routes())
            .add_route(controllers::sessions::routes())
            .add_route(controllers::account::routes())
            .add_route(controllers::admin::routes())
            .add_route(controllers::api::routes())
            .add_route(controllers::health::routes())
    }

    async fn connect_workers(_ctx: &AppContext, _queue: &Queue) -> Result<()> {
        Ok(())
    }

    #[allow(unused_variables)]
    fn register_tasks(tasks: &mut Tasks) {
        // tasks-inject (do not remove)
        tasks.register(tasks::users_create::UsersCreate);
        tasks.register(tasks::sessions_stats::SessionsStats);
        tasks.register(tasks::sessions_list::SessionsList);
        tasks.register(tasks::sessions_revoke::SessionsRevoke);
        tasks.register(tasks::sessions_cleanup::SessionsCleanup);
        tasks.register(tasks::sessions_migrate::SessionsMigrate);
    }

    async fn truncate(ctx: &AppContext) -> Result<()> {
        truncate_table(&ctx.db, session_records::Entity).await?;
        truncate_table(&ctx.db, session_events::Entity).await?;
        truncate_table(&ctx.db, user_sessions::Entity).await?;
        truncate_table(&ctx.db, platforms::Entity).await?;
        truncate_table(&ctx.db, users::Entity).await?;
        Ok(())
    }

    async fn seed(_ctx: &AppContext, _base: &Path) -> Result<()> {
        Ok(())
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
