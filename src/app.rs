//! The table of contents: routes, initializers, tasks and workers of Tessera.

use async_trait::async_trait;
use axum::{response::IntoResponse, Router as AxumRouter};
use loco_rs::{
    app::{AppContext, Hooks, Initializer},
    bgworker::Queue,
    boot::{create_app, BootResult, StartMode},
    config::Config,
    controller::{middleware::MiddlewareLayer, AppRoutes},
    db::truncate_table,
    environment::Environment,
    task::Tasks,
    Result,
};
use migration::Migrator;
use std::path::Path;

use crate::{
    controllers::{self, Shared},
    errors::AppError,
    initializers, logger, middleware,
    models::_entities::{
        platforms, session_event_counts, session_events, session_records, user_sessions, users,
    },
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

    /// Before the server starts: the view engine is built and the session store opened
    /// and checked; [`Hooks::after_routes`] puts both into the stack around the router.
    async fn initializers(_ctx: &AppContext) -> Result<Vec<Box<dyn Initializer>>> {
        Ok(vec![
            Box::new(initializers::view_engine::ViewEngineInitializer),
            Box::new(initializers::sessions::SessionsInitializer),
        ])
    }

    /// Loco's log output as configured, each line of a request carrying its ID.
    fn init_logger(ctx: &AppContext) -> Result<bool> {
        logger::init::<Self>(&ctx.config.logger)?;
        Ok(true)
    }

    /// The stack as `cargo loco middleware` lists it. Each entry leaves the routes as
    /// they are: the stack, as configured, is applied once around the whole router in
    /// [`Hooks::after_routes`] (see [`middleware`]).
    fn middlewares(ctx: &AppContext) -> Vec<Box<dyn MiddlewareLayer>> {
        middleware::listing(ctx)
    }

    /// Unknown addresses get Tessera's own 404 page (Loco's fallback page is switched off
    /// in the config); set first so every middleware applies to it too.
    async fn before_routes(_ctx: &AppContext) -> Result<AxumRouter<AppContext>> {
        Ok(AxumRouter::new().fallback(|| async { AppError::NotFound.into_response() }))
    }

    async fn after_routes(router: AxumRouter, ctx: &AppContext) -> Result<AxumRouter> {
        middleware::around(router, ctx).await
    }

    fn routes(ctx: &AppContext) -> AppRoutes {
        let shared = Shared::new(ctx);
        AppRoutes::empty() // controller routes below
            .add_route(controllers::dashboard::routes(&shared))
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
        truncate_table(&ctx.db, session_event_counts::Entity).await?;
        truncate_table(&ctx.db, user_sessions::Entity).await?;
        truncate_table(&ctx.db, platforms::Entity).await?;
        truncate_table(&ctx.db, users::Entity).await?;
        // The login throttle's counters are raw SQL (one atomic upsert), with no entity.
        sea_orm::ConnectionTrait::execute_unprepared(&ctx.db, "DELETE FROM throttle_counters")
            .await?;
        Ok(())
    }

    async fn seed(_ctx: &AppContext, _base: &Path) -> Result<()> {
        Ok(())
    }
}
