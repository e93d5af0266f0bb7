//! Register, log in, log out: HTML forms over the session layer.

use axum::response::Redirect;
use axum::{extract::Query, http::StatusCode};
use loco_rs::prelude::*;
use serde::Deserialize;

use crate::{
    controllers::extract::{
        AnonymousForm, Client, CsrfForm, DeviceCookie, FormToken, SharedSessions,
    },
    errors::AppError,
    models::users::RegistrationErrors,
    sessions::{
        error::SessionError,
        lifecycle::AppSession,
        login::{self, LoginAttempt, LoginOutcome},
        signup::{self, SignUpAttempt, SignUpOutcome},
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
pub struct RegisterFields {
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

/// What a stale anonymous form (its CSRF token expired or does not fit this browser's
/// form cookie) says when it is shown again.
const FORM_EXPIRED: &str =
    "This form expired before it was sent, so nothing happened. Check the details and send it again.";

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
#[allow(clippy::too_many_arguments)]
async fn login(
    State(ctx): State<AppContext>,
    ViewEngine(v): ViewEngine<TeraView>,
    SharedSessions(sessions): SharedSessions,
    Client(client): Client,
    DeviceCookie(device): DeviceCookie,
    form_token: FormToken,
    mut session: AppSession,
    form: AnonymousForm<LoginForm>,
) -> Result<Response, AppError> {
    let form = match form {
        AnonymousForm::Fresh(form) => form,
        AnonymousForm::Stale(form) => {
            return login_refused(
                &v,
                &form_token,
                StatusCode::FORBIDDEN,
                form.email.trim(),
                FORM_EXPIRED,
            )
        }
    };
    let attempt = LoginAttempt {
        email: &form.email,
        password: &form.password,
        remember: form.remember.as_deref() == Some("on"),
    };
    let email = form.email.trim();
    match login::log_in(&ctx.db, &sessions, &mut session, attempt, client, device).await? {
        LoginOutcome::LoggedIn { device_cookie } => {
            let mut response = Redirect::to("/dashboard").into_response();
            append_cookie(&mut response, &device_cookie);
            Ok(response)
        }
        LoginOutcome::Refused => login_refused(
            &v,
            &form_token,
            StatusCode::UNPROCESSABLE_ENTITY,
            email,
            "Email or password is incorrect.",
        ),
        LoginOutcome::Throttled { retry_after } => {
            let message = format!("Too many attempts. Try again in {}.", minutes(retry_after));
            let page = login_refused(
                &v,
                &form_token,
                StatusCode::TOO_MANY_REQUESTS,
                email,
                &message,
            )?;
            Ok(with_retry_after(page, retry_after))
        }
        LoginOutcome::Busy { retry_after } => {
            let page = login_refused(
                &v,
                &form_token,
                StatusCode::SERVICE_UNAVAILABLE,
                email,
                BUSY,
            )?;
            Ok(with_retry_after(page, retry_after))
        }
    }
}

/// What a form says when password hashing is at capacity.
pub const BUSY: &str = "Too many people are signing in right now. Try again in a few seconds.";

/// "1 minute", "15 minutes": how long to wait, rounded up.
fn minutes(wait: std::time::Duration) -> String {
    let minutes = wait.as_secs().div_ceil(60).max(1);
    format!("{minutes} minute{}", if minutes == 1 { "" } else { "s" })
}

fn append_cookie(response: &mut Response, cookie: &cookie::Cookie<'_>) {
    match axum::http::HeaderValue::from_str(&cookie.encoded().to_string()) {
        Ok(value) => {
            response
                .headers_mut()
                .append(axum::http::header::SET_COOKIE, value);
        }
        Err(error) => tracing::error!(%error, "a cookie is not a valid header"),
    }
}

/// Adds `Retry-After` (whole seconds, at least one) to a 429 or 503 answer.
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
        RegisterPage {
            store_down,
            ..RegisterPage::default()
        },
        StatusCode::OK,
    )
}

/// What the registration page shows besides its token.
#[derive(Debug, Default)]
struct RegisterPage<'a> {
    store_down: bool,
    name: &'a str,
    email: &'a str,
    errors: RegistrationErrors,
    /// A message above the form.
    error: &'a str,
}

fn render_register(
    v: &TeraView,
    form_token: &FormToken,
    page: RegisterPage<'_>,
    status: StatusCode,
) -> Result<Response, AppError> {
    let RegisterPage {
        store_down,
        name,
        email,
        errors,
        error,
    } = page;
    let page = format::render().status(status).view(
        v,
        "auth/register.html",
        data!({
            "csrf_token": form_token.token(),
            "store_down": store_down,
            "error": error,
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
    SharedSessions(sessions): SharedSessions,
    Client(client): Client,
    form_token: FormToken,
    form: AnonymousForm<RegisterFields>,
) -> Result<Response, AppError> {
    let (form, stale) = match form {
        AnonymousForm::Fresh(form) => (form, false),
        AnonymousForm::Stale(form) => (form, true),
    };
    let again = |errors, error, status| {
        let page = RegisterPage {
            name: form.name.trim(),
            email: form.email.trim(),
            errors,
            error,
            ..RegisterPage::default()
        };
        render_register(&v, &form_token, page, status)
    };
    if stale {
        return again(
            RegistrationErrors::default(),
            FORM_EXPIRED,
            StatusCode::FORBIDDEN,
        );
    }
    let attempt = SignUpAttempt {
        name: &form.name,
        email: &form.email,
        password: &form.password,
    };
    match signup::sign_up(&ctx.db, &sessions, attempt, &client).await? {
        SignUpOutcome::Done => Ok(Redirect::to("/login?notice=registered").into_response()),
        SignUpOutcome::Invalid(errors) => again(errors, "", StatusCode::UNPROCESSABLE_ENTITY),
        SignUpOutcome::Throttled { retry_after } => {
            let message = format!(
                "Too many sign-ups from your network. Try again in {}.",
                minutes(retry_after)
            );
            let page = again(
                RegistrationErrors::default(),
                &message,
                StatusCode::TOO_MANY_REQUESTS,
            )?;
            Ok(with_retry_after(page, retry_after))
        }
        SignUpOutcome::Busy { retry_after } => {
            let page = again(
                RegistrationErrors::default(),
                BUSY,
                StatusCode::SERVICE_UNAVAILABLE,
            )?;
            Ok(with_retry_after(page, retry_after))
        }
    }
}

#[debug_handler]
async fn logout(
    mut session: AppSession,
    CsrfForm(_): CsrfForm<serde::de::IgnoredAny>,
) -> Result<Response, AppError> {
    session.log_out().await?;
    // "You are logged out" is carried to the login page by session-sync.js: an anonymous
    // page has no session to carry it.
    let mut response = Redirect::to("/login").into_response();
    // The browser drops what it cached of the logged-in pages. Not `"cookies"`: that
    // would also wipe the device cookie (which keeps a guesser from locking this browser
    // out) and every cookie of sibling apps on the registrable domain. The session cookie
    // is expired by its own `Set-Cookie`.
    response.headers_mut().insert(
        axum::http::HeaderName::from_static("clear-site-data"),
        axum::http::HeaderValue::from_static("\"cache\""),
    );
    Ok(response)
}

pub fn routes() -> Routes {
    Routes::new()
        .add("/login", get(login_page).post(login))
        .add("/register", get(register_page).post(register))
        .add("/logout", post(logout))
}
