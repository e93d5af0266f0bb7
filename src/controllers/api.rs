//! `GET /api/session`: the session as JSON, for scripts.
//! `GET /api/session/status`: who is logged in and the active platform, for the status
//! check of open pages (`session-sync.js`); reading it is not activity.

use loco_rs::prelude::*;
use serde::Serialize;

use crate::{
    errors::AppError,
    sessions::lifecycle::{AppSession, BackgroundCheck},
    views::session::SessionView,
};

#[derive(Debug, Serialize)]
struct SessionStatus {
    authenticated: bool,
    user_id: Option<i64>,
    active_platform_id: Option<i64>,
    created_at: Option<String>,
    last_activity: Option<String>,
    expires_at: Option<String>,
    store: &'static str,
}

#[debug_handler]
async fn session_status(session: AppSession) -> Result<Response, AppError> {
    let view = session
        .summary()
        .map(SessionView::from)
        .filter(|v| v.authenticated);
    let status = match view {
        // The view's strings move into the answer; nothing is built twice.
        Some(view) => SessionStatus {
            authenticated: true,
            user_id: view.user_id,
            active_platform_id: view.active_platform_id,
            created_at: Some(view.created_at),
            last_activity: Some(view.last_activity),
            expires_at: Some(view.expires_at),
            store: view.store,
        },
        None => SessionStatus {
            authenticated: false,
            user_id: session.user_id(),
            active_platform_id: None,
            created_at: None,
            last_activity: None,
            expires_at: None,
            store: session.store_name(),
        },
    };
    uncached(format::json(status)?)
}

#[derive(Debug, Serialize)]
struct BackgroundStatus {
    authenticated: bool,
    user_id: Option<i64>,
    active_platform_id: Option<i64>,
}

#[debug_handler]
async fn background_status(
    BackgroundCheck(session): BackgroundCheck,
) -> Result<Response, AppError> {
    uncached(format::json(BackgroundStatus {
        authenticated: session.user_id().is_some(),
        user_id: session.user_id(),
        active_platform_id: session.active_platform_id(),
    })?)
}

#[allow(clippy::unnecessary_wraps)]
fn uncached(mut response: Response) -> Result<Response, AppError> {
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

/// The handlers need no state (the session comes from the session layer), so none is
/// given: axum clones a route's state per request, and Loco's `AppContext` is a deep copy.
pub fn routes() -> Routes {
    Routes::new()
        .prefix("/api")
        .add("/session", get(session_status).with_state(()))
        .add("/session/status", get(background_status).with_state(()))
}
