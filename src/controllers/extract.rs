//! Extractors that make a handler's needs visible in its signature: [`CurrentUser`] for
//! pages behind login, [`AdminUser`] for the admin pages, [`CsrfForm`] for every
//! state-changing form, [`FormToken`] for the anonymous login and register forms,
//! [`Client`] for what a session records about the browser.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request},
    http::{
        header::{CACHE_CONTROL, SET_COOKIE},
        request::Parts,
        HeaderValue,
    },
    response::Response,
};
use loco_rs::app::AppContext;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::{
    controllers::AppState,
    errors::AppError,
    models::{platforms, users},
    sessions::{
        csrf, layer::RequestSession, registry::EndReason, AppSession, ClientInfo, SessionError,
        Sessions,
    },
};

/// A logged-in user, their session and its active platform. A request without a live
/// session (or whose user is gone or disabled, or whose session was opened under
/// credentials that have changed since) is answered with a redirect to `/login`.
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
            Ok(user) if user.disabled => {
                session.end_for(EndReason::UserDisabled).await?;
                return Err(AppError::LoginRequired);
            }
            // Opened with a password that has changed since (the change ends the sessions
            // it lists; this catches any it could not see).
            Ok(user) if session.credential_generation() != Some(user.credential_generation) => {
                session.end_for(EndReason::CredentialsChanged).await?;
                return Err(AppError::LoginRequired);
            }
            Ok(user) => user,
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
        let csrf_token = self
            .session
            .csrf_token()
            .ok_or(AppError::LoginRequired)?
            .to_string();
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
            .get::<RequestSession>()
            .map(|request| Self(request.sessions.clone()))
            .ok_or(AppError::Session(SessionError::NotInstalled))
    }
}

/// The browser behind the request: its user agent and IP address (the forwarded one when
/// Loco's `remote_ip` middleware is on).
#[derive(Debug, Clone)]
pub struct Client(pub ClientInfo);

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(ClientInfo::from_parts(parts).await))
    }
}

/// The CSRF token of an anonymous form (login, register): signed from the nonce in the
/// browser's form cookie, or from a new nonce that [`FormToken::attach`] sets. Nothing is
/// stored on the server.
#[derive(Debug, Clone)]
pub struct FormToken {
    token: String,
    /// The cookie to set, when the browser did not send a usable one.
    new_cookie: Option<String>,
}

impl FormToken {
    fn of(parts: &Parts, sessions: &Sessions) -> Self {
        if let Some(token) = Self::expected(parts, sessions) {
            return Self {
                token,
                new_cookie: None,
            };
        }
        let config = &sessions.config().cookie;
        let nonce = csrf::new_token();
        let cookie =
            csrf::form_cookie(&csrf::form_cookie_name(&config.name), &nonce, config.secure);
        Self {
            token: csrf::form_token(sessions.config().secret.expose(), &nonce),
            new_cookie: Some(cookie.encoded().to_string()),
        }
    }

    /// The token that fits the form cookie the request carries, if it carries one.
    fn expected(parts: &Parts, sessions: &Sessions) -> Option<String> {
        let name = csrf::form_cookie_name(&sessions.config().cookie.name);
        csrf::form_nonce(&parts.headers, &name)
            .map(|nonce| csrf::form_token(sessions.config().secret.expose(), &nonce))
    }

    /// The value of the form's `csrf_token` field.
    #[must_use]
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Sets the form cookie on the page showing the form when it is new, and marks the
    /// page `no-store`: its token belongs to this browser alone.
    #[must_use]
    pub fn attach(&self, mut response: Response) -> Response {
        let headers = response.headers_mut();
        if let Some(value) = self
            .new_cookie
            .as_deref()
            .and_then(|c| HeaderValue::from_str(c).ok())
        {
            headers.append(SET_COOKIE, value);
        }
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

impl<S: Send + Sync> FromRequestParts<S> for FormToken {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        let SessionLayer(sessions) = SessionLayer::from_request_parts(parts, state).await?;
        Ok(Self::of(parts, &sessions))
    }
}

/// A URL-encoded form whose `csrf_token` field matched: the session's token when the
/// request has a live session, else the signed double-submit token of the browser's form
/// cookie (the login and register forms of anonymous visitors). Anything else is refused
/// with 403 before the handler runs, so nothing changes.
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
        // A live session's forms must carry its own token: a double-submit pair obtained
        // by an attacker and planted in the victim's browser cannot act for the session.
        let anonymous_token = if session.user_id().is_none() {
            let SessionLayer(sessions) =
                SessionLayer::from_request_parts(&mut parts, state).await?;
            FormToken::expected(&parts, &sessions)
        } else {
            None
        };
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
        let accepted = session.verify_csrf(submitted)
            || anonymous_token.is_some_and(|token| csrf::tokens_match(&token, submitted));
        if !accepted {
            tracing::warn!("form refused: CSRF token missing or wrong");
            return Err(AppError::CsrfRejected);
        }
        serde_urlencoded::from_bytes(&body)
            .map(Self)
            .map_err(|e| AppError::BadRequest(e.to_string()))
    }
}
