//! Device cookies: a browser that logged in to an account is throttled on it per device
//! cookie only, so nobody can lock an owner out of a browser they use; everyone else is
//! throttled per account and per network, and a success never clears what others counted.

use axum_test::TestServer;
use serde_json::json;

use crate::support::{csrf_token_of, set_cookie_header, texts, TestApp};

const RIGHT: &str = "correct horse battery";

/// Unknown clients get 3 failures per account; known devices 2 each; networks plenty.
async fn app() -> TestApp {
    let app = TestApp::with_sessions(json!({"throttle": {
        "account_failures": 3,
        "device_failures": 2,
        "ip_failures": 1000,
        "window_secs": 900,
    }}))
    .await;
    app.create_user("owner@example.com", false).await;
    app.create_user("other@example.com", false).await;
    app
}

async fn attempt(app: &TestApp, browser: &TestServer, email: &str, password: &str) -> u16 {
    app.log_in(browser, email, password, false)
        .await
        .status_code()
        .as_u16()
}

/// A browser that logged in to `email` once and logged out again: it keeps its device
/// cookie, and nothing else.
async fn known_browser(app: &TestApp, email: &str) -> TestServer {
    let browser = app.browser();
    assert_eq!(attempt(app, &browser, email, RIGHT).await, 303);
    let token = csrf_token_of(&browser, "/dashboard").await;
    let logout = browser
        .post("/logout")
        .form(&[("csrf_token", token.as_str())])
        .await;
    assert_eq!(logout.status_code(), 303);
    browser
}

#[tokio::test]
async fn a_login_issues_a_device_cookie_that_names_nobody_and_outlives_remember_me() {
    let app = app().await;
    let browser = app.browser();
    let login = app
        .log_in(&browser, "owner@example.com", RIGHT, false)
        .await;
    assert_eq!(login.status_code(), 303);
    let cookie = set_cookie_header(&login, "device").expect("a device cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=15552000"] {
        assert!(cookie.contains(attribute), "{attribute}: {cookie}");
    }
    assert!(!cookie.contains("Domain"), "{cookie}");
    // A signed token of 75 URL-safe characters: no email, no name, no plain user id.
    let value = cookie
        .split(';')
        .next()
        .and_then(|pair| pair.strip_prefix("device="))
        .expect("a value");
    assert_eq!(value.len(), 75, "{value}");
    assert!(
        value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{value}"
    );
}

#[tokio::test]
async fn the_owners_known_browser_gets_in_while_the_account_is_hammered() {
    let app = app().await;
    let owner = known_browser(&app, "owner@example.com").await;
    // A stranger guesses from anywhere: the unknown clients' budget runs out.
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(attempt(&app, &app.browser(), "owner@example.com", "guess").await);
    }
    assert_eq!(statuses, vec![422, 422, 422, 429, 429, 429]);
    // Even the right password from an unknown browser waits...
    assert_eq!(
        attempt(&app, &app.browser(), "owner@example.com", RIGHT).await,
        429
    );
    // ...but the owner's browser is counted on its own.
    assert_eq!(attempt(&app, &owner, "owner@example.com", RIGHT).await, 303);
}

#[tokio::test]
async fn a_known_browser_that_guesses_wrong_locks_only_its_own_cookie() {
    let app = app().await;
    let guessing = known_browser(&app, "owner@example.com").await;
    let other_known = known_browser(&app, "owner@example.com").await;
    assert_eq!(
        attempt(&app, &guessing, "owner@example.com", "wrong").await,
        422
    );
    assert_eq!(
        attempt(&app, &guessing, "owner@example.com", "wrong").await,
        422
    );
    let locked = app
        .log_in(&guessing, "owner@example.com", RIGHT, false)
        .await;
    assert_eq!(locked.status_code(), 429, "two failures lock this cookie");
    assert!(locked.maybe_header("retry-after").is_some());
    assert_eq!(
        texts(&locked.text(), "#login-error"),
        vec!["Too many attempts. Try again in 15 minutes."]
    );
    // Nothing else is locked: another known browser, and unknown clients (whose budget
    // the device's guesses never touched).
    assert_eq!(
        attempt(&app, &other_known, "owner@example.com", RIGHT).await,
        303
    );
    assert_eq!(
        attempt(&app, &app.browser(), "owner@example.com", RIGHT).await,
        303
    );
}

#[tokio::test]
async fn a_device_cookie_counts_only_for_its_own_account() {
    let app = app().await;
    // Known for "other", unknown for "owner": its guesses on "owner" use up the unknown
    // clients' budget like anyone's.
    let browser = known_browser(&app, "other@example.com").await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(attempt(&app, &browser, "owner@example.com", "guess").await);
    }
    assert_eq!(statuses, vec![422, 422, 422, 429]);
    assert_eq!(
        attempt(&app, &app.browser(), "owner@example.com", RIGHT).await,
        429
    );
}

#[tokio::test]
async fn a_forged_or_altered_device_cookie_is_no_device_cookie() {
    let app = app().await;
    let owner = app.browser();
    let login = app.log_in(&owner, "owner@example.com", RIGHT, false).await;
    let issued = set_cookie_header(&login, "device").expect("device cookie");
    let value = issued
        .split(';')
        .next()
        .and_then(|pair| pair.strip_prefix("device="))
        .expect("a value")
        .to_string();
    let token = csrf_token_of(&owner, "/dashboard").await;
    owner
        .post("/logout")
        .form(&[("csrf_token", token.as_str())])
        .await;
    let mut altered = value.clone().into_bytes();
    altered[0] = if altered[0] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).expect("ascii");
    for forged in [altered.as_str(), "x", "", &"A".repeat(75)] {
        for _ in 0..3 {
            let browser = app.browser();
            let token = csrf_token_of(&browser, "/login").await;
            let response = browser
                .post("/login")
                .add_header("cookie", format!("device={forged}"))
                .form(&[
                    ("csrf_token", token.as_str()),
                    ("email", "owner@example.com"),
                    ("password", "guess"),
                ])
                .await;
            assert!(
                [422, 429].contains(&response.status_code().as_u16()),
                "{forged}"
            );
        }
    }
    // Twelve "device" guesses counted as unknown clients': the account is locked for
    // unknown clients, and the real cookie still gets its owner in.
    assert_eq!(
        attempt(&app, &app.browser(), "owner@example.com", RIGHT).await,
        429
    );
    assert_eq!(
        attempt(&app, &owner, "owner@example.com", RIGHT).await,
        303,
        "the issued cookie ({value}) still works"
    );
}

#[tokio::test]
async fn a_success_never_clears_what_unknown_clients_counted() {
    let app = app().await;
    for _ in 0..2 {
        assert_eq!(
            attempt(&app, &app.browser(), "owner@example.com", "guess").await,
            422
        );
    }
    // The owner logs in from a new browser: its attempt is given back, the two failures
    // stay counted.
    assert_eq!(
        attempt(&app, &app.browser(), "owner@example.com", RIGHT).await,
        303
    );
    assert_eq!(
        attempt(&app, &app.browser(), "owner@example.com", "guess").await,
        422,
        "the third failure"
    );
    assert_eq!(
        attempt(&app, &app.browser(), "owner@example.com", "guess").await,
        429,
        "a success handed no fresh budget"
    );
}

/// Posts the password form; its status.
async fn change_password(browser: &TestServer, current: &str) -> u16 {
    let token = csrf_token_of(browser, "/account").await;
    browser
        .post("/account/password")
        .form(&[
            ("csrf_token", token.as_str()),
            ("current_password", current),
            ("new_password", "a brand new passphrase"),
        ])
        .await
        .status_code()
        .as_u16()
}

#[tokio::test]
async fn the_password_form_follows_the_same_rules() {
    let app = app().await;
    // The owner's own browser (it got a device cookie at login) mistypes: its cookie's
    // budget (2) goes, nothing else.
    let (owner, _) = app.browser_logged_in_as("owner@example.com").await;
    assert_eq!(change_password(&owner, "wrong").await, 422);
    assert_eq!(change_password(&owner, "wrong").await, 422);
    assert_eq!(change_password(&owner, "wrong").await, 429);
    // A stolen session cookie replayed from a browser without the device cookie is an
    // unknown client: counted per account (3), separately.
    let session_cookie = app.sessions().config().cookie.name.clone();
    let (victim, id) = app.browser_logged_in_as("other@example.com").await;
    drop(victim);
    let mut thief = app.browser();
    thief.add_cookie(cookie::Cookie::new(session_cookie, id));
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(change_password(&thief, "guess").await);
    }
    assert_eq!(statuses, vec![422, 422, 422, 429]);
}
