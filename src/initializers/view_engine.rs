//! Tera views from `assets/views`, with Tessera's filters (`when`: times for people).

use async_trait::async_trait;
use axum::{Extension, Router as AxumRouter};
use loco_rs::{
    app::{AppContext, Initializer},
    controller::views::{engines, ViewEngine},
    Result,
};

pub struct ViewEngineInitializer;

#[async_trait]
impl Initializer for ViewEngineInitializer {
    fn name(&self) -> String {
        "view-engine".to_string()
    }

    async fn after_routes(&self, router: AxumRouter, _ctx: &AppContext) -> Result<AxumRouter> {
        let tera_engine = engines::TeraView::build_with_post_process(|tera| {
            crate::views::time::register(tera);
            Ok(())
        })?;
        Ok(router.layer(Extension(ViewEngine::from(tera_engine))))
    }
}
