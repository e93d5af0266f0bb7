//! Extractors that make a handler's needs visible in its signature: [`CurrentUser`] for
//! pages behind login, [`AdminUser`] for the admin pages, [`CsrfForm`] for every
//! state-changing form, [`FormToken`] and [`AnonymousForm`] for the anonymous login and
//! register forms,
//! [`Client`] for what a session records about the browser, [`DeviceCookie`] for the
//! device cookie of a browser that logged in before.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request},
    http::{
        header::{CACHE_CONTROL, SET_COOKIE},
        request::Parts,
        HeaderValue, StatusCode,
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
        clock, csrf, data::ClientInfo, device::DeviceToken, error::SessionError, events::EndReason,
        layer::RequestSession, lifecycle::AppSession, Sessions,
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

/// The app's [`Sessions`], shared by every request, for handlers that manage sessions
/// other than their own (revocation, the admin page, health). Not the tower layer
/// (`sessions::layer::SessionLayer`), which installs it.
#[derive(Debug, Clone)]
pub struct SharedSessions(pub Arc<Sessions>);

impl<S: Send + Sync> FromRequestParts<S> for SharedSessions {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, AppError> {
        parts
            .extensions
            .get::<RequestSession>()
            .map(|request| Self(request.sessions.clone()))
            .ok_or(AppError::Session(SessionError::NotInstalled))
    }
}

/// The browser behind the request: its user agent and IP address (the one a trusted proxy
/// forwarded, `settings.sessions.trusted_proxies`).
#[derive(Debug, Clone)]
pub struct Client(pub ClientInfo);

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        let SharedSessions(sessions) = SharedSessions::from_request_parts(parts, state).await?;
        Ok(Self(sessions.client(parts)))
    }
}

/// The device cookie the browser carries, when it is one this app issued and it has not
/// expired; which account it is good for is the login's question.
#[derive(Debug, Clone)]
pub struct DeviceCookie(pub Option<DeviceToken>);

impl<S: Send + Sync> FromRequestParts<S> for DeviceCookie {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        let SharedSessions(sessions) = SharedSessions::from_request_parts(parts, state).await?;
        Ok(Self(
            sessions
                .devices()
                .from_headers(&parts.headers, clock::now()),
        ))
    }
}

/// The CSRF token of an anonymous form (login, register): the token of the live form
/// cookie this server issued to the browser, or of a new one that [`FormToken::attach`]
/// sets. Nothing is stored on the server.
#[derive(Debug, Clone)]
pub struct FormToken {
    token: String,
    /// The cookie to set, when the browser did not send a live one.
    new_cookie: Option<String>,
}

impl FormToken {
    fn of(parts: &Parts, sessions: &Sessions) -> Self {
        let tokens = sessions.form_tokens();
        let now = clock::now();
        if let Some(cookie) = tokens.read(&parts.headers, now) {
            return Self {
                token: tokens.token(&cookie),
                new_cookie: None,
            };
        }
        let cookie = tokens.issue(now);
        Self {
            token: tokens.token(&cookie),
            new_cookie: Some(tokens.set_cookie(&cookie, now).encoded().to_string()),
        }
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
        let SharedSessions(sessions) = SharedSessions::from_request_parts(parts, state).await?;
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
        let (accepted, body) = read_form(request, state).await?;
        if !accepted {
            tracing::warn!("form refused: CSRF token missing or wrong");
            return Err(AppError::CsrfRejected);
        }
        fields_of(&body).map(Self)
    }
}

/// The login or register form, read whatever its CSRF token says: `Stale` when the token
/// does not fit (the form outlived its cookie's lifetime, the browser dropped the cookie,
/// the form came from elsewhere). Its handler must not act on a stale form; it shows the
/// form again, filled in but for the password, with a fresh token and a 403. Other forms
/// use [`CsrfForm`].
#[derive(Debug)]
pub enum AnonymousForm<T> {
    Fresh(T),
    Stale(T),
}

impl<T, S> FromRequest<S> for AnonymousForm<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(request: Request, state: &S) -> Result<Self, AppError> {
        let (accepted, body) = read_form(request, state).await?;
        let fields = fields_of(&body)?;
        if accepted {
            Ok(Self::Fresh(fields))
        } else {
            tracing::info!("stale form shown again: CSRF token missing, expired or wrong");
            Ok(Self::Stale(fields))
        }
    }
}

/// Reads a URL-encoded form's body and whether its `csrf_token` fits: the live session's
/// own token, or, without a logged-in session, the double-submit token of the browser's
/// live form cookie.
async fn read_form<S: Send + Sync>(request: Request, state: &S) -> Result<(bool, Bytes), AppError> {
    let (mut parts, body) = request.into_parts();
    let session = AppSession::from_request_parts(&mut parts, state).await?;
    // A live session's forms must carry its own token: a double-submit pair obtained by
    // an attacker and planted in the victim's browser cannot act for the session.
    let form_cookie = if session.user_id().is_none() {
        let SharedSessions(sessions) =
            SharedSessions::from_request_parts(&mut parts, state).await?;
        let cookie = sessions.form_tokens().read(&parts.headers, clock::now());
        cookie.map(|cookie| (sessions, cookie))
    } else {
        None
    };
    let body = Bytes::from_request(Request::from_parts(parts, body), state)
        .await
        .map_err(|rejection| match rejection.status() {
            // Past `server.middlewares.limit_payload`.
            StatusCode::PAYLOAD_TOO_LARGE => AppError::PayloadTooLarge,
            _ => AppError::BadRequest(rejection.body_text()),
        })?;
    let fields: Vec<(String, String)> = fields_of(&body)?;
    let submitted = fields
        .iter()
        .find(|(name, _)| name == csrf::FIELD)
        .map(|(_, value)| value.as_str())
        .unwrap_or_default();
    let accepted = session.verify_csrf(submitted)
        || form_cookie
            .is_some_and(|(sessions, cookie)| sessions.form_tokens().accepts(&cookie, submitted));
    Ok((accepted, body))
}

fn fields_of<T: DeserializeOwned>(body: &[u8]) -> Result<T, AppError> {
    serde_urlencoded::from_bytes(body).map_err(|e| AppError::BadRequest(e.to_string()))
}
