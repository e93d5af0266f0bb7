//! The landing page of a logged-in user: what their session is.

use axum::response::Redirect;
use loco_rs::prelude::*;

use crate::{
    controllers::{extract::CurrentUser, Shared},
    errors::AppError,
    sessions::{error::SessionError, lifecycle::AppSession},
    views::session::SessionView,
};

/// `/`: the dashboard when logged in, else the login page.
#[debug_handler]
async fn root(session: Result<AppSession, SessionError>) -> Response {
    let logged_in = session.as_ref().is_ok_and(|s| s.user_id().is_some());
    Redirect::to(if logged_in { "/dashboard" } else { "/login" }).into_response()
}

#[debug_handler(state = Shared)]
async fn dashboard(
    ViewEngine(v): ViewEngine<TeraView>,
    mut current: CurrentUser,
) -> Result<Response, AppError> {
    let layout = current.layout().await?;
    let session = current
        .session
        .summary()
        .map(SessionView::from)
        .ok_or(AppError::LoginRequired)?;
    Ok(format::render().view(
        &v,
        "dashboard/show.html",
        data!({ "layout": layout, "session": session }),
    )?)
}

/// Both carry [`Shared`] (or no) state: no per-request copy of the app's `Config`.
pub fn routes(shared: &Shared) -> Routes {
    Routes::new()
        .add("/", get(root).with_state(()))
        .add("/dashboard", get(dashboard).with_state(shared.clone()))
}
