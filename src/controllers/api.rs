//! `GET /api/session`: the session as JSON, for scripts.
//! `GET /api/session/status`: who is logged in and the active platform, for the status
//! check of open pages (`session-sync.js`); reading it is not activity.

use loco_rs::prelude::*;
use serde::Serialize;

use crate::{
    errors::AppError,
    sessions::{session::BackgroundCheck, AppSession},
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
    let view = session.view().filter(|v| v.authenticated);
    let status = SessionStatus {
        authenticated: view.is_some(),
        user_id: session.user_id(),
        active_platform_id: view.as_ref().and_then(|v| v.active_platform_id),
        created_at: view.as_ref().map(|v| v.created_at.clone()),
        last_activity: view.as_ref().map(|v| v.last_activity.clone()),
        expires_at: view.as_ref().map(|v| v.expires_at.clone()),
        store: session.store_name(),
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

pub fn routes() -> Routes {
    Routes::new()
        .prefix("/api")
        .add("/session", get(session_status))
        .add("/session/status", get(background_status))
}
