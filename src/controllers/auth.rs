//! Register, log in, log out: HTML forms over the session layer.

use axum::response::Redirect;
use axum::{extract::Query, http::StatusCode};
use loco_rs::prelude::*;
use serde::Deserialize;

use crate::{
    controllers::extract::{Client, CsrfForm, FormToken, SessionLayer},
    errors::AppError,
    models::users::{self, NewUser, RegistrationErrors},
    sessions::{
        login::{self, LoginAttempt, LoginOutcome},
        AppSession, SessionError,
    },
};

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub password: String,
    /// A checkbox: present ("on") when ticked.
    #[serde(default)]
    pub remember: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct RegisterForm {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub password: String,
}

#[derive(Debug, Deserialize)]
pub struct Notice {
    #[serde(default)]
    pub notice: Option<String>,
}

/// What a flash-like `?notice=` may say: only these fixed texts, never echoed input.
fn notice_text(notice: Option<&str>) -> &'static str {
    match notice {
        Some("registered") => "Your account is ready. Log in to continue.",
        Some("logged_out") => "You are logged out.",
        _ => "",
    }
}

/// Whether the session store is down, as far as this request could tell: the page still
/// renders (its form token needs no store), with a warning that logging in will fail.
fn store_down(session: &Result<AppSession, SessionError>) -> bool {
    matches!(session, Err(SessionError::StoreUnavailable(_)))
}

#[debug_handler]
async fn login_page(
    ViewEngine(v): ViewEngine<TeraView>,
    Query(notice): Query<Notice>,
    form_token: FormToken,
    session: Result<AppSession, SessionError>,
) -> Result<Response, AppError> {
    if session.as_ref().is_ok_and(|s| s.user_id().is_some()) {
        return Ok(Redirect::to("/dashboard").into_response());
    }
    let store_down = store_down(&session);
    let page = format::render().view(
        &v,
        "auth/login.html",
        data!({
            "csrf_token": form_token.token(),
            "store_down": store_down,
            "notice": notice_text(notice.notice.as_deref()),
            "email": "",
            "error": "",
        }),
    )?;
    Ok(form_token.attach(page))
}

/// The login page again, with `error` next to the form.
fn login_refused(
    v: &TeraView,
    form_token: &FormToken,
    status: StatusCode,
    email: &str,
    error: &str,
) -> Result<Response, AppError> {
    let page = format::render().status(status).view(
        v,
        "auth/login.html",
        data!({
            "csrf_token": form_token.token(),
            "store_down": false,
            "notice": "",
            "email": email,
            "error": error,
        }),
    )?;
    Ok(form_token.attach(page))
}

#[debug_handler]
async fn login(
    State(ctx): State<AppContext>,
    ViewEngine(v): ViewEngine<TeraView>,
    SessionLayer(sessions): SessionLayer,
    Client(client): Client,
    form_token: FormToken,
    mut session: AppSession,
    CsrfForm(form): CsrfForm<LoginForm>,
) -> Result<Response, AppError> {
    let attempt = LoginAttempt {
        email: &form.email,
        password: &form.password,
        remember: form.remember.as_deref() == Some("on"),
    };
    match login::log_in(&ctx.db, &sessions, &mut session, attempt, client).await? {
        LoginOutcome::LoggedIn { .. } => Ok(Redirect::to("/dashboard").into_response()),
        LoginOutcome::Refused => login_refused(
            &v,
            &form_token,
            StatusCode::UNPROCESSABLE_ENTITY,
            form.email.trim(),
            "Email or password is incorrect.",
        ),
        LoginOutcome::Throttled { retry_after } => {
            let minutes = retry_after.as_secs().div_ceil(60).max(1);
            let message = format!(
                "Too many attempts. Try again in {minutes} minute{}.",
                if minutes == 1 { "" } else { "s" }
            );
            let page = login_refused(
                &v,
                &form_token,
                StatusCode::TOO_MANY_REQUESTS,
                form.email.trim(),
                &message,
            )?;
            Ok(with_retry_after(page, retry_after))
        }
    }
}

/// Adds `Retry-After` (whole seconds, at least one) to a 429 answer.
#[must_use]
pub fn with_retry_after(mut response: Response, wait: std::time::Duration) -> Response {
    if let Ok(value) = axum::http::HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
        response
            .headers_mut()
            .insert(axum::http::header::RETRY_AFTER, value);
    }
    response
}

#[debug_handler]
async fn register_page(
    ViewEngine(v): ViewEngine<TeraView>,
    form_token: FormToken,
    session: Result<AppSession, SessionError>,
) -> Result<Response, AppError> {
    if session.as_ref().is_ok_and(|s| s.user_id().is_some()) {
        return Ok(Redirect::to("/dashboard").into_response());
    }
    let store_down = store_down(&session);
    render_register(
        &v,
        &form_token,
        store_down,
        "",
        "",
        &RegistrationErrors::default(),
        StatusCode::OK,
    )
}

fn render_register(
    v: &TeraView,
    form_token: &FormToken,
    store_down: bool,
    name: &str,
    email: &str,
    errors: &RegistrationErrors,
    status: StatusCode,
) -> Result<Response, AppError> {
    let page = format::render().status(status).view(
        v,
        "auth/register.html",
        data!({
            "csrf_token": form_token.token(),
            "store_down": store_down,
            "name": name,
            "email": email,
            "errors": {
                "name": errors.name.unwrap_or_default(),
                "email": errors.email.unwrap_or_default(),
                "password": errors.password.unwrap_or_default(),
            },
        }),
    )?;
    Ok(form_token.attach(page))
}

#[debug_handler]
async fn register(
    State(ctx): State<AppContext>,
    ViewEngine(v): ViewEngine<TeraView>,
    SessionLayer(sessions): SessionLayer,
    Client(client): Client,
    form_token: FormToken,
    CsrfForm(form): CsrfForm<RegisterForm>,
) -> Result<Response, AppError> {
    let new_user = match NewUser::parse(&form.name, &form.email, &form.password) {
        Ok(new_user) => new_user,
        Err(errors) => {
            return render_register(
                &v,
                &form_token,
                false,
                form.name.trim(),
                form.email.trim(),
                &errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
        }
    };
    // A taken email gets the same answer as a free one (and costs the same argon2 hash):
    // the form must not tell a stranger who has an account. The owner of the email just
    // logs in with the password they already have.
    match users::Model::create_with_password(&ctx.db, &new_user, false).await {
        Ok(user) => sessions.registered(user.id, client),
        Err(ModelError::EntityAlreadyExists) => {
            tracing::info!("registration for an email that has an account");
        }
        Err(e) => return Err(e.into()),
    }
    Ok(Redirect::to("/login?notice=registered").into_response())
}

#[debug_handler]
async fn logout(
    mut session: AppSession,
    CsrfForm(_): CsrfForm<serde::de::IgnoredAny>,
) -> Result<Response, AppError> {
    session.log_out().await?;
    // "You are logged out" is carried to the login page by session-sync.js: the response
    // clears every cookie of the site, and an anonymous page has no session to carry it.
    let mut response = Redirect::to("/login").into_response();
    // Tell the browser to drop every cookie of this origin, not only the session's.
    response.headers_mut().insert(
        axum::http::HeaderName::from_static("clear-site-data"),
        axum::http::HeaderValue::from_static("\"cookies\""),
    );
    Ok(response)
}

pub fn routes() -> Routes {
    Routes::new()
        .add("/login", get(login_page).post(login))
        .add("/register", get(register_page).post(register))
        .add("/logout", post(logout))
}
