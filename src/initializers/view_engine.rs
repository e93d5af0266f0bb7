//! Tera views from `assets/views`, with Tessera's filters (`when`: times for people).
//! Built once before the server starts and kept in the context's shared store; the app's
//! stack around the router (`crate::middleware`) hands it to every request.

use async_trait::async_trait;
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

    async fn before_run(&self, ctx: &AppContext) -> Result<()> {
        let tera_engine = engines::TeraView::build_with_post_process(|tera| {
            crate::views::time::register(tera);
            Ok(())
        })?;
        ctx.shared_store.insert(ViewEngine::from(tera_engine));
        Ok(())
    }
}
