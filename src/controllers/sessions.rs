//! "My sessions": see where you are logged in, end one session or all the others.

use axum::{extract::Path, response::Redirect};
use loco_rs::prelude::*;
use serde_json::json;

use crate::{
    controllers::extract::{CsrfForm, CurrentUser, SessionLayer},
    errors::AppError,
    sessions::{registry::EndReason, SessionRef},
};

/// "Firefox on Linux" from a user agent; "Unknown browser" when it says nothing useful.
fn device(user_agent: &str) -> String {
    match woothee::parser::Parser::new().parse(user_agent) {
        Some(ua) if ua.name != "UNKNOWN" => {
            if ua.os == "UNKNOWN" {
                ua.name.to_string()
            } else {
                format!("{} on {}", ua.name, ua.os)
            }
        }
        _ => "Unknown browser".to_string(),
    }
}

#[debug_handler(state = AppContext)]
async fn index(
    ViewEngine(v): ViewEngine<TeraView>,
    SessionLayer(sessions): SessionLayer,
    mut current: CurrentUser,
) -> Result<Response, AppError> {
    let layout = current.layout().await?;
    let current_ref = current.session.session_ref();
    let rows = sessions.live_sessions_of(current.user.id).await?;
    let list: Vec<_> = rows
        .iter()
        .map(|row| {
            json!({
                "ref": row.session_ref,
                "device": device(&row.user_agent),
                "user_agent": row.user_agent,
                "ip": row.ip.clone().unwrap_or_default(),
                "created_at": row.created_at.to_rfc3339(),
                "last_seen_at": row.last_seen_at.to_rfc3339(),
                "current": current_ref.as_ref().is_some_and(|r| r.as_str() == row.session_ref),
            })
        })
        .collect();
    Ok(format::render().view(
        &v,
        "sessions/index.html",
        data!({ "layout": layout, "sessions": list }),
    )?)
}

#[debug_handler(state = AppContext)]
async fn revoke(
    SessionLayer(sessions): SessionLayer,
    Path(session_ref): Path<String>,
    mut current: CurrentUser,
    CsrfForm(_): CsrfForm<serde::de::IgnoredAny>,
) -> Result<Response, AppError> {
    let session_ref = SessionRef::parse(&session_ref).ok_or(AppError::NotFound)?;
    if current.session.session_ref().as_ref() == Some(&session_ref) {
        current.session.log_out().await?;
        return Ok(Redirect::to("/login").into_response());
    }
    // Only one's own sessions: another user's ref is "not found".
    if !sessions
        .revoke_own(current.user.id, &session_ref, EndReason::RevokedByUser)
        .await?
    {
        return Err(AppError::NotFound);
    }
    current.session.flash("Session ended.").await?;
    Ok(Redirect::to("/sessions").into_response())
}

#[debug_handler(state = AppContext)]
async fn revoke_others(
    SessionLayer(sessions): SessionLayer,
    mut current: CurrentUser,
    CsrfForm(_): CsrfForm<serde::de::IgnoredAny>,
) -> Result<Response, AppError> {
    let keep = current.session.session_ref();
    let ended = sessions
        .revoke_user(current.user.id, keep.as_ref(), EndReason::RevokedByUser)
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
