//! The test harness: boots the real app (its config files, its initializers, its routes)
//! with a throwaway SQLite database and the session settings a test asks for, and starts
//! private Redis servers on free ports. Time passes by editing stored timestamps
//! ([`clock`]), never by sleeping.

#![allow(dead_code)]

pub mod chromium;
pub mod clock;
pub mod direct;
pub mod logs;
pub mod metrics;
pub mod nginx;
pub mod postgres;
pub mod redis;
pub mod redis_topology;

use std::{
    net::SocketAddr,
    path::PathBuf,
    str::FromStr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use axum_test::{TestResponse, TestServer, TestServerConfig};
use futures::TryStreamExt;
use loco_rs::{
    app::{AppContext, Hooks},
    boot::StartMode,
    environment::Environment,
};
use scraper::{Html, Selector};
use serde_json::{json, Value};
use tempfile::TempDir;
use tessera::{
    app::App,
    sessions::{
        stores::{ops::StoreError, Backend},
        Sessions,
    },
};
use tower_sessions::session::Id;

/// A booted app and the throwaway directory and database it uses.
pub struct TestApp {
    pub ctx: AppContext,
    router: axum::Router,
    _scratch: Arc<Scratch>,
}

/// Which SQL database a test app gets: a fresh one either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Database {
    Sqlite,
    Postgres,
}

/// What a test may change about the app it boots.
pub struct Settings {
    pub environment: Environment,
    pub database: Database,
    /// Merged into `settings.sessions`.
    pub sessions: Value,
    /// Reuse another app's scratch directory and database, as a second instance would.
    pub share_with: Option<Arc<Scratch>>,
    /// Merged into the config file's `server` block, e.g.
    /// `{"middlewares": {"timeout_request": {"enable": true, "timeout": 200}}}`; `null`
    /// removes a key, as if the file did not have it.
    pub server: Value,
    /// The database pool's size and how long a request waits for a connection, in ms
    /// (default: 4 connections, Loco's default wait).
    pub pool: Option<(u32, u64)>,
    /// Keep the config file's database pool (size, acquire timeout) instead of the
    /// tests' small one, as a deployment runs it.
    pub shipped_database_pool: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            environment: Environment::Test,
            database: Database::Sqlite,
            sessions: json!({}),
            share_with: None,
            server: json!({}),
            pool: None,
            shipped_database_pool: false,
        }
    }
}

/// A temporary directory and a database URL that live as long as the apps using them.
pub struct Scratch {
    dir: TempDir,
    database_url: String,
    postgres: Option<postgres::TestDatabase>,
}

impl Scratch {
    async fn new(database: Database) -> Self {
        let dir = TempDir::new().expect("temp dir");
        let (database_url, postgres) = match database {
            Database::Sqlite => (
                format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("tessera.sqlite").display()
                ),
                None,
            ),
            Database::Postgres => {
                let db = postgres::TestDatabase::create().await;
                (db.url.clone(), Some(db))
            }
        };
        Self {
            dir,
            database_url,
            postgres,
        }
    }

    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
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
        let scratch = match settings.share_with {
            Some(scratch) => scratch,
            None => Arc::new(Scratch::new(settings.database).await),
        };
        let mut config = App::load_config(&settings.environment).await?;
        config.database.uri = scratch.database_url.clone();
        config.database.dangerously_recreate = false;
        config.database.dangerously_truncate = false;
        if !settings.shipped_database_pool {
            config.database.max_connections = 4;
            config.database.connect_timeout = 5000;
        }
        if let Some((connections, acquire_timeout_ms)) = settings.pool {
            config.database.max_connections = connections;
            config.database.min_connections = 1;
            config.database.acquire_timeout = Some(acquire_timeout_ms);
        }
        config.logger.enable = false;
        if settings.server != json!({}) {
            let mut server = serde_json::to_value(&config.server).expect("server block");
            merge(&mut server, &settings.server);
            config.server = serde_json::from_value(server)
                .map_err(|e| loco_rs::Error::Message(format!("server: {e}")))?;
        }
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

    /// Serves the app over real HTTP on 127.0.0.1 (for a real browser); returns its base
    /// URL. The server lives as long as the test's runtime.
    pub async fn serve(&self) -> String {
        format!("http://{}", self.listen().await)
    }

    /// Serves the app over plain HTTP on a free port of 127.0.0.1, as `cargo loco start`
    /// would (the socket's peer address reaches the handlers); returns the address. The
    /// server lives as long as the test's runtime.
    pub async fn listen(&self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let address = listener.local_addr().expect("bound address");
        let service = self
            .router
            .clone()
            .into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, service).await });
        address
    }

    pub fn scratch(&self) -> Arc<Scratch> {
        self._scratch.clone()
    }

    pub fn sessions(&self) -> Arc<Sessions> {
        Sessions::from_context(&self.ctx).expect("sessions open")
    }

    pub fn session_dir(&self) -> PathBuf {
        self.sessions().config().store.dir.clone()
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

    /// A new browser logged in as an existing user, and its session ID.
    pub async fn browser_logged_in_as(&self, email: &str) -> (TestServer, String) {
        let browser = self.browser();
        let response = self
            .log_in(&browser, email, "correct horse battery", false)
            .await;
        assert_eq!(location(&response), "/dashboard", "login as {email}");
        let id = session_id_set(&response, &self.sessions().config().cookie.name)
            .expect("a session cookie");
        (browser, id)
    }

    /// Creates a user directly in the database (password "correct horse battery").
    pub async fn create_user(&self, email: &str, admin: bool) -> tessera::models::users::Model {
        let new =
            tessera::models::users::NewUser::parse("Some Body", email, "correct horse battery")
                .expect("valid user");
        tessera::models::users::Model::create_with_password(
            &self.ctx.db,
            self.sessions().hashing(),
            &new,
            admin,
        )
        .await
        .expect("user created")
    }

    /// Waits until the audit trail has written every event so far.
    pub async fn flush_audit(&self) {
        self.sessions().audit().flush().await;
    }

    /// The client addresses the audit trail recorded for `event`, oldest first.
    pub async fn audited_ips(&self, event: &str) -> Vec<String> {
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
        use tessera::models::_entities::session_events;
        self.flush_audit().await;
        session_events::Entity::find()
            .filter(session_events::Column::Event.eq(event))
            .order_by_asc(session_events::Column::Id)
            .all(&self.ctx.db)
            .await
            .expect("events")
            .into_iter()
            .filter_map(|e| e.ip)
            .collect()
    }

    /// Runs `tessera-cli ARGS` as an operator would, against this app's database and
    /// session directory (development settings, so nothing is recreated); returns whether
    /// it succeeded, its stdout and its stderr. Awaited, not blocked on: this app's own
    /// background work (the audit writer's transaction) goes on meanwhile, as it would in
    /// a server, instead of holding SQLite's write lock until the command gives up.
    pub async fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let config = self.sessions().config().clone();
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_tessera-cli"))
            .args(args)
            .env("LOCO_ENV", "development")
            .env("LOG_LEVEL", "error")
            .env("DATABASE_URL", &self._scratch.database_url)
            .env("SESSION_STORE", config.store.kind.name())
            .env("SESSION_DIR", &config.store.dir)
            .env(
                "SESSION_SECRET",
                "test-only-secret-0123456789abcdef0123456789",
            )
            .env("REDIS_URL", &config.store.redis.url)
            .output()
            .await
            .expect("tessera-cli runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).to_string(),
            String::from_utf8_lossy(&output.stderr).to_string(),
        )
    }

    /// Runs a task in this process, as `cargo loco task NAME key:value ...` would.
    pub async fn task(&self, name: &str, vars: &[(&str, &str)]) -> loco_rs::Result<()> {
        let vars = loco_rs::task::Vars::from_cli_args(
            vars.iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
        );
        loco_rs::boot::run_task::<App>(&self.ctx, Some(&name.to_string()), &vars).await
    }

    /// Whether the store still holds a record for cookie ID `id`.
    pub async fn store_has(&self, id: &str) -> bool {
        use tower_sessions::session_store::SessionStore;
        self.sessions()
            .store()
            .load(&parse_id(id))
            .await
            .expect("store answers")
            .is_some()
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

/// The attribute `name` of the elements matching `css` in `html` that have it.
pub fn attrs(html: &str, css: &str, name: &str) -> Vec<String> {
    let document = Html::parse_document(html);
    let selector = Selector::parse(css).expect("valid selector");
    document
        .select(&selector)
        .filter_map(|e| e.value().attr(name).map(str::to_string))
        .collect()
}

/// Everything a person reads on the page: the text outside scripts and styles, and the
/// titles shown on hover.
pub fn visible_text(html: &str) -> String {
    let document = Html::parse_document(html);
    let body = Selector::parse("body").expect("valid selector");
    let mut out = String::new();
    for node in document.select(&body).flat_map(|b| b.descendants()) {
        if let Some(text) = node.value().as_text() {
            let hidden = node
                .parent()
                .and_then(|p| p.value().as_element())
                .is_some_and(|e| matches!(e.name(), "script" | "style"));
            if !hidden {
                out.push_str(text);
                out.push(' ');
            }
        } else if let Some(title) = node.value().as_element().and_then(|e| e.attr("title")) {
            out.push_str(title);
            out.push(' ');
        }
    }
    out
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

/// Every key `backend` lists, page after page (small pages, so a test with a handful of
/// records crosses page boundaries).
///
/// # Errors
/// The listing's error: the memory store cannot be listed.
pub async fn listed_keys(backend: &Backend) -> Result<Vec<Id>, StoreError> {
    backend.key_pages(3).try_concat().await
}

/// How many records `backend` holds (the memory store counts itself: it cannot be
/// listed).
pub async fn record_count(backend: &Backend) -> usize {
    match listed_keys(backend).await {
        Ok(keys) => keys.len(),
        Err(StoreError::NotListable) => backend
            .usage()
            .await
            .iter()
            .find(|(label, _)| *label == "records")
            .and_then(|(_, n)| usize::try_from(*n).ok())
            .expect("the memory store counts its records"),
        Err(error) => panic!("the store cannot be listed: {error}"),
    }
}

/// What ran over a connection made by [`counted`]: how many statements, and the most
/// parameters one of them bound.
#[derive(Clone, Default)]
pub struct StatementCounts {
    statements: Arc<AtomicUsize>,
    most_bound: Arc<AtomicUsize>,
}

impl StatementCounts {
    pub fn statements(&self) -> usize {
        self.statements.load(Ordering::Relaxed)
    }

    pub fn most_bound(&self) -> usize {
        self.most_bound.load(Ordering::Relaxed)
    }
}

/// A connection to `db`'s database that counts what runs over it (the original does not).
pub fn counted(db: &sea_orm::DatabaseConnection) -> (sea_orm::DatabaseConnection, StatementCounts) {
    let counts = StatementCounts::default();
    let mut db = db.clone();
    let seen = counts.clone();
    db.set_metric_callback(move |info| {
        seen.statements.fetch_add(1, Ordering::Relaxed);
        let bound = info.statement.values.as_ref().map_or(0, |v| v.0.len());
        seen.most_bound.fetch_max(bound, Ordering::Relaxed);
    });
    (db, counts)
}
