pub mod account;
pub mod admin;
pub mod api;
pub mod auth;
pub mod dashboard;
pub mod extract;
pub mod health;
pub mod platforms;
pub mod sessions;

use std::{ops::Deref, sync::Arc};

use loco_rs::app::AppContext;

/// The application context behind one `Arc`: the state of the busiest routes. axum clones
/// a route's state for every request it serves, and cloning Loco's `AppContext` deep-copies
/// its whole `Config`; cloning this is one atomic increment. A route takes it with
/// `get(handler).with_state(shared.clone())` and stays a normal entry of `AppRoutes`.
#[derive(Clone)]
pub struct Shared(Arc<AppContext>);

impl Shared {
    /// One copy of `ctx`, made when the routes are built.
    #[must_use]
    pub fn new(ctx: &AppContext) -> Self {
        Self(Arc::new(ctx.clone()))
    }
}

impl Deref for Shared {
    type Target = AppContext;

    fn deref(&self) -> &AppContext {
        &self.0
    }
}

/// What extractors that need the database take as state: Loco's `AppContext` on most
/// routes, [`Shared`] on the busiest ones.
pub trait AppState: Send + Sync {
    fn ctx(&self) -> &AppContext;
}

impl AppState for AppContext {
    fn ctx(&self) -> &AppContext {
        self
    }
}

impl AppState for Shared {
    fn ctx(&self) -> &AppContext {
        self
    }
}
