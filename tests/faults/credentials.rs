//! Credentials changing under concurrent requests. A password change ends every session
//! opened with the old password, a login racing it included; an admin's revoke racing the
//! owner's password change never leaves a working session behind an ended registry row.
//! Each race is looped: every round must hold, whatever the interleaving.

use std::{
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use axum_test::TestServer;
use serde_json::json;
use tessera::sessions::events::EndReason;

use crate::support::{
    attrs, csrf_token_of, location, parse_id, session_id_set, Database, Settings, TestApp,
};

const ROUNDS: usize = 20;
const EMAIL: &str = "ida@example.com";
const FIRST_PASSWORD: &str = "correct horse battery";

/// Limits raised so that neither the throttle nor the per-user limit decides the race.
fn unthrottled(database: Database) -> Settings {
    Settings {
        database,
        sessions: json!({
            "max_per_user": 10_000,
            "throttle": {"account_failures": 1_000_000, "ip_failures": 1_000_000},
        }),
        ..Settings::default()
    }
}

/// Changes the password of `browser`'s user from `current` to `new` through the form.
async fn change_password(browser: &TestServer, current: &str, new: &str) -> String {
    let token = csrf_token_of(browser, "/account").await;
    let response = browser
        .post("/account/password")
        .form(&[
            ("csrf_token", token.as_str()),
            ("current_password", current),
            ("new_password", new),
        ])
        .await;
    location(&response)
}

/// Logs in with `password` in fresh browsers, over and over, until `stop`; the browsers
/// whose login succeeded.
async fn keep_logging_in(
    app: &TestApp,
    password: &str,
    stop: &AtomicBool,
    attempts: &AtomicUsize,
) -> Vec<TestServer> {
    let mut logged_in = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let browser = app.browser();
        let response = app.log_in(&browser, EMAIL, password, false).await;
        attempts.fetch_add(1, Ordering::SeqCst);
        match response.status_code().as_u16() {
            303 => {
                assert_eq!(location(&response), "/dashboard");
                logged_in.push(browser);
            }
            // The old password stopped working: answered like any wrong password.
            422 => {}
            other => panic!("a login answered {other}: {}", response.text()),
        }
    }
    logged_in
}

async fn no_login_outlives_a_password_change(database: Database) {
    let app = TestApp::with(unthrottled(database)).await;
    app.create_user(EMAIL, false).await;
    let (owner, _) = app.browser_logged_in_as(EMAIL).await;
    let mut password = FIRST_PASSWORD.to_string();
    let mut failures = Vec::new();
    for round in 0..ROUNDS {
        let new_password = format!("the password of round {round}");
        let stop = AtomicBool::new(false);
        let attempts = AtomicUsize::new(0);
        let loops = futures::future::join_all(
            (0..3).map(|_| keep_logging_in(&app, &password, &stop, &attempts)),
        );
        let change = async {
            // Logins are under way before the change starts, and go on after it ends.
            while attempts.load(Ordering::SeqCst) < 3 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let answer = change_password(&owner, &password, &new_password).await;
            let after = attempts.load(Ordering::SeqCst);
            while attempts.load(Ordering::SeqCst) < after + 3 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            stop.store(true, Ordering::SeqCst);
            answer
        };
        let (browsers, answer) = tokio::join!(loops, change);
        assert_eq!(
            answer, "/account",
            "round {round}: the owner changed the password"
        );
        password = new_password;

        // What the owner sees first: a leaked session is listed until someone uses it.
        let listed = owner.get("/sessions").await.text();
        let refs = attrs(&listed, "#sessions li", "data-session-ref");
        let current = attrs(&listed, "#sessions li.active", "data-session-ref");
        assert_eq!(
            current.len(),
            1,
            "round {round}: the owner's session is listed"
        );
        let others_listed = refs.len() - 1;
        let browsers: Vec<_> = browsers.into_iter().flatten().collect();
        let mut reach_dashboard = 0;
        for browser in &browsers {
            if browser.get("/dashboard").await.status_code() == 200 {
                reach_dashboard += 1;
            }
        }
        if others_listed > 0 || reach_dashboard > 0 {
            failures.push(format!(
                "round {round}: {others_listed} other sessions listed, {reach_dashboard} of {} logins with the old password reach /dashboard",
                browsers.len()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {ROUNDS} rounds let a login outlive the password change:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_login_outlives_a_password_change_sqlite() {
    no_login_outlives_a_password_change(Database::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_login_outlives_a_password_change_postgres() {
    no_login_outlives_a_password_change(Database::Postgres).await;
}

/// The user's session and the registry agree after an admin's revoke raced the user's
/// own password change (which rotates the session's ID): either the session works and
/// its row is live, or neither.
async fn a_revoke_racing_a_rotation_is_never_undone(database: Database) {
    let app = TestApp::with(unthrottled(database)).await;
    let user = app.create_user(EMAIL, false).await;
    app.create_user("root@example.com", true).await;
    let (admin, _) = app.browser_logged_in_as("root@example.com").await;
    let cookie = app.sessions().config().cookie.name.clone();

    // How long a password change takes here: the revokes are spread over it. (It only
    // shapes the interleavings; every round must hold whatever it turns out to be.)
    let (probe, _) = app.browser_logged_in_as(EMAIL).await;
    let started = Instant::now();
    assert_eq!(
        change_password(&probe, FIRST_PASSWORD, FIRST_PASSWORD).await,
        "/account"
    );
    let change_takes = started.elapsed();
    end_all_sessions_of(&app, user.id).await;

    let mut failures = Vec::new();
    for round in 0..ROUNDS {
        let browser = app.browser();
        let login = app.log_in(&browser, EMAIL, FIRST_PASSWORD, false).await;
        assert_eq!(location(&login), "/dashboard");
        let id = session_id_set(&login, &cookie).expect("a session cookie");
        let session_ref = app.sessions().session_ref(&parse_id(&id));
        let user_token = csrf_token_of(&browser, "/account").await;
        let admin_token = csrf_token_of(&admin, "/admin/sessions").await;
        // From the start of the request to a little past its end.
        let delay = change_takes.mul_f64(1.2 * round as f64 / ROUNDS as f64);
        let change = browser.post("/account/password").form(&[
            ("csrf_token", user_token.as_str()),
            ("current_password", FIRST_PASSWORD),
            // The same password again: the race is about the rotation, not the value.
            ("new_password", FIRST_PASSWORD),
        ]);
        let revoke = async {
            tokio::time::sleep(delay).await;
            admin
                .post(&format!("/admin/sessions/{session_ref}/revoke"))
                .form(&[("csrf_token", admin_token.as_str())])
                .await
        };
        let (changed, revoked) = tokio::join!(change, revoke);
        assert!(
            matches!(location(&changed).as_str(), "/account" | "/login"),
            "round {round}: the change answered {} {}",
            changed.status_code(),
            location(&changed)
        );
        assert!(location(&revoked).starts_with("/admin/sessions?"));

        let live = app
            .sessions()
            .live_sessions_of(user.id)
            .await
            .expect("registry");
        let works = browser.get("/dashboard").await.status_code() == 200;
        let listed = live.len();
        if works != (listed == 1) {
            failures.push(format!(
                "round {round} (revoke after {delay:?}): the session {} and {listed} rows are live",
                if works { "works" } else { "has ended" },
            ));
        }
        end_all_sessions_of(&app, user.id).await;
    }
    assert!(
        failures.is_empty(),
        "{} of {ROUNDS} rounds left the session and the registry disagreeing (change takes {change_takes:?}):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Ends every live session of `user_id`, so that a round starts with none.
async fn end_all_sessions_of(app: &TestApp, user_id: i64) {
    app.sessions()
        .revoke_user(user_id, None, EndReason::Logout, None)
        .await
        .expect("sessions end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_racing_a_rotation_is_never_undone_sqlite() {
    a_revoke_racing_a_rotation_is_never_undone(Database::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_racing_a_rotation_is_never_undone_postgres() {
    a_revoke_racing_a_rotation_is_never_undone(Database::Postgres).await;
}
