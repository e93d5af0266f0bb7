//! The test harness: boots the real app (its config files, its initializers, its routes)
//! with a throwaway SQLite database and the session settings a test asks for, and starts
//! private Redis servers on free ports.

#![allow(dead_code)]

pub mod redis;

use std::{net::SocketAddr, path::PathBuf, str::FromStr, sync::Arc};

use axum_test::{TestResponse, TestServer, TestServerConfig};
use loco_rs::{
    app::{AppContext, Hooks},
    boot::StartMode,
    environment::Environment,
};
use scraper::{Html, Selector};
use serde_json::{json, Value};
use tempfile::TempDir;
use tessera::{app::App, sessions::Sessions};
use tower_sessions::session::Id;

/// A booted app and the throwaway directory that holds its database.
pub struct TestApp {
    pub ctx: AppContext,
    router: axum::Router,
    _scratch: Arc<TempDir>,
}

/// What a test may change about the app it boots.
pub struct Settings {
    pub environment: Environment,
    /// Merged into `settings.sessions`.
    pub sessions: Value,
    /// Reuse another app's scratch directory (same database), as a second instance would.
    pub share_with: Option<Arc<TempDir>>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            environment: Environment::Test,
            sessions: json!({}),
            share_with: None,
        }
    }
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                merge(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

impl TestApp {
    /// The test environment's app with the memory store.
    pub async fn start() -> Self {
        Self::with(Settings::default()).await
    }

    /// The test environment's app with `sessions` merged into `settings.sessions`.
    pub async fn with_sessions(sessions: Value) -> Self {
        Self::with(Settings {
            sessions,
            ..Settings::default()
        })
        .await
    }

    pub async fn with(settings: Settings) -> Self {
        Self::try_with(settings).await.expect("app boots")
    }

    pub async fn try_with(settings: Settings) -> loco_rs::Result<Self> {
        let scratch = settings
            .share_with
            .unwrap_or_else(|| Arc::new(TempDir::new().expect("temp dir")));
        let mut config = App::load_config(&settings.environment).await?;
        config.database.uri = format!(
            "sqlite://{}?mode=rwc",
            scratch.path().join("tessera.sqlite").display()
        );
        config.database.dangerously_recreate = false;
        config.database.dangerously_truncate = false;
        config.database.max_connections = 2;
        config.logger.enable = false;
        let app_settings = config.settings.get_or_insert_with(|| json!({}));
        let mut sessions = json!({
            "dir": scratch.path().join("sessions"),
            "secret": "test-only-secret-0123456789abcdef0123456789",
        });
        merge(&mut sessions, &settings.sessions);
        merge(&mut app_settings["sessions"], &sessions);
        let boot = App::boot(StartMode::ServerOnly, &settings.environment, config).await?;
        Ok(Self {
            ctx: boot.app_context,
            router: boot.router.expect("server mode has a router"),
            _scratch: scratch,
        })
    }

    /// A browser: its own cookie jar against this app.
    pub fn browser(&self) -> TestServer {
        TestServer::new_with_config(
            self.router
                .clone()
                .into_make_service_with_connect_info::<SocketAddr>(),
            TestServerConfig {
                save_cookies: true,
                ..TestServerConfig::default()
            },
        )
        .expect("test server")
    }

    pub fn scratch(&self) -> Arc<TempDir> {
        self._scratch.clone()
    }

    pub fn sessions(&self) -> Arc<Sessions> {
        Sessions::from_context(&self.ctx).expect("sessions open")
    }

    pub fn session_dir(&self) -> PathBuf {
        self.sessions().config().dir.clone()
    }

    /// Registers a user through the form.
    pub async fn register(&self, browser: &TestServer, name: &str, email: &str, password: &str) {
        let token = csrf_token_of(browser, "/register").await;
        let response = browser
            .post("/register")
            .form(&[
                ("csrf_token", token.as_str()),
                ("name", name),
                ("email", email),
                ("password", password),
            ])
            .await;
        assert_eq!(response.status_code(), 303, "register: {}", response.text());
    }

    /// Logs in through the form; returns the response (303 on success).
    pub async fn log_in(
        &self,
        browser: &TestServer,
        email: &str,
        password: &str,
        remember: bool,
    ) -> TestResponse {
        let token = csrf_token_of(browser, "/login").await;
        let mut form = vec![
            ("csrf_token", token.as_str()),
            ("email", email),
            ("password", password),
        ];
        if remember {
            form.push(("remember", "on"));
        }
        browser.post("/login").form(&form).await
    }

    /// A new browser with a freshly registered, logged-in user.
    pub async fn logged_in_browser(&self, email: &str) -> TestServer {
        let browser = self.browser();
        self.register(&browser, "Test User", email, "correct horse battery")
            .await;
        let response = self
            .log_in(&browser, email, "correct horse battery", false)
            .await;
        assert_eq!(response.status_code(), 303);
        assert_eq!(location(&response), "/dashboard");
        browser
    }
}

/// The `csrf_token` hidden field of the page at `path`.
pub async fn csrf_token_of(browser: &TestServer, path: &str) -> String {
    let page = browser.get(path).await;
    assert_eq!(page.status_code(), 200, "GET {path}");
    hidden_field(&page.text(), "csrf_token")
        .unwrap_or_else(|| panic!("{path} has a csrf_token field"))
}

/// The value of the first hidden input named `name` in `html`.
pub fn hidden_field(html: &str, name: &str) -> Option<String> {
    let document = Html::parse_document(html);
    let selector = Selector::parse(&format!("input[type=hidden][name={name}]")).ok()?;
    document
        .select(&selector)
        .next()
        .and_then(|input| input.value().attr("value"))
        .map(str::to_string)
}

/// Text of the elements matching `css` in `html`.
pub fn texts(html: &str, css: &str) -> Vec<String> {
    let document = Html::parse_document(html);
    let selector = Selector::parse(css).expect("valid selector");
    document
        .select(&selector)
        .map(|e| e.text().collect::<String>().trim().to_string())
        .collect()
}

pub fn location(response: &TestResponse) -> String {
    response
        .maybe_header("location")
        .and_then(|v| v.to_str().ok().map(str::to_string))
        .unwrap_or_default()
}

/// The raw `Set-Cookie` header for `name`, if the response set one.
pub fn set_cookie_header(response: &TestResponse, name: &str) -> Option<String> {
    response
        .iter_headers_by_name("set-cookie")
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_string)
}

/// The session ID a response set in the `name` cookie.
pub fn session_id_set(response: &TestResponse, name: &str) -> Option<String> {
    set_cookie_header(response, name).and_then(|header| {
        cookie::Cookie::parse(header)
            .ok()
            .map(|c| c.value().to_string())
            .filter(|v| !v.is_empty())
    })
}

pub fn parse_id(value: &str) -> Id {
    Id::from_str(value).expect("a session id")
}
