//! The session middleware: reads the cookie, hands handlers a lazy [`Session`], and after
//! the handler saves what changed and writes or clears the cookie.
//!
//! Tessera uses tower-sessions' `Session` and stores but not its `SessionManagerLayer`,
//! because that layer turns a failed save into an empty 500 and ties the cookie's
//! lifetime to the record's. Here a failed save is the 503 page, and the cookie follows
//! the session's "remember me" choice while the record follows the server's timeouts.

use std::{
    convert::Infallible,
    str::FromStr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    task::{Context, Poll},
};

use axum::{
    body::Body,
    http::{
        header::{CACHE_CONTROL, COOKIE, SET_COOKIE},
        HeaderMap, HeaderValue, Request,
    },
    response::{IntoResponse, Response},
};
use cookie::{Cookie, SameSite};
use futures::future::BoxFuture;
use tower::{Layer, Service};
use tower_sessions::{session::Id, Session};

use super::{clock::offset_time, data::SessionData, error::SessionError, Sessions};

/// Length of a session ID in the cookie: 128 bits in URL-safe base64.
pub const ID_LEN: usize = 22;

/// Finds the session ID in the request's cookies. Anything that is not exactly a well
/// formed ID (wrong length, bad characters, `../`, non-UTF-8) is ignored: the request is
/// anonymous, never an error.
#[must_use]
pub fn session_id_from_headers(headers: &HeaderMap, cookie_name: &str) -> Option<Id> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| Cookie::split_parse(value).filter_map(Result::ok))
        .filter(|cookie| cookie.name() == cookie_name)
        .find_map(|cookie| {
            let value = cookie.value();
            (value.len() == ID_LEN)
                .then(|| Id::from_str(value).ok())
                .flatten()
        })
}

/// A response extension by which a handler says its page is still worth serving when the
/// session cannot be saved (a page that must render while the store is down).
#[derive(Debug, Clone, Copy)]
pub struct ServeWithoutSession;

/// Set by [`super::lifecycle::AppSession`] when the request belongs to a logged-in user, so the
/// middleware marks the response `Cache-Control: no-store`: a page behind login must not
/// be kept by the browser's back button cache or by a shared proxy.
#[derive(Debug, Clone, Default)]
pub struct ServedToUser(Arc<AtomicBool>);

impl ServedToUser {
    pub fn set(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The session middleware as a tower layer, for the app's one stack around the router
/// (`crate::middleware`).
#[derive(Debug, Clone)]
pub struct SessionLayer(Arc<Sessions>);

impl SessionLayer {
    #[must_use]
    pub const fn new(sessions: Arc<Sessions>) -> Self {
        Self(sessions)
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            sessions: self.0.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SessionService<S> {
    inner: S,
    sessions: Arc<Sessions>,
}

impl<S> Service<Request<Body>> for SessionService<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let sessions = self.sessions.clone();
        let (request, attached) = attach(&sessions, request);
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(attached.finish(&sessions, response).await)
        })
    }
}

/// What the middleware gives each request, in one extension: its lazy [`Session`], the
/// app's session layer and the served-to-a-user mark.
#[derive(Debug, Clone)]
pub struct RequestSession {
    pub session: Session,
    pub sessions: Arc<Sessions>,
    pub served_to_user: ServedToUser,
}

/// What the middleware keeps of a request while its handler runs.
struct Attached {
    session: Session,
    served_to_user: ServedToUser,
    /// Whether the request named a session: only then is a removal cookie worth sending.
    arrived_with_id: bool,
}

/// Gives the request its lazy [`Session`] (nothing is read until a handler asks).
fn attach(sessions: &Arc<Sessions>, mut request: Request<Body>) -> (Request<Body>, Attached) {
    let cookie_name = &sessions.config().cookie.name;
    let id = session_id_from_headers(request.headers(), cookie_name);
    let session = Session::new(id, sessions.store(), None);
    let served_to_user = ServedToUser::default();
    request.extensions_mut().insert(RequestSession {
        session: session.clone(),
        sessions: sessions.clone(),
        served_to_user: served_to_user.clone(),
    });
    let attached = Attached {
        session,
        served_to_user,
        arrived_with_id: id.is_some(),
    };
    (request, attached)
}

impl Attached {
    /// After the handler: saves what changed and writes or clears the cookie.
    async fn finish(self, sessions: &Sessions, mut response: Response) -> Response {
        let Self {
            session,
            served_to_user,
            arrived_with_id,
        } = self;
        if served_to_user.is_set() {
            response
                .headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        if !session.is_modified() {
            return response;
        }
        if session.is_empty().await {
            // Logged out or expired: the record is gone; tell the browser to forget the ID.
            if arrived_with_id {
                set_cookie(&mut response, removal_cookie(sessions));
            }
            return response;
        }
        let data = session
            .get::<SessionData>(SessionData::KEY)
            .await
            .ok()
            .flatten();
        if data.as_ref().and_then(|d| d.user_id).is_none() {
            // A record is created at login and only then: an anonymous visitor (a crawler, a
            // script) must cost the store nothing.
            tracing::debug!("an anonymous session was not saved");
            return response;
        }
        if let Err(error) = session.save().await {
            if response.extensions().get::<ServeWithoutSession>().is_some() {
                tracing::warn!(%error, "session could not be saved; page served without one");
                return response;
            }
            return SessionError::from(error).into_response();
        }
        match session.id() {
            Some(id) => set_cookie(&mut response, session_cookie(sessions, id, data.as_ref())),
            None => tracing::error!("a saved session has no ID"),
        }
        response
    }
}

fn base_cookie(sessions: &Sessions, value: String) -> Cookie<'static> {
    let config = &sessions.config().cookie;
    let mut cookie = Cookie::build((config.name.clone(), value))
        .http_only(true)
        .same_site(SameSite::Lax)
        .path("/")
        .secure(config.secure);
    if let Some(domain) = &config.domain {
        cookie = cookie.domain(domain.clone());
    }
    cookie.build()
}

/// The cookie carrying `id`. It lives as long as the browser session unless the user chose
/// "remember me"; then until the session's absolute deadline, never longer.
fn session_cookie(sessions: &Sessions, id: Id, data: Option<&SessionData>) -> Cookie<'static> {
    let mut cookie = base_cookie(sessions, id.to_string());
    if let Some(data) = data.filter(|d| d.remember) {
        let deadline = sessions.config().policy.absolute_deadline(data.created_at);
        if let Some(expires) = offset_time(deadline) {
            cookie.set_expires(expires);
        }
    }
    cookie
}

fn removal_cookie(sessions: &Sessions) -> Cookie<'static> {
    let mut cookie = base_cookie(sessions, String::new());
    cookie.make_removal();
    cookie
}

fn set_cookie(response: &mut Response, cookie: Cookie<'static>) {
    match HeaderValue::from_str(&cookie.encoded().to_string()) {
        Ok(value) => {
            let headers = response.headers_mut();
            headers.append(SET_COOKIE, value);
            // A response that sets the session cookie must never be cached by a proxy and
            // replayed to someone else.
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        Err(error) => tracing::error!(%error, "session cookie is not a valid header"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(cookie: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_str(cookie).expect("valid header"));
        headers
    }

    #[test]
    fn reads_only_well_formed_ids() {
        let id = Id::default().to_string();
        assert_eq!(
            session_id_from_headers(&headers(&format!("a=b; session={id}")), "session")
                .map(|i| i.to_string()),
            Some(id.clone())
        );
        for bad in ["../../etc/passwd", "", "x", &format!("{id}x"), &id[1..]] {
            assert!(
                session_id_from_headers(&headers(&format!("session={bad}")), "session").is_none(),
                "{bad}"
            );
        }
        assert!(session_id_from_headers(&headers(&format!("other={id}")), "session").is_none());
    }
}
