//! `server.middlewares.static`: the files under `folder.path`, served at `folder.uri` by
//! tower-http's `ServeDir` as Loco serves them (`Last-Modified`, `If-Modified-Since`,
//! ranges, `precompressed` `.gz` variants), with `cache_control` on each file served.
//!
//! Where Tessera differs from Loco, on purpose (the product contract, README):
//! - A missing file answers `404` with Tessera's page, never the `fallback` file with
//!   `200`: a `fallback` other than Loco's default stops the app at start, by name.
//! - `cache_control` goes on files and their `304`s, not on that 404 (`no-store`): a
//!   long-cached "not found" would outlive the deploy that adds the file.
//! - A `cache_control` that is not a valid header value stops the app at start (Loco
//!   would put `max-age=31536000` in its place).

use std::{convert::Infallible, path::PathBuf};

use axum::{
    body::Body,
    http::{header::CACHE_CONTROL, HeaderValue, Request, Response, StatusCode},
    response::IntoResponse,
    Router as AxumRouter,
};
use loco_rs::{controller::middleware::static_assets::StaticAssets, Error, Result};
use tower_http::{services::ServeDir, set_header::SetResponseHeader};

use crate::errors::AppError;

/// The static folder as configured, checked.
#[derive(Debug)]
pub struct StaticFiles {
    /// Where the files are served: `/` or a path without a trailing slash.
    uri: String,
    path: PathBuf,
    precompressed: bool,
    cache_control: Option<HeaderValue>,
}

impl StaticFiles {
    /// # Errors
    /// One line naming the key: a `fallback` file, a `folder.uri` that is not a plain
    /// path, a missing `folder.path` while `must_exist` is on, a `cache_control` that is
    /// not a header value.
    pub fn from_config(assets: &StaticAssets) -> Result<Self> {
        if assets.fallback != StaticAssets::default().fallback {
            return Err(Error::Message(format!(
                "server.middlewares.static.fallback: a missing static file answers 404 with \
                 Tessera's page, not `{}` with 200; remove the key",
                assets.fallback.display()
            )));
        }
        let uri = assets.folder.uri.trim_end_matches('/');
        let uri = if uri.is_empty() { "/" } else { uri };
        if !uri.starts_with('/') || uri.contains(['{', '}', '*']) {
            return Err(Error::Message(format!(
                "server.middlewares.static.folder.uri: `{}` is not a plain path starting with `/`",
                assets.folder.uri
            )));
        }
        if assets.must_exist && !assets.folder.path.is_dir() {
            return Err(Error::Message(format!(
                "server.middlewares.static.folder.path: `{}` is not a folder (must_exist is on)",
                assets.folder.path.display()
            )));
        }
        let cache_control = match &assets.cache_control {
            Some(value) => Some(HeaderValue::from_str(value).map_err(|_| {
                Error::Message(format!(
                    "server.middlewares.static.cache_control: `{value}` is not a valid header value"
                ))
            })?),
            None => None,
        };
        Ok(Self {
            uri: uri.to_string(),
            path: assets.folder.path.clone(),
            precompressed: assets.precompressed,
            cache_control,
        })
    }

    /// `router` with the folder served at its URI. Served at `/`, the folder answers
    /// whatever no route matches, any method (a `POST` to an unknown address is a 404
    /// there too, not a 405).
    pub fn route(self, router: AxumRouter) -> AxumRouter {
        let at_root = self.uri == "/";
        let files = ServeDir::new(&self.path)
            .not_found_service(tower::service_fn(not_found_page))
            .call_fallback_on_method_not_allowed(at_root);
        let files = if self.precompressed {
            files.precompressed_gzip()
        } else {
            files
        };
        let files = SetResponseHeader::if_not_present(
            files,
            CACHE_CONTROL,
            cache_policy(self.cache_control),
        );
        if at_root {
            router.fallback_service(files)
        } else {
            router.nest_service(&self.uri, files)
        }
    }
}

async fn not_found_page(_: Request<Body>) -> Result<axum::response::Response, Infallible> {
    Ok(AppError::NotFound.into_response())
}

/// `value` for a file served (or not modified); Tessera's 404 page keeps its `no-store`.
fn cache_policy<B>(
    value: Option<HeaderValue>,
) -> impl FnMut(&Response<B>) -> Option<HeaderValue> + Clone {
    move |response| {
        let status = response.status();
        (status.is_success() || status == StatusCode::NOT_MODIFIED)
            .then(|| value.clone())
            .flatten()
    }
}
