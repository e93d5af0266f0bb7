//! `server.middlewares` keeps Loco's meaning: one test per key Tessera's stack reads
//! (and `server.ident`), each key set as an operator would set it in `config/*.yaml`,
//! or refused at start with one line naming it.

use std::{path::Path, process::Command};

use axum::{
    body::Body,
    http::{Method, Request, StatusCode},
    routing::get,
    Router,
};
use axum_test::TestResponse;
use serde_json::{json, Value};
use tempfile::TempDir;
use tower::ServiceExt;
use tower_sessions::session::Id;

use crate::support::{logs, redis::RedisServer, Settings, TestApp};

fn header(response: &TestResponse, name: &str) -> Option<String> {
    response
        .maybe_header(name)
        .and_then(|value| value.to_str().ok().map(str::to_string))
}

/// The test app with `middlewares` merged into `server.middlewares`.
async fn with_middlewares(middlewares: Value) -> TestApp {
    TestApp::with(Settings {
        server: json!({ "middlewares": middlewares }),
        ..Settings::default()
    })
    .await
}

/// The one-line start-up error of the test app with `server` merged into `server`.
async fn refusal(server: Value) -> String {
    match TestApp::try_with(Settings {
        server,
        ..Settings::default()
    })
    .await
    {
        Ok(_) => panic!("the app started"),
        Err(error) => {
            let error = error.to_string();
            assert_eq!(error.lines().count(), 1, "one line: {error}");
            error
        }
    }
}

/// A folder with one file, `hello.txt`, and its `.gz` variant.
fn folder_with_a_file() -> TempDir {
    let dir = TempDir::new().expect("temp dir");
    std::fs::write(dir.path().join("hello.txt"), "hello, plain").expect("write");
    std::fs::write(dir.path().join("hello.txt.gz"), "pretend gzip bytes").expect("write");
    dir
}

fn static_at(uri: &str, path: &Path, more: Value) -> Value {
    let mut assets = json!({
        "enable": true,
        "must_exist": true,
        "folder": {"uri": uri, "path": path},
    });
    if let (Some(assets), Value::Object(more)) = (assets.as_object_mut(), more) {
        assets.extend(more);
    }
    json!({ "static": assets })
}

/// A store that never answers in time: Redis on a port nobody listens on.
fn unreachable_redis(environment: loco_rs::environment::Environment, server: Value) -> Settings {
    Settings {
        environment,
        sessions: json!({
            "store": "redis",
            "redis": {"url": "redis://127.0.0.1:1", "command_timeout_ms": 200},
        }),
        server,
        ..Settings::default()
    }
}

#[tokio::test]
async fn request_id_off_leaves_responses_without_one() {
    let app = with_middlewares(json!({"request_id": {"enable": false}})).await;
    let response = app
        .browser()
        .get("/login")
        .add_header("x-request-id", "mine")
        .await;
    assert_eq!(response.status_code(), 200);
    assert_eq!(header(&response, "x-request-id"), None);
}

/// What a request logs (here the audit trail's `session event` of a login) names it.
#[tokio::test]
async fn request_id_is_on_the_log_lines_of_its_request() {
    let logs = logs::captured();
    let app = TestApp::start().await;
    app.create_user("ida@example.com", false).await;
    let browser = app.browser();
    let token = crate::support::csrf_token_of(&browser, "/login").await;
    let response = browser
        .post("/login")
        .add_header("x-request-id", "login-line@test")
        .form(&[
            ("csrf_token", token.as_str()),
            ("email", "ida@example.com"),
            ("password", "correct horse battery"),
        ])
        .await;
    assert_eq!(response.status_code(), 303);
    let lines = logs.lines_with("request_id=login-line@test");
    assert!(
        lines
            .iter()
            .any(|line| line.contains("session event") && line.contains("event=\"login\"")),
        "{lines:#?}"
    );
}

/// `logger` is Loco's per-request span: on, each line of the request is inside
/// `http-request` (and tower-http adds its request events); off, no span, and the lines
/// still end with the request's ID.
#[tokio::test]
async fn logger_puts_a_failing_request_in_its_span_and_its_id_on_every_line() {
    let logs = logs::captured();
    for (spans, id) in [(true, "span-on-503@test"), (false, "span-off-503@test")] {
        let app = TestApp::with(unreachable_redis(
            loco_rs::environment::Environment::Test,
            json!({"middlewares": {"logger": {"enable": spans}}}),
        ))
        .await;
        let response = app
            .browser()
            .get("/dashboard")
            .add_header("cookie", format!("session={}", Id::default()))
            .add_header("x-request-id", id)
            .await;
        assert_eq!(response.status_code(), 503);
        let lines = logs.lines_with(id);
        let failure = lines
            .iter()
            .find(|line| line.contains("session store unavailable"))
            .unwrap_or_else(|| panic!("the failure is logged with {id}: {lines:#?}"));
        assert!(failure.ends_with(&format!(" request_id={id}")), "{failure}");
        let in_span = lines
            .iter()
            .filter(|line| line.contains("http-request"))
            .count();
        if spans {
            assert_eq!(in_span, lines.len(), "every line in the span: {lines:#?}");
            assert!(
                lines
                    .iter()
                    .any(|line| line.contains("finished processing request")),
                "tower-http's response event: {lines:#?}"
            );
        } else {
            assert_eq!(in_span, 0, "no span: {lines:#?}");
        }
    }
}

#[tokio::test]
async fn secure_headers_follow_the_preset_or_are_off() {
    let owasp = with_middlewares(json!({
        "secure_headers": {"enable": true, "preset": "owasp", "overrides": null},
    }))
    .await;
    let response = owasp.browser().get("/login").await;
    assert_eq!(
        header(&response, "cross-origin-opener-policy").as_deref(),
        Some("same-origin"),
        "from the owasp preset"
    );
    assert_eq!(
        header(&response, "x-download-options"),
        None,
        "github's only"
    );

    let off = with_middlewares(json!({"secure_headers": {"enable": false}})).await;
    let response = off.browser().get("/login").await;
    for name in ["content-security-policy", "x-frame-options"] {
        assert_eq!(header(&response, name), None, "{name}");
    }

    let error = refusal(json!({"middlewares": {
        "secure_headers": {"enable": true, "preset": "no-such-preset"},
    }}))
    .await;
    assert!(
        error.starts_with("server.middlewares.secure_headers: ")
            && error.contains("no-such-preset"),
        "{error}"
    );
}

/// Loco's `etag` turns a response into a 304 when `If-None-Match` names its `ETag`.
/// Tessera sends no `ETag` anywhere, so the layer is not run; this holds it to that.
#[tokio::test]
async fn no_response_carries_an_etag_so_if_none_match_changes_nothing() {
    let app = TestApp::start().await;
    let browser = app.browser();
    for path in ["/login", "/static/app.css", "/api/session", "/no/such/page"] {
        let response = browser.get(path).add_header("if-none-match", "*").await;
        assert_eq!(header(&response, "etag"), None, "{path}");
        assert_ne!(response.status_code(), StatusCode::NOT_MODIFIED, "{path}");
    }
}

#[tokio::test]
async fn static_serves_the_configured_folder_at_its_uri() {
    let folder = folder_with_a_file();
    let app = with_middlewares(static_at(
        "/files",
        folder.path(),
        json!({"cache_control": null}),
    ))
    .await;
    let browser = app.browser();
    let file = browser.get("/files/hello.txt").await;
    assert_eq!(file.status_code(), 200);
    assert_eq!(file.text(), "hello, plain");
    assert_eq!(
        header(&file, "cache-control"),
        None,
        "no cache_control set: none sent, as with Loco"
    );
    assert!(header(&file, "x-request-id").is_some(), "inside the stack");
    assert_eq!(browser.get("/static/app.css").await.status_code(), 404);
    let missing = browser.get("/files/nope.txt").await;
    assert_eq!(missing.status_code(), 404);
    assert!(missing.text().contains("Not found"), "Tessera's page");
    assert_eq!(
        header(&missing, "cache-control").as_deref(),
        Some("no-store")
    );
}

#[tokio::test]
async fn static_cache_control_is_what_files_and_their_304s_say() {
    let app = with_middlewares(json!({
        "static": {"cache_control": "public, max-age=4242"},
    }))
    .await;
    let browser = app.browser();
    let file = browser.get("/static/app.css").await;
    assert_eq!(file.status_code(), 200);
    assert_eq!(
        header(&file, "cache-control").as_deref(),
        Some("public, max-age=4242")
    );
    let last_modified = header(&file, "last-modified").expect("a validator");
    let again = browser
        .get("/static/app.css")
        .add_header("if-modified-since", last_modified)
        .await;
    assert_eq!(again.status_code(), 304);
    assert_eq!(
        header(&again, "cache-control").as_deref(),
        Some("public, max-age=4242")
    );
    let missing = browser.get("/static/gone.css").await;
    assert_eq!(missing.status_code(), 404);
    assert_eq!(
        header(&missing, "cache-control").as_deref(),
        Some("no-store"),
        "a 404 is never cached"
    );

    let error = refusal(json!({"middlewares": {"static": {"cache_control": "a\u{7f}b"}}})).await;
    assert!(
        error.starts_with("server.middlewares.static.cache_control: "),
        "{error}"
    );
}

#[tokio::test]
async fn static_must_exist_refuses_a_missing_folder_and_off_serves_404s() {
    let gone = TempDir::new().expect("temp dir").path().join("gone");
    let error = refusal(json!({"middlewares": static_at("/static", &gone, json!({}))})).await;
    assert!(
        error.starts_with("server.middlewares.static.folder.path: "),
        "{error}"
    );

    let app = with_middlewares(static_at("/static", &gone, json!({"must_exist": false}))).await;
    let response = app.browser().get("/static/app.css").await;
    assert_eq!(response.status_code(), 404);
    assert!(response.text().contains("Not found"));
}

#[tokio::test]
async fn static_precompressed_serves_the_gz_file_to_who_accepts_it() {
    let folder = folder_with_a_file();
    let app = with_middlewares(static_at(
        "/files",
        folder.path(),
        json!({"precompressed": true}),
    ))
    .await;
    let browser = app.browser();
    let gzipped = browser
        .get("/files/hello.txt")
        .add_header("accept-encoding", "gzip")
        .await;
    assert_eq!(
        header(&gzipped, "content-encoding").as_deref(),
        Some("gzip")
    );
    assert_eq!(gzipped.as_bytes().as_ref(), b"pretend gzip bytes");
    let plain = browser.get("/files/hello.txt").await;
    assert_eq!(header(&plain, "content-encoding"), None);
    assert_eq!(plain.text(), "hello, plain");
}

/// The contract: a missing static file is a 404 with Tessera's page. Loco's
/// `static.fallback` would answer 200 with a file; naming one stops the app.
#[tokio::test]
async fn static_fallback_file_is_refused_by_name() {
    let error = refusal(json!({"middlewares": {
        "static": {"fallback": "assets/static/app.css"},
    }}))
    .await;
    assert!(
        error.starts_with("server.middlewares.static.fallback: ")
            && error.contains("assets/static/app.css"),
        "{error}"
    );
    let error = refusal(json!({"middlewares": {"static": {"folder": {"uri": "static"}}}})).await;
    assert!(
        error.starts_with("server.middlewares.static.folder.uri: "),
        "{error}"
    );
}

/// Served at `/`, the folder answers whatever no route matches: files, else Tessera's
/// 404 page; the pages are still the app's.
#[tokio::test]
async fn static_at_the_root_leaves_every_route_alone() {
    let folder = folder_with_a_file();
    let app = with_middlewares(static_at("/", folder.path(), json!({}))).await;
    let browser = app.browser();
    let file = browser.get("/hello.txt").await;
    assert_eq!(file.status_code(), 200);
    assert_eq!(file.text(), "hello, plain");
    assert_eq!(browser.get("/login").await.status_code(), 200);
    assert_eq!(browser.get("/api/session").await.status_code(), 200);
    for response in [
        browser.get("/no/such/page").await,
        browser.post("/no/such/page").await,
    ] {
        assert_eq!(response.status_code(), 404);
        assert!(response.text().contains("Not found"), "{}", response.text());
    }
}

#[tokio::test]
async fn limit_payload_refuses_a_larger_body_with_413() {
    let app = with_middlewares(json!({"limit_payload": {"body_limit": "1kb"}})).await;
    let browser = app.browser();
    let post = |size: usize| {
        browser
            .post("/login")
            .content_type("application/x-www-form-urlencoded")
            .bytes(format!("email={}", "a".repeat(size)).into())
    };
    let large = post(2_000).await;
    assert_eq!(large.status_code(), 413);
    assert!(large.text().contains("too much"), "{}", large.text());
    assert_eq!(
        post(100).await.status_code(),
        403,
        "a small one reaches the CSRF check"
    );

    // Loco's default, 2 MB, when the key is absent.
    let default = TestApp::start().await;
    let response = default
        .browser()
        .post("/login")
        .content_type("application/x-www-form-urlencoded")
        .bytes(vec![b'a'; 2_100_000].into())
        .await;
    assert_eq!(response.status_code(), 413);
}

/// A route of the app's own stack (`tessera::middleware::around`) that panics.
async fn panicking_app(app: &TestApp) -> Router {
    let router = Router::new().route(
        "/panic",
        get(|| async {
            if true {
                panic!("the secret cause");
            }
        }),
    );
    tessera::middleware::around(router, &app.ctx)
        .await
        .expect("the stack builds")
}

fn panic_request(id: &str) -> Request<Body> {
    Request::get("/panic")
        .header("x-request-id", id)
        .body(Body::empty())
        .expect("a request")
}

#[tokio::test]
async fn catch_panic_answers_the_error_page_and_logs_the_request() {
    let logs = logs::captured();
    let app = TestApp::start().await;
    let response = panicking_app(&app)
        .await
        .oneshot(panic_request("panic-on@test"))
        .await
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(response.headers()["x-request-id"], "panic-on@test");
    assert!(response.headers().contains_key("content-security-policy"));
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("a body");
    let page = String::from_utf8_lossy(&body);
    assert!(page.contains("Something went wrong") && !page.contains("the secret cause"));
    let lines = logs.lines_with("request_id=panic-on@test");
    assert!(
        lines
            .iter()
            .any(|line| line.contains("a request handler panicked")),
        "{lines:#?}"
    );

    let off = with_middlewares(json!({"catch_panic": {"enable": false}})).await;
    let router = panicking_app(&off).await;
    let outcome = tokio::spawn(router.oneshot(panic_request("panic-off@test"))).await;
    assert!(
        outcome.is_err_and(|e| e.is_panic()),
        "off: the panic is not caught"
    );
}

/// The timeout is outside the session layer: a session store that does not answer is
/// cut off at `timeout_request`, long before the store's own command timeout.
#[tokio::test]
async fn timeout_request_bounds_the_whole_request_session_load_included() {
    let logs = logs::captured();
    let redis = RedisServer::start();
    let sessions = json!({
        "store": "redis",
        "redis": {"url": redis.url(), "command_timeout_ms": 60_000},
    });
    // The login runs on an instance without the timeout (Argon2 on a loaded machine may
    // take longer than it); the timed instance shares its database and Redis.
    let untimed = TestApp::with(Settings {
        sessions: sessions.clone(),
        ..Settings::default()
    })
    .await;
    untimed.create_user("tia@example.com", false).await;
    let (logged_in, id) = untimed.browser_logged_in_as("tia@example.com").await;
    assert_eq!(logged_in.get("/dashboard").await.status_code(), 200);
    let app = TestApp::with(Settings {
        sessions,
        server: json!({"middlewares": {
            "timeout_request": {"enable": true, "timeout": 300},
        }}),
        share_with: Some(untimed.scratch()),
        ..Settings::default()
    })
    .await;
    let mut browser = app.browser();
    browser.add_cookie(cookie::Cookie::new(
        app.sessions().config().cookie.name.clone(),
        id,
    ));

    // Every Redis command waits a minute from now on (until the server is killed at the
    // end of the test): the session cannot be loaded.
    assert_eq!(
        redis.cli(&["CLIENT", "PAUSE", "60000", "ALL"]).as_deref(),
        Some("OK")
    );
    let response = browser
        .get("/dashboard")
        .add_header("x-request-id", "timeout@test")
        .await;
    assert_eq!(response.status_code(), 408);
    assert!(
        response.text().contains("This took too long"),
        "Tessera's page"
    );
    assert_eq!(
        header(&response, "x-request-id").as_deref(),
        Some("timeout@test")
    );
    assert!(header(&response, "content-security-policy").is_some());
    let lines = logs.lines_with("request_id=timeout@test");
    assert!(
        lines.iter().any(|line| line.contains("request timed out")),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn cors_answers_the_allowed_origin_only() {
    let app = with_middlewares(json!({"cors": {
        "enable": true,
        "allow_origins": ["https://app.example.com"],
        "allow_methods": ["GET"],
        "allow_headers": ["content-type"],
    }}))
    .await;
    let browser = app.browser();
    let preflight = browser
        .method(Method::OPTIONS, "/api/session")
        .add_header("origin", "https://app.example.com")
        .add_header("access-control-request-method", "GET")
        .await;
    assert_eq!(preflight.status_code(), 200);
    assert_eq!(
        header(&preflight, "access-control-allow-origin").as_deref(),
        Some("https://app.example.com")
    );
    let other = browser
        .get("/api/session")
        .add_header("origin", "https://evil.example")
        .await;
    assert_eq!(other.status_code(), 200);
    assert_eq!(header(&other, "access-control-allow-origin"), None);

    let error = refusal(json!({"middlewares": {
        "cors": {"enable": true, "allow_credentials": true},
    }}))
    .await;
    assert!(error.starts_with("server.middlewares.cors: "), "{error}");
}

#[tokio::test]
async fn compression_compresses_for_who_accepts_it() {
    let app = with_middlewares(json!({"compression": {"enable": true}})).await;
    let browser = app.browser();
    for path in ["/login", "/static/app.css"] {
        let gzipped = browser
            .get(path)
            .add_header("accept-encoding", "gzip")
            .await;
        assert_eq!(gzipped.status_code(), 200, "{path}");
        assert_eq!(
            header(&gzipped, "content-encoding").as_deref(),
            Some("gzip"),
            "{path}"
        );
        let plain = browser.get(path).await;
        assert_eq!(header(&plain, "content-encoding"), None, "{path}");
    }
    let off = TestApp::start().await;
    let response = off
        .browser()
        .get("/login")
        .add_header("accept-encoding", "gzip")
        .await;
    assert_eq!(
        header(&response, "content-encoding"),
        None,
        "off by default"
    );
}

/// Loco's `fallback` would answer unknown addresses with its own page; the contract
/// says Tessera's 404. Without the key (Loco's default: on outside production) the
/// 404 is Tessera's; turning Loco's on stops the app.
#[tokio::test]
async fn fallback_is_tesseras_404_and_loco_s_is_refused() {
    let error = refusal(json!({"middlewares": {"fallback": {"enable": true}}})).await;
    assert!(
        error.starts_with("server.middlewares.fallback: "),
        "{error}"
    );

    let app = with_middlewares(json!({"fallback": null})).await;
    let response = app.browser().get("/no/such/page").await;
    assert_eq!(response.status_code(), 404);
    assert!(response.text().contains("Not found"));
}

#[tokio::test]
async fn server_ident_names_the_framework_or_nothing() {
    let app = TestApp::start().await;
    let response = app.browser().get("/login").await;
    assert_eq!(
        header(&response, "x-powered-by").as_deref(),
        Some("loco.rs")
    );

    let quiet = TestApp::with(Settings {
        server: json!({"ident": ""}),
        ..Settings::default()
    })
    .await;
    let response = quiet.browser().get("/login").await;
    assert_eq!(header(&response, "x-powered-by"), None);

    let error = refusal(json!({"ident": "tessera\u{7f}"})).await;
    assert!(error.starts_with("server.ident: "), "{error}");
}

/// `cargo loco middleware` (here the built `tessera-cli middleware`) lists the stack that
/// runs, as Loco lists its own: enabled entries innermost first, then the disabled ones.
#[test]
fn cargo_loco_middleware_lists_the_stack_that_runs() {
    let scratch = TempDir::new().expect("temp dir");
    let listing = |environment: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_tessera-cli"))
            .args(["middleware", "--config"])
            .env("LOCO_ENV", environment)
            .env(
                "DATABASE_URL",
                format!(
                    "sqlite://{}?mode=rwc",
                    scratch.path().join("cli.sqlite").display()
                ),
            )
            .env("SESSION_SECRET", "0123456789abcdef0123456789abcdef-listing")
            .env("LOG_LEVEL", "error")
            .env("NO_COLOR", "1")
            .output()
            .expect("tessera-cli runs");
        assert!(output.status.success(), "{output:?}");
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        let (enabled, disabled) = stdout
            .split_once("\n\n")
            .unwrap_or_else(|| panic!("two groups: {stdout}"));
        let names = |group: &str| -> Vec<String> {
            group
                .lines()
                .filter_map(|line| line.split_whitespace().next())
                .map(str::to_string)
                .collect()
        };
        (names(enabled), names(disabled), stdout)
    };

    let (enabled, disabled, stdout) = listing("production");
    assert_eq!(
        enabled,
        [
            "static",
            "limit_payload",
            "view_engine",
            "session",
            "catch_panic",
            "secure_headers",
            "request_id",
            "http_metrics"
        ],
        "{stdout}"
    );
    assert_eq!(
        disabled,
        [
            "compression",
            "cors",
            "timeout_request",
            "powered_by",
            "logger",
            "etag",
            "remote_ip",
            "fallback"
        ],
        "{stdout}"
    );
    assert!(
        stdout.contains(r#""cache_control":"public, max-age=3600""#),
        "--config shows each entry's settings: {stdout}"
    );

    let (enabled, _, stdout) = listing("test");
    assert_eq!(
        enabled,
        [
            "static",
            "limit_payload",
            "view_engine",
            "session",
            "catch_panic",
            "secure_headers",
            "powered_by",
            "logger",
            "request_id",
            "http_metrics"
        ],
        "{stdout}"
    );
}
