//! Extractors that make a handler's needs visible in its signature: [`CurrentUser`] for
//! pages behind login, [`CsrfForm`] for every state-changing form, [`Client`] for what a
//! session records about the browser.

use std::net::SocketAddr;

use axum::{
    body::Bytes,
    extract::{ConnectInfo, FromRequest, FromRequestParts, Request},
    http::{header::USER_AGENT, request::Parts},
};
use loco_rs::{app::AppContext, controller::middleware::remote_ip::RemoteIP};
use serde::de::DeserializeOwned;

use crate::{
    errors::AppError,
    models::users,
    sessions::{csrf, AppSession, ClientInfo},
};

/// A logged-in user and their session. A request without a live session is answered
/// with a redirect to `/login`.
#[derive(Debug)]
pub struct CurrentUser {
    pub user: users::Model,
    pub session: AppSession,
}

impl FromRequestParts<AppContext> for CurrentUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, ctx: &AppContext) -> Result<Self, AppError> {
        let mut session = AppSession::from_request_parts(parts, ctx).await?;
        let user_id = session.user_id().ok_or(AppError::LoginRequired)?;
        match users::Model::find_by_id(&ctx.db, user_id).await {
            Ok(user) => Ok(Self { user, session }),
            Err(loco_rs::model::ModelError::EntityNotFound) => {
                // The account is gone; so is every session that belonged to it.
                session.log_out().await?;
                Err(AppError::LoginRequired)
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// The browser behind the request: its user agent and IP address. The IP comes from
/// Loco's `remote_ip` middleware when it is configured (behind a proxy), else from the
/// socket.
#[derive(Debug, Clone)]
pub struct Client(pub ClientInfo);

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let user_agent = parts
            .headers
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let ip = match parts.extensions.get::<RemoteIP>() {
            Some(RemoteIP::Forwarded(ip) | RemoteIP::Socket(ip)) => Some(ip.to_string()),
            _ => parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip().to_string()),
        };
        Ok(Self(ClientInfo::new(user_agent, ip)))
    }
}

/// A URL-encoded form whose `csrf_token` field matched the session's token. Anything
/// else is refused with 403 before the handler runs, so nothing changes.
#[derive(Debug)]
pub struct CsrfForm<T>(pub T);

impl<T, S> FromRequest<S> for CsrfForm<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(request: Request, state: &S) -> Result<Self, AppError> {
        let (mut parts, body) = request.into_parts();
        let session = AppSession::from_request_parts(&mut parts, state).await?;
        let body = Bytes::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(|e| AppError::BadRequest(e.to_string()))?;
        let fields: Vec<(String, String)> =
            serde_urlencoded::from_bytes(&body).map_err(|e| AppError::BadRequest(e.to_string()))?;
        let submitted = fields
            .iter()
            .find(|(name, _)| name == csrf::FIELD)
            .map(|(_, value)| value.as_str())
            .unwrap_or_default();
        if !session.verify_csrf(submitted) {
            tracing::warn!("form refused: CSRF token missing or wrong");
            return Err(AppError::CsrfRejected);
        }
        serde_urlencoded::from_bytes(&body)
            .map(Self)
            .map_err(|e| AppError::BadRequest(e.to_string()))
    }
}
