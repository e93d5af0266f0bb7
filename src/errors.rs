//! The app's HTTP errors, each mapped to its status and page once, here. Handlers return
//! `Result<Response, AppError>` and use `?`.

use axum::{
    http::{header, StatusCode},
    response::{IntoResponse, Redirect, Response},
};

use crate::sessions::SessionError;

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
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Internal(#[from] loco_rs::Error),
}

impl From<loco_rs::model::ModelError> for AppError {
    fn from(error: loco_rs::model::ModelError) -> Self {
        match error {
            loco_rs::model::ModelError::EntityNotFound => Self::NotFound,
            other => Self::Internal(other.into()),
        }
    }
}

impl From<crate::sessions::login::LoginError> for AppError {
    fn from(error: crate::sessions::login::LoginError) -> Self {
        match error {
            crate::sessions::login::LoginError::Session(e) => Self::Session(e),
            crate::sessions::login::LoginError::Account(e) => e.into(),
        }
    }
}

impl From<sea_orm::DbErr> for AppError {
    fn from(error: sea_orm::DbErr) -> Self {
        Self::Internal(error.into())
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
            Self::NotFound => error_page(
                StatusCode::NOT_FOUND,
                "Not found",
                "There is nothing here. Check the address, or go back to your dashboard.",
            ),
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
    // Same stylesheet and header as the Tera layout, and the same markup as the static
    // assets/static/404.html, so an error looks like the rest of Tessera.
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
