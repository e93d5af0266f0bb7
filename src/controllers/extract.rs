//! Extractors that make a handler's needs visible in its signature: [`CurrentUser`] for
//! pages behind login, [`AdminUser`] for the admin pages, [`CsrfForm`] for every
//! state-changing form, [`Client`] for what a session records about the browser.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request},
    http::request::Parts,
};
use loco_rs::app::AppContext;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::{
    controllers::AppState,
    errors::AppError,
    models::{platforms, users},
    sessions::{csrf, registry::EndReason, AppSession, ClientInfo, SessionError, Sessions},
};

/// A logged-in user, their session and its active platform. A request without a live
/// session (or whose user is gone or disabled) is answered with a redirect to `/login`.
#[derive(Debug)]
pub struct CurrentUser {
    pub user: users::Model,
    pub session: AppSession,
    pub active_platform: Option<platforms::Model>,
}

impl<S: AppState> FromRequestParts<S> for CurrentUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        let ctx = state.ctx();
        let mut session = AppSession::from_request_parts(parts, ctx).await?;
        let user_id = session.user_id().ok_or(AppError::LoginRequired)?;
        let user = match users::Model::find_by_id(&ctx.db, user_id).await {
            Ok(user) if !user.disabled => user,
            Ok(_) => {
                session.end_for(EndReason::UserDisabled).await?;
                return Err(AppError::LoginRequired);
            }
            Err(loco_rs::model::ModelError::EntityNotFound) => {
                session.end_for(EndReason::UserDisabled).await?;
                return Err(AppError::LoginRequired);
            }
            Err(e) => return Err(e.into()),
        };
        let active_platform = match session.active_platform_id() {
            None => None,
            Some(id) => match platforms::Model::find_for(&ctx.db, user.id, id).await {
                Ok(platform) => Some(platform),
                Err(loco_rs::model::ModelError::EntityNotFound) => {
                    // Deleted from another session: this one lets go of it too.
                    session.set_active_platform(None).await?;
                    None
                }
                Err(e) => return Err(e.into()),
            },
        };
        Ok(Self {
            user,
            session,
            active_platform,
        })
    }
}

impl CurrentUser {
    /// What the member layout shows on every page: who is logged in, the active platform,
    /// and the CSRF token for the logout button.
    ///
    /// # Errors
    /// When the session cannot be read.
    pub async fn layout(&mut self) -> Result<Value, AppError> {
        let csrf_token = self.session.csrf_token().await?;
        let flash = self.session.take_flash().await?;
        Ok(json!({
            "user": { "id": self.user.id, "name": self.user.name, "email": self.user.email, "admin": self.user.admin },
            "flash": flash,
            "csrf_token": csrf_token,
            "active_platform": self.active_platform.as_ref().map(|p| json!({ "id": p.id, "name": p.name, "url": p.url })),
        }))
    }
}

/// A logged-in admin. Anyone else logged in gets 403.
#[derive(Debug)]
pub struct AdminUser(pub CurrentUser);

impl FromRequestParts<AppContext> for AdminUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, ctx: &AppContext) -> Result<Self, AppError> {
        let current = CurrentUser::from_request_parts(parts, ctx).await?;
        if current.user.admin {
            Ok(Self(current))
        } else {
            Err(AppError::Forbidden)
        }
    }
}

/// The app's session layer, for handlers that manage sessions other than their own
/// (revocation, the admin page).
#[derive(Debug, Clone)]
pub struct SessionLayer(pub Arc<Sessions>);

impl<S: Send + Sync> FromRequestParts<S> for SessionLayer {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, AppError> {
        parts
            .extensions
            .get::<Arc<Sessions>>()
            .cloned()
            .map(Self)
            .ok_or(AppError::Session(SessionError::NotInstalled))
    }
}

/// The browser behind the request: its user agent and IP address.
#[derive(Debug, Clone)]
pub struct Client(pub ClientInfo);

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(ClientInfo::from_parts(parts)))
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
