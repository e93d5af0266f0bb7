//! Production refuses unsafe settings at start, with one line naming the key.

use std::process::Command;

use loco_rs::environment::Environment;
use serde_json::json;
use tempfile::TempDir;

use crate::support::{Settings, TestApp};

fn start_production(envs: &[(&str, &str)]) -> (bool, String) {
    let scratch = TempDir::new().expect("temp dir");
    let db = format!(
        "sqlite://{}?mode=rwc",
        scratch.path().join("p.sqlite").display()
    );
    let output = Command::new(env!("CARGO_BIN_EXE_tessera-cli"))
        .args(["start"])
        .env_remove("SESSION_SECRET")
        .env("LOCO_ENV", "production")
        .env("DATABASE_URL", db)
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .env("PORT", "0")
        .env("LOG_LEVEL", "error")
        .envs(envs.iter().copied())
        .output()
        .expect("the binary runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).trim().to_string(),
    )
}

#[test]
fn production_refuses_to_start_without_a_secret() {
    let (ok, stderr) = start_production(&[]);
    assert!(!ok);
    assert_eq!(stderr.lines().count(), 1, "one line, no trace: {stderr}");
    assert!(stderr.contains("settings.sessions.secret"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn production_refuses_a_short_secret_and_a_bad_store() {
    let (ok, stderr) = start_production(&[("SESSION_SECRET", "too-short")]);
    assert!(!ok);
    assert!(
        stderr.contains("settings.sessions.secret") && stderr.contains("at least 32"),
        "{stderr}"
    );

    let secret = "0123456789abcdef0123456789abcdef-ok";
    let (ok, stderr) = start_production(&[("SESSION_SECRET", secret), ("SESSION_STORE", "disk")]);
    assert!(!ok);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("settings.sessions.store") && stderr.contains("disk"),
        "{stderr}"
    );
}

#[test]
fn production_refuses_locos_remote_ip_next_to_the_trusted_proxies_in_one_line() {
    // An upgrader's config: the shipped production file with the README's old advice.
    let shipped = std::fs::read_to_string("config/production.yaml").expect("the shipped config");
    let upgraded = shipped.replacen(
        "  middlewares:\n",
        "  middlewares:\n    remote_ip:\n      enable: true\n      source: RightmostXForwardedFor\n",
        1,
    );
    assert_ne!(upgraded, shipped);
    let folder = TempDir::new().expect("temp dir");
    std::fs::write(folder.path().join("production.yaml"), upgraded).expect("config written");
    let secret = "0123456789abcdef0123456789abcdef-ok";
    let (ok, stderr) = start_production(&[
        ("SESSION_SECRET", secret),
        ("LOCO_CONFIG_FOLDER", &folder.path().display().to_string()),
    ]);
    assert!(!ok);
    assert_eq!(stderr.lines().count(), 1, "one line, no trace: {stderr}");
    assert!(
        stderr.contains("server.middlewares.remote_ip")
            && stderr.contains("settings.sessions.trusted_proxies"),
        "{stderr}"
    );
}

#[test]
fn production_refuses_a_bad_trusted_proxies_list_in_one_line() {
    let secret = "0123456789abcdef0123456789abcdef-ok";
    let (ok, stderr) = start_production(&[
        ("SESSION_SECRET", secret),
        ("TRUSTED_PROXIES", "10.0.0.0/8, proxy.internal"),
    ]);
    assert!(!ok);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("settings.sessions.trusted_proxies") && stderr.contains("proxy.internal"),
        "{stderr}"
    );
}

#[tokio::test]
async fn production_refuses_cookies_that_break_the_host_prefix() {
    for (cookie, key) in [
        (json!({"secure": false}), "settings.sessions.cookie.secure"),
        (
            json!({"domain": "example.com"}),
            "settings.sessions.cookie.domain",
        ),
        (
            json!({"name": "session", "secure": false}),
            "settings.sessions.cookie.secure",
        ),
    ] {
        let result = TestApp::try_with(Settings {
            environment: Environment::Production,
            sessions: json!({"store": "memory", "cookie": cookie}),
            ..Settings::default()
        })
        .await;
        let error = result.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains(key), "expected {key}, got {error:?}");
    }
}

/// Production runs the stack every environment runs (`tessera::middleware`), with its
/// own settings: request IDs on, the per-request span and `x-powered-by` off.
#[tokio::test]
async fn production_serves_through_the_same_stack() {
    let app = TestApp::with(Settings {
        environment: Environment::Production,
        sessions: json!({"store": "memory"}),
        ..Settings::default()
    })
    .await;
    let browser = app.browser();
    let header = |response: &axum_test::TestResponse, name: &str| {
        response
            .maybe_header(name)
            .and_then(|v| v.to_str().ok().map(str::to_string))
    };
    let page = browser
        .get("/login")
        .add_header("x-request-id", "prod-echo@1")
        .await;
    assert_eq!(page.status_code(), 200);
    assert_eq!(
        header(&page, "x-request-id").as_deref(),
        Some("prod-echo@1")
    );
    assert!(header(&page, "content-security-policy").is_some());
    assert_eq!(header(&page, "x-powered-by"), None, "server.ident is empty");
    let css = browser.get("/static/app.css").await;
    assert_eq!(
        header(&css, "cache-control").as_deref(),
        Some("public, max-age=3600")
    );
    let missing = browser.get("/static/gone.js").await;
    assert_eq!(missing.status_code(), 404);
    assert!(missing.text().contains("Not found"));
    assert!(header(&missing, "x-request-id").is_some());
}

/// With request spans off (production's default), a failing request's log lines still
/// name it: the request ID is on each line, not in a span.
#[tokio::test]
async fn a_failing_production_request_is_logged_with_its_id() {
    let logs = crate::support::logs::captured();
    let app = TestApp::with(Settings {
        environment: Environment::Production,
        sessions: json!({
            "store": "redis",
            "redis": {"url": "redis://127.0.0.1:1", "command_timeout_ms": 200},
        }),
        ..Settings::default()
    })
    .await;
    let response = app
        .browser()
        .get("/dashboard")
        .add_header(
            "cookie",
            format!("__Host-session={}", tower_sessions::session::Id::default()),
        )
        .add_header("x-request-id", "prod-503@inprocess")
        .await;
    assert_eq!(response.status_code(), 503);
    let lines = logs.lines_with("prod-503@inprocess");
    assert!(
        lines
            .iter()
            .any(|line| line.contains("session store unavailable")
                && line.ends_with(" request_id=prod-503@inprocess")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().all(|line| !line.contains("http-request")),
        "no per-request span in production: {lines:#?}"
    );
}

/// The real thing: `tessera-cli start` in production (JSON logs, Redis unreachable); a
/// request that fails with `X-Request-Id: abc…` leaves an error line carrying it.
#[test]
fn the_production_server_logs_a_failing_request_with_its_id_in_json() {
    use std::{
        io::{BufRead, BufReader, Read, Write},
        net::{TcpListener, TcpStream},
        process::Stdio,
        time::{Duration, Instant},
    };

    let scratch = TempDir::new().expect("temp dir");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let mut server = Command::new(env!("CARGO_BIN_EXE_tessera-cli"))
        .args(["start", "--no-banner"])
        .env("LOCO_ENV", "production")
        .env(
            "DATABASE_URL",
            format!(
                "sqlite://{}?mode=rwc",
                scratch.path().join("p.sqlite").display()
            ),
        )
        .env(
            "SESSION_SECRET",
            "0123456789abcdef0123456789abcdef-prod-log",
        )
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .env("REDIS_COMMAND_TIMEOUT_MS", "200")
        .env("BINDING", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("LOG_LEVEL", "info")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let stdout = server.stdout.take().expect("stdout");
    let lines = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });

    let deadline = Instant::now() + Duration::from_secs(120);
    let mut stream = loop {
        if let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) {
            break stream;
        }
        if let Some(status) = server.try_wait().expect("the server's status") {
            let mut stderr = String::new();
            server
                .stderr
                .take()
                .map(|mut e| e.read_to_string(&mut stderr));
            panic!("the server stopped ({status}): {stderr}");
        }
        assert!(
            Instant::now() < deadline,
            "the server did not start listening"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let id = tower_sessions::session::Id::default();
    write!(
        stream,
        "GET /dashboard HTTP/1.1\r\nHost: localhost\r\nCookie: __Host-session={id}\r\n\
         X-Request-Id: abc-prod-json\r\nConnection: close\r\n\r\n"
    )
    .expect("request sent");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("an answer");
    let _ = server.kill();
    let _ = server.wait();
    let lines = lines.join().expect("stdout read");

    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    let events: Vec<serde_json::Value> = lines
        .iter()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let failure = events
        .iter()
        .find(|e| e["fields"]["message"] == "session store unavailable")
        .unwrap_or_else(|| panic!("the failure is logged: {lines:#?}"));
    assert_eq!(failure["request_id"], "abc-prod-json", "{failure}");
    assert_eq!(failure["level"], "ERROR");
}
