//! The account page: change one's password. A new password is a privilege change: every
//! other session of the user ends, and this one gets a new ID.

use axum::{http::StatusCode, response::Redirect};
use loco_rs::prelude::*;
use serde::Deserialize;

use crate::{
    controllers::extract::{CsrfForm, CurrentUser},
    errors::AppError,
    models::users::{MAX_PASSWORD_LEN, MIN_PASSWORD_LEN},
};

#[derive(Debug, Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    pub current_password: String,
    #[serde(default)]
    pub new_password: String,
}

async fn render(
    v: &TeraView,
    current: &mut CurrentUser,
    errors: (&str, &str),
    status: StatusCode,
) -> Result<Response, AppError> {
    let layout = current.layout().await?;
    Ok(format::render().status(status).view(
        v,
        "account/show.html",
        data!({
            "layout": layout,
            "errors": { "current_password": errors.0, "new_password": errors.1 },
        }),
    )?)
}

#[debug_handler(state = AppContext)]
async fn show(
    ViewEngine(v): ViewEngine<TeraView>,
    mut current: CurrentUser,
) -> Result<Response, AppError> {
    render(&v, &mut current, ("", ""), StatusCode::OK).await
}

#[debug_handler(state = AppContext)]
async fn change_password(
    State(ctx): State<AppContext>,
    ViewEngine(v): ViewEngine<TeraView>,
    mut current: CurrentUser,
    CsrfForm(form): CsrfForm<PasswordForm>,
) -> Result<Response, AppError> {
    let length = form.new_password.chars().count();
    let new_error = if length < MIN_PASSWORD_LEN {
        "Use at least 8 characters."
    } else if length > MAX_PASSWORD_LEN {
        "Use at most 128 characters."
    } else {
        ""
    };
    let current_ok = current.user.verify_password(&form.current_password).await?;
    let current_error = if current_ok {
        ""
    } else {
        "That is not your current password."
    };
    if !current_ok || !new_error.is_empty() {
        return render(
            &v,
            &mut current,
            (current_error, new_error),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }

    current
        .user
        .set_password(&ctx.db, &form.new_password)
        .await?;
    let ended = current.session.password_changed().await?;
    let others = match ended {
        0 => String::new(),
        1 => " Your other session was ended.".to_string(),
        n => format!(" Your {n} other sessions were ended."),
    };
    current
        .session
        .flash(format!("Password changed.{others}"))
        .await?;
    Ok(Redirect::to("/account").into_response())
}

pub fn routes() -> Routes {
    Routes::new()
        .prefix("/account")
        .add("/", get(show))
        .add("/password", post(change_password))
}
