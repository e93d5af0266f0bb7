//! Platform connections: list and add them, make one the session's active platform.

use axum::{extract::Path, http::StatusCode, response::Redirect};
use loco_rs::prelude::*;
use serde::Deserialize;

use crate::{
    controllers::extract::{CsrfForm, CurrentUser},
    errors::AppError,
    models::platforms::{self, NewPlatform, PlatformErrors},
};

#[derive(Debug, Deserialize)]
pub struct PlatformForm {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub url: String,
}

async fn render_list(
    v: &TeraView,
    ctx: &AppContext,
    current: &mut CurrentUser,
    form: &PlatformForm,
    errors: &PlatformErrors,
    status: StatusCode,
) -> Result<Response, AppError> {
    let layout = current.layout().await?;
    let list = platforms::Model::list_for(&ctx.db, current.user.id).await?;
    let active = current.active_platform.as_ref().map(|p| p.id);
    let rows: Vec<_> = list
        .iter()
        .map(|p| serde_json::json!({ "id": p.id, "name": p.name, "url": p.url, "active": Some(p.id) == active }))
        .collect();
    Ok(format::render().status(status).view(
        v,
        "platforms/index.html",
        data!({
            "layout": layout,
            "platforms": rows,
            "form": { "name": form.name.trim(), "url": form.url.trim() },
            "errors": { "name": errors.name.unwrap_or_default(), "url": errors.url.unwrap_or_default() },
        }),
    )?)
}

#[debug_handler(state = AppContext)]
async fn index(
    State(ctx): State<AppContext>,
    ViewEngine(v): ViewEngine<TeraView>,
    mut current: CurrentUser,
) -> Result<Response, AppError> {
    let blank = PlatformForm {
        name: String::new(),
        url: String::new(),
    };
    render_list(
        &v,
        &ctx,
        &mut current,
        &blank,
        &PlatformErrors::default(),
        StatusCode::OK,
    )
    .await
}

#[debug_handler(state = AppContext)]
async fn create(
    State(ctx): State<AppContext>,
    ViewEngine(v): ViewEngine<TeraView>,
    mut current: CurrentUser,
    CsrfForm(form): CsrfForm<PlatformForm>,
) -> Result<Response, AppError> {
    match NewPlatform::parse(&form.name, &form.url) {
        Ok(new) => {
            let platform = platforms::Model::create_for(&ctx.db, current.user.id, &new).await?;
            current
                .session
                .flash(format!("Added {}.", platform.name))
                .await?;
            Ok(Redirect::to("/platforms").into_response())
        }
        Err(errors) => {
            render_list(
                &v,
                &ctx,
                &mut current,
                &form,
                &errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
    }
}

#[debug_handler(state = AppContext)]
async fn activate(
    State(ctx): State<AppContext>,
    Path(id): Path<i64>,
    mut current: CurrentUser,
    CsrfForm(_): CsrfForm<serde::de::IgnoredAny>,
) -> Result<Response, AppError> {
    let platform = platforms::Model::find_for(&ctx.db, current.user.id, id).await?;
    current
        .session
        .set_active_platform(Some(platform.id))
        .await?;
    current
        .session
        .flash(format!("{} is now your active platform.", platform.name))
        .await?;
    Ok(Redirect::to("/platforms").into_response())
}

#[debug_handler(state = AppContext)]
async fn delete(
    State(ctx): State<AppContext>,
    Path(id): Path<i64>,
    mut current: CurrentUser,
    CsrfForm(_): CsrfForm<serde::de::IgnoredAny>,
) -> Result<Response, AppError> {
    platforms::Model::delete_for(&ctx.db, current.user.id, id).await?;
    if current.session.active_platform_id() == Some(id) {
        current.session.set_active_platform(None).await?;
    }
    Ok(Redirect::to("/platforms").into_response())
}

pub fn routes() -> Routes {
    Routes::new()
        .prefix("/platforms")
        .add("/", get(index).post(create))
        .add("/{id}/activate", post(activate))
        .add("/{id}/delete", post(delete))
}
