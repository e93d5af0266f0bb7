//! "My sessions": see where you are logged in, end one session or all the others.

use axum::{extract::Path, response::Redirect};
use loco_rs::prelude::*;

use crate::{
    controllers::extract::{CsrfForm, CurrentUser, SharedSessions},
    errors::AppError,
    sessions::{events::EndReason, keys::SessionRef},
    views::sessions::OwnSessionRow,
};

#[debug_handler(state = AppContext)]
async fn index(
    ViewEngine(v): ViewEngine<TeraView>,
    SharedSessions(sessions): SharedSessions,
    mut current: CurrentUser,
) -> Result<Response, AppError> {
    let layout = current.layout().await?;
    let current_ref = current.session.session_ref();
    let rows = sessions.live_sessions_of(current.user.id).await?;
    let list: Vec<_> = rows
        .iter()
        .map(|row| OwnSessionRow::of(row, current_ref.as_ref()))
        .collect();
    Ok(format::render().view(
        &v,
        "sessions/index.html",
        data!({ "layout": layout, "sessions": list }),
    )?)
}

#[debug_handler(state = AppContext)]
async fn revoke(
    SharedSessions(sessions): SharedSessions,
    Path(session_ref): Path<String>,
    mut current: CurrentUser,
    CsrfForm(_): CsrfForm<serde::de::IgnoredAny>,
) -> Result<Response, AppError> {
    let session_ref = SessionRef::parse(&session_ref).ok_or(AppError::NotFound)?;
    if current.session.session_ref().as_ref() == Some(&session_ref) {
        current.session.log_out().await?;
        return Ok(Redirect::to("/login").into_response());
    }
    let owner = current.session.actor().ok_or(AppError::LoginRequired)?;
    // Only one's own sessions: another user's ref is "not found".
    if !sessions
        .revoke_own(&owner, &session_ref, EndReason::RevokedByUser)
        .await?
    {
        return Err(AppError::NotFound);
    }
    current.session.flash("Session ended.").await?;
    Ok(Redirect::to("/sessions").into_response())
}

#[debug_handler(state = AppContext)]
async fn revoke_others(
    SharedSessions(sessions): SharedSessions,
    mut current: CurrentUser,
    CsrfForm(_): CsrfForm<serde::de::IgnoredAny>,
) -> Result<Response, AppError> {
    let keep = current.session.session_ref();
    let ended = sessions
        .revoke_user(
            current.user.id,
            keep.as_ref(),
            EndReason::RevokedByUser,
            current.session.actor().as_ref(),
        )
        .await?;
    let message = match ended {
        1 => "Your other session was ended.".to_string(),
        n => format!("{n} other sessions were ended."),
    };
    current.session.flash(message).await?;
    Ok(Redirect::to("/sessions").into_response())
}

pub fn routes() -> Routes {
    Routes::new()
        .prefix("/sessions")
        .add("/", get(index))
        .add("/revoke-others", post(revoke_others))
        .add("/{session_ref}/revoke", post(revoke))
}
