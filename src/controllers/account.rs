//! The account page: change one's password. A new password is a privilege change: every
//! other session of the user ends, and this one gets a new ID.

use axum::{http::StatusCode, response::Redirect};
use loco_rs::prelude::*;
use serde::Deserialize;

use crate::{
    controllers::{
        auth::{with_retry_after, BUSY},
        extract::{Client, CsrfForm, CurrentUser, DeviceCookie, SharedSessions},
    },
    errors::AppError,
    models::users::{check_new_password, AccountError},
    sessions::{
        hashing::{HashingError, RETRY_AFTER},
        login::{self, PasswordCheck},
    },
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

/// The page with `errors` for a 429 or 503: the browser may try again after `wait`.
async fn render_later(
    v: &TeraView,
    current: &mut CurrentUser,
    errors: (&str, &str),
    status: StatusCode,
    wait: std::time::Duration,
) -> Result<Response, AppError> {
    let page = render(v, current, errors, status).await?;
    Ok(with_retry_after(page, wait))
}

#[debug_handler(state = AppContext)]
async fn show(
    ViewEngine(v): ViewEngine<TeraView>,
    mut current: CurrentUser,
) -> Result<Response, AppError> {
    render(&v, &mut current, ("", ""), StatusCode::OK).await
}

#[debug_handler(state = AppContext)]
#[allow(clippy::too_many_arguments)]
async fn change_password(
    State(ctx): State<AppContext>,
    ViewEngine(v): ViewEngine<TeraView>,
    SharedSessions(sessions): SharedSessions,
    Client(client): Client,
    DeviceCookie(device): DeviceCookie,
    mut current: CurrentUser,
    CsrfForm(form): CsrfForm<PasswordForm>,
) -> Result<Response, AppError> {
    let new_error = check_new_password(&form.new_password)
        .err()
        .unwrap_or_default();
    let check = login::check_current_password(
        &sessions,
        &current.session,
        &current.user,
        &form.current_password,
        &client,
        device.as_ref(),
    )
    .await?;
    let current_error = match check {
        PasswordCheck::Correct => "",
        PasswordCheck::Wrong => "That is not your current password.",
        PasswordCheck::Throttled { retry_after } => {
            return render_later(
                &v,
                &mut current,
                ("Too many wrong passwords. Try again later.", new_error),
                StatusCode::TOO_MANY_REQUESTS,
                retry_after,
            )
            .await;
        }
        PasswordCheck::Busy { retry_after } => {
            return render_later(
                &v,
                &mut current,
                (BUSY, new_error),
                StatusCode::SERVICE_UNAVAILABLE,
                retry_after,
            )
            .await;
        }
    };
    if !current_error.is_empty() || !new_error.is_empty() {
        return render(
            &v,
            &mut current,
            (current_error, new_error),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }

    let changed = match current
        .user
        .set_password(&ctx.db, sessions.hashing(), &form.new_password)
        .await
    {
        Ok(changed) => changed,
        Err(AccountError::Hashing(HashingError::Busy { .. })) => {
            return render_later(
                &v,
                &mut current,
                ("", BUSY),
                StatusCode::SERVICE_UNAVAILABLE,
                RETRY_AFTER,
            )
            .await;
        }
        Err(error) => return Err(error.into()),
    };
    let ended = current
        .session
        .password_changed(changed.credential_generation)
        .await?;
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
