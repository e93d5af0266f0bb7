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
