//! Admin monitoring: what the session layer is doing, and the levers to end sessions.

use axum::{extract::Query, response::Redirect};
use loco_rs::prelude::*;
use serde::Deserialize;
use serde_json::json;

use crate::{
    controllers::extract::{AdminUser, CsrfForm, SessionLayer},
    errors::AppError,
    models::{
        session_events,
        users::{self, EmailAddress},
    },
    sessions::registry::EndReason,
    views::charts::HourlyChart,
};

#[derive(Debug, Deserialize)]
pub struct EmailForm {
    #[serde(default)]
    pub email: String,
}

#[derive(Debug, Deserialize)]
pub struct Notice {
    #[serde(default)]
    pub ended: Option<u64>,
    #[serde(default)]
    pub error: Option<String>,
}

#[debug_handler(state = AppContext)]
async fn show(
    State(ctx): State<AppContext>,
    ViewEngine(v): ViewEngine<TeraView>,
    SessionLayer(sessions): SessionLayer,
    Query(notice): Query<Notice>,
    AdminUser(mut admin): AdminUser,
) -> Result<Response, AppError> {
    let layout = admin.layout().await?;
    let per_store = sessions.live_counts_by_store().await?;
    let live_total: u64 = per_store.iter().map(|(_, n)| n).sum();
    let series: [(&str, &str, &[&str]); 4] = [
        ("logins", "Logins", &["login"]),
        ("failed", "Failed logins", &["login_failed"]),
        (
            "expired",
            "Expirations",
            &["idle_expired", "absolute_expired"],
        ),
        ("revoked", "Revocations", &["revoked"]),
    ];
    let mut charts = Vec::new();
    for (id, title, kinds) in series {
        let counts = session_events::hourly_counts(&ctx.db, kinds).await?;
        charts.push(HourlyChart::new(id, title, &counts));
    }
    let recent: Vec<_> = session_events::recent(&ctx.db, 50)
        .await?
        .into_iter()
        .map(|e| {
            json!({
                "at": e.created_at.to_rfc3339(),
                "event": e.event,
                "user_id": e.user_id,
                "session_ref": e.session_ref.unwrap_or_default(),
                "ip": e.ip.unwrap_or_default(),
                "reason": e.reason.unwrap_or_default(),
            })
        })
        .collect();
    let health = sessions.health().await;
    let usage: Vec<_> = sessions
        .backend()
        .usage()
        .await
        .into_iter()
        .map(|(label, value)| json!({ "label": label, "value": value }))
        .collect();
    let notice = match (notice.ended, notice.error.as_deref()) {
        (_, Some("unknown_user")) => "No account has that email.".to_string(),
        (Some(n), _) => format!("{n} sessions ended."),
        _ => String::new(),
    };
    Ok(format::render().view(
        &v,
        "admin/sessions.html",
        data!({
            "layout": layout,
            "notice": notice,
            "live_total": live_total,
            "per_store": per_store.into_iter().map(|(store, count)| json!({"store": store, "count": count})).collect::<Vec<_>>(),
            "charts": charts,
            "recent": recent,
            "health": health,
            "usage": usage,
            "audit": sessions.audit_counts(),
        }),
    )?)
}

/// The account a form names; an unknown email sends the admin back with a notice.
async fn find_user(
    ctx: &AppContext,
    email: &str,
) -> Result<Result<users::Model, Response>, AppError> {
    let unknown = || Redirect::to("/admin/sessions?error=unknown_user").into_response();
    let Ok(email) = EmailAddress::parse(email) else {
        return Ok(Err(unknown()));
    };
    match users::Model::find_by_email(&ctx.db, &email).await {
        Ok(user) => Ok(Ok(user)),
        Err(loco_rs::model::ModelError::EntityNotFound) => Ok(Err(unknown())),
        Err(e) => Err(e.into()),
    }
}

fn ended(count: usize) -> Response {
    Redirect::to(&format!("/admin/sessions?ended={count}")).into_response()
}

#[debug_handler(state = AppContext)]
async fn revoke_user(
    State(ctx): State<AppContext>,
    SessionLayer(sessions): SessionLayer,
    AdminUser(admin): AdminUser,
    CsrfForm(form): CsrfForm<EmailForm>,
) -> Result<Response, AppError> {
    let user = match find_user(&ctx, &form.email).await? {
        Ok(user) => user,
        Err(back) => return Ok(back),
    };
    // An admin ending their own sessions keeps the one they act from.
    let keep = (user.id == admin.user.id)
        .then(|| admin.session.session_ref())
        .flatten();
    let count = sessions
        .revoke_user(user.id, keep.as_ref(), EndReason::RevokedByAdmin)
        .await?;
    Ok(ended(count))
}

#[debug_handler(state = AppContext)]
async fn disable_user(
    State(ctx): State<AppContext>,
    SessionLayer(sessions): SessionLayer,
    AdminUser(admin): AdminUser,
    CsrfForm(form): CsrfForm<EmailForm>,
) -> Result<Response, AppError> {
    let user = match find_user(&ctx, &form.email).await? {
        Ok(user) => user,
        Err(back) => return Ok(back),
    };
    if user.id == admin.user.id {
        return Err(AppError::BadRequest(
            "an admin cannot disable their own account".into(),
        ));
    }
    user.set_disabled(&ctx.db, true).await?;
    let count = sessions.end_on_disable(user.id).await?;
    Ok(ended(count))
}

#[debug_handler(state = AppContext)]
async fn revoke_everyone(
    SessionLayer(sessions): SessionLayer,
    AdminUser(admin): AdminUser,
    CsrfForm(_): CsrfForm<serde::de::IgnoredAny>,
) -> Result<Response, AppError> {
    let keep = admin.session.session_ref();
    let count = sessions
        .revoke_everyone(keep.as_ref(), EndReason::RevokedByAdmin)
        .await?;
    Ok(ended(count))
}

pub fn routes() -> Routes {
    Routes::new()
        .prefix("/admin")
        .add("/sessions", get(show))
        .add("/sessions/revoke-user", post(revoke_user))
        .add("/sessions/revoke-all", post(revoke_everyone))
        .add("/users/disable", post(disable_user))
}
