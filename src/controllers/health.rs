//! Operations endpoints: `/_health` for load balancers, `/metrics` for Prometheus.

use std::time::{Duration, Instant};

use axum::{
    extract::FromRequestParts,
    http::{header::AUTHORIZATION, request::Parts, HeaderMap, StatusCode},
};
use loco_rs::prelude::*;
use serde::Serialize;
use subtle::ConstantTimeEq;

use crate::{
    controllers::extract::{AdminUser, SharedSessions},
    errors::AppError,
    sessions::{metrics, monitoring},
};

/// How long the database may take to answer a health check.
const DATABASE_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Serialize)]
struct Component {
    ok: bool,
    latency_ms: f64,
    detail: String,
}

#[derive(Debug, Serialize)]
struct Health {
    status: &'static str,
    database: Component,
    session_store: Component,
    store: &'static str,
}

/// What anyone may know: whether the app is up.
#[derive(Debug, Serialize)]
struct Status {
    status: &'static str,
}

/// `GET /_health`: 200 when the database and the session store answer, else 503. Anyone
/// gets `{"status"}`; what is down, how fast each answers and why (error texts, paths)
/// only a logged-in admin or a scraper with `METRICS_TOKEN` sees.
#[debug_handler(state = AppContext)]
async fn health(
    State(ctx): State<AppContext>,
    SharedSessions(sessions): SharedSessions,
    operator: Result<Operator, AppError>,
) -> Response {
    let detailed = operator.is_ok();
    let started = Instant::now();
    let (ok, detail) = match tokio::time::timeout(DATABASE_TIMEOUT, ctx.db.ping()).await {
        Ok(Ok(())) => (true, "answers".to_string()),
        Ok(Err(e)) => (false, e.to_string()),
        Err(_) => (
            false,
            format!("no answer within {} ms", DATABASE_TIMEOUT.as_millis()),
        ),
    };
    let database = Component {
        ok,
        latency_ms: started.elapsed().as_secs_f64() * 1000.0,
        detail,
    };
    let store = sessions.health().await;
    let all_ok = database.ok && store.ok;
    let status = if all_ok { "ok" } else { "unavailable" };
    let code = if all_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    if !detailed {
        return (code, axum::Json(Status { status })).into_response();
    }
    let body = Health {
        status,
        database,
        session_store: Component {
            ok: store.ok,
            latency_ms: store.latency_ms,
            detail: store.detail,
        },
        store: store.store.name(),
    };
    (code, axum::Json(body)).into_response()
}

/// A request from an operator, who may read the numbers: a scraper with `METRICS_TOKEN`
/// as a bearer token, or a logged-in admin.
struct Operator;

impl FromRequestParts<AppContext> for Operator {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, ctx: &AppContext) -> Result<Self, AppError> {
        let SharedSessions(sessions) = SharedSessions::from_request_parts(parts, ctx).await?;
        let admin = AdminUser::from_request_parts(parts, ctx).await;
        if bearer_matches(&parts.headers, sessions.config().metrics_token.as_deref()) {
            return Ok(Self);
        }
        match admin {
            Ok(_) => Ok(Self),
            // Not a page to be sent to the login form from: a scraper gets a plain 403.
            Err(AppError::LoginRequired) => Err(AppError::Forbidden),
            Err(error) => Err(error),
        }
    }
}

fn bearer_matches(headers: &HeaderMap, token: Option<&str>) -> bool {
    let (Some(expected), Some(given)) = (
        token,
        headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ")),
    ) else {
        return false;
    };
    bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

/// `GET /metrics`: Prometheus text. Open to a scraper with `METRICS_TOKEN` as a bearer
/// token, or to a logged-in admin; 403 otherwise.
#[debug_handler(state = AppContext)]
async fn prometheus(
    State(ctx): State<AppContext>,
    SharedSessions(sessions): SharedSessions,
    _operator: Operator,
) -> Result<Response, AppError> {
    let readings = monitoring::readings(&sessions, &ctx.db).await?;
    let body = metrics::render(&readings);
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response())
}

pub fn routes() -> Routes {
    Routes::new()
        .add("/_health", get(health))
        .add("/metrics", get(prometheus))
}
