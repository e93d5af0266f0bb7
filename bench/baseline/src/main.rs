//! The yardstick of `bench/load`: the session hot path as the common peers write it.
//! axum, tower-sessions' own `SessionManagerLayer` and the released Redis store; the
//! handler reads the session and saves `last_activity` on every request.
//!
//! `GET /login` starts a session holding the same fields as Tessera's; `GET /api/session`
//! is the measured hot path. `REDIS_URL` and `PORT` configure it.

use axum::{
    http::{header::USER_AGENT, HeaderMap, StatusCode},
    response::IntoResponse,
    routing::get,
    Json, Router,
};
use fred::prelude::{ClientLike, Config as RedisConfig, Pool};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use tower_sessions::{Expiry, Session, SessionManagerLayer};
use tower_sessions_redis_store::RedisStore;

const KEY: &str = "user";

#[derive(Serialize, Deserialize)]
struct UserSession {
    user_id: i64,
    active_platform_id: Option<i64>,
    created_at: i64,
    /// Seconds with a fraction, so that every request changes it and is saved.
    last_activity: f64,
    user_agent: String,
    ip: String,
    csrf_token: String,
}

async fn login(session: Session, headers: HeaderMap) -> impl IntoResponse {
    let now = OffsetDateTime::now_utc();
    let user = UserSession {
        user_id: 1,
        active_platform_id: None,
        created_at: now.unix_timestamp(),
        last_activity: unix_seconds(now),
        user_agent: headers
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .into(),
        ip: "127.0.0.1".into(),
        csrf_token: "0123456789abcdefghijkl".into(),
    };
    match session.insert(KEY, user).await {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

async fn current(session: Session) -> impl IntoResponse {
    let Ok(Some(mut user)) = session.get::<UserSession>(KEY).await else {
        return Json(serde_json::json!({ "authenticated": false }));
    };
    user.last_activity = unix_seconds(OffsetDateTime::now_utc());
    let body = serde_json::json!({
        "authenticated": true,
        "user_id": user.user_id,
        "active_platform_id": user.active_platform_id,
        "created_at": user.created_at,
        "last_activity": user.last_activity,
        "store": "redis",
    });
    if session.insert(KEY, user).await.is_err() {
        return Json(serde_json::json!({ "authenticated": false }));
    }
    Json(body)
}

#[allow(clippy::cast_precision_loss)]
fn unix_seconds(t: OffsetDateTime) -> f64 {
    t.unix_timestamp_nanos() as f64 / 1e9
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let port: u16 = std::env::var("PORT").map_or(Ok(5160), |p| p.parse())?;
    let pool = Pool::new(RedisConfig::from_url(&url)?, None, None, None, 8)?;
    pool.init().await?;
    let sessions = SessionManagerLayer::new(RedisStore::new(pool))
        .with_secure(false)
        .with_expiry(Expiry::OnInactivity(Duration::hours(2)));
    let app = Router::new()
        .route("/login", get(login))
        .route("/api/session", get(current))
        .layer(sessions);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
