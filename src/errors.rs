//! The app's HTTP errors, each mapped to its status and page once, here. Handlers return
//! `Result<Response, AppError>` and use `?`.

use std::time::Duration;

use axum::{
    http::{header, StatusCode},
    response::{IntoResponse, Redirect, Response},
};
use sea_orm::{ConnAcquireErr, DbErr};

use crate::{
    models::users::AccountError,
    sessions::{error::SessionError, hashing::HashingError, login::LoginError},
};

/// How long a visitor is asked to wait when the app is too busy to answer.
const BUSY_RETRY_AFTER: Duration = Duration::from_secs(5);

/// What can go wrong while answering a request.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The page needs a live session and there is none: go log in.
    #[error("login required")]
    LoginRequired,
    /// The form did not carry this session's CSRF token.
    #[error("CSRF token missing or wrong")]
    CsrfRejected,
    #[error("forbidden")]
    Forbidden,
    /// The request could not be understood (a malformed form).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// A link's query that no page of Tessera makes (edited or cut short); the message
    /// says, in words, what the link should hold. Never the visitor's input.
    #[error("bad link: {0}")]
    BadLink(&'static str),
    #[error("not found")]
    NotFound,
    /// The request's body is larger than `server.middlewares.limit_payload` allows.
    #[error("request body too large")]
    PayloadTooLarge,
    /// No response within `server.middlewares.timeout_request` (`crate::middleware`).
    #[error("no response within {after:?}")]
    TimedOut { after: std::time::Duration },
    /// Too much at once (password hashing at capacity, no database connection free in
    /// time): nothing was done; try again shortly.
    #[error("too busy: try again in {} s", retry_after.as_secs())]
    Overloaded { retry_after: Duration },
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Internal(loco_rs::Error),
}

/// Whether `error`, or anything it was caused by, is a connection pool that had no
/// connection free in time: the database is busy, not broken.
fn is_pool_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        let timed_out = matches!(
            error.downcast_ref::<DbErr>(),
            Some(DbErr::ConnectionAcquire(ConnAcquireErr::Timeout))
        ) || matches!(
            error.downcast_ref::<ConnAcquireErr>(),
            Some(ConnAcquireErr::Timeout)
        );
        if timed_out {
            return true;
        }
        cause = error.source();
    }
    false
}

impl From<loco_rs::Error> for AppError {
    fn from(error: loco_rs::Error) -> Self {
        if is_pool_timeout(&error) {
            tracing::warn!(%error, "no database connection free in time");
            Self::Overloaded {
                retry_after: BUSY_RETRY_AFTER,
            }
        } else {
            Self::Internal(error)
        }
    }
}

impl From<loco_rs::model::ModelError> for AppError {
    fn from(error: loco_rs::model::ModelError) -> Self {
        match error {
            loco_rs::model::ModelError::EntityNotFound => Self::NotFound,
            other => loco_rs::Error::from(other).into(),
        }
    }
}

impl From<HashingError> for AppError {
    fn from(error: HashingError) -> Self {
        match error {
            HashingError::Busy { .. } => Self::Overloaded {
                retry_after: crate::sessions::hashing::RETRY_AFTER,
            },
            HashingError::Failed(detail) => loco_rs::Error::Message(detail).into(),
        }
    }
}

impl From<LoginError> for AppError {
    fn from(error: LoginError) -> Self {
        match error {
            LoginError::Session(e) => Self::Session(e),
            LoginError::Account(e) => e.into(),
            LoginError::Hashing(e) => e.into(),
        }
    }
}

impl From<AccountError> for AppError {
    fn from(error: AccountError) -> Self {
        match error {
            AccountError::Hashing(e) => e.into(),
            AccountError::Model(e) => e.into(),
        }
    }
}

impl From<DbErr> for AppError {
    fn from(error: DbErr) -> Self {
        loco_rs::Error::from(error).into()
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match self {
            Self::LoginRequired => Redirect::to("/login").into_response(),
            Self::CsrfRejected => error_page(
                StatusCode::FORBIDDEN,
                "This form has expired",
                "The form was not sent by this page or your session changed. Go back, reload the page and try again.",
            ),
            Self::Forbidden => error_page(
                StatusCode::FORBIDDEN,
                "Not allowed",
                "Your account cannot open this page.",
            ),
            Self::BadRequest(detail) => {
                tracing::debug!(%detail, "bad request");
                error_page(
                    StatusCode::BAD_REQUEST,
                    "That did not work",
                    "The form was incomplete or malformed. Go back and try again.",
                )
            }
            Self::BadLink(what) => {
                error_page(StatusCode::BAD_REQUEST, "That link did not work", what)
            }
            Self::NotFound => error_page(
                StatusCode::NOT_FOUND,
                "Not found",
                "There is nothing here. Check the address, or go back to your dashboard.",
            ),
            Self::PayloadTooLarge => error_page(
                StatusCode::PAYLOAD_TOO_LARGE,
                "That was too much",
                "The form sent more data than this server accepts. Shorten what you entered and try again.",
            ),
            Self::TimedOut { after } => {
                tracing::warn!(timeout_ms = after.as_millis(), "request timed out");
                error_page(
                    StatusCode::REQUEST_TIMEOUT,
                    "This took too long",
                    "The server did not answer in time. Reload the page to see where things stand, then try again.",
                )
            }
            Self::Overloaded { retry_after } => busy_page(retry_after),
            Self::Session(error) => error.into_response(),
            Self::Internal(error) => {
                tracing::error!(%error, "request failed");
                internal_error_page()
            }
        }
    }
}

impl IntoResponse for SessionError {
    fn into_response(self) -> Response {
        match self {
            Self::StoreUnavailable(detail) => {
                tracing::error!(%detail, "session store unavailable");
                let mut response = error_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Sessions are unavailable",
                    "We cannot reach the session store right now. Nothing was lost: try again in a few seconds.",
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
                response
            }
            Self::Corrupt(detail) => {
                tracing::error!(%detail, "session record unusable");
                error_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "Your session could not be read. Please log in again.",
                )
            }
            Self::Registry(error) if is_pool_timeout(&error) => {
                tracing::warn!(%error, "no database connection free in time for the registry");
                busy_page(BUSY_RETRY_AFTER)
            }
            Self::Registry(error) => {
                tracing::error!(%error, "session registry failed");
                internal_error_page()
            }
            // The login domain operation answers a login whose credentials changed like a
            // wrong password; anywhere else, both mean "log in again".
            Self::CredentialsChanged | Self::Ended => Redirect::to("/login").into_response(),
            Self::NotInstalled => {
                tracing::error!("session layer missing on this route");
                internal_error_page()
            }
        }
    }
}

/// 503 with `Retry-After`: too much at once, nothing lost.
fn busy_page(retry_after: Duration) -> Response {
    let mut response = error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Too busy right now",
        "Too many requests arrived at once. Nothing was lost: try again in a few seconds.",
    );
    if let Ok(value) = header::HeaderValue::from_str(&retry_after.as_secs().max(1).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

pub(crate) fn internal_error_page() -> Response {
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "The error was logged. Please try again in a moment.",
    )
}

/// A complete, self-contained HTML error page. It needs no template engine and no session,
/// so it renders even when those are what failed.
fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    // Same stylesheet and header as the Tera layout, so an error looks like the rest of
    // Tessera.
    let body = format!(
        r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{title} · Tessera</title>
  <link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
  <link rel="stylesheet" href="/static/app.css">
</head>
<body>
  <header class="topbar">
    <div class="topbar-inner">
      <a class="brand" href="/"><img src="/static/favicon.svg" alt="" width="28" height="28">Tessera</a>
    </div>
  </header>
  <main class="container" id="main">
    <section class="card narrow error-page" aria-labelledby="error-title">
      <p class="status">{code}</p>
      <h1 id="error-title">{title}</h1>
      <p class="lead">{message}</p>
      <p class="actions"><a class="button" href="/">Back to Tessera</a></p>
    </section>
  </main>
</body>
</html>"#,
        code = status.as_u16(),
    );
    let mut response = (status, axum::response::Html(body)).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_timeout_is_a_busy_503_however_deep_it_is_wrapped() {
        let timeout = || DbErr::ConnectionAcquire(ConnAcquireErr::Timeout);
        for error in [
            AppError::from(timeout()),
            AppError::from(loco_rs::model::ModelError::DbErr(timeout())),
            AppError::from(loco_rs::Error::from(loco_rs::model::ModelError::DbErr(
                timeout(),
            ))),
        ] {
            let response = error.into_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(response.headers()[header::RETRY_AFTER], "5");
        }
        let registry = SessionError::Registry(timeout()).into_response();
        assert_eq!(registry.status(), StatusCode::SERVICE_UNAVAILABLE);
        let other = AppError::from(DbErr::Custom("broken".into())).into_response();
        assert_eq!(other.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
