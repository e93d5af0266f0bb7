//! Admin monitoring: what the session layer is doing, and the levers to end sessions.

use axum::{
    extract::{Path, Query},
    response::Redirect,
};
use loco_rs::prelude::*;
use serde::Deserialize;
use serde_json::json;

use crate::{
    controllers::extract::{AdminUser, CsrfForm, SharedSessions},
    errors::AppError,
    models::{
        session_events,
        users::{self, EmailAddress},
    },
    sessions::{
        events::EndReason,
        jobs::JobKind,
        keys::SessionRef,
        registry::{EXACT_LIVE_COUNT, FILTER_ACCOUNTS},
    },
    views::admin as admin_view,
};

#[derive(Debug, Deserialize)]
pub struct EmailForm {
    #[serde(default)]
    pub email: String,
}

/// What `/admin/sessions` is asked for: a filter, where the events table starts, and the
/// outcome of the last action.
#[derive(Debug, Deserialize)]
pub struct PageQuery {
    /// Show only the live sessions of users whose email starts with this (any case).
    #[serde(default)]
    pub email: String,
    /// Show the events before this one (an event ID, from the "Older events" link);
    /// absent, the newest. Read as text so that a bad value gets a clear answer.
    #[serde(default)]
    pub before: Option<String>,
    #[serde(default)]
    pub ended: Option<u64>,
    #[serde(default)]
    pub error: Option<String>,
    /// What became of a request to end everyone's sessions: `started` or `running`.
    #[serde(default)]
    pub job: Option<String>,
}

/// Rows of the live sessions table at most; the filter narrows it down.
const SESSION_ROWS: u64 = 200;
/// Events per page of the recent events table.
const EVENTS_PER_PAGE: u64 = 25;

/// The event ID `before=` names. A link the page made always holds one; anything else was
/// typed or cut short, and an answer that says so beats a page that silently starts over.
fn parse_before(before: Option<&str>) -> Result<Option<i64>, AppError> {
    match before.map(str::trim) {
        None | Some("") => Ok(None),
        Some(id) => id
            .parse::<i64>()
            .ok()
            .filter(|id| *id > 0)
            .map(Some)
            .ok_or(AppError::BadLink(
                "This page of events starts before an event that no link names: `before` must be an event number, as in the “Older events” link. Go back to the newest events.",
            )),
    }
}

#[debug_handler(state = AppContext)]
async fn show(
    State(ctx): State<AppContext>,
    ViewEngine(v): ViewEngine<TeraView>,
    SharedSessions(sessions): SharedSessions,
    Query(query): Query<PageQuery>,
    AdminUser(mut admin): AdminUser,
) -> Result<Response, AppError> {
    let before = parse_before(query.before.as_deref())?;
    let layout = admin.layout().await?;
    let live = sessions.live_counts().await?;
    let counts = session_events::hourly_counts(&ctx.db, &admin_view::chart_kinds()).await?;
    let table = sessions.live_table(&query.email, SESSION_ROWS).await?;
    let current_ref = admin.session.session_ref();
    let events = session_events::page_before(&ctx.db, before, EVENTS_PER_PAGE).await?;
    let health = sessions.health().await;
    let usage = sessions.store_usage().await;
    let job = sessions.jobs().latest(JobKind::EndEveryone).await?;
    let notice = match (query.ended, query.error.as_deref()) {
        (_, Some("unknown_user")) => "No account has that email.".to_string(),
        _ if query.job.as_deref() == Some("started") => {
            "Ending everyone's sessions (but yours) has started; its progress is below.".to_string()
        }
        _ if query.job.as_deref() == Some("running") => {
            "Ending everyone's sessions is already under way; it was not started again.".to_string()
        }
        (_, Some("unknown_session")) => "That session has already ended.".to_string(),
        (Some(1), _) => "1 session ended.".to_string(),
        (Some(n), _) => format!("{n} sessions ended."),
        _ => String::new(),
    };
    let filter = query.email.trim();
    Ok(format::render().view(
        &v,
        "admin/sessions.html",
        data!({
            "layout": layout,
            "notice": notice,
            "live_total": live.total(),
            "live_counted_at": live.counted_at.map(|at| at.to_rfc3339()),
            "exact_live_count": EXACT_LIVE_COUNT,
            "per_store": live.per_store.into_iter().map(|(store, count)| json!({"store": store, "count": count})).collect::<Vec<_>>(),
            "charts": admin_view::charts(&counts),
            "filter": filter,
            // The events pager keeps the filter.
            "filter_query": if filter.is_empty() {
                String::new()
            } else {
                format!("&email={}", url::form_urlencoded::byte_serialize(filter.as_bytes()).collect::<String>())
            },
            "sessions": admin_view::session_rows(&table.sessions, current_ref.as_ref().map(SessionRef::as_str)),
            "sessions_more": table.more,
            "accounts_capped": table.accounts_capped,
            "filter_accounts": FILTER_ACCOUNTS,
            "older_than": events.older_than,
            "paged": before.is_some(),
            "events": admin_view::event_rows(events),
            "health": health,
            "usage": usage.value.into_iter().map(|(label, value)| json!({ "label": label, "value": value })).collect::<Vec<_>>(),
            "usage_read_at": usage.at.to_rfc3339(),
            "audit": sessions.audit_counts(),
            "job": job.as_ref().map(admin_view::job_line),
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
    SharedSessions(sessions): SharedSessions,
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
        .revoke_user(
            user.id,
            keep.as_ref(),
            EndReason::RevokedByAdmin,
            admin.session.actor().as_ref(),
        )
        .await?;
    Ok(ended(count))
}

/// Ends one session, whoever's it is. The admin's own session is a logout.
#[debug_handler(state = AppContext)]
async fn revoke_session(
    SharedSessions(sessions): SharedSessions,
    Path(session_ref): Path<String>,
    AdminUser(mut admin): AdminUser,
    CsrfForm(_): CsrfForm<serde::de::IgnoredAny>,
) -> Result<Response, AppError> {
    let session_ref = SessionRef::parse(&session_ref).ok_or(AppError::NotFound)?;
    if admin.session.session_ref().as_ref() == Some(&session_ref) {
        admin.session.log_out().await?;
        return Ok(Redirect::to("/login").into_response());
    }
    let Some(row) = sessions.live_session(&session_ref).await? else {
        return Ok(Redirect::to("/admin/sessions?error=unknown_session").into_response());
    };
    sessions
        .revoke(
            &row,
            EndReason::RevokedByAdmin,
            admin.session.actor().as_ref(),
        )
        .await?;
    Ok(ended(1))
}

#[debug_handler(state = AppContext)]
async fn disable_user(
    State(ctx): State<AppContext>,
    SharedSessions(sessions): SharedSessions,
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
    // The credential generation moves on before the sessions are listed: a login racing
    // the disable is listed and ended, or refused.
    user.set_disabled(&ctx.db, true).await?;
    let count = sessions
        .end_on_disable(user.id, admin.session.actor().as_ref())
        .await?;
    Ok(ended(count))
}

/// Starts ending everyone's sessions but the admin's own, in the background, and answers
/// at once: the page shows the job's progress. A second request while one runs starts
/// nothing.
#[debug_handler(state = AppContext)]
async fn revoke_everyone(
    SharedSessions(sessions): SharedSessions,
    AdminUser(admin): AdminUser,
    CsrfForm(_): CsrfForm<serde::de::IgnoredAny>,
) -> Result<Response, AppError> {
    let started = sessions
        .start_ending_everyone(admin.session.session_ref(), admin.session.actor())
        .await?;
    let outcome = if started.is_some() {
        "started"
    } else {
        "running"
    };
    Ok(Redirect::to(&format!("/admin/sessions?job={outcome}")).into_response())
}

pub fn routes() -> Routes {
    Routes::new()
        .prefix("/admin")
        .add("/sessions", get(show))
        .add("/sessions/revoke-user", post(revoke_user))
        .add("/sessions/{session_ref}/revoke", post(revoke_session))
        .add("/sessions/revoke-all", post(revoke_everyone))
        .add("/users/disable", post(disable_user))
}
