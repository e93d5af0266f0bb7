//! Register, log in, log out: HTML forms over the session layer.

use axum::response::Redirect;
use axum::{extract::Query, http::StatusCode};
use loco_rs::prelude::*;
use serde::Deserialize;

use crate::{
    controllers::extract::{Client, CsrfForm, SessionLayer},
    errors::AppError,
    models::users::{self, EmailAddress, NewUser, RegistrationErrors},
    sessions::{
        audit::{AuditEvent, EventKind},
        layer::ServeWithoutSession,
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

/// The CSRF token for an anonymous form page. When the store is down the page still
/// renders (with a warning) instead of failing: nobody needs a session to read it.
async fn form_token(session: Result<AppSession, SessionError>) -> Result<(String, bool), AppError> {
    match session {
        Ok(mut session) => match session.csrf_token().await {
            Ok(token) => Ok((token, false)),
            Err(SessionError::StoreUnavailable(_)) => Ok((String::new(), true)),
            Err(e) => Err(e.into()),
        },
        Err(SessionError::StoreUnavailable(_)) => Ok((String::new(), true)),
        Err(e) => Err(e.into()),
    }
}

fn serve_without_session(mut response: Response) -> Response {
    response.extensions_mut().insert(ServeWithoutSession);
    response
}

#[debug_handler]
async fn login_page(
    ViewEngine(v): ViewEngine<TeraView>,
    Query(notice): Query<Notice>,
    session: Result<AppSession, SessionError>,
) -> Result<Response, AppError> {
    if session.as_ref().is_ok_and(|s| s.user_id().is_some()) {
        return Ok(Redirect::to("/dashboard").into_response());
    }
    let (csrf_token, store_down) = form_token(session).await?;
    let page = format::render().view(
        &v,
        "auth/login.html",
        data!({
            "csrf_token": csrf_token,
            "store_down": store_down,
            "notice": notice_text(notice.notice.as_deref()),
            "email": "",
            "error": "",
        }),
    )?;
    Ok(serve_without_session(page))
}

/// The login page again, with `error` next to the form.
async fn login_refused(
    v: &TeraView,
    session: &mut AppSession,
    status: StatusCode,
    email: &str,
    error: &str,
) -> Result<Response, AppError> {
    let csrf_token = session.csrf_token().await?;
    Ok(format::render().status(status).view(
        v,
        "auth/login.html",
        data!({
            "csrf_token": csrf_token,
            "store_down": false,
            "notice": "",
            "email": email,
            "error": error,
        }),
    )?)
}

#[debug_handler]
async fn login(
    State(ctx): State<AppContext>,
    ViewEngine(v): ViewEngine<TeraView>,
    SessionLayer(sessions): SessionLayer,
    Client(client): Client,
    mut session: AppSession,
    CsrfForm(form): CsrfForm<LoginForm>,
) -> Result<Response, AppError> {
    let email = EmailAddress::parse(&form.email);
    // Counted by what was typed, account or not: the throttle must not reveal accounts.
    let account = email.as_ref().map_or_else(
        |_| form.email.trim().to_lowercase(),
        |e| e.as_str().to_string(),
    );
    let throttle = sessions.throttle();
    if let Some(wait) = throttle.blocked(&account, client.ip.as_deref()).await? {
        let minutes = wait.as_secs().div_ceil(60).max(1);
        sessions.audit().record(
            AuditEvent::new(EventKind::LoginThrottled)
                .client(client)
                .reason(format!("retry in {minutes} min")),
        );
        let message = format!(
            "Too many attempts. Try again in {minutes} minute{}.",
            if minutes == 1 { "" } else { "s" }
        );
        let mut page = login_refused(
            &v,
            &mut session,
            StatusCode::TOO_MANY_REQUESTS,
            form.email.trim(),
            &message,
        )
        .await?;
        if let Ok(value) = axum::http::HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            page.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, value);
        }
        return Ok(page);
    }
    let user = match &email {
        Ok(email) => users::Model::authenticate(&ctx.db, email, &form.password).await?,
        Err(_) => None,
    };
    let Some(user) = user else {
        throttle
            .record_failure(&account, client.ip.as_deref())
            .await?;
        sessions.audit().record(
            AuditEvent::new(EventKind::LoginFailed)
                .client(client)
                .reason("wrong email or password"),
        );
        return login_refused(
            &v,
            &mut session,
            StatusCode::UNPROCESSABLE_ENTITY,
            form.email.trim(),
            "Email or password is incorrect.",
        )
        .await;
    };
    throttle.clear_account(&account).await?;
    session
        .log_in(user.id, form.remember.as_deref() == Some("on"), client)
        .await?;
    session
        .flash(format!("Welcome back, {}.", user.name))
        .await?;
    Ok(Redirect::to("/dashboard").into_response())
}

#[debug_handler]
async fn register_page(
    ViewEngine(v): ViewEngine<TeraView>,
    session: Result<AppSession, SessionError>,
) -> Result<Response, AppError> {
    if session.as_ref().is_ok_and(|s| s.user_id().is_some()) {
        return Ok(Redirect::to("/dashboard").into_response());
    }
    let (csrf_token, store_down) = form_token(session).await?;
    let page = render_register(
        &v,
        &csrf_token,
        store_down,
        "",
        "",
        &RegistrationErrors::default(),
        StatusCode::OK,
    )?;
    Ok(serve_without_session(page))
}

fn render_register(
    v: &TeraView,
    csrf_token: &str,
    store_down: bool,
    name: &str,
    email: &str,
    errors: &RegistrationErrors,
    status: StatusCode,
) -> Result<Response, AppError> {
    Ok(format::render().status(status).view(
        v,
        "auth/register.html",
        data!({
            "csrf_token": csrf_token,
            "store_down": store_down,
            "name": name,
            "email": email,
            "errors": {
                "name": errors.name.unwrap_or_default(),
                "email": errors.email.unwrap_or_default(),
                "password": errors.password.unwrap_or_default(),
            },
        }),
    )?)
}

#[debug_handler]
async fn register(
    State(ctx): State<AppContext>,
    ViewEngine(v): ViewEngine<TeraView>,
    mut session: AppSession,
    CsrfForm(form): CsrfForm<RegisterForm>,
) -> Result<Response, AppError> {
    let invalid = |errors: RegistrationErrors, token: String| {
        render_register(
            &v,
            &token,
            false,
            form.name.trim(),
            form.email.trim(),
            &errors,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
    };
    let new_user = match NewUser::parse(&form.name, &form.email, &form.password) {
        Ok(new_user) => new_user,
        Err(errors) => return invalid(errors, session.csrf_token().await?),
    };
    match users::Model::create_with_password(&ctx.db, &new_user, false).await {
        Ok(user) => {
            tracing::info!(user_id = user.id, "registered");
            Ok(Redirect::to("/login?notice=registered").into_response())
        }
        Err(ModelError::EntityAlreadyExists) => invalid(
            RegistrationErrors {
                email: Some("An account with this email already exists. Log in instead."),
                ..RegistrationErrors::default()
            },
            session.csrf_token().await?,
        ),
        Err(e) => Err(e.into()),
    }
}

#[debug_handler]
async fn logout(
    mut session: AppSession,
    CsrfForm(_): CsrfForm<serde::de::IgnoredAny>,
) -> Result<Response, AppError> {
    session.log_out().await?;
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
